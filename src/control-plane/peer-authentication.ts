import type { AuthorizationPolicy } from '../workload-api/types.ts';
import { emptyMatch } from './authorization.ts';
import { selectorMatches, type PeerAuthentication } from './kube-objects.ts';
import { Report } from './report.ts';

/**
 * PeerAuthentication → Authorization (reference istio-ambient.md §3.8), pure.
 *
 * - `istio_converted_static_strict` (root namespace, WORKLOAD_SELECTOR, DENY, one group `not_principals: [presence]`)
 *   is sent whenever at least one PeerAuthentication exists.
 * - A workload's effective mode: mesh (root namespace, no selector) ← namespace (no selector) ← workload (selector,
 *   the workload's namespace); the oldest wins among several at one level; UNSET inherits; DISABLE counts as
 *   PERMISSIVE; nothing at all is PERMISSIVE.
 * - A selector policy outside the root namespace with `portLevelMtls` becomes `converted_peer_authentication_<name>`
 *   (its namespace, WORKLOAD_SELECTOR, DENY): STRICT ports under a non-strict mode → one group per port
 *   `{not_principals: [presence], destination_ports: [p]}`; PERMISSIVE/DISABLE ports under STRICT → one group of
 *   clauses `{not_destination_ports: [p]}`… and `{not_principals: [presence]}`; nothing to do → not converted.
 * - A workload lists `<root>/istio_converted_static_strict` when its effective mode is STRICT and no port exception
 *   applies, or `<ns>/converted_peer_authentication_<name>` when its workload-level policy converts.
 * - Decisions beyond the reference: an unknown mode or a port key that is not a port is a problem against the
 *   policy, and that mode (or port) counts as UNSET.
 */

export const STATIC_STRICT_NAME = 'istio_converted_static_strict';
export const CONVERTED_PREFIX = 'converted_peer_authentication_';

export type MtlsMode = 'UNSET' | 'DISABLE' | 'PERMISSIVE' | 'STRICT';
const MODES: readonly MtlsMode[] = ['UNSET', 'DISABLE', 'PERMISSIVE', 'STRICT'];

function unauthenticated(): ReturnType<typeof emptyMatch> {
  const m = emptyMatch();
  m.notPrincipals = [{ kind: 'presence' }];
  return m;
}

export function staticStrictPolicy(rootNamespace: string): AuthorizationPolicy {
  return {
    name: STATIC_STRICT_NAME,
    namespace: rootNamespace,
    scope: 'WORKLOAD_SELECTOR',
    action: 'DENY',
    rules: [{ clauses: [{ matches: [unauthenticated()] }] }],
    dryRun: false,
  };
}

export function modeOf(text: string | undefined, report?: Report, path = 'spec.mtls.mode'): MtlsMode {
  if (text === undefined || text === '') return 'UNSET';
  if ((MODES as readonly string[]).includes(text)) return text as MtlsMode;
  report?.problem(path, `unknown mode ${JSON.stringify(text)} (${MODES.join(', ')}); taken as UNSET`);
  return 'UNSET';
}

const hasSelector = (pa: PeerAuthentication): boolean => Object.keys(pa.spec?.selector?.matchLabels ?? {}).length > 0;

/** Oldest first (creationTimestamp, then name), as Istio breaks ties. */
export function oldestFirst<T extends PeerAuthentication>(list: Iterable<T>): T[] {
  return [...list].sort((a, b) => {
    const ta = a.metadata?.creationTimestamp ?? '';
    const tb = b.metadata?.creationTimestamp ?? '';
    if (ta !== tb) return ta < tb ? -1 : 1;
    return (a.metadata?.name ?? '') < (b.metadata?.name ?? '') ? -1 : 1;
  });
}

/** What `peerAuthenticationFor` reads: the policies of one namespace. */
export interface PeerAuthenticationLookup {
  readonly rootNamespace: string;
  peerAuthentications(namespace: string): Iterable<PeerAuthentication>;
}

/** The mode inherited by workloads of `namespace` from the namespace and mesh levels (UNSET resolved). */
export function parentMode(lookup: PeerAuthenticationLookup, namespace: string): MtlsMode {
  const levelMode = (ns: string): MtlsMode => {
    const top = oldestFirst([...lookup.peerAuthentications(ns)].filter((pa) => !hasSelector(pa)))[0];
    return top ? modeOf(top.spec?.mtls?.mode) : 'UNSET';
  };
  const nsMode = namespace === lookup.rootNamespace ? 'UNSET' : levelMode(namespace);
  if (nsMode !== 'UNSET') return nsMode;
  const mesh = levelMode(lookup.rootNamespace);
  return mesh === 'UNSET' ? 'PERMISSIVE' : mesh;
}

const isStrict = (m: MtlsMode): boolean => m === 'STRICT';

/** The converted port-level policy of one selector PeerAuthentication, or undefined (nothing to convert). */
export function convertPeerAuthentication(pa: PeerAuthentication, lookup: PeerAuthenticationLookup, report: Report): AuthorizationPolicy | undefined {
  const name = pa.metadata?.name ?? '';
  const namespace = pa.metadata?.namespace ?? '';
  const own = modeOf(pa.spec?.mtls?.mode, report);
  const portLevel = pa.spec?.portLevelMtls ?? {};
  if (!hasSelector(pa)) {
    if (Object.keys(portLevel).length > 0) report.problem('spec.portLevelMtls', 'is only allowed with a selector; ignored');
    return undefined;
  }
  if (namespace === lookup.rootNamespace || Object.keys(portLevel).length === 0) return undefined;
  const mode = own === 'UNSET' ? parentMode(lookup, namespace) : own;
  const ports: Array<{ port: number; mode: MtlsMode }> = [];
  for (const [key, value] of Object.entries(portLevel)) {
    const port = /^\d{1,5}$/.test(key) ? Number(key) : NaN;
    if (!(port >= 1 && port <= 65_535)) {
      report.problem(`spec.portLevelMtls["${key}"]`, 'is not a port (1-65535); ignored');
      continue;
    }
    const m = modeOf(value?.mode, report, `spec.portLevelMtls["${key}"].mode`);
    if (m !== 'UNSET') ports.push({ port, mode: m });
  }
  ports.sort((a, b) => a.port - b.port);
  let rules: AuthorizationPolicy['rules'];
  if (!isStrict(mode)) {
    const strict = ports.filter((p) => isStrict(p.mode));
    if (strict.length === 0) return undefined;
    rules = strict.map((p) => {
      const m = unauthenticated();
      m.destinationPorts = [p.port];
      return { clauses: [{ matches: [m] }] };
    });
  } else {
    const relaxed = ports.filter((p) => !isStrict(p.mode));
    if (relaxed.length === 0) return undefined;
    rules = [
      {
        clauses: [
          ...relaxed.map((p) => {
            const m = emptyMatch();
            m.notDestinationPorts = [p.port];
            return { matches: [m] };
          }),
          { matches: [unauthenticated()] },
        ],
      },
    ];
  }
  return { name: `${CONVERTED_PREFIX}${name}`, namespace, scope: 'WORKLOAD_SELECTOR', action: 'DENY', rules, dryRun: false };
}

/** The PeerAuthentication-derived policy names a workload lists (`ns/name`), given its namespace and labels. */
export function peerAuthenticationRefs(lookup: PeerAuthenticationLookup, namespace: string, labels: Readonly<Record<string, string>>): string[] {
  const workloadLevel = oldestFirst([...lookup.peerAuthentications(namespace)].filter((pa) => hasSelector(pa) && selectorMatches(pa.spec?.selector?.matchLabels ?? {}, labels)))[0];
  const inherited = parentMode(lookup, namespace);
  const own = workloadLevel ? modeOf(workloadLevel.spec?.mtls?.mode) : 'UNSET';
  const effective = own === 'UNSET' ? inherited : own;
  if (workloadLevel) {
    const converted = convertPeerAuthentication(workloadLevel, lookup, new Report());
    if (converted) return [`${namespace}/${converted.name}`];
  }
  return isStrict(effective) ? [`${lookup.rootNamespace}/${STATIC_STRICT_NAME}`] : [];
}

import { isIP } from 'node:net';
import { canonicalIp } from '../workload-api/convert.ts';
import type { AuthorizationPolicy, Cidr, PolicyMatch, ServiceAccountMatch, StringMatch } from '../workload-api/types.ts';
import type { KubeAuthorizationPolicy, PolicyOperation, PolicyRule, PolicySource } from './kube-objects.ts';
import type { Report } from './report.ts';

/**
 * AuthorizationPolicy → `istio.security.Authorization` (reference istio-ambient.md §3.7), pure.
 *
 * - Policies with `targetRef`/`targetRefs` are waypoint policies: not sent (undefined).
 * - Scope: a selector with labels → WORKLOAD_SELECTOR; none → NAMESPACE; none in the root namespace → GLOBAL.
 * - ALLOW (the default) and DENY map directly; CUSTOM and AUDIT are not sent (`ZtunnelAccepted=False`,
 *   `UnsupportedValue`); an unknown action is a problem and not sent.
 * - `istio.io/dry-run: "true"`: sent with `dry_run` only when dry-run is enabled, else not sent.
 * - Each rule is one group: a clause of one match per `to`, a clause of one match per `from`, a clause per `when`.
 *   `rules: [{}]` is a group without clauses (matches everything); a match left with no fields is not sent (ztunnel
 *   would skip it), and a clause left with no matches neither.
 * - L7 fields (hosts, methods, paths, request principals, remote IP blocks, any non-L4 `when` key): an ALLOW rule
 *   with any is dropped; a DENY rule keeps only its L4 parts. The policy is still sent, with `ZtunnelAccepted`
 *   reason `UnsupportedValue`.
 * - Decisions beyond the reference: an invalid value (a port that does not parse or exceeds 65535, a bad IP or
 *   CIDR, an empty `serviceAccounts` entry) is a problem counted against the policy; it makes its rule
 *   unconvertible in the safe direction: an ALLOW rule is dropped, a DENY rule becomes a group without clauses
 *   (denies every connection the policy applies to) so a typo never opens access.
 */

export interface AuthorizationSettings {
  readonly rootNamespace: string;
  /** `AMBIENT_ENABLE_DRY_RUN_AUTHORIZATION_POLICY`. */
  readonly enableDryRun: boolean;
}

export const DRY_RUN_ANNOTATION = 'istio.io/dry-run';
export const ZTUNNEL_ACCEPTED = 'ZtunnelAccepted';

/** The L4 `when` keys ztunnel can evaluate. */
const L4_WHEN_KEYS = new Set(['source.ip', 'source.namespace', 'source.principal', 'destination.ip', 'destination.port']);

/** `*` → presence, `*x` → suffix x, `x*` → prefix x, else exact (Istio's string rule). */
export function stringMatch(value: string): StringMatch {
  if (value === '*') return { kind: 'presence' };
  if (value.startsWith('*')) return { kind: 'suffix', value: value.slice(1) };
  if (value.endsWith('*')) return { kind: 'prefix', value: value.slice(0, -1) };
  return { kind: 'exact', value };
}

/** A port as a policy writes it (a decimal string 0..65535). */
export function parsePort(text: string): number | undefined {
  if (!/^\d{1,5}$/.test(text.trim())) return undefined;
  const n = Number(text.trim());
  return n <= 65_535 ? n : undefined;
}

/** An IP (→ /32 or /128) or CIDR. */
export function parseCidr(text: string): Cidr | undefined {
  const [ipText = '', lenText, extra] = text.trim().split('/');
  if (extra !== undefined) return undefined;
  const ip = canonicalIp(ipText);
  if (!ip) return undefined;
  const full = isIP(ip) === 4 ? 32 : 128;
  if (lenText === undefined) return { ip, prefixLength: full };
  if (!/^\d{1,3}$/.test(lenText)) return undefined;
  const prefixLength = Number(lenText);
  return prefixLength <= full ? { ip, prefixLength } : undefined;
}

type MutableMatch = { -readonly [K in keyof PolicyMatch]: PolicyMatch[K] extends readonly (infer T)[] ? T[] : never };

export function emptyMatch(): MutableMatch {
  return {
    namespaces: [], notNamespaces: [], principals: [], notPrincipals: [], sourceIps: [], notSourceIps: [], destinationIps: [],
    notDestinationIps: [], destinationPorts: [], notDestinationPorts: [], serviceAccounts: [], notServiceAccounts: [],
  };
}

export function isEmptyMatch(m: PolicyMatch): boolean {
  return (Object.values(m) as unknown[][]).every((list) => list.length === 0);
}

const nonEmpty = (...lists: ReadonlyArray<readonly unknown[] | undefined>): boolean => lists.some((l) => (l?.length ?? 0) > 0);

function hasL7(source: PolicySource | undefined, op: PolicyOperation | undefined): boolean {
  return (
    nonEmpty(source?.requestPrincipals, source?.notRequestPrincipals, source?.remoteIpBlocks, source?.notRemoteIpBlocks) ||
    nonEmpty(op?.hosts, op?.notHosts, op?.methods, op?.notMethods, op?.paths, op?.notPaths)
  );
}

/** Collects invalid values of one rule. */
class RuleProblems {
  readonly list: string[] = [];
  readonly path: string;
  constructor(path: string) {
    this.path = path;
  }
  add(field: string, message: string): void {
    this.list.push(`${this.path}.${field}: ${message}`);
  }
}

function ports(p: RuleProblems, field: string, values: readonly unknown[] | undefined): number[] {
  const out: number[] = [];
  (values ?? []).forEach((v, i) => {
    const port = typeof v === 'string' ? parsePort(v) : typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 65_535 ? v : undefined;
    if (port === undefined) p.add(`${field}[${i}]`, `${JSON.stringify(v)} is not a port (0-65535)`);
    else out.push(port);
  });
  return out;
}

function cidrs(p: RuleProblems, field: string, values: readonly unknown[] | undefined): Cidr[] {
  const out: Cidr[] = [];
  (values ?? []).forEach((v, i) => {
    const cidr = typeof v === 'string' ? parseCidr(v) : undefined;
    if (!cidr) p.add(`${field}[${i}]`, `${JSON.stringify(v)} is not an IP address or CIDR`);
    else out.push(cidr);
  });
  return out;
}

function strings(p: RuleProblems, field: string, values: readonly unknown[] | undefined): StringMatch[] {
  const out: StringMatch[] = [];
  (values ?? []).forEach((v, i) => {
    if (typeof v !== 'string') p.add(`${field}[${i}]`, `must be a string, got ${JSON.stringify(v)}`);
    else out.push(stringMatch(v));
  });
  return out;
}

function serviceAccounts(p: RuleProblems, field: string, values: readonly unknown[] | undefined, namespace: string): ServiceAccountMatch[] {
  const out: ServiceAccountMatch[] = [];
  (values ?? []).forEach((v, i) => {
    const parts = typeof v === 'string' ? v.split('/') : [];
    if (parts.length === 1 && parts[0]) out.push({ namespace, serviceAccount: parts[0] });
    else if (parts.length === 2 && parts[0] && parts[1]) out.push({ namespace: parts[0], serviceAccount: parts[1] });
    else p.add(`${field}[${i}]`, `${JSON.stringify(v)} must be "<namespace>/<name>" or "<name>"`);
  });
  return out;
}

function sourceMatch(p: RuleProblems, path: string, s: PolicySource, namespace: string): PolicyMatch {
  const m = emptyMatch();
  m.principals = strings(p, `${path}.principals`, s.principals);
  m.notPrincipals = strings(p, `${path}.notPrincipals`, s.notPrincipals);
  m.namespaces = strings(p, `${path}.namespaces`, s.namespaces);
  m.notNamespaces = strings(p, `${path}.notNamespaces`, s.notNamespaces);
  m.serviceAccounts = serviceAccounts(p, `${path}.serviceAccounts`, s.serviceAccounts, namespace);
  m.notServiceAccounts = serviceAccounts(p, `${path}.notServiceAccounts`, s.notServiceAccounts, namespace);
  m.sourceIps = cidrs(p, `${path}.ipBlocks`, s.ipBlocks);
  m.notSourceIps = cidrs(p, `${path}.notIpBlocks`, s.notIpBlocks);
  return m;
}

function whenMatch(p: RuleProblems, path: string, key: string, values: readonly unknown[] | undefined, notValues: readonly unknown[] | undefined): PolicyMatch {
  const m = emptyMatch();
  switch (key) {
    case 'source.ip':
      m.sourceIps = cidrs(p, `${path}.values`, values);
      m.notSourceIps = cidrs(p, `${path}.notValues`, notValues);
      break;
    case 'source.namespace':
      m.namespaces = strings(p, `${path}.values`, values);
      m.notNamespaces = strings(p, `${path}.notValues`, notValues);
      break;
    case 'source.principal':
      m.principals = strings(p, `${path}.values`, values);
      m.notPrincipals = strings(p, `${path}.notValues`, notValues);
      break;
    case 'destination.ip':
      m.destinationIps = cidrs(p, `${path}.values`, values);
      m.notDestinationIps = cidrs(p, `${path}.notValues`, notValues);
      break;
    case 'destination.port':
      m.destinationPorts = ports(p, `${path}.values`, values);
      m.notDestinationPorts = ports(p, `${path}.notValues`, notValues);
      break;
  }
  return m;
}

type Group = AuthorizationPolicy['rules'][number];

/** One rule → one group, or undefined when it is dropped. `l7` is set when L7 fields were found. */
function convertRule(rule: PolicyRule, path: string, action: 'ALLOW' | 'DENY', namespace: string, report: Report, flags: { l7: boolean }): Group | undefined {
  const p = new RuleProblems(path);
  const clauses: Array<{ matches: PolicyMatch[] }> = [];
  let l7 = false;
  const to = rule.to ?? [];
  const from = rule.from ?? [];
  const when = rule.when ?? [];
  for (const t of to) if (hasL7(undefined, t.operation)) l7 = true;
  for (const f of from) if (hasL7(f.source, undefined)) l7 = true;
  for (const w of when) if (!L4_WHEN_KEYS.has(w.key ?? '')) l7 = true;
  if (l7) flags.l7 = true;
  if (l7 && action === 'ALLOW') return undefined;

  if (to.length > 0) {
    clauses.push({
      matches: to.map((t, i) => {
        const m = emptyMatch();
        m.destinationPorts = ports(p, `to[${i}].operation.ports`, t.operation?.ports);
        m.notDestinationPorts = ports(p, `to[${i}].operation.notPorts`, t.operation?.notPorts);
        return m;
      }),
    });
  }
  if (from.length > 0) clauses.push({ matches: from.map((f, i) => sourceMatch(p, `from[${i}].source`, f.source ?? {}, namespace)) });
  when.forEach((w, i) => {
    if (!L4_WHEN_KEYS.has(w.key ?? '')) return;
    clauses.push({ matches: [whenMatch(p, `when[${i}]`, w.key ?? '', w.values, w.notValues)] });
  });

  if (p.list.length > 0) {
    for (const problem of p.list) report.problems.push(problem);
    // Fail closed: an ALLOW rule that cannot be read allows nothing; such a DENY rule denies everything.
    return action === 'ALLOW' ? undefined : { clauses: [] };
  }
  // A match left without fields is not sent, and a clause left without matches goes with it: what remains of a
  // DENY rule after its HTTP parts are dropped matches more, never less.
  const kept = clauses.map((c) => ({ matches: c.matches.filter((m) => !isEmptyMatch(m)) })).filter((c) => c.matches.length > 0);
  return { clauses: kept };
}

/** The policy ztunnel gets, or undefined when it is not sent. Problems and conditions go to `report`. */
export function convertAuthorizationPolicy(policy: KubeAuthorizationPolicy, settings: AuthorizationSettings, report: Report): AuthorizationPolicy | undefined {
  const name = policy.metadata?.name ?? '';
  const namespace = policy.metadata?.namespace ?? '';
  if (!name || !namespace) {
    report.problem('metadata', 'name and namespace are required');
    return undefined;
  }
  const spec = policy.spec ?? {};
  if (spec.targetRef || (spec.targetRefs && spec.targetRefs.length > 0)) return undefined;
  const actionText = spec.action ?? 'ALLOW';
  if (actionText === 'CUSTOM' || actionText === 'AUDIT') {
    report.condition(ZTUNNEL_ACCEPTED, 'False', 'UnsupportedValue', `ztunnel does not support the ${actionText} action`);
    return undefined;
  }
  if (actionText !== 'ALLOW' && actionText !== 'DENY') {
    report.problem('spec.action', `unknown action ${JSON.stringify(actionText)} (ALLOW, DENY, AUDIT, CUSTOM)`);
    report.condition(ZTUNNEL_ACCEPTED, 'False', 'UnsupportedValue', `unknown action ${JSON.stringify(actionText)}`);
    return undefined;
  }
  const action = actionText;
  const dryRun = policy.metadata?.annotations?.[DRY_RUN_ANNOTATION] === 'true';
  if (dryRun && !settings.enableDryRun) return undefined;
  const selector = spec.selector?.matchLabels ?? {};
  const scope = Object.keys(selector).length > 0 ? 'WORKLOAD_SELECTOR' : namespace === settings.rootNamespace ? 'GLOBAL' : 'NAMESPACE';
  const flags = { l7: false };
  const rules: Group[] = [];
  if (spec.rules !== undefined && spec.rules !== null && !Array.isArray(spec.rules)) {
    report.problem('spec.rules', 'must be a list');
  } else {
    (spec.rules ?? []).forEach((rule, i) => {
      const group = convertRule(rule ?? {}, `spec.rules[${i}]`, action, namespace, report, flags);
      if (group) rules.push(group);
    });
  }
  if (flags.l7) {
    report.condition(
      ZTUNNEL_ACCEPTED,
      'False',
      'UnsupportedValue',
      action === 'ALLOW'
        ? 'ztunnel does not support HTTP attributes (found: rules with HTTP attributes were dropped, allowing less); to enforce them, bind a waypoint'
        : 'ztunnel does not support HTTP attributes (found: their HTTP parts were dropped, denying more); to enforce them, bind a waypoint',
    );
  } else {
    report.condition(ZTUNNEL_ACCEPTED, 'True', 'Accepted', 'attached to ztunnel');
  }
  return { name, namespace, scope, action, rules, dryRun };
}

/** The selector of a WORKLOAD_SELECTOR policy (labels), else undefined. */
export function policySelector(policy: KubeAuthorizationPolicy): Readonly<Record<string, string>> | undefined {
  const labels = policy.spec?.selector?.matchLabels ?? {};
  return Object.keys(labels).length > 0 ? labels : undefined;
}

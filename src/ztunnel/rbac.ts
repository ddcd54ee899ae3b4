import { isIP } from 'node:net';
import { formatSpiffeId, type SpiffeId } from '../identity/spiffe.ts';
import { ipToBytes } from '../workload-api/convert.ts';
import type { AuthorizationPolicy, Cidr, PolicyMatch, ServiceAccountMatch, StringMatch } from '../workload-api/types.ts';

/** What L4 authorization looks at (reference ztunnel.md §5). */
export interface ConnectionAttributes {
  readonly sourceIp: string;
  /** The resolved destination pod IP. */
  readonly destinationIp: string;
  /** The final target port, after service-port translation (never 15008). */
  readonly destinationPort: number;
  /** The mTLS peer; absent for plaintext. */
  readonly peer?: SpiffeId;
}

export type AuthorizationDecision =
  | { readonly allowed: true; readonly reason: string }
  | { readonly allowed: false; readonly reason: string; readonly policy?: string };

export interface AuthorizationResult {
  readonly decision: AuthorizationDecision;
  /** Dry-run policies that would have matched: logged, never enforced. */
  readonly dryRunMatches: readonly string[];
}

const policyName = (p: AuthorizationPolicy) => `${p.namespace}/${p.name}`;

/**
 * Istio's L4 authorization as a pure function: a matching enforced DENY denies; with no enforced
 * ALLOW policy everything else is allowed; otherwise a matching ALLOW is needed.
 */
export function authorize(policies: readonly AuthorizationPolicy[], connection: ConnectionAttributes): AuthorizationResult {
  const dryRunMatches = policies.filter((p) => p.dryRun && policyMatches(p, connection)).map(policyName);
  const enforced = policies.filter((p) => !p.dryRun);
  const denying = enforced.find((p) => p.action === 'DENY' && policyMatches(p, connection));
  if (denying) return { decision: { allowed: false, reason: `explicitly denied by: ${policyName(denying)}`, policy: policyName(denying) }, dryRunMatches };
  const allows = enforced.filter((p) => p.action === 'ALLOW');
  if (allows.length === 0) return { decision: { allowed: true, reason: 'no allow policies apply' }, dryRunMatches };
  const allowing = allows.find((p) => policyMatches(p, connection));
  if (allowing) return { decision: { allowed: true, reason: `allowed by: ${policyName(allowing)}` }, dryRunMatches };
  return { decision: { allowed: false, reason: 'allow policies exist, but none allowed' }, dryRunMatches };
}

/** Any rule matches; a policy without rules never matches. */
export function policyMatches(policy: AuthorizationPolicy, c: ConnectionAttributes): boolean {
  // A rule matches when all its clauses do (none: always); a clause when any of its matches does (none: always).
  return policy.rules.some((rule) => rule.clauses.every((clause) => clause.matches.length === 0 || clause.matches.some((m) => matchMatches(m, c))));
}

function isEmpty(m: PolicyMatch): boolean {
  return (Object.values(m) as unknown[][]).every((list) => list.length === 0);
}

/** Both lists of one kind: (no positives or one matches) and (no negatives or none matches). */
function kind<T>(positive: readonly T[], negative: readonly T[], test: (item: T) => boolean): boolean {
  return (positive.length === 0 || positive.some(test)) && (negative.length === 0 || !negative.some(test));
}

/** Every populated kind must pass; a match with every list empty never satisfies its clause. */
export function matchMatches(m: PolicyMatch, c: ConnectionAttributes): boolean {
  if (isEmpty(m)) return false;
  const principal = c.peer ? formatSpiffeId(c.peer).slice('spiffe://'.length) : undefined;
  const namespace = c.peer?.namespace ?? '';
  return (
    kind(m.namespaces, m.notNamespaces, (s) => stringMatches(s, namespace)) &&
    kind(m.principals, m.notPrincipals, (s) => principal !== undefined && stringMatches(s, principal)) &&
    kind(m.serviceAccounts, m.notServiceAccounts, (sa) => serviceAccountMatches(sa, c.peer)) &&
    kind(m.sourceIps, m.notSourceIps, (cidr) => cidrContains(cidr, c.sourceIp)) &&
    kind(m.destinationIps, m.notDestinationIps, (cidr) => cidrContains(cidr, c.destinationIp)) &&
    kind(m.destinationPorts, m.notDestinationPorts, (port) => port === c.destinationPort)
  );
}

export function stringMatches(s: StringMatch, value: string): boolean {
  switch (s.kind) {
    case 'exact':
      return value === s.value;
    case 'prefix':
      return value.startsWith(s.value);
    case 'suffix':
      return value.endsWith(s.value);
    case 'presence':
      return value !== '';
  }
}

function serviceAccountMatches(sa: ServiceAccountMatch, peer: SpiffeId | undefined): boolean {
  return !!peer && peer.namespace === sa.namespace && peer.serviceAccount === sa.serviceAccount;
}

/** True when `ip` lies in `cidr`; different families never match. */
export function cidrContains(cidr: Cidr, ip: string): boolean {
  if (!isIP(ip) || isIP(ip) !== isIP(cidr.ip)) return false;
  const a = ipToBytes(cidr.ip);
  const b = ipToBytes(ip);
  let bits = cidr.prefixLength;
  for (let i = 0; i < a.length && bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if (((a[i] as number) & mask) !== ((b[i] as number) & mask)) return false;
  }
  return true;
}

import { BlockList, isIPv4, isIPv6 } from 'node:net';
import type { L7AuthorizationPolicy, L7Condition, L7Operation, L7Rule, L7Source } from '../workload-api/l7-types.ts';
import type { L7Request } from './request.ts';

/**
 * L7 authorization at the waypoint, with Istio's AuthorizationPolicy semantics:
 * - a matching DENY denies; then, when any ALLOW policy applies, one must match; with none, allow;
 * - a policy with no rules matches nothing; a rule matches when any `from` matches (or there is none),
 *   any `to` matches (or there is none) and every `when` holds;
 * - in a source or operation every field that is set must match (any of its values), and a `not_`
 *   field must match none of its values;
 * - strings are exact, `prefix*`, `*suffix` or `*` (anything non-empty); hosts ignore case and a port;
 * - dry-run policies are evaluated and reported, never enforced.
 * The denial answer is 403 with the body `RBAC: access denied`, as Envoy's.
 */

export const RBAC_DENIED_BODY = 'RBAC: access denied';

export type AuthzDecision =
  | { readonly allowed: true; readonly policy?: string; readonly dryRun: readonly string[] }
  | { readonly allowed: false; readonly policy: string; readonly reason: string; readonly dryRun: readonly string[] };

/** Istio's string match: exact, `*`, `prefix*` or `*suffix`. */
export function istioStringMatch(pattern: string, value: string): boolean {
  if (pattern === '*') return value !== '';
  if (pattern.length > 1 && pattern.endsWith('*')) return value.startsWith(pattern.slice(0, -1));
  if (pattern.length > 1 && pattern.startsWith('*')) return value.endsWith(pattern.slice(1));
  return pattern === value;
}

const anyOf = (patterns: readonly string[], value: string | undefined, match = istioStringMatch): boolean =>
  value !== undefined && patterns.some((p) => match(p, value));

/** A field matches when it is empty or some value matches; its not-field when empty or none matches. */
function field(values: readonly string[], notValues: readonly string[], value: string | undefined, match = istioStringMatch): boolean {
  if (values.length > 0 && !anyOf(values, value, match)) return false;
  if (notValues.length > 0 && anyOf(notValues, value, match)) return false;
  return true;
}

function inCidr(block: string, ip: string): boolean {
  const [addr = '', len] = block.split('/');
  const family = isIPv4(addr) ? 'ipv4' : isIPv6(addr) ? 'ipv6' : undefined;
  const ipFamily = isIPv4(ip) ? 'ipv4' : isIPv6(ip) ? 'ipv6' : undefined;
  if (!family || family !== ipFamily) return false;
  const list = new BlockList();
  list.addSubnet(addr, len === undefined ? (family === 'ipv4' ? 32 : 128) : Number(len), family);
  return list.check(ip, family);
}

const hostMatch = (pattern: string, host: string): boolean => istioStringMatch(pattern.toLowerCase(), host.toLowerCase().replace(/:\d+$/, ''));

function sourceMatches(s: L7Source, r: L7Request): boolean {
  const principal = r.source.principal || undefined;
  return (
    field(s.principals, s.notPrincipals, principal) &&
    field(s.requestPrincipals, s.notRequestPrincipals, r.auth?.principal) &&
    field(s.namespaces, s.notNamespaces, r.source.namespace || undefined) &&
    field(s.ipBlocks, s.notIpBlocks, r.source.ip || undefined, inCidr)
  );
}

function operationMatches(o: L7Operation, r: L7Request): boolean {
  const port = String(r.port);
  return (
    field(o.hosts, o.notHosts, r.authority, hostMatch) &&
    field(o.ports.map(String), o.notPorts.map(String), port, (a, b) => a === b) &&
    field(o.methods, o.notMethods, r.method) &&
    field(o.paths, o.notPaths, r.path)
  );
}

/** The values a `when` key names for this request (several for list claims); undefined when absent. */
function conditionValues(key: string, r: L7Request): readonly string[] | undefined {
  const header = /^request\.headers\[(.+)\]$/.exec(key);
  if (header) {
    const v = r.headers.get((header[1] as string).toLowerCase());
    return v === undefined ? undefined : [v];
  }
  const claim = /^request\.auth\.claims((?:\[[^\]]+\])+)$/.exec(key);
  if (claim) {
    if (!r.auth) return undefined;
    let value: unknown = r.auth.claims;
    for (const [, part] of (claim[1] as string).matchAll(/\[([^\]]+)\]/g)) {
      value = typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>)[part as string] : undefined;
    }
    if (typeof value === 'string') return [value];
    if (Array.isArray(value)) return value.filter((v): v is string => typeof v === 'string');
    if (typeof value === 'number' || typeof value === 'boolean') return [String(value)];
    return undefined;
  }
  switch (key) {
    case 'source.ip':
    case 'remote.ip':
      return r.source.ip ? [r.source.ip] : undefined;
    case 'source.namespace':
      return r.source.namespace ? [r.source.namespace] : undefined;
    case 'source.principal':
      return r.source.principal ? [r.source.principal] : undefined;
    case 'request.auth.principal':
      return r.auth ? [r.auth.principal] : undefined;
    case 'request.auth.audiences':
      return r.auth?.audiences;
    case 'request.auth.presenter':
      return r.auth?.presenter ? [r.auth.presenter] : undefined;
    case 'destination.port':
      return [String(r.port)];
    default:
      return undefined; // destination.ip, connection.sni: not known inside the tunnel
  }
}

function conditionHolds(c: L7Condition, r: L7Request): boolean {
  const values = conditionValues(c.key, r);
  const match = c.key === 'source.ip' || c.key === 'remote.ip' ? inCidr : istioStringMatch;
  const some = (patterns: readonly string[]) => values !== undefined && values.some((v) => patterns.some((p) => match(p, v)));
  if (c.values.length > 0 && !some(c.values)) return false;
  if (c.notValues.length > 0 && some(c.notValues)) return false;
  return true;
}

export function ruleMatches(rule: L7Rule, r: L7Request): boolean {
  if (rule.from.length > 0 && !rule.from.some((s) => sourceMatches(s, r))) return false;
  if (rule.to.length > 0 && !rule.to.some((o) => operationMatches(o, r))) return false;
  return rule.when.every((c) => conditionHolds(c, r));
}

const policyMatches = (p: L7AuthorizationPolicy, r: L7Request): boolean => p.rules.some((rule) => ruleMatches(rule, r));
const nameOf = (p: L7AuthorizationPolicy): string => `${p.namespace}/${p.name}`;

export function authorizeRequest(policies: readonly L7AuthorizationPolicy[], r: L7Request): AuthzDecision {
  const dryRun = policies.filter((p) => p.dryRun && policyMatches(p, r)).map((p) => `${p.action}:${nameOf(p)}`);
  const enforced = policies.filter((p) => !p.dryRun);
  const deny = enforced.find((p) => p.action === 'DENY' && policyMatches(p, r));
  if (deny) return { allowed: false, policy: nameOf(deny), reason: 'matched a DENY policy', dryRun };
  const allows = enforced.filter((p) => p.action === 'ALLOW');
  if (allows.length === 0) return { allowed: true, dryRun };
  const allow = allows.find((p) => policyMatches(p, r));
  if (allow) return { allowed: true, policy: nameOf(allow), dryRun };
  return { allowed: false, policy: allows.map(nameOf).join(','), reason: 'no ALLOW policy matched', dryRun };
}

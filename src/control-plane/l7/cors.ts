import type { CorsPolicy, L7StringMatch } from '../../workload-api/l7-types.ts';
import { istioDurationMs } from './destination-rule.ts';

/**
 * CORS policies of the two route APIs → the waypoint's CorsPolicy (Envoy's route CORS policy), pure. A bad
 * field (an invalid regular expression, an unknown `unmatchedPreflights`, a malformed origin) is a problem with
 * its path; that field (or that origin) is left out and the rest of the policy, and the route, are kept.
 */

const METHOD = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
const HEADER = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

export interface StringMatchSpec {
  readonly exact?: string;
  readonly prefix?: string;
  readonly regex?: string;
}

/** Istio's VirtualService `corsPolicy` (networking.istio.io/v1). */
export interface VirtualServiceCorsSpec {
  readonly allowOrigins?: readonly StringMatchSpec[];
  /** Deprecated list of exact origins, used when `allowOrigins` is absent. */
  readonly allowOrigin?: readonly string[];
  readonly allowMethods?: readonly string[];
  readonly allowHeaders?: readonly string[];
  readonly exposeHeaders?: readonly string[];
  readonly maxAge?: string;
  readonly allowCredentials?: boolean;
  readonly unmatchedPreflights?: string;
}

/** Gateway API's HTTPRoute CORS filter (`type: CORS`, `cors:`; HTTPCORSFilter). */
export interface GatewayCorsSpec {
  readonly allowOrigins?: readonly string[];
  readonly allowMethods?: readonly string[];
  readonly allowHeaders?: readonly string[];
  readonly exposeHeaders?: readonly string[];
  readonly maxAge?: number;
  readonly allowCredentials?: boolean;
}

function tokens(list: readonly string[] | undefined, pattern: RegExp, what: string, where: string, problems: string[]): string[] {
  return (list ?? []).flatMap((v, i) => {
    if (v === '*' || pattern.test(v)) return [v];
    problems.push(`${where}[${i}]: ${JSON.stringify(v)} is not ${what}`);
    return [];
  });
}

function regex(value: string, where: string, problems: string[]): L7StringMatch | undefined {
  try {
    return { kind: 'regex', value, regex: new RegExp(`^(?:${value})$`, 'u') };
  } catch (err) {
    problems.push(`${where}.regex: invalid regular expression: ${(err as Error).message}`);
    return undefined;
  }
}

export function virtualServiceCors(spec: VirtualServiceCorsSpec, where: string, problems: string[]): CorsPolicy {
  let allowOrigins: L7StringMatch[];
  if (spec.allowOrigins !== undefined) {
    allowOrigins = spec.allowOrigins.flatMap((m, i) => {
      const at = `${where}.allowOrigins[${i}]`;
      if (m.exact !== undefined) return [{ kind: 'exact' as const, value: m.exact }];
      if (m.prefix !== undefined) return [{ kind: 'prefix' as const, value: m.prefix }];
      if (m.regex !== undefined) {
        const r = regex(m.regex, at, problems);
        return r ? [r] : [];
      }
      problems.push(`${at}: one of exact, prefix or regex is needed`);
      return [];
    });
  } else {
    allowOrigins = (spec.allowOrigin ?? []).map((o) => ({ kind: 'exact', value: o }));
  }
  let maxAgeSeconds: number | undefined;
  if (spec.maxAge !== undefined) {
    const ms = istioDurationMs(spec.maxAge);
    if (ms === undefined) problems.push(`${where}.maxAge: ${JSON.stringify(spec.maxAge)} is not a duration`);
    else maxAgeSeconds = Math.floor(ms / 1000);
  }
  let forwardNotMatchingPreflights = true;
  const unmatched = spec.unmatchedPreflights;
  if (unmatched === 'IGNORE') forwardNotMatchingPreflights = false;
  else if (unmatched !== undefined && unmatched !== 'FORWARD' && unmatched !== 'UNSPECIFIED') {
    problems.push(`${where}.unmatchedPreflights: ${JSON.stringify(unmatched)} is not FORWARD or IGNORE`);
  }
  return {
    allowOrigins,
    allowMethods: tokens(spec.allowMethods, METHOD, 'a method', `${where}.allowMethods`, problems),
    allowHeaders: tokens(spec.allowHeaders, HEADER, 'a header name', `${where}.allowHeaders`, problems).map((h) => h.toLowerCase()),
    exposeHeaders: tokens(spec.exposeHeaders, HEADER, 'a header name', `${where}.exposeHeaders`, problems).map((h) => h.toLowerCase()),
    ...(maxAgeSeconds !== undefined ? { maxAgeSeconds } : {}),
    allowCredentials: spec.allowCredentials === true,
    forwardNotMatchingPreflights,
  };
}

const ORIGIN = /^[a-zA-Z][a-zA-Z0-9+.-]*:\/\/(\*\.)?[^/*?#\s]+$/;

/**
 * Gateway API origins: `*` (every origin), `scheme://host[:port]`, or a host starting with `*.` (one or more
 * subdomain labels). `maxAge` defaults to 5 seconds as the API says.
 */
export function gatewayCors(spec: GatewayCorsSpec, where: string, problems: string[]): CorsPolicy {
  const allowOrigins = (spec.allowOrigins ?? []).flatMap((o, i): L7StringMatch[] => {
    if (o === '*') return [{ kind: 'exact', value: '*' }];
    if (!ORIGIN.test(o)) {
      problems.push(`${where}.allowOrigins[${i}]: ${JSON.stringify(o)} is not "*" or scheme://host[:port]`);
      return [];
    }
    if (!o.includes('*')) return [{ kind: 'exact', value: o }];
    const [scheme, host] = o.split('://*.') as [string, string];
    const value = `${escape(scheme)}://[^/]+\\.${escape(host)}`;
    return [{ kind: 'regex', value, regex: new RegExp(`^(?:${value})$`, 'u') }];
  });
  const maxAge = spec.maxAge ?? 5;
  if (!(Number.isInteger(maxAge) && maxAge >= 0)) problems.push(`${where}.maxAge: ${maxAge} is not a whole number of seconds`);
  return {
    allowOrigins,
    allowMethods: tokens(spec.allowMethods, METHOD, 'a method', `${where}.allowMethods`, problems),
    allowHeaders: tokens(spec.allowHeaders, HEADER, 'a header name', `${where}.allowHeaders`, problems).map((h) => h.toLowerCase()),
    exposeHeaders: tokens(spec.exposeHeaders, HEADER, 'a header name', `${where}.exposeHeaders`, problems).map((h) => h.toLowerCase()),
    ...(Number.isInteger(maxAge) && maxAge >= 0 ? { maxAgeSeconds: maxAge } : {}),
    allowCredentials: spec.allowCredentials === true,
    forwardNotMatchingPreflights: true,
  };
}

const escape = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&');

import type { CorsPolicy } from '../workload-api/l7-types.ts';
import { stringMatches } from './router.ts';

/**
 * Envoy's CORS filter with a route policy, as a pure function of the policy and the request (the filter runs
 * after the route is chosen and before fault injection; a redirect route bypasses it):
 * - no policy, or no (or an empty) `Origin`: nothing to do;
 * - a preflight (OPTIONS with `Origin` and `Access-Control-Request-Method`) is answered 200 by the waypoint:
 *   Allow-Origin (the request's origin, when allowed), Allow-Credentials, Allow-Methods, Allow-Headers (a
 *   lone `*` echoes what was requested), Max-Age — unless the origin is not allowed and the policy forwards
 *   such preflights (the default), then it goes upstream untouched;
 * - any other request from an allowed origin is forwarded and its response gets Allow-Origin (the origin),
 *   Allow-Credentials and Expose-Headers; from an origin not allowed, no CORS header is added.
 */

export type CorsVerdict =
  | { readonly kind: 'none' }
  | { readonly kind: 'preflight'; readonly headers: Readonly<Record<string, string>> }
  | { readonly kind: 'forward'; readonly responseHeaders: ReadonlyArray<readonly [string, string]> };

const NONE: CorsVerdict = { kind: 'none' };

export function originAllowed(policy: CorsPolicy, origin: string): boolean {
  return policy.allowOrigins.some((m) => stringMatches(m, '*') || stringMatches(m, origin));
}

export function evaluateCors(policy: CorsPolicy | undefined, method: string, headers: ReadonlyMap<string, string>): CorsVerdict {
  if (!policy) return NONE;
  const origin = headers.get('origin');
  if (!origin) return NONE;
  const allowed = originAllowed(policy, origin);
  const requestedMethod = headers.get('access-control-request-method');
  if (method !== 'OPTIONS' || !requestedMethod) {
    if (!allowed) return { kind: 'forward', responseHeaders: [] };
    const out: Array<readonly [string, string]> = [['access-control-allow-origin', origin]];
    if (policy.allowCredentials) out.push(['access-control-allow-credentials', 'true']);
    if (policy.exposeHeaders.length > 0) out.push(['access-control-expose-headers', policy.exposeHeaders.join(',')]);
    return { kind: 'forward', responseHeaders: out };
  }
  if (!allowed && policy.forwardNotMatchingPreflights) return { kind: 'forward', responseHeaders: [] };
  const out: Record<string, string> = {};
  if (allowed) out['access-control-allow-origin'] = origin;
  if (policy.allowCredentials) out['access-control-allow-credentials'] = 'true';
  const methods = policy.allowMethods.join(',');
  if (methods) out['access-control-allow-methods'] = methods === '*' ? requestedMethod : methods;
  const allowHeaders = policy.allowHeaders.join(',');
  if (allowHeaders) {
    const requested = headers.get('access-control-request-headers');
    if (allowHeaders !== '*') out['access-control-allow-headers'] = allowHeaders;
    else if (requested) out['access-control-allow-headers'] = requested;
  }
  if (policy.maxAgeSeconds !== undefined) out['access-control-max-age'] = String(policy.maxAgeSeconds);
  return { kind: 'preflight', headers: out };
}

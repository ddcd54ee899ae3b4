import type { OutlierDetection } from '../workload-api/l7-types.ts';

/**
 * Outlier detection as Envoy does it for Istio's DestinationRule, as pure functions over a per-endpoint
 * record: consecutive 5xx (answers ≥ 500 and local failures: connect failures, resets, timeouts) and
 * consecutive gateway errors (502/503/504 and local failures) eject an endpoint for
 * `baseEjectionTime × times ejected`; at most `maxEjectionPercent` of the endpoints are out at once,
 * but one may always be; any success resets the counters. When fewer than `minHealthPercent` of the
 * endpoints are healthy, ejections are ignored (Istio's panic threshold).
 */

export interface EndpointHealth {
  readonly consecutive5xx: number;
  readonly consecutiveGateway: number;
  /** Epoch ms until which the endpoint is out; 0 when in. */
  readonly ejectedUntil: number;
  readonly ejections: number;
}

export const HEALTHY: EndpointHealth = Object.freeze({ consecutive5xx: 0, consecutiveGateway: 0, ejectedUntil: 0, ejections: 0 });

export type TryResult = { readonly kind: 'response'; readonly status: number } | { readonly kind: 'local-failure' };

export function isEjected(h: EndpointHealth | undefined, now: number): boolean {
  return h !== undefined && h.ejectedUntil > now;
}

/**
 * The endpoint's record after one result. `ejectedNow` and `total` are the endpoints out and known in
 * its destination (for the max-ejection cap).
 */
export function recordResult(h: EndpointHealth, result: TryResult, policy: OutlierDetection, now: number, ejectedNow: number, total: number): { health: EndpointHealth; ejected: boolean } {
  const local = result.kind === 'local-failure';
  const status = result.kind === 'response' ? result.status : 0;
  const is5xx = local || status >= 500;
  const isGateway = local || status === 502 || status === 503 || status === 504;
  if (!is5xx) return { health: { ...h, consecutive5xx: 0, consecutiveGateway: 0 }, ejected: false };
  const next = { ...h, consecutive5xx: h.consecutive5xx + 1, consecutiveGateway: isGateway ? h.consecutiveGateway + 1 : 0 };
  if (isEjected(h, now)) return { health: next, ejected: false };
  const trip =
    (policy.consecutive5xxErrors > 0 && next.consecutive5xx >= policy.consecutive5xxErrors) ||
    (policy.consecutiveGatewayErrors > 0 && next.consecutiveGateway >= policy.consecutiveGatewayErrors);
  if (!trip) return { health: next, ejected: false };
  const cap = Math.max(1, Math.floor((total * policy.maxEjectionPercent) / 100));
  if (ejectedNow >= cap) return { health: next, ejected: false };
  const ejections = h.ejections + 1;
  return { health: { consecutive5xx: 0, consecutiveGateway: 0, ejections, ejectedUntil: now + policy.baseEjectionTimeMs * ejections }, ejected: true };
}

/** The endpoints to balance over: those not ejected, unless that leaves fewer than `minHealthPercent`. */
export function usable<T>(endpoints: readonly T[], ejected: (e: T) => boolean, minHealthPercent: number): readonly T[] {
  const healthy = endpoints.filter((e) => !ejected(e));
  if (endpoints.length === 0) return healthy;
  if ((healthy.length * 100) / endpoints.length < minHealthPercent) return endpoints;
  return healthy;
}

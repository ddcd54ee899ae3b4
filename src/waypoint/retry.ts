import type { RetryPolicy } from '../workload-api/l7-types.ts';

/**
 * Retry decisions with Envoy's `retry_on` semantics (Istio's VirtualService `retries.retryOn`):
 * - `5xx`: any 5xx answer, and no answer at all (reset, connect failure, per-try timeout);
 * - `gateway-error`: 502, 503, 504, and connect failures and per-try timeouts;
 * - `reset`: no answer (reset, disconnect, per-try timeout, connect failure);
 * - `connect-failure`; `refused-stream` (the upstream reset the stream with REFUSED_STREAM);
 * - `retriable-4xx`: 409; `retriable-status-codes`: the policy's list;
 * - gRPC: `cancelled` (1), `deadline-exceeded` (4), `resource-exhausted` (8), `unavailable` (14),
 *   from `grpc-status` of the response headers (a trailers-only answer).
 */

export type TryOutcome =
  | { readonly kind: 'response'; readonly status: number; readonly grpcStatus?: number | undefined }
  | { readonly kind: 'connect-failure' }
  | { readonly kind: 'reset'; readonly refusedStream?: boolean }
  | { readonly kind: 'per-try-timeout' };

const GRPC_CONDITIONS: Readonly<Record<string, number>> = { cancelled: 1, 'deadline-exceeded': 4, 'resource-exhausted': 8, unavailable: 14 };

/** Whether `outcome` is one the policy retries on (the attempt count is checked by `shouldRetry`). */
export function retriable(policy: RetryPolicy, outcome: TryOutcome): boolean {
  const on = new Set<string>(policy.retryOn);
  switch (outcome.kind) {
    case 'connect-failure':
      return on.has('5xx') || on.has('gateway-error') || on.has('reset') || on.has('connect-failure');
    case 'reset':
      return on.has('5xx') || on.has('reset') || (outcome.refusedStream === true && on.has('refused-stream'));
    case 'per-try-timeout':
      return on.has('5xx') || on.has('gateway-error') || on.has('reset');
    case 'response': {
      const s = outcome.status;
      if (on.has('5xx') && s >= 500 && s <= 599) return true;
      if (on.has('gateway-error') && (s === 502 || s === 503 || s === 504)) return true;
      if (on.has('retriable-4xx') && s === 409) return true;
      if (on.has('retriable-status-codes') && policy.retriableStatusCodes.includes(s)) return true;
      if (outcome.grpcStatus !== undefined) {
        for (const [name, code] of Object.entries(GRPC_CONDITIONS)) if (on.has(name) && outcome.grpcStatus === code) return true;
      }
      return false;
    }
  }
}

export interface RetryState {
  /** Retries already made for this request. */
  readonly retriesDone: number;
  /** Retries in flight across the whole destination, and its `maxRetries` budget (undefined: no limit). */
  readonly activeRetries?: number;
  readonly maxRetries?: number | undefined;
}

export type RetryDecision = { readonly retry: true } | { readonly retry: false; readonly reason: 'not-retriable' | 'attempts-exhausted' | 'budget-exhausted' };

export function shouldRetry(policy: RetryPolicy, outcome: TryOutcome, state: RetryState): RetryDecision {
  if (!retriable(policy, outcome)) return { retry: false, reason: 'not-retriable' };
  if (state.retriesDone >= policy.attempts) return { retry: false, reason: 'attempts-exhausted' };
  if (state.maxRetries !== undefined && (state.activeRetries ?? 0) >= state.maxRetries) return { retry: false, reason: 'budget-exhausted' };
  return { retry: true };
}

/** Envoy's fully jittered exponential backoff: base 25 ms, at most 10× the base; `r` in [0, 1). */
export function retryBackoffMs(retriesDone: number, r: number, baseMs = 25): number {
  const ceiling = Math.min(baseMs * 2 ** retriesDone, baseMs * 10);
  return Math.floor(r * ceiling);
}

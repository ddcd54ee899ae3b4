import test from 'ava';
import type { RetryOn, RetryPolicy } from '../../src/workload-api/l7-types.ts';
import { retriable, retryBackoffMs, shouldRetry, type TryOutcome } from '../../src/waypoint/retry.ts';

const policy = (retryOn: RetryOn[], extra: Partial<RetryPolicy> = {}): RetryPolicy => ({ attempts: 2, retryOn, retriableStatusCodes: [], ...extra });
const r = (status: number, grpcStatus?: number): TryOutcome => ({ kind: 'response', status, grpcStatus });

const table: Array<[RetryOn[], TryOutcome, boolean, Partial<RetryPolicy>?]> = [
  [['5xx'], r(500), true], [['5xx'], r(503), true], [['5xx'], r(404), false], [['5xx'], { kind: 'reset' }, true],
  [['5xx'], { kind: 'connect-failure' }, true], [['5xx'], { kind: 'per-try-timeout' }, true],
  [['gateway-error'], r(502), true], [['gateway-error'], r(503), true], [['gateway-error'], r(504), true], [['gateway-error'], r(500), false],
  [['gateway-error'], { kind: 'connect-failure' }, true], [['gateway-error'], { kind: 'reset' }, false],
  [['reset'], { kind: 'reset' }, true], [['reset'], r(503), false], [['reset'], { kind: 'per-try-timeout' }, true],
  [['connect-failure'], { kind: 'connect-failure' }, true], [['connect-failure'], { kind: 'reset' }, false], [['connect-failure'], r(503), false],
  [['refused-stream'], { kind: 'reset', refusedStream: true }, true], [['refused-stream'], { kind: 'reset' }, false],
  [['unavailable'], r(200, 14), true], [['unavailable'], r(200, 13), false], [['unavailable'], r(503), false],
  [['cancelled'], r(200, 1), true], [['deadline-exceeded'], r(200, 4), true], [['resource-exhausted'], r(200, 8), true],
  [['retriable-4xx'], r(409), true], [['retriable-4xx'], r(400), false],
  [['retriable-status-codes'], r(418), true, { retriableStatusCodes: [418] }], [['retriable-status-codes'], r(503), false, { retriableStatusCodes: [418] }],
  [[], r(503), false],
];
for (const [on, outcome, want, extra] of table) {
  test(`retryOn ${on.join(',') || '(none)'} on ${JSON.stringify(outcome)} → ${want}`, (t) => {
    t.is(retriable(policy(on, extra), outcome), want);
  });
}

test('retries stop at the attempt limit and at the destination budget', (t) => {
  const p = policy(['5xx']);
  t.deepEqual(shouldRetry(p, r(503), { retriesDone: 0 }), { retry: true });
  t.deepEqual(shouldRetry(p, r(503), { retriesDone: 1 }), { retry: true });
  t.deepEqual(shouldRetry(p, r(503), { retriesDone: 2 }), { retry: false, reason: 'attempts-exhausted' });
  t.deepEqual(shouldRetry(p, r(200), { retriesDone: 0 }), { retry: false, reason: 'not-retriable' });
  t.deepEqual(shouldRetry(p, r(503), { retriesDone: 0, activeRetries: 3, maxRetries: 3 }), { retry: false, reason: 'budget-exhausted' });
});

test('backoff is jittered under an exponential ceiling capped at 10× the base', (t) => {
  t.is(retryBackoffMs(0, 0.999), 24);
  t.is(retryBackoffMs(2, 0.5), 50);
  t.is(retryBackoffMs(10, 0.999), 249);
  t.is(retryBackoffMs(3, 0), 0);
});

import { createHash } from 'node:crypto';
import type { LoadBalancerPolicy } from '../workload-api/l7-types.ts';
import { cookie, queryParam, type L7Request } from './request.ts';

/**
 * Endpoint choice for one request, as a pure function: the caller passes the candidates (already
 * filtered to healthy, not ejected, in the subset), the round-robin cursor, the requests in flight per
 * endpoint and random numbers, and gets an index back.
 * - round robin: the cursor modulo the candidates (the caller advances it);
 * - least request: Envoy's power of two choices, the one with fewer requests in flight;
 * - random;
 * - consistent hash (header, cookie, query parameter or source IP): rendezvous hashing over the
 *   endpoint keys, so an endpoint leaving moves only its own share; no hash key means random, as Envoy.
 */

export interface LbCandidate {
  /** A stable key (workload uid). */
  readonly key: string;
  readonly active: number;
  /** Capacity weight (≥ 1). */
  readonly weight: number;
}

export interface LbInput {
  readonly policy: LoadBalancerPolicy | undefined;
  readonly candidates: readonly LbCandidate[];
  readonly request: L7Request;
  readonly cursor: number;
  readonly random: () => number;
}

export function hashKey(policy: LoadBalancerPolicy, request: L7Request): string | undefined {
  if (policy.kind !== 'hash') return undefined;
  const key = policy.key;
  switch (key.kind) {
    case 'header':
      return request.headers.get(key.name);
    case 'cookie':
      return cookie(request.headers, key.name);
    case 'query':
      return queryParam(request.query, key.name);
    case 'source-ip':
      return request.source.ip || undefined;
  }
}

function score(key: string, endpoint: string): bigint {
  return createHash('sha256').update(key).update('\0').update(endpoint).digest().readBigUInt64BE(0);
}

export function chooseEndpoint(input: LbInput): number | undefined {
  const { candidates, random } = input;
  if (candidates.length === 0) return undefined;
  if (candidates.length === 1) return 0;
  const policy = input.policy ?? { kind: 'least-request' };
  switch (policy.kind) {
    case 'round-robin':
      return ((input.cursor % candidates.length) + candidates.length) % candidates.length;
    case 'random':
      return Math.floor(random() * candidates.length);
    case 'least-request': {
      const a = Math.floor(random() * candidates.length);
      let b = Math.floor(random() * (candidates.length - 1));
      if (b >= a) b++;
      const ca = candidates[a] as LbCandidate;
      const cb = candidates[b] as LbCandidate;
      return ca.active / ca.weight <= cb.active / cb.weight ? a : b;
    }
    case 'hash': {
      const key = hashKey(policy, input.request);
      if (key === undefined) return Math.floor(random() * candidates.length);
      let best = 0;
      let bestScore = -1n;
      candidates.forEach((c, i) => {
        const s = score(key, c.key);
        if (s > bestScore) {
          bestScore = s;
          best = i;
        }
      });
      return best;
    }
  }
}

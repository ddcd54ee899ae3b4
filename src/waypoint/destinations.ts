import type { L7Reader } from '../workload-api/l7-store.ts';
import type { BackendRef, ConnectionPool, Subset, TrafficPolicy } from '../workload-api/l7-types.ts';
import type { StateReader } from '../workload-api/store.ts';
import type { Service, Workload } from '../workload-api/types.ts';
import { chooseEndpoint } from './load-balancer.ts';
import { HEALTHY, isEjected, recordResult, usable, type EndpointHealth, type TryResult } from './outlier.ts';
import type { L7Request } from './request.ts';

/**
 * The waypoint's upstream side for one destination (service, port, subset) — Envoy's
 * `inbound-vip|<port>|http/<subset>|<host>` cluster: its endpoints from the workload store, the
 * DestinationPolicy (subset's traffic policy over the service's), the round-robin cursor, requests in
 * flight per endpoint, outlier records and the connection-pool admission. The choices themselves are
 * the pure functions of load-balancer.ts and outlier.ts.
 */

export interface Endpoint {
  readonly workload: Workload;
  readonly ip: string;
  readonly port: number;
}

export type PickResult =
  | { readonly ok: true; readonly endpoint: Endpoint; readonly service: Service; readonly cluster: string }
  | { readonly ok: false; readonly reason: 'unknown-service' | 'no-healthy-upstream'; readonly message: string; readonly cluster: string };

/** The labels a subset's `labels` are compared with: what the workload API carries of a pod's labels. */
export function workloadLabels(w: Workload): ReadonlyMap<string, string> {
  return new Map([
    ['app', w.canonicalName],
    ['version', w.canonicalRevision],
    ['service.istio.io/canonical-name', w.canonicalName],
    ['service.istio.io/canonical-revision', w.canonicalRevision],
  ]);
}

export function inSubset(subset: Subset, w: Workload): boolean {
  if (subset.workloadUids.length > 0) return subset.workloadUids.includes(w.uid);
  const labels = workloadLabels(w);
  for (const [k, v] of subset.labels) if (labels.get(k) !== v) return false;
  return true;
}

/** The subset's traffic policy over the service's, field by field (DestinationRule semantics). */
export function effectivePolicy(service: TrafficPolicy | undefined, subset: TrafficPolicy | undefined): TrafficPolicy {
  return { ...service, ...Object.fromEntries(Object.entries(subset ?? {}).filter(([, v]) => v !== undefined)) };
}

export const clusterName = (b: BackendRef): string => `inbound-vip|${b.port}|http${b.subset ? `/${b.subset}` : ''}|${b.hostname}`;

interface ClusterState {
  cursor: number;
  readonly active: Map<string, number>;
  readonly health: Map<string, EndpointHealth>;
  /** Requests in flight and waiting, for the connection pool. */
  inFlight: number;
  readonly waiting: Array<() => void>;
  activeRetries: number;
}

export type Admission = { readonly ok: true; readonly release: () => void } | { readonly ok: false };

export class Destinations {
  readonly #state: StateReader;
  readonly #l7: L7Reader;
  readonly #network: string;
  readonly #clusters = new Map<string, ClusterState>();
  readonly #random: () => number;
  readonly #now: () => number;

  constructor(options: { state: StateReader; l7: L7Reader; network: string; random?: () => number; now?: () => number }) {
    this.#state = options.state;
    this.#l7 = options.l7;
    this.#network = options.network;
    this.#random = options.random ?? Math.random;
    this.#now = options.now ?? Date.now;
  }

  #cluster(name: string): ClusterState {
    let c = this.#clusters.get(name);
    if (!c) this.#clusters.set(name, (c = { cursor: 0, active: new Map(), health: new Map(), inFlight: 0, waiting: [], activeRetries: 0 }));
    return c;
  }

  policy(b: BackendRef): TrafficPolicy {
    const dp = this.#l7.destinationPolicy(b.namespace, b.hostname);
    const subset = b.subset ? dp?.subsets.find((s) => s.name === b.subset) : undefined;
    return effectivePolicy(dp?.trafficPolicy, subset?.trafficPolicy);
  }

  /** Every endpoint of the destination with its target port, healthy or not, in the subset. */
  endpoints(b: BackendRef): { service: Service | undefined; endpoints: Endpoint[] } {
    const service = this.#state.service(b.namespace, b.hostname);
    if (!service) return { service, endpoints: [] };
    const dp = this.#l7.destinationPolicy(b.namespace, b.hostname);
    const subset = b.subset ? dp?.subsets.find((s) => s.name === b.subset) : undefined;
    const servicePort = service.ports.find((p) => p.servicePort === b.port);
    const out: Endpoint[] = [];
    for (const { workload, ports } of this.#state.endpoints(b.namespace, b.hostname)) {
      if (b.subset && (!subset || !inSubset(subset, workload))) continue;
      if (workload.network !== this.#network && workload.network !== '') continue;
      const own = ports.find((p) => p.servicePort === b.port);
      const port = own?.targetPort || servicePort?.targetPort || b.port;
      const ip = workload.addresses[0];
      if (ip) out.push({ workload, ip, port });
    }
    return { service, endpoints: out };
  }

  pick(b: BackendRef, request: L7Request, exclude: ReadonlySet<string> = new Set()): PickResult {
    const cluster = clusterName(b);
    const { service, endpoints } = this.endpoints(b);
    if (!service) return { ok: false, reason: 'unknown-service', message: `no service ${b.namespace}/${b.hostname}`, cluster };
    const state = this.#cluster(cluster);
    const policy = this.policy(b);
    const now = this.#now();
    const healthy = endpoints.filter((e) => e.workload.status === 'HEALTHY');
    let candidates = usable(healthy, (e) => isEjected(state.health.get(e.workload.uid), now), policy.outlierDetection?.minHealthPercent ?? 0);
    // A retry prefers endpoints not tried yet (Envoy's previous-hosts predicate), when any are left.
    const fresh = candidates.filter((e) => !exclude.has(e.workload.uid));
    if (fresh.length > 0) candidates = fresh;
    const index = chooseEndpoint({
      policy: policy.loadBalancer,
      candidates: candidates.map((e) => ({ key: e.workload.uid, active: state.active.get(e.workload.uid) ?? 0, weight: Math.max(1, e.workload.capacity) })),
      request,
      cursor: state.cursor++,
      random: this.#random,
    });
    const endpoint = index === undefined ? undefined : candidates[index];
    if (!endpoint) return { ok: false, reason: 'no-healthy-upstream', message: `no healthy endpoint for ${cluster}`, cluster };
    return { ok: true, endpoint, service, cluster };
  }

  /** Marks a request in flight on an endpoint; the returned function ends it with its result (for outlier detection). */
  begin(cluster: string, b: BackendRef, uid: string): (result: TryResult) => void {
    const state = this.#cluster(cluster);
    state.active.set(uid, (state.active.get(uid) ?? 0) + 1);
    let done = false;
    return (result) => {
      if (done) return;
      done = true;
      state.active.set(uid, Math.max(0, (state.active.get(uid) ?? 1) - 1));
      const od = this.policy(b).outlierDetection;
      if (!od) return;
      const now = this.#now();
      const total = this.endpoints(b).endpoints.length;
      const ejectedNow = [...state.health.values()].filter((h) => isEjected(h, now)).length;
      const next = recordResult(state.health.get(uid) ?? HEALTHY, result, od, now, ejectedNow, total);
      state.health.set(uid, next.health);
    };
  }

  /** Whether an endpoint is ejected now (for tests and the dump). */
  ejected(cluster: string, uid: string): boolean {
    return isEjected(this.#clusters.get(cluster)?.health.get(uid), this.#now());
  }

  /**
   * Connection-pool admission (Envoy's circuit breakers as Istio maps them): up to the request limit in
   * flight (`http2MaxRequests`, and `maxConnections` for HTTP/1.1, one request per connection here);
   * beyond it up to `http1MaxPendingRequests` wait; beyond that the request overflows (503, flag UO).
   */
  admit(cluster: string, pool: ConnectionPool | undefined, protocol: 'http1' | 'http2'): Promise<Admission> {
    const state = this.#cluster(cluster);
    const limits = [pool?.http2MaxRequests, protocol === 'http1' ? pool?.maxConnections : undefined].filter((n): n is number => n !== undefined);
    const limit = limits.length > 0 ? Math.min(...limits) : Infinity;
    const maxPending = pool?.http1MaxPendingRequests ?? Infinity;
    const release = () => {
      state.inFlight--;
      const next = state.waiting.shift();
      if (next) next();
    };
    if (state.inFlight < limit) {
      state.inFlight++;
      return Promise.resolve({ ok: true, release: once(release) });
    }
    if (state.waiting.length >= maxPending) return Promise.resolve({ ok: false });
    return new Promise((resolve) => {
      state.waiting.push(() => {
        state.inFlight++;
        resolve({ ok: true, release: once(release) });
      });
    });
  }

  /** The retry budget (`maxRetries`): a slot, or undefined when exhausted. */
  retrySlot(cluster: string, pool: ConnectionPool | undefined): (() => void) | undefined {
    const state = this.#cluster(cluster);
    if (pool?.maxRetries !== undefined && state.activeRetries >= pool.maxRetries) return undefined;
    state.activeRetries++;
    return once(() => {
      state.activeRetries--;
    });
  }
}

function once(fn: () => void): () => void {
  let called = false;
  return () => {
    if (called) return;
    called = true;
    fn();
  };
}

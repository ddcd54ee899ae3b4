import { Counter, Gauge } from 'prom-client';
import type { Labels, MetricsRegistry } from '../core/metrics.ts';
import type { SpiffeId } from '../identity/spiffe.ts';
import { PEER_LABELS, peerLabels, UNKNOWN } from '../workload-api/peer-labels.ts';
import type { Service, Workload } from '../workload-api/types.ts';

/**
 * Istio's HTTP telemetry as a waypoint reports it (reference istio-ambient.md §5.2): the four request
 * families with the standard label set and `reporter="waypoint"`, Envoy's default histogram buckets,
 * and a pure builder of the label set from domain objects.
 */

export const HTTP_LABELS = [
  'reporter',
  ...PEER_LABELS,
  'request_protocol',
  'response_code',
  'grpc_response_status',
  'response_flags',
  'connection_security_policy',
] as const;

export type HttpLabels = Labels<(typeof HTTP_LABELS)[number]>;

/** Envoy's default histogram buckets (ms for durations, bytes for sizes). */
export const ENVOY_BUCKETS: readonly number[] = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];


export interface HttpRequestRecord {
  readonly labels: HttpLabels;
  readonly durationMs: number;
  readonly requestBytes: number;
  readonly responseBytes: number;
}

export interface WaypointMetrics {
  record(r: HttpRequestRecord): void;
  /** Envoy's `cluster.<name>.retry_or_shadow_abandoned`: a request body too large to buffer for retries. */
  retryOrShadowAbandoned?(cluster: string): void;
}

export function createWaypointMetrics(registry: MetricsRegistry, options: { buildTag?: string | undefined } = {}): WaypointMetrics {
  const registers = [registry.prom];
  const series = new HttpSeries([...ENVOY_BUCKETS]);
  for (const family of series.families()) registry.prom.registerMetric(family as never);
  const build = new Gauge({ name: 'istio_build', help: 'Istio component build info.', labelNames: ['component', 'tag'], registers });
  build.set({ component: 'proxy', tag: options.buildTag ?? UNKNOWN }, 1);
  const abandoned = new Counter({ name: 'envoy_cluster_retry_or_shadow_abandoned', help: 'Requests whose retries were abandoned because the body exceeded the buffer limit.', labelNames: ['cluster_name'], registers });
  return {
    retryOrShadowAbandoned(cluster) {
      abandoned.inc({ cluster_name: cluster });
    },
    record: (r) => series.record(r),
  };
}

interface SeriesValues {
  readonly labels: Readonly<Record<string, string>>;
  count: number;
  readonly duration: Bucketed;
  readonly requestBytes: Bucketed;
  readonly responseBytes: Bucketed;
}

interface Bucketed {
  /** Per bucket (not cumulative), the last one +Inf. */
  readonly counts: number[];
  sum: number;
}

/** What prom-client's Registry reads from a metric to print it (the shape its own families return). */
interface ExportedMetric {
  readonly name: string;
  readonly help: string;
  readonly type: 'counter' | 'histogram';
  readonly aggregator: 'sum';
  get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: Array<{ labels: Record<string, string | number>; value: number; metricName?: string }> }>;
  reset(): void;
}

/**
 * The four request families kept by label set in one map, exported through prom-client's Registry as
 * its own Counter and Histogram would print them. prom-client validates and hashes a 25-label object on
 * every observe (four times per request); here a request costs one key string and one map lookup.
 */
class HttpSeries {
  readonly #bounds: readonly number[];
  readonly #series = new Map<string, SeriesValues>();

  constructor(bounds: readonly number[]) {
    this.#bounds = bounds;
  }

  record(r: HttpRequestRecord): void {
    const labels = r.labels as Readonly<Record<string, string>>;
    let key = '';
    for (const name of HTTP_LABELS) key += `${labels[name]}\u0001`;
    let s = this.#series.get(key);
    if (!s) {
      const ordered: Record<string, string> = {};
      for (const name of HTTP_LABELS) ordered[name] = labels[name] as string;
      const bucketed = (): Bucketed => ({ counts: new Array<number>(this.#bounds.length + 1).fill(0), sum: 0 });
      s = { labels: ordered, count: 0, duration: bucketed(), requestBytes: bucketed(), responseBytes: bucketed() };
      this.#series.set(key, s);
    }
    s.count++;
    this.#observe(s.duration, r.durationMs);
    this.#observe(s.requestBytes, r.requestBytes);
    this.#observe(s.responseBytes, r.responseBytes);
  }

  #observe(b: Bucketed, value: number): void {
    if (!Number.isFinite(value)) return;
    const bounds = this.#bounds;
    let i = 0;
    while (i < bounds.length && value > (bounds[i] as number)) i++;
    (b.counts[i] as number)++;
    b.sum += value;
  }

  families(): ExportedMetric[] {
    const series = this.#series;
    const bounds = this.#bounds;
    const counter = (name: string, help: string): ExportedMetric => ({
      name, help, type: 'counter', aggregator: 'sum',
      get: async () => ({ name, help, type: 'counter', aggregator: 'sum', values: [...series.values()].map((s) => ({ labels: s.labels, value: s.count })) }),
      reset: () => series.clear(),
    });
    const histogram = (name: string, help: string, pick: (s: SeriesValues) => Bucketed): ExportedMetric => ({
      name, help, type: 'histogram', aggregator: 'sum',
      get: async () => {
        const values: Array<{ labels: Record<string, string | number>; value: number; metricName: string }> = [];
        for (const s of series.values()) {
          const b = pick(s);
          let acc = 0;
          bounds.forEach((le, i) => {
            acc += b.counts[i] as number;
            values.push({ labels: { ...s.labels, le }, value: acc, metricName: `${name}_bucket` });
          });
          values.push({ labels: { ...s.labels, le: '+Inf' }, value: s.count, metricName: `${name}_bucket` });
          values.push({ labels: s.labels, value: b.sum, metricName: `${name}_sum` });
          values.push({ labels: s.labels, value: s.count, metricName: `${name}_count` });
        }
        return { name, help, type: 'histogram', aggregator: 'sum', values };
      },
      reset: () => series.clear(),
    });
    return [
      counter('istio_requests_total', 'Total number of requests handled by the waypoint.'),
      histogram('istio_request_duration_milliseconds', 'Request duration in milliseconds.', (s) => s.duration),
      histogram('istio_request_bytes', 'Request size in bytes (headers and body).', (s) => s.requestBytes),
      histogram('istio_response_bytes', 'Response size in bytes (headers and body).', (s) => s.responseBytes),
    ];
  }
}

export interface LabelInput {
  readonly source: { readonly identity: SpiffeId | undefined; readonly workload: Workload | undefined };
  readonly destination: { readonly service: Service | undefined; readonly workload: Workload | undefined };
  readonly protocol: 'http' | 'grpc';
  readonly responseCode: number;
  readonly grpcStatus: string | undefined;
  readonly responseFlags: string;
  readonly clusterId: string;
  readonly trustDomain: string;
}

/** The label set of one request; absent values are `unknown` (grpc_response_status is '' for HTTP). */
export function httpLabels(input: LabelInput): HttpLabels {
  const s = input.source.workload;
  const d = input.destination.workload;
  const peer = peerLabels({
    source: s,
    sourcePrincipal: input.source.identity,
    destination: d,
    destinationService: input.destination.service,
    ...(d ? { destinationPrincipal: { trustDomain: d.trustDomain || input.trustDomain, namespace: d.namespace, serviceAccount: d.serviceAccount } } : {}),
  });
  return {
    reporter: 'waypoint',
    ...peer,
    // The caller's namespace is known from its certificate even when its workload is not.
    source_workload_namespace: s?.namespace || input.source.identity?.namespace || UNKNOWN,
    destination_cluster: d?.clusterId || input.clusterId || UNKNOWN,
    request_protocol: input.protocol,
    response_code: String(input.responseCode),
    grpc_response_status: input.protocol === 'grpc' ? (input.grpcStatus ?? '') : '',
    response_flags: input.responseFlags || '-',
    connection_security_policy: 'mutual_tls',
  };
}

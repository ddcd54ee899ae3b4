import { Counter, Gauge, Histogram } from 'prom-client';
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
  const labelNames = [...HTTP_LABELS];
  const registers = [registry.prom];
  const requests = new Counter({ name: 'istio_requests_total', help: 'Total number of requests handled by the waypoint.', labelNames, registers });
  const duration = new Histogram({ name: 'istio_request_duration_milliseconds', help: 'Request duration in milliseconds.', labelNames, buckets: [...ENVOY_BUCKETS], registers });
  const requestBytes = new Histogram({ name: 'istio_request_bytes', help: 'Request size in bytes (headers and body).', labelNames, buckets: [...ENVOY_BUCKETS], registers });
  const responseBytes = new Histogram({ name: 'istio_response_bytes', help: 'Response size in bytes (headers and body).', labelNames, buckets: [...ENVOY_BUCKETS], registers });
  const build = new Gauge({ name: 'istio_build', help: 'Istio component build info.', labelNames: ['component', 'tag'], registers });
  build.set({ component: 'proxy', tag: options.buildTag ?? UNKNOWN }, 1);
  const abandoned = new Counter({ name: 'envoy_cluster_retry_or_shadow_abandoned', help: 'Requests whose retries were abandoned because the body exceeded the buffer limit.', labelNames: ['cluster_name'], registers });
  return {
    retryOrShadowAbandoned(cluster) {
      abandoned.inc({ cluster_name: cluster });
    },
    record(r) {
      const labels = r.labels as Record<string, string>;
      requests.inc(labels);
      duration.observe(labels, r.durationMs);
      requestBytes.observe(labels, r.requestBytes);
      responseBytes.observe(labels, r.responseBytes);
    },
  };
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

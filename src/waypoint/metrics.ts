import { Counter, Gauge, Histogram } from 'prom-client';
import type { Labels, MetricsRegistry } from '../core/metrics.ts';
import { formatSpiffeId, type SpiffeId } from '../identity/spiffe.ts';
import type { Service, Workload } from '../workload-api/types.ts';

/**
 * Istio's HTTP telemetry as a waypoint reports it (reference istio-ambient.md §5.2): the four request
 * families with the standard label set and `reporter="waypoint"`, Envoy's default histogram buckets,
 * and a pure builder of the label set from domain objects.
 */

export const HTTP_LABELS = [
  'reporter',
  'source_workload',
  'source_canonical_service',
  'source_canonical_revision',
  'source_workload_namespace',
  'source_principal',
  'source_app',
  'source_version',
  'source_cluster',
  'destination_service',
  'destination_service_namespace',
  'destination_service_name',
  'destination_workload',
  'destination_canonical_service',
  'destination_canonical_revision',
  'destination_workload_namespace',
  'destination_principal',
  'destination_app',
  'destination_version',
  'destination_cluster',
  'request_protocol',
  'response_code',
  'grpc_response_status',
  'response_flags',
  'connection_security_policy',
] as const;

export type HttpLabels = Labels<(typeof HTTP_LABELS)[number]>;

/** Envoy's default histogram buckets (ms for durations, bytes for sizes). */
export const ENVOY_BUCKETS: readonly number[] = [0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000, 600000, 1800000, 3600000];

const UNKNOWN = 'unknown';

export interface HttpRequestRecord {
  readonly labels: HttpLabels;
  readonly durationMs: number;
  readonly requestBytes: number;
  readonly responseBytes: number;
}

export interface WaypointMetrics {
  record(r: HttpRequestRecord): void;
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
  return {
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
  const svc = input.destination.service;
  const principal = (id: SpiffeId | undefined) => (id ? formatSpiffeId(id) : UNKNOWN);
  const dPrincipal = d ? `spiffe://${d.trustDomain || input.trustDomain}/ns/${d.namespace}/sa/${d.serviceAccount}` : UNKNOWN;
  return {
    reporter: 'waypoint',
    source_workload: s?.workloadName || UNKNOWN,
    source_canonical_service: s?.canonicalName || UNKNOWN,
    source_canonical_revision: s?.canonicalRevision || UNKNOWN,
    source_workload_namespace: s?.namespace || input.source.identity?.namespace || UNKNOWN,
    source_principal: principal(input.source.identity),
    source_app: s?.canonicalName || UNKNOWN,
    source_version: s?.canonicalRevision || UNKNOWN,
    source_cluster: s?.clusterId || UNKNOWN,
    destination_service: svc?.hostname || UNKNOWN,
    destination_service_namespace: svc?.namespace || UNKNOWN,
    destination_service_name: svc?.name || UNKNOWN,
    destination_workload: d?.workloadName || UNKNOWN,
    destination_canonical_service: d?.canonicalName || UNKNOWN,
    destination_canonical_revision: d?.canonicalRevision || UNKNOWN,
    destination_workload_namespace: d?.namespace || UNKNOWN,
    destination_principal: dPrincipal,
    destination_app: d?.canonicalName || UNKNOWN,
    destination_version: d?.canonicalRevision || UNKNOWN,
    destination_cluster: d?.clusterId || input.clusterId || UNKNOWN,
    request_protocol: input.protocol,
    response_code: String(input.responseCode),
    grpc_response_status: input.protocol === 'grpc' ? (input.grpcStatus ?? '') : '',
    response_flags: input.responseFlags || '-',
    connection_security_policy: 'mutual_tls',
  };
}

import { ErrorCode } from '../core/error-codes.ts';
import type { CounterFamily, Labels, MetricsRegistry } from '../core/metrics.ts';
import type { SpiffeId } from '../identity/spiffe.ts';
import { orUnknown, PEER_LABELS, peerLabels, UNKNOWN } from '../workload-api/peer-labels.ts';
import type { Service, Workload } from '../workload-api/types.ts';

/**
 * Istio's L4 telemetry (ztunnel.md §6.1): the `istio_tcp_*` families with the traffic label set, a
 * pure builder of that label set from domain objects, and a per-connection recorder. No sockets.
 */

/**
 * The traffic label set in the order ztunnel emits it. The four locality labels are always present
 * (ztunnel emits them whenever any locality is known, the normal case); absent values are `unknown`.
 */
export const TRAFFIC_LABELS = [
  'reporter',
  ...PEER_LABELS,
  'request_protocol',
  'response_flags',
  'connection_security_policy',
  'source_region',
  'source_zone',
  'destination_region',
  'destination_zone',
] as const;

export type TrafficLabelName = (typeof TRAFFIC_LABELS)[number];
export type TrafficLabels = Labels<TrafficLabelName>;

export { UNKNOWN };

/** `-` is success; any other flag is a failure (and also counts in `connections_failed`). */
export type ResponseFlag = '-' | 'DENY' | 'CONNECT' | 'TLS_FAILURE' | 'H2_HANDSHAKE_FAILURE' | 'NETWORK_POLICY' | 'IDENTITY_ERROR' | 'CERT_REVOKED';

/** The response flag ztunnel reports for a failure with this code (unclassified failures are `CONNECT`). */
export function responseFlagFor(code: ErrorCode): ResponseFlag {
  switch (code) {
    case ErrorCode.PROXY_AUTHORIZATION_DENIED:
    case ErrorCode.PROXY_POLICY_CHANGED:
      return 'DENY';
    case ErrorCode.HBONE_CONNECT_TIMEOUT:
      return 'NETWORK_POLICY';
    case ErrorCode.HBONE_TLS_HANDSHAKE_FAILED:
      return 'TLS_FAILURE';
    case ErrorCode.HBONE_ALPN_MISMATCH:
      return 'H2_HANDSHAKE_FAILURE';
    case ErrorCode.HBONE_PEER_IDENTITY_MISMATCH:
    case ErrorCode.HBONE_PEER_NO_IDENTITY:
    case ErrorCode.IDENTITY_CERT_FETCH_FAILED:
    case ErrorCode.IDENTITY_CERT_EXPIRED:
      return 'IDENTITY_ERROR';
    default:
      return 'CONNECT';
  }
}

export interface ConnectionLabelInput {
  /** `source` for the outbound/socks5 listeners, `destination` for 15008/15006. */
  readonly reporter: 'source' | 'destination';
  /** The xDS source workload (inbound: the one found by source IP). */
  readonly source?: Workload | undefined;
  /** The workload actually connected to (the waypoint when going through one). */
  readonly destination?: Workload | undefined;
  /** The intended service (outbound), or the one named by `Forwarded host=` / the port map (inbound). */
  readonly destinationService?: Service | undefined;
  /** Verified peer identity; set only for mTLS (the caller decides, as ztunnel does). */
  readonly sourcePrincipal?: SpiffeId | undefined;
  readonly destinationPrincipal?: SpiffeId | undefined;
  readonly securityPolicy: 'mutual_tls' | 'unknown';
  /** Defaults to `-`. */
  readonly responseFlags?: ResponseFlag | undefined;
}


/** The traffic labels of one connection: every label a string, `unknown` for anything missing. */
export function connectionLabels(input: ConnectionLabelInput): TrafficLabels {
  const src = input.source;
  const dst = input.destination;
  return {
    reporter: input.reporter,
    ...peerLabels(input),
    request_protocol: 'tcp',
    response_flags: input.responseFlags ?? '-',
    connection_security_policy: input.securityPolicy,
    source_region: orUnknown(src?.locality?.region),
    source_zone: orUnknown(src?.locality?.zone),
    destination_region: orUnknown(dst?.locality?.region),
    destination_zone: orUnknown(dst?.locality?.zone),
  };
}

/** Bytes of one connection. `received`: client→server direction; `sent`: server→client (§6.1). */
export interface ConnectionBytes {
  readonly sent: number;
  readonly received: number;
}

export interface ConnectionCloseInfo extends ConnectionBytes {
  /** The outcome; replaces the labels' `response_flags` for the close-time series. Defaults to the open-time flag. */
  readonly responseFlags?: ResponseFlag | undefined;
}

/** One connection's metrics: opened at creation, everything else counted once at `close`. */
export interface ConnectionMetrics {
  readonly labels: TrafficLabels;
  /** Idempotent: only the first call counts. */
  close(info: ConnectionCloseInfo): void;
  readonly closed: boolean;
}

export interface L4Metrics {
  readonly connectionsOpened: CounterFamily<TrafficLabelName>;
  readonly connectionsClosed: CounterFamily<TrafficLabelName>;
  readonly connectionsFailed: CounterFamily<TrafficLabelName>;
  readonly receivedBytes: CounterFamily<TrafficLabelName>;
  readonly sentBytes: CounterFamily<TrafficLabelName>;
  recordOpen(labels: TrafficLabels): void;
  /** Counts the close, the bytes, and (for any flag but `-`) the failure, all under `labels`. */
  recordClose(labels: TrafficLabels, bytes: ConnectionBytes): void;
  /** Opens a per-connection recorder: counts `opened` now, the rest once at close. */
  connection(labels: TrafficLabels): ConnectionMetrics;
}

export interface L4MetricsOptions {
  /** `istio_build{component="ztunnel",tag}`; the tag is `ISTIO_META_ISTIO_VERSION`, read by main.ts. */
  readonly buildTag?: string | undefined;
}

export function createL4Metrics(registry: MetricsRegistry, options: L4MetricsOptions = {}): L4Metrics {
  const traffic = (name: string, help: string): CounterFamily<TrafficLabelName> => registry.counter({ name, help, labelNames: TRAFFIC_LABELS });
  const connectionsOpened = traffic('istio_tcp_connections_opened_total', 'The total number of TCP connections opened');
  const connectionsClosed = traffic('istio_tcp_connections_closed_total', 'The total number of TCP connections closed');
  const receivedBytes = traffic('istio_tcp_received_bytes_total', 'The size of total bytes received during request in case of a TCP connection');
  const sentBytes = traffic('istio_tcp_sent_bytes_total', 'The size of total bytes sent during response in case of TCP connection');
  const connectionsFailed = traffic('istio_tcp_connections_failed_total', 'The total number of TCP connections that failed to establish (unstable)');
  const build = registry.gauge({ name: 'istio_build', help: 'Istio component build info', labelNames: ['component', 'tag'] as const });
  build.set({ component: 'ztunnel', tag: orUnknown(options.buildTag) }, 1);

  const recordOpen = (labels: TrafficLabels): void => {
    connectionsOpened.inc(labels);
  };
  const recordClose = (labels: TrafficLabels, bytes: ConnectionBytes): void => {
    connectionsClosed.inc(labels);
    // A zero increment still creates the series, as ztunnel's counters exist from the first connection.
    receivedBytes.inc(labels, bytes.received);
    sentBytes.inc(labels, bytes.sent);
    if (labels.response_flags !== '-') connectionsFailed.inc(labels);
  };

  return {
    connectionsOpened,
    connectionsClosed,
    connectionsFailed,
    receivedBytes,
    sentBytes,
    recordOpen,
    recordClose,
    connection(labels) {
      recordOpen(labels);
      let closed = false;
      return {
        labels,
        get closed() {
          return closed;
        },
        close(info) {
          if (closed) return;
          closed = true;
          const final = info.responseFlags === undefined ? labels : { ...labels, response_flags: info.responseFlags };
          recordClose(final, info);
        },
      };
    },
  };
}

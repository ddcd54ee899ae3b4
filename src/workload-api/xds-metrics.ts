import type { MetricsRegistry } from '../core/metrics.ts';

/**
 * ztunnel's xDS metrics (reference ztunnel.md §6.2): responses and their Any payload bytes per type
 * URL, and stream terminations by reason. The client calls these; no IO here.
 */

/**
 * Why an xDS stream (or the client) ended, as ztunnel labels it:
 * - `ConnectionError`: the stream ended before the server answered (unreachable, TLS, auth metadata);
 * - `Error`: a connected stream failed with a status ztunnel does not count as benign;
 * - `Reconnect`: a connected stream ended with a benign status and a new one follows;
 * - `Complete`: the client was closed.
 */
export type XdsTerminationReason = 'ConnectionError' | 'Error' | 'Reconnect' | 'Complete';

export interface XdsMetrics {
  /** One response of `typeUrl` received; `bytes` is the sum of its resources' Any `value` sizes. */
  message(typeUrl: string, bytes: number): void;
  terminated(reason: XdsTerminationReason): void;
}

/** The sum of the Any `value` sizes of a response's resources (ztunnel's `istio_xds_message_bytes`). */
export function anyPayloadBytes(resources: readonly { readonly resource: { readonly value: Uint8Array } | null }[]): number {
  let bytes = 0;
  for (const r of resources) bytes += r.resource?.value.byteLength ?? 0;
  return bytes;
}

export function createXdsMetrics(registry: MetricsRegistry): XdsMetrics {
  const messages = registry.counter({ name: 'istio_xds_message_total', help: 'Total number of messages received (unstable)', labelNames: ['url'] as const });
  const messageBytes = registry.counter({
    name: 'istio_xds_message_bytes_total',
    help: 'Total number of bytes received (unstable)',
    labelNames: ['url'] as const,
  });
  const terminations = registry.counter({
    name: 'istio_xds_connection_terminations_total',
    help: 'The total number of completed connections to xds server (unstable)',
    labelNames: ['reason'] as const,
  });
  return {
    message(typeUrl, bytes) {
      messages.inc({ url: typeUrl });
      // A zero increment still creates the series, as ztunnel's does for an empty response.
      messageBytes.inc({ url: typeUrl }, bytes);
    },
    terminated(reason) {
      terminations.inc({ reason });
    },
  };
}

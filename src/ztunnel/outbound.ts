import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { ErrorCode } from '../core/error-codes.ts';
import { errorCode, errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { formatAuthority } from '../hbone/authority.ts';
import type { HboneClient } from '../hbone/client.ts';
import { dial } from '../hbone/forward.ts';
import { formatBaggage, formatForwarded } from '../hbone/headers.ts';
import { relay, reset } from '../hbone/relay.ts';
import { Timeouts } from '../hbone/settings.ts';
import type { SpiffeId } from '../identity/spiffe.ts';
import type { StateReader } from '../workload-api/store.ts';
import type { Workload } from '../workload-api/types.ts';
import { CONNECTION_FAILED, connectionFailedRecord, logConnectionComplete } from './access-log.ts';
import { connectionLabels, responseFlagFor, type L4Metrics } from './metrics.ts';
import { routeOutbound, unmapIpv4, workloadIdentity, type RouteDecision, type SocketAddr } from './route.ts';
import type { SocketFactory } from './socket-factory.ts';
import { capturedDestination, startTcpListener, type TcpListener } from './tcp-listener.ts';

/**
 * The outbound listener (15001): every captured connection of the proxied workload. It reads the
 * original destination, lets `routeOutbound` decide, then tunnels over HBONE or dials plain TCP,
 * with Istio's source-reported telemetry and one access-log line per connection.
 */

export interface OutboundListenerOptions {
  readonly factory: SocketFactory;
  readonly port: number;
  readonly state: StateReader;
  /** The workload the connection comes from; undefined when xDS has not delivered it in time. */
  readonly source: () => Promise<Workload | undefined>;
  /** ztunnel's network (`NETWORK`). */
  readonly network: string;
  readonly ownPorts: readonly number[];
  readonly hbone: HboneClient;
  readonly metrics: L4Metrics;
  /** The `access` logger: one line per connection. */
  readonly accessLog: Logger;
  readonly logger: Logger;
  readonly connectTimeoutMs?: number;
  /** How long `close()` lets live connections finish before cutting them. */
  readonly drainMs?: number;
}

export function startOutboundListener(options: OutboundListenerOptions): Promise<TcpListener> {
  return startTcpListener({ factory: options.factory, port: options.port, name: 'outbound', logger: options.logger, drainMs: options.drainMs }, (socket) => handle(socket, options));
}

async function handle(socket: Socket, options: OutboundListenerOptions): Promise<void> {
  const started = Date.now();
  const client: SocketAddr = { ip: unmapIpv4(socket.remoteAddress ?? ''), port: socket.remotePort ?? 0 };
  const destination = capturedDestination(socket);
  const srcAddr = formatAuthority(client.ip, client.port);
  const dstAddr = formatAuthority(destination.ip, destination.port);
  const failEarly = (code: ErrorCode, error: string) => {
    options.accessLog.warn({ ...connectionFailedRecord({ direction: 'outbound', srcAddr, dstAddr, error }), code }, CONNECTION_FAILED);
    reset(socket);
  };

  const source = await options.source();
  if (!source) return failEarly(ErrorCode.PROXY_UNKNOWN_SOURCE, 'unknown source: the proxied workload is not in the mesh state');
  if (socket.destroyed) return;
  const decision = routeOutbound(options.state, { source, sourceAddress: client, destination, network: options.network, ownPorts: options.ownPorts });
  if (decision.kind === 'refuse') return failEarly(decision.code, decision.reason);

  const sourceIdentity = workloadIdentity(source);
  const mtls = decision.kind === 'hbone';
  const destinationWorkload = decision.kind === 'hbone' ? (decision.waypoint?.workload ?? decision.destinationWorkload) : decision.kind === 'tcp' ? decision.destinationWorkload : undefined;
  const labels = connectionLabels({
    reporter: 'source',
    source,
    destination: destinationWorkload,
    destinationService: decision.destinationService,
    sourcePrincipal: mtls ? sourceIdentity : undefined,
    destinationPrincipal: mtls && destinationWorkload ? workloadIdentity(destinationWorkload) : undefined,
    securityPolicy: mtls ? 'mutual_tls' : 'unknown',
  });
  const metrics = options.metrics.connection(labels);
  const finish = (bytes: { sent: number; received: number }, failure?: { code: ErrorCode; message: string }, peer?: SpiffeId) => {
    metrics.close({ ...bytes, responseFlags: failure ? responseFlagFor(failure.code) : undefined });
    logConnectionComplete(options.accessLog, {
      direction: 'outbound',
      srcAddr,
      dstAddr: formatAuthority(decision.dial.ip, decision.dial.port),
      dstHboneAddr: decision.kind === 'hbone' ? decision.authority : undefined,
      source,
      destination: destinationWorkload,
      destinationService: decision.destinationService,
      sourceIdentity: mtls ? sourceIdentity : undefined,
      destinationIdentity: peer,
      bytesSent: bytes.received,
      bytesRecv: bytes.sent,
      durationMs: Date.now() - started,
      error: failure ? `${failure.code}: ${failure.message}` : undefined,
    });
  };

  let upstream: Duplex;
  let peer: SpiffeId | undefined;
  try {
    ({ upstream, peer } = await openUpstream(decision, source, client, options));
  } catch (err) {
    finish({ sent: 0, received: 0 }, { code: errorCode(err) as ErrorCode, message: errorMessage(err) });
    return reset(socket);
  }
  if (socket.destroyed) {
    upstream.destroy();
    return finish({ sent: 0, received: 0 }, { code: ErrorCode.RELAY_CONNECTION_RESET, message: 'the client went away before the upstream connected' }, peer);
  }
  socket.resume();
  const result = await relay(socket, upstream);
  const bytes = { received: result.bytesDownstreamToUpstream, sent: result.bytesUpstreamToDownstream };
  finish(bytes, result.error ? { code: result.error.code as ErrorCode, message: result.error.message } : undefined, peer);
}

/** The HBONE tunnel or plain TCP connection the decision names. */
async function openUpstream(
  decision: Exclude<RouteDecision, { kind: 'refuse' }>,
  source: Workload,
  client: SocketAddr,
  options: OutboundListenerOptions,
): Promise<{ upstream: Duplex; peer?: SpiffeId }> {
  if (decision.kind !== 'hbone') {
    try {
      const upstream = await dial(decision.dial.ip, decision.dial.port, options.connectTimeoutMs ?? Timeouts.upstreamConnectMs, undefined, options.factory.connect);
      return { upstream };
    } catch (err) {
      throw Object.assign(new Error(`connect to ${formatAuthority(decision.dial.ip, decision.dial.port)} failed: ${errorMessage(err)}`), { code: ErrorCode.PROXY_UPSTREAM_CONNECT_FAILED });
    }
  }
  const tunnel = await options.hbone.connect({
    source: workloadIdentity(source),
    expectedIdentities: decision.expectedIdentities,
    address: { host: decision.dial.ip, port: decision.dial.port },
    authority: decision.authority,
    baggage: sourceBaggage(source),
    forwarded: formatForwarded(formatAuthority(client.ip, client.port), decision.destinationService?.hostname),
  });
  return { upstream: tunnel.stream, peer: tunnel.peer };
}

/** The `baggage` describing the source workload (§3.4). */
export function sourceBaggage(w: Workload): string {
  return formatBaggage({
    clusterName: w.clusterId,
    namespace: w.namespace,
    workloadType: w.workloadType,
    workloadName: w.workloadName,
    serviceName: w.canonicalName,
    serviceVersion: w.canonicalRevision,
    ...(w.locality ? { region: w.locality.region, zone: w.locality.zone } : {}),
  });
}

import type { Socket } from 'node:net';
import { ErrorCode } from '../core/error-codes.ts';
import { errorMessage } from '../core/errors.ts';
import type { Logger } from '../core/logger.ts';
import { formatAuthority } from '../hbone/authority.ts';
import { dial } from '../hbone/forward.ts';
import { relay, reset } from '../hbone/relay.ts';
import { Timeouts } from '../hbone/settings.ts';
import type { StateReader } from '../workload-api/store.ts';
import { CONNECTION_FAILED, connectionFailedRecord, logConnectionComplete } from './access-log.ts';
import { trackProxied, type ConnectionManager } from './connection-manager.ts';
import type { InboundLocal, InboundTelemetry } from './inbound.ts';
import { connectionLabels, responseFlagFor } from './metrics.ts';
import { authorize } from './rbac.ts';
import { unmapIpv4, workloadIdentity, type SocketAddr } from './route.ts';
import type { SocketFactory } from './socket-factory.ts';
import { capturedDestination, startTcpListener, type TcpListener } from './tcp-listener.ts';

/**
 * The inbound plaintext listener (15006, reference ztunnel.md §4.3): captured TCP to the local
 * workload that did not come over HBONE. Authorized with no peer identity, so a STRICT peer
 * authentication (a DENY of every connection without a principal) refuses it.
 */

export type PlaintextDecision =
  | { readonly kind: 'connect'; readonly ip: string; readonly port: number }
  | { readonly kind: 'refuse'; readonly code: ErrorCode; readonly reason: string; readonly denied: boolean };

export function decidePlaintextInbound(state: Pick<StateReader, 'policiesFor'>, local: InboundLocal, connection: { readonly sourceIp: string; readonly destination: SocketAddr }): PlaintextDecision {
  const { destination } = connection;
  const workload = local.workload;
  if (local.ownPorts.includes(destination.port)) {
    return { kind: 'refuse', code: ErrorCode.PROXY_SELF_CALL, reason: `port ${destination.port} is one of this proxy's own listeners`, denied: false };
  }
  if (!workload.addresses.includes(destination.ip)) {
    return { kind: 'refuse', code: ErrorCode.PROXY_IP_MISMATCH, reason: `ip mismatch: ${destination.ip} is not an address of ${workload.namespace}/${workload.name}`, denied: false };
  }
  const { decision } = authorize(state.policiesFor(workload), { sourceIp: connection.sourceIp, destinationIp: destination.ip, destinationPort: destination.port });
  if (!decision.allowed) return { kind: 'refuse', code: ErrorCode.PROXY_AUTHORIZATION_DENIED, reason: decision.reason, denied: true };
  return { kind: 'connect', ip: destination.ip, port: destination.port };
}

export interface PlaintextListenerOptions {
  readonly factory: SocketFactory;
  readonly port: number;
  readonly state: StateReader;
  readonly local: () => InboundLocal | undefined;
  readonly telemetry: InboundTelemetry;
  readonly connections: ConnectionManager;
  readonly logger: Logger;
  readonly connectTimeoutMs?: number;
  readonly drainMs?: number;
}

let nextConnectionId = 0;

export function startPlaintextListener(options: PlaintextListenerOptions): Promise<TcpListener> {
  const log = options.logger.child({ component: 'inbound-plaintext' });
  return startTcpListener({ factory: options.factory, port: options.port, name: 'inbound-plaintext', logger: options.logger, drainMs: options.drainMs }, (socket) => handle(socket, options, log));
}

async function handle(socket: Socket, options: PlaintextListenerOptions, log: Logger): Promise<void> {
  const started = Date.now();
  const sourceIp = unmapIpv4(socket.remoteAddress ?? '');
  const srcAddr = formatAuthority(sourceIp, socket.remotePort ?? 0);
  const destination = capturedDestination(socket);
  const dstAddr = formatAuthority(destination.ip, destination.port);
  const failEarly = (code: ErrorCode, error: string) => {
    options.telemetry.accessLog.warn({ ...connectionFailedRecord({ direction: 'inbound', srcAddr, dstAddr, error }), code }, CONNECTION_FAILED);
    reset(socket);
  };
  const local = options.local();
  if (!local) return failEarly(ErrorCode.PROXY_UNKNOWN_LOCAL_WORKLOAD, 'the local workload is not in the mesh state');
  const decision = decidePlaintextInbound(options.state, local, { sourceIp, destination });
  if (decision.kind === 'refuse' && !decision.denied) return failEarly(decision.code, decision.reason);

  const workload = local.workload;
  const source = options.state.workloadByAddress(options.telemetry.network, sourceIp);
  const metrics = options.telemetry.metrics.connection(connectionLabels({ reporter: 'destination', source, destination: workload, securityPolicy: 'unknown' }));
  const finish = (bytes: { sent: number; received: number }, failure?: { code: ErrorCode; message: string }) => {
    metrics.close({ ...bytes, responseFlags: failure ? responseFlagFor(failure.code) : undefined });
    logConnectionComplete(options.telemetry.accessLog, {
      direction: 'inbound',
      srcAddr,
      dstAddr,
      source,
      destination: workload,
      destinationIdentity: workloadIdentity(workload),
      bytesSent: bytes.sent,
      bytesRecv: bytes.received,
      durationMs: Date.now() - started,
      error: failure ? `${failure.code}: ${failure.message}` : undefined,
    });
  };
  if (decision.kind === 'refuse') {
    finish({ sent: 0, received: 0 }, { code: decision.code, message: decision.reason });
    return void socket.destroy(); // a plaintext deny is a close with no bytes (§5)
  }

  let upstream: Socket;
  try {
    upstream = await dial(decision.ip, decision.port, options.connectTimeoutMs ?? Timeouts.upstreamConnectMs, undefined, options.factory.connect);
  } catch (err) {
    finish({ sent: 0, received: 0 }, { code: ErrorCode.PROXY_UPSTREAM_CONNECT_FAILED, message: `connect to ${dstAddr} failed: ${errorMessage(err)}` });
    return reset(socket);
  }
  const tracked = trackProxied(options.connections, { id: `plaintext-${++nextConnectionId}`, workload, attributes: { sourceIp, destinationIp: decision.ip, destinationPort: decision.port } }, upstream, (reason) =>
    log.info({ code: ErrorCode.PROXY_POLICY_CHANGED, err: reason, src: srcAddr, dst: dstAddr }, 'plaintext connection closed'),
  );
  socket.resume();
  const result = await relay(socket, upstream);
  tracked.untrack();
  const failure = tracked.closedBy() ?? (result.error ? { code: result.error.code as ErrorCode, message: result.error.message } : undefined);
  finish({ received: result.bytesDownstreamToUpstream, sent: result.bytesUpstreamToDownstream }, failure);
}

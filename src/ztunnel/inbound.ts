import { isIP, type Socket } from 'node:net';
import { ErrorCode } from '../core/error-codes.ts';
import { errorMessage } from '../core/errors.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import { formatAuthority, type HboneTarget } from '../hbone/authority.ts';
import { dial, type ConnectSocket } from '../hbone/forward.ts';
import { parseForwarded } from '../hbone/headers.ts';
import type { RelayResult } from '../hbone/relay.ts';
import type { HboneDecision, HboneHandler, HboneRequest } from '../hbone/server.ts';
import { Timeouts } from '../hbone/settings.ts';
import { formatSpiffeId, type SpiffeId } from '../identity/spiffe.ts';
import type { StateReader } from '../workload-api/store.ts';
import { serviceKey, type Service, type Workload } from '../workload-api/types.ts';
import { logConnectionComplete } from './access-log.ts';
import { trackProxied, type ConnectionManager } from './connection-manager.ts';
import { connectionLabels, responseFlagFor, type L4Metrics } from './metrics.ts';
import { authorize } from './rbac.ts';
import { unmapIpv4, workloadIdentity } from './route.ts';

/**
 * The inbound HBONE (15008) path of ztunnel for one local workload (reference ztunnel.md §3.5, §4.3,
 * §5): a pure decision per CONNECT, and the handler that dials what it decides.
 */

/** The workload this proxy serves (from ZDS WorkloadInfo) and the proxy's own listener ports. */
export interface InboundLocal {
  readonly workload: Workload;
  readonly ownPorts: readonly number[];
}

export interface InboundRequest {
  readonly target: HboneTarget;
  /** The mTLS identity the client proved. */
  readonly peer: SpiffeId;
  readonly sourceIp: string;
}

export type InboundDecision =
  | { readonly kind: 'connect'; readonly ip: string; readonly port: number; readonly policyReason: string }
  | { readonly kind: 'refuse'; readonly status: 400 | 401 | 503; readonly code: ErrorCode; readonly reason: string };

const refuse = (status: 400 | 401 | 503, code: ErrorCode, reason: string): InboundDecision => ({ kind: 'refuse', status, code, reason });

/**
 * Validate the target against the local workload, resolve the target port (hostname targets through
 * the service), refuse self-calls, then L4-authorize against the resolved pod IP and port.
 */
export function decideInbound(state: StateReader, local: InboundLocal, request: InboundRequest): InboundDecision {
  const workload = local.workload;
  const { target } = request;
  let ip: string | undefined;
  let port: number;

  if (target.kind === 'address') {
    const own = workload.addresses.includes(target.ip);
    if (!own && !workload.applicationTunnel) {
      return refuse(400, ErrorCode.PROXY_IP_MISMATCH, `ip mismatch: ${target.ip} is not an address of ${workload.namespace}/${workload.name}`);
    }
    ip = own ? target.ip : pickLocalIp(workload, isIP(target.ip));
    port = target.port;
  } else {
    const service = serviceForHostname(state, target.hostname, workload.namespace);
    if (!service) return refuse(503, ErrorCode.PROXY_UNKNOWN_SERVICE, `no service for hostname ${target.hostname}`);
    const resolved = resolveServicePort(workload, service, target.port);
    if (resolved === undefined) {
      return refuse(503, ErrorCode.PROXY_NO_TARGET_PORT, `port ${target.port} of service ${service.namespace}/${service.hostname} cannot be resolved for ${workload.namespace}/${workload.name}`);
    }
    ip = pickLocalIp(workload, 0);
    port = resolved;
  }

  if (ip === undefined) return refuse(503, ErrorCode.PROXY_NO_ENDPOINT_IP, `local workload ${workload.namespace}/${workload.name} has no IP`);
  if (local.ownPorts.includes(port)) return refuse(503, ErrorCode.PROXY_SELF_CALL, `port ${port} is one of this proxy's own listeners`);

  const { decision } = authorize(state.policiesFor(workload), { sourceIp: request.sourceIp, destinationIp: ip, destinationPort: port, peer: request.peer });
  if (!decision.allowed) return refuse(401, ErrorCode.PROXY_AUTHORIZATION_DENIED, decision.reason);
  return { kind: 'connect', ip, port, policyReason: decision.reason };
}

/** The service with this hostname, the one in the workload's namespace first. */
function serviceForHostname(state: StateReader, hostname: string, namespace: string): Service | undefined {
  const services = state.servicesByHostname(hostname);
  return services.find((s) => s.namespace === namespace) ?? services[0];
}

/** This workload's endpoint mapping for the service port, else the service's target port. */
function resolveServicePort(workload: Workload, service: Service, servicePort: number): number | undefined {
  const mapped = workload.services.get(serviceKey(service.namespace, service.hostname))?.find((p) => p.servicePort === servicePort);
  if (mapped && mapped.targetPort > 0) return mapped.targetPort;
  const port = service.ports.find((p) => p.servicePort === servicePort);
  if (port && port.targetPort > 0) return port.targetPort;
  return undefined;
}

/** The workload's first IP of the given family (4 or 6), or its first IP of any family. */
function pickLocalIp(workload: Workload, family: number): string | undefined {
  return workload.addresses.find((a) => isIP(a) === family) ?? workload.addresses[0];
}

/** One finished inbound tunnel, for telemetry and access logs. */
export interface InboundConnection {
  readonly peer: SpiffeId;
  readonly sourceIp: string;
  readonly destination: { readonly ip: string; readonly port: number };
  readonly policyReason: string;
  /** Bytes from the HBONE client to the app, and back. */
  readonly bytesReceived: number;
  readonly bytesSent: number;
  readonly error?: ErrorCode;
}

/** What the proxy records per inbound connection: Istio's destination-reported metrics and access log. */
export interface InboundTelemetry {
  readonly metrics: L4Metrics;
  /** The `access` logger. */
  readonly accessLog: Logger;
  /** ztunnel's network, to find the source workload by IP. */
  readonly network: string;
}

export interface InboundHandlerOptions {
  readonly state: StateReader;
  /** The workload served now (re-read per CONNECT, so xDS updates apply); undefined once it is gone. */
  readonly local: () => InboundLocal | undefined;
  readonly connectTimeoutMs?: number;
  /** Opens the connection to the app (marked, or inside the pod's namespace); `net.connect` by default. */
  readonly connectSocket?: ConnectSocket;
  readonly logger?: Logger;
  readonly telemetry?: InboundTelemetry;
  /** Live tunnels are registered here, so a policy change can close those it now denies. */
  readonly connections?: ConnectionManager;
  readonly onConnection?: (connection: InboundConnection) => void;
}

let nextConnectionId = 0;

/**
 * The HBONE handler for one local workload: `decideInbound`, then dial the app and tunnel to it.
 * Connections that pass validation are counted (opened, closed, bytes; DENY or CONNECT on failure)
 * and access-logged; a live tunnel is registered with the connection manager until it ends.
 */
export function inboundHandler(options: InboundHandlerOptions): HboneHandler {
  const log = (options.logger ?? silentLogger()).child({ component: 'inbound' });
  const timeoutMs = options.connectTimeoutMs ?? Timeouts.upstreamConnectMs;
  return async (request) => {
    const started = Date.now();
    const sourceIp = unmapIpv4(request.remoteAddress);
    const refused = (status: 400 | 401 | 503, code: ErrorCode, reason: string): HboneDecision => {
      log.info({ code, status, err: reason, peer: formatSpiffeId(request.peer), src: sourceIp, authority: request.authority }, 'inbound refused');
      return { status, code, reason };
    };
    const local = options.local();
    if (!local) return refused(503, ErrorCode.PROXY_UNKNOWN_LOCAL_WORKLOAD, 'the local workload is not in the mesh state');
    const decision = decideInbound(options.state, local, { target: request.target, peer: request.peer, sourceIp });
    if (decision.kind === 'refuse' && decision.status !== 401) return refused(decision.status, decision.code, decision.reason);

    // From here on the connection counts: authorization and the app connect are its outcome.
    const record = recorder(options, local.workload, request, sourceIp, started);
    if (decision.kind === 'refuse') {
      record.finish({ sent: 0, received: 0 }, { code: decision.code, message: decision.reason });
      return refused(decision.status, decision.code, decision.reason);
    }

    const target = formatAuthority(decision.ip, decision.port);
    let upstream: Socket;
    try {
      upstream = await dial(decision.ip, decision.port, timeoutMs, request.signal, options.connectSocket);
    } catch (err) {
      const reason = `connect to ${target} failed: ${errorMessage(err)}`;
      record.finish({ sent: 0, received: 0 }, { code: ErrorCode.HBONE_UPSTREAM_CONNECT_FAILED, message: reason });
      return refused(503, ErrorCode.HBONE_UPSTREAM_CONNECT_FAILED, reason);
    }

    const tracked = options.connections
      ? trackProxied(options.connections, { id: `inbound-${++nextConnectionId}`, workload: local.workload, attributes: { sourceIp, destinationIp: decision.ip, destinationPort: decision.port, peer: request.peer } }, upstream, (reason) =>
          log.info({ code: ErrorCode.PROXY_POLICY_CHANGED, err: reason, peer: formatSpiffeId(request.peer), src: sourceIp, dst: target }, 'inbound connection closed'),
        )
      : undefined;
    const onClose = (result: RelayResult) => {
      tracked?.untrack();
      const bytes = { received: result.bytesDownstreamToUpstream, sent: result.bytesUpstreamToDownstream };
      const failure = tracked?.closedBy() ?? (result.error ? { code: result.error.code as ErrorCode, message: result.error.message } : undefined);
      record.finish(bytes, failure, target);
      options.onConnection?.({
        peer: request.peer,
        sourceIp,
        destination: { ip: decision.ip, port: decision.port },
        policyReason: decision.policyReason,
        bytesReceived: bytes.received,
        bytesSent: bytes.sent,
        ...(failure ? { error: failure.code } : {}),
      });
    };
    return { status: 200, upstream, onClose };
  };
}

/** Metrics opened now and counted once at `finish`, with the access-log line (destination-reported). */
function recorder(options: InboundHandlerOptions, workload: Workload, request: HboneRequest, sourceIp: string, started: number) {
  const telemetry = options.telemetry;
  if (!telemetry) return { finish: () => {} };
  const source = options.state.workloadByAddress(telemetry.network, sourceIp);
  const destinationService = inboundService(options.state, workload, request);
  const identity = workloadIdentity(workload);
  const metrics = telemetry.metrics.connection(
    connectionLabels({ reporter: 'destination', source, destination: workload, destinationService, sourcePrincipal: request.peer, destinationPrincipal: identity, securityPolicy: 'mutual_tls' }),
  );
  return {
    finish(bytes: { sent: number; received: number }, failure?: { code: ErrorCode; message: string }, dialed?: string) {
      metrics.close({ ...bytes, responseFlags: failure ? responseFlagFor(failure.code) : undefined });
      logConnectionComplete(telemetry.accessLog, {
        direction: 'inbound',
        srcAddr: formatAuthority(sourceIp, request.remotePort),
        dstAddr: dialed ?? formatAuthority(unmapIpv4(request.localAddress), request.localPort),
        dstHboneAddr: request.authority,
        source,
        destination: workload,
        destinationService,
        sourceIdentity: request.peer,
        destinationIdentity: identity,
        bytesSent: bytes.sent,
        bytesRecv: bytes.received,
        durationMs: Date.now() - started,
        error: failure ? `${failure.code}: ${failure.message}` : undefined,
      });
    },
  };
}

/**
 * The service to report as the destination (§6.1): the one named in `Forwarded host=`, else the
 * hostname target, else the first service of the pod whose port map targets the destination port.
 */
export function inboundService(state: StateReader, workload: Workload, request: Pick<HboneRequest, 'forwarded' | 'target'>): Service | undefined {
  const host = parseForwarded(request.forwarded).host ?? (request.target.kind === 'hostname' ? request.target.hostname : undefined);
  if (host) {
    const named = serviceForHostname(state, host, workload.namespace);
    if (named) return named;
  }
  const port = request.target.port;
  for (const [key, ports] of workload.services) {
    const slash = key.indexOf('/');
    const service = state.service(key.slice(0, slash), key.slice(slash + 1));
    if (!service) continue;
    if (ports.some((p) => p.targetPort === port) || service.ports.some((p) => p.targetPort === port)) return service;
  }
  return undefined;
}

import { isIP, type Socket } from 'node:net';
import { ErrorCode } from '../core/error-codes.ts';
import { errorMessage } from '../core/errors.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import { formatAuthority, type HboneTarget } from '../hbone/authority.ts';
import { dial } from '../hbone/forward.ts';
import type { RelayResult } from '../hbone/relay.ts';
import type { HboneDecision, HboneHandler } from '../hbone/server.ts';
import { Timeouts } from '../hbone/settings.ts';
import { formatSpiffeId, type SpiffeId } from '../identity/spiffe.ts';
import type { StateReader } from '../workload-api/store.ts';
import { serviceKey, type Service, type Workload } from '../workload-api/types.ts';
import { authorize } from './rbac.ts';

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

export interface InboundHandlerOptions {
  readonly state: StateReader;
  readonly local: InboundLocal;
  readonly connectTimeoutMs?: number;
  readonly logger?: Logger;
  readonly onConnection?: (connection: InboundConnection) => void;
}

/** `::ffff:10.0.0.1` (a dual-stack listener's view of an IPv4 client) → `10.0.0.1`. */
function unmapIpv4(ip: string): string {
  return ip.startsWith('::ffff:') && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip;
}

/** The HBONE handler for one local workload: `decideInbound`, then dial the app and tunnel to it. */
export function inboundHandler(options: InboundHandlerOptions): HboneHandler {
  const log = (options.logger ?? silentLogger()).child({ component: 'inbound' });
  const timeoutMs = options.connectTimeoutMs ?? Timeouts.upstreamConnectMs;
  return async (request) => {
    const sourceIp = unmapIpv4(request.remoteAddress);
    const decision = decideInbound(options.state, options.local, { target: request.target, peer: request.peer, sourceIp });
    const refused = (status: 400 | 401 | 503, code: ErrorCode, reason: string): HboneDecision => {
      log.info({ code, status, err: reason, peer: formatSpiffeId(request.peer), src: sourceIp, authority: request.authority }, 'inbound refused');
      return { status, code, reason };
    };
    if (decision.kind === 'refuse') return refused(decision.status, decision.code, decision.reason);

    const target = formatAuthority(decision.ip, decision.port);
    let upstream: Socket;
    try {
      upstream = await dial(decision.ip, decision.port, timeoutMs, request.signal);
    } catch (err) {
      return refused(503, ErrorCode.HBONE_UPSTREAM_CONNECT_FAILED, `connect to ${target} failed: ${errorMessage(err)}`);
    }
    const onClose = (result: RelayResult) => {
      options.onConnection?.({
        peer: request.peer,
        sourceIp,
        destination: { ip: decision.ip, port: decision.port },
        policyReason: decision.policyReason,
        bytesReceived: result.bytesDownstreamToUpstream,
        bytesSent: result.bytesUpstreamToDownstream,
        ...(result.error ? { error: result.error.code } : {}),
      });
    };
    return { status: 200, upstream, onClose };
  };
}

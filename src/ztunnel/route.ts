import { isIP } from 'node:net';
import type { ErrorCode } from '../core/error-codes.ts';
import { formatAuthority } from '../hbone/authority.ts';
import { parseSpiffeId, spiffeIdEquals, type SpiffeId } from '../identity/spiffe.ts';
import type { StateReader } from '../workload-api/store.ts';
import type { GatewayAddress, Service, Workload } from '../workload-api/types.ts';
import { chooseIp, pickVipService, selectEndpoint, weightedPick } from './endpoint-selection.ts';
import { describeGateway, gatewayInstances, resolveWaypoint, type ResolvedWaypoint } from './waypoint.ts';

/**
 * The outbound (15001) routing decision of ztunnel (reference ztunnel.md §4.2), as a pure function of
 * the mesh state and one captured connection. The socket code dials what this returns and never
 * recomputes it.
 */

/** The HBONE port of a peer ztunnel, used for direct pod traffic (§3.1). */
export const HBONE_PORT = 15008;

export interface SocketAddr {
  readonly ip: string;
  readonly port: number;
}

export interface OutboundRequest {
  /** The workload the connection comes from (from ZDS WorkloadInfo). */
  readonly source: Workload;
  readonly sourceAddress: SocketAddr;
  /** The original destination (SO_ORIGINAL_DST). */
  readonly destination: SocketAddr;
  /** This ztunnel's network: the lookup key for destination IPs. */
  readonly network: string;
  /** The proxy's own listener ports (15001, 15006, 15008, and 15080 with SOCKS5). */
  readonly ownPorts: readonly number[];
}

/** Stable codes for refusals, from the registry in core/error-codes.ts. */
export type RouteRefusalCode = Extract<ErrorCode, `PROXY_${string}`>;

export type RouteVia = 'direct' | 'service-waypoint' | 'workload-waypoint';

export type RouteDecision =
  | {
      readonly kind: 'hbone';
      readonly via: RouteVia;
      /** Where to open TLS: the peer's HBONE port, or the waypoint's. */
      readonly dial: SocketAddr;
      /** The CONNECT `:authority`. */
      readonly authority: string;
      /** The peer leaf must carry one of these as a URI SAN (§3.3). */
      readonly expectedIdentities: readonly SpiffeId[];
      /** The workload the client meant (absent when it addressed a service through its waypoint). */
      readonly destinationWorkload?: Workload;
      /** The service the client addressed, if any. */
      readonly destinationService?: Service;
      /** Set when `via` is a waypoint: the instance dialled. */
      readonly waypoint?: ResolvedWaypoint;
    }
  | {
      readonly kind: 'tcp';
      /** Plain TCP to a workload outside the mesh (tunnel protocol NONE). */
      readonly dial: SocketAddr;
      readonly destinationWorkload: Workload;
      readonly destinationService?: Service;
    }
  | {
      readonly kind: 'passthrough';
      /** Plain TCP to the original destination: unknown address, or a PASSTHROUGH service. */
      readonly dial: SocketAddr;
      readonly destinationService?: Service;
    }
  | { readonly kind: 'refuse'; readonly code: RouteRefusalCode; readonly reason: string };

export function routeOutbound(state: StateReader, request: OutboundRequest, random: () => number = Math.random): RouteDecision {
  const { source, destination: dst, network } = request;
  const target = formatAuthority(dst.ip, dst.port);

  // 1. Self call.
  if (isLoopback(dst.ip) && request.ownPorts.includes(dst.port)) {
    return refuse('PROXY_SELF_CALL', `${target} is one of this proxy's own listeners`);
  }

  // 2. Workload IPs first, then service VIPs.
  const addressedWorkload = state.workloadByAddress(network, dst.ip);
  const service = addressedWorkload ? undefined : pickVipService(state.servicesByVip(network, dst.ip), source.namespace);

  if (service) {
    const gateway = serviceWaypoint(service, random);
    if (gateway) {
      const resolved = resolveWaypoint(state, gateway, { source, originalIp: dst.ip }, random);
      if (!resolved.ok) return refuse('PROXY_UNKNOWN_WAYPOINT', `unknown waypoint for service ${serviceName(service)}: ${resolved.reason}`);
      const wp = resolved.waypoint;
      if (wp.workload.network !== network) {
        return refuse('PROXY_CROSS_NETWORK_UNSUPPORTED', `waypoint ${describeGateway(gateway)} of service ${serviceName(service)} is on network "${wp.workload.network}", not "${network}"; cross-network (double HBONE) is not supported yet`);
      }
      return { kind: 'hbone', via: 'service-waypoint', dial: { ip: wp.ip, port: wp.port }, authority: target, expectedIdentities: waypointIdentities(wp), destinationService: service, waypoint: wp };
    }
    if (service.loadBalancing?.mode === 'PASSTHROUGH') return { kind: 'passthrough', dial: dst, destinationService: service };
  }

  // 3. Endpoint selection.
  let workload: Workload;
  let ip: string | undefined;
  let targetPort: number;
  if (service) {
    const selected = selectEndpoint(state, { service, servicePort: dst.port, source, originalIp: dst.ip, mode: 'standard' }, random);
    if (!selected.ok) {
      const f = selected.failure;
      return f.kind === 'no-target-port' ? refuse('PROXY_NO_TARGET_PORT', f.reason) : refuse('PROXY_NO_HEALTHY_UPSTREAM', `no healthy upstream for ${target}: ${f.reason}`);
    }
    ({ workload, ip, targetPort } = selected.endpoint);
  } else if (addressedWorkload) {
    workload = addressedWorkload;
    ip = chooseIp(workload, 'AUTOMATIC', dst.ip);
    targetPort = dst.port;
  } else {
    return { kind: 'passthrough', dial: dst };
  }

  // 4. Another network would need its network gateway (double HBONE).
  if (workload.network !== network) {
    return refuse('PROXY_CROSS_NETWORK_UNSUPPORTED', `endpoint ${workload.uid} for ${target} is on network "${workload.network}", not "${network}"; cross-network (double HBONE) is not supported yet`);
  }
  if (ip === undefined) {
    return refuse('PROXY_NO_ENDPOINT_IP', `endpoint ${workload.uid} for ${target} has no IP of a usable family (hostname endpoints are not supported yet)`);
  }

  // 5. Workload waypoint: only for workload-addressed traffic, and never from the waypoint itself.
  if (!service && workload.waypoint && !sourceIsWaypoint(state, request, workload.waypoint)) {
    const resolved = resolveWaypoint(state, workload.waypoint, { source, originalIp: dst.ip }, random);
    if (!resolved.ok) return refuse('PROXY_UNKNOWN_WAYPOINT', `unknown waypoint for workload ${workload.uid}: ${resolved.reason}`);
    const wp = resolved.waypoint;
    if (wp.workload.network !== network) {
      return refuse('PROXY_CROSS_NETWORK_UNSUPPORTED', `waypoint ${describeGateway(workload.waypoint)} of workload ${workload.uid} is on network "${wp.workload.network}", not "${network}"; cross-network (double HBONE) is not supported yet`);
    }
    return { kind: 'hbone', via: 'workload-waypoint', dial: { ip: wp.ip, port: wp.port }, authority: target, expectedIdentities: waypointIdentities(wp), destinationWorkload: workload, waypoint: wp };
  }

  // 6. Direct.
  const withService = service ? { destinationService: service } : {};
  if (workload.tunnelProtocol === 'NONE') return { kind: 'tcp', dial: { ip, port: targetPort }, destinationWorkload: workload, ...withService };
  return {
    kind: 'hbone',
    via: 'direct',
    dial: { ip, port: HBONE_PORT },
    authority: formatAuthority(ip, targetPort),
    expectedIdentities: identities(workloadIdentity(workload), service?.subjectAltNames ?? []),
    destinationWorkload: workload,
    ...withService,
  };
}

/** A weighted sample of `weightedWaypoints`, else `waypoint`. */
function serviceWaypoint(service: Service, random: () => number): GatewayAddress | undefined {
  if (service.weightedWaypoints.length > 0) {
    const picked = weightedPick(service.weightedWaypoints, (w) => w.weight, random);
    if (picked) return picked.destination;
  }
  return service.waypoint;
}

/** The source is the waypoint when its identity is an instance's and its IP is one of that instance's (§4.2 step 5). */
function sourceIsWaypoint(state: StateReader, request: OutboundRequest, gateway: GatewayAddress): boolean {
  const id = workloadIdentity(request.source);
  return gatewayInstances(state, gateway, request.source.namespace).some(
    (w) => spiffeIdEquals(workloadIdentity(w), id) && w.addresses.includes(request.sourceAddress.ip),
  );
}

function waypointIdentities(wp: ResolvedWaypoint): readonly SpiffeId[] {
  return identities(workloadIdentity(wp.workload), wp.service?.subjectAltNames ?? []);
}

export function workloadIdentity(w: Workload): SpiffeId {
  return { trustDomain: w.trustDomain, namespace: w.namespace, serviceAccount: w.serviceAccount };
}

/** The workload's identity plus the SANs that parse as SPIFFE ids, without duplicates. */
function identities(first: SpiffeId, sans: readonly string[]): readonly SpiffeId[] {
  const out: SpiffeId[] = [first];
  for (const san of sans) {
    const parsed = parseSpiffeId(san);
    if (parsed.ok && !out.some((id) => spiffeIdEquals(id, parsed.value))) out.push(parsed.value);
  }
  return out;
}

/** `::ffff:10.0.0.1` (a dual-stack listener's view of an IPv4 peer) → `10.0.0.1`. */
export function unmapIpv4(ip: string): string {
  return /^::ffff:\d+\.\d+\.\d+\.\d+$/i.test(ip) ? ip.slice(7) : ip;
}

function isLoopback(ip: string): boolean {
  if (isIP(ip) === 4) return ip.startsWith('127.');
  const lower = ip.toLowerCase();
  return lower === '::1' || lower.startsWith('::ffff:127.');
}

function serviceName(service: Service): string {
  return `${service.namespace}/${service.hostname}`;
}

function refuse(code: RouteRefusalCode, reason: string): RouteDecision {
  return { kind: 'refuse', code, reason };
}

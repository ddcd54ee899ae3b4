import type { StateReader } from '../workload-api/store.ts';
import type { GatewayAddress, Service, Workload } from '../workload-api/types.ts';
import { pickVipService, selectEndpoint } from './endpoint-selection.ts';

/**
 * Waypoint resolution (reference ztunnel.md §4.5), pure. A `GatewayAddress` names a workload IP, a
 * service VIP or a service hostname; services are load-balanced in waypoint mode (the port need not
 * be listed when the endpoint has an application tunnel).
 */

export interface ResolvedWaypoint {
  /** The waypoint instance chosen. */
  readonly workload: Workload;
  /** The waypoint service, when the gateway named one (its SANs are expected too, §3.3). */
  readonly service?: Service;
  readonly ip: string;
  /** The HBONE port to dial on `ip`. */
  readonly port: number;
}

export type WaypointResult = { readonly ok: true; readonly waypoint: ResolvedWaypoint } | { readonly ok: false; readonly reason: string };

export interface WaypointContext {
  readonly source: Workload;
  /** The IP the client dialled: for hostname gateways, the waypoint IP family follows it. */
  readonly originalIp: string;
}

export function describeGateway(gateway: GatewayAddress): string {
  const d = gateway.destination;
  return d.kind === 'hostname' ? `${d.namespace}/${d.hostname}:${gateway.hboneMtlsPort}` : `${d.network}/${d.ip}:${gateway.hboneMtlsPort}`;
}

export function resolveWaypoint(state: StateReader, gateway: GatewayAddress, context: WaypointContext, random: () => number): WaypointResult {
  const d = gateway.destination;
  const port = gateway.hboneMtlsPort;
  let service: Service | undefined;
  let originalIp: string;
  if (d.kind === 'address') {
    service = pickVipService(state.servicesByVip(d.network, d.ip), context.source.namespace);
    if (!service) {
      const workload = state.workloadByAddress(d.network, d.ip);
      if (!workload) return { ok: false, reason: `waypoint ${describeGateway(gateway)} is neither a known service VIP nor a workload IP` };
      return { ok: true, waypoint: { workload, ip: d.ip, port } };
    }
    originalIp = d.ip;
  } else {
    service = state.service(d.namespace, d.hostname);
    if (!service) return { ok: false, reason: `waypoint service ${describeGateway(gateway)} is not known` };
    originalIp = context.originalIp;
  }
  const selected = selectEndpoint(state, { service, servicePort: port, source: context.source, originalIp, mode: 'waypoint' }, random);
  if (!selected.ok) return { ok: false, reason: `waypoint ${describeGateway(gateway)}: ${selected.failure.reason}` };
  const { workload, ip, targetPort } = selected.endpoint;
  if (ip === undefined) return { ok: false, reason: `waypoint ${describeGateway(gateway)}: instance ${workload.uid} has no usable IP` };
  return { ok: true, waypoint: { workload, service, ip, port: targetPort } };
}

/** Every workload that may be an instance of this gateway (for the loop check: is the source the waypoint?). */
export function gatewayInstances(state: StateReader, gateway: GatewayAddress, clientNamespace: string): readonly Workload[] {
  const d = gateway.destination;
  const service = d.kind === 'address' ? pickVipService(state.servicesByVip(d.network, d.ip), clientNamespace) : state.service(d.namespace, d.hostname);
  if (service) return state.endpoints(service.namespace, service.hostname).map((e) => e.workload);
  if (d.kind === 'address') {
    const workload = state.workloadByAddress(d.network, d.ip);
    return workload ? [workload] : [];
  }
  return [];
}

import { canonicalIp } from '../workload-api/convert.ts';
import type { AuthorizationPolicy, GatewayAddress } from '../workload-api/types.ts';
import { emptyMatch } from './authorization.ts';
import { labelSelectorMatches, labelsOf, type Gateway, type KubeObject } from './kube-objects.ts';
import { Report } from './report.ts';
import type { ClusterView } from './view.ts';

/**
 * Binding a service, pod or entry to a waypoint (reference istio-ambient.md §2.4), pure.
 *
 * - `istio.io/use-waypoint` on the object (`none` stops there), else on its namespace; the waypoint's namespace
 *   from `istio.io/use-waypoint-namespace` read where the name was found, else the object's namespace.
 * - The Gateway must exist, be a waypoint (class `istio-waypoint`, or a class whose controller is
 *   `istio.io/mesh-controller`) and have a status address, else `WaypointIsNotReady`.
 * - The HBONE listener's `allowedRoutes.namespaces` (Same by default, All, Selector) must admit the object's
 *   namespace, else `AttachmentDenied`.
 * - Traffic type (`istio.io/waypoint-for` on the Gateway, else its GatewayClass, else `service`): services need
 *   service|all, workloads need workload|all, else `UnsupportedTrafficType`; a workload that inherits a service
 *   waypoint from its namespace is silently not bound.
 * - The address: the status Hostname (`{hostname: {namespace, hostname}, hbone_mtls_port}`), else the first status
 *   IP (`{address: {network, ip}}`); the port is the HBONE listener's (15008 by default).
 */

export const USE_WAYPOINT = 'istio.io/use-waypoint';
export const USE_WAYPOINT_NAMESPACE = 'istio.io/use-waypoint-namespace';
export const WAYPOINT_FOR = 'istio.io/waypoint-for';
export const MANAGED_LABEL = 'gateway.istio.io/managed';
export const WAYPOINT_CLASS = 'istio-waypoint';
export const MESH_CONTROLLER = 'istio.io/mesh-controller';
export const WAYPOINT_BOUND = 'istio.io/WaypointBound';
export const USE_WAYPOINT_CANARY = 'istio.io/use-waypoint-canary';
export const USE_WAYPOINT_CANARY_NAMESPACE = 'istio.io/use-waypoint-canary-namespace';
export const CANARY_WEIGHT = 'istio.io/use-waypoint-canary-weight';
const MANAGED_WAYPOINT_VALUES = new Set(['istio.io-mesh-controller', 'istio.io-eastwest-controller']);

export type TrafficType = 'service' | 'workload' | 'all' | 'none';
const TRAFFIC_TYPES: readonly TrafficType[] = ['service', 'workload', 'all', 'none'];

export type WaypointBinding =
  | { readonly kind: 'none' }
  | { readonly kind: 'bound'; readonly key: string; readonly address: GatewayAddress }
  | { readonly kind: 'unbound'; readonly key: string; readonly reason: 'WaypointIsNotReady' | 'AttachmentDenied' | 'UnsupportedTrafficType'; readonly message: string }
  | { readonly kind: 'ignored'; readonly key: string };

/** A Gateway's traffic type: its label, else its class's, else `service`. */
export function trafficTypeOf(view: ClusterView, gw: Gateway, report?: Report): TrafficType {
  const own = labelsOf(gw)[WAYPOINT_FOR];
  const className = gw.spec?.gatewayClassName ?? '';
  const text = own ?? labelsOf(view.gatewayClass(className))[WAYPOINT_FOR] ?? 'service';
  if ((TRAFFIC_TYPES as readonly string[]).includes(text)) return text as TrafficType;
  report?.problem(`waypoint ${gw.metadata?.namespace ?? ''}/${gw.metadata?.name ?? ''}`, `unknown ${WAYPOINT_FOR} ${JSON.stringify(text)}; taken as none`);
  return 'none';
}

export function isWaypointGateway(view: ClusterView, gw: Gateway): boolean {
  const className = gw.spec?.gatewayClassName ?? '';
  return className === WAYPOINT_CLASS || view.gatewayClass(className)?.spec?.controllerName === MESH_CONTROLLER;
}

function hboneListener(gw: Gateway): NonNullable<NonNullable<Gateway['spec']>['listeners']>[number] | undefined {
  return (gw.spec?.listeners ?? []).find((l) => l.protocol === 'HBONE');
}

/** The address ztunnel sends to for this Gateway, once it has a status address; undefined before. */
export function waypointAddress(view: ClusterView, gw: Gateway): GatewayAddress | undefined {
  const addresses = gw.status?.addresses ?? [];
  const port = hboneListener(gw)?.port ?? 15008;
  const hostname = addresses.find((a) => a.type === 'Hostname' && a.value);
  if (hostname?.value) return { destination: { kind: 'hostname', namespace: gw.metadata?.namespace ?? '', hostname: hostname.value }, hboneMtlsPort: port };
  for (const a of addresses) {
    if (a.type !== undefined && a.type !== 'IPAddress') continue;
    const ip = canonicalIp(a.value ?? '');
    if (ip) return { destination: { kind: 'address', network: view.network(), ip }, hboneMtlsPort: port };
  }
  return undefined;
}

function attachmentAllowed(view: ClusterView, gw: Gateway, fromNamespace: string): boolean {
  const gwNamespace = gw.metadata?.namespace ?? '';
  const ns = hboneListener(gw)?.allowedRoutes?.namespaces;
  switch (ns?.from ?? 'Same') {
    case 'All':
      return true;
    case 'Selector':
      return labelSelectorMatches(ns?.selector ?? {}, labelsOf(view.namespace(fromNamespace)));
    default:
      return fromNamespace === gwNamespace;
  }
}

/** Where the object asks for a waypoint: `{ns, name, inherited}`, `none`, or undefined (no label anywhere). */
export function waypointReference(view: ClusterView, obj: KubeObject): { readonly namespace: string; readonly name: string; readonly inherited: boolean } | 'none' | undefined {
  const namespace = obj.metadata?.namespace ?? '';
  const own = labelsOf(obj);
  if (own[USE_WAYPOINT] !== undefined) {
    if (own[USE_WAYPOINT] === 'none' || own[USE_WAYPOINT] === '') return 'none';
    return { namespace: own[USE_WAYPOINT_NAMESPACE] || namespace, name: own[USE_WAYPOINT], inherited: false };
  }
  const nsLabels = labelsOf(view.namespace(namespace));
  if (nsLabels[USE_WAYPOINT] === undefined) return undefined;
  if (nsLabels[USE_WAYPOINT] === 'none' || nsLabels[USE_WAYPOINT] === '') return 'none';
  return { namespace: nsLabels[USE_WAYPOINT_NAMESPACE] || namespace, name: nsLabels[USE_WAYPOINT], inherited: true };
}

/**
 * The waypoint of `obj` as a `service` (Service, ServiceEntry) or a `workload` (Pod, WorkloadEntry). Sets the
 * `istio.io/WaypointBound` condition on `report` (services and WorkloadEntries: where Istio writes it) and records
 * the waypoint key it looked up.
 */
export function resolveWaypoint(view: ClusterView, obj: KubeObject, as: 'service' | 'workload', report: Report, setCondition: boolean = as === 'service'): WaypointBinding {
  if (as === 'service' && MANAGED_WAYPOINT_VALUES.has(labelsOf(obj)[MANAGED_LABEL] ?? '')) return { kind: 'none' };
  const ref = waypointReference(view, obj);
  if (ref === undefined || ref === 'none') return { kind: 'none' };
  const key = `${ref.namespace}/${ref.name}`;
  report.waypoints.add(key);
  const unbound = (reason: 'WaypointIsNotReady' | 'AttachmentDenied' | 'UnsupportedTrafficType', message: string): WaypointBinding => {
    if (setCondition) report.condition(WAYPOINT_BOUND, 'False', reason, message);
    return { kind: 'unbound', key, reason, message };
  };
  const gw = view.gateway(ref.namespace, ref.name);
  if (!gw || !isWaypointGateway(view, gw)) return unbound('WaypointIsNotReady', `waypoint ${key} does not exist (no Gateway of class ${WAYPOINT_CLASS})`);
  const address = waypointAddress(view, gw);
  if (!address) return unbound('WaypointIsNotReady', `waypoint ${key} has no address yet`);
  if (!attachmentAllowed(view, gw, obj.metadata?.namespace ?? '')) return unbound('AttachmentDenied', `waypoint ${key} does not allow attachment from namespace ${obj.metadata?.namespace ?? ''}`);
  const traffic = trafficTypeOf(view, gw, report);
  const ok = traffic === 'all' || traffic === as;
  if (!ok) {
    if (as === 'workload' && ref.inherited) return { kind: 'ignored', key };
    return unbound('UnsupportedTrafficType', `waypoint ${key} accepts ${traffic} traffic, not ${as} traffic`);
  }
  if (setCondition) report.condition(WAYPOINT_BOUND, 'True', 'WaypointAccepted', `bound to ${key}`);
  return { kind: 'bound', key, address };
}

/**
 * The canary waypoint of a service (§2.4 step 7): `istio.io/use-waypoint-canary` (+ `-namespace`) and the weight
 * annotation `istio.io/use-waypoint-canary-weight` (0..100), on the object, else on its namespace. Given a bound
 * primary, answers `[{primary, 100-w}, {canary, w}]`; nothing when no canary is asked for, and nothing (with a
 * problem) when the weight is invalid or the canary waypoint is not usable.
 */
export function canaryWaypoints(
  view: ClusterView,
  obj: KubeObject,
  primary: GatewayAddress,
  report: Report,
): Array<{ readonly destination: GatewayAddress; readonly weight: number }> {
  const namespace = obj.metadata?.namespace ?? '';
  const nsObj = view.namespace(namespace);
  const own = labelsOf(obj)[USE_WAYPOINT_CANARY] !== undefined;
  const labels = own ? labelsOf(obj) : labelsOf(nsObj);
  const annotations = own ? (obj.metadata?.annotations ?? {}) : (nsObj?.metadata?.annotations ?? {});
  const name = labels[USE_WAYPOINT_CANARY];
  if (!name || name === 'none') return [];
  const weightText = annotations[CANARY_WEIGHT] ?? '';
  const weight = /^\d{1,3}$/.test(weightText) ? Number(weightText) : NaN;
  if (!(weight >= 0 && weight <= 100)) {
    report.problem(`metadata.annotations["${CANARY_WEIGHT}"]`, `must be 0-100, got ${JSON.stringify(weightText)}; no canary`);
    return [];
  }
  const canary = resolveWaypoint(view, { metadata: { namespace, labels: { [USE_WAYPOINT]: name, ...(labels[USE_WAYPOINT_CANARY_NAMESPACE] ? { [USE_WAYPOINT_NAMESPACE]: labels[USE_WAYPOINT_CANARY_NAMESPACE] } : {}) } } }, 'service', new Report());
  report.waypoints.add(`${labels[USE_WAYPOINT_CANARY_NAMESPACE] || namespace}/${name}`);
  if (canary.kind !== 'bound') {
    report.problem(`metadata.labels["${USE_WAYPOINT_CANARY}"]`, `canary waypoint ${labels[USE_WAYPOINT_CANARY_NAMESPACE] || namespace}/${name} is not usable (${canary.kind === 'unbound' ? canary.reason : 'not bound'}); no canary`);
    return [];
  }
  return [
    { destination: primary, weight: 100 - weight },
    { destination: canary.address, weight },
  ];
}

export const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';

/** `istio_allow_waypoint_<ns>_<name>`, in the waypoint's namespace. */
export function waypointPolicyName(namespace: string, name: string): string {
  return `istio_allow_waypoint_${namespace}_${name}`;
}

/**
 * `PILOT_AUTO_ALLOW_WAYPOINT_POLICY` (reference istio-ambient.md §3.7): per waypoint an ALLOW policy (its namespace,
 * WORKLOAD_SELECTOR) with the exact principals of its instance pods' service accounts, listed by every workload
 * bound to it directly or through one of its services. None while the waypoint has no instance pod (an ALLOW with
 * no principal would allow everyone).
 */
export function waypointAllowPolicy(view: ClusterView, gw: Gateway): AuthorizationPolicy | undefined {
  const namespace = gw.metadata?.namespace ?? '';
  const name = gw.metadata?.name ?? '';
  if (!isWaypointGateway(view, gw)) return undefined;
  const accounts = view.waypointServiceAccounts(namespace, name);
  if (accounts.length === 0) return undefined;
  return {
    name: waypointPolicyName(namespace, name),
    namespace,
    scope: 'WORKLOAD_SELECTOR',
    action: 'ALLOW',
    rules: [{ clauses: [{ matches: [{ ...emptyMatch(), principals: accounts.map((sa) => ({ kind: 'exact' as const, value: `${view.settings.trustDomain}/ns/${namespace}/sa/${sa}` })) }] }] }],
    dryRun: false,
  };
}

import { isIP } from 'node:net';
import { canonicalIp } from '../workload-api/convert.ts';
import type { AppProtocol, LoadBalancing, NetworkAddress, Port, Service } from '../workload-api/types.ts';
import { annotationsOf, labelsOf, type KubeObject, type KubeService, type ServicePort } from './kube-objects.ts';
import type { Report } from './report.ts';
import type { ClusterView } from './view.ts';
import { canaryWaypoints, resolveWaypoint } from './waypoint.ts';

/**
 * Kubernetes Service → Workload API Service (reference istio-ambient.md §3.5), pure.
 *
 * - ExternalName services are not published; hostname `<name>.<ns>.svc.<domainSuffix>`.
 * - VIPs: `spec.clusterIPs` (else `clusterIP`) without `None`; a headless service has none. An address that is not
 *   an IP is a problem and skipped.
 * - Ports: `{service_port, target_port (0 when named; the port itself when absent), app_protocol}` where the
 *   protocol comes from `appProtocol`, else the port name's prefix (`http-web` → http).
 * - Load balancing: `internalTrafficPolicy: Local` → NODE/STRICT; else the traffic distribution
 *   (`spec.trafficDistribution`, the `networking.istio.io/traffic-distribution` annotation on the Service, then on
 *   the Namespace); `publishNotReadyAddresses` → health policy ALLOW_ALL.
 * - `ipFamilies` → IPV4_ONLY / IPV6_ONLY / DUAL, else AUTOMATIC; `canonical` true; visibility PUBLIC.
 * - Waypoint per §2.4 as a `service` (with a canary: `weighted_waypoints`); `istio.io/ingress-use-waypoint=true` on
 *   the Service, else its Namespace.
 */

export const TRAFFIC_DISTRIBUTION = 'networking.istio.io/traffic-distribution';
export const INGRESS_USE_WAYPOINT = 'istio.io/ingress-use-waypoint';

const PROTOCOLS: Readonly<Record<string, AppProtocol>> = {
  http: 'HTTP11',
  http2: 'HTTP2',
  grpc: 'GRPC',
  https: 'TLS',
  tls: 'TLS',
  tcp: 'TCP',
  'kubernetes.io/h2c': 'HTTP2',
  'kubernetes.io/ws': 'HTTP11',
  'kubernetes.io/wss': 'TLS',
};

function parseProtocol(text: string | undefined): AppProtocol | undefined {
  if (!text) return undefined;
  return PROTOCOLS[text.toLowerCase()];
}

/** Istio's protocol detection for a port: `appProtocol`, else the name (`http`, `http-web`, `grpc-x`), else UNKNOWN. */
export function appProtocolOf(appProtocol: string | undefined, portName: string | undefined): AppProtocol {
  const fromApp = parseProtocol(appProtocol);
  if (fromApp) return fromApp;
  const name = (portName ?? '').toLowerCase();
  return parseProtocol(name) ?? parseProtocol(name.split('-')[0]) ?? 'UNKNOWN';
}

export function serviceHostname(name: string, namespace: string, domainSuffix: string): string {
  return `${name}.${namespace}.svc.${domainSuffix}`;
}

/** A targetPort as a number (0 for a named port; the service port when absent). */
export function numericTargetPort(p: ServicePort): number {
  const t = p.targetPort;
  if (t === undefined || t === null || t === '' || t === 0) return p.port ?? 0;
  if (typeof t === 'number') return t;
  return /^\d+$/.test(t) ? Number(t) : 0;
}

export function servicePorts(svc: KubeService, report: Report): Port[] {
  const out: Port[] = [];
  (svc.spec?.ports ?? []).forEach((p, i) => {
    const port = p.port;
    if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65_535) {
      report.problem(`spec.ports[${i}].port`, `must be 1-65535, got ${JSON.stringify(port)}`);
      return;
    }
    const target = numericTargetPort(p);
    if (target < 0 || target > 65_535) {
      report.problem(`spec.ports[${i}].targetPort`, `must be 1-65535 or a name, got ${JSON.stringify(p.targetPort)}`);
      return;
    }
    out.push({ servicePort: port, targetPort: target, appProtocol: appProtocolOf(p.appProtocol, p.name) });
  });
  return out;
}

const PREFER_CLOSE: LoadBalancing = { routingPreference: ['NETWORK', 'REGION', 'ZONE'], mode: 'FAILOVER', healthPolicy: 'ONLY_HEALTHY' };
const PREFER_NODE: LoadBalancing = { routingPreference: ['NETWORK', 'REGION', 'ZONE', 'SUBZONE', 'NODE'], mode: 'FAILOVER', healthPolicy: 'ONLY_HEALTHY' };

/** The traffic distribution as load balancing (Service first, then its Namespace). */
export function trafficDistribution(values: ReadonlyArray<string | undefined>, report: Report): LoadBalancing | undefined {
  const value = values.find((v) => v !== undefined && v !== '');
  switch (value) {
    case undefined:
      return undefined;
    case 'PreferClose':
    case 'PreferSameZone':
      return PREFER_CLOSE;
    case 'PreferSameNode':
      return PREFER_NODE;
    default:
      report.problem('trafficDistribution', `unknown value ${JSON.stringify(value)} (PreferClose, PreferSameZone, PreferSameNode); ignored`);
      return undefined;
  }
}

function loadBalancing(view: ClusterView, svc: KubeService, report: Report): LoadBalancing | undefined {
  let lb: LoadBalancing | undefined;
  if (svc.spec?.internalTrafficPolicy === 'Local') lb = { routingPreference: ['NODE'], mode: 'STRICT', healthPolicy: 'ONLY_HEALTHY' };
  else {
    const ns = view.namespace(svc.metadata?.namespace ?? '');
    lb = trafficDistribution([svc.spec?.trafficDistribution, annotationsOf(svc)[TRAFFIC_DISTRIBUTION], annotationsOf(ns)[TRAFFIC_DISTRIBUTION]], report);
  }
  if (svc.spec?.publishNotReadyAddresses === true) lb = { ...(lb ?? { routingPreference: [], mode: 'UNSPECIFIED_MODE' }), healthPolicy: 'ALLOW_ALL' };
  return lb;
}

export function ingressUseWaypoint(view: ClusterView, obj: KubeObject): boolean {
  const own = labelsOf(obj)[INGRESS_USE_WAYPOINT];
  if (own !== undefined) return own === 'true';
  return labelsOf(view.namespace(obj.metadata?.namespace ?? ''))[INGRESS_USE_WAYPOINT] === 'true';
}

function vips(view: ClusterView, svc: KubeService, report: Report): NetworkAddress[] {
  const list = svc.spec?.clusterIPs && svc.spec.clusterIPs.length > 0 ? svc.spec.clusterIPs : svc.spec?.clusterIP ? [svc.spec.clusterIP] : [];
  const out: NetworkAddress[] = [];
  list.forEach((text, i) => {
    if (text === 'None' || text === '') return;
    const ip = canonicalIp(text);
    if (!ip) report.problem(`spec.clusterIPs[${i}]`, `${JSON.stringify(text)} is not an IP address`);
    else if (!out.some((a) => a.ip === ip)) out.push({ network: view.network(), ip });
  });
  return out;
}

function ipFamilies(svc: KubeService, addresses: readonly NetworkAddress[]): Service['ipFamilies'] {
  const families = new Set(svc.spec?.ipFamilies ?? []);
  if (families.size === 0) {
    // Not yet defaulted by an API server (a file): from the VIPs, as the API server would.
    for (const a of addresses) families.add(isIP(a.ip) === 6 ? 'IPv6' : 'IPv4');
    if (families.size === 0) return 'AUTOMATIC';
  }
  if (families.has('IPv4') && families.has('IPv6')) return 'DUAL';
  if (families.has('IPv4')) return 'IPV4_ONLY';
  if (families.has('IPv6')) return 'IPV6_ONLY';
  return 'AUTOMATIC';
}

/** The published Service, or undefined (ExternalName, no name). */
export function kubeServiceToService(view: ClusterView, svc: KubeService, report: Report): Service | undefined {
  const name = svc.metadata?.name ?? '';
  const namespace = svc.metadata?.namespace ?? '';
  if (!name || !namespace) {
    report.problem('metadata', 'name and namespace are required');
    return undefined;
  }
  if (svc.spec?.type === 'ExternalName') return undefined;
  const addresses = vips(view, svc, report);
  const binding = resolveWaypoint(view, svc, 'service', report);
  const lb = loadBalancing(view, svc, report);
  return {
    name,
    namespace,
    hostname: serviceHostname(name, namespace, view.settings.domainSuffix),
    addresses,
    ports: servicePorts(svc, report),
    subjectAltNames: [],
    ...(binding.kind === 'bound' ? { waypoint: binding.address } : {}),
    ...(lb ? { loadBalancing: lb } : {}),
    ipFamilies: ipFamilies(svc, addresses),
    canonical: true,
    ingressUseWaypoint: ingressUseWaypoint(view, svc),
    weightedWaypoints: binding.kind === 'bound' ? canaryWaypoints(view, svc, binding.address, report) : [],
    visibility: 'PUBLIC',
  };
}

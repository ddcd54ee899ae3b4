import { canonicalIp } from '../workload-api/convert.ts';
import type { AppProtocol, LoadBalancing, Locality, NetworkAddress, Port, Service, Workload } from '../workload-api/types.ts';
import { parseCidr } from './authorization.ts';
import { annotationsOf, labelsOf, selectorMatches, type KubeObject, type ServiceEntry, type WorkloadEntry, type WorkloadEntrySpec } from './kube-objects.ts';
import { Report } from './report.ts';
import { appProtocolOf, ingressUseWaypoint, serviceHostname, TRAFFIC_DISTRIBUTION, trafficDistribution } from './service.ts';
import type { ClusterView } from './view.ts';
import { resolveWaypoint } from './waypoint.ts';
import { canonicalName, canonicalRevision, servicePortsForPod, TUNNEL_LABEL, waypointPolicyRefs, workloadPolicyRefs } from './workload.ts';

/**
 * ServiceEntry and WorkloadEntry (reference istio-ambient.md §3.4, §3.5), pure.
 *
 * - A ServiceEntry publishes one Service per host (key `<ns>/<host>`), visible to its namespace only when
 *   `exportTo` names only that namespace (`.`), to nobody (not published) when it is `~`: VIPs from `spec.addresses` (a CIDR keeps
 *   its length), ports `{number, targetPort or number, protocol}`, `resolution: NONE` → PASSTHROUGH / ALLOW_ALL,
 *   else the traffic-distribution annotation (entry, then namespace); `subjectAltNames`; waypoint per §2.4.
 * - Inline `endpoints` are workloads `<cluster>/networking.istio.io/ServiceEntry/<ns>/<name>/<address>` serving
 *   every host of the entry. `workloadSelector` selects the namespace's WorkloadEntries.
 * - A WorkloadEntry is a workload `<cluster>/networking.istio.io/WorkloadEntry/<ns>/<name>`: an IP `address` →
 *   `addresses`, anything else → `hostname`; network, service account, locality (`region/zone/subzone`), `weight`
 *   → capacity; always HEALTHY; its services are the selecting ServiceEntries and Kubernetes Services.
 * - A DNS-resolution entry without endpoints or selector has one workload per (non-wildcard) host, `hostname` set.
 * - An entry without `addresses` takes the VIPs recorded per host in `status.addresses`, else a VIP allocated by
 *   the translator from 240.240.0.0/16 (a hash of `<ns>/<host>`, probing on collision; wildcard hosts get none). Host collisions in a namespace (the translator): a Kubernetes Service wins, else
 *   the oldest entry; the losers report a problem.
 */

const SE_PROTOCOLS: Readonly<Record<string, AppProtocol>> = { HTTP: 'HTTP11', HTTP2: 'HTTP2', GRPC: 'GRPC', HTTPS: 'TLS', TLS: 'TLS', TCP: 'TCP' };

export function serviceEntryWorkloadUid(clusterId: string, namespace: string, name: string, address: string): string {
  return `${clusterId}/networking.istio.io/ServiceEntry/${namespace}/${name}/${address}`;
}

export function workloadEntryUid(clusterId: string, namespace: string, name: string): string {
  return `${clusterId}/networking.istio.io/WorkloadEntry/${namespace}/${name}`;
}

function entryPorts(se: ServiceEntry, report: Report): Array<Port & { readonly name: string }> {
  const out: Array<Port & { readonly name: string }> = [];
  (se.spec?.ports ?? []).forEach((p, i) => {
    const number = p.number;
    if (typeof number !== 'number' || !Number.isInteger(number) || number < 1 || number > 65_535) {
      report.problem(`spec.ports[${i}].number`, `must be 1-65535, got ${JSON.stringify(number)}`);
      return;
    }
    const target = typeof p.targetPort === 'number' && p.targetPort > 0 && p.targetPort <= 65_535 ? p.targetPort : number;
    const protocol = SE_PROTOCOLS[(p.protocol ?? '').toUpperCase()] ?? appProtocolOf(undefined, p.name);
    out.push({ name: p.name ?? '', servicePort: number, targetPort: target, appProtocol: protocol });
  });
  return out;
}

function entryVips(view: ClusterView, se: ServiceEntry, report: Report): NetworkAddress[] {
  const out: NetworkAddress[] = [];
  (se.spec?.addresses ?? []).forEach((text, i) => {
    const cidr = typeof text === 'string' ? parseCidr(text) : undefined;
    if (!cidr) {
      report.problem(`spec.addresses[${i}]`, `${JSON.stringify(text)} is not an IP address or CIDR`);
      return;
    }
    const full = cidr.ip.includes(':') ? 128 : 32;
    out.push({ network: view.network(), ip: cidr.ip, ...(cidr.prefixLength !== full ? { prefixLength: cidr.prefixLength } : {}) });
  });
  return out;
}

/** The Services of one ServiceEntry, one per host. */
export function serviceEntryServices(view: ClusterView, se: ServiceEntry, report: Report): Service[] {
  const name = se.metadata?.name ?? '';
  const namespace = se.metadata?.namespace ?? '';
  if (!name || !namespace) {
    report.problem('metadata', 'name and namespace are required');
    return [];
  }
  const hosts = (se.spec?.hosts ?? []).filter((h, i) => {
    if (typeof h !== 'string' || h === '' || h.includes('/')) {
      report.problem(`spec.hosts[${i}]`, `${JSON.stringify(h)} is not a host name`);
      return false;
    }
    return true;
  });
  if (hosts.length === 0) report.problem('spec.hosts', 'at least one host is required');
  // exportTo: absent or `*` → everyone; only its own namespace (`.` or the name) → NAMESPACE; `~` → nobody.
  const exportTo = se.spec?.exportTo ?? [];
  if (exportTo.length > 0 && exportTo.every((e) => e === '~')) return [];
  const visibility = exportTo.length === 0 || exportTo.includes('*') || exportTo.some((e) => e !== '.' && e !== namespace && e !== '~') ? 'PUBLIC' : 'NAMESPACE';
  const addresses = entryVips(view, se, report);
  const ports = entryPorts(se, report).map(({ servicePort, targetPort, appProtocol }) => ({ servicePort, targetPort, appProtocol }));
  const binding = resolveWaypoint(view, se, 'service', report);
  let lb: LoadBalancing | undefined;
  if (se.spec?.resolution === 'NONE') lb = { routingPreference: [], mode: 'PASSTHROUGH', healthPolicy: 'ALLOW_ALL' };
  else lb = trafficDistribution([annotationsOf(se)[TRAFFIC_DISTRIBUTION], annotationsOf(view.namespace(namespace))[TRAFFIC_DISTRIBUTION]], report);
  // No addresses written: those an allocator recorded per host in the status (Istio's `status.addresses`), if any.
  const allocated = (host: string): NetworkAddress[] =>
    (se.status?.addresses ?? []).flatMap((a) => {
      const ip = a.host === host ? canonicalIp(a.value ?? '') : undefined;
      return ip ? [{ network: view.network(), ip }] : [];
    });
  // Else one allocated here, as istiod's auto-allocation does (not for wildcard hosts).
  const autoVips = (host: string): NetworkAddress[] => {
    const recorded = allocated(host);
    if (recorded.length > 0 || host.startsWith('*')) return recorded;
    return [{ network: view.network(), ip: view.allocateVip(namespace, host) }];
  };
  return hosts.map((hostname) => ({
    name,
    namespace,
    hostname,
    addresses: addresses.length > 0 || (se.spec?.addresses ?? []).length > 0 ? addresses : autoVips(hostname),
    ports,
    subjectAltNames: [...(se.spec?.subjectAltNames ?? [])],
    ...(binding.kind === 'bound' ? { waypoint: binding.address } : {}),
    ...(lb ? { loadBalancing: lb } : {}),
    ipFamilies: 'AUTOMATIC',
    canonical: true,
    ingressUseWaypoint: ingressUseWaypoint(view, se),
    weightedWaypoints: [],
    visibility,
  }));
}

function parseLocality(text: string | undefined): Locality | undefined {
  if (!text) return undefined;
  const [region = '', zone = '', subzone = ''] = text.split('/');
  return { region, zone, subzone };
}

/** A workload from a WorkloadEntry spec (a WorkloadEntry or a ServiceEntry endpoint). */
function entryWorkload(
  view: ClusterView,
  owner: KubeObject,
  uid: string,
  name: string,
  spec: WorkloadEntrySpec,
  labels: Readonly<Record<string, string>>,
  services: Map<string, Port[]>,
  path: string,
  report: Report,
  bindingCondition: boolean,
): Workload | undefined {
  const namespace = owner.metadata?.namespace ?? '';
  const address = spec.address ?? '';
  const ip = canonicalIp(address);
  if (!address) {
    report.problem(`${path}.address`, 'is required');
    return undefined;
  }
  if (!ip && (address.startsWith('unix://') || /[^A-Za-z0-9.-]/.test(address))) {
    report.problem(`${path}.address`, `${JSON.stringify(address)} is neither an IP address nor a host name`);
    return undefined;
  }
  let capacity = 1;
  if (spec.weight !== undefined) {
    if (!Number.isInteger(spec.weight) || spec.weight < 0 || spec.weight > 4_294_967_295) report.problem(`${path}.weight`, `must be a non-negative integer, got ${JSON.stringify(spec.weight)}`);
    else if (spec.weight > 0) capacity = spec.weight;
  }
  const locality = parseLocality(spec.locality);
  // A WorkloadEntry's own labels (metadata) and spec labels both select and both name it.
  const binding = resolveWaypoint(view, { metadata: { ...owner.metadata, labels } }, 'workload', report, bindingCondition);
  return {
    uid,
    name,
    namespace,
    addresses: ip ? [ip] : [],
    hostname: ip ? '' : address,
    network: spec.network || view.network(),
    tunnelProtocol: labels[TUNNEL_LABEL] === 'http' ? 'HBONE' : 'NONE',
    trustDomain: view.settings.trustDomain,
    serviceAccount: spec.serviceAccount || 'default',
    ...(binding.kind === 'bound' ? { waypoint: binding.address } : {}),
    node: '',
    canonicalName: canonicalName(labels, name),
    canonicalRevision: canonicalRevision(labels),
    workloadType: 'pod',
    workloadName: name,
    nativeTunnel: labels[TUNNEL_LABEL] === 'http',
    services,
    authorizationPolicies: [...new Set([...workloadPolicyRefs(view, namespace, labels), ...waypointPolicyRefs(view, binding, services.keys(), report)])].sort(),
    status: 'HEALTHY',
    clusterId: view.settings.clusterId,
    ...(locality ? { locality } : {}),
    networkMode: 'STANDARD',
    capacity,
  };
}

/** Port map of one entry's hosts for an endpoint with a `ports` name → number map. */
/** (Port problems are reported once, by `serviceEntryServices`.) */
function entryServiceMap(se: ServiceEntry, endpointPorts: Readonly<Record<string, number>> | undefined, report: Report): Map<string, Port[]> {
  const namespace = se.metadata?.namespace ?? '';
  const ports = entryPorts(se, report).map((p) => ({
    servicePort: p.servicePort,
    targetPort: endpointPorts?.[p.name] ?? p.targetPort,
    appProtocol: 'UNKNOWN' as const,
  }));
  return new Map((se.spec?.hosts ?? []).filter((h) => typeof h === 'string' && h !== '').map((h) => [`${namespace}/${h}`, ports]));
}

/** The workloads of a ServiceEntry's inline endpoints. */
export function serviceEntryWorkloads(view: ClusterView, se: ServiceEntry, report: Report): Workload[] {
  const name = se.metadata?.name ?? '';
  const namespace = se.metadata?.namespace ?? '';
  if (!name || !namespace) return [];
  const out: Workload[] = [];
  (se.spec?.endpoints ?? []).forEach((ep, i) => {
    const labels = { ...labelsOf(se), ...(ep.labels ?? {}) };
    const uid = serviceEntryWorkloadUid(view.settings.clusterId, namespace, name, ep.address ?? '');
    const w = entryWorkload(view, se, uid, name, ep, labels, entryServiceMap(se, ep.ports, new Report()), `spec.endpoints[${i}]`, report, false);
    if (w) out.push(w);
  });
  // DNS resolution without endpoints or selector: one workload per host, resolved by ztunnel through DNS.
  const dns = se.spec?.resolution === 'DNS' || se.spec?.resolution === 'DNS_ROUND_ROBIN';
  if (dns && (se.spec?.endpoints ?? []).length === 0 && !se.spec?.workloadSelector) {
    const all = entryServiceMap(se, undefined, new Report());
    for (const [key, ports] of all) {
      const host = key.slice(namespace.length + 1);
      if (host.startsWith('*')) continue;
      const uid = serviceEntryWorkloadUid(view.settings.clusterId, namespace, name, host);
      const w = entryWorkload(view, se, uid, name, { address: host }, labelsOf(se), new Map([[key, ports]]), 'spec.hosts', report, false);
      if (w) out.push(w);
    }
  }
  return out;
}

/** A WorkloadEntry's workload. */
export function workloadEntryToWorkload(view: ClusterView, we: WorkloadEntry, report: Report): Workload | undefined {
  const name = we.metadata?.name ?? '';
  const namespace = we.metadata?.namespace ?? '';
  if (!name || !namespace) {
    report.problem('metadata', 'name and namespace are required');
    return undefined;
  }
  const spec = we.spec ?? {};
  const labels = { ...labelsOf(we), ...(spec.labels ?? {}) };
  const services = new Map<string, Port[]>();
  for (const se of view.serviceEntries(namespace)) {
    const selector = se.spec?.workloadSelector?.labels;
    if (!selector || Object.keys(selector).length === 0 || !selectorMatches(selector, labels)) continue;
    for (const [key, ports] of entryServiceMap(se, spec.ports, new Report())) services.set(key, ports);
  }
  for (const svc of view.services(namespace)) {
    const selector = svc.spec?.selector;
    if (!selector || Object.keys(selector).length === 0 || svc.spec?.type === 'ExternalName' || !selectorMatches(selector, labels)) continue;
    const hostname = serviceHostname(svc.metadata?.name ?? '', namespace, view.settings.domainSuffix);
    services.set(`${namespace}/${hostname}`, servicePortsForPod(svc, new Map(Object.entries(spec.ports ?? {}))));
  }
  return entryWorkload(view, we, workloadEntryUid(view.settings.clusterId, namespace, name), name, spec, labels, services, 'spec', report, true);
}

import { canonicalIp } from '../workload-api/convert.ts';
import type { Locality, Port, Workload } from '../workload-api/types.ts';
import { labelsOf, selectorMatches, type Container, type KubeService, type Pod } from './kube-objects.ts';
import { peerAuthenticationRefs } from './peer-authentication.ts';
import { numericTargetPort, serviceHostname } from './service.ts';
import type { ClusterView } from './view.ts';
import { resolveWaypoint, waypointPolicyName, type WaypointBinding } from './waypoint.ts';
import { Report } from './report.ts';

/**
 * Pod → Workload (reference istio-ambient.md §3.3), pure.
 *
 * - Every pod that is not terminal (Succeeded, Failed) and has an IP is a workload; uid `<cluster>//Pod/<ns>/<name>`.
 * - `addresses` from `status.podIPs` (else `podIP`); an entry that is not an IP is a problem and skipped.
 * - Tunnel HBONE when the CNI agent wrote `ambient.istio.io/redirection: enabled` or the pod speaks HBONE itself
 *   (`networking.istio.io/tunnel: http`, also `native_tunnel`); else NONE.
 * - Canonical name: `service.istio.io/canonical-name` → `app.kubernetes.io/name` → `app` → the workload name;
 *   revision: `service.istio.io/canonical-revision` → `app.kubernetes.io/version` → `version` → `latest`.
 * - `workload_name`: the controller owner, a ReplicaSet taken back to its Deployment through `pod-template-hash`,
 *   a Job named `<cronjob>-<8..10 digits>` to its CronJob; no owner: the pod's name.
 * - `services`: every Service of the namespace whose selector matches, and every selector-less Service whose
 *   EndpointSlices point at the pod; named target ports resolved against the pod's TCP container ports (native
 *   sidecar init containers included), unresolvable ones dropped.
 * - Status HEALTHY when the Ready condition is True and the pod is not being deleted; locality from the Node's
 *   labels; HOST_NETWORK for hostNetwork pods; policies per §3.7/§3.8; waypoint per §2.4 as a `workload`.
 */

export const REDIRECTION_ANNOTATION = 'ambient.istio.io/redirection';
export const TUNNEL_LABEL = 'networking.istio.io/tunnel';

export function podUid(clusterId: string, namespace: string, name: string): string {
  return `${clusterId}//Pod/${namespace}/${name}`;
}

export function canonicalName(labels: Readonly<Record<string, string>>, workloadName: string): string {
  return labels['service.istio.io/canonical-name'] || labels['app.kubernetes.io/name'] || labels['app'] || workloadName;
}

export function canonicalRevision(labels: Readonly<Record<string, string>>): string {
  return labels['service.istio.io/canonical-revision'] || labels['app.kubernetes.io/version'] || labels['version'] || 'latest';
}

/** The controller that owns the pod, by Istio's heuristics. */
export function podWorkloadName(pod: Pod): string {
  const owner = (pod.metadata?.ownerReferences ?? []).find((o) => o.controller === true) ?? pod.metadata?.ownerReferences?.[0];
  const name = pod.metadata?.name ?? '';
  if (!owner?.name) return name;
  const hash = labelsOf(pod)['pod-template-hash'];
  if (owner.kind === 'ReplicaSet' && hash && owner.name.endsWith(`-${hash}`)) return owner.name.slice(0, -(hash.length + 1));
  if (owner.kind === 'Job') {
    const m = /^(.+)-\d{8,10}$/.exec(owner.name);
    if (m?.[1]) return m[1];
  }
  return owner.name;
}

export function isTerminal(pod: Pod): boolean {
  return pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed';
}

function podIps(pod: Pod, report: Report): string[] {
  const raw = (pod.status?.podIPs ?? []).map((p) => p.ip ?? '').filter((ip) => ip !== '');
  if (raw.length === 0 && pod.status?.podIP) raw.push(pod.status.podIP);
  const out: string[] = [];
  raw.forEach((text, i) => {
    const ip = canonicalIp(text);
    if (!ip) report.problem(`status.podIPs[${i}]`, `${JSON.stringify(text)} is not an IP address`);
    else if (!out.includes(ip)) out.push(ip);
  });
  return out;
}

function containerPorts(pod: Pod): Map<string, number> {
  const out = new Map<string, number>();
  const sidecars = (pod.spec?.initContainers ?? []).filter((c) => c.restartPolicy === 'Always');
  const add = (containers: readonly Container[]) => {
    for (const c of containers) {
      for (const p of c.ports ?? []) {
        if (!p.name || typeof p.containerPort !== 'number') continue;
        if ((p.protocol ?? 'TCP') !== 'TCP') continue;
        if (!out.has(p.name)) out.set(p.name, p.containerPort);
      }
    }
  };
  add(pod.spec?.containers ?? []);
  add(sidecars);
  return out;
}

/** The port map of `svc` for this pod: named target ports resolved, unresolvable ones dropped. */
export function servicePortsForPod(svc: KubeService, named: ReadonlyMap<string, number>): Port[] {
  const out: Port[] = [];
  for (const p of svc.spec?.ports ?? []) {
    if (typeof p.port !== 'number') continue;
    let target = numericTargetPort(p);
    if (target === 0 && typeof p.targetPort === 'string') {
      const resolved = named.get(p.targetPort);
      if (resolved === undefined) continue;
      target = resolved;
    }
    out.push({ servicePort: p.port, targetPort: target, appProtocol: 'UNKNOWN' });
  }
  return out;
}

/** Selector-based Services of the namespace that select `labels`, as `ns/hostname` → ports. */
export function selectingServices(view: ClusterView, namespace: string, labels: Readonly<Record<string, string>>, named: ReadonlyMap<string, number>): Map<string, Port[]> {
  const out = new Map<string, Port[]>();
  for (const svc of view.services(namespace)) {
    const selector = svc.spec?.selector;
    if (!selector || Object.keys(selector).length === 0 || svc.spec?.type === 'ExternalName') continue;
    if (!selectorMatches(selector, labels)) continue;
    const hostname = serviceHostname(svc.metadata?.name ?? '', namespace, view.settings.domainSuffix);
    out.set(`${namespace}/${hostname}`, servicePortsForPod(svc, named));
  }
  return out;
}

/** The policies a workload lists: sent WORKLOAD_SELECTOR policies matching it (own namespace, root), then PeerAuthentication's. */
export function workloadPolicyRefs(view: ClusterView, namespace: string, labels: Readonly<Record<string, string>>): string[] {
  const refs = new Set<string>();
  const root = view.settings.rootNamespace;
  for (const ns of namespace === root ? [namespace] : [namespace, root]) {
    for (const p of view.selectorPolicies(ns)) if (selectorMatches(p.selector, labels)) refs.add(p.key);
  }
  for (const ref of peerAuthenticationRefs({ rootNamespace: root, peerAuthentications: (ns) => view.peerAuthentications(ns) }, namespace, labels)) refs.add(ref);
  return [...refs].sort();
}

export function nodeLocality(view: ClusterView, nodeName: string): Locality | undefined {
  const node = nodeName ? view.node(nodeName) : undefined;
  const l = labelsOf(node);
  const region = l['topology.kubernetes.io/region'] ?? '';
  const zone = l['topology.kubernetes.io/zone'] ?? '';
  const subzone = l['topology.istio.io/subzone'] ?? '';
  return region || zone || subzone ? { region, zone, subzone } : undefined;
}

/** The pod's workload, or undefined when the pod is not one (terminal, no IP yet). */
export function podToWorkload(view: ClusterView, pod: Pod, report: Report): Workload | undefined {
  const name = pod.metadata?.name ?? '';
  const namespace = pod.metadata?.namespace ?? '';
  if (!name || !namespace) {
    report.problem('metadata', 'name and namespace are required');
    return undefined;
  }
  if (isTerminal(pod)) return undefined;
  const addresses = podIps(pod, report);
  if (addresses.length === 0) return undefined;
  const labels = labelsOf(pod);
  const annotations = pod.metadata?.annotations ?? {};
  const nativeTunnel = labels[TUNNEL_LABEL] === 'http';
  const hbone = nativeTunnel || annotations[REDIRECTION_ANNOTATION] === 'enabled';
  const workloadName = podWorkloadName(pod);
  const named = containerPorts(pod);
  const services = selectingServices(view, namespace, labels, named);
  for (const slice of view.endpointSlicesOfPod(namespace, name)) {
    const svcName = labelsOf(slice)['kubernetes.io/service-name'];
    const svc = svcName ? view.service(namespace, svcName) : undefined;
    if (!svc || (svc.spec?.selector && Object.keys(svc.spec.selector).length > 0) || svc.spec?.type === 'ExternalName') continue;
    const hostname = serviceHostname(svcName ?? '', namespace, view.settings.domainSuffix);
    // Selector-less: the slice's ports (by port name) are the target ports.
    const slicePorts = new Map((slice.ports ?? []).map((p) => [p.name ?? '', p.port ?? 0] as const));
    const ports: Port[] = [];
    for (const p of svc.spec?.ports ?? []) {
      const target = slicePorts.get(p.name ?? '');
      if (typeof p.port === 'number' && target) ports.push({ servicePort: p.port, targetPort: target, appProtocol: 'UNKNOWN' });
    }
    services.set(`${namespace}/${hostname}`, ports);
  }
  const ready = (pod.status?.conditions ?? []).some((c) => c.type === 'Ready' && c.status === 'True');
  const deleting = pod.metadata?.deletionTimestamp !== undefined && pod.metadata.deletionTimestamp !== null;
  const binding = resolveWaypoint(view, pod, 'workload', report);
  const nodeName = pod.spec?.nodeName ?? '';
  const locality = nodeLocality(view, nodeName);
  return {
    uid: podUid(view.settings.clusterId, namespace, name),
    name,
    namespace,
    addresses,
    hostname: '',
    network: view.network(),
    tunnelProtocol: hbone ? 'HBONE' : 'NONE',
    trustDomain: view.settings.trustDomain,
    serviceAccount: pod.spec?.serviceAccountName || 'default',
    ...(binding.kind === 'bound' ? { waypoint: binding.address } : {}),
    node: nodeName,
    canonicalName: canonicalName(labels, workloadName),
    canonicalRevision: canonicalRevision(labels),
    workloadType: 'pod',
    workloadName,
    nativeTunnel,
    services,
    authorizationPolicies: [...new Set([...workloadPolicyRefs(view, namespace, labels), ...waypointPolicyRefs(view, binding, services.keys(), report)])].sort(),
    status: ready && !deleting ? 'HEALTHY' : 'UNHEALTHY',
    clusterId: view.settings.clusterId,
    ...(locality ? { locality } : {}),
    networkMode: pod.spec?.hostNetwork === true ? 'HOST_NETWORK' : 'STANDARD',
    capacity: 1,
  };
}

/**
 * With `PILOT_AUTO_ALLOW_WAYPOINT_POLICY`: the waypoint allow policies a workload lists, for the waypoint it is
 * bound to and those of its Kubernetes services (`services` keys), each only while that waypoint has instance pods.
 * The waypoints looked up are recorded on `report`, so a change to one recomputes the workload.
 */
export function waypointPolicyRefs(view: ClusterView, own: WaypointBinding, serviceKeys: Iterable<string>, report: Report): string[] {
  if (!view.settings.autoAllowWaypointPolicy) return [];
  const keys = new Set<string>();
  if (own.kind === 'bound') keys.add(own.key);
  const suffix = `.svc.${view.settings.domainSuffix}`;
  for (const key of serviceKeys) {
    const [ns = '', hostname = ''] = key.split('/');
    if (!hostname.endsWith(`.${ns}${suffix}`)) continue;
    const svc = view.service(ns, hostname.slice(0, -(`.${ns}${suffix}`.length)));
    if (!svc) continue;
    const scratch = new Report();
    const binding = resolveWaypoint(view, svc, 'service', scratch, false);
    for (const k of scratch.waypoints) report.waypoints.add(k);
    if (binding.kind === 'bound') keys.add(binding.key);
  }
  const refs: string[] = [];
  for (const key of keys) {
    const [ns = '', name = ''] = key.split('/');
    if (view.waypointServiceAccounts(ns, name).length > 0) refs.push(`${ns}/${waypointPolicyName(ns, name)}`);
  }
  return refs;
}

import { canonicalIp } from '../workload-api/convert.ts';
import type { Port, Workload } from '../workload-api/types.ts';
import { labelsOf, type EndpointSlice } from './kube-objects.ts';
import type { Report } from './report.ts';
import { serviceHostname } from './service.ts';
import type { ClusterView } from './view.ts';

/**
 * EndpointSlice endpoints that are not pods (reference istio-ambient.md §3.4), pure: for a slice of a Service
 * (`kubernetes.io/service-name`) that is not FQDN-typed, every endpoint without a Pod targetRef is a workload
 * `<cluster>/discovery.k8s.io/EndpointSlice/<ns>/<slice>/<ip>` per address: HOST_NETWORK, no service account,
 * waypoint or policies, HEALTHY unless `ready: false`, serving the Service's TCP ports matched to the slice's by
 * port name. Endpoints pointing at pods are the pods' own workloads.
 */

export function endpointSliceWorkloadUid(clusterId: string, namespace: string, slice: string, ip: string): string {
  return `${clusterId}/discovery.k8s.io/EndpointSlice/${namespace}/${slice}/${ip}`;
}

export function endpointSliceWorkloads(view: ClusterView, slice: EndpointSlice, report: Report): Workload[] {
  const name = slice.metadata?.name ?? '';
  const namespace = slice.metadata?.namespace ?? '';
  const serviceName = labelsOf(slice)['kubernetes.io/service-name'];
  if (!name || !namespace || !serviceName || slice.addressType === 'FQDN') return [];
  const svc = view.service(namespace, serviceName);
  if (!svc || svc.spec?.type === 'ExternalName') return [];
  const slicePorts = new Map((slice.ports ?? []).filter((p) => (p.protocol ?? 'TCP') === 'TCP').map((p) => [p.name ?? '', p.port ?? 0] as const));
  const ports: Port[] = [];
  for (const p of svc.spec?.ports ?? []) {
    if ((p.protocol ?? 'TCP') !== 'TCP' || typeof p.port !== 'number') continue;
    const target = slicePorts.get(p.name ?? '');
    if (target) ports.push({ servicePort: p.port, targetPort: target, appProtocol: 'UNKNOWN' });
  }
  const key = `${namespace}/${serviceHostname(serviceName, namespace, view.settings.domainSuffix)}`;
  const out: Workload[] = [];
  (slice.endpoints ?? []).forEach((ep, i) => {
    if (ep.targetRef?.kind === 'Pod') return;
    (ep.addresses ?? []).forEach((text, j) => {
      const ip = canonicalIp(text);
      if (!ip) {
        report.problem(`endpoints[${i}].addresses[${j}]`, `${JSON.stringify(text)} is not an IP address`);
        return;
      }
      out.push({
        uid: endpointSliceWorkloadUid(view.settings.clusterId, namespace, name, ip),
        name,
        namespace,
        addresses: [ip],
        hostname: '',
        network: view.network(),
        tunnelProtocol: 'NONE',
        trustDomain: view.settings.trustDomain,
        serviceAccount: '',
        node: ep.nodeName ?? '',
        canonicalName: serviceName,
        canonicalRevision: 'latest',
        workloadType: 'pod',
        workloadName: '',
        nativeTunnel: false,
        services: new Map([[key, ports]]),
        authorizationPolicies: [],
        status: ep.conditions?.ready === false ? 'UNHEALTHY' : 'HEALTHY',
        clusterId: view.settings.clusterId,
        networkMode: 'HOST_NETWORK',
        capacity: 1,
      });
    });
  });
  return out;
}

import { ipToBytes } from '../src/workload-api/convert.ts';
import { encodeMessage, TypeUrl } from '../src/workload-api/proto.ts';
import type { XdsResource } from '../src/workload-api/xds-types.ts';

/** `count` realistic workload resources: pod IPs in 10.x, 50 services, HBONE, a waypoint for some. */
export function workloadResources(count: number, version = '1'): XdsResource[] {
  const out: XdsResource[] = [];
  for (let i = 0; i < count; i++) {
    const ns = `ns${i % 20}`;
    const uid = `Kubernetes//Pod/${ns}/pod-${i}`;
    const svc = `${ns}/svc-${i % 50}.${ns}.svc.cluster.local`;
    out.push({
      name: uid,
      version,
      typeUrl: TypeUrl.address,
      value: encodeMessage('istio.workload.Address', {
        workload: {
          uid,
          name: `pod-${i}`,
          namespace: ns,
          addresses: [ipToBytes(`10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`)],
          tunnelProtocol: 'HBONE',
          serviceAccount: `sa-${i % 50}`,
          node: `node-${i % 100}`,
          canonicalName: `app-${i % 50}`,
          canonicalRevision: 'v1',
          workloadName: `app-${i % 50}`,
          services: { [svc]: { ports: [{ servicePort: 80, targetPort: 8080 }] } },
          clusterId: 'Kubernetes',
          locality: { region: 'r1', zone: `z${i % 3}` },
        },
      }),
    });
  }
  return out;
}

import type { Service, Workload } from '../../src/workload-api/types.ts';

/** A complete domain Workload with ordinary defaults (HBONE, healthy, capacity 1); `fields` wins. */
export function testWorkload(fields: Partial<Workload> & Pick<Workload, 'name' | 'namespace'>): Workload {
  return {
    uid: `Kubernetes//Pod/${fields.namespace}/${fields.name}`,
    addresses: [],
    hostname: '',
    network: '',
    tunnelProtocol: 'HBONE',
    trustDomain: 'cluster.local',
    serviceAccount: fields.name,
    node: 'node1',
    canonicalName: fields.name,
    canonicalRevision: 'latest',
    workloadType: 'deployment',
    workloadName: fields.name,
    nativeTunnel: false,
    services: new Map(),
    authorizationPolicies: [],
    status: 'HEALTHY',
    clusterId: 'Kubernetes',
    networkMode: 'STANDARD',
    capacity: 1,
    ...fields,
  };
}

/** A complete domain Service with ordinary defaults (public, no waypoint); `fields` wins. */
export function testService(fields: Partial<Service> & Pick<Service, 'name' | 'namespace'>): Service {
  return {
    hostname: `${fields.name}.${fields.namespace}.svc.cluster.local`,
    addresses: [],
    ports: [],
    subjectAltNames: [],
    ipFamilies: 'AUTOMATIC',
    canonical: false,
    ingressUseWaypoint: false,
    weightedWaypoints: [],
    visibility: 'PUBLIC',
    ...fields,
  };
}

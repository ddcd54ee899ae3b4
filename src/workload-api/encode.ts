import { ipToBytes } from './convert.ts';
import { encodeMessage } from './proto.ts';
import type { Address, AuthorizationPolicy, Cidr, GatewayAddress, NetworkAddress, PolicyMatch, Port, Service, StringMatch, Workload } from './types.ts';

/**
 * Domain → wire: what a control plane sends. The inverse of `convert.ts` (decoding what this writes gives back the
 * same domain value), with Istio's omissions: `trust_domain` left empty when it is `cluster.local`, `capacity` unset
 * when it is 1, unset optional messages omitted. Wire types stay inside workload-api: callers get bytes.
 */

const WORKLOAD_TYPE = { deployment: 'DEPLOYMENT', cronjob: 'CRONJOB', pod: 'POD', job: 'JOB' } as const;

function portWire(p: Port): object {
  return { servicePort: p.servicePort, targetPort: p.targetPort, appProtocol: p.appProtocol };
}

function networkAddressWire(a: NetworkAddress): object {
  return { network: a.network, address: ipToBytes(a.ip), ...(a.prefixLength !== undefined ? { length: a.prefixLength } : {}) };
}

function gatewayWire(g: GatewayAddress): object {
  const d = g.destination;
  return {
    ...(d.kind === 'hostname' ? { hostname: { namespace: d.namespace, hostname: d.hostname } } : { address: { network: d.network, address: ipToBytes(d.ip) } }),
    hboneMtlsPort: g.hboneMtlsPort,
  };
}

function workloadWire(w: Workload): object {
  return {
    uid: w.uid,
    name: w.name,
    namespace: w.namespace,
    addresses: w.addresses.map(ipToBytes),
    hostname: w.hostname,
    network: w.network,
    tunnelProtocol: w.tunnelProtocol,
    trustDomain: w.trustDomain === 'cluster.local' ? '' : w.trustDomain,
    serviceAccount: w.serviceAccount,
    ...(w.waypoint ? { waypoint: gatewayWire(w.waypoint) } : {}),
    ...(w.networkGateway ? { networkGateway: gatewayWire(w.networkGateway) } : {}),
    node: w.node,
    canonicalName: w.canonicalName,
    canonicalRevision: w.canonicalRevision,
    workloadType: WORKLOAD_TYPE[w.workloadType],
    workloadName: w.workloadName,
    nativeTunnel: w.nativeTunnel,
    ...(w.applicationTunnel ? { applicationTunnel: { protocol: w.applicationTunnel.protocol, port: w.applicationTunnel.port } } : {}),
    services: Object.fromEntries([...w.services].map(([key, ports]) => [key, { ports: ports.map(portWire) }])),
    authorizationPolicies: [...w.authorizationPolicies],
    status: w.status,
    clusterId: w.clusterId,
    ...(w.locality ? { locality: { region: w.locality.region, zone: w.locality.zone, subzone: w.locality.subzone } } : {}),
    networkMode: w.networkMode,
    ...(w.capacity !== 1 ? { capacity: { value: w.capacity } } : {}),
  };
}

function serviceWire(s: Service): object {
  return {
    name: s.name,
    namespace: s.namespace,
    hostname: s.hostname,
    addresses: s.addresses.map(networkAddressWire),
    ports: s.ports.map(portWire),
    subjectAltNames: [...s.subjectAltNames],
    ...(s.waypoint ? { waypoint: gatewayWire(s.waypoint) } : {}),
    ...(s.loadBalancing
      ? { loadBalancing: { routingPreference: [...s.loadBalancing.routingPreference], mode: s.loadBalancing.mode, healthPolicy: s.loadBalancing.healthPolicy } }
      : {}),
    ipFamilies: s.ipFamilies,
    canonical: s.canonical,
    ingressUseWaypoint: s.ingressUseWaypoint,
    weightedWaypoints: s.weightedWaypoints.map((w) => ({ destination: gatewayWire(w.destination), weight: w.weight })),
    visibility: s.visibility,
  };
}

/** The `istio.workload.Address` bytes of a workload or a service. */
export function encodeAddress(address: Address): Buffer {
  return encodeMessage('istio.workload.Address', address.kind === 'workload' ? { workload: workloadWire(address.workload) } : { service: serviceWire(address.service) });
}

function stringMatchWire(m: StringMatch): object {
  return m.kind === 'presence' ? { presence: {} } : { [m.kind]: m.value };
}

function cidrWire(c: Cidr): object {
  return { address: ipToBytes(c.ip), length: c.prefixLength };
}

function matchWire(m: PolicyMatch): object {
  return {
    namespaces: m.namespaces.map(stringMatchWire),
    notNamespaces: m.notNamespaces.map(stringMatchWire),
    principals: m.principals.map(stringMatchWire),
    notPrincipals: m.notPrincipals.map(stringMatchWire),
    sourceIps: m.sourceIps.map(cidrWire),
    notSourceIps: m.notSourceIps.map(cidrWire),
    destinationIps: m.destinationIps.map(cidrWire),
    notDestinationIps: m.notDestinationIps.map(cidrWire),
    destinationPorts: [...m.destinationPorts],
    notDestinationPorts: [...m.notDestinationPorts],
    serviceAccounts: m.serviceAccounts.map((s) => ({ namespace: s.namespace, serviceAccount: s.serviceAccount })),
    notServiceAccounts: m.notServiceAccounts.map((s) => ({ namespace: s.namespace, serviceAccount: s.serviceAccount })),
  };
}

/** The `istio.security.Authorization` bytes of a policy. */
export function encodeAuthorization(p: AuthorizationPolicy): Buffer {
  return encodeMessage('istio.security.Authorization', {
    name: p.name,
    namespace: p.namespace,
    scope: p.scope,
    action: p.action,
    rules: p.rules.map((r) => ({ clauses: r.clauses.map((c) => ({ matches: c.matches.map(matchWire) })) })),
    dryRun: p.dryRun,
  });
}

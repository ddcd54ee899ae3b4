/**
 * The mesh as the proxies see it: readonly domain types, converted from the wire at this module's
 * boundary (wire types never leave workload-api). Defaults are applied here, as ztunnel applies them.
 */

export type AppProtocol = 'UNKNOWN' | 'HTTP11' | 'HTTP2' | 'GRPC' | 'TCP' | 'TLS';

export interface Port {
  readonly servicePort: number;
  /** 0 means a named port, resolved from the endpoint's own port map. */
  readonly targetPort: number;
  readonly appProtocol: AppProtocol;
}

export interface NetworkAddress {
  readonly network: string;
  /** Canonical text form (`10.0.0.1`, `fd00::1`). */
  readonly ip: string;
  /** Set only for a CIDR VIP (shorter than the full address length). */
  readonly prefixLength?: number;
}

export type GatewayDestination =
  | { readonly kind: 'hostname'; readonly namespace: string; readonly hostname: string }
  | { readonly kind: 'address'; readonly network: string; readonly ip: string };

export interface GatewayAddress {
  readonly destination: GatewayDestination;
  readonly hboneMtlsPort: number;
}

export interface Locality {
  readonly region: string;
  readonly zone: string;
  readonly subzone: string;
}

export interface Workload {
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly addresses: readonly string[];
  readonly hostname: string;
  readonly network: string;
  readonly tunnelProtocol: 'NONE' | 'HBONE';
  readonly trustDomain: string;
  readonly serviceAccount: string;
  readonly waypoint?: GatewayAddress;
  readonly networkGateway?: GatewayAddress;
  readonly node: string;
  readonly canonicalName: string;
  readonly canonicalRevision: string;
  readonly workloadType: 'deployment' | 'cronjob' | 'pod' | 'job';
  readonly workloadName: string;
  readonly nativeTunnel: boolean;
  readonly applicationTunnel?: { readonly protocol: 'NONE' | 'PROXY'; readonly port: number };
  /** Service key (`ns/hostname`) → the ports this endpoint serves for it. */
  readonly services: ReadonlyMap<string, readonly Port[]>;
  readonly authorizationPolicies: readonly string[];
  readonly status: 'HEALTHY' | 'UNHEALTHY';
  readonly clusterId: string;
  readonly locality?: Locality;
  readonly networkMode: 'STANDARD' | 'HOST_NETWORK';
  /** Load-balancing weight. */
  readonly capacity: number;
}

export type LoadBalancingScope = 'REGION' | 'ZONE' | 'SUBZONE' | 'NODE' | 'CLUSTER' | 'NETWORK';

export interface LoadBalancing {
  readonly routingPreference: readonly LoadBalancingScope[];
  readonly mode: 'UNSPECIFIED_MODE' | 'STRICT' | 'FAILOVER' | 'PASSTHROUGH';
  readonly healthPolicy: 'ONLY_HEALTHY' | 'ALLOW_ALL';
}

export interface Service {
  readonly name: string;
  readonly namespace: string;
  readonly hostname: string;
  readonly addresses: readonly NetworkAddress[];
  readonly ports: readonly Port[];
  readonly subjectAltNames: readonly string[];
  readonly waypoint?: GatewayAddress;
  readonly loadBalancing?: LoadBalancing;
  readonly ipFamilies: 'AUTOMATIC' | 'IPV4_ONLY' | 'IPV6_ONLY' | 'DUAL';
  readonly canonical: boolean;
  readonly ingressUseWaypoint: boolean;
  readonly weightedWaypoints: ReadonlyArray<{ readonly destination: GatewayAddress; readonly weight: number }>;
  readonly visibility: 'PUBLIC' | 'NAMESPACE';
}

export type StringMatch =
  | { readonly kind: 'exact' | 'prefix' | 'suffix'; readonly value: string }
  | { readonly kind: 'presence' };

export interface Cidr {
  readonly ip: string;
  readonly prefixLength: number;
}

export interface ServiceAccountMatch {
  readonly namespace: string;
  readonly serviceAccount: string;
}

export interface PolicyMatch {
  readonly namespaces: readonly StringMatch[];
  readonly notNamespaces: readonly StringMatch[];
  readonly principals: readonly StringMatch[];
  readonly notPrincipals: readonly StringMatch[];
  readonly sourceIps: readonly Cidr[];
  readonly notSourceIps: readonly Cidr[];
  readonly destinationIps: readonly Cidr[];
  readonly notDestinationIps: readonly Cidr[];
  readonly destinationPorts: readonly number[];
  readonly notDestinationPorts: readonly number[];
  readonly serviceAccounts: readonly ServiceAccountMatch[];
  readonly notServiceAccounts: readonly ServiceAccountMatch[];
}

/** Rules are OR'ed; a rule's clauses are AND'ed; a clause's matches are OR'ed. */
export interface AuthorizationPolicy {
  readonly name: string;
  readonly namespace: string;
  readonly scope: 'GLOBAL' | 'NAMESPACE' | 'WORKLOAD_SELECTOR';
  readonly action: 'ALLOW' | 'DENY';
  readonly rules: ReadonlyArray<{ readonly clauses: ReadonlyArray<{ readonly matches: readonly PolicyMatch[] }> }>;
  readonly dryRun: boolean;
}

export type Address = { readonly kind: 'workload'; readonly workload: Workload } | { readonly kind: 'service'; readonly service: Service };

export const serviceKey = (namespace: string, hostname: string): string => `${namespace}/${hostname}`;
export const policyKey = (namespace: string, name: string): string => `${namespace}/${name}`;
export const networkAddressKey = (network: string, ip: string): string => `${network}/${ip}`;

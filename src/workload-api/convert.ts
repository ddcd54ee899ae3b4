import { isIPv4, isIPv6 } from 'node:net';
import { fail, ok, type Result } from '../core/result.ts';
import type { Address__Output } from './generated/istio/workload/Address.ts';
import type { GatewayAddress__Output } from './generated/istio/workload/GatewayAddress.ts';
import type { NetworkAddress__Output } from './generated/istio/workload/NetworkAddress.ts';
import type { Port__Output } from './generated/istio/workload/Port.ts';
import type { Service__Output } from './generated/istio/workload/Service.ts';
import type { Workload__Output } from './generated/istio/workload/Workload.ts';
import type { Authorization__Output } from './generated/istio/security/Authorization.ts';
import type { Match__Output } from './generated/istio/security/Match.ts';
import type { StringMatch__Output } from './generated/istio/security/StringMatch.ts';
import type { Address__Output as SecurityAddress__Output } from './generated/istio/security/Address.ts';
import type {
  Address, AppProtocol, AuthorizationPolicy, Cidr, GatewayAddress, LoadBalancingScope, NetworkAddress, PolicyMatch, Port, Service,
  StringMatch, Workload,
} from './types.ts';

/**
 * Wire → domain conversion with validation. Each converter collects every problem with the field
 * path where it sits (`workload.addresses[1]: must be 4 or 16 bytes, got 3`), so one NACK says all
 * that is wrong with a resource. Defaults follow ztunnel (trust domain `cluster.local`, service
 * account `default`, cluster `Kubernetes`, capacity 1).
 */
/** The problems of one resource, each prefixed with its field path; `result` is the value only when there are none. */
export class Problems {
  readonly list: string[] = [];
  add(path: string, message: string): void {
    this.list.push(`${path}: ${message}`);
  }
  result<T>(value: () => T): Result<T> {
    return this.list.length === 0 ? ok(value()) : fail(...this.list);
  }
}

/** protobufjs leaves an unknown enum number as a number: accept only the names we know. */
function enumValue<T extends string>(problems: Problems, path: string, value: unknown, allowed: readonly T[]): T {
  if (typeof value === 'string' && (allowed as readonly string[]).includes(value)) return value as T;
  problems.add(path, `unknown enum value ${JSON.stringify(value)}`);
  return allowed[0] as T;
}

/** Raw address bytes (4 or 16) to canonical text. */
export function ipFromBytes(bytes: Uint8Array): string | undefined {
  if (bytes.length === 4) return [...bytes].join('.');
  if (bytes.length !== 16) return undefined;
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((((bytes[i] as number) << 8) | (bytes[i + 1] as number)).toString(16));
  return canonicalIp(groups.join(':'));
}

/** Canonical text of an IP (IPv6 compressed, IPv4-mapped kept as ::ffff:a.b.c.d), or undefined. */
export function canonicalIp(text: string): string | undefined {
  if (isIPv4(text)) return text.split('.').map(Number).join('.');
  if (!isIPv6(text)) return undefined;
  return new URL(`http://[${text}]/`).hostname.slice(1, -1);
}

export function ipToBytes(ip: string): Buffer {
  if (isIPv4(ip)) return Buffer.from(ip.split('.').map(Number));
  const url = new URL(`http://[${ip}]/`).hostname.slice(1, -1);
  const [head = '', tail = ''] = url.includes('::') ? url.split('::') : [url, ''];
  const parse = (part: string) => (part ? part.split(':') : []).flatMap((g) => (g.includes('.') ? ipv4Groups(g) : [parseInt(g, 16)]));
  const headGroups = parse(head);
  const tailGroups = parse(tail);
  const groups = [...headGroups, ...Array(8 - headGroups.length - tailGroups.length).fill(0), ...tailGroups];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(g, i * 2));
  return out;
}

function ipv4Groups(dotted: string): number[] {
  const [a = 0, b = 0, c = 0, d = 0] = dotted.split('.').map(Number);
  return [(a << 8) | b, (c << 8) | d];
}

const APP_PROTOCOLS: readonly AppProtocol[] = ['UNKNOWN', 'HTTP11', 'HTTP2', 'GRPC', 'TCP', 'TLS'];

function port(problems: Problems, path: string, p: Port__Output): Port {
  if (p.servicePort < 1 || p.servicePort > 65_535) problems.add(`${path}.service_port`, `must be 1-65535, got ${p.servicePort}`);
  if (p.targetPort > 65_535) problems.add(`${path}.target_port`, `must be 0-65535, got ${p.targetPort}`);
  return { servicePort: p.servicePort, targetPort: p.targetPort, appProtocol: enumValue(problems, `${path}.app_protocol`, p.appProtocol, APP_PROTOCOLS) };
}

function networkAddress(problems: Problems, path: string, a: NetworkAddress__Output): NetworkAddress {
  const ip = ipFromBytes(a.address);
  if (!ip) {
    problems.add(`${path}.address`, `must be 4 or 16 bytes, got ${a.address.length}`);
    return { network: a.network, ip: '' };
  }
  const full = a.address.length * 8;
  if (a.length !== undefined && a.length !== null && a.length !== full) {
    if (a.length > full) problems.add(`${path}.length`, `prefix ${a.length} is longer than the address`);
    return { network: a.network, ip, prefixLength: a.length };
  }
  return { network: a.network, ip };
}

function gateway(problems: Problems, path: string, g: GatewayAddress__Output | null | undefined): GatewayAddress | undefined {
  if (!g) return undefined;
  if (g.hboneMtlsPort > 65_535) problems.add(`${path}.hbone_mtls_port`, `must be 0-65535, got ${g.hboneMtlsPort}`);
  if (g.destination === 'hostname' && g.hostname) {
    if (!g.hostname.hostname) problems.add(`${path}.hostname.hostname`, 'must not be empty');
    return { destination: { kind: 'hostname', namespace: g.hostname.namespace, hostname: g.hostname.hostname }, hboneMtlsPort: g.hboneMtlsPort };
  }
  if (g.destination === 'address' && g.address) {
    const address = networkAddress(problems, `${path}.address`, g.address);
    return { destination: { kind: 'address', network: address.network, ip: address.ip }, hboneMtlsPort: g.hboneMtlsPort };
  }
  problems.add(`${path}.destination`, 'must set hostname or address');
  return undefined;
}

const WORKLOAD_TYPES = { DEPLOYMENT: 'deployment', CRONJOB: 'cronjob', POD: 'pod', JOB: 'job' } as const;

export function workloadFromWire(w: Workload__Output, path = 'workload'): Result<Workload> {
  const problems = new Problems();
  if (!w.uid) problems.add(`${path}.uid`, 'must not be empty');
  const addresses = w.addresses.map((bytes, i) => {
    const ip = ipFromBytes(bytes);
    if (!ip) problems.add(`${path}.addresses[${i}]`, `must be 4 or 16 bytes, got ${bytes.length}`);
    return ip ?? '';
  });
  const tunnel = enumValue(problems, `${path}.tunnel_protocol`, w.tunnelProtocol, ['NONE', 'HBONE', 'LEGACY_ISTIO_MTLS'] as const);
  if (tunnel === 'LEGACY_ISTIO_MTLS') problems.add(`${path}.tunnel_protocol`, 'LEGACY_ISTIO_MTLS is not supported');
  const workloadType = WORKLOAD_TYPES[enumValue(problems, `${path}.workload_type`, w.workloadType, ['DEPLOYMENT', 'CRONJOB', 'POD', 'JOB'] as const)];
  const status = enumValue(problems, `${path}.status`, w.status, ['HEALTHY', 'UNHEALTHY'] as const);
  const networkMode = enumValue(problems, `${path}.network_mode`, w.networkMode, ['STANDARD', 'HOST_NETWORK'] as const);
  const services = new Map<string, readonly Port[]>();
  for (const [key, list] of Object.entries(w.services)) {
    const slash = key.indexOf('/');
    if (slash <= 0 || slash === key.length - 1) problems.add(`${path}.services["${key}"]`, 'key must be <namespace>/<hostname>');
    services.set(key, list.ports.map((p, i) => port(problems, `${path}.services["${key}"].ports[${i}]`, p)));
  }
  const waypoint = gateway(problems, `${path}.waypoint`, w.waypoint);
  const networkGateway = gateway(problems, `${path}.network_gateway`, w.networkGateway);
  const appTunnel = w.applicationTunnel
    ? { protocol: enumValue(problems, `${path}.application_tunnel.protocol`, w.applicationTunnel.protocol, ['NONE', 'PROXY'] as const), port: w.applicationTunnel.port }
    : undefined;
  return problems.result(() => ({
    uid: w.uid,
    name: w.name,
    namespace: w.namespace,
    addresses,
    hostname: w.hostname,
    network: w.network,
    tunnelProtocol: tunnel === 'HBONE' ? 'HBONE' : 'NONE',
    trustDomain: w.trustDomain || 'cluster.local',
    serviceAccount: w.serviceAccount || 'default',
    ...(waypoint ? { waypoint } : {}),
    ...(networkGateway ? { networkGateway } : {}),
    node: w.node,
    canonicalName: w.canonicalName,
    canonicalRevision: w.canonicalRevision,
    workloadType,
    workloadName: w.workloadName,
    nativeTunnel: w.nativeTunnel,
    ...(appTunnel ? { applicationTunnel: appTunnel } : {}),
    services,
    authorizationPolicies: [...w.authorizationPolicies],
    status,
    clusterId: w.clusterId || 'Kubernetes',
    ...(w.locality ? { locality: { region: w.locality.region, zone: w.locality.zone, subzone: w.locality.subzone } } : {}),
    networkMode,
    capacity: w.capacity ? w.capacity.value : 1,
  }));
}

const SCOPES: readonly LoadBalancingScope[] = ['REGION', 'ZONE', 'SUBZONE', 'NODE', 'CLUSTER', 'NETWORK'];

export function serviceFromWire(s: Service__Output, path = 'service'): Result<Service> {
  const problems = new Problems();
  if (!s.hostname) problems.add(`${path}.hostname`, 'must not be empty');
  if (s.hostname.includes('/')) problems.add(`${path}.hostname`, 'must not contain "/"');
  const addresses = s.addresses.map((a, i) => networkAddress(problems, `${path}.addresses[${i}]`, a));
  const ports = s.ports.map((p, i) => port(problems, `${path}.ports[${i}]`, p));
  const waypoint = gateway(problems, `${path}.waypoint`, s.waypoint);
  const lb = s.loadBalancing
    ? {
        routingPreference: s.loadBalancing.routingPreference.map((scope, i) =>
          enumValue(problems, `${path}.load_balancing.routing_preference[${i}]`, scope, SCOPES),
        ),
        mode: enumValue(problems, `${path}.load_balancing.mode`, s.loadBalancing.mode, ['UNSPECIFIED_MODE', 'STRICT', 'FAILOVER', 'PASSTHROUGH'] as const),
        healthPolicy: enumValue(problems, `${path}.load_balancing.health_policy`, s.loadBalancing.healthPolicy, ['ONLY_HEALTHY', 'ALLOW_ALL'] as const),
      }
    : undefined;
  const weightedWaypoints = s.weightedWaypoints.flatMap((w, i) => {
    const destination = gateway(problems, `${path}.weighted_waypoints[${i}].destination`, w.destination);
    if (!w.destination) problems.add(`${path}.weighted_waypoints[${i}].destination`, 'must be set');
    return destination ? [{ destination, weight: w.weight }] : [];
  });
  const ipFamilies = enumValue(problems, `${path}.ip_families`, s.ipFamilies, ['AUTOMATIC', 'IPV4_ONLY', 'IPV6_ONLY', 'DUAL'] as const);
  // An unknown visibility is PUBLIC (reference ztunnel.md §1.1), not an error.
  const visibility = s.visibility === 'NAMESPACE' ? 'NAMESPACE' : 'PUBLIC';
  return problems.result(() => ({
    name: s.name,
    namespace: s.namespace,
    hostname: s.hostname,
    addresses,
    ports,
    subjectAltNames: [...s.subjectAltNames],
    ...(waypoint ? { waypoint } : {}),
    ...(lb ? { loadBalancing: lb } : {}),
    ipFamilies,
    canonical: s.canonical,
    ingressUseWaypoint: s.ingressUseWaypoint,
    weightedWaypoints,
    visibility,
  }));
}

export function addressFromWire(a: Address__Output): Result<Address> {
  if (a.type === 'workload' && a.workload) {
    const w = workloadFromWire(a.workload);
    return w.ok ? ok({ kind: 'workload', workload: w.value }) : w;
  }
  if (a.type === 'service' && a.service) {
    const s = serviceFromWire(a.service);
    return s.ok ? ok({ kind: 'service', service: s.value }) : s;
  }
  return fail('address: unknown address type (neither workload nor service is set)');
}

function stringMatches(ms: readonly StringMatch__Output[]): StringMatch[] {
  // A StringMatch with nothing set is dropped, as ztunnel does.
  return ms.flatMap((m): StringMatch[] => {
    switch (m.matchType) {
      case 'exact':
      case 'prefix':
      case 'suffix':
        return [{ kind: m.matchType, value: m[m.matchType] ?? '' }];
      case 'presence':
        return [{ kind: 'presence' }];
      default:
        return [];
    }
  });
}

function cidrs(as: readonly SecurityAddress__Output[]): Cidr[] {
  // Invalid entries are silently dropped, as ztunnel does.
  return as.flatMap((a) => {
    const ip = ipFromBytes(a.address);
    if (!ip) return [];
    const full = a.address.length * 8;
    const prefixLength = a.length === 0 ? full : a.length;
    return prefixLength <= full ? [{ ip, prefixLength }] : [];
  });
}

function match(problems: Problems, path: string, m: Match__Output): PolicyMatch {
  const ports = (list: readonly number[], field: string) =>
    list.map((p, i) => {
      if (p < 1 || p > 65_535) problems.add(`${path}.${field}[${i}]`, `must be 1-65535, got ${p}`);
      return p;
    });
  return {
    namespaces: stringMatches(m.namespaces),
    notNamespaces: stringMatches(m.notNamespaces),
    principals: stringMatches(m.principals),
    notPrincipals: stringMatches(m.notPrincipals),
    sourceIps: cidrs(m.sourceIps),
    notSourceIps: cidrs(m.notSourceIps),
    destinationIps: cidrs(m.destinationIps),
    notDestinationIps: cidrs(m.notDestinationIps),
    destinationPorts: ports(m.destinationPorts, 'destination_ports'),
    notDestinationPorts: ports(m.notDestinationPorts, 'not_destination_ports'),
    serviceAccounts: m.serviceAccounts.map((s) => ({ namespace: s.namespace, serviceAccount: s.serviceAccount })),
    notServiceAccounts: m.notServiceAccounts.map((s) => ({ namespace: s.namespace, serviceAccount: s.serviceAccount })),
  };
}

export function authorizationFromWire(a: Authorization__Output, path = 'authorization'): Result<AuthorizationPolicy> {
  const problems = new Problems();
  if (!a.name) problems.add(`${path}.name`, 'must not be empty');
  const scope = enumValue(problems, `${path}.scope`, a.scope, ['GLOBAL', 'NAMESPACE', 'WORKLOAD_SELECTOR'] as const);
  const action = enumValue(problems, `${path}.action`, a.action, ['ALLOW', 'DENY'] as const);
  const rules = a.rules.map((rule, r) => ({
    clauses: rule.clauses.map((clause, c) => ({
      matches: clause.matches.map((m, i) => match(problems, `${path}.rules[${r}].clauses[${c}].matches[${i}]`, m)),
    })),
  }));
  return problems.result(() => ({ name: a.name, namespace: a.namespace, scope, action, rules, dryRun: a.dryRun }));
}

import { fail, ok, type Result } from '../core/result.ts';
import { parseYaml } from '../core/yaml.ts';
import { canonicalIp } from './convert.ts';
import {
  policyKey, serviceKey, type AuthorizationPolicy, type Cidr, type GatewayAddress, type LoadBalancing, type LoadBalancingScope,
  type Locality, type NetworkAddress, type PolicyMatch, type Port, type Service, type ServiceAccountMatch, type StringMatch,
  type Workload,
} from './types.ts';

/**
 * ztunnel's local config file (`LOCAL_XDS_PATH` / `LOCAL_XDS`, reference ztunnel.md §10.2): YAML with
 * camelCase keys and unknown fields rejected, converted into the same domain types the xDS path
 * produces. Pure: text in, a config or every problem found (each with its field path) out.
 *
 * Decisions beyond the schema text:
 * - No xDS-style defaulting (the schema says so): absent `trustDomain`, `serviceAccount`,
 *   `clusterId`, `network`… stay `''`. Defaults only where the schema names one: `protocol` TCP,
 *   `capacity` 1; and the proto zero values elsewhere (`status` Healthy, `networkMode` Standard,
 *   `workloadType` deployment, `ipFamilies` automatic, `visibility` Public).
 * - A key present with a null value (`workloads:` with nothing after it) counts as absent.
 * - Strings must be YAML strings: `name: 123` is refused rather than guessed (quote it).
 * - Two workloads with one uid, two services with one `namespace/hostname`, or two policies with one
 *   `namespace/name` are refused: the store keys them that way and would silently keep only the last.
 */
export interface LocalConfig {
  readonly workloads: readonly Workload[];
  readonly services: readonly Service[];
  readonly policies: readonly AuthorizationPolicy[];
}

export const emptyLocalConfig: LocalConfig = Object.freeze({ workloads: [], services: [], policies: [] });

/** Parses and validates the whole file. YAML syntax errors come back as `line L, column C: …`. */
export function parseLocalConfig(text: string): Result<LocalConfig> {
  const parsed = parseYaml(text, 1000);
  if (!parsed.ok) return parsed;
  const root = parsed.value;
  if (root === null || root === undefined) return ok(emptyLocalConfig);
  const p = new Problems();
  if (!isMapping(root)) {
    p.add('<root>', `must be a mapping with workloads, services, policies; got ${describe(root)}`);
    return fail(...p.list);
  }
  const top = fields(p, '', root, ['workloads', 'services', 'policies'], []);
  const workloads = list(p, 'workloads', top?.workloads, (v, path) => workload(p, path, v));
  const services = list(p, 'services', top?.services, (v, path) => service(p, path, v));
  const policies = list(p, 'policies', top?.policies, (v, path) => policy(p, path, v));
  duplicates(p, 'workloads', workloads, (w) => w.uid, 'uid', 'uid');
  duplicates(p, 'services', services, (s) => serviceKey(s.namespace, s.hostname), 'hostname', 'service');
  duplicates(p, 'policies', policies, (a) => policyKey(a.namespace, a.name), 'name', 'policy');
  if (p.list.length > 0) return fail(...p.list);
  return ok({ workloads: defined(workloads), services: defined(services), policies: defined(policies) });
}

// ---------------------------------------------------------------------------------------------
// Workloads

const WORKLOAD_FIELDS = [
  'uid', 'name', 'namespace', 'workloadIps', 'protocol', 'networkMode', 'trustDomain', 'serviceAccount', 'network', 'node', 'hostname',
  'clusterId', 'workloadName', 'workloadType', 'canonicalName', 'canonicalRevision', 'waypoint', 'networkGateway', 'nativeTunnel',
  'applicationTunnel', 'authorizationPolicies', 'status', 'locality', 'capacity', 'services',
] as const;

function workload(p: Problems, path: string, value: unknown): Workload | undefined {
  const before = p.list.length;
  const m = fields(p, path, value, WORKLOAD_FIELDS, ['namespace', 'workloadIps']);
  if (!m) return undefined;
  const addresses = list(p, `${path}.workloadIps`, m.workloadIps, (v, at) => ip(p, at, v));
  const tunnelProtocol = enumOf(p, `${path}.protocol`, m.protocol, { TCP: 'NONE', HBONE: 'HBONE' } as const, 'NONE');
  const networkMode = enumOf(p, `${path}.networkMode`, m.networkMode, { Standard: 'STANDARD', HostNetwork: 'HOST_NETWORK' } as const, 'STANDARD');
  const status = enumOf(p, `${path}.status`, m.status, { Healthy: 'HEALTHY', Unhealthy: 'UNHEALTHY' } as const, 'HEALTHY');
  const workloadType = enumOf(
    p, `${path}.workloadType`, typeof m.workloadType === 'string' ? m.workloadType.toLowerCase() : m.workloadType,
    { deployment: 'deployment', cronjob: 'cronjob', pod: 'pod', job: 'job' } as const, 'deployment',
  );
  const waypoint = m.waypoint == null ? undefined : gateway(p, `${path}.waypoint`, m.waypoint);
  const networkGateway = m.networkGateway == null ? undefined : gateway(p, `${path}.networkGateway`, m.networkGateway);
  const applicationTunnel = m.applicationTunnel == null ? undefined : appTunnel(p, `${path}.applicationTunnel`, m.applicationTunnel);
  const locality = m.locality == null ? undefined : localityOf(p, `${path}.locality`, m.locality);
  const services = new Map<string, readonly Port[]>();
  const serviceMap = mapping(p, `${path}.services`, m.services);
  for (const [key, ports] of Object.entries(serviceMap ?? {})) {
    const at = `${path}.services[${JSON.stringify(key)}]`;
    const slash = key.indexOf('/');
    if (slash <= 0 || slash === key.length - 1) p.add(at, 'key must be <namespace>/<hostname>');
    services.set(key, portMap(p, at, ports));
  }
  const result: Workload = {
    uid: str(p, `${path}.uid`, m.uid),
    name: str(p, `${path}.name`, m.name),
    namespace: str(p, `${path}.namespace`, m.namespace),
    addresses: defined(addresses),
    hostname: str(p, `${path}.hostname`, m.hostname),
    network: str(p, `${path}.network`, m.network),
    tunnelProtocol,
    trustDomain: str(p, `${path}.trustDomain`, m.trustDomain),
    serviceAccount: str(p, `${path}.serviceAccount`, m.serviceAccount),
    ...(waypoint ? { waypoint } : {}),
    ...(networkGateway ? { networkGateway } : {}),
    node: str(p, `${path}.node`, m.node),
    canonicalName: str(p, `${path}.canonicalName`, m.canonicalName),
    canonicalRevision: str(p, `${path}.canonicalRevision`, m.canonicalRevision),
    workloadType,
    workloadName: str(p, `${path}.workloadName`, m.workloadName),
    nativeTunnel: bool(p, `${path}.nativeTunnel`, m.nativeTunnel),
    ...(applicationTunnel ? { applicationTunnel } : {}),
    services,
    authorizationPolicies: defined(list(p, `${path}.authorizationPolicies`, m.authorizationPolicies, (v, at) => str(p, at, v))),
    status,
    clusterId: str(p, `${path}.clusterId`, m.clusterId),
    ...(locality ? { locality } : {}),
    networkMode,
    capacity: uint(p, `${path}.capacity`, m.capacity, 0, 0xffff_ffff, 1),
  };
  return p.list.length === before ? result : undefined;
}

function appTunnel(p: Problems, path: string, value: unknown): Workload['applicationTunnel'] {
  const m = fields(p, path, value, ['protocol', 'port'], ['protocol']);
  if (!m) return undefined;
  // An absent port is 0, as on the wire: the consumer applies ztunnel's default (15088).
  return {
    protocol: enumOf(p, `${path}.protocol`, m.protocol, { NONE: 'NONE', PROXY: 'PROXY' } as const, 'NONE'),
    port: uint(p, `${path}.port`, m.port, 1, 65_535, 0),
  };
}

function localityOf(p: Problems, path: string, value: unknown): Locality | undefined {
  const m = fields(p, path, value, ['region', 'zone', 'subzone'], []);
  if (!m) return undefined;
  return { region: str(p, `${path}.region`, m.region), zone: str(p, `${path}.zone`, m.zone), subzone: str(p, `${path}.subzone`, m.subzone) };
}

// ---------------------------------------------------------------------------------------------
// Services

const SERVICE_FIELDS = [
  'name', 'namespace', 'hostname', 'vips', 'cidrVips', 'ports', 'endpoints', 'subjectAltNames', 'waypoint', 'weightedWaypoints',
  'loadBalancer', 'ipFamilies', 'canonical', 'visibility',
] as const;

function service(p: Problems, path: string, value: unknown): Service | undefined {
  const before = p.list.length;
  const m = fields(p, path, value, SERVICE_FIELDS, ['name', 'namespace', 'hostname', 'vips', 'ports']);
  if (!m) return undefined;
  const hostname = str(p, `${path}.hostname`, m.hostname);
  if (hostname.includes('/')) p.add(`${path}.hostname`, 'must not contain "/"');
  const vips = list(p, `${path}.vips`, m.vips, (v, at) => networkIp(p, at, v));
  const cidrVips = list(p, `${path}.cidrVips`, m.cidrVips, (v, at) => cidrVip(p, at, v));
  // `endpoints` is accepted for compatibility with ztunnel's files and otherwise ignored: the
  // store derives a service's endpoints from the workloads' `services` maps, as it does for xDS.
  if (m.endpoints != null) mapping(p, `${path}.endpoints`, m.endpoints);
  const waypoint = m.waypoint == null ? undefined : gateway(p, `${path}.waypoint`, m.waypoint);
  const weightedWaypoints = list(p, `${path}.weightedWaypoints`, m.weightedWaypoints, (v, at) => {
    const w = fields(p, at, v, ['destination', 'weight'], ['destination', 'weight']);
    if (!w) return undefined;
    const destination = w.destination == null ? undefined : gateway(p, `${at}.destination`, w.destination);
    const weight = uint(p, `${at}.weight`, w.weight, 0, 0xffff_ffff, 0);
    return destination ? { destination, weight } : undefined;
  });
  const loadBalancing = m.loadBalancer == null ? undefined : loadBalancer(p, `${path}.loadBalancer`, m.loadBalancer);
  const result: Service = {
    name: str(p, `${path}.name`, m.name),
    namespace: str(p, `${path}.namespace`, m.namespace),
    hostname,
    addresses: [...defined(vips), ...defined(cidrVips)],
    ports: portMap(p, `${path}.ports`, m.ports),
    subjectAltNames: defined(list(p, `${path}.subjectAltNames`, m.subjectAltNames, (v, at) => str(p, at, v))),
    ...(waypoint ? { waypoint } : {}),
    ...(loadBalancing ? { loadBalancing } : {}),
    ipFamilies: enumOf(p, `${path}.ipFamilies`, m.ipFamilies, { Dual: 'DUAL', IPv4: 'IPV4_ONLY', IPv6: 'IPV6_ONLY' } as const, 'AUTOMATIC'),
    canonical: bool(p, `${path}.canonical`, m.canonical),
    ingressUseWaypoint: false,
    weightedWaypoints: defined(weightedWaypoints),
    visibility: enumOf(p, `${path}.visibility`, m.visibility, { Public: 'PUBLIC', Namespace: 'NAMESPACE' } as const, 'PUBLIC'),
  };
  return p.list.length === before ? result : undefined;
}

const ROUTING_PREFERENCES = { Region: 'REGION', Zone: 'ZONE', Subzone: 'SUBZONE', Node: 'NODE', Cluster: 'CLUSTER', Network: 'NETWORK' } as const satisfies Record<
  string,
  LoadBalancingScope
>;

function loadBalancer(p: Problems, path: string, value: unknown): LoadBalancing | undefined {
  const m = fields(p, path, value, ['routingPreferences', 'mode', 'healthPolicy'], []);
  if (!m) return undefined;
  return {
    routingPreference: defined(
      list(p, `${path}.routingPreferences`, m.routingPreferences, (v, at) => enumOf(p, at, v, ROUTING_PREFERENCES, undefined)),
    ),
    mode: enumOf(
      p, `${path}.mode`, m.mode, { Standard: 'UNSPECIFIED_MODE', Strict: 'STRICT', Failover: 'FAILOVER', Passthrough: 'PASSTHROUGH' } as const,
      'UNSPECIFIED_MODE',
    ),
    healthPolicy: enumOf(p, `${path}.healthPolicy`, m.healthPolicy, { OnlyHealthy: 'ONLY_HEALTHY', AllowAll: 'ALLOW_ALL' } as const, 'ONLY_HEALTHY'),
  };
}

function cidrVip(p: Problems, path: string, value: unknown): NetworkAddress | undefined {
  const m = fields(p, path, value, ['network', 'cidr'], ['cidr']);
  if (!m) return undefined;
  const network = str(p, `${path}.network`, m.network);
  const cidr = m.cidr == null ? undefined : cidrOf(p, `${path}.cidr`, m.cidr);
  if (!cidr) return undefined;
  return cidr.prefixLength === cidr.full ? { network, ip: cidr.ip } : { network, ip: cidr.ip, prefixLength: cidr.prefixLength };
}

// ---------------------------------------------------------------------------------------------
// Authorization policies

function policy(p: Problems, path: string, value: unknown): AuthorizationPolicy | undefined {
  const before = p.list.length;
  const m = fields(p, path, value, ['name', 'namespace', 'scope', 'action', 'rules', 'dryRun'], ['name', 'namespace', 'scope', 'action', 'rules']);
  if (!m) return undefined;
  const rules = list(p, `${path}.rules`, m.rules, (rule, r) => ({
    clauses: defined(list(p, r, rule, (clause, c) => ({ matches: defined(list(p, c, clause, (v, at) => match(p, at, v))) }))),
  }));
  const result: AuthorizationPolicy = {
    name: str(p, `${path}.name`, m.name),
    namespace: str(p, `${path}.namespace`, m.namespace),
    scope: enumOf(p, `${path}.scope`, m.scope, { Global: 'GLOBAL', Namespace: 'NAMESPACE', WorkloadSelector: 'WORKLOAD_SELECTOR' } as const, 'GLOBAL'),
    action: enumOf(p, `${path}.action`, m.action, { Allow: 'ALLOW', Deny: 'DENY' } as const, 'ALLOW'),
    rules: defined(rules),
    dryRun: bool(p, `${path}.dryRun`, m.dryRun),
  };
  return p.list.length === before ? result : undefined;
}

const MATCH_FIELDS = [
  'namespaces', 'notNamespaces', 'principals', 'notPrincipals', 'serviceAccounts', 'notServiceAccounts', 'sourceIps', 'notSourceIps',
  'destinationIps', 'notDestinationIps', 'destinationPorts', 'notDestinationPorts',
] as const;

function match(p: Problems, path: string, value: unknown): PolicyMatch | undefined {
  const m = fields(p, path, value, MATCH_FIELDS, []);
  if (!m) return undefined;
  const strings = (key: (typeof MATCH_FIELDS)[number]) => defined(list(p, `${path}.${key}`, m[key], (v, at) => stringMatch(p, at, v)));
  const cidrs = (key: (typeof MATCH_FIELDS)[number]) =>
    defined(list(p, `${path}.${key}`, m[key], (v, at): Cidr | undefined => {
      const c = cidrOf(p, at, v);
      return c ? { ip: c.ip, prefixLength: c.prefixLength } : undefined;
    }));
  const ports = (key: (typeof MATCH_FIELDS)[number]) => defined(list(p, `${path}.${key}`, m[key], (v, at) => uint(p, at, v, 1, 65_535, undefined)));
  const accounts = (key: (typeof MATCH_FIELDS)[number]) =>
    defined(list(p, `${path}.${key}`, m[key], (v, at): ServiceAccountMatch | undefined => {
      const s = fields(p, at, v, ['namespace', 'serviceAccount'], ['namespace', 'serviceAccount']);
      return s ? { namespace: str(p, `${at}.namespace`, s.namespace), serviceAccount: str(p, `${at}.serviceAccount`, s.serviceAccount) } : undefined;
    }));
  return {
    namespaces: strings('namespaces'),
    notNamespaces: strings('notNamespaces'),
    principals: strings('principals'),
    notPrincipals: strings('notPrincipals'),
    sourceIps: cidrs('sourceIps'),
    notSourceIps: cidrs('notSourceIps'),
    destinationIps: cidrs('destinationIps'),
    notDestinationIps: cidrs('notDestinationIps'),
    destinationPorts: ports('destinationPorts'),
    notDestinationPorts: ports('notDestinationPorts'),
    serviceAccounts: accounts('serviceAccounts'),
    notServiceAccounts: accounts('notServiceAccounts'),
  };
}

const STRING_MATCH_KINDS = { Exact: 'exact', Prefix: 'prefix', Suffix: 'suffix', Presence: 'presence' } as const;

/** `{Exact: s}` | `{Prefix: s}` | `{Suffix: s}` | `{Presence: []}`: exactly one key. */
function stringMatch(p: Problems, path: string, value: unknown): StringMatch | undefined {
  const expected = 'must be one of {Exact: s}, {Prefix: s}, {Suffix: s}, {Presence: []}';
  if (!isMapping(value)) {
    p.add(path, `${expected}; got ${describe(value)}`);
    return undefined;
  }
  const keys = Object.keys(value);
  const [key] = keys;
  if (keys.length !== 1 || key === undefined) {
    p.add(path, `${expected}; got ${keys.length} keys`);
    return undefined;
  }
  if (!Object.hasOwn(STRING_MATCH_KINDS, key)) {
    p.add(`${path}.${key}`, 'unknown field');
    return undefined;
  }
  const kind = STRING_MATCH_KINDS[key as keyof typeof STRING_MATCH_KINDS];
  const inner = value[key];
  if (kind === 'presence') {
    const empty = inner == null || (Array.isArray(inner) && inner.length === 0) || (isMapping(inner) && Object.keys(inner).length === 0);
    if (!empty) p.add(`${path}.Presence`, 'must be []');
    return { kind };
  }
  if (typeof inner !== 'string') {
    p.add(`${path}.${key}`, `must be a string, got ${describe(inner)}`);
    return undefined;
  }
  return { kind, value: inner };
}

// ---------------------------------------------------------------------------------------------
// Shared shapes

function gateway(p: Problems, path: string, value: unknown): GatewayAddress | undefined {
  const m = fields(p, path, value, ['destination', 'hboneMtlsPort'], ['destination', 'hboneMtlsPort']);
  if (!m) return undefined;
  const hboneMtlsPort = uint(p, `${path}.hboneMtlsPort`, m.hboneMtlsPort, 1, 65_535, 0);
  if (m.destination == null) return undefined;
  const text = str(p, `${path}.destination`, m.destination);
  const slash = text.indexOf('/');
  const left = text.slice(0, slash);
  const right = text.slice(slash + 1);
  // Tried as network/IP first, as ztunnel does; otherwise a namespaced hostname.
  const ip = slash >= 0 ? canonicalIp(right) : undefined;
  if (ip !== undefined) return { destination: { kind: 'address', network: left, ip }, hboneMtlsPort };
  if (slash <= 0 || !right || right.includes('/')) {
    if (typeof m.destination === 'string') {
      p.add(`${path}.destination`, `must be <network>/<ip> or <namespace>/<hostname>, got ${JSON.stringify(text)}`);
    }
    return undefined;
  }
  return { destination: { kind: 'hostname', namespace: left, hostname: right }, hboneMtlsPort };
}

/** `"<network>/<ip>"`; the network may be empty (`/127.10.0.1`). */
function networkIp(p: Problems, path: string, value: unknown): NetworkAddress | undefined {
  if (typeof value !== 'string') {
    p.add(path, `must be <network>/<ip>, got ${describe(value)}`);
    return undefined;
  }
  const slash = value.indexOf('/');
  const ip = slash >= 0 ? canonicalIp(value.slice(slash + 1)) : undefined;
  if (ip === undefined) {
    p.add(path, `must be <network>/<ip>, got ${JSON.stringify(value)}`);
    return undefined;
  }
  return { network: value.slice(0, slash), ip };
}

function ip(p: Problems, path: string, value: unknown): string | undefined {
  if (typeof value !== 'string') {
    p.add(path, `must be an IP address string, got ${describe(value)}`);
    return undefined;
  }
  const canonical = canonicalIp(value);
  if (canonical === undefined) p.add(path, `${JSON.stringify(value)} is not an IP address`);
  return canonical;
}

/** `"10.0.0.0/8"`, or a bare IP meaning the full length. */
function cidrOf(p: Problems, path: string, value: unknown): (Cidr & { readonly full: number }) | undefined {
  if (typeof value !== 'string') {
    p.add(path, `must be a CIDR string, got ${describe(value)}`);
    return undefined;
  }
  const slash = value.indexOf('/');
  const address = slash >= 0 ? value.slice(0, slash) : value;
  const canonical = canonicalIp(address);
  if (canonical === undefined) {
    p.add(path, `${JSON.stringify(value)} is not a CIDR`);
    return undefined;
  }
  const full = canonical.includes(':') ? 128 : 32;
  if (slash < 0) return { ip: canonical, prefixLength: full, full };
  const prefix = value.slice(slash + 1);
  if (!/^\d{1,3}$/.test(prefix) || Number(prefix) > full) {
    p.add(path, `${JSON.stringify(value)} is not a CIDR (prefix length must be 0-${full})`);
    return undefined;
  }
  return { ip: canonical, prefixLength: Number(prefix), full };
}

/** A map `servicePort: targetPort` → ports (app protocol unknown), in service-port order. */
function portMap(p: Problems, path: string, value: unknown): Port[] {
  const m = mapping(p, path, value);
  if (!m) return [];
  const ports: Port[] = [];
  for (const [key, target] of Object.entries(m)) {
    const at = `${path}[${JSON.stringify(key)}]`;
    const servicePort = /^\d{1,5}$/.test(key) ? Number(key) : NaN;
    if (!(servicePort >= 1 && servicePort <= 65_535)) {
      p.add(at, `service port must be 1-65535, got ${JSON.stringify(key)}`);
      continue;
    }
    if (typeof target !== 'number' || !Number.isInteger(target) || target < 0 || target > 65_535) {
      p.add(at, `target port must be 0-65535, got ${describe(target).replace(/^the number /, '')}`);
      continue;
    }
    ports.push({ servicePort, targetPort: target, appProtocol: 'UNKNOWN' });
  }
  return ports.sort((a, b) => a.servicePort - b.servicePort);
}

// ---------------------------------------------------------------------------------------------
// Reading helpers: each records its own problem and returns a placeholder, so one pass finds all.

class Problems {
  readonly list: string[] = [];
  add(path: string, message: string): void {
    this.list.push(`${path}: ${message}`);
  }
}

type Mapping = Record<string, unknown>;

function isMapping(value: unknown): value is Mapping {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null || value === undefined) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return JSON.stringify(value);
  return `${typeof value === 'number' ? 'the number' : 'the boolean'} ${String(value)}`;
}

/** A mapping with only `known` keys (others are reported as unknown fields) and the `required` ones set. */
function fields<K extends string>(p: Problems, path: string, value: unknown, known: readonly K[], required: readonly K[]): Partial<Record<K, unknown>> | undefined {
  if (!isMapping(value)) {
    p.add(path, `must be a mapping, got ${describe(value)}`);
    return undefined;
  }
  const prefix = path ? `${path}.` : '';
  for (const key of Object.keys(value)) {
    if (!(known as readonly string[]).includes(key)) p.add(`${prefix}${key}`, 'unknown field');
  }
  for (const key of required) {
    if (value[key] == null) p.add(`${prefix}${key}`, 'is required');
  }
  return value as Partial<Record<K, unknown>>;
}

function mapping(p: Problems, path: string, value: unknown): Mapping | undefined {
  if (value == null) return undefined;
  if (isMapping(value)) return value;
  p.add(path, `must be a mapping, got ${describe(value)}`);
  return undefined;
}

function list<T>(p: Problems, path: string, value: unknown, each: (item: unknown, path: string) => T | undefined): Array<T | undefined> {
  if (value == null) return [];
  if (!Array.isArray(value)) {
    p.add(path, `must be a list, got ${describe(value)}`);
    return [];
  }
  return value.map((item, i) => each(item, `${path}[${i}]`));
}

function defined<T>(items: ReadonlyArray<T | undefined>): T[] {
  return items.filter((item): item is T => item !== undefined);
}

function str(p: Problems, path: string, value: unknown): string {
  if (value == null) return '';
  if (typeof value === 'string') return value;
  p.add(path, `must be a string, got ${describe(value)}`);
  return '';
}

function bool(p: Problems, path: string, value: unknown): boolean {
  if (value == null) return false;
  if (typeof value === 'boolean') return value;
  p.add(path, `must be true or false, got ${describe(value)}`);
  return false;
}

function uint<D extends number | undefined>(p: Problems, path: string, value: unknown, min: number, max: number, absent: D): number | D {
  if (value == null) return absent;
  if (typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max) return value;
  p.add(path, `must be ${min}-${max}, got ${describe(value).replace(/^the number /, '')}`);
  return absent;
}

function enumOf<T extends string, D extends string | undefined>(p: Problems, path: string, value: unknown, names: Readonly<Record<string, T>>, absent: D): T | D {
  if (value == null) return absent;
  if (typeof value === 'string' && Object.hasOwn(names, value)) return names[value] as T;
  p.add(path, `must be one of ${Object.keys(names).join(', ')}; got ${describe(value)}`);
  return absent;
}

function duplicates<T>(p: Problems, path: string, items: ReadonlyArray<T | undefined>, keyOf: (item: T) => string, field: string, what: string): void {
  const seen = new Map<string, number>();
  items.forEach((item, i) => {
    if (item === undefined) return;
    const key = keyOf(item);
    const first = seen.get(key);
    if (first === undefined) seen.set(key, i);
    else p.add(`${path}[${i}].${field}`, `duplicate ${what} ${JSON.stringify(key)} (first at ${path}[${first}])`);
  });
}

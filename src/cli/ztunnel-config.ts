import { stringify } from 'yaml';
import { fail, ok, type Result } from '../core/result.ts';
import { formatTable } from './tabwriter.ts';

/**
 * `ambientctl ztunnel-config`: istioctl's tables over a ztunnel's `/config_dump`. Pure: a dump's text
 * in, the text to print out. Two dump shapes are read, so the same command works against Istio's
 * ztunnel and ours:
 * - Istio's ztunnel: `workloadIps`, `protocol` (`HBONE`/`TCP`), `status` (`Healthy`), waypoint
 *   `{destination: "ns/hostname" | "network/ip"}`, service `vips: ["network/ip"]` and `endpoints`,
 *   policy `scope`/`action` in Pascal case (`Namespace`, `Allow`); lists or maps keyed by anything;
 * - ours (`src/ztunnel/config-dump.ts`, the store's domain objects): `addresses`, `tunnelProtocol`
 *   (`NONE`/`HBONE`), `HEALTHY`, waypoint `{destination: {kind, ...}}`, service `addresses:
 *   [{network, ip}]` with endpoints found through each workload's `services` map, and upper-case
 *   scopes and actions.
 * Both become one view; `-o json|yaml` prints the dump's own entries, filtered and sorted as the
 * tables are.
 */

export const ZTUNNEL_CONFIG_KINDS = ['workloads', 'services', 'policies', 'certificates', 'all'] as const;
export type ZtunnelConfigKind = (typeof ZTUNNEL_CONFIG_KINDS)[number];

/** istioctl's names and aliases for each subcommand. */
const KIND_ALIASES: Readonly<Record<string, ZtunnelConfigKind>> = {
  workload: 'workloads', workloads: 'workloads', w: 'workloads',
  service: 'services', services: 'services', s: 'services', svc: 'services',
  policy: 'policies', policies: 'policies', p: 'policies', pol: 'policies',
  certificate: 'certificates', certificates: 'certificates', certs: 'certificates', cert: 'certificates',
  all: 'all',
};

export function ztunnelConfigKind(name: string): ZtunnelConfigKind | undefined {
  return Object.hasOwn(KIND_ALIASES, name) ? KIND_ALIASES[name] : undefined;
}

export type OutputFormat = 'short' | 'json' | 'yaml';

export interface DumpWorkload {
  readonly uid: string;
  readonly name: string;
  readonly namespace: string;
  readonly addresses: readonly string[];
  readonly hostname: string;
  readonly node: string;
  /** `HBONE` or `TCP`, as istioctl shows it. */
  readonly protocol: string;
  /** `Healthy` or `Unhealthy`. */
  readonly status: string;
  /** `ns/hostname` or `network/ip`, when the workload has a waypoint. */
  readonly waypoint: string | undefined;
  /** Service keys (`ns/hostname`) this workload is an endpoint of, when the dump says so per workload. */
  readonly services: readonly string[];
  readonly raw: unknown;
}

export interface DumpService {
  readonly name: string;
  readonly namespace: string;
  readonly hostname: string;
  /** `network/ip`. */
  readonly vips: readonly string[];
  readonly waypoint: string | undefined;
  /** Endpoint workload uids when the dump lists them with the service; else found through the workloads. */
  readonly endpoints: readonly string[] | undefined;
  readonly raw: unknown;
}

export interface DumpPolicy {
  readonly name: string;
  readonly namespace: string;
  /** `Allow` / `Deny`. */
  readonly action: string;
  /** `Global` / `Namespace` / `WorkloadSelector`. */
  readonly scope: string;
  readonly raw: unknown;
}

export interface DumpCert {
  readonly serialNumber: string;
  readonly validFrom: string;
  readonly expirationTime: string;
}

export interface DumpCertificate {
  readonly identity: string;
  readonly state: string;
  readonly certChain: readonly DumpCert[];
  readonly rootCerts: readonly DumpCert[];
  readonly raw: unknown;
}

export interface ZtunnelDump {
  readonly workloads: readonly DumpWorkload[];
  readonly services: readonly DumpService[];
  readonly policies: readonly DumpPolicy[];
  readonly certificates: readonly DumpCertificate[];
  /** The whole dump as parsed, for `all -o json|yaml`. */
  readonly raw: Readonly<Record<string, unknown>>;
}

type Json = Readonly<Record<string, unknown>>;

function isObject(value: unknown): value is Json {
  return value !== null && typeof value === 'object' && !Array.isArray(value);
}

const str = (value: unknown): string => (typeof value === 'string' ? value : typeof value === 'number' ? String(value) : '');
const strings = (value: unknown): string[] => (Array.isArray(value) ? value.filter((v): v is string => typeof v === 'string') : []);

/** A list, or the values of a map (ztunnel has dumped both over time, as istioctl also accepts). */
function entries(dump: Json, key: string, errors: string[]): Json[] {
  const value = dump[key];
  if (value === undefined || value === null) return [];
  const items = Array.isArray(value) ? value : isObject(value) ? Object.values(value) : undefined;
  if (!items) {
    errors.push(`${key}: expected a list or a map, got ${typeof value}`);
    return [];
  }
  return items.filter((item, i): item is Json => {
    if (isObject(item)) return true;
    errors.push(`${key}[${i}]: expected an object`);
    return false;
  });
}

/** `ns/hostname` or `network/ip` from either shape of a gateway address. */
function destination(gateway: unknown): string | undefined {
  if (!isObject(gateway)) return undefined;
  const d = gateway['destination'];
  if (typeof d === 'string') return d;
  if (!isObject(d)) return undefined;
  if (d['kind'] === 'hostname' || d['hostname'] !== undefined) return `${str(d['namespace'])}/${str(d['hostname'])}`;
  return `${str(d['network'])}/${str(d['ip'])}`;
}

/** `ALLOW` → `Allow`, `WORKLOAD_SELECTOR` → `WorkloadSelector`; Pascal case passes through. */
function pascal(value: string): string {
  if (value !== value.toUpperCase()) return value;
  return value
    .toLowerCase()
    .split('_')
    .map((w) => w.charAt(0).toUpperCase() + w.slice(1))
    .join('');
}

function workload(w: Json): DumpWorkload {
  const ips = w['workloadIps'] !== undefined ? strings(w['workloadIps']) : strings(w['addresses']);
  const protocol = str(w['protocol']) || (str(w['tunnelProtocol']) === 'HBONE' ? 'HBONE' : str(w['tunnelProtocol']) ? 'TCP' : '');
  const services = isObject(w['services']) ? Object.keys(w['services']) : [];
  return {
    uid: str(w['uid']),
    name: str(w['name']),
    namespace: str(w['namespace']),
    addresses: ips,
    hostname: str(w['hostname']),
    node: str(w['node']),
    protocol,
    status: pascal(str(w['status'])),
    waypoint: destination(w['waypoint']),
    services,
    raw: w,
  };
}

function service(s: Json): DumpService {
  const vips = s['vips'] !== undefined
    ? strings(s['vips'])
    : (Array.isArray(s['addresses']) ? s['addresses'] : []).map((a: unknown) => (isObject(a) ? `${str(a['network'])}/${str(a['ip'])}` : str(a)));
  const eps = s['endpoints'];
  const endpoints = Array.isArray(eps) || isObject(eps)
    ? Object.values(eps).map((e: unknown) => (isObject(e) ? str(e['workloadUid']) : ''))
    : undefined;
  return { name: str(s['name']), namespace: str(s['namespace']), hostname: str(s['hostname']), vips, waypoint: destination(s['waypoint']), endpoints, raw: s };
}

function cert(c: unknown): DumpCert {
  const o = isObject(c) ? c : {};
  return { serialNumber: str(o['serialNumber']), validFrom: str(o['validFrom']), expirationTime: str(o['expirationTime']) };
}

/** Parses a `/config_dump` body; refuses only what is not a JSON object or has entries of the wrong type. */
export function parseConfigDump(text: string): Result<ZtunnelDump> {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    return fail(`the config dump is not JSON: ${(err as Error).message}`);
  }
  if (!isObject(parsed)) return fail('the config dump is not a JSON object');
  const errors: string[] = [];
  const dump: ZtunnelDump = {
    workloads: entries(parsed, 'workloads', errors).map(workload),
    services: entries(parsed, 'services', errors).map(service),
    policies: entries(parsed, 'policies', errors).map((p) => ({ name: str(p['name']), namespace: str(p['namespace']), action: pascal(str(p['action'])), scope: pascal(str(p['scope'])), raw: p })),
    certificates: entries(parsed, 'certificates', errors).map((c) => ({
      identity: str(c['identity']),
      state: str(c['state']),
      certChain: (Array.isArray(c['certChain']) ? c['certChain'] : []).map(cert),
      rootCerts: (Array.isArray(c['rootCerts']) ? c['rootCerts'] : []).map(cert),
      raw: c,
    })),
    raw: parsed,
  };
  return errors.length > 0 ? fail(...errors.map((e) => `config dump: ${e}`)) : ok(dump);
}

export interface WorkloadFilter {
  readonly namespace?: string;
  readonly address?: string;
  readonly node?: string;
}

/** Workload filters apply to `workloads`; the namespace also to `services` and `policies`. */
export type ZtunnelConfigFilter = WorkloadFilter;

const sameFold = (a: string, b: string): boolean => a.toLowerCase() === b.toLowerCase();
const byText = (a: string, b: string): number => (a < b ? -1 : a > b ? 1 : 0);

export function filterWorkloads(dump: ZtunnelDump, filter: WorkloadFilter): DumpWorkload[] {
  return dump.workloads.filter(
    (w) =>
      (!filter.namespace || sameFold(w.namespace, filter.namespace)) &&
      (!filter.address || w.addresses.some((ip) => sameFold(ip, filter.address as string))) &&
      (!filter.node || sameFold(w.node, filter.node)),
  );
}

function sortedWorkloads(list: readonly DumpWorkload[]): DumpWorkload[] {
  return [...list].sort((a, b) => byText(`${a.namespace}.${a.name}`, `${b.namespace}.${b.name}`) || byText(a.node, b.node));
}

function filterServices(dump: ZtunnelDump, namespace: string | undefined): DumpService[] {
  return dump.services
    .filter((s) => !namespace || sameFold(s.namespace, namespace))
    .sort((a, b) => byText(a.namespace, b.namespace) || byText(a.name, b.name) || byText(a.hostname, b.hostname));
}

function filterPolicies(dump: ZtunnelDump, namespace: string | undefined): DumpPolicy[] {
  return dump.policies.filter((p) => !namespace || sameFold(p.namespace, namespace)).sort((a, b) => byText(a.namespace, b.namespace) || byText(a.name, b.name));
}

/** The name of the service a waypoint destination names (by `ns/hostname` or by VIP); `None` without one, `NA` if unknown. */
function waypointName(dest: string | undefined, services: readonly DumpService[]): string {
  if (dest === undefined) return 'None';
  const svc = services.find((s) => `${s.namespace}/${s.hostname}` === dest || s.vips.includes(dest));
  return svc ? svc.name : 'NA';
}

export function workloadTable(dump: ZtunnelDump, filter: WorkloadFilter = {}): string[][] {
  const rows = [['NAMESPACE', 'POD NAME', 'ADDRESS', 'NODE', 'WAYPOINT', 'PROTOCOL']];
  for (const w of sortedWorkloads(filterWorkloads(dump, filter))) {
    const address = w.addresses.join(',') || w.hostname;
    rows.push([w.namespace, w.name, address, w.node, waypointName(w.waypoint, dump.services), w.protocol]);
  }
  return rows;
}

/** Endpoint workload uids of a service: the service's own list, else every workload naming the service. */
function endpointUids(svc: DumpService, dump: ZtunnelDump): readonly string[] {
  if (svc.endpoints) return svc.endpoints;
  const key = `${svc.namespace}/${svc.hostname}`;
  return dump.workloads.filter((w) => w.services.includes(key)).map((w) => w.uid);
}

export function serviceTable(dump: ZtunnelDump, namespace?: string): string[][] {
  const rows = [['NAMESPACE', 'SERVICE NAME', 'SERVICE VIP', 'WAYPOINT', 'ENDPOINTS']];
  const byUid = new Map(dump.workloads.map((w) => [w.uid, w]));
  for (const s of filterServices(dump, namespace)) {
    const ips = s.vips.map((v) => (v.includes('/') ? v.slice(v.indexOf('/') + 1) : v));
    const uids = endpointUids(s, dump);
    const healthy = uids.filter((uid) => byUid.get(uid)?.status === 'Healthy').length;
    rows.push([s.namespace, s.name, ips.join(','), waypointName(s.waypoint, dump.services), `${healthy}/${uids.length}`]);
  }
  return rows;
}

export function policyTable(dump: ZtunnelDump, namespace?: string): string[][] {
  return [['NAMESPACE', 'POLICY NAME', 'ACTION', 'SCOPE'], ...filterPolicies(dump, namespace).map((p) => [p.namespace, p.name, p.action, p.scope])];
}

/** A decimal serial (ztunnel's form) as istioctl's lower-case hex; hex input is passed through lower-cased. */
export function serialHex(serial: string): string {
  if (/^\d+$/.test(serial)) return BigInt(serial).toString(16);
  if (/^(0x)?[0-9a-f]+$/i.test(serial)) return BigInt(serial.startsWith('0x') ? serial : `0x${serial}`).toString(16);
  return serial || 'NA';
}

function certValid(cert: DumpCert, now: number): boolean {
  const from = Date.parse(cert.validFrom);
  const to = Date.parse(cert.expirationTime);
  return Number.isFinite(from) && Number.isFinite(to) && now > from && now < to;
}

const na = (value: string): string => value || 'NA';

export function certificateTable(dump: ZtunnelDump, now: number): string[][] {
  const rows = [['CERTIFICATE NAME', 'TYPE', 'STATUS', 'VALID CERT', 'SERIAL NUMBER', 'NOT AFTER', 'NOT BEFORE']];
  for (const c of dump.certificates) {
    const state = c.state.includes('Unavailable') ? 'Unavailable' : c.state;
    if (c.certChain.length === 0) {
      rows.push([c.identity, 'NA', state, 'false', 'NA', 'NA', 'NA']);
      continue;
    }
    // Older dumps carried the root as the chain's last entry, with no rootCerts.
    const legacy = c.rootCerts.length === 0;
    const row = (type: string, cert: DumpCert) => [c.identity, type, state, String(certValid(cert, now)), serialHex(cert.serialNumber), na(cert.expirationTime), na(cert.validFrom)];
    c.certChain.forEach((cert, i) => rows.push(row(i === 0 ? 'Leaf' : legacy && i === c.certChain.length - 1 ? 'Root' : 'Intermediate', cert)));
    for (const cert of c.rootCerts) rows.push(row('Root', cert));
  }
  return rows;
}

/** The tables istioctl prints for `kind`, with its padding (5 for certificates, 1 otherwise). */
export function summary(kind: ZtunnelConfigKind, dump: ZtunnelDump, filter: ZtunnelConfigFilter, now: number): string {
  switch (kind) {
    case 'workloads':
      return formatTable(workloadTable(dump, filter));
    case 'services':
      return formatTable(serviceTable(dump, filter.namespace));
    case 'policies':
      return formatTable(policyTable(dump, filter.namespace));
    case 'certificates':
      return formatTable(certificateTable(dump, now), 5);
    case 'all':
      return ['\n', formatTable(workloadTable(dump)), '\n', formatTable(serviceTable(dump)), '\n', formatTable(policyTable(dump)), '\n', formatTable(certificateTable(dump, now), 5)].join('');
  }
}

function selected(kind: ZtunnelConfigKind, dump: ZtunnelDump, filter: ZtunnelConfigFilter): unknown {
  switch (kind) {
    case 'workloads':
      return filterWorkloads(dump, filter).map((w) => w.raw);
    case 'services':
      return filterServices(dump, filter.namespace).map((s) => s.raw);
    case 'policies':
      return filterPolicies(dump, filter.namespace).map((p) => p.raw);
    case 'certificates':
      return dump.certificates.map((c) => c.raw);
    case 'all':
      return dump.raw;
  }
}

/** `-o json` (4-space indent, as istioctl's MarshalIndent) or `-o yaml` (keys sorted, as sigs.k8s.io/yaml). */
export function structured(kind: ZtunnelConfigKind, dump: ZtunnelDump, filter: ZtunnelConfigFilter, format: 'json' | 'yaml'): string {
  const value = selected(kind, dump, filter);
  return format === 'json' ? `${JSON.stringify(value, null, 4)}\n` : stringify(value, { sortMapEntries: true });
}

/** What `ambientctl ztunnel-config <kind> -o <format>` prints. */
export function renderZtunnelConfig(kind: ZtunnelConfigKind, dump: ZtunnelDump, options: { readonly filter?: ZtunnelConfigFilter; readonly output?: OutputFormat; readonly now?: number } = {}): string {
  const output = options.output ?? 'short';
  const filter = options.filter ?? {};
  return output === 'short' ? summary(kind, dump, filter, options.now ?? Date.now()) : structured(kind, dump, filter, output);
}

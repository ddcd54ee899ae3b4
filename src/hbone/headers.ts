import { randomBytes } from 'node:crypto';

/** HBONE request headers (reference ztunnel.md §3.4). */
export const HboneHeader = {
  baggage: 'baggage',
  forwarded: 'forwarded',
  traceparent: 'traceparent',
  forwardedNetwork: 'x-forwarded-network',
} as const;

/** Baggage keys that describe a workload, in the order Istio writes them. */
export interface WorkloadBaggage {
  readonly clusterName?: string;
  readonly namespace?: string;
  readonly workloadType?: 'deployment' | 'cronjob' | 'pod' | 'job';
  readonly workloadName?: string;
  readonly serviceName?: string;
  readonly serviceVersion?: string;
  readonly region?: string;
  readonly zone?: string;
}

/** Encodes baggage as a comma list, omitting empty values. */
export function formatBaggage(b: WorkloadBaggage): string {
  const entries: Array<[string, string | undefined]> = [
    ['k8s.cluster.name', b.clusterName],
    ['k8s.namespace.name', b.namespace],
    [`k8s.${b.workloadType ?? 'pod'}.name`, b.workloadName],
    ['service.name', b.serviceName],
    ['service.version', b.serviceVersion],
    ['cloud.region', b.region],
    ['cloud.availability_zone', b.zone],
  ];
  return entries
    .filter((e): e is [string, string] => !!e[1])
    .map(([k, v]) => `${k}=${encodeURIComponent(v)}`)
    .join(',');
}

const WORKLOAD_KEY = /^k8s\.(deployment|cronjob|pod|job)\.name$/;

/** Decodes W3C baggage into the workload fields Istio uses; unknown keys and malformed members are ignored. */
export function parseBaggage(header: string | undefined): WorkloadBaggage {
  const out: Record<string, string> = {};
  if (!header) return {};
  for (const member of header.split(',')) {
    const [pair] = member.split(';');
    const eq = pair?.indexOf('=') ?? -1;
    if (!pair || eq <= 0) continue;
    const key = pair.slice(0, eq).trim();
    let value: string;
    try {
      value = decodeURIComponent(pair.slice(eq + 1).trim());
    } catch {
      continue;
    }
    if (!value) continue;
    const workload = WORKLOAD_KEY.exec(key);
    if (workload) {
      out.workloadType = workload[1] as string;
      out.workloadName = value;
      continue;
    }
    const field = BAGGAGE_FIELDS[key];
    if (field) out[field] = value;
  }
  return out as WorkloadBaggage;
}

const BAGGAGE_FIELDS: Record<string, keyof WorkloadBaggage> = {
  'k8s.cluster.name': 'clusterName',
  'k8s.namespace.name': 'namespace',
  'service.name': 'serviceName',
  'service.version': 'serviceVersion',
  'cloud.region': 'region',
  'cloud.availability_zone': 'zone',
};

/** `for="<ip:port>"`, with `;host=<hostname>` when a service was addressed. */
export function formatForwarded(clientAddress: string, serviceHostname?: string): string {
  const forwarded = `for="${clientAddress}"`;
  return serviceHostname ? `${forwarded};host=${serviceHostname}` : forwarded;
}

/** Reads `for` and `host` from the first element of a Forwarded header (RFC 7239). */
export function parseForwarded(header: string | undefined): { readonly for?: string; readonly host?: string } {
  const out: { for?: string; host?: string } = {};
  if (!header) return out;
  const first = header.split(',')[0] ?? '';
  for (const pair of first.split(';')) {
    const eq = pair.indexOf('=');
    if (eq <= 0) continue;
    const key = pair.slice(0, eq).trim().toLowerCase();
    const value = pair.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
    if (key === 'for' || key === 'host') out[key] = value;
  }
  return out;
}

const TRACEPARENT = /^00-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}$/;

/** A new W3C traceparent with random ids, unsampled, as ztunnel sends per outbound connection. */
export function newTraceparent(): string {
  const bytes = randomBytes(24);
  return `00-${bytes.subarray(0, 16).toString('hex')}-${bytes.subarray(16).toString('hex')}-00`;
}

/** The traceparent if it is well formed (and its ids are not all zero), else a new one. */
export function traceparentOrNew(header: string | undefined): string {
  const m = header ? TRACEPARENT.exec(header) : null;
  if (m && !/^0+$/.test(m[1] as string) && !/^0+$/.test(m[2] as string)) return header as string;
  return newTraceparent();
}

import type { ConnectionPool, DestinationPolicy, LoadBalancerPolicy, OutlierDetection, Subset, TrafficPolicy } from '../../workload-api/l7-types.ts';
import { OUTLIER_DEFAULTS } from '../../workload-api/l7-types.ts';
import type { KubeObject, Pod } from '../kube-objects.ts';
import type { ClusterView } from '../view.ts';

/**
 * DestinationRule (networking.istio.io/v1) → the waypoint's DestinationPolicy (reference istio-ambient.md §2.6:
 * applied to the waypoint's `inbound-vip` clusters, subsets included), pure over every DestinationRule and the
 * cluster view.
 * - `host`: a short name or `name.namespace` is a Kubernetes Service of the rule's namespace (or the one named),
 *   qualified as `<name>.<ns>.svc.<domain suffix>`; any other host keeps the rule's namespace.
 * - `trafficPolicy`: loadBalancer (simple ROUND_ROBIN, LEAST_REQUEST (and the old LEAST_CONN), RANDOM;
 *   consistentHash by header, cookie, source IP or query parameter), connectionPool (tcp.maxConnections,
 *   tcp.connectTimeout, http.http1MaxPendingRequests, http2MaxRequests, maxRequestsPerConnection, maxRetries),
 *   outlierDetection (Istio's defaults for what is unset). `tls` is not the waypoint's (HBONE is always mTLS)
 *   and is ignored; `portLevelSettings` is not supported and reported.
 * - `subsets`: labels, and the uids of the pods behind the service that carry them (the waypoint's endpoints have
 *   no labels, so the control plane resolves them), with their own traffic policy.
 * Two rules for one host: the oldest wins, the other is reported.
 */

export interface DestinationRuleObject extends KubeObject {
  readonly spec?: {
    readonly host?: string;
    readonly trafficPolicy?: TrafficPolicySpec;
    readonly subsets?: ReadonlyArray<{ readonly name?: string; readonly labels?: Readonly<Record<string, string>>; readonly trafficPolicy?: TrafficPolicySpec }>;
  };
}

interface TrafficPolicySpec {
  readonly loadBalancer?: {
    readonly simple?: string;
    readonly consistentHash?: { readonly httpHeaderName?: string; readonly httpCookie?: { readonly name?: string }; readonly useSourceIp?: boolean; readonly httpQueryParameterName?: string };
  };
  readonly connectionPool?: {
    readonly tcp?: { readonly maxConnections?: number; readonly connectTimeout?: string };
    readonly http?: { readonly http1MaxPendingRequests?: number; readonly http2MaxRequests?: number; readonly maxRequestsPerConnection?: number; readonly maxRetries?: number };
  };
  readonly outlierDetection?: {
    readonly consecutive5xxErrors?: number;
    readonly consecutiveGatewayErrors?: number;
    readonly interval?: string;
    readonly baseEjectionTime?: string;
    readonly maxEjectionPercent?: number;
    readonly minHealthPercent?: number;
  };
  readonly tls?: unknown;
  readonly portLevelSettings?: readonly unknown[];
}

export interface DestinationRuleTranslation {
  /** By `namespace/hostname` (the xDS resource name). */
  readonly policies: ReadonlyMap<string, DestinationPolicy>;
  readonly problems: ReadonlyArray<{ readonly rule: string; readonly message: string }>;
}

const UNIT_MS: Readonly<Record<string, number>> = { h: 3_600_000, m: 60_000, s: 1000, ms: 1, us: 0.001, µs: 0.001, ns: 0.000_001 };

/** An Istio duration (`30s`, `1.5s`, `3m`, `100ms`, `1h30m`) in whole milliseconds; undefined when malformed. */
export function istioDurationMs(text: string): number | undefined {
  if (!/^(\d+(\.\d+)?(h|m|s|ms|us|µs|ns))+$/.test(text)) return undefined;
  let total = 0;
  for (const [, n = '0', , unit = 's'] of text.matchAll(/(\d+(\.\d+)?)(ms|us|µs|ns|h|m|s)/g)) total += Number(n) * (UNIT_MS[unit] ?? 0);
  return Math.round(total);
}

/** The service a DestinationRule `host` names: its namespace and FQDN. */
export function resolveHost(host: string, ruleNamespace: string, domainSuffix: string): { namespace: string; hostname: string } {
  const suffix = `.svc.${domainSuffix}`;
  if (host.endsWith(suffix)) {
    const [, ns = ruleNamespace] = host.slice(0, -suffix.length).split('.');
    return { namespace: ns, hostname: host };
  }
  const parts = host.split('.');
  if (parts.length === 1) return { namespace: ruleNamespace, hostname: `${host}.${ruleNamespace}${suffix}` };
  if (parts.length === 2 && !host.includes('*')) return { namespace: parts[1]!, hostname: `${host}${suffix}` };
  return { namespace: ruleNamespace, hostname: host };
}

function count(value: number | undefined, where: string, problems: string[], max = 2 ** 31 - 1): number | undefined {
  if (value === undefined) return undefined;
  if (!(Number.isInteger(value) && value >= 0 && value <= max)) {
    problems.push(`${where}: ${value} is not a whole number 0-${max}`);
    return undefined;
  }
  return value;
}

function duration(value: string | undefined, where: string, problems: string[]): number | undefined {
  if (value === undefined) return undefined;
  const ms = istioDurationMs(value);
  if (ms === undefined) problems.push(`${where}: ${JSON.stringify(value)} is not a duration`);
  return ms;
}

function trafficPolicy(spec: TrafficPolicySpec | undefined, where: string, problems: string[]): TrafficPolicy | undefined {
  if (spec === undefined) return undefined;
  let loadBalancer: LoadBalancerPolicy | undefined;
  const lb = spec.loadBalancer;
  if (lb?.consistentHash) {
    const h = lb.consistentHash;
    if (h.httpHeaderName) loadBalancer = { kind: 'hash', key: { kind: 'header', name: h.httpHeaderName.toLowerCase() } };
    else if (h.httpCookie?.name) loadBalancer = { kind: 'hash', key: { kind: 'cookie', name: h.httpCookie.name } };
    else if (h.useSourceIp) loadBalancer = { kind: 'hash', key: { kind: 'source-ip' } };
    else if (h.httpQueryParameterName) loadBalancer = { kind: 'hash', key: { kind: 'query', name: h.httpQueryParameterName } };
    else problems.push(`${where}.loadBalancer.consistentHash: one of httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName is needed`);
  } else if (lb?.simple !== undefined) {
    const simple: Readonly<Record<string, LoadBalancerPolicy['kind']>> = { ROUND_ROBIN: 'round-robin', LEAST_REQUEST: 'least-request', LEAST_CONN: 'least-request', RANDOM: 'random' };
    const kind = simple[lb.simple];
    if (kind === undefined || kind === 'hash') problems.push(`${where}.loadBalancer.simple: ${lb.simple} is not supported (ROUND_ROBIN, LEAST_REQUEST, RANDOM)`);
    else loadBalancer = { kind };
  }
  let connectionPool: ConnectionPool | undefined;
  const cp = spec.connectionPool;
  if (cp) {
    const at = `${where}.connectionPool`;
    const values = {
      maxConnections: count(cp.tcp?.maxConnections, `${at}.tcp.maxConnections`, problems),
      connectTimeoutMs: duration(cp.tcp?.connectTimeout, `${at}.tcp.connectTimeout`, problems),
      http1MaxPendingRequests: count(cp.http?.http1MaxPendingRequests, `${at}.http.http1MaxPendingRequests`, problems),
      http2MaxRequests: count(cp.http?.http2MaxRequests, `${at}.http.http2MaxRequests`, problems),
      maxRequestsPerConnection: count(cp.http?.maxRequestsPerConnection, `${at}.http.maxRequestsPerConnection`, problems),
      maxRetries: count(cp.http?.maxRetries, `${at}.http.maxRetries`, problems),
    };
    connectionPool = Object.fromEntries(Object.entries(values).filter(([, v]) => v !== undefined)) as ConnectionPool;
  }
  let outlierDetection: OutlierDetection | undefined;
  const od = spec.outlierDetection;
  if (od) {
    const at = `${where}.outlierDetection`;
    outlierDetection = {
      consecutive5xxErrors: count(od.consecutive5xxErrors, `${at}.consecutive5xxErrors`, problems) ?? OUTLIER_DEFAULTS.consecutive5xxErrors,
      consecutiveGatewayErrors: count(od.consecutiveGatewayErrors, `${at}.consecutiveGatewayErrors`, problems) ?? OUTLIER_DEFAULTS.consecutiveGatewayErrors,
      intervalMs: duration(od.interval, `${at}.interval`, problems) ?? OUTLIER_DEFAULTS.intervalMs,
      baseEjectionTimeMs: duration(od.baseEjectionTime, `${at}.baseEjectionTime`, problems) ?? OUTLIER_DEFAULTS.baseEjectionTimeMs,
      maxEjectionPercent: count(od.maxEjectionPercent, `${at}.maxEjectionPercent`, problems, 100) ?? OUTLIER_DEFAULTS.maxEjectionPercent,
      minHealthPercent: count(od.minHealthPercent, `${at}.minHealthPercent`, problems, 100) ?? OUTLIER_DEFAULTS.minHealthPercent,
    };
  }
  if ((spec.portLevelSettings?.length ?? 0) > 0) problems.push(`${where}.portLevelSettings: not supported at the waypoint; ignored`);
  return { ...(loadBalancer ? { loadBalancer } : {}), ...(connectionPool ? { connectionPool } : {}), ...(outlierDetection ? { outlierDetection } : {}) };
}

function selects(labels: Readonly<Record<string, string>>, selector: Readonly<Record<string, string>>): boolean {
  return Object.entries(selector).every(([k, v]) => labels[k] === v);
}

export function translateDestinationRules(rules: Iterable<DestinationRuleObject>, view: ClusterView): DestinationRuleTranslation {
  const policies = new Map<string, DestinationPolicy>();
  const owners = new Map<string, string>();
  const problems: Array<{ rule: string; message: string }> = [];
  const ordered = [...rules].sort((a, b) => {
    const ta = a.metadata?.creationTimestamp ?? '';
    const tb = b.metadata?.creationTimestamp ?? '';
    if (ta !== tb) return ta < tb ? -1 : 1;
    const ka = `${a.metadata?.namespace}/${a.metadata?.name}`;
    const kb = `${b.metadata?.namespace}/${b.metadata?.name}`;
    return ka < kb ? -1 : ka > kb ? 1 : 0;
  });
  for (const rule of ordered) {
    const ns = rule.metadata?.namespace ?? '';
    const key = `${ns}/${rule.metadata?.name ?? ''}`;
    const found: string[] = [];
    const host = rule.spec?.host ?? '';
    if (host === '') {
      problems.push({ rule: key, message: 'spec.host: required' });
      continue;
    }
    const target = resolveHost(host, ns, view.settings.domainSuffix);
    const name = `${target.namespace}/${target.hostname}`;
    const owner = owners.get(name);
    if (owner !== undefined) {
      problems.push({ rule: key, message: `spec.host: ${target.hostname} already has the older DestinationRule ${owner}; this one is ignored` });
      continue;
    }
    const tp = trafficPolicy(rule.spec?.trafficPolicy, 'spec.trafficPolicy', found);
    const svcName = target.hostname.endsWith(`.${target.namespace}.svc.${view.settings.domainSuffix}`) ? target.hostname.split('.')[0] : undefined;
    const svc = svcName === undefined ? undefined : view.service(target.namespace, svcName);
    const selector = svc?.spec?.selector ?? undefined;
    const seen = new Set<string>();
    const subsets: Subset[] = [];
    (rule.spec?.subsets ?? []).forEach((s, i) => {
      const at = `spec.subsets[${i}]`;
      if (!s.name) return found.push(`${at}.name: required`);
      if (seen.has(s.name)) return found.push(`${at}.name: duplicate subset ${JSON.stringify(s.name)}`);
      seen.add(s.name);
      const labels = s.labels ?? {};
      const uids: string[] = [];
      if (selector) {
        for (const pod of view.pods(target.namespace) as Iterable<Pod>) {
          const podLabels = pod.metadata?.labels ?? {};
          if (selects(podLabels, selector) && selects(podLabels, labels)) uids.push(`${view.settings.clusterId}//Pod/${target.namespace}/${pod.metadata?.name ?? ''}`);
        }
      }
      const stp = trafficPolicy(s.trafficPolicy, `${at}.trafficPolicy`, found);
      subsets.push({ name: s.name, labels: new Map(Object.entries(labels)), workloadUids: uids.sort(), ...(stp ? { trafficPolicy: stp } : {}) });
      return undefined;
    });
    for (const message of found) problems.push({ rule: key, message });
    owners.set(name, key);
    policies.set(name, { namespace: target.namespace, hostname: target.hostname, subsets, ...(tp ? { trafficPolicy: tp } : {}) });
  }
  return { policies, problems };
}

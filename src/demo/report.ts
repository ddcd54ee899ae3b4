import { sumSamples, type PromSample } from '../core/prometheus-text.ts';

/**
 * The demo's report, a pure function of what it observed: the pods and their identities, what each call's
 * client saw, and the data plane's own metrics (the difference over the traffic run). The verdicts (mTLS,
 * the denial, the split) are computed here too, so the printed report and the test read the same facts.
 */

export interface DemoWorkload {
  readonly namespace: string;
  readonly name: string;
  readonly node: string;
  readonly ip: string;
  readonly identity: string;
  /** Its traffic goes through ztunnel (its namespace is in the mesh). */
  readonly captured: boolean;
  readonly role: string;
}

export interface CallResult {
  readonly byPod: Readonly<Record<string, number>>;
  readonly statuses: Readonly<Record<string, number>>;
  readonly failures: Readonly<Record<string, number>>;
}

export interface DemoCall {
  /** `namespace/pod`. */
  readonly from: string;
  /** The service host called, e.g. `reviews.shop.svc.cluster.local`. */
  readonly service: string;
  readonly port: number;
  readonly requests: number;
  readonly result: CallResult;
  /** The waypoint it goes through (`namespace/name`), if any. */
  readonly waypoint?: string;
}

export interface SplitExpectation {
  /** `namespace/name` of the route. */
  readonly route: string;
  readonly service: string;
  /** Backend pod name prefix → weight, e.g. `{ 'reviews-v1': 90, 'reviews-v2': 10 }`. */
  readonly weights: Readonly<Record<string, number>>;
}

export interface DemoObservation {
  readonly workloads: readonly DemoWorkload[];
  readonly calls: readonly DemoCall[];
  readonly split: SplitExpectation;
  /** The policy expected to refuse a caller: its name and the `from` of the call it refuses. */
  readonly denial: { readonly policy: string; readonly from: string; readonly service: string };
  /** Metric samples, the difference between after and before the traffic run, by component. */
  readonly ztunnelMetrics: Readonly<Record<string, readonly PromSample[]>>;
  readonly waypointMetrics: readonly PromSample[];
}

export interface Verdict {
  readonly ok: boolean;
  readonly text: string;
}

export interface DemoReport {
  readonly text: string;
  readonly verdicts: { readonly mtls: Verdict; readonly denial: Verdict; readonly split: Verdict };
}

const OPENED = 'istio_tcp_connections_opened_total';
const CLOSED = 'istio_tcp_connections_closed_total';
const REQUESTS = 'istio_requests_total';

/** The per-label-set difference `after - before` of counters (samples absent before count from 0). */
export function metricDelta(before: readonly PromSample[], after: readonly PromSample[]): PromSample[] {
  const key = (s: PromSample) => `${s.name}${JSON.stringify(Object.entries(s.labels).sort())}`;
  const old = new Map(before.map((s) => [key(s), s.value]));
  return after.map((s) => ({ ...s, value: s.value - (old.get(key(s)) ?? 0) })).filter((s) => s.value !== 0);
}

interface ConnectionRow {
  readonly source: string;
  readonly sourcePrincipal: string;
  readonly destination: string;
  readonly destinationPrincipal: string;
  readonly security: string;
  /** Which side's ztunnel counted it: the destination's, or the source's when the destination has none (a waypoint). */
  readonly reporter: 'destination' | 'source';
  opened: number;
  denied: number;
}

/**
 * Connections per source and destination workload, as the destination's ztunnel counted them; a pair only a
 * source ztunnel saw (its destination is not captured, e.g. the waypoint) as the source counted it.
 */
export function connectionRows(ztunnelMetrics: Readonly<Record<string, readonly PromSample[]>>): ConnectionRow[] {
  const rows = new Map<string, ConnectionRow>();
  const collect = (reporter: 'destination' | 'source', skip: ReadonlySet<string>) => {
    for (const samples of Object.values(ztunnelMetrics)) {
      for (const s of samples) {
        if ((s.name !== OPENED && s.name !== CLOSED) || s.labels['reporter'] !== reporter) continue;
        const l = s.labels;
        const pair = `${l['source_workload_namespace']}/${l['source_workload']} ${l['destination_workload_namespace']}/${l['destination_workload']}`;
        if (skip.has(pair)) continue;
        const row = {
          source: `${l['source_workload_namespace']}/${l['source_workload']}`,
          sourcePrincipal: l['source_principal'] ?? 'unknown',
          destination: `${l['destination_workload_namespace']}/${l['destination_workload']}`,
          destinationPrincipal: l['destination_principal'] ?? 'unknown',
          security: l['connection_security_policy'] ?? 'unknown',
          reporter,
        };
        const k = JSON.stringify(row);
        const existing = rows.get(k) ?? { ...row, opened: 0, denied: 0 };
        if (s.name === OPENED) existing.opened += s.value;
        else if (l['response_flags'] === 'DENY') existing.denied += s.value;
        rows.set(k, existing);
      }
    }
  };
  collect('destination', new Set());
  collect('source', new Set([...rows.values()].map((r) => `${r.source} ${r.destination}`)));
  return [...rows.values()].sort((a, b) => `${a.source}${a.destination}`.localeCompare(`${b.source}${b.destination}`));
}

const pct = (n: number, of: number): string => (of === 0 ? '0%' : `${((100 * n) / of).toFixed(1)}%`);

/**
 * The canary verdict: each backend's share within 4 standard deviations of its weight (a binomial count over
 * `n` requests), which a correct split fails about once in 15,000 runs and a 50/50 split over 200 requests
 * always fails.
 */
export function splitVerdict(split: SplitExpectation, byPod: Readonly<Record<string, number>>): Verdict & { readonly counts: Record<string, number> } {
  const counts: Record<string, number> = {};
  for (const prefix of Object.keys(split.weights)) counts[prefix] = 0;
  let other = 0;
  for (const [pod, n] of Object.entries(byPod)) {
    const prefix = Object.keys(split.weights).find((p) => pod === p || pod.startsWith(`${p}-`));
    if (prefix) counts[prefix] = (counts[prefix] ?? 0) + n;
    else other += n;
  }
  const total = Object.values(counts).reduce((a, b) => a + b, 0) + other;
  const weightSum = Object.values(split.weights).reduce((a, b) => a + b, 0);
  const parts: string[] = [];
  let ok = total > 0 && other === 0;
  for (const [prefix, weight] of Object.entries(split.weights)) {
    const p = weight / weightSum;
    const expected = total * p;
    const allowed = 4 * Math.sqrt(total * p * (1 - p));
    const n = counts[prefix] ?? 0;
    if (Math.abs(n - expected) > allowed) ok = false;
    parts.push(`${prefix} ${n} (${pct(n, total)}, expected ${weight}% ± ${((100 * allowed) / Math.max(total, 1)).toFixed(1)})`);
  }
  if (other) parts.push(`elsewhere ${other}`);
  return { ok, counts, text: `${parts.join(', ')}: ${ok ? 'within tolerance' : 'OUT OF TOLERANCE'}` };
}

export function buildReport(obs: DemoObservation): DemoReport {
  const lines: string[] = [];

  lines.push('Workloads');
  for (const w of obs.workloads) {
    lines.push(`  ${`${w.namespace}/${w.name}`.padEnd(24)} ${w.node.padEnd(7)} ${w.ip.padEnd(12)} ${w.captured ? w.identity : `${w.identity} (not captured: ${w.role})`}`);
  }

  lines.push('', 'Calls (as the clients saw them)');
  for (const c of obs.calls) {
    const ok = c.result.statuses['200'] ?? 0;
    const failed = Object.values(c.result.failures).reduce((a, b) => a + b, 0);
    const how = c.waypoint ? ` via waypoint ${c.waypoint}` : '';
    const failures = failed ? `, ${failed} refused (${Object.entries(c.result.failures).map(([k, v]) => `${k} ${v}`).join(', ')})` : '';
    const others = Object.entries(c.result.statuses).filter(([code]) => code !== '200').map(([code, n]) => `, ${n} × HTTP ${code}`).join('');
    lines.push(`  ${c.from.padEnd(14)} → ${`${c.service}:${c.port}`.padEnd(36)} ${c.requests} requests${how}: ${ok} × 200${others}${failures}`);
  }

  const rows = connectionRows(obs.ztunnelMetrics);
  lines.push('', 'Connections (as the ztunnels counted them)');
  for (const r of rows) {
    const by = r.reporter === 'source' ? ' (counted at the source)' : '';
    lines.push(`  ${r.source} (${r.sourcePrincipal}) → ${r.destination} (${r.destinationPrincipal}): ${r.opened} opened, ${r.security === 'mutual_tls' ? 'mTLS' : r.security}${r.denied ? `, ${r.denied} DENIED` : ''}${by}`);
  }
  const captured = rows.filter((r) => r.opened > 0);
  const mtlsOk = captured.length > 0 && captured.every((r) => r.security === 'mutual_tls' && r.sourcePrincipal.startsWith('spiffe://') && r.destinationPrincipal.startsWith('spiffe://'));
  const mtls: Verdict = {
    ok: mtlsOk,
    text: mtlsOk ? `every one of ${captured.reduce((a, r) => a + r.opened, 0)} connections was mutual TLS between SPIFFE identities` : 'NOT every connection was mutual TLS with both identities known',
  };

  const denied = obs.calls.find((c) => c.from === obs.denial.from && c.service === obs.denial.service);
  const deniedAtZtunnel = rows.filter((r) => r.source === obs.denial.from).reduce((a, r) => a + r.denied, 0);
  const refusedAll = denied !== undefined && (denied.result.statuses['200'] ?? 0) === 0 && deniedAtZtunnel > 0;
  const denial: Verdict = {
    ok: refusedAll,
    text: denied
      ? `${obs.denial.policy} refused ${obs.denial.from} → ${obs.denial.service}: ${denied.requests - (denied.result.statuses['200'] ?? 0)} of ${denied.requests} requests failed, ${deniedAtZtunnel} connections counted DENY by ztunnel${refusedAll ? '' : ' (EXPECTED ALL REFUSED)'}`
      : `no call from ${obs.denial.from} to ${obs.denial.service} was made`,
  };

  const splitCall = obs.calls.find((c) => c.service === obs.split.service && c.from !== obs.denial.from);
  const split = splitVerdict(obs.split, splitCall?.result.byPod ?? {});

  lines.push('', 'Verdicts');
  lines.push(`  mTLS:   ${mtls.ok ? 'ok  ' : 'FAIL'} ${mtls.text}`);
  lines.push(`  policy: ${denial.ok ? 'ok  ' : 'FAIL'} ${denial.text}`);
  lines.push(`  canary: ${split.ok ? 'ok  ' : 'FAIL'} ${obs.split.route}: ${split.text}`);

  lines.push('', 'Key metrics (over the traffic run)');
  for (const [component, samples] of Object.entries(obs.ztunnelMetrics)) {
    lines.push(`  ${component}: ${OPENED} ${sumSamples(samples, OPENED)} (source ${sumSamples(samples, OPENED, { reporter: 'source' })}, destination ${sumSamples(samples, OPENED, { reporter: 'destination' })}), DENY closes ${sumSamples(samples, CLOSED, { response_flags: 'DENY' })}`);
  }
  const codes = new Map<string, number>();
  const versions = new Map<string, number>();
  for (const s of obs.waypointMetrics) {
    if (s.name !== REQUESTS) continue;
    const code = s.labels['response_code'] ?? '?';
    codes.set(code, (codes.get(code) ?? 0) + s.value);
    const dest = s.labels['destination_workload'] ?? '?';
    versions.set(dest, (versions.get(dest) ?? 0) + s.value);
  }
  lines.push(`  waypoint: ${REQUESTS} ${[...codes.values()].reduce((a, b) => a + b, 0)} (${[...codes].map(([c, n]) => `${n} × ${c}`).join(', ') || 'none'}); by destination workload: ${[...versions].sort().map(([d, n]) => `${d} ${n}`).join(', ') || 'none'}`);
  return { text: lines.join('\n'), verdicts: { mtls, denial, split } };
}

import { readFileSync } from 'node:fs';

/** Reading the Grafana dashboard under deploy/dashboards and the names its PromQL asks for. */

export interface DashboardTarget {
  readonly refId: string;
  readonly expr: string;
  readonly datasource?: { readonly type?: string; readonly uid?: string };
}

export interface DashboardPanel {
  readonly id: number;
  readonly type: string;
  readonly title: string;
  readonly gridPos: { readonly x: number; readonly y: number; readonly w: number; readonly h: number };
  readonly datasource?: { readonly type?: string; readonly uid?: string };
  readonly targets?: readonly DashboardTarget[];
}

export interface DashboardVariable {
  readonly name: string;
  readonly type: string;
  readonly query?: string | { readonly query: string };
}

export interface Dashboard {
  readonly title: string;
  readonly uid: string;
  readonly schemaVersion: number;
  readonly panels: readonly DashboardPanel[];
  readonly templating: { readonly list: readonly DashboardVariable[] };
}

export function loadDashboard(path: string): Dashboard {
  const parsed = JSON.parse(readFileSync(path, 'utf8')) as Dashboard;
  if (!Array.isArray(parsed.panels) || !Array.isArray(parsed.templating?.list)) throw new Error(`${path}: not a Grafana dashboard (panels, templating.list)`);
  return parsed;
}

export interface DashboardQuery {
  /** The title of the row the panel is under ('' before the first row; 'variables' for template queries). */
  readonly row: string;
  /** `panel <id> "<title>" <refId>` or `variable <name>`. */
  readonly where: string;
  readonly expr: string;
}

/** Every PromQL query of the dashboard: panel targets (with their row) and query variables. */
export function dashboardQueries(dashboard: Dashboard): DashboardQuery[] {
  const out: DashboardQuery[] = [];
  let row = '';
  for (const panel of dashboard.panels) {
    if (panel.type === 'row') {
      row = panel.title;
      continue;
    }
    for (const target of panel.targets ?? []) out.push({ row, where: `panel ${panel.id} "${panel.title}" ${target.refId}`, expr: target.expr });
  }
  for (const variable of dashboard.templating.list) {
    if (variable.type !== 'query' || variable.query === undefined) continue;
    out.push({ row: 'variables', where: `variable ${variable.name}`, expr: typeof variable.query === 'string' ? variable.query : variable.query.query });
  }
  return out;
}

/** A Grafana query as Prometheus would receive it: `$__rate_interval` and multi-value variables filled in. */
export function instantiate(expr: string, rateInterval = '1m'): string {
  return expr.replaceAll('$__rate_interval', rateInterval).replace(/\$\{?[a-zA-Z_]\w*\}?/g, '.*');
}

const KEYWORDS = new Set(['and', 'or', 'unless', 'by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool', 'offset', 'inf', 'nan']);

/** The metric names and label names a PromQL expression (or Grafana's `label_values(expr, label)`) mentions. */
export function promqlNames(query: string): { metrics: string[]; labels: string[] } {
  const labels = new Set<string>();
  let expr = query.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
  const lv = /^\s*label_values\(\s*(.*),\s*([a-zA-Z_]\w*)\s*\)\s*$/s.exec(expr);
  if (lv) {
    labels.add(lv[2]!);
    expr = lv[1]!;
  }
  expr = expr.replace(/\{([^}]*)\}/g, (_, body: string) => {
    for (const m of body.matchAll(/([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)/g)) labels.add(m[1]!);
    return ' ';
  });
  expr = expr.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g, (_, _kw: string, body: string) => {
    for (const name of body.split(',').map((s) => s.trim()).filter((s) => s !== '')) labels.add(name);
    return ' ';
  });
  expr = expr.replace(/\[[^\]]*\]/g, ' ');
  const metrics = new Set<string>();
  for (const m of expr.matchAll(/(?<![\w:.$])([a-zA-Z_:][\w:]*)(\s*\()?/g)) {
    const name = m[1]!;
    if (m[2] !== undefined || KEYWORDS.has(name.toLowerCase())) continue;
    metrics.add(name);
  }
  return { metrics: [...metrics].sort(), labels: [...labels].sort() };
}

const histogram = (name: string): string[] => [`${name}_bucket`, `${name}_sum`, `${name}_count`];

/**
 * Istio's standard metrics (reference istio-ambient.md §5.2) as Prometheus names them, plus ztunnel's
 * `istio_tcp_connections_failed_total` (reference ztunnel.md §6.1), which stock ztunnel dashboards also use.
 */
export const STANDARD_METRICS: ReadonlySet<string> = new Set([
  'istio_requests_total',
  ...histogram('istio_request_duration_milliseconds'),
  ...histogram('istio_request_bytes'),
  ...histogram('istio_response_bytes'),
  'istio_request_messages_total',
  'istio_response_messages_total',
  'istio_tcp_connections_opened_total',
  'istio_tcp_connections_closed_total',
  'istio_tcp_sent_bytes_total',
  'istio_tcp_received_bytes_total',
  'istio_build',
  'istio_tcp_connections_failed_total',
]);

/** The standard label set of the HTTP metrics (reference istio-ambient.md §5.2). */
export const STANDARD_HTTP_LABELS: readonly string[] = [
  'reporter',
  'source_workload', 'source_workload_namespace', 'source_principal', 'source_app', 'source_version',
  'source_canonical_service', 'source_canonical_revision', 'source_cluster',
  'destination_workload', 'destination_workload_namespace', 'destination_principal', 'destination_app', 'destination_version',
  'destination_canonical_service', 'destination_canonical_revision', 'destination_cluster',
  'destination_service', 'destination_service_name', 'destination_service_namespace',
  'request_protocol', 'response_code', 'grpc_response_status', 'response_flags', 'connection_security_policy',
];

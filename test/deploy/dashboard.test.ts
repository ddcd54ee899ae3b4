import test from 'ava';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { createMetricsRegistry } from '../../src/core/metrics.ts';
import { createL4Metrics, TRAFFIC_LABELS } from '../../src/ztunnel/metrics.ts';
import { REPO } from '../helpers/manifests.ts';
import { dashboardQueries, loadDashboard, promqlNames, STANDARD_HTTP_LABELS, STANDARD_METRICS } from '../helpers/dashboard.ts';

/**
 * deploy/dashboards/ambient-mesh.json: a Grafana dashboard that parses, lays out on the 24-column grid without
 * overlaps, takes its Prometheus from a variable, and asks only for metrics of Istio's standard set (reference
 * istio-ambient.md §5.2, plus ztunnel's own istio_tcp_connections_failed_total, which our ztunnel emits) with
 * label names those metrics carry. The ztunnel row is L4 (istio_tcp_*), the waypoint row reporter="waypoint".
 * prometheus.test.ts runs every query through a real Prometheus.
 */

const dashboard = loadDashboard(join(REPO, 'deploy', 'dashboards', 'ambient-mesh.json'));

test('the PromQL name extraction finds metrics and labels, not functions, keywords, strings or variables', (t) => {
  t.deepEqual(promqlNames('histogram_quantile(0.99, sum by (le, destination_service) (rate(istio_request_duration_milliseconds_bucket{reporter="waypoint",x=~"a{b}"}[$__rate_interval])))'), {
    metrics: ['istio_request_duration_milliseconds_bucket'],
    labels: ['destination_service', 'le', 'reporter', 'x'],
  });
  t.deepEqual(promqlNames('sum(rate(a_total{r="x"}[5m])) / sum(rate(b_total[5m])) or vector(0)'), { metrics: ['a_total', 'b_total'], labels: ['r'] });
  t.deepEqual(promqlNames('count by (tag) (istio_build{component="ztunnel"}) offset 5m'), { metrics: ['istio_build'], labels: ['component', 'tag'] });
  t.deepEqual(promqlNames('label_values(istio_tcp_connections_opened_total{reporter="destination"}, destination_workload_namespace)'), {
    metrics: ['istio_tcp_connections_opened_total'],
    labels: ['destination_workload_namespace', 'reporter'],
  });
});

test('the dashboard is a Grafana dashboard: title, uid, schema version, unique panel ids, a datasource variable, no overlapping panels', (t) => {
  t.is(typeof dashboard.title, 'string');
  t.regex(dashboard.uid, /^[a-zA-Z0-9-_]{1,40}$/);
  t.true(Number.isInteger(dashboard.schemaVersion) && dashboard.schemaVersion >= 30);
  const ids = dashboard.panels.map((p) => p.id);
  t.is(new Set(ids).size, ids.length, 'unique panel ids');
  const ds = dashboard.templating.list.find((v) => v.type === 'datasource');
  t.is(ds?.query, 'prometheus');
  const boxes = dashboard.panels.map((p) => ({ id: p.id, ...p.gridPos }));
  for (const b of boxes) t.true(b.x >= 0 && b.w > 0 && b.x + b.w <= 24 && b.h > 0 && b.y >= 0, `panel ${b.id} fits the grid`);
  for (const [i, a] of boxes.entries()) {
    for (const b of boxes.slice(i + 1)) {
      const overlap = a.x < b.x + b.w && b.x < a.x + a.w && a.y < b.y + b.h && b.y < a.y + a.h;
      t.false(overlap, `panels ${a.id} and ${b.id} overlap`);
    }
  }
  for (const p of dashboard.panels.filter((x) => x.type !== 'row')) {
    t.true((p.targets ?? []).length > 0, `panel ${p.id} has a query`);
    t.is(p.datasource?.uid, '${datasource}', `panel ${p.id} uses the datasource variable`);
    const refs = (p.targets ?? []).map((x) => x.refId);
    t.is(new Set(refs).size, refs.length);
    for (const target of p.targets ?? []) t.is(target.datasource?.uid, '${datasource}');
  }
});

test('every query asks for metrics of Istio\'s standard set, with labels those metrics carry', (t) => {
  const ztunnelRegistry = createMetricsRegistry();
  createL4Metrics(ztunnelRegistry);
  const ztunnelEmits = new Set(ztunnelRegistry.prom.getMetricsAsArray().map((m) => m.name));
  const tcpLabels = new Set<string>([...TRAFFIC_LABELS]);
  const httpLabels = new Set<string>(STANDARD_HTTP_LABELS);
  const queries = dashboardQueries(dashboard);
  t.true(queries.length >= 15, `${queries.length} queries`);
  for (const { where, expr } of queries) {
    const { metrics, labels } = promqlNames(expr);
    t.true(metrics.length > 0, `${where}: a metric in ${expr}`);
    for (const metric of metrics) {
      t.true(STANDARD_METRICS.has(metric), `${where}: ${metric} is one of Istio's standard metrics`);
      if (metric.startsWith('istio_tcp_') || metric === 'istio_build') t.true(ztunnelEmits.has(metric), `${where}: our ztunnel emits ${metric}`);
    }
    const allowed = metrics.every((m) => m.startsWith('istio_tcp_')) ? tcpLabels
      : metrics.every((m) => m === 'istio_build') ? new Set(['component', 'tag'])
        : new Set([...httpLabels, 'le']);
    for (const label of labels) t.true(allowed.has(label), `${where}: ${label} is a label of ${metrics.join(', ')}`);
  }
});

test('the ztunnel row is L4 and the waypoint row is reporter="waypoint" requests and durations', (t) => {
  const rows = dashboardQueries(dashboard);
  const ztunnel = rows.filter((q) => q.row.startsWith('ztunnel'));
  const waypoint = rows.filter((q) => q.row.startsWith('waypoint'));
  t.true(ztunnel.length >= 8 && waypoint.length >= 6);
  for (const q of ztunnel) t.true(promqlNames(q.expr).metrics.every((m) => m.startsWith('istio_tcp_') || m === 'istio_build'), q.where);
  for (const q of waypoint) {
    t.true(q.expr.includes('reporter="waypoint"'), `${q.where}: reporter="waypoint"`);
    t.true(promqlNames(q.expr).metrics.every((m) => m === 'istio_requests_total' || m === 'istio_request_duration_milliseconds_bucket'), q.where);
  }
  const waypointMetrics = new Set(waypoint.flatMap((q) => promqlNames(q.expr).metrics));
  t.deepEqual([...waypointMetrics].sort(), ['istio_request_duration_milliseconds_bucket', 'istio_requests_total']);
  // The file is what ships: pretty JSON with a trailing newline, so a diff of a change is readable.
  const text = readFileSync(join(REPO, 'deploy', 'dashboards', 'ambient-mesh.json'), 'utf8');
  t.is(text, `${JSON.stringify(JSON.parse(text), null, 2)}\n`);
});

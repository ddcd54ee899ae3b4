import test from 'ava';
import { Counter, Histogram } from 'prom-client';
import { createMetricsRegistry, exposition, OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE, renderPrometheus } from '../../src/core/metrics.ts';

/** core/metrics.ts exposition(): OpenMetrics when asked for (counters under the base name, # EOF), else classic text. */

function registryWithSamples() {
  const registry = createMetricsRegistry();
  registry.counter({ name: 'istio_tcp_connections_opened_total', help: 'opened', labelNames: ['reporter'] }).inc({ reporter: 'source' });
  // Families made with prom-client directly (the waypoint's), including a histogram.
  new Counter({ name: 'istio_requests_total', help: 'requests', labelNames: ['code'], registers: [registry.prom] }).inc({ code: '200' }, 2);
  new Histogram({ name: 'istio_request_duration_milliseconds', help: 'duration', labelNames: [], buckets: [1, 10], registers: [registry.prom] }).observe(5);
  registry.counter({ name: 'unused_total', help: 'no samples', labelNames: ['reporter'] });
  return registry;
}

test('OpenMetrics when the Accept header asks for it: every counter\'s HELP/TYPE under its base name, samples with _total, # EOF', async (t) => {
  const { contentType, body } = await exposition(registryWithSamples(), 'application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1');
  t.is(contentType, OPENMETRICS_CONTENT_TYPE);
  t.true(body.includes('# HELP istio_tcp_connections_opened opened\n# TYPE istio_tcp_connections_opened counter\nistio_tcp_connections_opened_total{reporter="source"} 1\n'));
  t.true(body.includes('# HELP istio_requests requests\n# TYPE istio_requests counter\nistio_requests_total{code="200"} 2\n'));
  t.true(body.includes('# TYPE istio_request_duration_milliseconds histogram\n'));
  t.false(body.includes('unused'), 'families without samples are left out');
  t.true(body.endsWith('\n# EOF\n'));
  t.is(await renderPrometheus(registryWithSamples()), body.slice(0, -'# EOF\n'.length), 'renderPrometheus is the OpenMetrics body');
});

test('the classic text format otherwise: HELP/TYPE name each family as its samples are named', async (t) => {
  for (const accept of [undefined, 'text/plain;version=0.0.4', '*/*']) {
    const { contentType, body } = await exposition(registryWithSamples(), accept);
    t.is(contentType, PROMETHEUS_CONTENT_TYPE);
    t.true(body.includes('# HELP istio_tcp_connections_opened_total opened\n# TYPE istio_tcp_connections_opened_total counter\n'));
    t.true(body.includes('# TYPE istio_requests_total counter\nistio_requests_total{code="200"} 2\n'));
    t.false(body.includes('# EOF'));
    t.false(body.includes('unused'));
  }
});

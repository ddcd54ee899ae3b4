import test from 'ava';
import { createMetricsRegistry, exposition, renderPrometheus } from '../../src/core/metrics.ts';
import { parsePrometheusText } from '../../src/core/prometheus-text.ts';
import { connectionLabels, createL4Metrics } from '../../src/ztunnel/metrics.ts';
import { testWorkload } from '../helpers/mesh.ts';

test('parsePrometheusText: names, labels with escapes, timestamps, exemplars, special values; comments ignored', (t) => {
  const text = [
    '# HELP a_total A counter.',
    '# TYPE a_total counter',
    'a_total{x="1",y="two words"} 3',
    'a_total{ x = "q\\"uote" , y="back\\\\slash\\nline", } 4 1700000000000',
    'b 2.5e3',
    'c{} +Inf',
    'd -Inf',
    'e NaN',
    'f_total{k="v"} 7 # {trace_id="abc"} 1.0',
    '',
    '# EOF',
  ].join('\n');
  const parsed = parsePrometheusText(text);
  t.deepEqual(parsed.problems, []);
  t.deepEqual(parsed.samples.map((s) => [s.name, s.labels, s.value]), [
    ['a_total', { x: '1', y: 'two words' }, 3],
    ['a_total', { x: 'q"uote', y: 'back\\slash\nline' }, 4],
    ['b', {}, 2500],
    ['c', {}, Infinity],
    ['d', {}, -Infinity],
    ['e', {}, NaN],
    ['f_total', { k: 'v' }, 7],
  ]);
});

const BAD: ReadonlyArray<[string, string]> = [
  ['{x="1"} 1', 'line 1: does not start with a metric name'],
  ['m{x="1" 1', 'line 1: expected , or } after label x'],
  ['m{x=1} 1', 'line 1: expected a quoted value for label x'],
  ['m{x="1} 1', 'line 1: unterminated value of label x'],
  ['m{x="\\t"} 1', 'line 1: bad escape \\t in label x'],
  ['m{x="1",x="2"} 1', 'line 1: label x repeated'],
  ['m{1x="1"} 1', 'line 1: bad label name at column 2'],
  ['m{x} 1', 'line 1: expected = after label x'],
  ['m', 'line 1: bad value "" for m'],
  ['m one', 'line 1: bad value "one" for m'],
  ['m 1 2 3', 'line 1: bad value "1 2 3" for m'],
];

for (const [line, problem] of BAD) {
  test(`parsePrometheusText: ${JSON.stringify(line)} is skipped with a reason, the lines around it are kept`, (t) => {
    const parsed = parsePrometheusText(`${line}\nok_total 1\n`);
    t.deepEqual(parsed.problems, [problem]);
    t.deepEqual(parsed.samples, [{ name: 'ok_total', labels: {}, value: 1 }]);
  });
}

test('parsePrometheusText: line numbers count every line; after 20 problems the rest are counted, not listed', (t) => {
  const parsed = parsePrometheusText(`# c\nok 1\r\n!!\n${'bad\n'.repeat(25)}`);
  t.is(parsed.samples.length, 1);
  t.is(parsed.problems[0], 'line 3: does not start with a metric name');
  t.is(parsed.problems.length, 21);
  t.is(parsed.problems.at(-1), '... and 6 more lines skipped');
  t.deepEqual(parsePrometheusText('\u0000\u00ff\ufffd{{{').samples, []);
});

test('parsePrometheusText reads back what our ztunnel metrics write, in both expositions', async (t) => {
  const registry = createMetricsRegistry();
  const l4 = createL4Metrics(registry);
  const labels = connectionLabels({
    reporter: 'destination',
    source: testWorkload({ name: 'client', namespace: 'shop' }),
    destination: testWorkload({ name: 'db', namespace: 'shop' }),
    securityPolicy: 'mutual_tls',
  });
  l4.connection(labels).close({ sent: 10, received: 20, responseFlags: 'DENY' });
  l4.recordOpen(labels);
  for (const body of [await renderPrometheus(registry), (await exposition(registry, 'application/openmetrics-text')).body, (await exposition(registry, undefined)).body]) {
    const parsed = parsePrometheusText(body);
    t.deepEqual(parsed.problems, []);
    const opened = parsed.samples.find((s) => s.name === 'istio_tcp_connections_opened_total');
    t.is(opened?.value, 2);
    t.deepEqual(opened?.labels, labels);
    const closed = parsed.samples.find((s) => s.name === 'istio_tcp_connections_closed_total');
    t.is(closed?.labels['response_flags'], 'DENY');
    t.is(parsed.samples.find((s) => s.name === 'istio_tcp_received_bytes_total')?.value, 20);
  }
});

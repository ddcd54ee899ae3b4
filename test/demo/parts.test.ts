import test from 'ava';
import { existsSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { parsePrometheusText, sumSamples } from '../../src/core/prometheus-text.ts';
import { startFakeKube } from '../../src/demo/api-server.ts';
import { parseDemoConfig } from '../../src/demo/config.ts';
import { loadExamples, parseExamples, resourceOf } from '../../src/demo/examples.ts';
import { buildReport, connectionRows, metricDelta, splitVerdict, type DemoObservation } from '../../src/demo/report.ts';
import { LOCK_FILE, releaseLock, takeLock } from '../../src/demo/state.ts';
import { tempDir } from '../helpers/tmp.ts';

// The demo's pure parts and its lock; the whole demo runs in demo.test.ts.

const EXAMPLES = join(import.meta.dirname, '..', '..', '..', 'examples');

test('examples/: every object is a kind the API server serves, with the nodes, DENY policy, waypoint and 90/10 route the demo reports on', async (t) => {
  const loaded = await loadExamples(EXAMPLES);
  if (!loaded.ok) return t.fail(loaded.problems.join('\n'));
  const kinds = loaded.objects.map((o) => `${o.resource}/${o.object.metadata?.namespace ?? ''}/${o.object.metadata?.name}`);
  t.true(kinds.includes('gateways/shop/waypoint'));
  t.true(kinds.includes('httproutes/shop/reviews-canary'));
  t.true(kinds.includes('authorizationpolicies/shop/deny-tester'));
  const pods = loaded.objects.filter((o) => o.resource === 'pods');
  t.is(pods.length, 5);
  t.deepEqual([...new Set(pods.map((p) => (p.object['spec'] as { nodeName: string }).nodeName))].sort(), ['node-a', 'node-b']);
  const namespaces = loaded.objects.filter((o) => o.resource === 'namespaces' && o.object.metadata?.labels?.['istio.io/dataplane-mode'] === 'ambient');
  t.is(namespaces.length, 2);
});

test('examples: a bad document is reported with its file and index, and nothing is returned to apply', (t) => {
  const result = parseExamples([
    { name: 'a.yaml', text: 'apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n---\napiVersion: v1\nkind: Frobnicator\nmetadata: {name: y}\n' },
    { name: 'b.yaml', text: 'kind: Pod\nmetadata: {}\n---\n- a list\n---\nkey: [unclosed\n' },
  ]);
  if (result.ok) return t.fail('accepted');
  t.deepEqual(result.problems.slice(0, 3), [
    'a.yaml#2: v1 Frobnicator is not a kind the demo\'s API server serves',
    'b.yaml#1: metadata.name is required',
    'b.yaml#2: not a Kubernetes object',
  ]);
  t.is(result.problems.length, 4);
  t.regex(result.problems[3] ?? '', /^b\.yaml#3: /);
});

test('examples: kinds map to resources by group and kind; beta versions of CRD groups are the same objects', (t) => {
  t.is(resourceOf({ apiVersion: 'v1', kind: 'Service' }), 'services');
  t.is(resourceOf({ apiVersion: 'gateway.networking.k8s.io/v1beta1', kind: 'HTTPRoute' }), 'httproutes');
  t.is(resourceOf({ apiVersion: 'security.istio.io/v1beta1', kind: 'AuthorizationPolicy' }), 'authorizationpolicies');
  t.is(resourceOf({ apiVersion: 'v2', kind: 'Service' }), undefined);
  t.is(resourceOf({ apiVersion: 'apps/v1', kind: 'Service' }), undefined);
});

test('config: defaults, and every bad value named', (t) => {
  const defaults = parseDemoConfig({});
  t.deepEqual(defaults, { ok: true, value: { examplesDir: 'examples', stateDir: '/run/ambient-demo', prefix: 'ambient-demo', once: false, requests: 200, controlPlaneMonitoringPort: 15014 } });
  t.true((parseDemoConfig({ DEMO_ONCE: '1' }) as { value: { once: boolean } }).value.once);
  const bad = parseDemoConfig({ DEMO_ONCE: 'yes', DEMO_REQUESTS: '5', DEMO_PORT: 'x', DEMO_PREFIX: 'Bad Prefix' });
  t.false(bad.ok);
  t.deepEqual(bad.ok ? [] : bad.errors.map((e) => e.split(':')[0]), ['DEMO_PREFIX', 'DEMO_ONCE', 'DEMO_REQUESTS', 'DEMO_PORT']);
});

test('lock: a live holder refuses a second demo; a dead holder\'s lock is taken over and reported stale', async (t) => {
  const dir = await tempDir(t, 'an-demo-lock-');
  t.deepEqual(await takeLock(dir), { kind: 'taken' });
  t.is((await readFile(join(dir, LOCK_FILE), 'utf8')).trim(), String(process.pid));
  // Another live process holds it: pid 1 is always alive.
  await writeFile(join(dir, LOCK_FILE), '1\n');
  t.deepEqual(await takeLock(dir), { kind: 'held', pid: 1 });
  // A holder that is gone (pids are below 2^22 on Linux).
  await writeFile(join(dir, LOCK_FILE), '4194303\n');
  t.deepEqual(await takeLock(dir), { kind: 'taken', stale: 4194303 });
  await releaseLock(dir);
  t.false(existsSync(join(dir, LOCK_FILE)));
  // Releasing a lock this process does not hold leaves it.
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, LOCK_FILE), '1\n');
  await releaseLock(dir);
  t.true(existsSync(join(dir, LOCK_FILE)));
});

test('API server: Services created without a ClusterIP get one from the range, in order; headless and ExternalName none', async (t) => {
  const api = await startFakeKube({ serviceClusterIpRange: '10.96.0.0/16' });
  t.teardown(() => api.close());
  const ip = (name: string) => (api.get('services', 'default', name)?.['spec'] as { clusterIP?: string; clusterIPs?: string[] }) ?? {};
  api.create('services', { metadata: { name: 'a', namespace: 'default' }, spec: { ports: [{ port: 80 }] } } as never);
  api.create('services', { metadata: { name: 'b', namespace: 'default' }, spec: { clusterIP: '10.96.9.9' } } as never);
  api.create('services', { metadata: { name: 'c', namespace: 'default' }, spec: { clusterIP: 'None' } } as never);
  api.create('services', { metadata: { name: 'd', namespace: 'default' }, spec: { type: 'ExternalName', externalName: 'x.example' } } as never);
  api.create('services', { metadata: { name: 'e', namespace: 'default' }, spec: {} } as never);
  t.deepEqual(ip('a'), { ports: [{ port: 80 }], clusterIP: '10.96.0.2', clusterIPs: ['10.96.0.2'] });
  t.is(ip('b').clusterIP, '10.96.9.9');
  t.is(ip('c').clusterIP, 'None');
  t.is(ip('d').clusterIP, undefined);
  t.is(ip('e').clusterIP, '10.96.0.3');
  await t.throwsAsync(async () => startFakeKube({ serviceClusterIpRange: '10.96.0.0' }), { message: /not an IPv4 CIDR/ });
});

test('sumSamples: adds the samples of a name whose labels match every given pair', (t) => {
  const { samples } = parsePrometheusText('x_total{a="1",b="2"} 3\nx_total{a="2"} 4.5\ny{a="2"} 7\n');
  t.is(sumSamples(samples, 'x_total'), 7.5);
  t.is(sumSamples(samples, 'x_total', { a: '2' }), 4.5);
  t.is(sumSamples(samples, 'x_total', { a: '1', b: '2' }), 3);
  t.is(sumSamples(samples, 'x_total', { a: '3' }), 0);
});

test('split verdict: 4 standard deviations around each weight; a 50/50 split over 200 fails, traffic elsewhere fails', (t) => {
  const split = { route: 'shop/r', service: 's', weights: { 'reviews-v1': 90, 'reviews-v2': 10 } };
  t.true(splitVerdict(split, { 'reviews-v1': 180, 'reviews-v2': 20 }).ok);
  t.true(splitVerdict(split, { 'reviews-v1': 172, 'reviews-v2': 28 }).ok);
  t.false(splitVerdict(split, { 'reviews-v1': 160, 'reviews-v2': 40 }).ok);
  t.false(splitVerdict(split, { 'reviews-v1': 100, 'reviews-v2': 100 }).ok);
  t.false(splitVerdict(split, { 'reviews-v1': 180, 'reviews-v2': 19, ratings: 1 }).ok);
  t.false(splitVerdict(split, {}).ok);
  t.deepEqual(splitVerdict(split, { 'reviews-v1-abc12': 9, 'reviews-v2': 1 }).counts, { 'reviews-v1': 9, 'reviews-v2': 1 });
});

const conn = (reporter: string, src: string, dst: string, value: number, extra: Record<string, string> = {}, name = 'istio_tcp_connections_opened_total') => ({
  name,
  labels: {
    reporter, source_workload_namespace: 'web', source_workload: src, destination_workload_namespace: 'shop', destination_workload: dst,
    source_principal: `spiffe://cluster.local/ns/web/sa/${src}`, destination_principal: `spiffe://cluster.local/ns/shop/sa/${dst}`, connection_security_policy: 'mutual_tls', ...extra,
  },
  value,
});

test('connections: the destination side counts; a pair only a source saw (to the waypoint) comes from the source; DENY closes add up', (t) => {
  const rows = connectionRows({
    a: [conn('source', 'frontend', 'ratings', 3), conn('source', 'frontend', 'waypoint', 2)],
    b: [conn('destination', 'frontend', 'ratings', 3), conn('destination', 'tester', 'ratings', 2), conn('destination', 'tester', 'ratings', 2, { response_flags: 'DENY' }, 'istio_tcp_connections_closed_total')],
  });
  t.deepEqual(rows.map((r) => [r.source, r.destination, r.reporter, r.opened, r.denied]), [
    ['web/frontend', 'shop/ratings', 'destination', 3, 0],
    ['web/frontend', 'shop/waypoint', 'source', 2, 0],
    ['web/tester', 'shop/ratings', 'destination', 2, 2],
  ]);
});

test('metric delta: per label set, new series count from zero, unchanged ones drop out', (t) => {
  const before = [{ name: 'a', labels: { x: '1' }, value: 5 }, { name: 'a', labels: { x: '2' }, value: 1 }];
  const after = [{ name: 'a', labels: { x: '1' }, value: 8 }, { name: 'a', labels: { x: '2' }, value: 1 }, { name: 'a', labels: { x: '3' }, value: 2 }];
  t.deepEqual(metricDelta(before, after), [{ name: 'a', labels: { x: '1' }, value: 3 }, { name: 'a', labels: { x: '3' }, value: 2 }]);
});

const observation = (overrides: Partial<DemoObservation> = {}): DemoObservation => ({
  workloads: [{ namespace: 'web', name: 'frontend', node: 'node-a', ip: '10.244.1.2', identity: 'spiffe://cluster.local/ns/web/sa/frontend', captured: true, role: '' }],
  calls: [
    { from: 'web/frontend', service: 'reviews.shop.svc.cluster.local', port: 9080, requests: 200, result: { byPod: { 'reviews-v1': 181, 'reviews-v2': 19 }, statuses: { 200: 200 }, failures: {} }, waypoint: 'shop/waypoint' },
    { from: 'web/tester', service: 'ratings.shop.svc.cluster.local', port: 9080, requests: 5, result: { byPod: {}, statuses: {}, failures: { ECONNRESET: 5 } } },
  ],
  split: { route: 'shop/reviews-canary', service: 'reviews.shop.svc.cluster.local', weights: { 'reviews-v1': 90, 'reviews-v2': 10 } },
  denial: { policy: 'shop/deny-tester', from: 'web/tester', service: 'ratings.shop.svc.cluster.local' },
  ztunnelMetrics: { 'ztunnel node-b': [conn('destination', 'tester', 'ratings', 5), conn('destination', 'tester', 'ratings', 5, { response_flags: 'DENY' }, 'istio_tcp_connections_closed_total')] },
  waypointMetrics: [],
  ...overrides,
});

test('report: the verdicts follow the facts — all ok, then a plaintext connection, an allowed tester and a skewed split each fail theirs', (t) => {
  const good = buildReport(observation());
  t.deepEqual(Object.values(good.verdicts).map((v) => v.ok), [true, true, true]);
  t.regex(good.text, /shop\/deny-tester refused web\/tester → ratings\.shop\.svc\.cluster\.local: 5 of 5 requests failed, 5 connections counted DENY/);
  t.regex(good.text, /reviews-v1 181 \(90\.5%/);

  const plaintext = buildReport(observation({ ztunnelMetrics: { b: [conn('destination', 'tester', 'ratings', 5, { connection_security_policy: 'none' })] } }));
  t.false(plaintext.verdicts.mtls.ok);
  const allowed = buildReport(observation({ calls: [{ from: 'web/tester', service: 'ratings.shop.svc.cluster.local', port: 9080, requests: 5, result: { byPod: { ratings: 5 }, statuses: { 200: 5 }, failures: {} } }] }));
  t.false(allowed.verdicts.denial.ok);
  const skewed = buildReport(observation({ calls: [{ from: 'web/frontend', service: 'reviews.shop.svc.cluster.local', port: 9080, requests: 200, result: { byPod: { 'reviews-v1': 100, 'reviews-v2': 100 }, statuses: { 200: 200 }, failures: {} } }] }));
  t.false(skewed.verdicts.split.ok);
  t.regex(skewed.text, /OUT OF TOLERANCE/);
});

import test from 'ava';
import { parse } from '../../src/waypoint/config.ts';
import { HEALTHY, isEjected, recordResult, usable, type EndpointHealth } from '../../src/waypoint/outlier.ts';
import { OUTLIER_DEFAULTS } from '../../src/workload-api/l7-types.ts';

const base = { POD_NAMESPACE: 'prod', SERVICE_ACCOUNT: 'waypoint', XDS_ADDRESS: '' };

test('config: defaults, flags and Istio\'s variable names', (t) => {
  const c = parse({ 'hbone-port': '0', 'bind-address': '127.0.0.1' }, { ...base, PATH_NORMALIZATION: 'DEFAULT', L7_CONFIG_PATH: '/etc/l7.yaml', ISTIO_META_CLUSTER_ID: 'c1' });
  if (!c.ok) return t.fail(c.errors.join());
  t.like(c.value, { hbonePort: 0, statsPort: 15020, readinessPort: 15021, upstreamHbonePort: 15008, pathNormalization: 'BASE', maxHeaderBytes: 60 * 1024, bindAddress: '127.0.0.1', l7ConfigPath: '/etc/l7.yaml', trustDomain: 'cluster.local', namespace: 'prod', serviceAccount: 'waypoint', logLevel: 'info', accessLogFlushMs: 1000 });
  t.is(c.value.workloadApi.clusterId, 'c1');
  t.is(c.value.workloadApi.xdsAddress, undefined);
  t.true(Object.isFrozen(c.value));
  const unbuffered = parse({}, { ...base, ACCESS_LOG_FLUSH_INTERVAL: '0s' });
  t.is(unbuffered.ok && unbuffered.value.accessLogFlushMs, 0);
});

test('config: every problem at once, each naming its variable or flag', (t) => {
  const c = parse({ 'stats-port': 'x', bogus: '1' }, { PATH_NORMALIZATION: 'SOMETIMES', MAX_REQUEST_HEADERS_KB: '0', LOG_LEVEL: 'loud', FAKE_CA: 'yes', CONNECTION_TERMINATION_DEADLINE: 'soon', ACCESS_LOG_FLUSH_INTERVAL: 'often' });
  t.false(c.ok);
  if (c.ok) return;
  const text = c.errors.join('\n');
  for (const want of ['--bogus: unknown flag', 'POD_NAMESPACE: required', 'SERVICE_ACCOUNT: required', '--stats-port: "x"', 'PATH_NORMALIZATION: "SOMETIMES"', 'MAX_REQUEST_HEADERS_KB: "0"', 'LOG_LEVEL: "loud"', 'FAKE_CA: "yes"', 'CONNECTION_TERMINATION_DEADLINE: "soon"', 'ACCESS_LOG_FLUSH_INTERVAL: "often"']) t.true(text.includes(want), want);
});

const policy = { ...OUTLIER_DEFAULTS, consecutive5xxErrors: 3, consecutiveGatewayErrors: 2, baseEjectionTimeMs: 1000, maxEjectionPercent: 50 };
const run = (results: Array<{ kind: 'response'; status: number } | { kind: 'local-failure' }>, now = 0, ejectedNow = 0, total = 4) => {
  let h: EndpointHealth = HEALTHY;
  let ejected = false;
  for (const r of results) ({ health: h, ejected } = recordResult(h, r, policy, now, ejectedNow, total));
  return { h, ejected };
};
const s = (status: number) => ({ kind: 'response' as const, status });

test('outlier: consecutive 5xx eject; a success in between resets', (t) => {
  t.true(run([s(500), s(500), s(500)]).ejected);
  t.false(run([s(500), s(500), s(200), s(500)]).ejected);
  t.false(run([s(500), s(404), s(500)]).ejected, '4xx is not an error but resets the run');
});

test('outlier: consecutive gateway errors and local failures eject sooner', (t) => {
  t.true(run([s(503), { kind: 'local-failure' }]).ejected);
  t.false(run([s(500), s(503)]).ejected);
});

test('outlier: ejection time grows with each ejection; the cap holds but one may always go', (t) => {
  const first = run([s(502), s(502)], 100);
  t.is(first.h.ejectedUntil, 1100);
  t.true(isEjected(first.h, 1099));
  t.false(isEjected(first.h, 1100));
  const second = recordResult(recordResult({ ...first.h, ejectedUntil: 0 }, s(502), policy, 5000, 0, 4).health, s(502), policy, 5000, 0, 4);
  t.is(second.health.ejectedUntil, 7000, 'twice the base the second time');
  t.false(run([s(502), s(502)], 0, 2, 4).ejected, '50% of 4 already out');
  t.true(run([s(502), s(502)], 0, 0, 1).ejected, 'a single endpoint may be ejected');
});

test('outlier: below minHealthPercent ejections are ignored', (t) => {
  const all = ['a', 'b', 'c', 'd'];
  const out = new Set(['a', 'b', 'c']);
  t.deepEqual(usable(all, (e) => out.has(e), 0), ['d']);
  t.deepEqual(usable(all, (e) => out.has(e), 50), all);
});

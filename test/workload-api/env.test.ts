import test from 'ava';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseDurationSeconds, parseWorkloadApiEnv } from '../../src/workload-api/env.ts';
import { withScheme } from '../../src/workload-api/grpc-auth.ts';

test('defaults follow ztunnel: local istiod outside Kubernetes, in-cluster istiod inside', (t) => {
  const outside = parseWorkloadApiEnv({});
  if (!outside.ok) return t.fail();
  t.like(outside.value, { xdsAddress: 'https://localhost:15012', caAddress: 'https://localhost:15012', clusterId: 'Kubernetes', secretTtlSeconds: 86_400, onDemand: false });
  const inside = parseWorkloadApiEnv({ KUBERNETES_SERVICE_HOST: '10.96.0.1' });
  t.true(inside.ok && inside.value.xdsAddress === 'https://istiod.istio-system.svc:15012');
});

test('XDS_ADDRESS="" disables xDS; a missing scheme gets https; CA_ADDRESS does not follow XDS_ADDRESS', (t) => {
  const parsed = parseWorkloadApiEnv({ XDS_ADDRESS: '', CA_ADDRESS: 'ca.example:15012' });
  t.true(parsed.ok && parsed.value.xdsAddress === undefined && parsed.value.caAddress === 'https://ca.example:15012');
  const other = parseWorkloadApiEnv({ XDS_ADDRESS: 'istiod.custom:15012' });
  t.true(other.ok && other.value.caAddress === 'https://localhost:15012');
  t.is(withScheme('http://x:1'), 'http://x:1');
});

test('cluster id, headers, token and root CA sources', async (t) => {
  const dir = await mkdtemp(join(tmpdir(), 'ambient-env-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const rootPath = join(dir, 'root.pem');
  const tokenPath = join(dir, 'token');
  await writeFile(rootPath, '-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n');
  await writeFile(tokenPath, 'jwt');
  const parsed = parseWorkloadApiEnv({
    ISTIO_META_CLUSTER_ID: 'meta',
    CLUSTER_ID: 'plain',
    XDS_HEADER_X_Tenant: 'a',
    CA_HEADER_X_Extra: 'b',
    AUTH_TOKEN: tokenPath,
    XDS_ROOT_CA: rootPath,
    CA_ROOT_CA: 'SYSTEM',
  });
  if (!parsed.ok) return t.fail(parsed.errors.join());
  t.is(parsed.value.clusterId, 'meta');
  t.deepEqual(parsed.value.xdsHeaders, { x_tenant: 'a' });
  t.deepEqual(parsed.value.caHeaders, { x_extra: 'b' });
  t.deepEqual(parsed.value.token, { kind: 'file', path: tokenPath });
  t.like(parsed.value.xdsRootCa, { kind: 'pem', path: rootPath });
  t.deepEqual(parsed.value.caRootCa, { kind: 'system' });
  const literal = parseWorkloadApiEnv({ AUTH_TOKEN: 'not-a-file-token', XDS_ROOT_CA: join(dir, 'absent.pem') });
  t.true(literal.ok && literal.value.token.kind === 'literal' && literal.value.xdsRootCa.kind === 'missing');
});

test('bad values are refused with the variable name', (t) => {
  const parsed = parseWorkloadApiEnv({ SECRET_TTL: 'a day', XDS_ON_DEMAND: 'yes', LOCAL_XDS_PATH: '/x', LOCAL_XDS: 'workloads: []' });
  t.false(parsed.ok);
  if (!parsed.ok) t.deepEqual(parsed.errors, ['SECRET_TTL: "a day" is not a positive duration (e.g. 24h)', 'XDS_ON_DEMAND: "yes" must be true or false', 'LOCAL_XDS_PATH and LOCAL_XDS are mutually exclusive']);
});

test('durations', (t) => {
  t.is(parseDurationSeconds('24h'), 86_400);
  t.is(parseDurationSeconds('1h30m'), 5400);
  t.is(parseDurationSeconds('90s'), 90);
  t.is(parseDurationSeconds('1500ms'), 2);
  t.is(parseDurationSeconds('h'), undefined);
  t.is(parseDurationSeconds('10x'), undefined);
});

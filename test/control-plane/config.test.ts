import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { parseControlPlaneConfig } from '../../src/control-plane/config.ts';
import { until } from '../helpers/prometheus.ts';
import { tempDir } from '../helpers/tmp.ts';

const run = promisify(execFile);
const AMBIENTD = join(import.meta.dirname, '..', '..', 'src', 'cli', 'ambientd.js');

test('config: defaults are Istio\'s', (t) => {
  const parsed = parseControlPlaneConfig({}, {});
  t.true(parsed.ok);
  if (!parsed.ok) return;
  t.like(parsed.value, {
    mode: 'kubernetes',
    clusterId: 'Kubernetes',
    trustDomain: 'cluster.local',
    systemNamespace: 'istio-system',
    rootNamespace: 'istio-system',
    grpcPort: 15012,
    monitoringPort: 15014,
    readinessPort: 15021,
    enableDryRun: false,
    trustedNodeAccounts: [{ namespace: 'istio-system', serviceAccount: 'ztunnel' }],
  });
  t.deepEqual(parsed.value.servingDnsNames, ['istiod.istio-system.svc', 'istiod.istio-system.svc.cluster.local', 'localhost']);
});

test('config: flags win over variables; --config-dir is local mode; every problem named', (t) => {
  const local = parseControlPlaneConfig({ 'config-dir': '/x', 'grpc-port': '0' }, { GRPC_PORT: '1', CA_TRUSTED_NODE_ACCOUNTS: 'kube-system/agent', POD_NAMESPACE: 'mesh' });
  t.like(local, { ok: true, value: { mode: 'local', configDir: '/x', grpcPort: 0, systemNamespace: 'mesh', trustedNodeAccounts: [{ namespace: 'kube-system', serviceAccount: 'agent' }] } });
  const bad = parseControlPlaneConfig({ bogus: '1', 'grpc-port': '99999', 'static-tokens': '/t' }, { TRUST_DOMAIN: 'Bad_Domain', CA_TRUSTED_NODE_ACCOUNTS: 'nope', LOG_LEVEL: 'loud', AMBIENT_ENABLE_DRY_RUN_AUTHORIZATION_POLICY: 'maybe', CLUSTER_ID: 'a/b' });
  t.false(bad.ok);
  t.deepEqual(bad.ok ? [] : bad.errors, [
    '--bogus: unknown flag',
    'CLUSTER_ID: "a/b" must not contain "/"',
    'TRUST_DOMAIN: "Bad_Domain" is not a valid name',
    'CA_TRUSTED_NODE_ACCOUNTS: "nope" must be <namespace>/<serviceAccount>',
    '--static-tokens: only used with --config-dir (a cluster checks tokens with TokenReview)',
    'LOG_LEVEL: "loud" must be one of fatal, error, warn, info, debug, trace, silent',
    'AMBIENT_ENABLE_DRY_RUN_AUTHORIZATION_POLICY: "maybe" must be true or false',
    '--grpc-port: "99999" must be a port 0-65535',
  ]);
});

test('ambientd control-plane: a bad configuration exits 2 and names every problem', async (t) => {
  const failure = await run(process.execPath, [AMBIENTD, 'control-plane', '--grpc-port', 'x'], { env: { PATH: process.env['PATH'] ?? '' } }).then(
    () => undefined,
    (err: { code?: number; stderr?: string }) => err,
  );
  t.is(failure?.code, 2);
  t.regex(failure?.stderr ?? '', /--grpc-port: "x" must be a port/);
  t.regex(failure?.stderr ?? '', /usage: ambientd control-plane/);
});

test('ambientd control-plane --config-dir: becomes ready, writes its root, exits 0 on SIGTERM', async (t) => {
  const dir = await tempDir(t);
  const mesh = join(dir, 'mesh');
  await mkdir(mesh);
  await writeFile(join(mesh, 'pod.yaml'), 'apiVersion: v1\nkind: Pod\nmetadata: {name: web, namespace: shop}\nspec: {nodeName: n1}\nstatus: {podIP: 10.0.0.1}\n');
  const root = join(dir, 'root.pem');
  // Free ports: bind 0 and read them from the log line.
  const child = spawn(
    process.execPath,
    [AMBIENTD, 'control-plane', '--config-dir', mesh, '--listen-address', '127.0.0.1', '--grpc-port', '0', '--monitoring-port', '0', '--readiness-port', '0', '--root-cert-out', root],
    { env: { PATH: process.env['PATH'] ?? '' }, stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  child.stdout.on('data', (d: Buffer) => (out += d.toString()));
  child.stderr.on('data', (d: Buffer) => (out += d.toString()));
  t.teardown(() => child.kill('SIGKILL'));
  await until(() => out.includes('serving delta ADS and the CA'), 'the control plane to serve', 15_000);
  t.regex(await readFile(root, 'utf8'), /-----BEGIN CERTIFICATE-----/);
  const lines = out.split('\n').filter(Boolean).map((l) => JSON.parse(l) as { msg: string; workloads?: number; port?: number });
  t.is(lines.find((l) => l.msg === 'sources synced')?.workloads, 1);
  t.true((lines.find((l) => l.msg === 'serving delta ADS and the CA')?.port ?? 0) > 0);
  child.kill('SIGTERM');
  const [code] = (await once(child, 'exit')) as [number];
  t.is(code, 0);
});

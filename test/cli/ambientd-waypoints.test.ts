import test from 'ava';
import { execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { startFakeKube, type FakeKube, type KubeObjectJson } from '../../src/demo/api-server.ts';
import { until } from '../helpers/prometheus.ts';
import { tempDir } from '../helpers/tmp.ts';

/**
 * The two binaries together: `ambientd control-plane` (Kubernetes mode, against the fake API server)
 * runs the waypoint controller, and `ambientctl waypoint apply --wait` returns once that controller
 * has programmed the Gateway. The fake has no ClusterIP allocator: the test gives the Service its IP.
 */

const execFileP = promisify(execFile);
const AMBIENTD = join(import.meta.dirname, '..', '..', 'src', 'cli', 'ambientd.js');
const AMBIENTCTL = join(import.meta.dirname, '..', '..', 'src', 'cli', 'ambientctl.js');

async function allocateWhenCreated(fake: FakeKube, namespace: string, name: string, ip: string): Promise<void> {
  await until(() => fake.get('services', namespace, name) !== undefined, `the Service ${namespace}/${name} exists`, 30_000);
  const svc = fake.get('services', namespace, name)!;
  fake.update('services', { ...svc, spec: { ...(svc['spec'] as object), clusterIP: ip, clusterIPs: [ip] } } as KubeObjectJson);
}

test('ambientd control-plane runs the waypoint controller: ambientctl waypoint apply --wait returns once the Gateway is programmed, with the Deployment of WAYPOINT_IMAGE', async (t) => {
  const fake = await startFakeKube();
  t.teardown(() => fake.close());
  const home = await tempDir(t);
  const env = { PATH: process.env['PATH'] ?? '', HOME: home, KUBECONFIG: fake.kubeconfigPath };
  const cp = spawn(process.execPath, [AMBIENTD, 'control-plane', '--grpc-port', '0', '--monitoring-port', '0', '--readiness-port', '0', '--listen-address', '127.0.0.1'], {
    env: { ...env, WAYPOINT_IMAGE: 'example.com/ambient-node:test' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    if (cp.exitCode === null) cp.kill('SIGKILL');
  });
  let out = '';
  cp.stdout.on('data', (c: Buffer) => (out += c.toString('utf8')));
  cp.stderr.on('data', (c: Buffer) => (out += c.toString('utf8')));
  await until(() => out.includes('serving delta ADS and the CA'), 'the control plane serves', 30_000).catch((err: Error) => {
    throw new Error(`${err.message}\n${out}`);
  });

  fake.create('namespaces', { metadata: { name: 'prod', labels: { 'istio.io/dataplane-mode': 'ambient' } } });
  const [applied] = await Promise.all([
    execFileP(process.execPath, [AMBIENTCTL, 'waypoint', 'apply', '-n', 'prod', '--enroll-namespace', '--wait'], { env }),
    allocateWhenCreated(fake, 'prod', 'waypoint', '10.96.0.50'),
  ]);
  t.is(applied.stdout, '✅ waypoint prod/waypoint applied\n✅ waypoint prod/waypoint is ready!\n✅ namespace prod labeled with "istio.io/use-waypoint: waypoint"\n');
  const dep = fake.get('deployments', 'prod', 'waypoint');
  const container = (dep?.['spec'] as { template: { spec: { containers: Array<{ image: string; command: string[]; args: string[]; env: Array<{ name: string; value?: string }> }> } } }).template.spec.containers[0];
  t.like(container, { image: 'example.com/ambient-node:test', command: ['ambientd'], args: ['waypoint'] });
  t.is(container?.env.find((e) => e.name === 'XDS_ADDRESS')?.value, 'istiod.istio-system.svc:15012');
  const gc = fake.get('gatewayclasses', undefined, 'istio-waypoint');
  t.is((gc?.['spec'] as { controllerName: string }).controllerName, 'istio.io/mesh-controller');

  const listed = await execFileP(process.execPath, [AMBIENTCTL, 'waypoint', 'list', '-n', 'prod'], { env });
  t.is(listed.stdout, 'NAME         REVISION     TRAFFIC TYPE     PROGRAMMED\nwaypoint     default      none             True\n');

  const exited = once(cp, 'exit');
  cp.kill('SIGTERM');
  const [code] = (await exited) as [number | null];
  t.is(code, 0, out);
  t.false(/"level":"(error|fatal)"/.test(out), out);
});

import test from 'ava';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { KubeConfig } from '@kubernetes/client-node';
import { generateYaml, gatewayFromFlags, statusCondition, waypointListText, waypointStatusText } from '../../src/cli/waypoint-command.ts';
import { startWaypointController, type WaypointControllerHandle } from '../../src/control-plane/waypoint-controller.ts';
import { waypointGateway, type Gateway } from '../../src/control-plane/waypoint-objects.ts';
import { startFakeKube, type FakeKube, type KubeObjectJson } from '../../src/demo/api-server.ts';
import { captureLog } from '../helpers/log.ts';
import { until } from '../helpers/prometheus.ts';
import { tempDir } from '../helpers/tmp.ts';

/**
 * The real `ambientctl waypoint` (a child process, KUBECONFIG pointing at the fake API server) with
 * the real waypoint controller running against the same API, so `apply --wait` sees the status the
 * controller writes. The fake has no ClusterIP allocator: the test gives the waypoint Service its
 * address, as the API server would.
 */

const execFileP = promisify(execFile);
const AMBIENTCTL = join(import.meta.dirname, '..', '..', 'src', 'cli', 'ambientctl.js');

interface Cluster {
  readonly fake: FakeKube;
  readonly controller: WaypointControllerHandle | undefined;
  ctl(...args: string[]): Promise<{ stdout: string; stderr: string; code: number }>;
}

/** The fake API server, and the waypoint controller against it unless `controller` is false. */
async function cluster(t: { teardown(fn: () => Promise<void>): void }, options: { readonly controller?: boolean; readonly omitGroups?: readonly string[] } = {}): Promise<Cluster> {
  const fake = await startFakeKube(options.omitGroups ? { omitGroups: options.omitGroups } : {});
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(fake.kubeconfigPath);
  const controller =
    options.controller === false
      ? undefined
      : startWaypointController({
          render: { clusterDomain: 'cluster.local', trustDomain: 'cluster.local', clusterId: 'Kubernetes', xdsAddress: 'istiod.istio-system.svc:15012', caAddress: 'istiod.istio-system.svc:15012', image: 'ambient-node:test' },
          logger: captureLog().logger,
          mode: { kind: 'cluster', kubeConfig, resyncMs: 0 },
        });
  t.teardown(async () => {
    await controller?.close();
    await fake.close();
  });
  await controller?.synced;
  const home = await tempDir(t);
  return {
    fake,
    controller,
    async ctl(...args) {
      try {
        const { stdout, stderr } = await execFileP(process.execPath, [AMBIENTCTL, 'waypoint', ...args], { env: { PATH: process.env['PATH'] ?? '', HOME: home, KUBECONFIG: fake.kubeconfigPath } });
        return { stdout, stderr, code: 0 };
      } catch (err) {
        const e = err as { stdout?: string; stderr?: string; code?: number };
        return { stdout: e.stdout ?? '', stderr: e.stderr ?? '', code: e.code ?? -1 };
      }
    },
  };
}

/** What the ClusterIP allocator of a real API server does, as soon as the waypoint Service exists. */
async function allocateWhenCreated(fake: FakeKube, namespace: string, name: string, ip: string): Promise<void> {
  await until(() => fake.get('services', namespace, name) !== undefined, `the Service ${namespace}/${name} exists`, 20_000);
  const svc = fake.get('services', namespace, name)!;
  fake.update('services', { ...svc, spec: { ...(svc['spec'] as object), clusterIP: ip, clusterIPs: [ip] } } as KubeObjectJson);
}

const labelsOf = (fake: FakeKube, ns: string): Record<string, string> => fake.get('namespaces', undefined, ns)?.metadata?.labels ?? {};

test('gatewayFromFlags and generateYaml: istioctl\'s checks and its YAML (sorted keys, no namespace unless asked)', (t) => {
  t.is(gatewayFromFlags({ name: 'none' }, 'x'), "invalid name provided for waypoint, 'none' is a reserved value");
  t.is(gatewayFromFlags({ for: 'pods' }, 'x'), 'invalid traffic type: pods. Valid options are: [all none service workload]');
  const gw = gatewayFromFlags({ name: '', for: 'workload', revision: 'canary' }, '');
  if (typeof gw === 'string') return t.fail(gw);
  t.is(
    generateYaml(gw),
    [
      'apiVersion: gateway.networking.k8s.io/v1',
      'kind: Gateway',
      'metadata:',
      '  labels:',
      '    istio.io/rev: canary',
      '    istio.io/waypoint-for: workload',
      '  name: waypoint',
      'spec:',
      '  gatewayClassName: istio-waypoint',
      '  listeners:',
      '  - name: mesh',
      '    port: 15008',
      '    protocol: HBONE',
      '',
    ].join('\n'),
  );
});

test('waypointListText and waypointStatusText: istioctl\'s columns, placeholders and padding', (t) => {
  const programmed = (gw: Gateway, status: 'True' | 'False'): Gateway => ({
    ...gw,
    status: { conditions: [{ type: 'Accepted', status: 'True', reason: 'Accepted', message: 'ok', lastTransitionTime: 'x' }, { type: 'Programmed', status, reason: status === 'True' ? 'Programmed' : 'AddressNotUsable', message: status === 'True' ? 'Resource programmed' : 'pending', lastTransitionTime: 'x' }] },
  });
  const a = programmed(waypointGateway({ name: 'waypoint', namespace: 'b' }), 'True');
  const b = waypointGateway({ name: 'svc-wp', namespace: 'a', for: 'service', revision: 'canary' });
  const ingress: Gateway = { ...waypointGateway({ name: 'ingress', namespace: 'a' }), spec: { gatewayClassName: 'istio', listeners: [] } };
  t.is(waypointListText([a, b, ingress], false), 'NAME         REVISION     TRAFFIC TYPE     PROGRAMMED\nsvc-wp       canary       service          False\nwaypoint     default      none             True\n');
  t.is(waypointListText([a], true), 'NAMESPACE     NAME         REVISION     TRAFFIC TYPE     PROGRAMMED\nb             waypoint     default      none             True\n');
  t.is(waypointListText([], false), 'No waypoints found.\n');
  t.is(waypointListText([ingress], false), 'NAME     REVISION     TRAFFIC TYPE     PROGRAMMED\n', 'istioctl checks for none before it filters the class');
  const pending = programmed(waypointGateway({ name: 'wp', namespace: 'a' }), 'False');
  t.like(statusCondition(pending), { type: 'Programmed', status: 'False' });
  t.is(waypointStatusText([a, pending], false), 'NAME         STATUS     TYPE           REASON               MESSAGE\nwaypoint     True       Programmed     Programmed           Resource programmed\nwp           False      Programmed     AddressNotUsable     pending\n');
});

test('apply --wait --enroll-namespace: server-side applied as istioctl, ready once the controller programs it, then the namespace is labeled', async (t) => {
  const c = await cluster(t);
  c.fake.create('namespaces', { metadata: { name: 'bookinfo', labels: { 'istio.io/dataplane-mode': 'ambient' } } });
  const [out] = await Promise.all([c.ctl('apply', '-n', 'bookinfo', '--enroll-namespace', '--wait'), allocateWhenCreated(c.fake, 'bookinfo', 'waypoint', '10.96.0.20')]);
  t.is(out.code, 0, out.stderr);
  t.is(out.stdout, '✅ waypoint bookinfo/waypoint applied\n✅ waypoint bookinfo/waypoint is ready!\n✅ namespace bookinfo labeled with "istio.io/use-waypoint: waypoint"\n');
  const gw = c.fake.get('gateways', 'bookinfo', 'waypoint')!;
  t.deepEqual(gw['spec'], waypointGateway({ name: 'waypoint', namespace: 'bookinfo' }).spec);
  t.is(gw.metadata?.labels, undefined, 'no labels without --for / --revision');
  t.true((gw.metadata?.['managedFields'] as Array<{ manager: string }>).some((m) => m.manager === 'istioctl'));
  const apply = c.fake.requests.find((r) => r.contentType === 'application/apply-patch+yaml' && r.path.endsWith('/gateways/waypoint'));
  t.deepEqual(apply?.query, { fieldManager: 'istioctl' }, 'not forced');
  t.is(labelsOf(c.fake, 'bookinfo')['istio.io/use-waypoint'], 'waypoint');
  t.truthy(c.fake.get('deployments', 'bookinfo', 'waypoint'), 'the controller deployed it');
});

test('apply --enroll-namespace: a namespace already using a waypoint is left alone without --overwrite; a non-ambient namespace is warned about', async (t) => {
  const c = await cluster(t);
  c.fake.create('namespaces', { metadata: { name: 'prod', labels: { 'istio.io/use-waypoint': 'old' } } });
  const refused = await c.ctl('apply', '-n', 'prod', '--name', 'new-wp', '--enroll-namespace');
  t.is(refused.code, 0);
  t.is(refused.stdout, '⚠️ Warning: namespace (prod) already has an enrolled Waypoint. Consider adding the `--overwrite` flag to your apply command.\n');
  t.is(c.fake.get('gateways', 'prod', 'new-wp'), undefined, 'nothing applied');

  const over = await c.ctl('apply', '-n', 'prod', '--name', 'new-wp', '--for', 'all', '--enroll-namespace', '--overwrite');
  t.is(over.code, 0, over.stderr);
  t.is(
    over.stdout,
    '⚠️ Warning: namespace is not enrolled in ambient. Consider running\t`kubectl label namespace prod istio.io/dataplane-mode=ambient`\n✅ waypoint prod/new-wp applied\n✅ namespace prod labeled with "istio.io/use-waypoint: new-wp"\n',
  );
  t.is(labelsOf(c.fake, 'prod')['istio.io/use-waypoint'], 'new-wp');
  t.deepEqual(c.fake.get('gateways', 'prod', 'new-wp')?.metadata?.labels, { 'istio.io/waypoint-for': 'all' });
});

test('apply: a missing namespace, a reserved name or a bad --for fail with istioctl\'s message; --wait times out when nothing programs it', async (t) => {
  const c = await cluster(t, { controller: false });
  const missing = await c.ctl('apply', '-n', 'nope');
  t.is(missing.code, 1);
  t.is(missing.stderr, 'Error: namespace: nope not found\n');
  c.fake.create('namespaces', { metadata: { name: 'prod' } });
  const reserved = await c.ctl('apply', '-n', 'prod', '--name', 'none');
  t.is(reserved.stderr, "Error: failed to create gateway: invalid name provided for waypoint, 'none' is a reserved value\n");
  const bad = await c.ctl('apply', '-n', 'prod', '--for=pods');
  t.regex(bad.stderr, /invalid traffic type: pods/);
  const timeout = await c.ctl('apply', '-n', 'prod', '-w', '--waypoint-timeout', '1s');
  t.is(timeout.code, 1);
  t.is(timeout.stdout, '✅ waypoint prod/waypoint applied\n');
  t.is(timeout.stderr, 'Error: timed out while waiting for waypoint\tprod/waypoint\n');
  const usage = await c.ctl('apply', '--bogus');
  t.is(usage.code, 2);
  t.regex(usage.stderr, /--bogus: unknown flag/);
});

test('list, status and delete: istioctl\'s tables and messages, only istio-waypoint Gateways, -A, --all, -r', async (t) => {
  const c = await cluster(t);
  for (const ns of ['a', 'b']) c.fake.create('namespaces', { metadata: { name: ns } });
  const applied = await Promise.all([
    c.ctl('apply', '-n', 'a', '--wait'),
    allocateWhenCreated(c.fake, 'a', 'waypoint', '10.96.0.1'),
    c.ctl('apply', '-n', 'a', '--name', 'canary-wp', '-r', 'canary', '--for', 'workload'),
    c.ctl('apply', '-n', 'b', '--name', 'wp-b', '--for', 'service'),
  ]);
  t.true(applied.filter((r): r is { stdout: string; stderr: string; code: number } => r !== undefined).every((r) => r.code === 0));
  c.fake.create('gateways', { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', metadata: { name: 'ingress', namespace: 'a' }, spec: { gatewayClassName: 'istio', listeners: [] } } as KubeObjectJson);
  await until(() => c.controller?.status('b', 'wp-b') !== undefined, 'the controller saw wp-b');

  const list = await c.ctl('list', '-n', 'a');
  t.is(list.stdout, 'NAME          REVISION     TRAFFIC TYPE     PROGRAMMED\ncanary-wp     canary       workload         False\nwaypoint      default      none             True\n');
  const all = await c.ctl('list', '-A');
  t.regex(all.stdout, /^NAMESPACE {5}NAME {10}REVISION {5}TRAFFIC TYPE {5}PROGRAMMED\na {13}canary-wp/);
  t.regex(all.stdout, /\nb {13}wp-b {10}default {6}service {10}False\n$/);
  t.is((await c.ctl('list', '-n', 'empty')).stdout, 'No waypoints found.\n');

  const status = await c.ctl('status', '-n', 'a', '--wait=false');
  t.is(status.code, 0, status.stderr);
  const row = (cells: string[], widths: number[]) => cells.map((c, i) => (i < cells.length - 1 ? c.padEnd(widths[i] as number) : c)).join('');
  const widths = [14, 11, 15, 15];
  t.is(
    status.stdout,
    [
      row(['NAME', 'STATUS', 'TYPE', 'REASON', 'MESSAGE'], widths),
      // canary-wp belongs to another revision: our controller leaves it without a status.
      row(['canary-wp', '', '', '', ''], widths),
      row(['waypoint', 'True', 'Programmed', 'Programmed', 'Resource programmed, assigned to service(s) waypoint.a.svc.cluster.local:15008'], widths),
      '',
    ].join('\n'),
  );
  const waited = await c.ctl('status', '-n', 'b', '--waypoint-timeout', '1s');
  t.is(waited.code, 1, 'wp-b has no Service address, so waiting for it times out');
  t.regex(waited.stdout, /\nwp-b {5}True {7}ResolvedRefs {5}ResolvedRefs {5}Resource references resolved\n$/, 'the last condition, as istioctl shows it');
  t.is(waited.stderr, 'Error: timed out while retrieving status for waypoint\tb/wp-b\n');

  const del = await c.ctl('delete', '-n', 'a', 'waypoint', 'ingress', 'missing');
  t.is(del.stdout, 'waypoint a/ingress not found\nwaypoint a/missing not found\nwaypoint a/waypoint deleted\n');
  t.truthy(c.fake.get('gateways', 'a', 'ingress'), 'another class is never deleted');
  t.is(c.fake.get('gateways', 'a', 'waypoint'), undefined);
  const byRev = await c.ctl('delete', '-n', 'a', '-r', 'canary');
  t.is(byRev.stdout, 'waypoint a/canary-wp deleted\n');
  const everything = await c.ctl('delete', '-n', 'b', '--all');
  t.is(everything.stdout, 'waypoint b/wp-b deleted\n');
  const noArgs = await c.ctl('delete', '-n', 'b');
  t.is(noArgs.code, 2);
  t.is(noArgs.stderr, 'Error: must specify a waypoint name or delete all using --all or delete specific revision using --revision\n');
  const both = await c.ctl('delete', '--all', 'x');
  t.is(both.stderr, 'Error: cannot specify waypoint names when deleting all waypoints\n');
});

test('apply without the Gateway API installed: istioctl\'s hint to install the CRDs; list says why it cannot list', async (t) => {
  const c = await cluster(t, { controller: false, omitGroups: ['gateway.networking.k8s.io'] });
  c.fake.create('namespaces', { metadata: { name: 'prod' } });
  const out = await c.ctl('apply', '-n', 'prod');
  t.is(out.code, 1);
  t.regex(out.stderr, /^Error: missing Kubernetes Gateway CRDs need to be installed before applying a waypoint: PATCH \/apis\/gateway\.networking\.k8s\.io\/v1\/namespaces\/prod\/gateways\/waypoint: HTTP 404 NotFound/);
  const list = await c.ctl('list', '-n', 'prod');
  t.is(list.code, 1);
  t.regex(list.stderr, /HTTP 404 NotFound/);
});

test('no kubeconfig and no cluster: generate still works, the others say what is missing', async (t) => {
  const home = await tempDir(t);
  const run = async (...args: string[]) =>
    execFileP(process.execPath, [AMBIENTCTL, 'waypoint', ...args], { env: { PATH: process.env['PATH'] ?? '', HOME: home } }).then(
      (r) => ({ ...r, code: 0 }),
      (e: { stdout: string; stderr: string; code: number }) => e,
    );
  const gen = await run('generate', '-n', 'prod');
  t.is(gen.code, 0);
  t.regex(gen.stdout, /namespace: prod/);
  const list = await run('list');
  t.is(list.code, 1);
  t.is(list.stderr, 'Error: no kubeconfig (--kubeconfig, $KUBECONFIG or ~/.kube/config) and not running in a cluster\n');
  const missing = await run('list', '--kubeconfig', join(home, 'nope'));
  t.is(missing.stderr, `Error: kubeconfig ${join(home, 'nope')} not found\n`);
});

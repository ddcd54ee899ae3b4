import test, { type ExecutionContext } from 'ava';
import { KubeConfig } from '@kubernetes/client-node';
import { startKubeSource } from '../../src/control-plane/kube-source.ts';
import { Translator, type ObjectChange } from '../../src/control-plane/translator.ts';
import { TypeUrl } from '../../src/workload-api/proto.ts';
import { ResourceSnapshot, type SnapshotChange } from '../../src/workload-api/snapshot.ts';
import { startFakeKube, type FakeKube, type KubeObjectJson } from '../../src/demo/api-server.ts';
import { captureLog } from '../helpers/log.ts';
import { load, PODS, podName } from './bookinfo.ts';
import { assertGolden, snapshotJson } from './golden.ts';

// The translation of a bookinfo-like cluster, driven through the fake API server and the real informers.

interface Setup {
  readonly fake: FakeKube;
  readonly snapshot: ResourceSnapshot;
  readonly translator: Translator;
  readonly routes: ObjectChange[];
  readonly changes: SnapshotChange[];
}

async function setup(t: ExecutionContext): Promise<Setup> {
  const fake = await startFakeKube();
  t.teardown(() => fake.close());
  load(fake);
  const kc = new KubeConfig();
  kc.loadFromFile(fake.kubeconfigPath);
  const snapshot = new ResourceSnapshot();
  const routes: ObjectChange[] = [];
  const translator = new Translator({
    snapshot,
    extensions: [{ name: 'routes', kinds: ['HTTPRoute', 'GRPCRoute'], apply: (changes) => routes.push(...changes) }],
  });
  const source = startKubeSource({ kubeConfig: kc, translator, logger: captureLog().logger, backoff: { initialMs: 5, maxMs: 50 } });
  t.teardown(() => source.close());
  await source.synced;
  await flushed(translator);
  const changes: SnapshotChange[] = [];
  snapshot.on('change', (c) => changes.push(c));
  return { fake, snapshot, translator, routes, changes };
}

/** Resolves after the next translation flush. */
function flushed(translator: Translator): Promise<void> {
  return new Promise((resolve) => translator.once('flush', () => resolve()));
}

/** Waits through translation flushes (at most `limit`) until `check` holds. */
async function until(translator: Translator, check: () => boolean, limit = 50): Promise<boolean> {
  for (let i = 0; i < limit && !check(); i++) await flushed(translator);
  return check();
}

const names = (changes: readonly SnapshotChange[], typeUrl: string) => changes.filter((c) => c.typeUrl === typeUrl).flatMap((c) => c.names).sort();

test('bookinfo through the informers: the snapshot equals the golden translation', async (t) => {
  const { snapshot, translator, routes } = await setup(t);
  assertGolden(t, 'bookinfo', snapshotJson(snapshot));
  // The HTTPRoute reached the extension plug-in point, and nothing else did.
  t.deepEqual(routes.map((r) => `${r.kind} ${r.type} ${r.object.metadata?.namespace}/${r.object.metadata?.name}`), ['HTTPRoute upsert bookinfo/reviews']);
  // What is reported against objects.
  t.like(translator.reportOf('AuthorizationPolicy', 'bookinfo', 'ratings-from-reviews')?.conditions[0], { type: 'ZtunnelAccepted', status: 'False', reason: 'UnsupportedValue' });
  t.like(translator.reportOf('Service', 'bookinfo', 'reviews')?.conditions[0], { type: 'istio.io/WaypointBound', status: 'True' });
  t.is(translator.reportOf('Service', 'bookinfo', 'ratings'), undefined, 'use-waypoint: none binds nothing and reports nothing');
  t.deepEqual(translator.problems(), []);
  t.like(translator.stats(), { workloads: 7, services: 5, policies: 4 });
});

test('a pod change recomputes that pod only and pushes only its workload', async (t) => {
  const { fake, translator, changes } = await setup(t);
  const p = PODS[2]!;
  const current = fake.get('pods', 'bookinfo', podName(p)) as KubeObjectJson;
  const next = flushed(translator);
  fake.update('pods', { ...current, metadata: { ...current.metadata, labels: { ...current.metadata?.labels, extra: 'x' } } } as KubeObjectJson);
  await next;
  t.deepEqual(names(changes, TypeUrl.address), [], 'an unrelated label changes no bytes');
  // Leaving the reviews service: only that workload's bytes change.
  const latest = fake.get('pods', 'bookinfo', podName(p)) as KubeObjectJson;
  const leave = new Promise<{ recomputed: number }>((resolve) => translator.once('flush', resolve));
  fake.update('pods', { ...latest, metadata: { ...latest.metadata, labels: { app: 'not-reviews', version: 'v1' } } } as KubeObjectJson);
  const event = await leave;
  t.is(event.recomputed, 1);
  t.deepEqual(names(changes, TypeUrl.address), [`Kubernetes//Pod/bookinfo/${podName(p)}`]);
  t.deepEqual(names(changes, TypeUrl.authorization), []);
});

test('dependencies: the waypoint losing its address unbinds the namespace services; a policy change touches its workloads', async (t) => {
  const { fake, translator, changes } = await setup(t);
  const gw = fake.get('gateways', 'bookinfo', 'waypoint') as KubeObjectJson;
  const next = flushed(translator);
  fake.update('gateways', { ...gw, status: { addresses: [] } } as KubeObjectJson);
  await next;
  t.deepEqual(names(changes, TypeUrl.address), ['bookinfo/details.bookinfo.svc.cluster.local', 'bookinfo/productpage.bookinfo.svc.cluster.local', 'bookinfo/reviews.bookinfo.svc.cluster.local']);
  t.like(translator.reportOf('Service', 'bookinfo', 'reviews')?.conditions[0], { status: 'False', reason: 'WaypointIsNotReady' });
  changes.length = 0;
  const policyFlush = flushed(translator);
  fake.delete('authorizationpolicies', 'bookinfo', 'productpage-viewer');
  await policyFlush;
  t.deepEqual(names(changes, TypeUrl.authorization), ['bookinfo/productpage-viewer']);
  t.deepEqual(names(changes, TypeUrl.address), [`Kubernetes//Pod/bookinfo/${podName(PODS[0]!)}`], 'only the workload that listed it');
  changes.length = 0;
  const nodeFlush = flushed(translator);
  fake.update('nodes', { metadata: { name: 'node-b', labels: { 'topology.kubernetes.io/region': 'eu-west', 'topology.kubernetes.io/zone': 'eu-west-1c' } } });
  await nodeFlush;
  t.deepEqual(
    names(changes, TypeUrl.address),
    [...PODS.filter((p) => p.node === 'node-b').map((p) => `Kubernetes//Pod/bookinfo/${podName(p)}`), 'Kubernetes//Pod/bookinfo/waypoint-6d4b9c7f5-qwert'].sort(),
    'a node change touches the pods on that node',
  );
});

test('bad input is reported against the object and skips only what is wrong', async (t) => {
  const { fake, translator, snapshot } = await setup(t);
  const next = flushed(translator);
  fake.create('services', { metadata: { name: 'broken', namespace: 'bookinfo' }, spec: { clusterIP: 'not-an-ip', ports: [{ port: 70000 }, { name: 'ok', port: 80 }] } } as KubeObjectJson);
  fake.create('authorizationpolicies', { metadata: { name: 'bad-port', namespace: 'bookinfo' }, spec: { rules: [{ to: [{ operation: { ports: ['eighty'] } }] }] } } as KubeObjectJson);
  await next;
  t.true(await until(translator, () => translator.reportOf('AuthorizationPolicy', 'bookinfo', 'bad-port') !== undefined && translator.reportOf('Service', 'bookinfo', 'broken') !== undefined));
  const broken = translator.reportOf('Service', 'bookinfo', 'broken');
  t.deepEqual(broken?.problems, ['spec.clusterIPs[0]: "not-an-ip" is not an IP address', 'spec.ports[0].port: must be 1-65535, got 70000']);
  const svc = snapshotJson(snapshot).addresses['bookinfo/broken.bookinfo.svc.cluster.local'] as { service: { addresses: unknown[]; ports: unknown[] } };
  t.deepEqual(svc.service.addresses, [], 'the bad VIP is skipped');
  t.is(svc.service.ports.length, 1, 'the good port is kept');
  t.deepEqual(translator.reportOf('AuthorizationPolicy', 'bookinfo', 'bad-port')?.problems, ['spec.rules[0].to[0].operation.ports[0]: "eighty" is not a port (0-65535)']);
  t.truthy(snapshot.entry(TypeUrl.authorization, 'bookinfo/bad-port'), 'the policy is still sent (allowing nothing)');
  t.is(translator.problems().length, 2);
});

test('kinds whose API group is not served (CRDs not installed) are skipped, and everything else syncs', async (t) => {
  const fake = await startFakeKube({ omitGroups: ['networking.istio.io', 'gateway.networking.k8s.io'] });
  t.teardown(() => fake.close());
  fake.create('pods', { metadata: { name: 'p', namespace: 'default' }, spec: { nodeName: 'n' }, status: { podIP: '10.0.0.1' } } as KubeObjectJson);
  const kc = new KubeConfig();
  kc.loadFromFile(fake.kubeconfigPath);
  const snapshot = new ResourceSnapshot();
  const translator = new Translator({ snapshot });
  const source = startKubeSource({ kubeConfig: kc, translator, logger: captureLog().logger, backoff: { initialMs: 5, maxMs: 50 } });
  t.teardown(() => source.close());
  await source.synced;
  t.deepEqual([...(await source.skipped)].sort(), ['GRPCRoute', 'Gateway', 'GatewayClass', 'HTTPRoute', 'ServiceEntry', 'WorkloadEntry']);
  t.truthy(translator.object('Pod', 'default', 'p'));
  t.false(fake.requests.some((r) => r.path.startsWith('/apis/gateway.networking.k8s.io/v1/') && r.watch), 'no watch on a skipped kind');
});

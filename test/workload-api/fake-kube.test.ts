import test, { type ExecutionContext } from 'ava';
import { KubeConfig, KubernetesObjectApi, PatchStrategy, type KubernetesObject } from '@kubernetes/client-node';
import { startInformer } from '../../src/workload-api/kube/index.ts';
import { resourcePath, startFakeKube, type FakeKube, type KubeObjectJson } from '../../src/demo/api-server.ts';
import { captureLog } from '../helpers/log.ts';

// The fake API server beyond pods: the resources of the control plane, /status, server-side apply, TokenReview.

async function fakeKube(t: ExecutionContext): Promise<FakeKube> {
  const fake = await startFakeKube();
  t.teardown(() => fake.close());
  return fake;
}

async function call(fake: FakeKube, method: string, path: string, body?: unknown, contentType = 'application/json'): Promise<{ status: number; body: KubeObjectJson }> {
  const response = await fetch(`${fake.url}${path}`, {
    method,
    ...(body !== undefined ? { body: typeof body === 'string' ? body : JSON.stringify(body), headers: { 'content-type': contentType } } : {}),
  });
  return { status: response.status, body: (await response.json()) as KubeObjectJson };
}

const gateway = (name: string): KubeObjectJson => ({
  apiVersion: 'gateway.networking.k8s.io/v1',
  kind: 'Gateway',
  metadata: { name, namespace: 'bookinfo', labels: { 'istio.io/waypoint-for': 'service' } },
  spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
});

test('fake: CRDs and cluster-scoped resources live at their group paths, with their List kind and apiVersion', async (t) => {
  const fake = await fakeKube(t);
  fake.create('gateways', gateway('waypoint'));
  fake.create('nodes', { metadata: { name: 'node-a', labels: { 'topology.kubernetes.io/zone': 'z1' } } });
  t.is(resourcePath('gateways', 'bookinfo'), '/apis/gateway.networking.k8s.io/v1/namespaces/bookinfo/gateways');
  const list = await call(fake, 'GET', '/apis/gateway.networking.k8s.io/v1/namespaces/bookinfo/gateways');
  t.like(list.body, { kind: 'GatewayList', apiVersion: 'gateway.networking.k8s.io/v1' });
  t.is((list.body['items'] as KubeObjectJson[])[0]?.metadata?.name, 'waypoint');
  const all = await call(fake, 'GET', '/apis/gateway.networking.k8s.io/v1/gateways');
  t.is((all.body['items'] as unknown[]).length, 1);
  const node = await call(fake, 'GET', '/api/v1/nodes/node-a');
  t.like(node.body, { kind: 'Node', apiVersion: 'v1', metadata: { name: 'node-a' } });
  t.is(node.body.metadata?.namespace, undefined);
  // A cluster-scoped resource has no namespaced path; an unknown version is not served.
  t.is((await call(fake, 'GET', '/api/v1/namespaces/default/nodes')).status, 404);
  t.is((await call(fake, 'GET', '/apis/gateway.networking.k8s.io/v1beta1/gateways')).status, 404);
  t.like((await call(fake, 'GET', '/apis/security.istio.io/v1/namespaces/x/peerauthentications')).body, { kind: 'PeerAuthenticationList', items: [] });
});

test('fake: unsupported field selectors are a 400; set-based label selectors filter', async (t) => {
  const fake = await fakeKube(t);
  fake.create('services', { metadata: { name: 'a', namespace: 'default', labels: { app: 'a', tier: 'web' } } });
  fake.create('services', { metadata: { name: 'b', namespace: 'default', labels: { app: 'b' } } });
  fake.create('services', { metadata: { name: 'c', namespace: 'default', labels: { app: 'c', tier: 'db' } } });
  const bad = await call(fake, 'GET', '/api/v1/services?fieldSelector=spec.selector.app%3Da');
  t.is(bad.status, 400);
  t.like(bad.body, { kind: 'Status', reason: 'BadRequest' });
  const names = async (selector: string): Promise<string[]> =>
    ((await call(fake, 'GET', `/api/v1/services?labelSelector=${encodeURIComponent(selector)}`)).body['items'] as KubeObjectJson[]).map((o) => o.metadata?.name ?? '').sort();
  t.deepEqual(await names('app in (a,b)'), ['a', 'b']);
  t.deepEqual(await names('app notin (a),tier'), ['c']);
  t.deepEqual(await names('!tier'), ['b']);
});

test('fake: a main-resource write keeps the status, a /status write changes only the status (pods keep metadata too)', async (t) => {
  const fake = await fakeKube(t);
  fake.create('gateways', gateway('waypoint'));
  const st = await call(fake, 'PATCH', '/apis/gateway.networking.k8s.io/v1/namespaces/bookinfo/gateways/waypoint/status', { status: { addresses: [{ type: 'IPAddress', value: '10.96.0.9' }] }, metadata: { labels: { sneaky: 'yes' } }, spec: { gatewayClassName: 'other' } }, 'application/merge-patch+json');
  t.is(st.status, 200);
  const after = fake.get('gateways', 'bookinfo', 'waypoint')!;
  t.deepEqual(after['status'], { addresses: [{ type: 'IPAddress', value: '10.96.0.9' }] });
  t.is((after['spec'] as { gatewayClassName: string }).gatewayClassName, 'istio-waypoint');
  t.is(after.metadata?.labels?.['sneaky'], undefined);
  const main = await call(fake, 'PATCH', '/apis/gateway.networking.k8s.io/v1/namespaces/bookinfo/gateways/waypoint', { status: null, metadata: { labels: { extra: '1' } } }, 'application/merge-patch+json');
  t.is(main.status, 200);
  t.deepEqual(fake.get('gateways', 'bookinfo', 'waypoint')!['status'], { addresses: [{ type: 'IPAddress', value: '10.96.0.9' }] });
  t.is(fake.get('gateways', 'bookinfo', 'waypoint')!.metadata?.labels?.['extra'], '1');
  // Services have no status subresource here.
  t.is((await call(fake, 'GET', '/api/v1/namespaces/default/services/x/status')).status, 404);
  // Pods: annotations through /status stay, the spec does not change; a pod created over HTTP starts Pending.
  const created = await call(fake, 'POST', '/api/v1/namespaces/default/pods', { apiVersion: 'v1', kind: 'Pod', metadata: { name: 'p' }, spec: { nodeName: 'n1' }, status: { phase: 'Running' } });
  t.is(created.status, 201);
  t.deepEqual(created.body['status'], { phase: 'Pending' });
  await call(fake, 'PATCH', '/api/v1/namespaces/default/pods/p/status', { metadata: { annotations: { a: 'b' } }, spec: { nodeName: 'n2' }, status: { phase: 'Running' } }, 'application/merge-patch+json');
  const pod = fake.get('pods', 'default', 'p')!;
  t.is(pod.metadata?.annotations?.['a'], 'b');
  t.is((pod['spec'] as { nodeName: string }).nodeName, 'n1');
  t.is((pod['status'] as { phase: string }).phase, 'Running');
});

test('fake: server-side apply creates, merges, owns fields per manager, conflicts unless forced, and drops omitted fields', async (t) => {
  const fake = await fakeKube(t);
  const path = '/apis/apps/v1/namespaces/bookinfo/deployments/waypoint';
  const apply = (body: unknown, manager: string, force = false) =>
    call(fake, 'PATCH', `${path}?fieldManager=${manager}${force ? '&force=true' : ''}`, body, 'application/apply-patch+yaml');
  const dep = (replicas: number, extra: Record<string, string> = {}) => ({
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name: 'waypoint', namespace: 'bookinfo', labels: { app: 'waypoint', ...extra } },
    spec: { replicas, template: { spec: { containers: [{ name: 'proxy', image: 'ambient' }] } } },
  });
  t.is((await call(fake, 'PATCH', path, dep(1), 'application/apply-patch+yaml')).status, 400, 'fieldManager is required');
  const created = await apply(dep(1, { old: 'x' }), 'ctl');
  t.is(created.status, 201);
  t.is((created.body['spec'] as { replicas: number }).replicas, 1);
  // YAML bodies are accepted, as the content type says.
  const yaml = 'apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: waypoint\n  labels:\n    other: "y"\n';
  t.is((await apply(yaml, 'other')).status, 200);
  t.is(fake.get('deployments', 'bookinfo', 'waypoint')!.metadata?.labels?.['other'], 'y');
  // Another manager changing ctl's field conflicts; force takes it over.
  const conflict = await apply({ ...dep(3), metadata: { name: 'waypoint' } }, 'hpa');
  t.is(conflict.status, 409);
  t.like(conflict.body, { kind: 'Status', reason: 'Conflict' });
  t.is((await apply({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'waypoint' }, spec: { replicas: 3 } }, 'hpa', true)).status, 200);
  t.is((fake.get('deployments', 'bookinfo', 'waypoint')!['spec'] as { replicas: number }).replicas, 3);
  // ctl re-applies without replicas (hpa owns it now) and without its `old` label: the label goes, replicas stay.
  const again = await apply({ apiVersion: 'apps/v1', kind: 'Deployment', metadata: { name: 'waypoint', labels: { app: 'waypoint' } }, spec: { template: { spec: { containers: [{ name: 'proxy', image: 'ambient:2' }] } } } }, 'ctl');
  t.is(again.status, 200);
  const stored = fake.get('deployments', 'bookinfo', 'waypoint')!;
  t.deepEqual(stored.metadata?.labels, { app: 'waypoint', other: 'y' });
  t.is((stored['spec'] as { replicas: number }).replicas, 3);
  const managers = (stored.metadata?.['managedFields'] as Array<{ manager: string; operation: string }>).map((m) => `${m.manager}/${m.operation}`).sort();
  t.deepEqual(managers, ['ctl/Apply', 'hpa/Apply', 'other/Apply']);
  // A kind that does not match the resource is refused.
  t.is((await apply({ apiVersion: 'v1', kind: 'Service', metadata: { name: 'waypoint' } }, 'ctl')).status, 400);
});

test('fake: client-node generic object API applies through discovery, and DELETE returns the last state', async (t) => {
  const fake = await fakeKube(t);
  const kc = new KubeConfig();
  kc.loadFromFile(fake.kubeconfigPath);
  const client = KubernetesObjectApi.makeApiClient(kc);
  const gw = gateway('wp') as unknown as KubernetesObject;
  await client.patch(gw, undefined, undefined, 'test-manager', true, PatchStrategy.ServerSideApply);
  await client.patch({ apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'bookinfo', labels: { 'istio.io/use-waypoint': 'wp' } } }, undefined, undefined, 'test-manager', true, PatchStrategy.ServerSideApply);
  t.is(fake.get('namespaces', undefined, 'bookinfo')?.metadata?.labels?.['istio.io/use-waypoint'], 'wp');
  t.truthy(fake.get('gateways', 'bookinfo', 'wp'));
  const applies = fake.requests.filter((r) => r.contentType === 'application/apply-patch+yaml');
  t.is(applies.length, 2);
  const deleted = await call(fake, 'DELETE', '/apis/gateway.networking.k8s.io/v1/namespaces/bookinfo/gateways/wp');
  t.is(deleted.status, 200);
  t.like(deleted.body, { kind: 'Gateway', metadata: { name: 'wp' } });
  t.is(fake.get('gateways', 'bookinfo', 'wp'), undefined);
  t.is((await call(fake, 'DELETE', '/apis/gateway.networking.k8s.io/v1/namespaces/bookinfo/gateways/wp')).status, 404);
});

test('fake: TokenReview authenticates registered tokens (audiences intersected) and nothing else', async (t) => {
  const fake = await fakeKube(t);
  fake.registerToken('tok-ztunnel', { username: 'system:serviceaccount:istio-system:ztunnel', groups: ['system:serviceaccounts'], audiences: ['istio-ca'] });
  const review = (token: string, audiences?: string[]) =>
    call(fake, 'POST', '/apis/authentication.k8s.io/v1/tokenreviews', { apiVersion: 'authentication.k8s.io/v1', kind: 'TokenReview', spec: { token, ...(audiences ? { audiences } : {}) } });
  const good = await review('tok-ztunnel', ['istio-ca']);
  t.is(good.status, 201);
  t.like(good.body, { kind: 'TokenReview', status: { authenticated: true, user: { username: 'system:serviceaccount:istio-system:ztunnel', groups: ['system:serviceaccounts'] }, audiences: ['istio-ca'] } });
  const wrongAudience = await review('tok-ztunnel', ['other']);
  t.is((wrongAudience.body['status'] as { authenticated?: boolean }).authenticated, undefined);
  const unknown = await review('nope');
  t.is((unknown.body['status'] as { authenticated?: boolean }).authenticated, undefined);
  t.truthy((unknown.body['status'] as { error?: string }).error);
});

test('fake: the informer lists and watches a CRD collection (httproutes) across namespaces', async (t) => {
  const fake = await fakeKube(t);
  const kc = new KubeConfig();
  kc.loadFromFile(fake.kubeconfigPath);
  fake.create('httproutes', { metadata: { name: 'r1', namespace: 'a' } });
  const informer = startInformer<KubeObjectJson>({ kubeConfig: kc, path: resourcePath('httproutes'), logger: captureLog().logger, backoff: { initialMs: 5, maxMs: 50 } });
  t.teardown(() => informer.close());
  await informer.synced;
  t.deepEqual(informer.list().map((o) => o.metadata?.name), ['r1']);
  const added = new Promise<KubeObjectJson>((resolve) => informer.once('add', resolve));
  fake.create('httproutes', { metadata: { name: 'r2', namespace: 'b' } });
  t.like(await added, { kind: 'HTTPRoute', apiVersion: 'gateway.networking.k8s.io/v1', metadata: { name: 'r2', namespace: 'b' } });
});

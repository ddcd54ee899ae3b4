import test from 'ava';
import { KubeConfig } from '@kubernetes/client-node';
import { startWaypointController, type WaypointControllerHandle } from '../../src/control-plane/waypoint-controller.ts';
import { decideWaypoint, waypointGateway, type Gateway, type WaypointRenderOptions } from '../../src/control-plane/waypoint-objects.ts';
import { startFakeKube, type FakeKube, type KubeObjectJson } from '../../src/demo/api-server.ts';
import { captureLog } from '../helpers/log.ts';
import { until } from '../helpers/prometheus.ts';

/**
 * Cluster mode against the fake API server: Gateways in, ServiceAccount/Deployment/Service applied
 * server-side as `istio.io/gateway-controller`, and the Gateway status written. The fake has no
 * ClusterIP allocator, so the test plays it: it gives the Service an address when it sees one.
 */

const RENDER: WaypointRenderOptions = {
  clusterDomain: 'cluster.local',
  trustDomain: 'cluster.local',
  clusterId: 'Kubernetes',
  xdsAddress: 'istiod.istio-system.svc:15012',
  caAddress: 'istiod.istio-system.svc:15012',
  image: 'ambient-node:test',
};

interface Env {
  readonly fake: FakeKube;
  readonly controller: WaypointControllerHandle;
  readonly log: ReturnType<typeof captureLog>;
}

async function start(t: { teardown(fn: () => Promise<void>): void }): Promise<Env> {
  const fake = await startFakeKube();
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(fake.kubeconfigPath);
  const log = captureLog();
  const controller = startWaypointController({ render: RENDER, logger: log.logger, retry: { initialMs: 20, maxMs: 200, jitter: 0 }, mode: { kind: 'cluster', kubeConfig, resyncMs: 0 } });
  t.teardown(async () => {
    await controller.close();
    await fake.close();
  });
  await controller.synced;
  return { fake, controller, log };
}

function createGateway(fake: FakeKube, gw: Gateway): KubeObjectJson {
  return fake.create('gateways', gw as unknown as KubeObjectJson);
}

const conditions = (obj: KubeObjectJson | undefined): Record<string, string> =>
  Object.fromEntries(((obj?.['status'] as { conditions?: Array<{ type: string; status: string }> } | undefined)?.conditions ?? []).map((c) => [c.type, c.status]));

const managers = (obj: KubeObjectJson | undefined): string[] => ((obj?.metadata?.['managedFields'] as Array<{ manager: string }> | undefined) ?? []).map((m) => m.manager);

/** What the ClusterIP allocator of a real API server does. */
function allocate(fake: FakeKube, namespace: string, name: string, ip: string): void {
  const svc = fake.get('services', namespace, name)!;
  fake.update('services', { ...svc, spec: { ...(svc['spec'] as object), clusterIP: ip, clusterIPs: [ip] } } as KubeObjectJson);
}

test('cluster: a waypoint Gateway gets its ServiceAccount, Deployment and Service (as rendered, owned by the Gateway, applied by the controller); Programmed once the Service has an IP', async (t) => {
  const { fake, controller } = await start(t);
  const stored = createGateway(fake, waypointGateway({ name: 'waypoint', namespace: 'bookinfo', for: 'service' }));
  await until(() => fake.get('services', 'bookinfo', 'waypoint') !== undefined, 'the Service is applied');
  const gw = fake.get('gateways', 'bookinfo', 'waypoint') as unknown as Gateway;
  const expected = decideWaypoint({ ...gw, metadata: { ...gw.metadata, uid: stored.metadata!.uid! } }, RENDER);
  if (expected.kind !== 'deploy') return t.fail();

  const sa = fake.get('serviceaccounts', 'bookinfo', 'waypoint');
  const dep = fake.get('deployments', 'bookinfo', 'waypoint');
  const svc = fake.get('services', 'bookinfo', 'waypoint');
  t.deepEqual(sa?.metadata?.labels, expected.objects.serviceAccount.metadata.labels);
  t.deepEqual(dep?.['spec'], expected.objects.deployment['spec']);
  t.deepEqual(svc?.['spec'], expected.objects.service['spec']);
  for (const obj of [sa, dep, svc]) {
    t.deepEqual(obj?.metadata?.['ownerReferences'], [{ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', name: 'waypoint', uid: stored.metadata!.uid }]);
    t.deepEqual(managers(obj), ['istio.io/gateway-controller']);
  }
  const applies = fake.requests.filter((r) => r.contentType === 'application/apply-patch+yaml' && r.path.startsWith('/api') && !r.path.includes('gatewayclasses'));
  t.true(applies.length >= 3);
  t.true(applies.every((r) => r.query['fieldManager'] === 'istio.io/gateway-controller' && r.query['force'] === 'true'), 'the objects are applied with force');
  const classApply = fake.requests.find((r) => r.contentType === 'application/apply-patch+yaml' && r.path.includes('gatewayclasses'));
  t.deepEqual(classApply?.query, { fieldManager: 'istio.io/gateway-controller' }, 'a missing class is created without force');

  // No ClusterIP yet: Accepted, not Programmed, no addresses.
  await until(() => conditions(fake.get('gateways', 'bookinfo', 'waypoint'))['Accepted'] === 'True', 'Accepted is written');
  let current = fake.get('gateways', 'bookinfo', 'waypoint');
  t.like(conditions(current), { Accepted: 'True', Programmed: 'False' });
  t.is((current?.['status'] as { addresses?: unknown }).addresses, undefined);
  t.is(current?.metadata?.annotations?.['gateway.istio.io/controller-version'], '1');

  allocate(fake, 'bookinfo', 'waypoint', '10.96.0.20');
  await until(() => conditions(fake.get('gateways', 'bookinfo', 'waypoint'))['Programmed'] === 'True', 'Programmed once the Service has an address');
  current = fake.get('gateways', 'bookinfo', 'waypoint');
  t.deepEqual((current?.['status'] as { addresses?: unknown }).addresses, [
    { type: 'Hostname', value: 'waypoint.bookinfo.svc.cluster.local' },
    { type: 'IPAddress', value: '10.96.0.20' },
  ]);
  t.like(controller.status('bookinfo', 'waypoint')?.addresses?.[1], { value: '10.96.0.20' });
  // The spec the user applied is untouched by the status writes.
  t.deepEqual(current?.['spec'], waypointGateway({ name: 'waypoint', namespace: 'bookinfo' }).spec);
});

test('cluster: a quiet Gateway is not re-applied or re-written; a label change re-applies; a deleted Service is re-created', async (t) => {
  const { fake } = await start(t);
  createGateway(fake, waypointGateway({ name: 'wp', namespace: 'prod' }));
  await until(() => fake.get('services', 'prod', 'wp') !== undefined, 'applied');
  allocate(fake, 'prod', 'wp', '10.96.0.30');
  await until(() => conditions(fake.get('gateways', 'prod', 'wp'))['Programmed'] === 'True', 'programmed');
  // Settled: a bookmark round trip later, no more writes arrive.
  const writes = () => fake.requests.filter((r) => r.method !== 'GET' && r.path.includes('/namespaces/prod/')).length;
  const settled = writes();
  fake.sendBookmarks();
  await new Promise((resolve) => setTimeout(resolve, 300));
  t.is(writes(), settled, `no write without a change: ${JSON.stringify(fake.requests.filter((r) => r.method !== 'GET' && r.path.includes('/namespaces/prod/')).slice(settled - 3))}`);

  const gw = fake.get('gateways', 'prod', 'wp')!;
  fake.update('gateways', { ...gw, metadata: { ...gw.metadata, labels: { team: 'payments' } } });
  await until(() => fake.get('deployments', 'prod', 'wp')?.metadata?.labels?.['team'] === 'payments', 'the new infrastructure label reaches the Deployment');
  t.is((fake.get('deployments', 'prod', 'wp')?.['spec'] as { template: { metadata: { labels: Record<string, string> } } }).template.metadata.labels['team'], 'payments');

  fake.delete('services', 'prod', 'wp');
  await until(() => fake.get('services', 'prod', 'wp') !== undefined, 'the Service is re-created');
});

test('cluster: other classes and revisions are left alone; a Gateway without an HBONE listener is refused in its status', async (t) => {
  const { fake, log } = await start(t);
  createGateway(fake, { ...waypointGateway({ name: 'ingress', namespace: 'prod' }), spec: { gatewayClassName: 'istio', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] } });
  createGateway(fake, waypointGateway({ name: 'canary', namespace: 'prod', revision: 'canary' }));
  createGateway(fake, { ...waypointGateway({ name: 'broken', namespace: 'prod' }), spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] } });
  createGateway(fake, waypointGateway({ name: 'good', namespace: 'prod' }));
  await until(() => conditions(fake.get('gateways', 'prod', 'broken'))['Accepted'] === 'False', 'the refusal is written');
  await until(() => fake.get('deployments', 'prod', 'good') !== undefined, 'the valid waypoint is still deployed');
  const broken = fake.get('gateways', 'prod', 'broken')?.['status'] as { conditions: Array<{ type: string; reason: string }>; listeners: Array<{ conditions: Array<{ reason: string }> }> };
  t.is(broken.conditions.find((c) => c.type === 'Accepted')?.reason, 'ListenersNotValid');
  t.is(broken.listeners[0]?.conditions[0]?.reason, 'UnsupportedProtocol');
  t.true(log.records.some((r) => r['code'] === 'WAYPOINT_CONTROLLER_REFUSED' && r['gateway'] === 'prod/broken'));
  for (const name of ['ingress', 'canary', 'broken']) {
    t.is(fake.get('deployments', 'prod', name), undefined, `${name}: no Deployment`);
    t.is(fake.get('services', 'prod', name), undefined, `${name}: no Service`);
  }
  t.is(fake.get('gateways', 'prod', 'ingress')?.['status'], undefined);
  t.is(fake.get('gateways', 'prod', 'canary')?.['status'], undefined);
});

test('cluster: an invalid name override is refused; once fixed the waypoint deploys, taking over a same-named Service', async (t) => {
  const { fake } = await start(t);
  fake.create('services', { apiVersion: 'v1', kind: 'Service', metadata: { name: 'wp', namespace: 'prod' } } as KubeObjectJson);
  createGateway(fake, { ...waypointGateway({ name: 'wp', namespace: 'prod' }), metadata: { name: 'wp', namespace: 'prod', annotations: { 'gateway.istio.io/name-override': 'Bad_Name' } } });
  await until(() => conditions(fake.get('gateways', 'prod', 'wp'))['Accepted'] === 'False', 'an invalid name override is refused');
  t.is(fake.get('deployments', 'prod', 'wp'), undefined);
  const gw = fake.get('gateways', 'prod', 'wp')!;
  fake.update('gateways', { ...gw, metadata: { ...gw.metadata, annotations: {} } });
  await until(() => conditions(fake.get('gateways', 'prod', 'wp'))['Accepted'] === 'True', 'accepted once fixed');
  t.deepEqual((fake.get('services', 'prod', 'wp')?.['spec'] as { selector: unknown }).selector, { 'gateway.networking.k8s.io/gateway-name': 'wp' });
});

test('cluster: writes the API refuses are retried with backoff and logged with their code; they succeed once the API accepts them', async (t) => {
  const fake = await startFakeKube({ token: 'right' });
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(fake.kubeconfigPath);
  const log = captureLog();
  const controller = startWaypointController({ render: RENDER, logger: log.logger, retry: { initialMs: 20, maxMs: 100, jitter: 0 }, mode: { kind: 'cluster', kubeConfig, resyncMs: 0 } });
  t.teardown(async () => {
    await controller.close();
    await fake.close();
  });
  await controller.synced;
  await fake.waitForWatchRequests(2);
  // The watches stay open; every new request now carries a token the API rejects.
  const user = kubeConfig.getCurrentUser() as { token?: string };
  user.token = 'revoked';
  createGateway(fake, waypointGateway({ name: 'wp', namespace: 'prod' }));
  const first = await log.waitForCode('WAYPOINT_CONTROLLER_APPLY_FAILED');
  await log.waitForCode('WAYPOINT_CONTROLLER_APPLY_FAILED', log.records.indexOf(first) + 1);
  t.regex(String(first['err']), /HTTP 401/);
  t.is(fake.get('deployments', 'prod', 'wp'), undefined);
  user.token = 'right';
  await until(() => conditions(fake.get('gateways', 'prod', 'wp'))['Accepted'] === 'True', 'applied and accepted after the retries');
  t.truthy(fake.get('deployments', 'prod', 'wp'));
});

test('cluster: the istio-waypoint GatewayClass is created when missing and marked Accepted; an existing one is kept as it is, and accepted', async (t) => {
  const { fake } = await start(t);
  await until(() => conditions(fake.get('gatewayclasses', undefined, 'istio-waypoint'))['Accepted'] === 'True', 'the class is created and accepted');
  const gc = fake.get('gatewayclasses', undefined, 'istio-waypoint');
  t.deepEqual(gc?.['spec'], { controllerName: 'istio.io/mesh-controller', description: 'The default Istio waypoint GatewayClass' });
  t.deepEqual(managers(gc).sort(), ['istio.io/gateway-controller']);

  const other = await startFakeKube();
  t.teardown(() => other.close());
  other.create('gatewayclasses', { apiVersion: 'gateway.networking.k8s.io/v1', kind: 'GatewayClass', metadata: { name: 'istio-waypoint' }, spec: { controllerName: 'istio.io/mesh-controller', description: 'ours, by hand' } } as KubeObjectJson);
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(other.kubeconfigPath);
  const controller = startWaypointController({ render: RENDER, logger: captureLog().logger, mode: { kind: 'cluster', kubeConfig, resyncMs: 0 } });
  t.teardown(() => controller.close());
  await until(() => conditions(other.get('gatewayclasses', undefined, 'istio-waypoint'))['Accepted'] === 'True', 'the existing class is accepted');
  t.is((other.get('gatewayclasses', undefined, 'istio-waypoint')?.['spec'] as { description: string }).description, 'ours, by hand');
  t.false(other.requests.some((r) => r.contentType === 'application/apply-patch+yaml' && r.path.includes('gatewayclasses')), 'not re-applied');
});

test('cluster: without the Gateway API served the controller says so once, keeps running, and closes', async (t) => {
  const fake = await startFakeKube({ omitGroups: ['gateway.networking.k8s.io'] });
  const kubeConfig = new KubeConfig();
  kubeConfig.loadFromFile(fake.kubeconfigPath);
  const log = captureLog();
  const controller = startWaypointController({ render: RENDER, logger: log.logger, mode: { kind: 'cluster', kubeConfig, resyncMs: 0 } });
  const record = await log.waitForCode('WAYPOINT_CONTROLLER_APPLY_FAILED');
  t.regex(String(record['msg']), /the Gateway API is not served/);
  await controller.close();
  await fake.close();
  t.is(log.records.filter((r) => r['code'] === 'WAYPOINT_CONTROLLER_APPLY_FAILED').length, 1);
});

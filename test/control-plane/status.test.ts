import test from 'ava';
import { parseControlPlaneConfig } from '../../src/control-plane/config.ts';
import { startControlPlane } from '../../src/control-plane/control-plane.ts';
import { nextConditions } from '../../src/control-plane/status-writer.ts';
import { startFakeKube, type KubeObjectJson } from '../../src/demo/api-server.ts';
import { captureLog } from '../helpers/log.ts';
import { until } from '../helpers/prometheus.ts';
import { load, PODS, podName } from './bookinfo.ts';

// The conditions Istio writes (§3.10), written through the status subresource of the fake API server.

const WB = 'istio.io/WaypointBound';

test('nextConditions: replaces only owned types, keeps the transition time while the status holds, nothing when unchanged', (t) => {
  const other = { type: 'LoadBalancer', status: 'True' as const, reason: 'x', message: 'y', lastTransitionTime: 't0' };
  const bound = { type: WB, status: 'True' as const, reason: 'WaypointAccepted', message: 'bound to ns/wp' };
  const first = nextConditions([other], [WB], [bound], 't1');
  t.deepEqual(first, [other, { ...bound, lastTransitionTime: 't1' }]);
  t.is(nextConditions(first!, [WB], [bound], 't2'), undefined, 'unchanged: no write');
  const moved = nextConditions(first!, [WB], [{ ...bound, message: 'bound to ns/wp2' }], 't3');
  t.is(moved?.[1]?.lastTransitionTime, 't1', 'same status: the transition time stays');
  const flipped = nextConditions(first!, [WB], [{ type: WB, status: 'False', reason: 'WaypointIsNotReady', message: 'm' }], 't4');
  t.is(flipped?.[1]?.lastTransitionTime, 't4');
  t.deepEqual(nextConditions(first!, [WB], [], 't5'), [other], 'no longer reported: removed');
});

test('status: WaypointBound on services and ZtunnelAccepted on policies are written, follow changes, and do not loop', async (t) => {
  const fake = await startFakeKube();
  t.teardown(() => fake.close());
  load(fake);
  const svc = fake.get('services', 'bookinfo', 'reviews') as KubeObjectJson;
  fake.update('services', { ...svc, status: { conditions: [{ type: 'Other', status: 'True', reason: 'Theirs', message: 'kept' }] } } as KubeObjectJson);
  const config = parseControlPlaneConfig({ 'listen-address': '127.0.0.1', 'grpc-port': '0', 'monitoring-port': '0', 'readiness-port': '0' }, { KUBECONFIG: fake.kubeconfigPath });
  if (!config.ok) throw new Error(config.errors.join('; '));
  const cp = await startControlPlane(config.value, { logger: captureLog().logger, backoff: { initialMs: 5, maxMs: 50 } });
  t.teardown(() => cp.close());
  await cp.ready;
  const conditions = (resource: 'services' | 'authorizationpolicies', name: string) =>
    ((fake.get(resource, 'bookinfo', name)?.['status'] as { conditions?: Array<{ type: string; status: string; reason: string }> } | undefined)?.conditions ?? []).map((c) => `${c.type}=${c.status}/${c.reason}`);
  await until(() => conditions('services', 'reviews').length === 2 && conditions('authorizationpolicies', 'ratings-from-reviews').length === 1, 'conditions written', 10_000);
  t.deepEqual(conditions('services', 'reviews'), ['Other=True/Theirs', `${WB}=True/WaypointAccepted`]);
  t.deepEqual(conditions('authorizationpolicies', 'ratings-from-reviews'), ['ZtunnelAccepted=False/UnsupportedValue']);
  await until(() => conditions('authorizationpolicies', 'productpage-viewer').length === 1, 'every policy', 10_000);
  t.deepEqual(conditions('authorizationpolicies', 'productpage-viewer'), ['ZtunnelAccepted=True/Accepted']);
  t.deepEqual(conditions('services', 'ratings'), [], 'use-waypoint none: no condition');
  t.deepEqual(conditions('authorizationpolicies', 'reviews-get-only'), [], 'a waypoint policy: not ztunnel\'s to report');

  // The waypoint loses its address: the services' condition flips.
  const gw = fake.get('gateways', 'bookinfo', 'waypoint') as KubeObjectJson;
  fake.update('gateways', { ...gw, status: { addresses: [] } } as KubeObjectJson);
  await until(() => conditions('services', 'reviews').includes(`${WB}=False/WaypointIsNotReady`), 'the flipped condition', 10_000);

  // Settled: an unrelated change writes nothing more.
  const patches = () => fake.requests.filter((r) => r.method === 'PATCH' && r.path.endsWith('/status')).length;
  await until(async () => {
    const before = patches();
    await new Promise((resolve) => setTimeout(resolve, 100));
    return patches() === before;
  }, 'writes to settle', 10_000);
  const settled = patches();
  const pod = fake.get('pods', 'bookinfo', podName(PODS[1]!)) as KubeObjectJson;
  const flushed = new Promise((resolve) => cp.translator.once('flush', resolve));
  fake.update('pods', { ...pod, metadata: { ...pod.metadata, labels: { ...pod.metadata?.labels, touched: 'yes' } } } as KubeObjectJson);
  await flushed;
  await new Promise((resolve) => setTimeout(resolve, 100));
  t.is(patches(), settled);
});

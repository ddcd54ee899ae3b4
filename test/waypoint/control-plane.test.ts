import test from 'ava';
import { parseControlPlaneConfig } from '../../src/control-plane/config.ts';
import { startControlPlane, type ControlPlane } from '../../src/control-plane/control-plane.ts';
import { L7_COLLECTIONS, l7Extension } from '../../src/control-plane/l7/extension.ts';
import { startFakeKube, type FakeKube } from '../../src/demo/api-server.ts';
import { captureLog } from '../helpers/log.ts';
import { until } from '../helpers/prometheus.ts';
import { PODS, startFixture, VIP } from './harness.ts';

/**
 * The waypoint configured by the control plane, nothing in between written by the test: Services, Pods, a
 * waypoint Gateway, an HTTPRoute (a 90/10 split over two backend Services, and a header route) and a waypoint
 * AuthorizationPolicy in the (fake) cluster; the control plane translates them and serves the workload API and
 * the L7 types over delta ADS; the waypoint (its token checked by TokenReview) routes real HTTP requests that
 * arrive over HBONE to the pods' HBONE servers.
 */

type Input = Parameters<FakeKube['create']>[1];

function cluster(fake: FakeKube, appPorts: readonly number[]): void {
  fake.create('namespaces', { metadata: { name: 'istio-system' } });
  fake.create('namespaces', { metadata: { name: 'prod', labels: { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'waypoint' } } });
  fake.create('gateways', {
    metadata: { name: 'waypoint', namespace: 'prod' },
    spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
    status: { addresses: [{ type: 'Hostname', value: 'waypoint.prod.svc.cluster.local' }] },
  } as Input);
  const service = (name: string, ip: string, selector: Record<string, string>) =>
    fake.create('services', {
      metadata: { name, namespace: 'prod' },
      spec: { selector, clusterIP: ip, clusterIPs: [ip], ports: [{ name: 'http', port: 9080, targetPort: 'http', protocol: 'TCP' }] },
    } as Input);
  service('reviews', VIP.reviews, { app: 'reviews' });
  service('reviews-v1', '10.96.0.20', { app: 'reviews', version: 'v1' });
  service('reviews-v2', '10.96.0.21', { app: 'reviews', version: 'v2' });
  PODS.forEach((p, i) => {
    fake.create('pods', {
      metadata: { name: p.name, namespace: 'prod', labels: { app: 'reviews', version: p.version }, annotations: { 'ambient.istio.io/redirection': 'enabled' } },
      spec: { nodeName: 'node-a', serviceAccountName: 'reviews', containers: [{ name: 'app', ports: [{ name: 'http', containerPort: appPorts[i] }] }] },
      status: { phase: 'Running', podIP: p.ip, podIPs: [{ ip: p.ip }], conditions: [{ type: 'Ready', status: 'True' }] },
    } as Input);
  });
  fake.create('httproutes', {
    metadata: { name: 'reviews-split', namespace: 'prod' },
    spec: {
      parentRefs: [{ group: '', kind: 'Service', name: 'reviews', port: 9080 }],
      rules: [
        { matches: [{ headers: [{ name: 'x-canary', value: 'yes' }] }], backendRefs: [{ name: 'reviews-v2', port: 9080 }] },
        { backendRefs: [{ name: 'reviews-v1', port: 9080, weight: 90 }, { name: 'reviews-v2', port: 9080, weight: 10 }] },
      ],
    },
  } as Input);
  fake.create('authorizationpolicies', {
    metadata: { name: 'no-delete', namespace: 'prod' },
    spec: { targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'waypoint' }], action: 'DENY', rules: [{ to: [{ operation: { methods: ['DELETE'] } }] }] },
  } as Input);
  fake.registerToken('waypoint-token', { username: 'system:serviceaccount:prod:waypoint', audiences: ['istio-ca'] });
}

test('control plane → waypoint: an HTTPRoute split 90/10, a header route and a DENY policy from the cluster, served over delta ADS and applied to real requests', async (t) => {
  t.timeout(120_000);
  const fake = await startFakeKube();
  t.teardown(() => fake.close());
  let cp: ControlPlane | undefined;
  t.teardown(async () => cp?.close());
  const log = captureLog();
  const fixture = await startFixture(t, {
    async workloadApi(appPorts, pki) {
      cluster(fake, appPorts);
      const config = parseControlPlaneConfig({ 'listen-address': '127.0.0.1', 'grpc-port': '0', 'monitoring-port': '0', 'readiness-port': '0' }, { KUBECONFIG: fake.kubeconfigPath });
      if (!config.ok) throw new Error(config.errors.join('; '));
      cp = await startControlPlane(config.value, { logger: log.logger, ca: pki.ca, extensions: [l7Extension({ logger: log.logger })], extraCollections: L7_COLLECTIONS, backoff: { initialMs: 5, maxMs: 50 } });
      await cp.ready;
      return {
        XDS_ADDRESS: `https://localhost:${cp.ports().grpc}`, XDS_ROOT_CA: cp.rootCertPem(), ALT_XDS_HOSTNAME: 'istiod.istio-system.svc', AUTH_TOKEN: 'waypoint-token',
      };
    },
  });
  await until(async () => (await fetch(`http://127.0.0.1:${fixture.waypoint.ports().readiness}/healthz/ready`)).status === 200, 'the waypoint to be ready (every xDS type answered)', 15_000);
  t.is(cp?.xdsStats().nacks, 0, 'the waypoint accepted everything the control plane sent');

  const authority = `${VIP.reviews}:9080`;
  const podOf = async (o: { method?: string; headers?: Record<string, string> } = {}) => {
    const res = await fixture.http1(authority, { path: '/', ...o });
    return { status: res.status, pod: res.status === 200 ? (JSON.parse(res.body) as { pod: string }).pod : undefined, body: res.body };
  };

  const N = 400;
  const counts: Record<string, number> = {};
  for (let i = 0; i < N; i++) {
    const { status, pod } = await podOf();
    t.is(status, 200);
    counts[pod ?? 'none'] = (counts[pod ?? 'none'] ?? 0) + 1;
  }
  const v2 = counts['reviews-v2'] ?? 0;
  // Binomial(400, 0.1): mean 40, sd 6; 4.5 sd either side.
  t.true(v2 >= 13 && v2 <= 67, `about 10% to v2: ${JSON.stringify(counts)}`);
  t.is((counts['reviews-v1'] ?? 0) + v2, N);

  for (let i = 0; i < 5; i++) t.is((await podOf({ headers: { 'x-canary': 'yes' } })).pod, 'reviews-v2', 'the header route wins');
  const denied = await podOf({ method: 'DELETE' });
  t.is(denied.status, 403);
  t.is(denied.body, 'RBAC: access denied');

  // A change in the cluster reaches the waypoint: all traffic to v2.
  fake.update('httproutes', {
    metadata: { name: 'reviews-split', namespace: 'prod' },
    spec: { parentRefs: [{ group: '', kind: 'Service', name: 'reviews', port: 9080 }], rules: [{ backendRefs: [{ name: 'reviews-v2', port: 9080 }] }] },
  } as Input);
  await until(async () => {
    const results = await Promise.all(Array.from({ length: 10 }, () => podOf()));
    return results.every((r) => r.pod === 'reviews-v2');
  }, 'the new route to reach the waypoint', 10_000);
});

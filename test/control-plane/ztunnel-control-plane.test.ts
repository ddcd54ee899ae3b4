import test from 'ava';
import { parseControlPlaneConfig } from '../../src/control-plane/config.ts';
import { startControlPlane } from '../../src/control-plane/control-plane.ts';
import { createHboneClient } from '../../src/hbone/client.ts';
import { HboneError } from '../../src/hbone/errors.ts';
import { startFakeKube, type KubeObjectJson } from '../../src/demo/api-server.ts';
import { startDedicatedZtunnel } from '../helpers/dedicated-ztunnel.ts';
import { captureLog } from '../helpers/log.ts';
import { testPki } from '../helpers/pki.ts';
import { sample, until } from '../helpers/prometheus.ts';
import { echo, readAll, tcpServer } from '../helpers/tcp.ts';
import { load, PODS, podName } from './bookinfo.ts';
import { snapshotJson } from './golden.ts';

/**
 * The real ztunnel (dedicated mode, as productpage) against `startControlPlane` on the fake API server: it
 * authenticates with a token the API server's TokenReview knows, receives exactly the control plane's snapshot,
 * gets its certificate from the control plane's CA, enforces the translated policies, and follows a policy and a
 * pod change pushed over delta ADS.
 */

const PRODUCTPAGE = podName(PODS[0]!);

const plain = (value: unknown): unknown => JSON.parse(JSON.stringify(value, (_k, v: unknown) => (v instanceof Map ? Object.fromEntries([...v].sort(([a], [b]) => (String(a) < String(b) ? -1 : 1))) : v)));

test('ztunnel ← control plane: exactly the snapshot, a certificate from its CA, policies enforced, changes pushed', async (t) => {
  const pki = testPki();
  const fake = await startFakeKube();
  load(fake);
  // productpage answers on loopback, where the ztunnel's inbound delivers.
  const pp = fake.get('pods', 'bookinfo', PRODUCTPAGE) as KubeObjectJson & { status: Record<string, unknown> };
  fake.update('pods', { ...pp, status: { ...pp.status, podIP: '127.0.0.1', podIPs: [{ ip: '127.0.0.1' }] } } as KubeObjectJson);
  fake.registerToken('productpage-token', { username: 'system:serviceaccount:bookinfo:bookinfo-productpage', audiences: ['istio-ca'] });
  const app = await tcpServer(echo);
  const cpConfig = parseControlPlaneConfig({ 'listen-address': '127.0.0.1', 'grpc-port': '0', 'monitoring-port': '0', 'readiness-port': '0' }, { KUBECONFIG: fake.kubeconfigPath });
  if (!cpConfig.ok) throw new Error(cpConfig.errors.join('; '));
  const cp = await startControlPlane(cpConfig.value, { logger: captureLog().logger, ca: pki.ca, backoff: { initialMs: 5, maxMs: 50 } });
  await cp.ready;
  const zt = await startDedicatedZtunnel(cp, { workloadInfo: `bookinfo/${PRODUCTPAGE}/bookinfo-productpage`, token: 'productpage-token', nodeName: 'node-z' });
  const client = createHboneClient({ certificates: pki.certificates });
  t.teardown(async () => {
    await client.close();
    await zt.close();
    await cp.close();
    await fake.close();
    await app.close();
    await pki.close();
  });
  const ports = zt.ports();
  const get = async (port: number, path: string) => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    return { status: res.status, body: await res.text() };
  };
  const outcome = async (): Promise<string | number> => {
    try {
      const { stream } = await client.connect({
        source: pki.id('bookinfo', 'bookinfo-reviews'),
        expectedIdentities: [pki.id('bookinfo', 'bookinfo-productpage')],
        address: { host: '127.0.0.1', port: ports.proxy!.inbound },
        sourceIp: '127.0.0.2',
        authority: `127.0.0.1:${app.port}`,
      });
      stream.end('hello');
      return await readAll(stream);
    } catch (err) {
      return err instanceof HboneError ? err.status ?? String(err) : String(err);
    }
  };

  // 1. Ready once xDS synced; the store holds exactly what the control plane serves.
  await until(async () => (await get(ports.readiness, '/healthz/ready')).status === 200, 'ztunnel readiness', 10_000);
  const served = snapshotJson(cp.snapshot);
  const expectWorkloads = Object.fromEntries(Object.entries(served.addresses).filter(([, a]) => (a as { kind: string }).kind === 'workload').map(([k, a]) => [k, (a as { workload: unknown }).workload]));
  const expectServices = Object.fromEntries(Object.entries(served.addresses).filter(([, a]) => (a as { kind: string }).kind === 'service').map(([k, a]) => [k, (a as { service: unknown }).service]));
  t.is(Object.keys(expectWorkloads).length, 7);
  t.deepEqual(zt.state.counts(), { workloads: 7, services: 5, policies: 4 });
  for (const [uid, w] of Object.entries(expectWorkloads)) t.deepEqual(plain(zt.state.workloadByUid(uid)), w, uid);
  for (const [key, svc] of Object.entries(expectServices)) {
    const [ns = '', hostname = ''] = key.split('/');
    t.deepEqual(plain(zt.state.service(ns, hostname)), svc, key);
  }
  for (const [key, policy] of Object.entries(served.authorizations)) {
    const [ns = '', name = ''] = key.split('/');
    t.deepEqual(plain(zt.state.policy(ns, name)), policy, key);
  }
  t.is(cp.xdsStats().nacks, 0);

  // 2. The translated ALLOW policy (port 9080 only) denies this tunnel: TLS with the CA's certificate, then 401.
  t.is(await outcome(), 401);
  const dump = JSON.parse((await get(ports.admin, '/config_dump')).body) as { certificates: Array<{ identity: string; state: string; certChain: Array<{ subjectAltNames?: unknown }> }> };
  const cert = dump.certificates.find((c) => c.identity === 'spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage');
  t.is(cert?.state, 'Available', 'the certificate came from the control plane CA');
  t.true(fake.requests.some((r) => r.path === '/apis/authentication.k8s.io/v1/tokenreviews'), 'after a TokenReview');

  // 3. A policy change is pushed: without the ALLOW policy the tunnel reaches the app.
  fake.delete('authorizationpolicies', 'bookinfo', 'productpage-viewer');
  let result: string | number = '';
  await until(async () => (result = await outcome()) === 'hello', 'the policy deletion to reach ztunnel', 10_000);
  t.is(result, 'hello');

  // 4. A pod change is pushed: a new pod appears, a label change moves a workload out of its service.
  fake.create('pods', {
    metadata: { name: 'details-v2-abc', namespace: 'bookinfo', labels: { app: 'details', version: 'v2' } },
    spec: { nodeName: 'node-b', serviceAccountName: 'bookinfo-details' },
    status: { phase: 'Running', podIP: '10.244.2.30', conditions: [{ type: 'Ready', status: 'True' }] },
  } as KubeObjectJson);
  await until(() => zt.state.workloadByUid('Kubernetes//Pod/bookinfo/details-v2-abc') !== undefined, 'the new pod in ztunnel', 10_000);
  t.deepEqual([...zt.state.workloadByUid('Kubernetes//Pod/bookinfo/details-v2-abc')!.services.keys()], ['bookinfo/details.bookinfo.svc.cluster.local']);
  t.deepEqual(zt.state.endpoints('bookinfo', 'details.bookinfo.svc.cluster.local').map((e) => e.workload.name).sort(), ['details-v1-65599dcf68-x1y2z', 'details-v2-abc']);
  const metrics = await (await fetch(`http://127.0.0.1:${cp.ports().monitoring}/metrics`)).text();
  t.regex(metrics, /^ambient_control_plane_xds_streams 1$/m);
  t.is(sample(metrics, 'ambient_control_plane_objects', 'kind="Pod"'), 8);
  t.is((await fetch(`http://127.0.0.1:${cp.ports().readiness}/healthz/ready`)).status, 200);
  // Bad input shows up in the counts and, object by object, on /debug/problems.
  fake.create('services', { metadata: { name: 'broken', namespace: 'bookinfo' }, spec: { clusterIP: 'nope', ports: [{ port: 80 }] } } as KubeObjectJson);
  let problems: Array<{ kind: string; key: string; report: { problems: string[] } }> = [];
  await until(async () => (problems = (await (await fetch(`http://127.0.0.1:${cp.ports().monitoring}/debug/problems`)).json()) as typeof problems).length > 0, 'the problem to be listed', 10_000);
  t.deepEqual(problems.map((p) => `${p.kind} ${p.key}: ${p.report.problems.join('; ')}`), ['Service bookinfo/broken: spec.clusterIPs[0]: "nope" is not an IP address']);
  const after = await (await fetch(`http://127.0.0.1:${cp.ports().monitoring}/metrics`)).text();
  t.is(sample(after, 'ambient_control_plane_translation_problems_total', 'kind="Service"'), 1);
  t.regex(after, /^ambient_control_plane_objects_with_problems 1$/m);
});

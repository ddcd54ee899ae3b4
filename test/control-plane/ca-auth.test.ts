import test, { type ExecutionContext } from 'ava';
import { identityFromReview, nodeAuthorizer, parseServiceAccounts, parseStaticTokens } from '../../src/control-plane/ca-auth.ts';
import { parseControlPlaneConfig } from '../../src/control-plane/config.ts';
import { startControlPlane, type ControlPlane } from '../../src/control-plane/control-plane.ts';
import type { Pod } from '../../src/control-plane/kube-objects.ts';
import { formatSpiffeId, spiffeId } from '../../src/identity/spiffe.ts';
import { buildCsrPem, generateKeyPair } from '../../src/identity/x509.ts';
import { GrpcCaClient } from '../../src/workload-api/ca-client.ts';
import { startFakeKube, type FakeKube } from '../../src/demo/api-server.ts';
import { captureLog } from '../helpers/log.ts';
import { tempDir } from '../helpers/tmp.ts';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { load } from './bookinfo.ts';

// Who gets which certificate: TokenReview (cluster) or static tokens (local), and node agents only for pods of their node.

const TD = 'cluster.local';
const ZTUNNEL = 'system:serviceaccount:istio-system:ztunnel';

test('identityFromReview: service account users only; the node from node-name, else from pod-name', (t) => {
  const noPods = () => undefined;
  t.like(identityFromReview({ authenticated: true, user: { username: 'system:serviceaccount:a:b' } }, TD, noPods), { ok: true, value: { identity: spiffeId(TD, 'a', 'b') } });
  const withNode = identityFromReview({ authenticated: true, user: { username: ZTUNNEL, extra: { 'authentication.kubernetes.io/node-name': ['n1'] } } }, TD, noPods);
  t.true(withNode.ok && withNode.value.node === 'n1');
  const viaPod = identityFromReview({ authenticated: true, user: { username: ZTUNNEL, extra: { 'authentication.kubernetes.io/pod-name': ['zt-1'] } } }, TD, (ns, pod) => (ns === 'istio-system' && pod === 'zt-1' ? 'n2' : undefined));
  t.true(viaPod.ok && viaPod.value.node === 'n2');
  t.false(identityFromReview({ authenticated: true, user: { username: 'alice' } }, TD, noPods).ok);
  const refused = identityFromReview({ error: 'invalid bearer token' }, TD, noPods);
  t.false(refused.ok);
  t.regex(refused.ok ? '' : refused.errors[0] ?? '', /not accepted.*invalid bearer token/);
});

test('nodeAuthorizer: only trusted node accounts, only pods on the caller node, same trust domain', (t) => {
  const pods: Pod[] = [
    { metadata: { name: 'a', namespace: 'ns' }, spec: { nodeName: 'n1', serviceAccountName: 'web' } },
    { metadata: { name: 'b', namespace: 'ns' }, spec: { nodeName: 'n2', serviceAccountName: 'db' } },
    { metadata: { name: 'c', namespace: 'ns' }, spec: { nodeName: 'n1' } },
  ];
  const authz = nodeAuthorizer({ trustDomain: TD, trustedNodeAccounts: [{ namespace: 'istio-system', serviceAccount: 'ztunnel' }], podsOnNode: (n) => pods.filter((p) => p.spec?.nodeName === n) });
  const zt = spiffeId(TD, 'istio-system', 'ztunnel');
  t.true(authz.mayImpersonate(zt, spiffeId(TD, 'ns', 'web'), { node: 'n1' }));
  t.true(authz.mayImpersonate(zt, spiffeId(TD, 'ns', 'default'), { node: 'n1' }), 'no serviceAccountName is default');
  t.false(authz.mayImpersonate(zt, spiffeId(TD, 'ns', 'db'), { node: 'n1' }), 'a pod of another node');
  t.false(authz.mayImpersonate(zt, spiffeId(TD, 'ns', 'web'), {}), 'no node known');
  t.false(authz.mayImpersonate(spiffeId(TD, 'ns', 'web'), spiffeId(TD, 'ns', 'db'), { node: 'n2' }), 'not a node account');
  t.false(authz.mayImpersonate(zt, spiffeId('other.td', 'ns', 'web'), { node: 'n1' }), 'another trust domain');
});

test('static tokens and node account lists parse, with line-numbered errors', (t) => {
  t.deepEqual(parseStaticTokens('# comment\n\ntok-1 ns/sa\ntok-2 istio-system/ztunnel node-a\n'), {
    ok: true,
    value: [{ token: 'tok-1', account: { namespace: 'ns', serviceAccount: 'sa' } }, { token: 'tok-2', account: { namespace: 'istio-system', serviceAccount: 'ztunnel' }, node: 'node-a' }],
  });
  t.deepEqual(parseStaticTokens('tok\nt ns/sa n extra'), { ok: false, errors: ['line 1: expected "<token> <namespace>/<serviceAccount> [node]"', 'line 2: expected "<token> <namespace>/<serviceAccount> [node]"'] });
  t.deepEqual(parseServiceAccounts('istio-system/ztunnel, kube-system/x'), { ok: true, value: [{ namespace: 'istio-system', serviceAccount: 'ztunnel' }, { namespace: 'kube-system', serviceAccount: 'x' }] });
  t.false(parseServiceAccounts('nope').ok);
});

async function controlPlane(t: ExecutionContext, flags: Record<string, string>, env: Record<string, string>): Promise<ControlPlane> {
  const config = parseControlPlaneConfig({ 'listen-address': '127.0.0.1', 'grpc-port': '0', 'monitoring-port': '0', 'readiness-port': '0', ...flags }, env);
  if (!config.ok) throw new Error(config.errors.join('; '));
  const cp = await startControlPlane(config.value, { logger: captureLog().logger, backoff: { initialMs: 5, maxMs: 50 } });
  t.teardown(() => cp.close());
  await cp.ready;
  return cp;
}

function client(cp: ControlPlane, token: string): GrpcCaClient {
  return new GrpcCaClient({ address: `https://localhost:${cp.ports().grpc}`, rootCaPem: cp.rootCertPem(), auth: { token: { kind: 'literal', token }, clusterId: 'Kubernetes' }, alternateHostname: 'istiod.istio-system.svc', timeoutMs: 5000 });
}

async function request(cp: ControlPlane, token: string, ns: string, sa: string, impersonate: boolean): Promise<string> {
  const id = formatSpiffeId(spiffeId(TD, ns, sa));
  const csrPem = buildCsrPem(generateKeyPair().privateKey, [id]);
  try {
    const chain = await client(cp, token).createCertificate({ csrPem, ttlSeconds: 3600, ...(impersonate ? { impersonatedIdentity: id } : {}) });
    const leaf = new X509Certificate(chain[0]!);
    return `issued ${leaf.subjectAltName ?? ''}`;
  } catch (err) {
    return `refused: ${(err as Error).message}`;
  }
}

async function cluster(t: ExecutionContext): Promise<FakeKube> {
  const fake = await startFakeKube();
  t.teardown(() => fake.close());
  load(fake);
  return fake;
}

test('cluster mode: TokenReview authenticates; the node agent gets certificates only for pods on its node', async (t) => {
  const fake = await cluster(t);
  fake.registerToken('zt-a', { username: ZTUNNEL, audiences: ['istio-ca'], extra: { 'authentication.kubernetes.io/node-name': ['node-a'] } });
  fake.registerToken('zt-b-by-pod', { username: ZTUNNEL, extra: { 'authentication.kubernetes.io/pod-name': ['ztunnel-b'] } });
  fake.registerToken('productpage', { username: 'system:serviceaccount:bookinfo:bookinfo-productpage' });
  fake.registerToken('wrong-audience', { username: ZTUNNEL, audiences: ['kubernetes'] });
  fake.create('pods', { metadata: { name: 'ztunnel-b', namespace: 'istio-system' }, spec: { nodeName: 'node-b', serviceAccountName: 'ztunnel' } } as never);
  const cp = await controlPlane(t, {}, { KUBECONFIG: fake.kubeconfigPath });
  t.is(await request(cp, 'productpage', 'bookinfo', 'bookinfo-productpage', false), 'issued URI:spiffe://cluster.local/ns/bookinfo/sa/bookinfo-productpage');
  t.regex(await request(cp, 'productpage', 'bookinfo', 'bookinfo-details', true), /refused: .*PERMISSION_DENIED|refused: .*may not request/);
  // productpage and details run on node-a, ratings on node-b.
  t.is(await request(cp, 'zt-a', 'bookinfo', 'bookinfo-details', true), 'issued URI:spiffe://cluster.local/ns/bookinfo/sa/bookinfo-details');
  t.regex(await request(cp, 'zt-a', 'bookinfo', 'bookinfo-ratings', true), /refused: .*may not request certificates for spiffe:\/\/cluster.local\/ns\/bookinfo\/sa\/bookinfo-ratings/);
  t.is(await request(cp, 'zt-b-by-pod', 'bookinfo', 'bookinfo-ratings', true), 'issued URI:spiffe://cluster.local/ns/bookinfo/sa/bookinfo-ratings', 'node from the token pod');
  t.regex(await request(cp, 'zt-b-by-pod', 'bookinfo', 'bookinfo-details', true), /refused/);
  t.regex(await request(cp, 'unknown', 'bookinfo', 'bookinfo-details', false), /refused: .*not accepted by the Kubernetes API server/);
  t.regex(await request(cp, 'wrong-audience', 'istio-system', 'ztunnel', false), /refused: .*not accepted/);
  t.true(fake.requests.some((r) => r.path === '/apis/authentication.k8s.io/v1/tokenreviews'));
});

test('local mode: static tokens, with the node from the token list', async (t) => {
  const dir = await tempDir(t);
  const config = join(dir, 'config');
  await mkdir(config);
  await writeFile(
    join(config, 'mesh.yaml'),
    [
      'apiVersion: v1\nkind: Pod\nmetadata: {name: web-1, namespace: shop}\nspec: {nodeName: n1, serviceAccountName: web}\nstatus: {podIP: 10.0.0.1}',
      'apiVersion: v1\nkind: Pod\nmetadata: {name: db-1, namespace: shop}\nspec: {nodeName: n2, serviceAccountName: db}\nstatus: {podIP: 10.0.0.2}',
    ].join('\n---\n'),
  );
  const tokens = join(dir, 'tokens');
  await writeFile(tokens, 'zt-n1 istio-system/ztunnel n1\nweb-token shop/web\n');
  const cp = await controlPlane(t, { 'config-dir': config, 'static-tokens': tokens }, {});
  t.is(await request(cp, 'web-token', 'shop', 'web', false), 'issued URI:spiffe://cluster.local/ns/shop/sa/web');
  t.is(await request(cp, 'zt-n1', 'shop', 'web', true), 'issued URI:spiffe://cluster.local/ns/shop/sa/web');
  t.regex(await request(cp, 'zt-n1', 'shop', 'db', true), /refused/);
  t.regex(await request(cp, 'nope', 'shop', 'web', false), /refused: .*not recognized/);
});

test('an unreachable API server: not ready (pending tasks named), no gRPC port, and close() still ends it all', async (t) => {
  const dir = await tempDir(t);
  const kubeconfig = join(dir, 'kubeconfig');
  await writeFile(kubeconfig, JSON.stringify({
    apiVersion: 'v1', kind: 'Config',
    clusters: [{ name: 'x', cluster: { server: 'http://127.0.0.1:1', 'insecure-skip-tls-verify': true } }],
    users: [{ name: 'x', user: {} }], contexts: [{ name: 'x', context: { cluster: 'x', user: 'x' } }], 'current-context': 'x',
  }));
  const config = parseControlPlaneConfig({ 'listen-address': '127.0.0.1', 'grpc-port': '0', 'monitoring-port': '0', 'readiness-port': '0' }, { KUBECONFIG: kubeconfig });
  if (!config.ok) throw new Error(config.errors.join('; '));
  const cp = await startControlPlane(config.value, { logger: captureLog().logger, backoff: { initialMs: 5, maxMs: 20 } });
  const readiness = await fetch(`http://127.0.0.1:${cp.ports().readiness}/healthz/ready`);
  t.is(readiness.status, 503);
  t.is(await readiness.text(), 'not ready, pending: sources synced, xds and ca listening');
  t.is(cp.ports().grpc, 0);
  const ready = cp.ready.then(() => 'ready', () => 'rejected');
  await cp.close();
  t.is(await ready, 'rejected');
});

test('the API server gone: a certificate request is UNAVAILABLE (not UNAUTHENTICATED), and a cached token still works', async (t) => {
  const fake = await cluster(t);
  fake.registerToken('productpage', { username: 'system:serviceaccount:bookinfo:bookinfo-productpage' });
  const cp = await controlPlane(t, {}, { KUBECONFIG: fake.kubeconfigPath });
  t.regex(await request(cp, 'productpage', 'bookinfo', 'bookinfo-productpage', false), /^issued/);
  await fake.close();
  t.regex(await request(cp, 'productpage', 'bookinfo', 'bookinfo-productpage', false), /^issued/, 'accepted tokens are remembered for a while');
  t.regex(await request(cp, 'other', 'bookinfo', 'bookinfo-productpage', false), /refused: .*UNAVAILABLE: cannot authenticate the caller: TokenReview failed/);
});

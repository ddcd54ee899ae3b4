import test, { type ExecutionContext } from 'ava';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, writeFile } from 'node:fs/promises';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { runInNewContext } from 'node:vm';
import { parseControlPlaneConfig } from '../../src/control-plane/config.ts';
import { startControlPlane, type ControlPlane } from '../../src/control-plane/control-plane.ts';
import type { MeshJson } from '../../src/control-plane/mesh-page.ts';
import { createMetricsRegistry } from '../../src/core/metrics.ts';
import { startStatsServer } from '../../src/core/stats-server.ts';
import { createHboneClient } from '../../src/hbone/client.ts';
import { HboneError } from '../../src/hbone/errors.ts';
import { createWaypointMetrics, httpLabels } from '../../src/waypoint/metrics.ts';
import { connectionLabels, createL4Metrics } from '../../src/ztunnel/metrics.ts';
import { startDedicatedZtunnel } from '../helpers/dedicated-ztunnel.ts';
import { captureLog } from '../helpers/log.ts';
import { testWorkload, testService } from '../helpers/mesh.ts';
import { testPki, type TestPki } from '../helpers/pki.ts';
import { until } from '../helpers/prometheus.ts';
import { echo, readAll, tcpServer } from '../helpers/tcp.ts';
import { tempDir } from '../helpers/tmp.ts';

/**
 * The mesh page served by a real control plane in local mode (`--config-dir`): `/mesh.json` built from the
 * folder's objects and a scrape of real HTTP metrics servers — a real ztunnel's stats port after real HBONE
 * traffic (an allowed tunnel and one its policy denies), and stats servers holding our proxies' metric families
 * (a waypoint's requests with a 90/10 split) — plus a target that is down, one that answers 500 and one that
 * serves text that is not metrics. `/mesh` is the page: HTML whose script (run here against a small DOM) draws
 * the SVG.
 */

const MESH = `apiVersion: v1
kind: Namespace
metadata: {name: shop, labels: {istio.io/dataplane-mode: ambient}}
---
apiVersion: v1
kind: Pod
metadata: {name: db, namespace: shop, labels: {app: db, version: v1}, annotations: {ambient.istio.io/redirection: enabled}}
spec: {nodeName: node-z, serviceAccountName: db}
status: {phase: Running, podIP: 127.0.0.1, conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: client, namespace: shop, labels: {app: client}, annotations: {ambient.istio.io/redirection: enabled}}
spec: {nodeName: node-z, serviceAccountName: client}
status: {phase: Running, podIP: 127.0.0.2, conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: intruder, namespace: shop, labels: {app: intruder}, annotations: {ambient.istio.io/redirection: enabled}}
spec: {nodeName: node-y, serviceAccountName: intruder}
status: {phase: Running, podIP: 127.0.0.3, conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: orders-v1, namespace: shop, labels: {app: orders, version: v1}, annotations: {ambient.istio.io/redirection: enabled}}
spec: {nodeName: node-y, serviceAccountName: orders}
status: {phase: Running, podIP: 10.1.0.11, conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Pod
metadata: {name: orders-v2, namespace: shop, labels: {app: orders, version: v2}, annotations: {ambient.istio.io/redirection: enabled}}
spec: {nodeName: node-z, serviceAccountName: orders}
status: {phase: Running, podIP: 10.1.0.12, conditions: [{type: Ready, status: "True"}]}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec: {clusterIP: 10.96.0.20, selector: {app: db}, ports: [{name: tcp, port: 5432, targetPort: DB_PORT}]}
---
apiVersion: v1
kind: Service
metadata: {name: orders, namespace: shop, labels: {istio.io/use-waypoint: waypoint}}
spec: {clusterIP: 10.96.0.21, selector: {app: orders}, ports: [{name: http, port: 80, targetPort: 8080}]}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: waypoint, namespace: shop}
spec:
  gatewayClassName: istio-waypoint
  listeners: [{name: mesh, port: 15008, protocol: HBONE}]
status:
  addresses: [{type: IPAddress, value: 127.0.10.1}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: no-intruder, namespace: shop}
spec:
  selector: {matchLabels: {app: db}}
  action: DENY
  rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/intruder]}}]}]
`;

/** The control plane on MESH, with the db Service's target port `dbPort` (where the db pod's app listens). */
async function startLocalControlPlane(t: ExecutionContext, pki: TestPki, options: { meshCacheMs?: number; dbPort?: number; extra?: string; meshDiscovery?: boolean } = {}): Promise<ControlPlane> {
  const root = await tempDir(t);
  const dir = join(root, 'mesh');
  await mkdir(dir);
  await writeFile(join(dir, 'mesh.yaml'), MESH.replace('DB_PORT', String(options.dbPort ?? 5432)));
  if (options.extra) await writeFile(join(dir, 'extra.yaml'), options.extra);
  await writeFile(join(root, 'tokens'), 'db-token shop/db\n');
  const config = parseControlPlaneConfig(
    { 'config-dir': dir, 'static-tokens': join(root, 'tokens'), 'listen-address': '127.0.0.1', 'grpc-port': '0', 'monitoring-port': '0', 'readiness-port': '0' },
    {},
  );
  if (!config.ok) throw new Error(config.errors.join('; '));
  const cp = await startControlPlane(config.value, {
    logger: captureLog().logger,
    ca: pki.ca,
    meshCacheMs: options.meshCacheMs ?? 0,
    ...(options.meshDiscovery !== undefined ? { meshDiscovery: options.meshDiscovery } : {}),
  });
  t.teardown(() => cp.close());
  await cp.ready;
  return cp;
}

const monitoringUrl = (cp: ControlPlane, path: string) => `http://127.0.0.1:${cp.ports().monitoring}${path}`;
const meshJson = async (cp: ControlPlane): Promise<MeshJson> => {
  const res = await fetch(monitoringUrl(cp, '/mesh.json'));
  if (res.status !== 200) throw new Error(`/mesh.json: ${res.status}`);
  return (await res.json()) as MeshJson;
};

/** A metrics server that answers whatever `respond` says (status, body). */
async function rawServer(t: ExecutionContext, respond: () => { status: number; body: string }): Promise<string> {
  const server: Server = createServer((_req, res) => {
    const { status, body } = respond();
    res.writeHead(status, { 'content-type': 'text/plain' });
    res.end(body);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/metrics`;
}

/** A port that was bound and released: nothing answers there. */
async function deadUrl(): Promise<string> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return `http://127.0.0.1:${port}/metrics`;
}

test('/mesh.json: a real ztunnel\'s metrics after real traffic, a waypoint\'s split, and targets that are down or broken', async (t) => {
  const pki = testPki();
  t.teardown(() => pki.close());
  const app = await tcpServer(echo);
  t.teardown(() => app.close());
  const cp = await startLocalControlPlane(t, pki, { dbPort: app.port });

  // Before any target: the configuration alone.
  const bare = await meshJson(cp);
  t.deepEqual(bare.targets, []);
  t.deepEqual(bare.edges, []);
  t.deepEqual(bare.nodes.map((n) => [n.name, n.workloads]), [
    ['node-y', ['wl:shop/intruder', 'wl:shop/orders-v1']],
    ['node-z', ['wl:shop/client', 'wl:shop/db', 'wl:shop/orders-v2']],
  ]);
  t.like(bare.workloads.find((w) => w.id === 'wl:shop/db'), { identity: 'spiffe://cluster.local/ns/shop/sa/db', ips: ['127.0.0.1'], captured: true, node: 'node-z', version: 'v1' });
  t.deepEqual(bare.waypoints.map((w) => [w.id, w.addresses, w.services]), [['wp:shop/waypoint', ['127.0.10.1'], ['svc:shop/orders.shop.svc.cluster.local']]]);
  t.like(bare.services.find((s) => s.name === 'orders'), { waypoint: 'wp:shop/waypoint', vips: ['10.96.0.21'], endpoints: ['wl:shop/orders-v1', 'wl:shop/orders-v2'] });

  // A real ztunnel (dedicated, as the db pod) fed by this control plane, and real tunnels to it.
  const zt = await startDedicatedZtunnel(cp, { workloadInfo: 'shop/db/db', token: 'db-token', nodeName: 'node-z' });
  const client = createHboneClient({ certificates: pki.certificates });
  t.teardown(async () => {
    await client.close();
    await zt.close();
  });
  const ports = zt.ports();
  await until(async () => (await fetch(`http://127.0.0.1:${ports.readiness}/healthz/ready`)).status === 200, 'ztunnel readiness', 10_000);
  const tunnel = async (sa: string, sourceIp: string): Promise<string | number> => {
    try {
      const { stream } = await client.connect({
        source: pki.id('shop', sa),
        expectedIdentities: [pki.id('shop', 'db')],
        address: { host: '127.0.0.1', port: ports.proxy!.inbound },
        sourceIp,
        authority: `127.0.0.1:${app.port}`,
      });
      stream.end('hello');
      return await readAll(stream);
    } catch (err) {
      return err instanceof HboneError ? (err.status ?? String(err)) : String(err);
    }
  };
  t.is(await tunnel('client', '127.0.0.2'), 'hello');
  t.is(await tunnel('client', '127.0.0.2'), 'hello');
  t.is(await tunnel('intruder', '127.0.0.3'), 401);

  // The waypoint's and another node's metrics, from our own metric families on real stats servers.
  const wpRegistry = createMetricsRegistry();
  const wpMetrics = createWaypointMetrics(wpRegistry);
  const clientWl = testWorkload({ name: 'client', namespace: 'shop', serviceAccount: 'client', canonicalName: 'client' });
  const orders = testService({ name: 'orders', namespace: 'shop' });
  const request = (version: 'v1' | 'v2' | undefined, code: number) =>
    wpMetrics.record({
      labels: httpLabels({
        source: { identity: pki.id('shop', 'client'), workload: clientWl },
        destination: { service: orders, workload: version ? testWorkload({ name: `orders-${version}`, namespace: 'shop', serviceAccount: 'orders', canonicalName: 'orders', canonicalRevision: version }) : undefined },
        protocol: 'http',
        responseCode: code,
        grpcStatus: undefined,
        responseFlags: '-',
        clusterId: 'Kubernetes',
        trustDomain: 'cluster.local',
      }),
      durationMs: 1,
      requestBytes: 10,
      responseBytes: 20,
    });
  for (let i = 0; i < 18; i++) request('v1', 200);
  for (let i = 0; i < 2; i++) request('v2', 200);
  for (let i = 0; i < 3; i++) request(undefined, 403);
  const wpStats = await startStatsServer({ host: '127.0.0.1', port: 0, registry: wpRegistry });
  t.teardown(() => wpStats.close());
  const nodeYRegistry = createMetricsRegistry();
  const l4 = createL4Metrics(nodeYRegistry);
  // node-y's ztunnel: the client's leg to the waypoint (it knows the service, not the waypoint's workload).
  const toWaypoint = connectionLabels({ reporter: 'source', source: clientWl, destinationService: { ...orders, hostname: 'orders.shop.svc.cluster.local' }, sourcePrincipal: pki.id('shop', 'client'), securityPolicy: 'mutual_tls' });
  for (let i = 0; i < 4; i++) l4.connection(toWaypoint).close({ sent: 1, received: 1 });
  const nodeYStats = await startStatsServer({ host: '127.0.0.1', port: 0, registry: nodeYRegistry });
  t.teardown(() => nodeYStats.close());

  const ztUrl = `http://127.0.0.1:${ports.stats}/metrics`;
  const wpUrl = `http://127.0.0.1:${wpStats.address().port}/stats/prometheus`;
  const nodeYUrl = `http://127.0.0.1:${nodeYStats.address().port}/metrics`;
  const dead = await deadUrl();
  const failing = await rawServer(t, () => ({ status: 500, body: 'boom' }));
  const garbage = await rawServer(t, () => ({ status: 200, body: '<html>not metrics</html>\n{{{\nistio_tcp_connections_opened_total{reporter="destination" 1\n' }));
  cp.setMeshTargets([ztUrl, wpUrl, nodeYUrl, dead, failing, garbage]);
  t.deepEqual(cp.meshTargets(), [ztUrl, wpUrl, nodeYUrl, dead, failing, garbage]);

  // The closes are counted when the relays end: wait for all three.
  let g = await meshJson(cp);
  await until(async () => {
    g = await meshJson(cp);
    const db = g.edges.filter((e) => e.to === 'wl:shop/db');
    return db.reduce((n, e) => n + (e.tcp?.closed ?? 0), 0) === 3;
  }, 'the ztunnel\'s closed connections', 10_000);

  t.deepEqual(g.targets.map((x) => [x.url, x.up, x.error ?? '']), [
    [ztUrl, true, ''],
    [wpUrl, true, ''],
    [nodeYUrl, true, ''],
    [dead, false, `connect ECONNREFUSED ${new URL(dead).host}`],
    [failing, false, 'HTTP 500'],
    [garbage, true, ''],
  ]);
  t.deepEqual(g.targets[5]?.problems, ['line 1: does not start with a metric name', 'line 2: does not start with a metric name', 'line 3: expected , or } after label reporter']);
  t.true(g.targets[0]!.samples > 0);

  const edges = Object.fromEntries(g.edges.map((e) => [e.id, e]));
  t.deepEqual(Object.keys(edges).sort(), [
    'wl:shop/client->wl:shop/db',
    'wl:shop/client->wp:shop/waypoint',
    'wl:shop/intruder->wl:shop/db',
    'wp:shop/waypoint->wl:shop/orders-v1',
    'wp:shop/waypoint->wl:shop/orders-v2',
  ]);
  // From the real ztunnel: two mTLS connections in, and the intruder's denied by the DENY policy.
  t.deepEqual(edges['wl:shop/client->wl:shop/db']?.tcp, { reporter: 'destination', opened: 2, closed: 2, mtls: 2, plaintext: 0, denied: 0, failed: 0 });
  t.deepEqual(edges['wl:shop/intruder->wl:shop/db']?.tcp, { reporter: 'destination', opened: 1, closed: 1, mtls: 1, plaintext: 0, denied: 1, failed: 0 });
  t.deepEqual(edges['wl:shop/client->wl:shop/db']?.services, ['svc:shop/db.shop.svc.cluster.local']);
  // The waypoint leg: the client's ztunnel's connections and the waypoint's requests on one edge.
  t.like(edges['wl:shop/client->wp:shop/waypoint'], { tcp: { reporter: 'source', opened: 4, mtls: 4 }, http: { requests: 23, codes: { 200: 20, 403: 3 }, denied: 3 } });
  t.deepEqual(edges['wp:shop/waypoint->wl:shop/orders-v1']?.http?.split, [{ service: 'svc:shop/orders.shop.svc.cluster.local', version: 'v1', requests: 18, percent: 90 }]);
  t.deepEqual(edges['wp:shop/waypoint->wl:shop/orders-v2']?.http?.split, [{ service: 'svc:shop/orders.shop.svc.cluster.local', version: 'v2', requests: 2, percent: 10 }]);
  t.deepEqual(g.waypoints[0]?.splits, [{ service: 'svc:shop/orders.shop.svc.cluster.local', requests: 20, versions: [{ version: 'v1', requests: 18, percent: 90 }, { version: 'v2', requests: 2, percent: 10 }] }]);
  t.false(Number.isNaN(Date.parse(g.generatedAt)));

  // Everything down: still a page, every target listed as down, the configuration still drawn.
  await zt.close();
  await wpStats.close();
  const down = await meshJson(cp);
  t.deepEqual(down.targets.slice(0, 2).map((x) => x.up), [false, false]);
  t.is(down.workloads.length, 5);
  t.true(down.edges.every((e) => e.to !== 'wl:shop/db' || e.tcp === undefined), 'nothing from the stopped ztunnel');

  // Bad targets are refused with their code; the old list stays.
  const err = t.throws(() => cp.setMeshTargets(['ftp://x/metrics', 'not a url']));
  t.is((err as { code?: string }).code, 'CP_MESH_TARGET_INVALID');
  t.regex(err!.message, /\[0\] "ftp:\/\/x\/metrics": must be http or https; \[1\] "not a url": not an absolute URL/);
  t.is(cp.meshTargets().length, 6);
});

test('/mesh.json is cached briefly, and a new target list is scraped at once; ztunnel pods are found; MESH_SCRAPE_TARGETS configures the list', async (t) => {
  const pki = testPki();
  t.teardown(() => pki.close());
  let scrapes = 0;
  const url = await rawServer(t, () => {
    scrapes++;
    return { status: 200, body: 'x 1\n' };
  });
  let nodeScrapes = 0;
  const nodeUrl = await rawServer(t, () => {
    nodeScrapes++;
    return { status: 200, body: 'y 1\nz 2\n' };
  });
  // A ztunnel pod of the DaemonSet, as deploy/daemonset.yaml annotates it: scraped without being configured.
  const ztunnelPod = `apiVersion: v1
kind: Pod
metadata:
  name: ztunnel-abcde
  namespace: istio-system
  labels: {app: ztunnel}
  annotations: {prometheus.io/scrape: "true", prometheus.io/port: "${new URL(nodeUrl).port}", prometheus.io/path: /metrics}
spec: {nodeName: node-z, serviceAccountName: ztunnel}
status: {phase: Running, podIP: 127.0.0.1}
`;
  const cp = await startLocalControlPlane(t, pki, { meshCacheMs: 60_000, extra: ztunnelPod });
  const first = await meshJson(cp);
  const again = await meshJson(cp);
  t.is(again.generatedAt, first.generatedAt);
  t.deepEqual(first.targets, [{ url: nodeUrl, up: true, samples: 2, problems: [] }]);
  t.is(nodeScrapes, 1);
  t.is(scrapes, 0);
  cp.setMeshTargets([url]);
  const third = await meshJson(cp);
  await meshJson(cp);
  t.is(scrapes, 1);
  t.is(nodeScrapes, 2);
  t.deepEqual(third.targets.map((x) => x.url), [url, nodeUrl], 'configured first, then discovered');
  t.deepEqual(cp.meshTargets(), [url]);
  // Without discovery only the configured list is scraped.
  const quiet = await startLocalControlPlane(t, pki, { extra: ztunnelPod, meshDiscovery: false });
  t.deepEqual((await meshJson(quiet)).targets, []);
  t.is(nodeScrapes, 2);

  const parsed = parseControlPlaneConfig({ 'mesh-scrape-targets': `${url}, http://[::1]:15020/stats/prometheus` }, { CONFIG_DIR: '/x' });
  t.deepEqual(parsed.ok ? parsed.value.meshScrapeTargets : parsed.errors, [url, 'http://[::1]:15020/stats/prometheus']);
  const bad = parseControlPlaneConfig({}, { CONFIG_DIR: '/x', MESH_SCRAPE_TARGETS: 'localhost:15020' });
  t.deepEqual(bad.ok ? [] : bad.errors, ['MESH_SCRAPE_TARGETS: [0] "localhost:15020": must be http or https']);
  const defaults = parseControlPlaneConfig({}, {});
  t.deepEqual(defaults.ok ? defaults.value.meshScrapeTargets : defaults.errors, []);
});

// ---- the page ----

interface FakeElement {
  readonly tag: string;
  readonly attrs: Record<string, string>;
  readonly children: FakeElement[];
  textContent: string;
  className: string;
  firstChild: FakeElement | null;
  setAttribute(k: string, v: string): void;
  appendChild(c: FakeElement): FakeElement;
  removeChild(c: FakeElement): void;
}

function fakeElement(tag: string): FakeElement {
  const e: FakeElement = {
    tag,
    attrs: {},
    children: [],
    textContent: '',
    className: '',
    get firstChild() {
      return e.children[0] ?? null;
    },
    setAttribute(k, v) {
      e.attrs[k] = String(v);
    },
    appendChild(c) {
      e.children.push(c);
      return c;
    },
    removeChild(c) {
      e.children.splice(e.children.indexOf(c), 1);
    },
  };
  return e;
}

const all = (e: FakeElement): FakeElement[] => [e, ...e.children.flatMap(all)];

test('/mesh: a self-contained page whose script polls /mesh.json every 2 s and draws boxes, edges and labels', async (t) => {
  const pki = testPki();
  t.teardown(() => pki.close());
  const cp = await startLocalControlPlane(t, pki);
  const res = await fetch(monitoringUrl(cp, '/mesh'));
  t.is(res.status, 200);
  t.is(res.headers.get('content-type'), 'text/html; charset=utf-8');
  const html = await res.text();
  t.true(html.includes('<svg id="mesh"'));
  // Self-contained: the only URL in it is the SVG namespace; no external script, style or font.
  t.deepEqual([...new Set(html.match(/https?:\/\/[^\s'"<>)]+/g))], ['http://www.w3.org/2000/svg']);
  t.false(/<script[^>]+src=|<link|@import|url\((?!#)/.test(html), 'url() only for the SVG arrow markers in the page');
  const script = /<script>([\s\S]*)<\/script>/.exec(html)?.[1] ?? '';
  t.true(script.includes("fetch('mesh.json'") && script.includes('setTimeout(poll, 2000)'));
  // The CSP lets exactly this script run and the page talk only to its origin.
  const csp = res.headers.get('content-security-policy') ?? '';
  t.true(csp.includes(`'sha256-${createHash('sha256').update(script).digest('base64')}'`), csp);
  t.true(csp.includes("connect-src 'self'") && csp.includes("default-src 'none'"));
  t.is((await fetch(monitoringUrl(cp, '/mesh'), { method: 'POST' })).status, 405);
  t.is((await fetch(monitoringUrl(cp, '/metrics'))).status, 200, 'the other routes still answer');

  // Run the script against a small DOM with a graph like the demo's; the SVG gets what the JSON says.
  const graph = await meshJson(cp);
  const withTraffic: MeshJson = {
    ...graph,
    edges: [
      { id: 'wl:shop/client->wl:shop/db', from: 'wl:shop/client', to: 'wl:shop/db', services: [], tcp: { reporter: 'destination', opened: 5, closed: 5, mtls: 5, plaintext: 0, denied: 0, failed: 0 } },
      { id: 'wl:shop/intruder->wl:shop/db', from: 'wl:shop/intruder', to: 'wl:shop/db', services: [], tcp: { reporter: 'destination', opened: 2, closed: 2, mtls: 2, plaintext: 0, denied: 2, failed: 0 } },
      { id: 'wl:shop/client->wp:shop/waypoint', from: 'wl:shop/client', to: 'wp:shop/waypoint', services: [], http: { requests: 10, codes: { 200: 10 }, denied: 0, split: [] } },
      { id: 'wp:shop/waypoint->wl:shop/orders-v1', from: 'wp:shop/waypoint', to: 'wl:shop/orders-v1', services: [], http: { requests: 10, codes: { 200: 9, 503: 1 }, denied: 0, split: [{ service: 's', version: 'v1', requests: 9, percent: 90 }] } },
    ],
    targets: [{ url: 'http://127.0.0.1:1/metrics', up: false, error: 'connect ECONNREFUSED', samples: 0, problems: [] }],
  };
  const byId: Record<string, FakeElement> = { mesh: fakeElement('svg'), status: fakeElement('span'), targets: fakeElement('ul') };
  const fetched: string[] = [];
  const timers: number[] = [];
  let done: () => void = () => {};
  const drawn = new Promise<void>((resolve) => (done = resolve));
  runInNewContext(script, {
    document: { getElementById: (id: string) => byId[id], createElementNS: (_ns: string, tag: string) => fakeElement(tag), createElement: (tag: string) => fakeElement(tag) },
    fetch: async (url: string) => {
      fetched.push(url);
      return { ok: true, status: 200, text: async () => JSON.stringify(withTraffic) };
    },
    setTimeout: (_fn: () => void, ms: number) => {
      timers.push(ms);
      done();
    },
    Date,
    JSON,
    Math,
    Object,
    String,
    Error,
  });
  await drawn;
  t.deepEqual(fetched, ['mesh.json']);
  t.deepEqual(timers, [2000]);
  const els = all(byId['mesh']!);
  const texts = els.filter((e) => e.tag === 'text').map((e) => e.textContent);
  t.true(texts.includes('node node-y') && texts.includes('node node-z'), texts.join(' | '));
  t.true(texts.includes('waypoint waypoint'));
  t.true(texts.includes('\u{1f512} mTLS 5 conn'), texts.join(' | '));
  t.true(texts.includes('\u2716 denied 2'));
  t.true(texts.includes('v1 90%'));
  t.true(texts.includes('HTTP 10 req'));
  t.true(texts.includes('503\u00d71'), 'codes other than 2xx and 403 are listed');
  // Tidy: no label covers a box or another label.
  const rectOf = (g: FakeElement) => {
    const r = g.children.find((c) => c.tag === 'rect')!;
    return { x: Number(r.attrs['x']), y: Number(r.attrs['y']), w: Number(r.attrs['width']), h: Number(r.attrs['height']) };
  };
  const overlap = (a: ReturnType<typeof rectOf>, b: ReturnType<typeof rectOf>) => !(a.x + a.w < b.x || b.x + b.w < a.x || a.y + a.h < b.y || b.y + b.h < a.y);
  const boxRects = els.filter((e) => e.attrs['data-id']).map(rectOf);
  const labelRects = els.filter((e) => e.attrs['data-label']).map(rectOf);
  t.is(labelRects.length, 4);
  for (const [i, l] of labelRects.entries()) {
    t.false(boxRects.some((b) => overlap(l, b)), `label ${i} covers a box`);
    t.false(labelRects.some((m, j) => j !== i && overlap(l, m)), `label ${i} covers another label`);
  }
  const paths = els.filter((e) => e.attrs['data-edge']);
  t.deepEqual(paths.map((p) => [p.attrs['data-edge'], p.attrs['class']]), [
    ['wl:shop/client->wl:shop/db', 'edge mtls'],
    ['wl:shop/intruder->wl:shop/db', 'edge deny'],
    ['wl:shop/client->wp:shop/waypoint', 'edge http'],
    ['wp:shop/waypoint->wl:shop/orders-v1', 'edge http'],
  ]);
  t.true(paths.every((p) => /^M[\d.]+,[\d.]+ [CL]/.test(p.attrs['d'] ?? '')), 'every edge has a drawn path');
  // node-y and node-z have the waypoint column between them: that edge runs in a lane below the frames.
  const lane = paths[1]!.attrs['d']!;
  t.regex(lane, / Q/);
  const frameBottom = Math.max(...els.filter((e) => e.attrs['class'] === 'node').map((e) => Number(e.attrs['y']) + Number(e.attrs['height'])));
  t.true(Math.max(...[...lane.matchAll(/,([\d.]+)/g)].map((m) => Number(m[1]))) > frameBottom);
  t.true(Number(byId['mesh']!.attrs['height']) > frameBottom);
  const boxes = els.filter((e) => e.attrs['data-id']).map((e) => e.attrs['data-id']);
  t.deepEqual(boxes, ['wl:shop/client', 'wl:shop/db', 'wl:shop/intruder', 'wl:shop/orders-v1', 'wl:shop/orders-v2', 'wp:shop/waypoint']);
  t.is(byId['targets']!.children[0]?.className, 'down');
  t.regex(byId['targets']!.children[0]?.textContent ?? '', /^DOWN http:\/\/127\.0\.0\.1:1\/metrics · connect ECONNREFUSED/);
  t.regex(byId['status']!.textContent, /5 workloads on 2 nodes, 4 connections/);
});

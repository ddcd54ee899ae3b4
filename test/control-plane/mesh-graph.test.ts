import test from 'ava';
import { buildMeshGraph, HTTP_REQUESTS, TCP_CLOSED, TCP_OPENED, type MeshGraphInput, type ScrapeInput } from '../../src/control-plane/mesh-graph.ts';
import type { PromSample } from '../../src/core/prometheus-text.ts';
import { spiffeId } from '../../src/identity/spiffe.ts';
import { httpLabels } from '../../src/waypoint/metrics.ts';
import type { Service, Workload } from '../../src/workload-api/types.ts';
import { connectionLabels, type ResponseFlag } from '../../src/ztunnel/metrics.ts';
import { testService, testWorkload } from '../helpers/mesh.ts';

/**
 * The mesh graph from domain objects and metric samples whose labels are built by the proxies' own label
 * functions (ztunnel's connectionLabels, the waypoint's httpLabels), so the graph reads what they write.
 */

const WP_IP = '127.0.10.1';
const wpAddress = { destination: { kind: 'address' as const, network: '', ip: WP_IP }, hboneMtlsPort: 15008 };
const ORDERS_HOST = 'orders.shop.svc.cluster.local';
const orders = testService({ name: 'orders', namespace: 'shop', addresses: [{ network: '', ip: '10.96.0.10' }], waypoint: wpAddress });
const db = testService({ name: 'db', namespace: 'shop', addresses: [{ network: '', ip: '10.96.0.11' }] });
const svcPorts = (s: Service) => new Map([[`${s.namespace}/${s.hostname}`, [{ servicePort: 80, targetPort: 8080, appProtocol: 'UNKNOWN' as const }]]]);
const client = testWorkload({ name: 'client-5d9f', workloadName: 'client', namespace: 'shop', serviceAccount: 'client', node: 'node1', addresses: ['10.0.1.2'] });
const ordersV1 = testWorkload({ name: 'orders-v1-a', workloadName: 'orders-v1', namespace: 'shop', serviceAccount: 'orders', node: 'node1', canonicalName: 'orders', canonicalRevision: 'v1', addresses: ['10.0.1.3'], services: svcPorts(orders) });
const ordersV2 = testWorkload({ name: 'orders-v2-b', workloadName: 'orders-v2', namespace: 'shop', serviceAccount: 'orders', node: 'node2', canonicalName: 'orders', canonicalRevision: 'v2', addresses: ['10.0.2.3'], services: svcPorts(orders) });
const dbPod = testWorkload({ name: 'db-0', workloadName: 'db', namespace: 'shop', node: 'node2', addresses: ['10.0.2.4'], services: svcPorts(db) });
const legacy = testWorkload({ name: 'legacy', namespace: 'legacy', node: 'node2', tunnelProtocol: 'NONE', addresses: ['10.0.2.5'] });
const WORKLOADS: readonly Workload[] = [ordersV2, client, dbPod, legacy, ordersV1];
const WAYPOINT = { name: 'waypoint', namespace: 'shop', addresses: [WP_IP] };
const idOf = (w: Workload) => spiffeId('cluster.local', w.namespace, w.serviceAccount);
const WP_ID = spiffeId('cluster.local', 'shop', 'waypoint');

interface Tcp {
  reporter: 'source' | 'destination';
  source?: Workload;
  destination?: Workload;
  service?: Service;
  mtls?: boolean;
  sourcePrincipal?: ReturnType<typeof spiffeId>;
  opened?: number;
  closed?: Partial<Record<ResponseFlag, number>>;
}

function tcp(c: Tcp): PromSample[] {
  const mtls = c.mtls ?? true;
  const base = {
    reporter: c.reporter,
    source: c.source,
    destination: c.destination,
    destinationService: c.service,
    securityPolicy: mtls ? ('mutual_tls' as const) : ('unknown' as const),
    ...(mtls ? { sourcePrincipal: c.sourcePrincipal ?? (c.source ? idOf(c.source) : undefined), destinationPrincipal: c.destination ? idOf(c.destination) : undefined } : {}),
  };
  const out: PromSample[] = [];
  if (c.opened !== undefined) out.push({ name: TCP_OPENED, labels: connectionLabels(base), value: c.opened });
  for (const [flag, n] of Object.entries(c.closed ?? {})) out.push({ name: TCP_CLOSED, labels: connectionLabels({ ...base, responseFlags: flag as ResponseFlag }), value: n });
  return out;
}

function http(source: Workload, destination: Workload | undefined, code: number, n: number): PromSample {
  return {
    name: HTTP_REQUESTS,
    labels: httpLabels({
      source: { identity: idOf(source), workload: source },
      destination: { service: orders, workload: destination },
      protocol: 'http',
      responseCode: code,
      grpcStatus: undefined,
      responseFlags: '-',
      clusterId: 'Kubernetes',
      trustDomain: 'cluster.local',
    }),
    value: n,
  };
}

const up = (url: string, samples: PromSample[]): ScrapeInput => ({ url, up: true, samples, problems: [] });

const base = (scrapes: ScrapeInput[], more: Partial<MeshGraphInput> = {}): MeshGraphInput => ({
  workloads: WORKLOADS,
  services: [orders, db],
  waypoints: [WAYPOINT],
  scrapes,
  domainSuffix: 'cluster.local',
  trustDomain: 'cluster.local',
  ...more,
});

const DEMO_SCRAPES: ScrapeInput[] = [
  // node1's ztunnel: the client's side of everything.
  up('http://node1:15020/metrics', [
    ...tcp({ reporter: 'source', source: client, destination: dbPod, service: db, opened: 6, closed: { '-': 5, CONNECT: 1 } }),
    // To the orders service: ztunnel sends to the waypoint, which it knows only by address.
    ...tcp({ reporter: 'source', source: client, service: orders, opened: 10, closed: { '-': 10 } }),
  ]),
  // node2's ztunnel: the destination side.
  up('http://node2:15020/metrics', [
    ...tcp({ reporter: 'destination', source: client, destination: dbPod, service: db, opened: 6, closed: { '-': 4, DENY: 2 } }),
    ...tcp({ reporter: 'destination', source: legacy, destination: dbPod, service: db, mtls: false, opened: 3, closed: { '-': 3 } }),
    ...tcp({ reporter: 'destination', destination: dbPod, mtls: false, opened: 1 }),
    // From the waypoint: its workload is unknown, its certificate names it.
    ...tcp({ reporter: 'destination', destination: ordersV2, service: orders, sourcePrincipal: WP_ID, opened: 1, closed: { '-': 1 } }),
  ]),
  up('http://waypoint:15020/stats/prometheus', [http(client, ordersV1, 200, 9), http(client, ordersV2, 200, 1), http(client, undefined, 403, 2)]),
];

test('buildMeshGraph: workloads by node, services, the waypoint, and edges from ztunnel and waypoint metrics', (t) => {
  const g = buildMeshGraph(base(DEMO_SCRAPES));
  t.deepEqual(g.nodes, [
    { name: 'node1', workloads: ['wl:shop/client-5d9f', 'wl:shop/orders-v1-a'], waypoints: [] },
    { name: 'node2', workloads: ['wl:legacy/legacy', 'wl:shop/db-0', 'wl:shop/orders-v2-b'], waypoints: [] },
  ]);
  t.deepEqual(g.workloads.find((w) => w.id === 'wl:shop/orders-v1-a'), {
    id: 'wl:shop/orders-v1-a',
    name: 'orders-v1-a',
    namespace: 'shop',
    workload: 'orders-v1',
    app: 'orders',
    version: 'v1',
    node: 'node1',
    identity: 'spiffe://cluster.local/ns/shop/sa/orders',
    ips: ['10.0.1.3'],
    captured: true,
    services: [`svc:shop/${ORDERS_HOST}`],
  });
  t.false(g.workloads.find((w) => w.id === 'wl:legacy/legacy')!.captured);
  t.deepEqual(g.services.map((s) => [s.id, s.waypoint, s.endpoints, s.vips]), [
    ['svc:shop/db.shop.svc.cluster.local', undefined, ['wl:shop/db-0'], ['10.96.0.11']],
    [`svc:shop/${ORDERS_HOST}`, 'wp:shop/waypoint', ['wl:shop/orders-v1-a', 'wl:shop/orders-v2-b'], ['10.96.0.10']],
  ]);
  t.deepEqual(g.external, [{ id: 'ext:unknown', label: 'unknown' }]);
  t.deepEqual(g.waypoints, [
    {
      id: 'wp:shop/waypoint',
      name: 'waypoint',
      namespace: 'shop',
      addresses: [WP_IP],
      node: '',
      identity: 'spiffe://cluster.local/ns/shop/sa/waypoint',
      services: [`svc:shop/${ORDERS_HOST}`],
      workloads: [],
      splits: [{ service: `svc:shop/${ORDERS_HOST}`, requests: 10, versions: [{ version: 'v1', requests: 9, percent: 90 }, { version: 'v2', requests: 1, percent: 10 }] }],
    },
  ]);
  const edges = Object.fromEntries(g.edges.map((e) => [e.id, e]));
  t.deepEqual(Object.keys(edges), [
    'ext:unknown->wl:shop/db-0',
    'wl:legacy/legacy->wl:shop/db-0',
    'wl:shop/client-5d9f->wl:shop/db-0',
    'wl:shop/client-5d9f->wp:shop/waypoint',
    'wp:shop/waypoint->wl:shop/orders-v1-a',
    'wp:shop/waypoint->wl:shop/orders-v2-b',
  ]);
  // Counted once: the destination's numbers, not the sum of both sides.
  t.deepEqual(edges['wl:shop/client-5d9f->wl:shop/db-0'], {
    id: 'wl:shop/client-5d9f->wl:shop/db-0',
    from: 'wl:shop/client-5d9f',
    to: 'wl:shop/db-0',
    services: ['svc:shop/db.shop.svc.cluster.local'],
    tcp: { reporter: 'destination', opened: 6, closed: 6, mtls: 6, plaintext: 0, denied: 2, failed: 0 },
  });
  t.like(edges['wl:legacy/legacy->wl:shop/db-0'], { tcp: { reporter: 'destination', opened: 3, mtls: 0, plaintext: 3, denied: 0 } });
  t.like(edges['ext:unknown->wl:shop/db-0'], { services: [], tcp: { opened: 1, closed: 0, plaintext: 1 } });
  // The client's side is all there is for the leg to the waypoint; the waypoint adds its requests.
  t.deepEqual(edges['wl:shop/client-5d9f->wp:shop/waypoint'], {
    id: 'wl:shop/client-5d9f->wp:shop/waypoint',
    from: 'wl:shop/client-5d9f',
    to: 'wp:shop/waypoint',
    services: [`svc:shop/${ORDERS_HOST}`],
    tcp: { reporter: 'source', opened: 10, closed: 10, mtls: 10, plaintext: 0, denied: 0, failed: 0 },
    http: { requests: 12, codes: { 200: 10, 403: 2 }, denied: 2, split: [] },
  });
  t.deepEqual(edges['wp:shop/waypoint->wl:shop/orders-v1-a']?.http, { requests: 9, codes: { 200: 9 }, denied: 0, split: [{ service: `svc:shop/${ORDERS_HOST}`, version: 'v1', requests: 9, percent: 90 }] });
  t.is(edges['wp:shop/waypoint->wl:shop/orders-v1-a']?.tcp, undefined);
  t.like(edges['wp:shop/waypoint->wl:shop/orders-v2-b'], { tcp: { reporter: 'destination', opened: 1, mtls: 1 }, http: { requests: 1, split: [{ version: 'v2', percent: 10 }] } });
  t.deepEqual(g.targets.map((x) => [x.url, x.up, x.samples]), [
    ['http://node1:15020/metrics', true, 5],
    ['http://node2:15020/metrics', true, 8],
    ['http://waypoint:15020/stats/prometheus', true, 3],
  ]);
});

test('buildMeshGraph: the same input gives the same graph whatever the order of workloads, services and targets', (t) => {
  const a = buildMeshGraph(base(DEMO_SCRAPES));
  const b = buildMeshGraph(base([...DEMO_SCRAPES].reverse(), { workloads: [...WORKLOADS].reverse(), services: [db, orders] }));
  t.deepEqual({ ...a, targets: [] }, { ...b, targets: [] });
  t.is(JSON.stringify(buildMeshGraph(base(DEMO_SCRAPES))), JSON.stringify(a));
});

test('buildMeshGraph: a source-only edge uses the source side; a denial the source saw as a refusal is failed', (t) => {
  const g = buildMeshGraph(base([up('n1', tcp({ reporter: 'source', source: client, destination: dbPod, service: db, opened: 4, closed: { '-': 1, DENY: 1, CONNECT: 2 } }))]));
  t.deepEqual(g.edges.map((e) => [e.id, e.tcp]), [['wl:shop/client-5d9f->wl:shop/db-0', { reporter: 'source', opened: 4, closed: 4, mtls: 4, plaintext: 0, denied: 1, failed: 2 }]]);
});

test('buildMeshGraph: no metrics targets: the configuration alone, no edges', (t) => {
  const g = buildMeshGraph(base([]));
  t.deepEqual(g.edges, []);
  t.deepEqual(g.targets, []);
  t.is(g.workloads.length, 5);
  t.deepEqual(g.waypoints[0]?.splits, []);
  const empty = buildMeshGraph({ workloads: [], services: [], waypoints: [], scrapes: [], domainSuffix: 'cluster.local', trustDomain: 'cluster.local' });
  t.deepEqual(empty, { nodes: [], workloads: [], services: [], waypoints: [], external: [], edges: [], targets: [] });
});

test('buildMeshGraph: a down target is listed with its reason and contributes nothing; unreadable lines are listed', (t) => {
  const g = buildMeshGraph(base([
    { url: 'http://127.0.0.1:1/metrics', up: false, error: 'connect ECONNREFUSED 127.0.0.1:1', samples: [], problems: [] },
    { url: 'http://node2/metrics', up: true, samples: tcp({ reporter: 'destination', source: legacy, destination: dbPod, mtls: false, opened: 2 }), problems: ['line 3: bad value "x" for m'] },
  ]));
  t.deepEqual(g.targets, [
    { url: 'http://127.0.0.1:1/metrics', up: false, error: 'connect ECONNREFUSED 127.0.0.1:1', samples: 0, problems: [] },
    { url: 'http://node2/metrics', up: true, samples: 1, problems: ['line 3: bad value "x" for m'] },
  ]);
  t.deepEqual(g.edges.map((e) => e.id), ['wl:legacy/legacy->wl:shop/db-0']);
});

test('buildMeshGraph: samples that are not traffic, negative, NaN, of another reporter or about a self-loop are ignored', (t) => {
  const [good] = tcp({ reporter: 'destination', source: client, destination: dbPod, opened: 1 });
  const g = buildMeshGraph(base([up('x', [
    good!,
    { ...good!, value: NaN },
    { ...good!, value: -5 },
    { ...good!, value: Infinity },
    { ...good!, labels: { ...good!.labels, reporter: 'waypoint' } },
    { name: 'istio_build', labels: { component: 'ztunnel', tag: 'unknown' }, value: 1 },
    { name: HTTP_REQUESTS, labels: { reporter: 'source' }, value: 3 },
    ...tcp({ reporter: 'destination', source: dbPod, destination: dbPod, opened: 9 }),
    { name: TCP_OPENED, labels: {}, value: 1 },
  ])]));
  t.deepEqual(g.edges.map((e) => [e.id, e.tcp?.opened]), [['wl:shop/client-5d9f->wl:shop/db-0', 1]]);
});

test('buildMeshGraph: a waypoint known as a workload is drawn as the waypoint on its node; one named by hostname is resolved', (t) => {
  const instance = testWorkload({ name: 'waypoint-7c9d', workloadName: 'waypoint', namespace: 'shop', serviceAccount: 'waypoint', node: 'node2', addresses: ['10.0.2.9'] });
  const byHost = testService({ name: 'orders', namespace: 'shop', waypoint: { destination: { kind: 'hostname', namespace: 'shop', hostname: 'waypoint.shop.svc.cluster.local' }, hboneMtlsPort: 15008 } });
  const bound = testWorkload({ ...client, waypoint: { destination: { kind: 'address', network: '', ip: '10.0.2.9' }, hboneMtlsPort: 15008 } });
  const g = buildMeshGraph({
    workloads: [bound, instance],
    services: [byHost],
    waypoints: [{ name: 'waypoint', namespace: 'shop', addresses: [] }],
    scrapes: [up('n', tcp({ reporter: 'source', source: bound, destination: instance, service: byHost, opened: 2 }))],
    domainSuffix: 'cluster.local',
    trustDomain: 'cluster.local',
  });
  t.deepEqual(g.workloads.map((w) => [w.id, w.waypoint]), [['wl:shop/client-5d9f', 'wp:shop/waypoint']]);
  t.deepEqual(g.nodes, [
    { name: 'node1', workloads: ['wl:shop/client-5d9f'], waypoints: [] },
    { name: 'node2', workloads: [], waypoints: ['wp:shop/waypoint'] },
  ]);
  t.like(g.waypoints[0], { node: 'node2', addresses: ['10.0.2.9'], services: ['svc:shop/orders.shop.svc.cluster.local'], workloads: ['wl:shop/client-5d9f'] });
  t.deepEqual(g.edges.map((e) => e.id), ['wl:shop/client-5d9f->wp:shop/waypoint']);
});

test('buildMeshGraph: names the mesh does not know become external nodes, by workload or by service', (t) => {
  const stranger = testWorkload({ name: 'stranger', namespace: 'other' });
  const elsewhere = testService({ name: 'api', namespace: 'ext' });
  const g = buildMeshGraph(base([up('x', [
    ...tcp({ reporter: 'destination', source: stranger, destination: dbPod, opened: 1 }),
    ...tcp({ reporter: 'source', source: client, service: elsewhere, opened: 2 }),
  ])]));
  t.deepEqual(g.external, [{ id: 'ext:other/stranger', label: 'other/stranger' }, { id: 'ext:svc/api.ext.svc.cluster.local', label: 'api.ext.svc.cluster.local' }]);
  t.deepEqual(g.edges.map((e) => e.id), ['ext:other/stranger->wl:shop/db-0', 'wl:shop/client-5d9f->ext:svc/api.ext.svc.cluster.local']);
});

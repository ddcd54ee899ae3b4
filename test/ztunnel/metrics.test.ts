import test from 'ava';
import { createMetricsRegistry, renderPrometheus } from '../../src/core/metrics.ts';
import { spiffeId } from '../../src/identity/spiffe.ts';
import type { Service, Workload } from '../../src/workload-api/types.ts';
import { accessLogLevel, accessLogRecord, connectionFailedRecord, logConnectionComplete } from '../../src/ztunnel/access-log.ts';
import { connectionLabels, createL4Metrics, TRAFFIC_LABELS, type ConnectionLabelInput, type TrafficLabels } from '../../src/ztunnel/metrics.ts';
import { captureLog } from '../helpers/log.ts';
import { testWorkload } from '../helpers/mesh.ts';

function workload(name: string, over: Partial<Workload> = {}): Workload {
  return testWorkload({
    uid: `Kubernetes//Pod/prod/${name}-7d4f-abcde`,
    name: `${name}-7d4f-abcde`,
    namespace: 'prod',
    addresses: ['10.0.0.1'],
    serviceAccount: name,
    canonicalName: name,
    canonicalRevision: 'v1',
    workloadName: name,
    locality: { region: 'eu-west1', zone: 'eu-west1-b', subzone: '' },
    ...over,
  });
}

const reviews: Service = {
  name: 'reviews',
  namespace: 'prod',
  hostname: 'reviews.prod.svc.cluster.local',
  addresses: [{ network: '', ip: '10.96.0.10' }],
  ports: [{ servicePort: 9080, targetPort: 9080, appProtocol: 'TCP' }],
  subjectAltNames: [],
  ipFamilies: 'AUTOMATIC',
  canonical: true,
  ingressUseWaypoint: false,
  weightedWaypoints: [],
  visibility: 'PUBLIC',
};

const sleep = workload('sleep');
const reviewsV2 = workload('reviews', { canonicalRevision: 'v2', addresses: ['10.0.1.5'], locality: { region: 'eu-west1', zone: 'eu-west1-c', subzone: '' } });
const sleepId = spiffeId('cluster.local', 'prod', 'sleep');
const reviewsId = spiffeId('cluster.local', 'prod', 'reviews');

const allUnknown = (): Record<string, string> => Object.fromEntries(TRAFFIC_LABELS.map((l) => [l, 'unknown']));

const full: TrafficLabels = {
  reporter: 'source',
  source_workload: 'sleep',
  source_canonical_service: 'sleep',
  source_canonical_revision: 'v1',
  source_workload_namespace: 'prod',
  source_principal: 'spiffe://cluster.local/ns/prod/sa/sleep',
  source_app: 'sleep',
  source_version: 'v1',
  source_cluster: 'Kubernetes',
  destination_service: 'reviews.prod.svc.cluster.local',
  destination_service_namespace: 'prod',
  destination_service_name: 'reviews',
  destination_workload: 'reviews',
  destination_canonical_service: 'reviews',
  destination_canonical_revision: 'v2',
  destination_workload_namespace: 'prod',
  destination_principal: 'spiffe://cluster.local/ns/prod/sa/reviews',
  destination_app: 'reviews',
  destination_version: 'v2',
  destination_cluster: 'Kubernetes',
  request_protocol: 'tcp',
  response_flags: '-',
  connection_security_policy: 'mutual_tls',
  source_region: 'eu-west1',
  source_zone: 'eu-west1-b',
  destination_region: 'eu-west1',
  destination_zone: 'eu-west1-c',
};

const fullInput: ConnectionLabelInput = {
  reporter: 'source',
  source: sleep,
  destination: reviewsV2,
  destinationService: reviews,
  sourcePrincipal: sleepId,
  destinationPrincipal: reviewsId,
  securityPolicy: 'mutual_tls',
};

const labelCases: Array<[string, ConnectionLabelInput, Record<string, string>]> = [
  ['full workload info (outbound, mTLS)', fullInput, full],
  ['reporter destination', { ...fullInput, reporter: 'destination' }, { ...full, reporter: 'destination' }],
  [
    'nothing known: every label unknown except the fixed ones',
    { reporter: 'source', securityPolicy: 'unknown' },
    { ...allUnknown(), reporter: 'source', request_protocol: 'tcp', response_flags: '-', connection_security_policy: 'unknown' },
  ],
  [
    'plain TCP: no principals, no service',
    { reporter: 'source', source: sleep, destination: reviewsV2, securityPolicy: 'unknown' },
    {
      ...full,
      source_principal: 'unknown',
      destination_principal: 'unknown',
      destination_service: 'unknown',
      destination_service_namespace: 'unknown',
      destination_service_name: 'unknown',
      connection_security_policy: 'unknown',
    },
  ],
  [
    'empty strings and missing locality become unknown',
    { ...fullInput, source: workload('sleep', { canonicalRevision: '', clusterId: '', locality: undefined as never }) },
    { ...full, source_canonical_revision: 'unknown', source_version: 'unknown', source_cluster: 'unknown', source_region: 'unknown', source_zone: 'unknown' },
  ],
  ['a failure flag is passed through', { ...fullInput, responseFlags: 'DENY' }, { ...full, response_flags: 'DENY' }],
  [
    'inbound from an unknown peer with a verified identity',
    { reporter: 'destination', destination: reviewsV2, destinationService: reviews, sourcePrincipal: sleepId, destinationPrincipal: reviewsId, securityPolicy: 'mutual_tls' },
    {
      ...full,
      reporter: 'destination',
      source_workload: 'unknown',
      source_canonical_service: 'unknown',
      source_canonical_revision: 'unknown',
      source_workload_namespace: 'unknown',
      source_app: 'unknown',
      source_version: 'unknown',
      source_cluster: 'unknown',
      source_region: 'unknown',
      source_zone: 'unknown',
    },
  ],
];

for (const [title, input, expected] of labelCases) {
  test(`connectionLabels: ${title}`, (t) => {
    const labels = connectionLabels(input);
    t.deepEqual({ ...labels }, expected);
    // Exactly the traffic label set, in ztunnel's order, all strings.
    t.deepEqual(Object.keys(labels), [...TRAFFIC_LABELS]);
    for (const value of Object.values(labels)) t.is(typeof value, 'string');
  });
}

test('principals are full spiffe:// URIs', (t) => {
  const labels = connectionLabels(fullInput);
  t.regex(labels.source_principal, /^spiffe:\/\/cluster\.local\/ns\/prod\/sa\/sleep$/);
  t.regex(labels.destination_principal, /^spiffe:\/\/cluster\.local\/ns\/prod\/sa\/reviews$/);
});

// ---- Prometheus exposition -------------------------------------------------------------------

interface Sample {
  readonly name: string;
  readonly labels: Record<string, string>;
  readonly value: number;
}

interface Exposition {
  readonly samples: Sample[];
  /** `# TYPE` name → type. */
  readonly types: Map<string, string>;
  readonly help: Set<string>;
}

/** A tiny parser of the text format: `name{a="b",...} value` and `# HELP/TYPE` lines. */
function parseExposition(text: string): Exposition {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const help = new Set<string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    const meta = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line);
    if (meta) {
      if (meta[1] === 'TYPE') types.set(meta[2] ?? '', meta[3] ?? '');
      else help.add(meta[2] ?? '');
      continue;
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$/.exec(line);
    if (!m) throw new Error(`unparseable line: ${line}`);
    const labels: Record<string, string> = {};
    const body = m[2] ?? '';
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/gy;
    let consumed = 0;
    for (let lm = re.exec(body); lm; lm = re.exec(body)) {
      labels[lm[1] ?? ''] = (lm[2] ?? '').replace(/\\(.)/g, (_, c: string) => (c === 'n' ? '\n' : c));
      consumed = re.lastIndex;
    }
    if (consumed !== body.length) throw new Error(`unparseable labels: ${body}`);
    samples.push({ name: m[1] ?? '', labels, value: Number(m[3]) });
  }
  return { samples, types, help };
}

const key = (labels: Record<string, string>): string => JSON.stringify(Object.entries(labels).sort(([a], [b]) => a.localeCompare(b)));

/** The value of the one series `name{labels}`; fails when absent. */
function valueOf(expo: Exposition, name: string, labels: Record<string, string>): number | undefined {
  return expo.samples.find((s) => s.name === name && key(s.labels) === key(labels))?.value;
}

test('after a known set of connections the exposition has exactly the expected series and values', async (t) => {
  const registry = createMetricsRegistry();
  const metrics = createL4Metrics(registry, { buildTag: '1.28.0' });

  const ok = connectionLabels(fullInput);
  const plain = connectionLabels({ reporter: 'source', source: sleep, destination: reviewsV2, securityPolicy: 'unknown' });
  const inbound = connectionLabels({ ...fullInput, reporter: 'destination' });

  // Two successful mTLS outbound connections.
  const c1 = metrics.connection(ok);
  const c2 = metrics.connection(ok);
  c1.close({ sent: 100, received: 10 });
  c2.close({ sent: 50, received: 5 });
  c2.close({ sent: 1000, received: 1000 }); // idempotent: not counted again
  t.true(c2.closed);
  // One outbound connection that failed to connect.
  metrics.connection(ok).close({ sent: 0, received: 0, responseFlags: 'CONNECT' });
  // One plain-TCP connection through the free functions.
  metrics.recordOpen(plain);
  metrics.recordClose(plain, { sent: 7, received: 3 });
  // One inbound connection still open.
  metrics.connection(inbound);

  const text = await renderPrometheus(registry);
  const expo = parseExposition(text);
  const failed = { ...ok, response_flags: 'CONNECT' };

  const expected: Array<[string, Record<string, string>, number]> = [
    ['istio_tcp_connections_opened_total', ok, 3],
    ['istio_tcp_connections_opened_total', plain, 1],
    ['istio_tcp_connections_opened_total', inbound, 1],
    ['istio_tcp_connections_closed_total', ok, 2],
    ['istio_tcp_connections_closed_total', failed, 1],
    ['istio_tcp_connections_closed_total', plain, 1],
    ['istio_tcp_sent_bytes_total', ok, 150],
    ['istio_tcp_sent_bytes_total', failed, 0],
    ['istio_tcp_sent_bytes_total', plain, 7],
    ['istio_tcp_received_bytes_total', ok, 15],
    ['istio_tcp_received_bytes_total', failed, 0],
    ['istio_tcp_received_bytes_total', plain, 3],
    ['istio_tcp_connections_failed_total', failed, 1],
    ['istio_build', { component: 'ztunnel', tag: '1.28.0' }, 1],
  ];
  for (const [name, labels, value] of expected) t.is(valueOf(expo, name, labels), value, `${name} ${JSON.stringify(labels)}`);
  // Nothing else: no stray series.
  t.is(expo.samples.length, expected.length, text);

  // Every traffic series carries exactly the traffic label set.
  for (const s of expo.samples.filter((x) => x.name.startsWith('istio_tcp_'))) t.deepEqual(Object.keys(s.labels), [...TRAFFIC_LABELS]);

  // Counters end in _total on samples; HELP/TYPE use the base name (as ztunnel emits).
  for (const name of ['istio_tcp_connections_opened', 'istio_tcp_connections_closed', 'istio_tcp_sent_bytes', 'istio_tcp_received_bytes', 'istio_tcp_connections_failed']) {
    t.is(expo.types.get(name), 'counter', name);
    t.true(expo.help.has(name), name);
  }
  t.is(expo.types.get('istio_build'), 'gauge');
  for (const s of expo.samples) {
    const type = expo.types.get(s.name) ?? expo.types.get(s.name.replace(/_total$/, ''));
    if (type === 'counter') t.regex(s.name, /_total$/);
  }
});

test('families without samples are omitted; istio_build tag defaults to unknown', async (t) => {
  const registry = createMetricsRegistry();
  createL4Metrics(registry);
  const expo = parseExposition(await renderPrometheus(registry));
  t.deepEqual(expo.samples, [{ name: 'istio_build', labels: { component: 'ztunnel', tag: 'unknown' }, value: 1 }]);
  t.deepEqual([...expo.types.keys()], ['istio_build']);
});

test('label values are escaped and parse back', async (t) => {
  const registry = createMetricsRegistry();
  const metrics = createL4Metrics(registry);
  const odd = connectionLabels({ reporter: 'source', source: workload('we"ird\\name'), securityPolicy: 'unknown' });
  metrics.recordOpen(odd);
  const expo = parseExposition(await renderPrometheus(registry));
  t.is(valueOf(expo, 'istio_tcp_connections_opened_total', odd), 1);
});

test('a typed family refuses incomplete label objects at runtime', (t) => {
  const registry = createMetricsRegistry();
  const c = registry.counter({ name: 'x_total', help: 'x', labelNames: ['a', 'b'] as const });
  t.throws(() => c.inc({ a: '1' } as never), { message: /label "b" is missing/ });
  t.throws(() => c.inc({ a: '1', b: '2', c: '3' } as never), { message: /unknown label\(s\) c/ });
});

// ---- Access log --------------------------------------------------------------------------------

test('access log record: exact field names and values (outbound, mTLS)', (t) => {
  const record = accessLogRecord({
    direction: 'outbound',
    srcAddr: '10.0.0.1:43210',
    dstAddr: '10.0.1.5:15008',
    dstHboneAddr: '10.0.1.5:9080',
    source: sleep,
    destination: reviewsV2,
    destinationService: reviews,
    sourceIdentity: sleepId,
    destinationIdentity: reviewsId,
    bytesSent: 150,
    bytesRecv: 15,
    durationMs: 12.7,
  });
  t.deepEqual(Object.keys(record), [
    'src.addr', 'src.workload', 'src.namespace', 'src.identity', 'src.cluster',
    'dst.addr', 'dst.hbone_addr', 'dst.service', 'dst.workload', 'dst.namespace', 'dst.identity', 'dst.cluster',
    'direction', 'bytes_sent', 'bytes_recv', 'duration',
  ]);
  t.deepEqual({ ...record }, {
    'src.addr': '10.0.0.1:43210',
    'src.workload': 'sleep-7d4f-abcde',
    'src.namespace': 'prod',
    'src.identity': 'spiffe://cluster.local/ns/prod/sa/sleep',
    'src.cluster': 'Kubernetes',
    'dst.addr': '10.0.1.5:15008',
    'dst.hbone_addr': '10.0.1.5:9080',
    'dst.service': 'reviews.prod.svc.cluster.local',
    'dst.workload': 'reviews-7d4f-abcde',
    'dst.namespace': 'prod',
    'dst.identity': 'spiffe://cluster.local/ns/prod/sa/reviews',
    'dst.cluster': 'Kubernetes',
    direction: 'outbound',
    bytes_sent: 150,
    bytes_recv: 15,
    duration: '12ms',
  });
  t.is(accessLogLevel(record), 'info');
});

test('access log record: plain TCP failure has error, no identities, canonical name as workload fallback', (t) => {
  const record = accessLogRecord({
    direction: 'inbound',
    srcAddr: '10.0.0.9:5000',
    dstAddr: '10.0.1.5:15006',
    source: workload('legacy', { name: '' }),
    bytesSent: 0,
    bytesRecv: 0,
    durationMs: 0,
    error: 'connection refused',
  });
  t.deepEqual({ ...record }, {
    'src.addr': '10.0.0.9:5000',
    'src.workload': 'legacy',
    'src.namespace': 'prod',
    'src.cluster': 'Kubernetes',
    'dst.addr': '10.0.1.5:15006',
    direction: 'inbound',
    bytes_sent: 0,
    bytes_recv: 0,
    duration: '0ms',
    error: 'connection refused',
  });
  t.is(accessLogLevel(record), 'error');
  t.deepEqual(connectionFailedRecord({ direction: 'inbound', srcAddr: '10.0.0.9:5000', dstAddr: '10.0.1.5:15006', error: 'RBAC: denied' }), {
    'src.addr': '10.0.0.9:5000',
    'dst.addr': '10.0.1.5:15006',
    direction: 'inbound',
    error: 'RBAC: denied',
  });
});

test('access log through a real pino logger: one JSON line with the dotted field names', (t) => {
  const log = captureLog();
  logConnectionComplete(log.logger, { direction: 'outbound', srcAddr: '10.0.0.1:1', dstAddr: '10.0.1.5:15008', sourceIdentity: sleepId, bytesSent: 1, bytesRecv: 2, durationMs: 3 });
  logConnectionComplete(log.logger, { direction: 'outbound', srcAddr: '10.0.0.1:2', dstAddr: '10.0.1.5:15008', bytesSent: 0, bytesRecv: 0, durationMs: 1, error: 'boom' });
  t.is(log.records.length, 2);
  const [ok, bad] = log.records as [Record<string, unknown>, Record<string, unknown>];
  t.like(ok, { level: 'info', msg: 'connection complete', 'src.addr': '10.0.0.1:1', 'src.identity': 'spiffe://cluster.local/ns/prod/sa/sleep', bytes_sent: 1, bytes_recv: 2, duration: '3ms' });
  t.like(bad, { level: 'error', msg: 'connection complete', error: 'boom' });
});

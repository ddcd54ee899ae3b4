import test from 'ava';
import { ErrorCode } from '../../src/core/error-codes.ts';
import type { HboneTarget } from '../../src/hbone/authority.ts';
import { HboneError } from '../../src/hbone/errors.ts';
import { spiffeId } from '../../src/identity/spiffe.ts';
import { WorkloadStore } from '../../src/workload-api/store.ts';
import { serviceKey, type AuthorizationPolicy, type PolicyMatch, type Port, type Service, type Workload } from '../../src/workload-api/types.ts';
import { decideInbound, inboundHandler, type InboundConnection, type InboundDecision, type InboundLocal } from '../../src/ztunnel/inbound.ts';
import { hboneFixture, type HboneFixture } from '../helpers/hbone.ts';
import { captureLog } from '../helpers/log.ts';
import { echo, readAll, tcpServer } from '../helpers/tcp.ts';
import { testService, testWorkload } from '../helpers/mesh.ts';

// ---- builders: plain domain objects with defaults ----

const NET = 'n1';
const NS = 'ns';
const OWN_PORTS = [15001, 15006, 15008];
const LOCAL_IP = '127.0.0.1';
const CLIENT = spiffeId('cluster.local', NS, 'client');

type Mutable<T> = { -readonly [K in keyof T]?: T[K] };

function wl(over: Mutable<Workload> = {}): Workload {
  return testWorkload({ name: 'server', namespace: NS, addresses: [LOCAL_IP], network: NET, ...over });
}

const port = (servicePort: number, targetPort: number): Port => ({ servicePort, targetPort, appProtocol: 'TCP' });

function svc(name: string, ns: string, ports: Port[]): Service {
  return testService({ name, namespace: ns, addresses: [{ network: NET, ip: '10.96.0.10' }], ports });
}

/** Makes `w` an endpoint of service `s` serving these ports. */
const serving = (w: Workload, s: Service, ports: Port[]): Workload => ({ ...w, services: new Map([...w.services, [serviceKey(s.namespace, s.hostname), ports]]) });

const emptyMatch: PolicyMatch = {
  namespaces: [], notNamespaces: [], principals: [], notPrincipals: [], sourceIps: [], notSourceIps: [],
  destinationIps: [], notDestinationIps: [], destinationPorts: [], notDestinationPorts: [], serviceAccounts: [], notServiceAccounts: [],
};

/** A namespace policy in NS with one rule of one clause of one match. */
function policy(name: string, action: 'ALLOW' | 'DENY', fields: Partial<PolicyMatch>): AuthorizationPolicy {
  return { name, namespace: NS, scope: 'NAMESPACE', action, dryRun: false, rules: [{ clauses: [{ matches: [{ ...emptyMatch, ...fields }] }] }] };
}
const principal = (sa: string) => ({ kind: 'exact' as const, value: `cluster.local/ns/${NS}/sa/${sa}` });

function store(items: ReadonlyArray<Workload | Service | AuthorizationPolicy>): WorkloadStore {
  const s = new WorkloadStore();
  for (const item of items) {
    if ('uid' in item) s.upsertWorkload(item);
    else if ('hostname' in item) s.upsertService(item);
    else s.upsertPolicy(item);
  }
  return s;
}

const addr = (ip: string, p: number): HboneTarget => ({ kind: 'address', ip, port: p });
const host = (hostname: string, p: number): HboneTarget => ({ kind: 'hostname', hostname, port: p });

// ---- decideInbound, table-driven ----

const web = svc('web', NS, [port(80, 8080), port(81, 0)]);
const webOther = svc('web', 'other', [port(80, 7070)]);
const mapped = serving(wl(), web, [port(80, 9090)]);

interface Case {
  readonly name: string;
  readonly workload?: Workload;
  readonly items?: ReadonlyArray<Workload | Service | AuthorizationPolicy>;
  readonly target: HboneTarget;
  readonly peer?: ReturnType<typeof spiffeId>;
  readonly expected: Partial<Extract<InboundDecision, { kind: 'connect' }>> | Partial<Extract<InboundDecision, { kind: 'refuse' }>>;
  readonly reason?: RegExp;
}

const cases: Case[] = [
  { name: 'address target on a local IP: allowed with no policies', target: addr(LOCAL_IP, 8080), expected: { kind: 'connect', ip: LOCAL_IP, port: 8080 }, reason: /no allow policies/ },
  { name: 'address target on another IP: 400 ip mismatch', target: addr('10.0.0.9', 8080), expected: { kind: 'refuse', status: 400, code: ErrorCode.PROXY_IP_MISMATCH }, reason: /ip mismatch/ },
  {
    name: 'application_tunnel skips the IP check and dials the local IP',
    workload: wl({ applicationTunnel: { protocol: 'NONE', port: 15088 } }),
    target: addr('10.0.0.9', 8080),
    expected: { kind: 'connect', ip: LOCAL_IP, port: 8080 },
  },
  { name: 'a second local IP is dialled as asked', workload: wl({ addresses: [LOCAL_IP, 'fd00::5'] }), target: addr('fd00::5', 8080), expected: { kind: 'connect', ip: 'fd00::5', port: 8080 } },
  { name: 'hostname target: the endpoint mapping wins', workload: mapped, items: [web], target: host(web.hostname, 80), expected: { kind: 'connect', ip: LOCAL_IP, port: 9090 } },
  { name: 'hostname target: the service target_port without a mapping', items: [web], target: host(web.hostname, 80), expected: { kind: 'connect', ip: LOCAL_IP, port: 8080 } },
  { name: 'hostname target: the workload namespace is preferred', items: [webOther, svc('web', NS, [port(80, 6060)])], target: host(web.hostname, 80), expected: { kind: 'connect', port: 6060 } },
  { name: 'hostname target: another namespace when the own has none', items: [webOther], target: host(webOther.hostname, 80), expected: { kind: 'connect', port: 7070 } },
  { name: 'unknown hostname: 503', items: [web], target: host('nope.ns.svc.cluster.local', 80), expected: { kind: 'refuse', status: 503, code: ErrorCode.PROXY_UNKNOWN_SERVICE }, reason: /no service for hostname/ },
  { name: 'unknown service port: 503', items: [web], target: host(web.hostname, 9999), expected: { kind: 'refuse', status: 503, code: ErrorCode.PROXY_NO_TARGET_PORT } },
  { name: 'named port without a mapping: 503', items: [web], target: host(web.hostname, 81), expected: { kind: 'refuse', status: 503, code: ErrorCode.PROXY_NO_TARGET_PORT } },
  { name: 'named port resolved by the mapping', workload: serving(wl(), web, [port(81, 8181)]), items: [web], target: host(web.hostname, 81), expected: { kind: 'connect', port: 8181 } },
  { name: 'self port: 503', target: addr(LOCAL_IP, 15008), expected: { kind: 'refuse', status: 503, code: ErrorCode.PROXY_SELF_CALL } },
  { name: 'self port after service translation: 503', items: [svc('web', NS, [port(80, 15006)])], target: host(web.hostname, 80), expected: { kind: 'refuse', status: 503, code: ErrorCode.PROXY_SELF_CALL } },
  { name: 'no local IP: 503', workload: wl({ addresses: [] }), items: [web], target: host(web.hostname, 80), expected: { kind: 'refuse', status: 503, code: ErrorCode.PROXY_NO_ENDPOINT_IP } },
  {
    name: 'DENY matching the peer: 401 explicitly denied',
    items: [policy('deny-client', 'DENY', { principals: [principal('client')] })],
    target: addr(LOCAL_IP, 8080),
    expected: { kind: 'refuse', status: 401, code: ErrorCode.PROXY_AUTHORIZATION_DENIED },
    reason: /explicitly denied by: ns\/deny-client/,
  },
  {
    name: 'DENY on the translated port, not the service port: 401',
    items: [web, policy('deny-8080', 'DENY', { destinationPorts: [8080] })],
    target: host(web.hostname, 80),
    expected: { kind: 'refuse', status: 401 },
    reason: /explicitly denied by/,
  },
  {
    name: 'ALLOW-only with a non-matching principal: 401',
    items: [policy('allow-other', 'ALLOW', { principals: [principal('other')] })],
    target: addr(LOCAL_IP, 8080),
    expected: { kind: 'refuse', status: 401, code: ErrorCode.PROXY_AUTHORIZATION_DENIED },
    reason: /allow policies exist, but none allowed/,
  },
  {
    name: 'ALLOW matching the peer: connect',
    items: [policy('allow-client', 'ALLOW', { principals: [principal('client')] })],
    target: addr(LOCAL_IP, 8080),
    expected: { kind: 'connect', ip: LOCAL_IP, port: 8080 },
    reason: /allowed by: ns\/allow-client/,
  },
  {
    name: 'ALLOW on the resolved destination IP and source IP: connect',
    items: [policy('allow-ips', 'ALLOW', { destinationIps: [{ ip: LOCAL_IP, prefixLength: 32 }], sourceIps: [{ ip: '10.1.0.0', prefixLength: 16 }] })],
    target: addr(LOCAL_IP, 8080),
    expected: { kind: 'connect' },
  },
  {
    name: 'a policy of another namespace does not apply',
    items: [{ ...policy('deny-all', 'DENY', { principals: [{ kind: 'presence' }] }), namespace: 'other' }],
    target: addr(LOCAL_IP, 8080),
    expected: { kind: 'connect' },
  },
];

for (const c of cases) {
  test(`decideInbound: ${c.name}`, (t) => {
    const workload = c.workload ?? wl();
    const state = store([workload, ...(c.items ?? [])]);
    const decision = decideInbound(state, { workload, ownPorts: OWN_PORTS }, { target: c.target, peer: c.peer ?? CLIENT, sourceIp: '10.1.2.3' });
    t.like(decision, c.expected);
    if (c.reason) t.regex(decision.kind === 'connect' ? decision.policyReason : decision.reason, c.reason);
  });
}

// ---- integration: the real HBONE server and client on loopback ----

interface Inbound {
  readonly fx: HboneFixture;
  readonly state: WorkloadStore;
  readonly appPort: number;
  readonly connections: InboundConnection[];
  /** Resolves with the first finished tunnel's report. */
  readonly firstConnection: Promise<InboundConnection>;
  readonly log: ReturnType<typeof captureLog>;
  close(): Promise<void>;
}

/** An echo app on 127.0.0.1, the local workload, and an HBONE server running the inbound handler. */
async function inbound(policies: AuthorizationPolicy[] = []): Promise<Inbound> {
  const app = await tcpServer(echo);
  const workload = wl();
  const state = store([workload, ...policies]);
  const local: InboundLocal = { workload, ownPorts: OWN_PORTS };
  const connections: InboundConnection[] = [];
  let report: (c: InboundConnection) => void = () => {};
  const firstConnection = new Promise<InboundConnection>((resolve) => (report = resolve));
  const onConnection = (c: InboundConnection) => {
    connections.push(c);
    report(c);
  };
  const log = captureLog();
  const fx = await hboneFixture({ handler: inboundHandler({ state, local: () => local, logger: log.logger, onConnection }) });
  return {
    fx,
    state,
    appPort: app.port,
    connections,
    firstConnection,
    log,
    close: async () => {
      await fx.close();
      await app.close();
    },
  };
}

/** Opens a tunnel to the echo app, round-trips `text`, and returns what came back. */
async function roundTrip(fx: HboneFixture, authority: string, text: string, source = CLIENT): Promise<string> {
  const tunnel = await fx.connect(authority, { source });
  tunnel.stream.end(text);
  return readAll(tunnel.stream);
}

async function rejectedStatus(fx: HboneFixture, authority: string, source = CLIENT): Promise<number | undefined> {
  const err = await fx.connect(authority, { source }).then(
    (tunnel) => {
      tunnel.stream.destroy();
      return undefined;
    },
    (e: unknown) => e,
  );
  return err instanceof HboneError ? err.status : undefined;
}

test('inbound: an allowed CONNECT reaches the app and echoes; byte counts are reported on close', async (t) => {
  const s = await inbound([policy('allow-client', 'ALLOW', { principals: [principal('client')] })]);
  t.teardown(() => s.close());
  t.is(await roundTrip(s.fx, `${LOCAL_IP}:${s.appPort}`, 'hello inbound'), 'hello inbound');
  // onClose runs once the relay finishes, which may be just after the client read the end.
  const connection = await s.firstConnection;
  t.like(connection, { sourceIp: LOCAL_IP, destination: { ip: LOCAL_IP, port: s.appPort }, bytesReceived: 13, bytesSent: 13, policyReason: 'allowed by: ns/allow-client' });
  t.is(connection.error, undefined);
  t.is(s.connections.length, 1);
});

test('inbound: a denied CONNECT gets 401, is logged with its code, and the server keeps serving', async (t) => {
  const s = await inbound([policy('deny-bad', 'DENY', { principals: [principal('bad')] })]);
  t.teardown(() => s.close());
  const mark = s.log.mark();
  t.is(await rejectedStatus(s.fx, `${LOCAL_IP}:${s.appPort}`, spiffeId('cluster.local', NS, 'bad')), 401);
  const record = await s.log.waitForCode(ErrorCode.PROXY_AUTHORIZATION_DENIED, mark);
  t.like(record, { component: 'inbound', status: 401, peer: 'spiffe://cluster.local/ns/ns/sa/bad' });
  t.regex(String(record['err']), /explicitly denied by: ns\/deny-bad/);
  t.is(await roundTrip(s.fx, `${LOCAL_IP}:${s.appPort}`, 'still here'), 'still here');
});

test('inbound: a wrong authority IP gets 400 and the server keeps serving', async (t) => {
  const s = await inbound();
  t.teardown(() => s.close());
  t.is(await rejectedStatus(s.fx, `10.0.0.9:${s.appPort}`), 400);
  t.like(await s.log.waitForCode(ErrorCode.PROXY_IP_MISMATCH), { component: 'inbound', status: 400 });
  t.is(await roundTrip(s.fx, `${LOCAL_IP}:${s.appPort}`, 'after 400'), 'after 400');
});

test('inbound: a port nobody listens on gets 503 and the server keeps serving', async (t) => {
  const s = await inbound();
  t.teardown(() => s.close());
  const closed = await tcpServer(() => {});
  const deadPort = closed.port;
  await closed.close();
  t.is(await rejectedStatus(s.fx, `${LOCAL_IP}:${deadPort}`), 503);
  t.like(await s.log.waitForCode(ErrorCode.HBONE_UPSTREAM_CONNECT_FAILED), { component: 'inbound', status: 503 });
  t.is(await roundTrip(s.fx, `${LOCAL_IP}:${s.appPort}`, 'after 503'), 'after 503');
});

test('inbound: a hostname target is translated to the app port through the service', async (t) => {
  const s = await inbound();
  t.teardown(() => s.close());
  s.state.upsertService(svc('echo', NS, [port(80, s.appPort)]));
  t.is(await roundTrip(s.fx, `echo.${NS}.svc.cluster.local:80`, 'by name'), 'by name');
  t.is(await rejectedStatus(s.fx, 'missing.ns.svc.cluster.local:80'), 503);
  t.is(await rejectedStatus(s.fx, `${LOCAL_IP}:15008`), 503);
  t.like(await s.log.waitForCode(ErrorCode.PROXY_SELF_CALL), { component: 'inbound', status: 503 });
});

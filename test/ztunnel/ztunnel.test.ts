import test, { type ExecutionContext } from 'ava';
import { once } from 'node:events';
import { writeFile, rename } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import { join } from 'node:path';
import { ErrorCode } from '../../src/core/error-codes.ts';
import { createHboneClient, type HboneClient } from '../../src/hbone/client.ts';
import { HboneError } from '../../src/hbone/errors.ts';
import { LocalCaClient } from '../../src/identity/local-ca-client.ts';
import { parseZtunnelConfig, type ZtunnelConfig } from '../../src/ztunnel/config.ts';
import { startZtunnel, type Ztunnel } from '../../src/ztunnel/ztunnel.ts';
import { captureLog, type CapturedLog } from '../helpers/log.ts';
import { testPki, type TestPki } from '../helpers/pki.ts';
import { echo, readAll, tcpServer, type TcpTestServer } from '../helpers/tcp.ts';
import { tempDir } from '../helpers/tmp.ts';
import { sample, until } from '../helpers/prometheus.ts';

/**
 * `ambientd ztunnel` assembled in-process (dedicated mode, local config file, ports 0): the inbound
 * paths, telemetry, admin, policy updates and drain, against a real HBONE client from the same CA.
 * The outbound path needs iptables capture: see two-nodes.test.ts.
 */

const SERVER_IP = '127.0.0.1';
const CLIENT_IP = '127.0.0.2';

function meshYaml(appPort: number, policies = ''): string {
  return `
workloads:
- uid: cluster1//v1/Pod/default/server
  name: server
  namespace: default
  serviceAccount: server
  trustDomain: cluster.local
  workloadIps: ["${SERVER_IP}"]
  protocol: HBONE
  node: node-a
  canonicalName: echo
  canonicalRevision: v1
  workloadName: server
  services:
    "default/echo.default.svc.cluster.local":
      80: ${appPort}
- uid: cluster1//v1/Pod/default/client
  name: client
  namespace: default
  serviceAccount: client
  trustDomain: cluster.local
  workloadIps: ["${CLIENT_IP}"]
  protocol: HBONE
  node: node-b
  workloadName: client
services:
- name: echo
  namespace: default
  hostname: echo.default.svc.cluster.local
  vips: ["/10.96.0.10"]
  ports:
    80: ${appPort}
${policies}`;
}

const DENY_CLIENT = `policies:
- name: deny-client
  namespace: default
  scope: Namespace
  action: Deny
  rules:
  - - - principals: [{Exact: cluster.local/ns/default/sa/client}]
`;

interface Running {
  readonly zt: Ztunnel;
  readonly pki: TestPki;
  readonly client: HboneClient;
  readonly app: TcpTestServer;
  readonly log: CapturedLog;
  readonly meshFile: string;
  /** Opens a tunnel from default/client (source IP 127.0.0.2) to the ztunnel's HBONE port. */
  tunnel(authority: string): ReturnType<HboneClient['connect']>;
  rewriteMesh(yaml: string): Promise<void>;
  admin(path: string, method?: string): Promise<{ status: number; body: string }>;
  metrics(): Promise<string>;
}

function config(meshFile: string, extraEnv: Record<string, string> = {}): ZtunnelConfig {
  const parsed = parseZtunnelConfig(
    { 'admin-port': '0', 'stats-port': '0', 'readiness-port': '0', 'outbound-port': '0', 'inbound-port': '0', 'inbound-plaintext-port': '0' },
    {
      PROXY_MODE: 'dedicated',
      PROXY_WORKLOAD_INFO: 'default/server/server',
      XDS_ADDRESS: '',
      LOCAL_XDS_PATH: meshFile,
      NODE_NAME: 'node-a',
      CONNECTION_TERMINATION_DEADLINE: '3s',
      ISTIO_META_ISTIO_VERSION: '1.28.0',
      ...extraEnv,
    },
  );
  if (!parsed.ok) throw new Error(parsed.errors.join('\n'));
  return parsed.value;
}

async function start(t: ExecutionContext, options: { app?: (socket: Socket) => void; policies?: string } = {}): Promise<Running> {
  const dir = await tempDir(t);
  const app = await tcpServer(options.app ?? echo);
  const meshFile = join(dir, 'mesh.yaml');
  await writeFile(meshFile, meshYaml(app.port, options.policies));
  const pki = testPki();
  const log = captureLog();
  const zt = await startZtunnel(config(meshFile), { logger: log.logger, ca: new LocalCaClient(pki.ca) });
  const client = createHboneClient({ certificates: pki.certificates });
  t.teardown(async () => {
    await client.close();
    await zt.close();
    await app.close();
    await pki.close();
  });
  const ports = zt.ports();
  const http = async (port: number, path: string, method = 'GET') => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`, { method });
    return { status: res.status, body: await res.text() };
  };
  return {
    zt,
    pki,
    client,
    app,
    log,
    meshFile,
    tunnel: (authority) =>
      client.connect({
        source: pki.id('default', 'client'),
        expectedIdentities: [pki.id('default', 'server')],
        address: { host: '127.0.0.1', port: ports.proxy!.inbound },
        sourceIp: CLIENT_IP,
        authority,
      }),
    async rewriteMesh(yaml) {
      // Write then rename, as a ConfigMap update swaps the file whole.
      await writeFile(`${meshFile}.next`, yaml);
      await rename(`${meshFile}.next`, meshFile);
    },
    admin: (path, method) => http(ports.admin, path, method),
    metrics: async () => (await http(ports.stats, '/metrics')).body,
  };
}

test('dedicated ztunnel: ready, an allowed tunnel reaches the app, and the destination metrics and access log are exact', async (t) => {
  const s = await start(t);
  t.deepEqual(await s.admin('/healthz/ready').catch(() => undefined), { status: 404, body: 'not found\n' }, 'the admin port does not serve readiness');
  const ready = await fetch(`http://127.0.0.1:${s.zt.ports().readiness}/healthz/ready`);
  t.is(ready.status, 200);

  const tunnel = await s.tunnel(`${SERVER_IP}:${s.app.port}`);
  tunnel.stream.end('hello ztunnel');
  t.is(await readAll(tunnel.stream), 'hello ztunnel');

  let text = '';
  await until(async () => sample((text = await s.metrics()), 'istio_tcp_connections_closed_total', 'reporter="destination"') === 1, 'the close to be counted');
  const labels = [
    'reporter="destination"',
    'source_workload="client"',
    'source_principal="spiffe://cluster.local/ns/default/sa/client"',
    'destination_workload="server"',
    'destination_canonical_service="echo"',
    'destination_canonical_revision="v1"',
    'destination_principal="spiffe://cluster.local/ns/default/sa/server"',
    'destination_service="echo.default.svc.cluster.local"',
    'connection_security_policy="mutual_tls"',
    'response_flags="-"',
  ];
  t.is(sample(text, 'istio_tcp_connections_opened_total', ...labels), 1);
  t.is(sample(text, 'istio_tcp_received_bytes_total', ...labels), 13);
  t.is(sample(text, 'istio_tcp_sent_bytes_total', ...labels), 13);
  t.is(sample(text, 'istio_tcp_connections_failed_total'), undefined, 'nothing failed');
  t.is(sample(text, 'istio_build', 'component="ztunnel"', 'tag="1.28.0"'), 1);

  const access = s.log.records.find((r) => r['component'] === 'access' && r['msg'] === 'connection complete');
  t.like(access, {
    level: 'info',
    direction: 'inbound',
    'src.identity': 'spiffe://cluster.local/ns/default/sa/client',
    'src.workload': 'client',
    'dst.workload': 'server',
    'dst.hbone_addr': `${SERVER_IP}:${s.app.port}`,
    'dst.service': 'echo.default.svc.cluster.local',
    bytes_sent: 13,
    bytes_recv: 13,
  });
});

test('dedicated ztunnel: /config_dump shows the loaded workloads, services and the certificate with its expiry', async (t) => {
  const s = await start(t);
  const { status, body } = await s.admin('/config_dump');
  t.is(status, 200);
  const dump = JSON.parse(body) as {
    workloads: Array<{ uid: string; services: Record<string, unknown> }>;
    services: Array<{ hostname: string }>;
    policies: unknown[];
    certificates: Array<{ identity: string; state: string; certChain: Array<{ expirationTime: string }> }>;
    config: { proxyMode: string };
  };
  t.deepEqual(dump.workloads.map((w) => w.uid).sort(), ['cluster1//v1/Pod/default/client', 'cluster1//v1/Pod/default/server']);
  t.deepEqual(Object.keys(dump.workloads.find((w) => w.uid.endsWith('server'))!.services), ['default/echo.default.svc.cluster.local']);
  t.deepEqual(dump.services.map((svc) => svc.hostname), ['echo.default.svc.cluster.local']);
  t.deepEqual(dump.policies, []);
  t.is(dump.config.proxyMode, 'dedicated');
  const cert = dump.certificates.find((c) => c.identity === 'spiffe://cluster.local/ns/default/sa/server');
  t.is(cert?.state, 'Available');
  const expiry = Date.parse(cert?.certChain[0]?.expirationTime ?? '');
  t.true(expiry > Date.now() && expiry <= Date.now() + 25 * 3600_000, 'a leaf valid for at most SECRET_TTL (24 h)');
});

test('dedicated ztunnel: a DENY policy answers 401, counts a DENY failure, and a policy update closes a live tunnel', async (t) => {
  const s = await start(t);
  // A live tunnel, proven to work before the policy arrives.
  const live = await s.tunnel(`${SERVER_IP}:${s.app.port}`);
  live.stream.write('before');
  const [first] = (await once(live.stream, 'data')) as [Buffer];
  t.is(String(first), 'before');
  const mark = s.log.mark();
  const reset = new Promise<number | undefined>((resolve) => live.stream.once('close', () => resolve(live.stream.rstCode)));

  await s.rewriteMesh(meshYaml(s.app.port, DENY_CLIENT));
  const closed = await s.log.waitForCode(ErrorCode.PROXY_POLICY_CHANGED, mark);
  t.regex(String(closed['err']), /connection closed due to policy change: explicitly denied by: default\/deny-client/);
  t.not(await reset, 0, 'the client sees a stream reset, not a clean end');

  const refused = await s.tunnel(`${SERVER_IP}:${s.app.port}`).then(
    () => undefined,
    (err: unknown) => err,
  );
  t.true(refused instanceof HboneError);
  t.is((refused as HboneError).status, 401);
  let text = '';
  await until(async () => sample((text = await s.metrics()), 'istio_tcp_connections_failed_total', 'response_flags="DENY"') === 2, 'two DENY failures');
  t.is(sample(text, 'istio_tcp_connections_closed_total', 'response_flags="DENY"', 'reporter="destination"'), 2, 'the policy-closed tunnel and the refused CONNECT');
  t.is(sample(text, 'istio_tcp_connections_opened_total', 'reporter="destination"'), 2, 'opened is counted once per connection, with no flag');
});

test('dedicated ztunnel: bad CONNECTs get 400 and 503, and a burst of 10,000 refused connections leaves it serving', async (t) => {
  const s = await start(t);
  const status = (authority: string) =>
    s.tunnel(authority).then(
      (tunnel) => {
        tunnel.stream.destroy();
        return 200;
      },
      (err: unknown) => (err instanceof HboneError ? err.status : -1),
    );
  t.is(await status(`10.9.9.9:${s.app.port}`), 400, 'authority is not the local workload');
  const gone = await tcpServer(() => {});
  const deadPort = gone.port;
  await gone.close();
  t.is(await status(`${SERVER_IP}:${deadPort}`), 503, 'nobody listens there');

  // The plaintext port (15006) without capture sees its own address as destination: a self call,
  // answered with a reset and a `connection failed` line each time.
  const plaintext = s.zt.ports().proxy!.inboundPlaintext;
  const before = s.log.records.filter((r) => r['code'] === ErrorCode.PROXY_SELF_CALL).length;
  let resets = 0;
  for (let batch = 0; batch < 20; batch++) {
    await Promise.all(
      Array.from({ length: 500 }, async () => {
        const socket = connect({ host: '127.0.0.1', port: plaintext });
        socket.resume();
        await new Promise<void>((resolve) => {
          socket.once('error', (err: NodeJS.ErrnoException) => {
            if (err.code === 'ECONNRESET') resets++;
            resolve();
          });
          socket.once('close', () => resolve());
        });
      }),
    );
  }
  t.is(resets, 10_000, 'every attempt is reset');
  await until(() => s.log.records.filter((r) => r['code'] === ErrorCode.PROXY_SELF_CALL).length - before === 10_000, 'one log line per attempt', 10_000);

  const tunnel = await s.tunnel(`${SERVER_IP}:${s.app.port}`);
  tunnel.stream.end('still serving');
  t.is(await readAll(tunnel.stream), 'still serving');
});

test('dedicated ztunnel: on close, an in-flight tunnel finishes within the deadline and new connections are refused', async (t) => {
  // An app that answers slowly: the response arrives 600 ms after the request ends.
  const s = await start(t, {
    app: (socket) => {
      let got = '';
      socket.on('data', (d: Buffer) => (got += String(d)));
      socket.on('end', () => setTimeout(() => socket.end(`slow:${got}`), 600));
    },
  });
  const tunnel = await s.tunnel(`${SERVER_IP}:${s.app.port}`);
  tunnel.stream.end('payload');
  const response = readAll(tunnel.stream);
  await until(() => s.log.records.some((r) => r['msg'] === 'HBONE listening'), 'startup log');
  const closing = s.zt.close();
  t.is(await response, 'slow:payload', 'the in-flight transfer completed during the drain');
  await closing;
  const after = await s.tunnel(`${SERVER_IP}:${s.app.port}`).then(
    () => 'connected',
    () => 'refused',
  );
  t.is(after, 'refused');
});

test('dedicated ztunnel: an update that removes the workload mid-connection closes it, and new CONNECTs get 503', async (t) => {
  const s = await start(t);
  const live = await s.tunnel(`${SERVER_IP}:${s.app.port}`);
  live.stream.write('before');
  const [first] = (await once(live.stream, 'data')) as [Buffer];
  t.is(String(first), 'before');
  const closedWith = new Promise<number | undefined>((resolve) => live.stream.once('close', () => resolve(live.stream.rstCode)));
  live.stream.on('error', () => {});
  const mark = s.log.mark();
  // The same mesh without the server workload.
  await s.rewriteMesh(meshYaml(s.app.port).replace(/- uid: cluster1\/\/v1\/Pod\/default\/server[\s\S]*?(?=- uid:)/, ''));
  const record = await s.log.waitForCode(ErrorCode.PROXY_POLICY_CHANGED, mark);
  t.regex(String(record['err']), /destination workload was removed/);
  t.not(await closedWith, 0);
  const refused = await s.tunnel(`${SERVER_IP}:${s.app.port}`).then(
    () => undefined,
    (err: unknown) => err,
  );
  t.is((refused as HboneError).status, 503);
  t.like(await s.log.waitForCode(ErrorCode.PROXY_UNKNOWN_LOCAL_WORKLOAD, mark), { status: 503 });
});

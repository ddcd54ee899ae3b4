import test from 'ava';
import { createHboneClient } from '../../src/hbone/client.ts';
import { HboneError } from '../../src/hbone/errors.ts';
import { LocalCaClient } from '../../src/identity/local-ca-client.ts';
import { ipToBytes } from '../../src/workload-api/convert.ts';
import { encodeMessage, TypeUrl } from '../../src/workload-api/proto.ts';
import { ResourceSnapshot } from '../../src/workload-api/snapshot.ts';
import { parseZtunnelConfig, type ZtunnelConfig } from '../../src/ztunnel/config.ts';
import { startZtunnel } from '../../src/ztunnel/ztunnel.ts';
import { captureLog } from '../helpers/log.ts';
import { testPki } from '../helpers/pki.ts';
import { echo, readAll, tcpServer } from '../helpers/tcp.ts';
import { ISTIOD, startXdsServer, type XdsServerFixture } from '../helpers/xds.ts';
import { sample, until } from '../helpers/prometheus.ts';

/**
 * `ambientd ztunnel` (dedicated mode, ports 0) fed by a real delta-ADS server over TLS instead of a
 * local file: losing the server keeps the last config serving, and a server back on the same port
 * is reconnected to and its changes apply.
 */

const SERVER_IP = '127.0.0.1';
const CLIENT_IP = '127.0.0.2';
const SERVER_UID = 'cluster1//v1/Pod/default/server';
const CLIENT_UID = 'cluster1//v1/Pod/default/client';

function workload(uid: string, name: string, ip: string, node: string): readonly [string, Buffer] {
  return [
    uid,
    encodeMessage('istio.workload.Address', {
      workload: { uid, name, namespace: 'default', addresses: [ipToBytes(ip)], tunnelProtocol: 'HBONE', serviceAccount: name, trustDomain: 'cluster.local', node, workloadName: name },
    }),
  ];
}

const WORKLOADS = [workload(SERVER_UID, 'server', SERVER_IP, 'node-a'), workload(CLIENT_UID, 'client', CLIENT_IP, 'node-b')];

const DENY_CLIENT = [
  'default/deny-client',
  encodeMessage('istio.security.Authorization', {
    name: 'deny-client',
    namespace: 'default',
    scope: 'NAMESPACE',
    action: 'DENY',
    rules: [{ clauses: [{ matches: [{ principals: [{ exact: 'cluster.local/ns/default/sa/client' }] }] }] }],
  }),
] as const;

function config(xdsPort: number, rootPem: string): ZtunnelConfig {
  const parsed = parseZtunnelConfig(
    { 'admin-port': '0', 'stats-port': '0', 'readiness-port': '0', 'outbound-port': '0', 'inbound-port': '0', 'inbound-plaintext-port': '0' },
    {
      PROXY_MODE: 'dedicated',
      PROXY_WORKLOAD_INFO: 'default/server/server',
      XDS_ADDRESS: `https://localhost:${xdsPort}`,
      XDS_ROOT_CA: rootPem,
      ALT_XDS_HOSTNAME: ISTIOD,
      // Not an existing path, so Istio's AUTH_TOKEN rule takes it as the token itself.
      AUTH_TOKEN: 'ztunnel-xds-test-token',
      NODE_NAME: 'node-a',
      CONNECTION_TERMINATION_DEADLINE: '1s',
    },
  );
  if (!parsed.ok) throw new Error(parsed.errors.join('\n'));
  return parsed.value;
}

test('dedicated ztunnel on xDS: losing the xDS server keeps the last config serving, and it reconnects and applies changes', async (t) => {
  const pki = testPki();
  const app = await tcpServer(echo);
  const first = await startXdsServer(pki.ca);
  first.snapshot.replaceAll(TypeUrl.address, WORKLOADS);
  let second: XdsServerFixture | undefined;
  const log = captureLog();
  const zt = await startZtunnel(config(first.port, first.rootPem), { logger: log.logger, ca: new LocalCaClient(pki.ca) });
  const client = createHboneClient({ certificates: pki.certificates });
  t.teardown(async () => {
    await client.close();
    await zt.close();
    await first.close();
    await second?.close();
    await app.close();
    await pki.close();
  });

  const ports = zt.ports();
  const get = async (port: number, path: string) => {
    const res = await fetch(`http://127.0.0.1:${port}${path}`);
    return { status: res.status, body: await res.text() };
  };
  const metrics = async () => (await get(ports.stats, '/metrics')).body;
  const tunnel = () =>
    client.connect({
      source: pki.id('default', 'client'),
      expectedIdentities: [pki.id('default', 'server')],
      address: { host: '127.0.0.1', port: ports.proxy!.inbound },
      sourceIp: CLIENT_IP,
      authority: `${SERVER_IP}:${app.port}`,
    });
  const echoes = async (text: string) => {
    const { stream } = await tunnel();
    stream.end(text);
    return readAll(stream);
  };
  const dumpedWorkloads = async () => {
    const dump = JSON.parse((await get(ports.admin, '/config_dump')).body) as {
      workloads: Array<{ uid: string }>;
      policies: Array<{ name: string }>;
      config: { workloadApi: { token: unknown } };
    };
    t.deepEqual(dump.config.workloadApi.token, { kind: 'literal', token: '[redacted]' }, 'AUTH_TOKEN was taken as a literal token');
    return { uids: dump.workloads.map((w) => w.uid).sort(), policies: dump.policies.map((p) => p.name) };
  };

  // 1. Ready only once xDS has answered every type; then the mesh state from xDS routes a tunnel.
  await until(async () => (await get(ports.readiness, '/healthz/ready')).status === 200, 'readiness (xDS synced)');
  t.is(zt.state.workloadByUid(SERVER_UID)?.addresses[0], SERVER_IP, 'the local workload came from xDS');
  t.is(await echoes('over xds'), 'over xds');
  const before = await metrics();
  t.is(sample(before, 'istio_xds_connection_terminations_total', 'reason="Reconnect"') ?? 0, 0, 'no stream has ended yet');

  // 2. The xDS server goes away: the stream it ended is counted, and the last config keeps serving.
  await first.close();
  let text = '';
  await until(async () => (sample((text = await metrics()), 'istio_xds_connection_terminations_total', 'reason="Reconnect"') ?? 0) >= 1, 'the stream end to be counted');
  t.is(sample(text, 'istio_xds_connection_terminations_total', 'reason="Reconnect"'), 1, 'the server ended a connected stream cleanly: one Reconnect');
  await until(async () => (sample((text = await metrics()), 'istio_xds_connection_terminations_total', 'reason="ConnectionError"') ?? 0) >= 1, 'a failed reconnect attempt');
  t.is(await echoes('still serving'), 'still serving', 'the last config keeps serving');
  t.deepEqual(await dumpedWorkloads(), { uids: [CLIENT_UID, SERVER_UID], policies: [] }, 'the config dump still holds the workloads');
  t.is((await get(ports.readiness, '/healthz/ready')).status, 200, 'still ready: readiness is about the first sync');

  // 3. A server with a changed snapshot comes back on the same port: the client reconnects and the DENY applies.
  const snapshot = new ResourceSnapshot();
  snapshot.replaceAll(TypeUrl.address, WORKLOADS);
  snapshot.set(TypeUrl.authorization, DENY_CLIENT[0], DENY_CLIENT[1]);
  second = await startXdsServer(pki.ca, { snapshot, port: first.port });
  const outcome = () =>
    tunnel().then(
      (opened) => {
        opened.stream.destroy();
        return 200;
      },
      (err: unknown) => (err instanceof HboneError ? err.status : String(err)),
    );
  let status: number | string | undefined;
  await until(async () => (status = await outcome()) !== 200, 'the DENY policy from the new server to apply', 10_000);
  t.is(status, 401, 'a new tunnel is denied');
  t.deepEqual(await dumpedWorkloads(), { uids: [CLIENT_UID, SERVER_UID], policies: ['deny-client'] });
  t.is(second.service.stats().nacks, 0, 'nothing of the new snapshot was rejected');
});

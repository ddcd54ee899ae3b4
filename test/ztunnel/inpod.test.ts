import test, { type ExecutionContext } from 'ava';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { connect } from 'node:net';
import { join } from 'node:path';
import { ErrorCode } from '../../src/core/error-codes.ts';
import { createHboneClient } from '../../src/hbone/client.ts';
import { LocalCaClient } from '../../src/identity/local-ca-client.ts';
import { closeFd, createTcpSocketIn, namedNetnsPath, openNetns } from '../../src/sys/netns.ts';
import { SeqpacketServer, type SeqpacketConnection } from '../../src/sys/seqpacket.ts';
import { decodeAck, decodeZdsHello, encodeWorkloadRequest, type ZdsRequest } from '../../src/workload-api/zds.ts';
import { parseZtunnelConfig } from '../../src/ztunnel/config.ts';
import { WORKLOAD_PROXY_MANAGER_TASK } from '../../src/ztunnel/proxy-manager.ts';
import { startZtunnel, type Ztunnel } from '../../src/ztunnel/ztunnel.ts';
import { captureLog, type CapturedLog } from '../helpers/log.ts';
import { createNodeNetwork, requireNetns, type NetnsNode } from '../helpers/netns.ts';
import { testPki, type TestPki } from '../helpers/pki.ts';
import { until } from '../helpers/prometheus.ts';
import { readAll } from '../helpers/tcp.ts';
import { tempDir } from '../helpers/tmp.ts';
import { INPOD_PORTS, inpodListening, WEB_POD_INFO, webPodMesh } from '../helpers/inpod.ts';

/**
 * Shared (in-pod) mode driven over ZDS, netns tier: a fake node agent (a SEQPACKET server in the test)
 * hands ztunnel (in-process, FAKE CA, local mesh file) a "pod" network namespace; ztunnel must open
 * the pod's 15001/15006/15008 inside it (and not in its own namespace), serve HBONE there to the pod's
 * app, drain on Del, move on a re-Add with a new namespace, and stop on a protocol violation.
 * The pods are namespaces on a bridge in its own namespace (helpers/netns.ts); the host's network is
 * never touched. The HBONE client runs in this process with its sockets created in a third namespace.
 */

const FIXTURES = join(import.meta.dirname, 'fixtures');
const APP_PORT = 8080;

const UID = '6e1c3b2a-0000-4000-8000-000000000001';

/** Whether something listens on TCP 127.0.0.1:port in this process's own namespace. */
function acceptsHere(port: number): Promise<boolean> {
  const socket = connect({ host: '127.0.0.1', port });
  return new Promise((resolve) => {
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code !== 'ECONNREFUSED'));
  });
}


interface Agent {
  readonly conn: SeqpacketConnection;
  /** Sends a request (with `fd` for Add) and returns the ack's error text ('' = ACK). */
  request(request: ZdsRequest, fd?: number): Promise<string>;
}

function agent(conn: SeqpacketConnection): Agent {
  return {
    conn,
    async request(request, fd = -1) {
      await conn.send(encodeWorkloadRequest(request), fd);
      const reply = await conn.recv();
      if (!reply) throw new Error('ztunnel closed the ZDS connection');
      const ack = decodeAck(reply.data);
      if (!ack.ok) throw new Error(ack.errors.join('; '));
      return ack.value;
    },
  };
}

interface Running {
  readonly zt: Ztunnel;
  readonly pki: TestPki;
  readonly log: CapturedLog;
  readonly pod: NetnsNode;
  readonly pod2: NetnsNode;
  readonly client: NetnsNode;
  readonly fds: { readonly pod: number; readonly pod2: number; readonly client: number };
  readonly agent: Agent;
  ready(): Promise<{ status: number; body: string }>;
}

async function start(t: ExecutionContext): Promise<Running> {
  const network = await createNodeNetwork(t, { count: 3 });
  const [pod, pod2, client] = network.nodes as [NetnsNode, NetnsNode, NetnsNode];
  const fds = { pod: openNetns(namedNetnsPath(pod.name)), pod2: openNetns(namedNetnsPath(pod2.name)), client: openNetns(namedNetnsPath(client.name)) };
  t.teardown(() => Object.values(fds).forEach((fd) => closeFd(fd)));

  const dir = await tempDir(t);
  const meshFile = join(dir, 'mesh.yaml');
  await writeFile(meshFile, webPodMesh(pod.ip));
  const socketPath = join(dir, 'ztunnel.sock');
  const server = SeqpacketServer.listen(socketPath);
  t.teardown(() => server.close());

  const parsed = parseZtunnelConfig(
    { 'admin-port': '0', 'stats-port': '0', 'readiness-port': '0' },
    { PROXY_MODE: 'shared', XDS_ADDRESS: '', LOCAL_XDS_PATH: meshFile, INPOD_UDS: socketPath, NODE_NAME: 'node-a', CONNECTION_TERMINATION_DEADLINE: '1s' },
  );
  if (!parsed.ok) throw new Error(parsed.errors.join('\n'));
  const pki = testPki();
  const log = captureLog();
  const zt = await startZtunnel(parsed.value, { logger: log.logger, ca: new LocalCaClient(pki.ca) });
  t.teardown(async () => {
    await zt.close();
    await pki.close();
  });

  const conn = await server.accept();
  t.teardown(() => conn.close());
  const hello = await conn.recv();
  t.truthy(hello, 'ztunnel sends ZdsHello first');
  t.deepEqual(decodeZdsHello(hello!.data), { ok: true, value: 'V1' });
  t.is(hello!.fd, -1);

  const ready = async () => {
    const response = await fetch(`http://127.0.0.1:${zt.ports().readiness}/healthz/ready`);
    return { status: response.status, body: await response.text() };
  };
  return { zt, pki, log, pod, pod2, client, fds, agent: agent(conn), ready };
}

/** Add with the pod's netns fd (this process keeps its own copy, as the node agent would). */
function addPod(r: Running, fd: number): Promise<string> {
  return r.agent.request({ kind: 'add', uid: UID, workloadInfo: WEB_POD_INFO }, fd);
}

test('Add + SnapshotSent: the pod gets 15001/15006/15008 in its own namespace, HBONE reaches its app; Del removes them', async (t) => {
  if (!requireNetns(t)) return;
  const r = await start(t);

  const before = await r.ready();
  t.is(before.status, 500);
  t.true(before.body.includes(WORKLOAD_PROXY_MANAGER_TASK), before.body);

  t.is(await addPod(r, r.fds.pod), '', 'Add is ACKed');
  t.deepEqual(await inpodListening(r.fds.pod), [true, true, true], 'the pod netns has 15001, 15006, 15008');
  t.deepEqual(await Promise.all(INPOD_PORTS.map((p) => acceptsHere(p))), [false, false, false], 'nothing was opened in the test namespace');
  t.is((await r.ready()).status, 500, 'not ready before SnapshotSent');

  t.is(await r.agent.request({ kind: 'snapshotSent' }), '', 'SnapshotSent is ACKed');
  t.deepEqual(await r.ready(), { status: 200, body: 'ready' });

  // HBONE from another namespace on the same bridge to the pod's 15008, to the app inside the pod.
  const app = r.pod.spawn(process.execPath, [join(FIXTURES, 'app.js'), 'web', String(APP_PORT)]);
  await once(app.stdout!, 'data');
  const hbone = createHboneClient({
    certificates: r.pki.certificates,
    connectSocket: ({ host, port }) => createTcpSocketIn(r.fds.client, 4).connect({ host, port }),
  });
  t.teardown(() => hbone.close());
  const tunnel = await hbone.connect({
    source: r.pki.id('default', 'client'),
    expectedIdentities: [r.pki.id('default', 'web')],
    address: { host: r.pod.ip, port: 15008 },
    authority: `${r.pod.ip}:${APP_PORT}`,
  });
  tunnel.stream.end('hello through the pod');
  t.is(await readAll(tunnel.stream), 'web\nhello through the pod');
  await hbone.close();

  t.is(await r.agent.request({ kind: 'del', uid: UID }), '', 'Del is ACKed');
  await until(async () => (await inpodListening(r.fds.pod)).every((up) => !up), 'the pod listeners to close after Del');
  t.deepEqual((await r.ready()).status, 200, 'no pod is pending after Del');
});

test('a second Add of the same uid with another netns moves the proxy; the same netns again is an idempotent ACK', async (t) => {
  if (!requireNetns(t)) return;
  const r = await start(t);
  t.is(await addPod(r, r.fds.pod), '');
  t.is(await r.agent.request({ kind: 'snapshotSent' }), '');
  t.deepEqual(await inpodListening(r.fds.pod), [true, true, true]);

  t.is(await addPod(r, r.fds.pod), '', 'the same netns again: ACK');
  t.deepEqual(await inpodListening(r.fds.pod), [true, true, true], 'and nothing changed');

  t.is(await addPod(r, r.fds.pod2), '', 'another netns: ACK');
  t.deepEqual(await inpodListening(r.fds.pod2), [true, true, true], 'the new namespace has the listeners');
  await until(async () => (await inpodListening(r.fds.pod)).every((up) => !up), 'the old namespace listeners to close');
});

test('a protocol violation (Keep after SnapshotSent) stops the ZDS client with ZDS_PROTOCOL_ERROR', async (t) => {
  if (!requireNetns(t)) return;
  const r = await start(t);
  t.is(await r.agent.request({ kind: 'snapshotSent' }), '');
  const mark = r.log.mark();
  const nack = await r.agent.request({ kind: 'keep', uid: UID });
  t.regex(nack, /KeepWorkload .* after SnapshotSent/);
  const record = await r.log.waitForCode(ErrorCode.ZDS_PROTOCOL_ERROR, mark);
  t.regex(String(record['err']), /after SnapshotSent/);
  t.is(await r.agent.conn.recv(), null, 'ztunnel closed the connection');
  t.is((await r.ready()).status, 500, 'readiness is pending again');
});

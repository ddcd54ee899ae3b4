import test, { type ExecutionContext } from 'ava';
import { once } from 'node:events';
import { existsSync, openSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { startZdsServer, type ZdsServer, type ZdsTimeouts } from '../../src/cni/zds-server.ts';
import { ErrorCode } from '../../src/core/error-codes.ts';
import { silentLogger } from '../../src/core/logger.ts';
import { LocalCaClient } from '../../src/identity/local-ca-client.ts';
import { closeFd, namedNetnsPath, openNetns } from '../../src/sys/netns.ts';
import { SeqpacketConnection, seqpacketRecv } from '../../src/sys/seqpacket.ts';
import { decodeWorkloadRequest, encodeAck, encodeZdsHello, type ZdsRequest } from '../../src/workload-api/zds.ts';
import { parseZtunnelConfig } from '../../src/ztunnel/config.ts';
import { startZtunnel, type Ztunnel } from '../../src/ztunnel/ztunnel.ts';
import { captureLog } from '../helpers/log.ts';
import { createNodeNetwork, requireNetns, type NetnsNode } from '../helpers/netns.ts';
import { testPki } from '../helpers/pki.ts';
import { until } from '../helpers/prometheus.ts';
import { tempDir } from '../helpers/tmp.ts';
import { inpodListening, webPodMesh } from '../helpers/inpod.ts';

/**
 * The node agent's ZDS server. Unit tier: a raw SEQPACKET connection in the test plays ztunnel and
 * checks every request, its fd and the one-ack-per-request pacing. Netns tier: the real ztunnel in
 * shared mode (in-process, fake CA, local mesh file) connects to the server and opens a pod's listeners.
 */

const WEB = { name: 'web', namespace: 'default', serviceAccount: 'web' };

async function server(t: ExecutionContext, timeouts: Partial<ZdsTimeouts> = {}): Promise<ZdsServer> {
  const dir = await tempDir(t);
  const zds = await startZdsServer({ path: join(dir, 'ztunnel.sock'), logger: silentLogger(), timeouts });
  t.teardown(() => zds.close());
  return zds;
}

/** An fd the server can own and pass (any fd travels over SCM_RIGHTS). */
function someFd(): number {
  return openSync('/dev/null', 'r');
}

interface FakeZtunnel {
  readonly conn: SeqpacketConnection;
  /** The next request and whether it carried an fd (which is closed here). */
  next(): Promise<{ request: ZdsRequest; hadFd: boolean }>;
  ack(error?: string): Promise<void>;
  /** True when nothing is waiting to be read right now. */
  idle(): boolean;
}

function fake(t: ExecutionContext, conn: SeqpacketConnection): FakeZtunnel {
  t.teardown(() => conn.close());
  return {
    conn,
    async next() {
      const message = await conn.recv();
      if (!message) throw new Error('the server closed the connection');
      const hadFd = message.fd >= 0;
      if (hadFd) closeFd(message.fd);
      const request = decodeWorkloadRequest(message.data);
      if (!request.ok) throw new Error(request.errors.join('; '));
      return { request: request.value, hadFd };
    },
    ack: (error) => conn.send(encodeAck(error)),
    idle: () => seqpacketRecv(conn.fd) === null,
  };
}

/** Connects, says hello and waits until the server registered the connection. */
async function connectZtunnel(t: ExecutionContext, zds: ZdsServer): Promise<FakeZtunnel> {
  const connected = once(zds.events, 'connected');
  const z = fake(t, SeqpacketConnection.connect(zds.path));
  await z.conn.send(encodeZdsHello());
  await connected;
  return z;
}

/** Connects and completes an empty snapshot. */
async function connectedEmpty(t: ExecutionContext, zds: ZdsServer): Promise<FakeZtunnel> {
  const snapshot = once(zds.events, 'snapshotSent');
  const z = await connectZtunnel(t, zds);
  t.deepEqual((await z.next()).request, { kind: 'snapshotSent' });
  await z.ack();
  t.deepEqual(await snapshot, [undefined]);
  return z;
}

test('no ztunnel: addPod rejects with ZDS_NO_ZTUNNEL but caches the pod; the snapshot replays Add (with fd), Keep, SnapshotSent, one ack at a time', async (t) => {
  const zds = await server(t);
  t.is(zds.connections(), 0);
  await t.throwsAsync(zds.addPod({ uid: 'uid-a', ...WEB, netnsFd: someFd() }), { code: ErrorCode.ZDS_NO_ZTUNNEL });
  zds.keepPod('uid-k');
  t.deepEqual(zds.pods(), ['uid-a', 'uid-k']);

  const snapshot = once(zds.events, 'snapshotSent');
  const z = await connectZtunnel(t, zds);
  t.is(zds.connections(), 1);
  t.deepEqual(await z.next(), { request: { kind: 'add', uid: 'uid-a', workloadInfo: WEB }, hadFd: true });
  t.true(z.idle(), 'nothing more is sent before the ack');
  await z.ack();
  t.deepEqual(await z.next(), { request: { kind: 'keep', uid: 'uid-k' }, hadFd: false });
  t.true(z.idle());
  await z.ack();
  t.deepEqual(await z.next(), { request: { kind: 'snapshotSent' }, hadFd: false });
  await z.ack();
  t.deepEqual(await snapshot, [undefined]);

  // Steady state: Add with the fd, resolved by the ACK.
  const added = zds.addPod({ uid: 'uid-b', ...WEB, netnsFd: someFd() });
  t.deepEqual(await z.next(), { request: { kind: 'add', uid: 'uid-b', workloadInfo: WEB }, hadFd: true });
  await z.ack();
  await added;
});

test('a NACK rejects addPod with ZDS_NACK carrying ztunnel\'s text; the pod stays cached', async (t) => {
  const zds = await server(t);
  const z = await connectedEmpty(t, zds);
  const added = zds.addPod({ uid: 'uid-a', ...WEB, netnsFd: someFd() });
  t.is((await z.next()).request.kind, 'add');
  await z.ack('failed to enter netns');
  const err = await t.throwsAsync(added, { code: ErrorCode.ZDS_NACK });
  t.regex(err.message, /failed to enter netns/);
  t.deepEqual(zds.pods(), ['uid-a']);
});

test('no answer within the ack timeout rejects with ZDS_ACK_TIMEOUT; the late ack is absorbed and the connection keeps working', async (t) => {
  const zds = await server(t, { ackMs: 100 });
  const z = await connectedEmpty(t, zds);
  const first = zds.addPod({ uid: 'uid-a', ...WEB, netnsFd: someFd() });
  t.is((await z.next()).request.kind, 'add');
  await t.throwsAsync(first, { code: ErrorCode.ZDS_ACK_TIMEOUT });

  const second = zds.addPod({ uid: 'uid-b', ...WEB, netnsFd: someFd() });
  t.true(z.idle(), 'the next request waits for the late answer');
  await z.ack(); // the late answer to uid-a
  t.deepEqual((await z.next()).request, { kind: 'add', uid: 'uid-b', workloadInfo: WEB });
  await z.ack();
  await second;
  t.is(zds.connections(), 1);
});

test('two ztunnels: Add goes only to the newest, Del to both; when the newest leaves, Add goes to the other', async (t) => {
  const zds = await server(t);
  const older = await connectedEmpty(t, zds);
  const newer = await connectedEmpty(t, zds);
  t.is(zds.connections(), 2);

  const added = zds.addPod({ uid: 'uid-a', ...WEB, netnsFd: someFd() });
  t.deepEqual(await newer.next(), { request: { kind: 'add', uid: 'uid-a', workloadInfo: WEB }, hadFd: true });
  await newer.ack();
  await added;
  t.true(older.idle(), 'the older ztunnel got no Add');

  const removed = zds.removePod('uid-a');
  t.deepEqual((await older.next()).request, { kind: 'del', uid: 'uid-a' });
  t.deepEqual((await newer.next()).request, { kind: 'del', uid: 'uid-a' });
  await older.ack();
  await newer.ack();
  await removed;
  t.deepEqual(zds.pods(), []);

  const gone = once(zds.events, 'disconnected');
  await newer.conn.close();
  t.deepEqual(await gone, [1]);
  t.is(zds.connections(), 1);
  const again = zds.addPod({ uid: 'uid-b', ...WEB, netnsFd: someFd() });
  t.deepEqual((await older.next()).request, { kind: 'add', uid: 'uid-b', workloadInfo: WEB });
  await older.ack();
  await again;
});

test('a bad ZdsHello, or none in time, closes the connection without registering it', async (t) => {
  const zds = await server(t, { helloMs: 100 });
  const bad = fake(t, SeqpacketConnection.connect(zds.path));
  await bad.conn.send(Buffer.alloc(0)); // ZdsHello{version: NOT_USED}
  t.is(await bad.conn.recv(), null, 'closed after a hello that is not V1');

  const silent = fake(t, SeqpacketConnection.connect(zds.path));
  t.is(await silent.conn.recv(), null, 'closed after the hello timeout');
  t.is(zds.connections(), 0);
});

test('data while no request is in flight is a protocol error that closes the connection', async (t) => {
  const zds = await server(t);
  const z = await connectedEmpty(t, zds);
  const gone = once(zds.events, 'disconnected');
  await z.ack();
  t.deepEqual(await gone, [0]);
  t.is(await z.conn.recv(), null);
  await t.throwsAsync(zds.addPod({ uid: 'uid-a', ...WEB, netnsFd: someFd() }), { code: ErrorCode.ZDS_NO_ZTUNNEL });
});

test('close() closes the connections and removes the socket file; a stale file is replaced at start', async (t) => {
  const dir = await tempDir(t);
  const path = join(dir, 'ztunnel.sock');
  await writeFile(path, 'stale');
  const zds = await startZdsServer({ path, logger: silentLogger() });
  const z = await connectedEmpty(t, zds);
  const pending = zds.addPod({ uid: 'uid-a', ...WEB, netnsFd: someFd() });
  t.is((await z.next()).request.kind, 'add');
  await zds.close();
  await t.throwsAsync(pending, { code: ErrorCode.CORE_CLOSED }, 'the request in flight fails');
  await zds.close();
  t.false(existsSync(path));
  t.is(await z.conn.recv(), null);
  t.is(zds.connections(), 0);
});

// ---- netns tier: the real ztunnel ----

test('the real ztunnel: addPod is ACKed and the pod gets its listeners; removePod removes them; a restarted ztunnel gets the snapshot', async (t) => {
  if (!requireNetns(t)) return;
  const network = await createNodeNetwork(t, { count: 2 });
  const [pod] = network.nodes as [NetnsNode, NetnsNode];
  const probeFd = openNetns(namedNetnsPath(pod.name));
  t.teardown(() => closeFd(probeFd));

  const dir = await tempDir(t);
  const meshFile = join(dir, 'mesh.yaml');
  await writeFile(meshFile, webPodMesh(pod.ip));
  const socketPath = join(dir, 'ztunnel.sock');
  const log = captureLog();
  const zds = await startZdsServer({ path: socketPath, logger: log.logger });
  t.teardown(() => zds.close());

  const parsed = parseZtunnelConfig(
    { 'admin-port': '0', 'stats-port': '0', 'readiness-port': '0' },
    { PROXY_MODE: 'shared', XDS_ADDRESS: '', LOCAL_XDS_PATH: meshFile, INPOD_UDS: socketPath, NODE_NAME: 'node-a', CONNECTION_TERMINATION_DEADLINE: '1s' },
  );
  if (!parsed.ok) throw new Error(parsed.errors.join('\n'));
  const pki = testPki();
  t.teardown(() => pki.close());
  const running = new Set<Ztunnel>();
  t.teardown(async () => {
    for (const zt of running) await zt.close();
  });
  const startOne = async (): Promise<Ztunnel> => {
    const snapshot = once(zds.events, 'snapshotSent');
    const zt = await startZtunnel(parsed.value, { logger: log.logger, ca: new LocalCaClient(pki.ca) });
    running.add(zt);
    t.deepEqual(await snapshot, [undefined], 'the snapshot is ACKed');
    return zt;
  };
  const ready = async (zt: Ztunnel): Promise<number> => (await fetch(`http://127.0.0.1:${zt.ports().readiness}/healthz/ready`)).status;

  const first = await startOne();
  t.is(zds.connections(), 1);
  t.is(await ready(first), 200, 'ready after the (empty) snapshot');

  const uid = '6e1c3b2a-0000-4000-8000-000000000001';
  await zds.addPod({ uid, ...WEB, netnsFd: openNetns(namedNetnsPath(pod.name)) });
  t.deepEqual(await inpodListening(probeFd), [true, true, true], 'the pod netns has 15001, 15006, 15008');

  await zds.removePod(uid);
  await until(async () => (await inpodListening(probeFd)).every((up) => !up), 'the pod listeners to close after Del');

  await zds.addPod({ uid, ...WEB, netnsFd: openNetns(namedNetnsPath(pod.name)) });
  t.deepEqual(await inpodListening(probeFd), [true, true, true]);

  // Restart: the first ztunnel goes away (its pod listeners with it), a new one gets the cached pod.
  const gone = once(zds.events, 'disconnected');
  running.delete(first);
  await first.close();
  t.deepEqual(await gone, [0]);
  await until(async () => (await inpodListening(probeFd)).every((up) => !up), 'the pod listeners to close with the first ztunnel');

  const second = await startOne();
  t.is(zds.connections(), 1);
  t.deepEqual(await inpodListening(probeFd), [true, true, true], 'the restarted ztunnel listens in the pod again');
  t.is(await ready(second), 200);
});

import test, { type ExecutionContext } from 'ava';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { Readable } from 'node:stream';
import { createHboneClient } from '../../src/hbone/client.ts';
import { forwardToTarget } from '../../src/hbone/forward.ts';
import { startHboneServer } from '../../src/hbone/server.ts';
import { silentLogger } from '../../src/core/logger.ts';
import type { ConnectionPool } from '../../src/workload-api/l7-types.ts';
import type { Workload } from '../../src/workload-api/types.ts';
import { TryFailure, Upstream, type UpstreamRequest } from '../../src/waypoint/upstream.ts';
import { testPki } from '../helpers/pki.ts';

/**
 * The waypoint's HTTP/1.1 upstream connections, with real peers: the Upstream over the project's HBONE
 * client, a ztunnel-like HBONE server (forwardToTarget: one TCP connection to the app per CONNECT), and
 * a node HTTP app that counts the TCP connections it accepts — one per upstream connection.
 */

const POD_IP = '127.0.0.2';

const workload: Workload = {
  uid: 'Kubernetes//Pod/prod/app', name: 'app', namespace: 'prod', addresses: [POD_IP], hostname: '', network: '', tunnelProtocol: 'HBONE',
  trustDomain: 'cluster.local', serviceAccount: 'app', node: '', canonicalName: 'app', canonicalRevision: 'v1', workloadType: 'pod',
  workloadName: 'app', nativeTunnel: false, services: new Map(), authorizationPolicies: [], status: 'HEALTHY', clusterId: 'Kubernetes',
  networkMode: 'STANDARD', capacity: 1,
};

type Handler = (req: IncomingMessage, res: ServerResponse, requestOnConnection: number) => void;

async function setup(t: ExecutionContext, handler: Handler, options: { idleTimeoutMs?: number } = {}) {
  const pki = testPki();
  const sockets: Socket[] = [];
  const perSocket = new Map<Socket, number>();
  const app = createServer((req, res) => {
    const n = (perSocket.get(req.socket) ?? 0) + 1;
    perSocket.set(req.socket, n);
    req.resume();
    req.once('end', () => handler(req, res, n));
  });
  app.on('connection', (s: Socket) => sockets.push(s));
  app.listen({ host: POD_IP, port: 0 });
  await once(app, 'listening');
  const appPort = (app.address() as AddressInfo).port;
  const ztunnel = await startHboneServer({ host: POD_IP, port: 0, certificate: await pki.cert('prod', 'app'), handler: forwardToTarget() });
  const hbone = createHboneClient({ certificates: pki.certificates });
  const upstream = new Upstream({
    hbone, identity: pki.id('prod', 'waypoint'), hbonePort: ztunnel.address().port, logger: silentLogger(),
    ...(options.idleTimeoutMs ? { http1IdleTimeoutMs: options.idleTimeoutMs } : {}),
  });
  t.teardown(async () => {
    upstream.close();
    await hbone.close();
    await ztunnel.close();
    app.closeAllConnections();
    app.close();
    await pki.close();
  });
  const send = async (path: string, connectionPool?: ConnectionPool, body: Buffer | Readable = Buffer.alloc(0)) => {
    const r: UpstreamRequest = {
      endpoint: { workload, ip: POD_IP, port: appPort }, protocol: 'http1', method: body instanceof Buffer && body.length === 0 ? 'GET' : 'POST', path,
      authority: 'app.prod.svc.cluster.local', headers: new Map([['x-test', '1']]), body, signal: new AbortController().signal,
      traceparent: '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', clientAddress: '10.0.0.1', connectionPool,
    };
    const res = await upstream.send(r);
    const chunks: Buffer[] = [];
    for await (const c of res.body) chunks.push(c as Buffer);
    return { status: res.status, body: Buffer.concat(chunks).toString() };
  };
  return { sockets, upstream, send };
}

const ok: Handler = (req, res, n) => {
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end(`${req.url} #${n}`);
};

test('sequential keep-alive requests reuse one upstream connection', async (t) => {
  const f = await setup(t, ok);
  for (let i = 1; i <= 5; i++) t.deepEqual(await f.send(`/r${i}`), { status: 200, body: `/r${i} #${i}` });
  t.is(f.sockets.length, 1, 'the app accepted one TCP connection');
  t.is(f.upstream.http1Stats().opened, 1);
});

test('concurrent requests open one connection each; later requests reuse them', async (t) => {
  const f = await setup(t, ok);
  const first = await Promise.all([1, 2, 3].map((i) => f.send(`/c${i}`)));
  t.true(first.every((r) => r.status === 200));
  t.is(f.sockets.length, 3);
  for (let i = 0; i < 4; i++) t.is((await f.send('/again')).status, 200);
  t.is(f.sockets.length, 3, 'no new connection while idle ones are there');
});

test('an upstream answering Connection: close gets a new connection for the next request', async (t) => {
  const f = await setup(t, (_req, res) => {
    res.writeHead(200, { connection: 'close', 'content-length': '2' });
    res.end('ok');
  });
  for (let i = 0; i < 3; i++) t.deepEqual(await f.send('/close'), { status: 200, body: 'ok' });
  t.is(f.sockets.length, 3);
});

test('maxRequestsPerConnection: a connection carries at most that many requests', async (t) => {
  const f = await setup(t, ok);
  const bodies: string[] = [];
  for (let i = 0; i < 5; i++) bodies.push((await f.send('/m', { maxRequestsPerConnection: 2 })).body);
  t.deepEqual(bodies, ['/m #1', '/m #2', '/m #1', '/m #2', '/m #1']);
  t.is(f.sockets.length, 3);
});

test('a reused connection that dies before any response byte is retried once on a new connection', async (t) => {
  // The app drops a connection when a second request arrives on it, without answering.
  const f = await setup(t, (req, res, n) => {
    if (n > 1) return void req.socket.destroy();
    ok(req, res, n);
  });
  t.deepEqual(await f.send('/a'), { status: 200, body: '/a #1' });
  t.deepEqual(await f.send('/b'), { status: 200, body: '/b #1' }, 'answered on a second connection');
  t.deepEqual(await f.send('/c', undefined, Buffer.from('payload')), { status: 200, body: '/c #1' }, 'a buffered body is sent again');
  t.is(f.sockets.length, 3);
});

test('a new connection that dies before any response byte is a reset, not retried', async (t) => {
  const f = await setup(t, (req) => void req.socket.destroy());
  const err = await t.throwsAsync(f.send('/x'));
  t.true(err instanceof TryFailure);
  t.is((err as TryFailure).outcome.kind, 'reset');
  t.is(f.sockets.length, 1);
});

test('an idle connection the upstream closed is not handed to the next request', async (t) => {
  const f = await setup(t, ok);
  t.is((await f.send('/one')).status, 200);
  const [first] = f.sockets;
  const closed = once(first as Socket, 'close');
  first?.end(); // the app closes its idle keep-alive connection
  await closed;
  // A streamed body cannot be sent twice: this passes only if the dead connection was not picked.
  t.deepEqual(await f.send('/two', undefined, Readable.from([Buffer.from('streamed')])), { status: 200, body: '/two #1' });
  t.is(f.sockets.length, 2);
});

test('an idle connection is closed after the idle timeout', async (t) => {
  const f = await setup(t, ok, { idleTimeoutMs: 50 });
  t.is((await f.send('/one')).status, 200);
  await once(f.sockets[0] as Socket, 'close'); // the waypoint closed it: no sleep, the close is awaited
  t.deepEqual(await f.send('/two'), { status: 200, body: '/two #1' });
  t.is(f.sockets.length, 2);
});

import test from 'ava';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { ErrorCode } from '../../src/core/error-codes.ts';
import { relay } from '../../src/hbone/relay.ts';
import { readAll, tcpServer } from '../helpers/tcp.ts';
import { hboneFixture } from '../helpers/hbone.ts';
import { forwardToTarget } from '../../src/hbone/forward.ts';
import type { RelayResult } from '../../src/hbone/relay.ts';

/** Two connected TCP socket pairs: [client, proxy-side of client] and [proxy-side of target, target]. */
async function socketPair(): Promise<{ near: Socket; far: Socket; close(): Promise<void> }> {
  const accepted = Promise.withResolvers<Socket>();
  const server = await tcpServer((socket) => accepted.resolve(socket));
  const near = connect({ port: server.port, host: '127.0.0.1', allowHalfOpen: true });
  near.on('error', () => {});
  await once(near, 'connect');
  return { near, far: await accepted.promise, close: () => server.close() };
}

test('relay copies both ways, counts bytes and passes half-closes on', async (t) => {
  const a = await socketPair();
  const b = await socketPair();
  const done = relay(a.far, b.near);
  a.near.end('to b');
  t.is(await readAll(b.far), 'to b');
  b.far.end('to a, after your FIN');
  t.is(await readAll(a.near), 'to a, after your FIN');
  t.deepEqual(await done, { bytesDownstreamToUpstream: 4, bytesUpstreamToDownstream: 20 });
  await a.close();
  await b.close();
});

test('a reset on one side resets the other and is reported with a code', async (t) => {
  const a = await socketPair();
  const b = await socketPair();
  const done = relay(a.far, b.near);
  a.near.write('x');
  await once(b.far, 'data');
  const farError = new Promise<string | undefined>((resolve) => b.far.once('error', (err: NodeJS.ErrnoException) => resolve(err.code)));
  a.near.resetAndDestroy();
  const result = await done;
  t.is(result.error?.code, ErrorCode.RELAY_CONNECTION_RESET);
  t.is(await farError, 'ECONNRESET');
  await a.close();
  await b.close();
});

test('a target reset reaches the HBONE client as RST_STREAM CONNECT_ERROR', async (t) => {
  const target = await tcpServer((socket) => socket.once('data', () => socket.resetAndDestroy()));
  const forward = forwardToTarget();
  const relayDone = Promise.withResolvers<RelayResult>();
  const fixture = await hboneFixture({ handler: async (r) => { const d = await forward(r); return d.status === 200 ? { ...d, onClose: relayDone.resolve } : d; } });
  const tunnel = await fixture.connect(`127.0.0.1:${target.port}`);
  tunnel.stream.on('error', () => {});
  tunnel.stream.write('trigger');
  await new Promise((resolve) => tunnel.stream.once('close', resolve));
  t.is(tunnel.stream.rstCode, 10); // NGHTTP2_CONNECT_ERROR
  t.is((await relayDone.promise).error?.code, ErrorCode.RELAY_CONNECTION_RESET);
  await fixture.close();
  await target.close();
});

test('an HBONE client reset tears down the target connection', async (t) => {
  // Node's client ends its side before the RST_STREAM, so the target first sees a FIN; after the
  // reset, its writes must fail because the relay destroyed the upstream connection.
  const targetError = Promise.withResolvers<string | undefined>();
  const target = await tcpServer((socket) => {
    socket.on('error', (err: NodeJS.ErrnoException) => targetError.resolve(err.code));
    const timer = setInterval(() => socket.write('x'), 5);
    socket.once('close', () => clearInterval(timer));
  });
  const forward = forwardToTarget();
  const relayDone = Promise.withResolvers<RelayResult>();
  const fixture = await hboneFixture({ handler: async (r) => { const d = await forward(r); return d.status === 200 ? { ...d, onClose: relayDone.resolve } : d; } });
  const tunnel = await fixture.connect(`127.0.0.1:${target.port}`);
  tunnel.stream.on('error', () => {});
  tunnel.stream.close(8); // CANCEL
  t.is((await relayDone.promise).error?.code, ErrorCode.RELAY_CONNECTION_RESET);
  t.regex(String(await targetError.promise), /^(ECONNRESET|EPIPE)$/);
  await fixture.close();
  await target.close();
});

test('a target reset reaches the HBONE client as a reset only: no clean end before it', async (t) => {
  const target = await tcpServer((socket) => {
    socket.write('partial');
    setTimeout(() => socket.resetAndDestroy(), 50);
  });
  const fx = await hboneFixture();
  t.teardown(async () => {
    await fx.close();
    await target.close();
  });
  const tunnel = await fx.connect(`127.0.0.1:${target.port}`);
  const events: string[] = [];
  tunnel.stream.on('data', () => events.includes('data') || events.push('data'));
  tunnel.stream.on('end', () => events.push('end'));
  tunnel.stream.on('error', () => events.push('error'));
  await new Promise((resolve) => tunnel.stream.once('close', resolve));
  t.deepEqual(events, ['data', 'error']);
  t.is(tunnel.stream.rstCode, 10); // NGHTTP2_CONNECT_ERROR
});

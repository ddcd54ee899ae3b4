import test from 'ava';
import { once } from 'node:events';
import type { Socket } from 'node:net';
import { forwardToTarget } from '../../src/hbone/forward.ts';
import type { RelayResult } from '../../src/hbone/relay.ts';
import { formatSpiffeId } from '../../src/identity/spiffe.ts';
import { hboneFixture } from '../helpers/hbone.ts';
import { settleHandles, networkHandles } from '../helpers/handles.ts';
import { drainHash, echo, readAll, sendPattern, tcpServer } from '../helpers/tcp.ts';

const MB = 1024 * 1024;

test.serial('100 MB each way arrive intact (SHA-256) and the relay counts every byte', async (t) => {
  const baseline = networkHandles();
  const targetSide: Array<Promise<unknown>> = [];
  const target = await tcpServer((socket) => {
    targetSide.push(Promise.all([drainHash(socket), sendPattern(socket, 100 * MB, 2)]));
  });
  const forward = forwardToTarget();
  const relayDone = Promise.withResolvers<RelayResult>();
  const fixture = await hboneFixture({
    handler: async (request) => {
      const decision = await forward(request);
      return decision.status === 200 ? { ...decision, onClose: relayDone.resolve } : decision;
    },
  });
  const tunnel = await fixture.connect(`127.0.0.1:${target.port}`);
  t.is(formatSpiffeId(tunnel.peer), 'spiffe://cluster.local/ns/ns/sa/server');
  const [sentHash, received] = await Promise.all([sendPattern(tunnel.stream, 100 * MB, 1), drainHash(tunnel.stream)]);
  const [targetReceived, targetSentHash] = (await targetSide[0]) as [{ bytes: number; sha256: string }, string];
  t.is(targetReceived.bytes, 100 * MB);
  t.is(targetReceived.sha256, sentHash);
  t.is(received.bytes, 100 * MB);
  t.is(received.sha256, targetSentHash);
  t.deepEqual(await relayDone.promise, { bytesDownstreamToUpstream: 100 * MB, bytesUpstreamToDownstream: 100 * MB });
  await fixture.close();
  await target.close();
  t.is(await settleHandles(baseline), baseline, 'no socket left open');
});

test.serial('half-close from the client: the target sees EOF and can still answer', async (t) => {
  const target = await tcpServer(async (socket: Socket) => {
    const got = await readAll(socket); // returns at the client's FIN
    socket.end(`got ${got}, bye`);
  });
  const fixture = await hboneFixture();
  const tunnel = await fixture.connect(`127.0.0.1:${target.port}`);
  tunnel.stream.end('ping');
  t.is(await readAll(tunnel.stream), 'got ping, bye');
  await fixture.close();
  await target.close();
});

test.serial('half-close from the target: the client sees EOF and can still send', async (t) => {
  const targetGot = Promise.withResolvers<string>();
  const targetServer = await tcpServer(async (socket: Socket) => {
    socket.end('hello first'); // FIN towards the client; reading goes on
    targetGot.resolve(await readAll(socket));
  });
  const fixture = await hboneFixture();
  const tunnel = await fixture.connect(`127.0.0.1:${targetServer.port}`);
  t.is(await readAll(tunnel.stream), 'hello first');
  tunnel.stream.end('still sending after your FIN');
  t.is(await targetGot.promise, 'still sending after your FIN');
  if (!tunnel.stream.closed) await once(tunnel.stream, 'close');
  await fixture.close();
  await targetServer.close();
});

test.serial('1,000 concurrent tunnels share ten pooled connections of 100 streams', async (t) => {
  const baseline = networkHandles();
  const target = await tcpServer(echo);
  const fixture = await hboneFixture();
  const tunnels = await Promise.all(Array.from({ length: 1000 }, () => fixture.connect(`127.0.0.1:${target.port}`)));
  t.deepEqual(fixture.client.stats(), { connections: 10, streams: 1000 });
  t.deepEqual(fixture.server.stats(), { connections: 10, streams: 1000 });
  const replies = await Promise.all(
    tunnels.map(async (tunnel, i) => {
      tunnel.stream.end(`tunnel ${i}`);
      return readAll(tunnel.stream);
    }),
  );
  replies.forEach((reply, i) => {
    if (reply !== `tunnel ${i}`) t.fail(`tunnel ${i} got ${reply}`);
  });
  t.is(replies.length, 1000);
  await Promise.all(tunnels.map((tunnel) => (tunnel.stream.closed ? undefined : once(tunnel.stream, 'close'))));
  t.is(fixture.client.stats().streams, 0);
  const again = await fixture.connect(`127.0.0.1:${target.port}`);
  t.is(fixture.client.stats().connections, 10, 'a free connection is reused, no new dial');
  again.stream.end();
  await readAll(again.stream);
  await fixture.close();
  await target.close();
  t.is(await settleHandles(baseline), baseline, 'no socket left open');
});

test.serial('closing the server sends GOAWAY: open tunnels finish, new ones go to a new connection', async (t) => {
  const target = await tcpServer(echo);
  const fixture = await hboneFixture();
  const open = await fixture.connect(`127.0.0.1:${target.port}`);
  const closing = fixture.server.close();
  open.stream.end('in flight');
  t.is(await readAll(open.stream), 'in flight');
  await closing;
  await t.throwsAsync(fixture.connect(`127.0.0.1:${target.port}`));
  await fixture.close();
  await target.close();
});

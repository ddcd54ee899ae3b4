import test from 'ava';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { createHboneClient } from '../../src/hbone/client.ts';
import { forwardToTarget } from '../../src/hbone/forward.ts';
import { startHboneServer } from '../../src/hbone/server.ts';
import { testPki } from '../helpers/pki.ts';
import { echo, readAll, tcpServer } from '../helpers/tcp.ts';

/** Polls a condition every 10 ms, for at most `limitMs`; a wait, not a speed assertion. */
async function eventually(condition: () => boolean, limitMs = 5000): Promise<boolean> {
  for (let waited = 0; waited < limitMs; waited += 10) {
    if (condition()) return true;
    await sleep(10);
  }
  return condition();
}

async function setup(clientOptions: { idleReleaseMs?: number; keepaliveIntervalMs?: number; keepaliveTimeoutMs?: number } = {}, via?: (port: number) => Promise<number>) {
  const pki = testPki();
  const target = await tcpServer(echo);
  const server = await startHboneServer({ host: '127.0.0.1', port: 0, certificate: await pki.cert('ns', 'server'), handler: forwardToTarget() });
  const client = createHboneClient({ certificates: pki.certificates, ...clientOptions });
  const port = via ? await via(server.address().port) : server.address().port;
  const connectOnce = () =>
    client.connect({ source: pki.id('ns', 'client'), expectedIdentities: [pki.id('ns', 'server')], address: { host: '127.0.0.1', port }, authority: `127.0.0.1:${target.port}` });
  return {
    client,
    server,
    connectOnce,
    close: async () => {
      client.destroy();
      await server.close();
      await target.close();
      await pki.close();
    },
  };
}

test('an idle pooled connection is released and the next tunnel dials anew', async (t) => {
  const s = await setup({ idleReleaseMs: 50 });
  const first = await s.connectOnce();
  first.stream.end('a');
  t.is(await readAll(first.stream), 'a');
  t.is(s.client.stats().connections, 1);
  t.true(await eventually(() => s.client.stats().connections === 0), 'released after idling');
  t.true(await eventually(() => s.server.stats().connections === 0), 'and closed on the server too');
  const second = await s.connectOnce();
  t.is(s.client.stats().connections, 1);
  second.stream.end('b');
  t.is(await readAll(second.stream), 'b');
  await s.close();
});

test('idle release spares a connection still dialing and one with an open stream', async (t) => {
  // Regression: a dial slower than the idle timeout was retired before its first stream opened.
  const pki = testPki();
  const target = await tcpServer(echo);
  const server = await startHboneServer({ host: '127.0.0.1', port: 0, certificate: await pki.cert('ns', 'server'), handler: forwardToTarget() });
  const slowCertificates = { fetch: async (id: Parameters<typeof pki.certificates.fetch>[0]) => (await sleep(150), pki.certificates.fetch(id)) };
  const client = createHboneClient({ certificates: slowCertificates, idleReleaseMs: 20 });
  const request = { source: pki.id('ns', 'client'), expectedIdentities: [pki.id('ns', 'server')], address: { host: '127.0.0.1', port: server.address().port }, authority: `127.0.0.1:${target.port}` };
  const open = await client.connect(request);
  await sleep(150); // several idle sweeps while the stream stays open
  open.stream.write('still here');
  t.is(String((await once(open.stream, 'data'))[0]), 'still here');
  const second = await client.connect(request);
  t.is(client.stats().connections, 1, 'the busy connection was kept and reused');
  for (const tunnel of [open, second]) {
    tunnel.stream.end();
    await readAll(tunnel.stream);
  }
  client.destroy();
  await server.close();
  await target.close();
  await pki.close();
});

/** A TCP relay between client and server that a test can freeze (nothing gets through) or cut. */
function controllableRelay() {
  const frozen = { value: false };
  /** Each relayed connection: `down` is the client's side, `up` the server's. */
  const links: Array<{ readonly down: Socket; readonly up: Socket }> = [];
  let server: Awaited<ReturnType<typeof tcpServer>> | undefined;
  return {
    links,
    freeze: () => void (frozen.value = true),
    via: async (serverPort: number) => {
      server = await tcpServer((down) => {
        const up = connect({ host: '127.0.0.1', port: serverPort });
        up.on('error', () => {});
        links.push({ down, up });
        down.on('data', (chunk: Buffer) => frozen.value || up.write(chunk));
        up.on('data', (chunk: Buffer) => frozen.value || down.write(chunk));
      });
      return server.port;
    },
    close: async () => {
      for (const { down, up } of links) {
        down.destroy();
        up.destroy();
      }
      await server?.close();
    },
  };
}

test('a connection whose PINGs go unanswered is dropped, failing its open tunnels', async (t) => {
  // Once the relay is frozen, nothing gets through.
  const relay = controllableRelay();
  const s = await setup({ keepaliveIntervalMs: 20, keepaliveTimeoutMs: 100 }, relay.via);
  const tunnel = await s.connectOnce();
  tunnel.stream.on('error', () => {});
  tunnel.stream.write('ping');
  await once(tunnel.stream, 'data');
  relay.freeze();
  await new Promise((resolve) => tunnel.stream.once('close', resolve));
  t.true(tunnel.stream.destroyed);
  t.is(s.client.stats().connections, 0, 'the silent connection left the pool');
  await relay.close();
  await s.close();
});

test('a connection its server closes without GOAWAY is dropped at once, failing its open tunnels', async (t) => {
  // The relay ends the client's side (a FIN, no GOAWAY), as a server does that exits, or refuses the client's
  // certificate after the TLS 1.3 handshake. The keepalive is an hour away, so only the FIN can end the tunnel.
  const relay = controllableRelay();
  const s = await setup({ keepaliveIntervalMs: 3_600_000, keepaliveTimeoutMs: 3_600_000 }, relay.via);
  const tunnel = await s.connectOnce();
  tunnel.stream.on('error', () => {});
  const closed = new Promise((resolve) => tunnel.stream.once('close', resolve));
  tunnel.stream.write('ping');
  await once(tunnel.stream, 'data');
  relay.links[0]?.down.end();
  const ended = await Promise.race([closed.then(() => true), sleep(10_000).then(() => false)]);
  t.true(ended, 'the open tunnel closed when its connection did, not at the next keepalive');
  t.true(await eventually(() => s.client.stats().connections === 0), 'the closed connection left the pool');
  const next = await s.connectOnce();
  t.is(relay.links.length, 2, 'the next tunnel dialed a new connection');
  next.stream.end('b');
  t.is(await readAll(next.stream), 'b');
  await relay.close();
  await s.close();
});

test('a closed client refuses new tunnels with HBONE_POOL_CLOSED', async (t) => {
  const s = await setup();
  await s.client.close();
  const error = await t.throwsAsync(s.connectOnce());
  t.is((error as { code?: string }).code, 'HBONE_POOL_CLOSED');
  await s.close();
});

test('a rotated server certificate is presented on new connections', async (t) => {
  const pki = testPki();
  const target = await tcpServer(echo);
  const server = await startHboneServer({ host: '127.0.0.1', port: 0, certificate: await pki.cert('ns', 'old'), handler: forwardToTarget() });
  const request = (expected: string) => ({ source: pki.id('ns', 'client'), expectedIdentities: [pki.id('ns', expected)], address: { host: '127.0.0.1', port: server.address().port }, authority: `127.0.0.1:${target.port}` });
  const before = createHboneClient({ certificates: pki.certificates });
  const old = await before.connect(request('old'));
  old.stream.end();
  await readAll(old.stream);
  server.setCertificate(await pki.cert('ns', 'new'));
  const after = createHboneClient({ certificates: pki.certificates });
  const fresh = await after.connect(request('new'));
  t.is(fresh.peer.serviceAccount, 'new');
  fresh.stream.end();
  await readAll(fresh.stream);
  const third = createHboneClient({ certificates: pki.certificates });
  const stale = await t.throwsAsync(third.connect(request('old')));
  t.is((stale as { code?: string }).code, 'HBONE_PEER_IDENTITY_MISMATCH');
  third.destroy();
  before.destroy();
  after.destroy();
  await server.close();
  await target.close();
  await pki.close();
});

test('close() gives open tunnels until the deadline, then destroys their connections instead of waiting forever', async (t) => {
  const pki = testPki();
  const target = await tcpServer(echo);
  const server = await startHboneServer({ host: '127.0.0.1', port: 0, certificate: await pki.cert('ns', 'server'), handler: forwardToTarget() });
  t.teardown(async () => {
    await server.close();
    await target.close();
    await pki.close();
  });
  const client = createHboneClient({ certificates: pki.certificates, closeDeadlineMs: 300 });
  const tunnel = await client.connect({
    source: pki.id('ns', 'client'),
    expectedIdentities: [pki.id('ns', 'server')],
    address: { host: '127.0.0.1', port: server.address().port },
    authority: `127.0.0.1:${target.port}`,
  });
  tunnel.stream.on('error', () => {});
  tunnel.stream.write('open');
  await once(tunnel.stream, 'data');
  // The tunnel never ends, so GOAWAY alone would leave the connection open for good.
  const started = Date.now();
  await client.close();
  const took = Date.now() - started;
  t.true(took >= 250, `close waited for the deadline (${took} ms)`);
  t.true(tunnel.stream.destroyed, 'the still-open tunnel was cut at the deadline');
  // The stream's reservation is released by its 'close' event, emitted after the destroy.
  for (let i = 0; i < 50 && client.stats().streams > 0; i++) await sleep(10);
  t.deepEqual(client.stats(), { connections: 0, streams: 0 });
});

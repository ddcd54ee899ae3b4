import test, { type ExecutionContext } from 'ava';
import { closeSync, fstatSync, openSync, readSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ErrorCode } from '../../src/core/error-codes.ts';
import { closeFd, netnsInode, openNetns } from '../../src/sys/netns.ts';
import { SeqpacketConnection, SeqpacketServer, seqpacketConnect } from '../../src/sys/seqpacket.ts';
import { SysError } from '../../src/sys/socket-options.ts';

let counter = 0;

function socketPath(): string {
  return join(tmpdir(), `an-seqpacket-${process.pid}-${++counter}.sock`);
}

/** A server and a connected pair (client, accepted peer), all closed after the test. */
async function pair(t: ExecutionContext): Promise<{ server: SeqpacketServer; client: SeqpacketConnection; peer: SeqpacketConnection }> {
  const server = SeqpacketServer.listen(socketPath());
  t.teardown(() => server.close());
  const accepted = server.accept();
  const client = SeqpacketConnection.connect(server.path);
  t.teardown(() => client.close());
  const peer = await accepted;
  t.teardown(() => peer.close());
  return { server, client, peer };
}

test('messages keep their boundaries', async (t) => {
  const { client, peer } = await pair(t);
  const first = peer.recv(); // waits before anything is sent
  const messages = [Buffer.from('one'), Buffer.alloc(0x300, 7), Buffer.from([0, 1, 2, 0])];
  for (const message of messages) await client.send(message);
  const received = [await first, await peer.recv(), await peer.recv()];
  t.deepEqual(
    received.map((m) => m?.data),
    messages,
  );
  t.deepEqual(
    received.map((m) => [m?.fd, m?.truncated]),
    [
      [-1, false],
      [-1, false],
      [-1, false],
    ],
  );
  // And in the other direction.
  await peer.send(Buffer.from('reply'));
  t.deepEqual((await client.recv())?.data, Buffer.from('reply'));
});

test('an fd passed with SCM_RIGHTS arrives as a working fd', async (t) => {
  const { client, peer } = await pair(t);
  const file = join(tmpdir(), `an-seqpacket-file-${process.pid}`);
  writeFileSync(file, 'passed through');
  t.teardown(() => rmSync(file, { force: true }));
  const sent = openSync(file, 'r');
  await client.send(Buffer.from('file'), sent);
  const message = await peer.recv();
  closeSync(sent); // the receiver's copy stays open
  t.truthy(message);
  if (!message) return;
  t.deepEqual(message.data, Buffer.from('file'));
  t.false(message.truncated);
  t.true(message.fd >= 0);
  t.not(message.fd, sent);
  t.is(fstatSync(message.fd).ino, statSync(file).ino);
  const buffer = Buffer.alloc(64);
  const n = readSync(message.fd, buffer, 0, buffer.length, 0);
  t.is(buffer.subarray(0, n).toString(), 'passed through');
  closeSync(message.fd);

  // A network namespace fd, as ZDS AddWorkload carries one.
  const ns = openNetns('/proc/self/ns/net');
  await client.send(Buffer.from('netns'), ns);
  const withNs = await peer.recv();
  t.truthy(withNs);
  if (!withNs) return;
  t.is(netnsInode(withNs.fd), netnsInode(ns));
  closeFd(ns);
  closeFd(withNs.fd);
});

test('a message larger than maxBytes is reported truncated, and its fd is not leaked', async (t) => {
  const { client, peer } = await pair(t);
  await client.send(Buffer.alloc(100, 1));
  const message = await peer.recv(10);
  t.is(message?.truncated, true);
  t.deepEqual(message?.data, Buffer.alloc(10, 1));
  // The rest of a truncated message is discarded; the next one is whole.
  const ns = openNetns('/proc/self/ns/net');
  t.teardown(() => closeFd(ns));
  await client.send(Buffer.alloc(20, 2), ns);
  const withFd = await peer.recv(10);
  t.is(withFd?.truncated, true);
  t.is(withFd?.fd, -1, 'the fd of a truncated message is closed by the addon');
  await client.send(Buffer.from('ok'));
  t.deepEqual(await peer.recv(10), { data: Buffer.from('ok'), fd: -1, truncated: false });
  // A message larger than the socket's send buffer can never be sent whole.
  const tooBig = await t.throwsAsync(client.send(Buffer.alloc(4 << 20)), { instanceOf: SysError });
  t.is(tooBig?.errno, 'EMSGSIZE');
});

test('the peer closing is seen by recv (null) and by send (EPIPE)', async (t) => {
  const { client, peer } = await pair(t);
  const pending = client.recv();
  await peer.close();
  t.is(await pending, null);
  t.is(await client.recv(), null);
  const error = await t.throwsAsync(client.send(Buffer.from('late')), { instanceOf: SysError });
  t.is(error?.code, ErrorCode.SYS_SEQPACKET_FAILED);
  t.is(error?.errno, 'EPIPE');
});

test('closing wakes a pending recv and a pending accept', async (t) => {
  const { server, client } = await pair(t);
  const recv = client.recv();
  const accept = server.accept();
  const started = Date.now();
  await Promise.all([client.close(), server.close()]);
  const recvError = await t.throwsAsync(recv, { instanceOf: SysError });
  t.is(recvError?.code, ErrorCode.CORE_CLOSED);
  const acceptError = await t.throwsAsync(accept, { instanceOf: SysError });
  t.is(acceptError?.code, ErrorCode.CORE_CLOSED);
  t.true(Date.now() - started < 500, 'shutdown woke the threadpool polls instead of waiting out their timeout');
  await client.close(); // idempotent
});

test('connecting where nothing listens is a coded error with errno', (t) => {
  const missing = t.throws(() => seqpacketConnect(socketPath()), { instanceOf: SysError });
  t.is(missing?.code, ErrorCode.SYS_SEQPACKET_FAILED);
  t.is(missing?.errno, 'ENOENT');
  const tooLong = t.throws(() => seqpacketConnect(`/tmp/${'x'.repeat(200)}`), { instanceOf: SysError });
  t.is(tooLong?.errno, 'ENAMETOOLONG');
});

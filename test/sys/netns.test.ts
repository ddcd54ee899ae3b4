import test from 'ava';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { closeSync, openSync, rmSync } from 'node:fs';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ErrorCode } from '../../src/core/error-codes.ts';
import {
  closeFd,
  createServerIn,
  createTcpSocketIn,
  listenTcpIn,
  namedNetnsPath,
  netnsInode,
  openNetns,
  threadNetnsInode,
} from '../../src/sys/netns.ts';
import { getMark, SysError } from '../../src/sys/socket-options.ts';
import { requireNetns } from '../helpers/netns.ts';

const run = promisify(execFile);
let counter = 0;

/** A fresh namespace with lo up, deleted (with its fd closed) when the test ends. */
async function namespace(t: Parameters<typeof requireNetns>[0]): Promise<{ name: string; fd: number }> {
  const name = `an-netns-${process.pid}-${++counter}`;
  await run('ip', ['netns', 'add', name]);
  t.teardown(() => run('ip', ['netns', 'delete', name]).then(() => undefined));
  await run('ip', ['-n', name, 'link', 'set', 'lo', 'up']);
  const fd = openNetns(namedNetnsPath(name));
  t.teardown(() => closeFd(fd));
  return { name, fd };
}

async function readAll(socket: Socket): Promise<string> {
  const chunks: Buffer[] = [];
  socket.on('data', (chunk: Buffer) => chunks.push(chunk));
  await once(socket, 'end');
  return Buffer.concat(chunks).toString();
}

test('a listener made inside a namespace is reachable only from sockets made in that namespace', async (t) => {
  if (!requireNetns(t)) return;
  const before = threadNetnsInode();
  const { fd } = await namespace(t);

  const server = await createServerIn(fd, { host: '127.0.0.1', port: 0 }, (socket) => {
    socket.on('error', () => {});
    const chunks: Buffer[] = [];
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => socket.end(`pod:${Buffer.concat(chunks).toString().toUpperCase()}`));
  });
  t.teardown(() => server.close());
  t.is(threadNetnsInode(), before, 'the main thread is back in its own namespace');
  const { port, address } = server.address() as AddressInfo;
  t.is(address, '127.0.0.1');
  t.true(port > 0);

  // From the test's own namespace, nothing listens there.
  const outside = connect(port, '127.0.0.1');
  const [error] = (await once(outside, 'error')) as [NodeJS.ErrnoException];
  t.is(error.code, 'ECONNREFUSED');

  // From a socket created inside the namespace, the listener answers (with the mark set before the SYN).
  const inside = createTcpSocketIn(fd, 4, { mark: 0x539 });
  inside.on('error', (err) => t.fail(String(err)));
  t.is(getMark(inside), 0x539);
  inside.connect(port, '127.0.0.1');
  await once(inside, 'connect');
  inside.end('ping');
  t.is(await readAll(inside), 'pod:PING');
  t.is(threadNetnsInode(), before, 'the main thread is still in its own namespace');
});

test('a failure inside the namespace is a coded error and the thread still returns', async (t) => {
  if (!requireNetns(t)) return;
  const before = threadNetnsInode();
  const { fd } = await namespace(t);
  const first = listenTcpIn(fd, { host: '127.0.0.1', port: 0 });
  t.teardown(() => closeFd(first));
  const server = await createServerIn(fd, { host: '127.0.0.1', port: 0 }, () => {});
  t.teardown(() => server.close());
  const { port } = server.address() as AddressInfo;
  // bind fails after setns: EADDRINUSE, and the thread is restored.
  const inUse = t.throws(() => listenTcpIn(fd, { host: '127.0.0.1', port }), { instanceOf: SysError });
  t.is(inUse?.code, ErrorCode.SYS_NETNS_FAILED);
  t.is(inUse?.errno, 'EADDRINUSE');
  t.is(threadNetnsInode(), before);
  // SO_REUSEPORT on both lets a second listener share the port.
  const shared = await createServerIn(fd, { host: '127.0.0.1', port: 0, reusePort: true }, () => {});
  t.teardown(() => shared.close());
  const second = listenTcpIn(fd, { host: '127.0.0.1', port: (shared.address() as AddressInfo).port, reusePort: true });
  t.teardown(() => closeFd(second));
  // A bad host is EINVAL.
  const badHost = t.throws(() => listenTcpIn(fd, { host: 'not-an-ip', port: 0 }), { instanceOf: SysError });
  t.is(badHost?.errno, 'EINVAL');
  // setns itself refuses an fd that is not a network namespace.
  const file = join(tmpdir(), `an-netns-file-${process.pid}`);
  const plain = openSync(file, 'w');
  t.teardown(() => {
    closeSync(plain);
    rmSync(file, { force: true });
  });
  const notNs = t.throws(() => createTcpSocketIn(plain, 4), { instanceOf: SysError });
  t.is(notNs?.errno, 'EINVAL');
  t.regex(notNs?.message ?? '', /setns/);
  t.is(threadNetnsInode(), before);
});

test('netnsInode identifies a namespace: equal for two opens of one, different for another', async (t) => {
  if (!requireNetns(t)) return;
  const { name, fd } = await namespace(t);
  const again = openNetns(namedNetnsPath(name));
  t.teardown(() => closeFd(again));
  const own = openNetns('/proc/thread-self/ns/net');
  t.teardown(() => closeFd(own));
  t.is(netnsInode(fd), netnsInode(again));
  t.not(netnsInode(fd), netnsInode(own));
  t.is(netnsInode(own), threadNetnsInode());
});

test('opening a namespace that does not exist is a coded error with errno', (t) => {
  const error = t.throws(() => openNetns(namedNetnsPath(`an-missing-${process.pid}`)), { instanceOf: SysError });
  t.is(error?.code, ErrorCode.SYS_NETNS_FAILED);
  t.is(error?.errno, 'ENOENT');
});

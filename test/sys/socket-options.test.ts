import test from 'ava';
import { execFile } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { once } from 'node:events';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ErrorCode } from '../../src/core/error-codes.ts';
import { createTcpSocket, getMark, originalDestination, socketFd, SysError } from '../../src/sys/socket-options.ts';
import { netnsMissing } from '../helpers/netns.ts';

const run = promisify(execFile);

test('SO_ORIGINAL_DST reads the REDIRECTed destination; SO_MARK is set and read back (in a network namespace)', async (t) => {
  const missing = netnsMissing();
  if (missing) {
    if (process.env['CI']) throw new Error(`netns test cannot run on CI: ${missing}`);
    t.log(`not run: ${missing}`);
    t.pass();
    return;
  }
  const ns = `an-sys-${process.pid}`;
  const inNs = (...args: string[]) => run('ip', ['netns', 'exec', ns, ...args]);
  await run('ip', ['netns', 'add', ns]);
  t.teardown(() => run('ip', ['netns', 'delete', ns]).then(() => undefined));
  await inNs('ip', 'link', 'set', 'lo', 'up');
  // A route for the pretend service range exists only inside the namespace, so nothing can leave it.
  await inNs('ip', 'link', 'add', 'v0', 'type', 'veth', 'peer', 'name', 'v1');
  await inNs('ip', 'addr', 'add', '10.99.0.2/24', 'dev', 'v0');
  await inNs('ip', 'link', 'set', 'v0', 'up');
  await inNs('ip', 'link', 'set', 'v1', 'up');
  await inNs('iptables', '-t', 'nat', '-A', 'OUTPUT', '-p', 'tcp', '-d', '10.99.0.1', '--dport', '80', '-j', 'REDIRECT', '--to-ports', '15001');
  const fixture = join(import.meta.dirname, 'fixtures', 'original-dst.js');
  const { stdout } = await inNs(process.execPath, fixture);
  const report = JSON.parse(stdout.trim()) as Record<string, unknown>;
  t.deepEqual(report.original, { address: '10.99.0.1', port: 80, family: 'IPv4' });
  t.is(report.mark, 0x539);
  t.is(report.listenerError, ErrorCode.SYS_SOCKOPT_FAILED, 'a listening socket has no original destination');
  t.is(report.clientError, undefined);
});

test('a socket that was not redirected has no original destination, with a coded error', async (t) => {
  const server = createServer((socket) => {
    const error = t.throws(() => originalDestination(socket), { instanceOf: SysError });
    t.is(error?.code, ErrorCode.SYS_SOCKOPT_FAILED);
    t.is(error?.errno, 'ENOENT');
    socket.destroy();
    server.close();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.is(getMark(server), 0, 'an unmarked socket reads 0');
  const client = connect((server.address() as { port: number }).port, '127.0.0.1');
  client.on('error', () => {});
  await once(server, 'close');
  client.destroy();
});

test('a closed socket has no file descriptor', (t) => {
  const server = createServer();
  const error = t.throws(() => socketFd(server), { instanceOf: SysError });
  t.is(error?.code, ErrorCode.SYS_NO_FD);
});

test('createTcpSocket: the mark is set before connect, the socket connects and carries data, and a refused connect is an error', async (t) => {
  if (process.getuid?.() !== 0) {
    if (process.env['CI']) throw new Error('SO_MARK needs root (CAP_NET_ADMIN) on CI');
    t.log('not run: SO_MARK needs root');
    t.pass();
    return;
  }
  const server = createServer((s) => s.pipe(s));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const port = (server.address() as { port: number }).port;

  const socket = createTcpSocket(4, { mark: 0x539 });
  t.is(getMark(socket), 0x539, 'marked before any packet');
  socket.connect({ host: '127.0.0.1', port });
  await once(socket, 'connect');
  socket.end('marked');
  let echoed = '';
  for await (const chunk of socket) echoed += String(chunk);
  t.is(echoed, 'marked');

  const closed = createServer();
  closed.listen(0, '127.0.0.1');
  await once(closed, 'listening');
  const deadPort = (closed.address() as { port: number }).port;
  await new Promise((resolve) => closed.close(resolve));
  const refused = createTcpSocket(4, { mark: 0x539 }).connect({ host: '127.0.0.1', port: deadPort });
  const [err] = (await once(refused, 'error').catch((e: unknown) => [e])) as [NodeJS.ErrnoException];
  t.is(err.code, 'ECONNREFUSED');
});

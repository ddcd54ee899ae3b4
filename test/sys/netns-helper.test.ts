import test from 'ava';
import { execFile } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { captureOutbound, createNodeNetwork, requireNetns, waitForPort, type NetnsNode } from '../helpers/netns.ts';

const run = promisify(execFile);
const ECHO_PORT = 7000;
const CAPTURE_PORT = 15001;
const LOOPBACK_PORT = 8080;
const VIP = '10.96.0.10';
/** The compiled socket-options module, imported by the client script to mark its socket before the SYN. */
const SOCKET_OPTIONS = pathToFileURL(join(import.meta.dirname, '..', '..', 'src', 'sys', 'socket-options.js')).href;

/** Echoes every connection back, half-close included. */
const ECHO_SERVER = `
const net = process.getBuiltinModule('node:net');
net.createServer({ allowHalfOpen: true }, (s) => { s.on('error', () => {}); s.pipe(s); })
  .listen(Number(process.env.PORT), '0.0.0.0');
`;

/** Answers 'captured' on the capture port (all addresses) and 'direct' on a loopback-only port. */
const NODE_A_SERVERS = `
const net = process.getBuiltinModule('node:net');
const reply = (text) => (s) => { s.on('error', () => {}); s.resume(); s.end(text); };
let pending = 2;
const ready = () => { if (--pending === 0) process.stdout.write('listening\\n'); };
net.createServer(reply('captured')).listen(Number(process.env.CAPTURE_PORT), '0.0.0.0', ready);
net.createServer(reply('direct')).listen(Number(process.env.LOOPBACK_PORT), '127.0.0.1', ready);
`;

/** Sends 'hello', half-closes and prints what comes back; MARK set marks the socket (SO_MARK) before connecting. */
const CLIENT = `
const net = process.getBuiltinModule('node:net');
const { HOST, PORT, MARK, SOCKET_OPTIONS } = process.env;
let socket;
if (MARK) {
  const { createTcpSocket } = await import(SOCKET_OPTIONS);
  socket = createTcpSocket(4, { mark: Number(MARK) });
  socket.connect({ host: HOST, port: Number(PORT) });
} else {
  socket = net.connect({ host: HOST, port: Number(PORT), allowHalfOpen: true });
}
const chunks = [];
socket.setTimeout(5000, () => { process.stderr.write('timed out'); process.exit(2); });
socket.on('error', (err) => { process.stderr.write(err.code || err.message); process.exit(1); });
socket.on('data', (chunk) => chunks.push(chunk));
socket.on('end', () => { process.stdout.write(Buffer.concat(chunks)); process.exit(0); });
socket.end('hello');
`;

async function talk(node: NetnsNode, host: string, port: number, mark?: number): Promise<string> {
  const env: Record<string, string> = { HOST: host, PORT: String(port), SOCKET_OPTIONS };
  if (mark !== undefined) env['MARK'] = String(mark);
  const { stdout } = await node.exec(process.execPath, ['--input-type=module', '-e', CLIENT], { env, timeoutMs: 10_000 });
  return stdout;
}

async function namespaces(): Promise<string[]> {
  const { stdout } = await run('ip', ['netns', 'list']);
  return stdout.split('\n').map((line) => line.split(' ')[0] ?? '').filter((name) => name !== '');
}

test('two nodes talk over the bridge; captureOutbound redirects all but marked and loopback TCP; close removes it all', async (t) => {
  if (!requireNetns(t)) return;
  const network = await createNodeNetwork(t, { count: 2, extraRoutes: ['10.96.0.0/16'] });
  const [a, b] = network.nodes;
  if (!a || !b) throw new Error('expected two nodes');
  t.not(a.name, b.name);
  t.deepEqual([a.ip, b.ip], ['10.88.0.1', '10.88.0.2']);
  const prefix = a.name.replace(/-node0$/, '');
  t.true((await namespaces()).filter((name) => name.startsWith(`${prefix}-`)).length === 3, 'two nodes and the bridge');

  const echo = b.spawn(process.execPath, ['-e', ECHO_SERVER], { env: { PORT: String(ECHO_PORT) } });
  await waitForPort(a, b.ip, ECHO_PORT);
  t.is(await talk(a, b.ip, ECHO_PORT), 'hello', 'A reaches B across the bridge');

  const servers = a.spawn(process.execPath, ['-e', NODE_A_SERVERS], {
    env: { CAPTURE_PORT: String(CAPTURE_PORT), LOOPBACK_PORT: String(LOOPBACK_PORT) },
  });
  servers.stdout?.setEncoding('utf8');
  await once(servers.stdout!, 'data');
  await captureOutbound(a, { port: CAPTURE_PORT });

  t.is(await talk(a, VIP, 80), 'captured', 'a service VIP is redirected');
  t.is(await talk(a, b.ip, ECHO_PORT), 'captured', 'so is a pod address');
  t.is(await talk(a, '127.0.0.1', LOOPBACK_PORT), 'direct', 'loopback is not captured');
  t.is(await talk(a, b.ip, ECHO_PORT, 0x539), 'hello', 'a socket marked 0x539 is not captured');
  t.is(await talk(b, a.ip, CAPTURE_PORT), 'captured', 'B has no capture of its own and reaches A directly');

  await network.close();
  await network.close();
  t.false(
    (await namespaces()).some((name) => name.startsWith(`${prefix}-`)),
    'no namespace of this network is left',
  );
  t.true(echo.exitCode !== null || echo.signalCode !== null, 'spawned processes are gone');
  t.true(servers.exitCode !== null || servers.signalCode !== null);
});

test('close SIGKILLs a process that ignores SIGTERM; concurrent networks get distinct names; waitForPort times out', async (t) => {
  if (!requireNetns(t)) return;
  const [one, two] = await Promise.all([createNodeNetwork(t, { count: 2 }), createNodeNetwork(t, { count: 3 })]);
  const names = [...one.nodes, ...two.nodes].map((node) => node.name);
  t.is(new Set(names).size, 5);
  const node = one.nodes[0]!;

  const stubborn = node.spawn(process.execPath, [
    '-e',
    "process.on('SIGTERM', () => {}); setInterval(() => {}, 1000); process.stdout.write('up\\n');",
  ]);
  await once(stubborn.stdout!, 'data');
  await t.throwsAsync(waitForPort(node, node.ip, 9, 300), { message: /accepted TCP on 10\.88\.0\.1:9 within 300 ms/ });
  await t.throwsAsync(node.exec('false', []), { message: /in an-.*: false : exit 1/ });

  await Promise.all([one.close(), two.close()]);
  t.is(stubborn.signalCode, 'SIGKILL');
  const left = await namespaces();
  t.false(names.some((name) => left.includes(name)));
});

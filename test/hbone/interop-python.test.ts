/**
 * Interop with an independent HTTP/2 + TLS stack: Python's `h2` and `ssl` as HBONE client against our
 * server, and as HBONE server for our client, mutual TLS 1.3 on loopback.
 */
import test, { type ExecutionContext } from 'ava';
import { spawn, spawnSync, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createHboneClient } from '../../src/hbone/client.ts';
import { HboneError } from '../../src/hbone/errors.ts';
import { forwardToTarget } from '../../src/hbone/forward.ts';
import { startHboneServer, type HboneHandler } from '../../src/hbone/server.ts';
import { formatSpiffeId, type SpiffeId } from '../../src/identity/spiffe.ts';
import type { WorkloadCertificate } from '../../src/identity/workload-certificate.ts';
import { testPki, type TestPki } from '../helpers/pki.ts';
import { echo, readAll, tcpServer } from '../helpers/tcp.ts';
import { tempDir } from '../helpers/tmp.ts';

const PYTHON = '/usr/bin/python3';
// Compiled to dist/test/hbone/; the scripts stay in the source tree.
const SCRIPTS = fileURLToPath(new URL('../../../test/interop/', import.meta.url));
const CLIENT_SCRIPT = join(SCRIPTS, 'h2_hbone_client.py');
const SERVER_SCRIPT = join(SCRIPTS, 'h2_hbone_server.py');
const TRACEPARENT = /^00-[0-9a-f]{32}-[0-9a-f]{16}-00$/;
const LINE_TIMEOUT_MS = 20_000;

let h2Check: string | undefined | null = null;
/** Undefined when Python's h2 imports; the reason otherwise. */
function h2Missing(): string | undefined {
  if (h2Check === null) {
    const r = spawnSync(PYTHON, ['-c', 'import h2, ssl'], { encoding: 'utf8' });
    h2Check = r.status === 0 ? undefined : `${PYTHON} -c 'import h2' failed: ${r.error?.message ?? r.stderr.trim()}`;
  }
  return h2Check;
}

/** True when the test can run; on CI a missing h2 fails the test, elsewhere it passes with a log line. */
function canRun(t: ExecutionContext): boolean {
  const missing = h2Missing();
  if (!missing) {
    if (!existsSync(CLIENT_SCRIPT) || !existsSync(SERVER_SCRIPT)) throw new Error(`interop scripts not found under ${SCRIPTS}`);
    return true;
  }
  if (process.env['CI']) throw new Error(`Python h2 interop cannot run on CI: ${missing} (install python3-h2)`);
  t.log(`not run: ${missing} (install python3-h2)`);
  t.pass();
  return false;
}

interface PemFiles {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
}

/** A temp dir (removed on teardown) to write certificates into as PEM files for Python. */
async function pemDir(t: ExecutionContext): Promise<(name: string, certificate: WorkloadCertificate) => Promise<PemFiles>> {
  const dir = await tempDir(t, 'hbone-interop-');
  return async (name, certificate) => {
    const files = { cert: join(dir, `${name}-chain.pem`), key: join(dir, `${name}-key.pem`), ca: join(dir, `${name}-ca.pem`) };
    await writeFile(files.cert, certificate.chainPem.join('\n'));
    await writeFile(files.key, certificate.privateKeyPem, { mode: 0o600 });
    await writeFile(files.ca, certificate.rootsPem.join('\n'));
    return files;
  };
}

function usePki(t: ExecutionContext): TestPki {
  const pki = testPki();
  t.teardown(() => pki.close());
  return pki;
}

interface ClientResult {
  readonly status: number | null;
  readonly reset: string | number | null;
  readonly echo: string;
  readonly peer_san: string[];
  readonly alpn: string | null;
  readonly error: string | null;
}

interface ClientRequest {
  readonly authority?: string | null;
  readonly method?: string;
  readonly payload?: string;
  readonly headers?: ReadonlyArray<readonly [string, string]>;
}

/** Runs the Python client once (one TLS connection, the requests in order) and returns one result per request. */
function runPythonClient(files: PemFiles, port: number, requests: readonly ClientRequest[], serverHostname?: string): Promise<ClientResult[]> {
  const config = { host: '127.0.0.1', port, ...files, requests, ...(serverHostname ? { server_hostname: serverHostname } : {}) };
  return new Promise((resolve, reject) => {
    const child = spawn(PYTHON, [CLIENT_SCRIPT, JSON.stringify(config)]);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), LINE_TIMEOUT_MS);
    child.once('error', reject);
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const lines = stdout.split('\n').filter((l) => l.trim());
      if (code !== 0 || lines.length !== requests.length) {
        reject(new Error(`python client exited ${code ?? signal} with ${lines.length}/${requests.length} results:\n${stdout}\n${stderr}`));
        return;
      }
      resolve(lines.map((l) => JSON.parse(l) as ClientResult));
    });
  });
}

interface ServerRecord {
  readonly connection: number;
  readonly stream: number;
  readonly method: string | null;
  readonly authority: string | null;
  readonly baggage: string | null;
  readonly forwarded: string | null;
  readonly traceparent: string | null;
  readonly peer_san: string[];
  readonly sni_seen: boolean;
  readonly sni: string | null;
  readonly alpn: string | null;
  readonly status: number;
  readonly received: string;
  readonly reset: string | number | null;
}

interface PythonServer {
  readonly port: number;
  /** The next stream record the server prints. */
  next(): Promise<ServerRecord>;
}

/** Starts the Python server and waits for its port line; killed on teardown. */
async function startPythonServer(t: ExecutionContext, files: PemFiles, status = 200): Promise<PythonServer> {
  const child: ChildProcessWithoutNullStreams = spawn(PYTHON, [SERVER_SCRIPT, JSON.stringify({ ...files, status })]);
  let stderr = '';
  let exited: string | undefined;
  child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
  const lines: string[] = [];
  const waiters: Array<{ resolve: (line: string) => void; reject: (err: Error) => void }> = [];
  createInterface({ input: child.stdout }).on('line', (line) => {
    const waiter = waiters.shift();
    if (waiter) waiter.resolve(line);
    else lines.push(line);
  });
  child.once('exit', (code, signal) => {
    exited = `python server exited ${code ?? signal}: ${stderr}`;
    for (const w of waiters.splice(0)) w.reject(new Error(exited));
  });
  t.teardown(async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    const gone = new Promise((resolve) => child.once('exit', resolve));
    child.kill('SIGKILL');
    await gone;
  });
  const nextLine = () =>
    new Promise<string>((resolve, reject) => {
      const line = lines.shift();
      if (line !== undefined) return resolve(line);
      if (exited) return reject(new Error(exited));
      const timer = setTimeout(() => reject(new Error(`no line from the python server within ${LINE_TIMEOUT_MS} ms; stderr: ${stderr}`)), LINE_TIMEOUT_MS);
      const done = <T>(f: (v: T) => void) => (v: T) => {
        clearTimeout(timer);
        f(v);
      };
      waiters.push({ resolve: done(resolve), reject: done(reject) });
    });
  const { port } = JSON.parse(await nextLine()) as { port: number };
  return { port, next: async () => JSON.parse(await nextLine()) as ServerRecord };
}

/** Our HBONE server forwarding to targets, recording the peer of every request the handler sees. */
async function ourServer(t: ExecutionContext, certificate: WorkloadCertificate): Promise<{ port: number; peers: SpiffeId[] }> {
  const peers: SpiffeId[] = [];
  const forward = forwardToTarget({ connectTimeoutMs: 5_000 });
  const handler: HboneHandler = (request) => {
    peers.push(request.peer);
    return forward(request);
  };
  const server = await startHboneServer({ host: '127.0.0.1', port: 0, certificate, handler, drainMs: 500 });
  t.teardown(() => server.close());
  return { port: server.address().port, peers };
}

async function closedPort(): Promise<number> {
  const s = await tcpServer(() => {});
  await s.close();
  return s.port;
}

/** A CONNECT from ns/client to a Python server, expecting it to be ns/server. */
function requestTo(pki: ReturnType<typeof usePki>, port: number, authority: string) {
  return { source: pki.id('ns', 'client'), expectedIdentities: [pki.id('ns', 'server')], address: { host: '127.0.0.1', port }, authority };
}

test('python h2 client → our HBONE server: CONNECT tunnels to the target and the handler sees the client identity', async (t) => {
  if (!canRun(t)) return;
  const pki = usePki(t);
  const pem = await pemDir(t);
  const target = await tcpServer(echo);
  t.teardown(() => target.close());
  const server = await ourServer(t, await pki.cert('ns', 'server'));
  const files = await pem('client', await pki.cert('ns', 'client'));

  const [result] = await runPythonClient(files, server.port, [{ authority: `127.0.0.1:${target.port}`, payload: 'hello from h2 ☃' }]);
  t.like(result, { status: 200, reset: null, error: null, echo: 'hello from h2 ☃', alpn: 'h2' });
  t.deepEqual(result?.peer_san, [formatSpiffeId(pki.id('ns', 'server'))]);
  t.deepEqual(server.peers.map(formatSpiffeId), [formatSpiffeId(pki.id('ns', 'client'))]);
});

test('python h2 client → our HBONE server: bad requests are refused and the server keeps serving', async (t) => {
  if (!canRun(t)) return;
  const pki = usePki(t);
  const pem = await pemDir(t);
  const target = await tcpServer(echo);
  t.teardown(() => target.close());
  const server = await ourServer(t, await pki.cert('ns', 'server'));
  const files = await pem('client', await pki.cert('ns', 'client'));
  const unreachable = await closedPort();
  const good = { authority: `127.0.0.1:${target.port}`, payload: 'still here' };

  // All on one connection: a refused stream must not take the connection down.
  const [get, badAuthority, noRoute, noAuthority, afterwards] = await runPythonClient(files, server.port, [
    { method: 'GET', authority: `127.0.0.1:${target.port}` },
    { authority: 'not-a-port' },
    { authority: `127.0.0.1:${unreachable}` },
    { authority: null },
    good,
  ]);
  t.like(get, { status: 400, reset: null, echo: '', error: null }, 'GET is answered 400');
  t.like(badAuthority, { status: 400, reset: null, echo: '', error: null }, 'an authority without a port is answered 400');
  t.like(noRoute, { status: 503, reset: null, echo: '', error: null }, 'an unreachable target is answered 503');
  // A CONNECT without :authority is malformed HTTP/2 (RFC 9113 §8.5): nghttp2 resets it with
  // PROTOCOL_ERROR before our handler runs, and the connection stays up.
  t.like(noAuthority, { status: null, reset: 'PROTOCOL_ERROR', echo: '', error: null }, 'a CONNECT without :authority is reset');
  t.like(afterwards, { status: 200, reset: null, echo: 'still here', error: null }, 'a good CONNECT on the same connection still works');

  // And on a fresh connection.
  const [fresh] = await runPythonClient(files, server.port, [good]);
  t.like(fresh, { status: 200, echo: 'still here', error: null });
  // The handler ran only for the requests that passed method and authority checks.
  t.is(server.peers.length, 3);
});

test('our HBONE client → python h2 server: tunnel, headers, client identity and no SNI', async (t) => {
  if (!canRun(t)) return;
  const pki = usePki(t);
  const pem = await pemDir(t);
  const python = await startPythonServer(t, await pem('server', await pki.cert('ns', 'server')));
  const client = createHboneClient({ certificates: pki.certificates });
  t.teardown(() => client.destroy());
  const request = {
    source: pki.id('ns', 'client'),
    expectedIdentities: [pki.id('ns', 'server')],
    address: { host: '127.0.0.1', port: python.port },
  };
  const baggage = 'k8s.cluster.name=Kubernetes,k8s.namespace.name=ns,k8s.deployment.name=client';
  const forwarded = 'for="10.1.2.3:4567";host=echo.ns.svc.cluster.local';

  const tunnel = await client.connect({ ...request, authority: '10.9.8.7:8080', baggage, forwarded });
  t.is(Number(tunnel.responseHeaders[':status']), 200);
  t.deepEqual(formatSpiffeId(tunnel.peer), formatSpiffeId(pki.id('ns', 'server')));
  tunnel.stream.end('ping over hbone');
  t.is(await readAll(tunnel.stream), 'ping over hbone');

  const first = await python.next();
  t.like(first, {
    method: 'CONNECT',
    authority: '10.9.8.7:8080',
    baggage,
    forwarded,
    status: 200,
    received: 'ping over hbone',
    reset: null,
    alpn: 'h2',
    sni_seen: true,
    sni: null,
  });
  t.regex(first.traceparent ?? '', TRACEPARENT);
  t.deepEqual(first.peer_san, [formatSpiffeId(pki.id('ns', 'client'))]);

  // A second tunnel shares the pooled connection: a new stream, no optional headers, a new traceparent.
  const second = await client.connect({ ...request, authority: '[fd00::1]:9090' });
  second.stream.end('again');
  t.is(await readAll(second.stream), 'again');
  const record = await python.next();
  t.like(record, { connection: first.connection, method: 'CONNECT', authority: '[fd00::1]:9090', baggage: null, forwarded: null, received: 'again' });
  t.not(record.stream, first.stream);
  t.regex(record.traceparent ?? '', TRACEPARENT);
  t.not(record.traceparent, first.traceparent);
});

test('our HBONE client → python h2 server with an unexpected identity: rejected as a peer identity mismatch', async (t) => {
  if (!canRun(t)) return;
  const pki = usePki(t);
  const pem = await pemDir(t);
  const python = await startPythonServer(t, await pem('impostor', await pki.cert('ns', 'impostor')));
  const client = createHboneClient({ certificates: pki.certificates });
  t.teardown(() => client.destroy());
  const err = await t.throwsAsync(client.connect(requestTo(pki, python.port, '10.9.8.7:8080')), { instanceOf: HboneError });
  t.is(err?.code, 'HBONE_PEER_IDENTITY_MISMATCH');
  t.regex(err?.message ?? '', /impostor/);
});

test('our HBONE client → python h2 server answering 503: rejected with the status', async (t) => {
  if (!canRun(t)) return;
  const pki = usePki(t);
  const pem = await pemDir(t);
  const python = await startPythonServer(t, await pem('server', await pki.cert('ns', 'server')), 503);
  const client = createHboneClient({ certificates: pki.certificates });
  t.teardown(() => client.destroy());
  const err = await t.throwsAsync(client.connect(requestTo(pki, python.port, '10.9.8.7:8080')), { instanceOf: HboneError });
  t.is(err?.code, 'HBONE_CONNECT_REJECTED');
  t.is(err?.status, 503);
  t.like(await python.next(), { method: 'CONNECT', authority: '10.9.8.7:8080', status: 503 });
});

test('control: the python server does record SNI when a client sends one', async (t) => {
  // Without this, `sni: null` above could mean the server never looked.
  if (!canRun(t)) return;
  const pki = usePki(t);
  const pem = await pemDir(t);
  const python = await startPythonServer(t, await pem('server', await pki.cert('ns', 'server')));
  const files = await pem('client', await pki.cert('ns', 'client'));
  const [result] = await runPythonClient(files, python.port, [{ authority: '10.9.8.7:8080', payload: 'x' }], 'server.ns.example');
  t.like(result, { status: 200, echo: 'x' });
  t.like(await python.next(), { sni_seen: true, sni: 'server.ns.example' });
});

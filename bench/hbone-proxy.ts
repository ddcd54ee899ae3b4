/**
 * One half of the benchmark's HBONE path, as its own process (so it gets its own event loop and
 * core, as a ztunnel would):
 *
 *   client: a plain TCP listener; each accepted connection opens an HBONE tunnel (pooled HTTP/2
 *           CONNECT over mTLS) to the server process with `:authority` = --target, then relays.
 *   server: the HBONE listener (`startHboneServer` + `forwardToTarget()`): dials the authority.
 *
 * Both bind 127.0.0.1 and print `{"ready":true,"port":N}` on stdout once listening. Certificates
 * come from a JSON file holding a WorkloadCertificate (written by bench/hbone.ts). They exit on
 * SIGTERM/SIGINT, or when stdin (if a pipe) closes, through `process.exit` so that
 * `node --cpu-prof` writes its profile.
 *
 *   node dist/bench/hbone-proxy.js server --cert server.json [--port 0]
 *   node dist/bench/hbone-proxy.js client --cert client.json --hbone 127.0.0.1:PORT \
 *        --target 127.0.0.1:PORT --expect spiffe://cluster.local/ns/bench/sa/server [--port 0]
 */
import { once } from 'node:events';
import { fstatSync, readFileSync } from 'node:fs';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { parseArgs } from 'node:util';
import { createLogger, type LogLevel } from '../src/core/logger.ts';
import { createHboneClient } from '../src/hbone/client.ts';
import { dial, forwardToTarget } from '../src/hbone/forward.ts';
import { relay } from '../src/hbone/relay.ts';
import { startHboneServer } from '../src/hbone/server.ts';
import { parseSpiffeId, type SpiffeId } from '../src/identity/spiffe.ts';
import type { WorkloadCertificate } from '../src/identity/workload-certificate.ts';

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    cert: { type: 'string' },
    port: { type: 'string', default: '0' },
    hbone: { type: 'string' },
    target: { type: 'string' },
    expect: { type: 'string' },
    'log-level': { type: 'string', default: 'warn' },
  },
});

function usage(message: string): never {
  process.stderr.write(`hbone-proxy: ${message}\nusage: hbone-proxy server|client --cert FILE [--port N] [--hbone HOST:PORT --target HOST:PORT --expect SPIFFE_ID]\n`);
  process.exit(2);
}

/** Reads a WorkloadCertificate written as JSON, checking the fields it must have. */
function loadCertificate(path: string): WorkloadCertificate {
  const raw = JSON.parse(readFileSync(path, 'utf8')) as Record<string, unknown>;
  const identity = raw['identity'] as Partial<SpiffeId> | undefined;
  const strings = (value: unknown) => Array.isArray(value) && value.every((v) => typeof v === 'string');
  if (
    !identity || typeof identity.trustDomain !== 'string' || typeof identity.namespace !== 'string' || typeof identity.serviceAccount !== 'string' ||
    typeof raw['privateKeyPem'] !== 'string' || !strings(raw['chainPem']) || !strings(raw['rootsPem']) ||
    typeof raw['notBefore'] !== 'number' || typeof raw['notAfter'] !== 'number'
  ) {
    usage(`${path} is not a WorkloadCertificate JSON ({identity, privateKeyPem, chainPem, rootsPem, notBefore, notAfter})`);
  }
  return {
    identity: { trustDomain: identity.trustDomain, namespace: identity.namespace, serviceAccount: identity.serviceAccount },
    privateKeyPem: raw['privateKeyPem'],
    chainPem: raw['chainPem'] as string[],
    rootsPem: raw['rootsPem'] as string[],
    notBefore: raw['notBefore'],
    notAfter: raw['notAfter'],
  };
}

function hostPort(value: string | undefined, flag: string): { host: string; port: number } {
  const match = /^(.+):(\d+)$/.exec(value ?? '');
  if (!match) usage(`${flag} must be HOST:PORT`);
  return { host: match[1] as string, port: Number(match[2]) };
}

const mode = positionals[0];
if (mode !== 'client' && mode !== 'server' && mode !== 'tcp') usage('mode must be client, server or tcp');
if (mode !== 'tcp' && !values.cert) usage('--cert is required');
const log = createLogger({ level: values['log-level'] as LogLevel, destination: process.stderr });
const listenPort = Number(values.port);
let shutdown: () => Promise<void>;
let port: number;

/**
 * A plain TCP listener that opens an upstream per accepted connection and relays to it; a failed
 * upstream resets the accepted connection.
 */
async function relayListener(openUpstream: () => Promise<Duplex>): Promise<{ port: number; close(): void }> {
  const sockets = new Set<Socket>();
  const listener = createServer({ allowHalfOpen: true, noDelay: true }, (socket) => {
    sockets.add(socket);
    socket.on('error', () => {}); // the relay reports, or the failed open below resets
    socket.once('close', () => sockets.delete(socket));
    openUpstream().then(
      async (upstream) => {
        const result = await relay(socket, upstream);
        if (result.error) log.debug({ code: result.error.code, err: result.error.message }, 'tunnel ended with an error');
      },
      (err: unknown) => {
        log.warn({ err: err instanceof Error ? err.message : String(err) }, 'upstream open failed');
        socket.resetAndDestroy();
      },
    );
  });
  listener.listen({ host: '127.0.0.1', port: listenPort });
  await once(listener, 'listening');
  return {
    port: (listener.address() as AddressInfo).port,
    close() {
      listener.close();
      for (const socket of sockets) socket.destroy();
    },
  };
}

if (mode === 'tcp') {
  // Plain TCP through the same relay: the cost of a Node process in the path, without TLS or HTTP/2.
  const target = hostPort(values.target, '--target');
  const listener = await relayListener(() => dial(target.host, target.port, 10_000));
  port = listener.port;
  shutdown = async () => listener.close();
} else if (mode === 'server') {
  const certificate = loadCertificate(values.cert as string);
  const server = await startHboneServer({ host: '127.0.0.1', port: listenPort, certificate, handler: forwardToTarget(), logger: log });
  port = server.address().port;
  shutdown = () => server.close();
} else {
  const certificate = loadCertificate(values.cert as string);
  const hbone = hostPort(values.hbone, '--hbone');
  const target = hostPort(values.target, '--target');
  const expected = parseSpiffeId(values.expect ?? '');
  if (!expected.ok) usage(`--expect: ${expected.errors.join('; ')}`);
  const client = createHboneClient({ certificates: { fetch: async () => certificate }, logger: log });
  const request = { source: certificate.identity, expectedIdentities: [expected.value], address: hbone, authority: `${target.host}:${target.port}` };
  const listener = await relayListener(async () => (await client.connect(request)).stream);
  port = listener.port;
  shutdown = async () => {
    listener.close();
    client.destroy();
  };
}

process.stdout.write(`${JSON.stringify({ ready: true, port })}\n`);

let stopping = false;
const stop = () => {
  if (stopping) return;
  stopping = true;
  const deadline = setTimeout(() => process.exit(0), 2000);
  deadline.unref();
  shutdown().finally(() => process.exit(0));
};
process.once('SIGTERM', stop);
process.once('SIGINT', stop);
if (fstatSync(0).isFIFO()) process.stdin.on('end', stop).on('error', stop).resume();

import test from 'ava';
import { once } from 'node:events';
import { connect as h2connect, constants as h2 } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { ErrorCode } from '../../src/core/error-codes.ts';
import { forwardToTarget } from '../../src/hbone/forward.ts';
import { clientTlsOptions } from '../../src/hbone/tls.ts';
import type { CertificateProvider } from '../../src/identity/cert-manager.ts';
import { spiffeId } from '../../src/identity/spiffe.ts';
import type { WorkloadCertificate } from '../../src/identity/workload-certificate.ts';
import { captureLog } from '../helpers/log.ts';
import { hboneFixture, type HboneFixture } from '../helpers/hbone.ts';
import { networkHandles, settleHandles } from '../helpers/handles.ts';
import { testPki } from '../helpers/pki.ts';
import { echo, readAll, tcpServer, type TcpTestServer } from '../helpers/tcp.ts';
import { createHboneClient } from '../../src/hbone/client.ts';

// One server lives through every refusal below and must still serve at the end.
let fixture: HboneFixture;
let target: TcpTestServer;
let baseline: number;
const serverLog = captureLog();

test.before(async () => {
  baseline = networkHandles();
  target = await tcpServer(echo);
  const forward = forwardToTarget({
    admit: (request) => (request.peer.serviceAccount === 'denied' ? { status: 401, code: ErrorCode.HBONE_CONNECT_REJECTED, reason: 'denied by policy' } : undefined),
  });
  fixture = await hboneFixture({ handler: forward, serverLog: serverLog.logger });
});

test.after.always(async (t) => {
  await fixture.close();
  await target.close();
  t.is(await settleHandles(baseline), baseline, 'sockets return to baseline');
});

const serverAddress = () => ({ host: '127.0.0.1', port: fixture.server.address().port });

/**
 * A client of its own with a fixed certificate, for certificates the cert manager would never hand out.
 * Its keepalive is an hour away: a refusal must reach it through the connection itself (TLS 1.3 refuses a
 * client certificate after the client's handshake is done, by closing), never by a PING timing out.
 */
function clientWith(certificate: WorkloadCertificate) {
  const certificates: CertificateProvider = { fetch: async () => certificate };
  return createHboneClient({ certificates, keepaliveIntervalMs: 3_600_000, keepaliveTimeoutMs: 3_600_000 });
}

async function stillServes(t: { is(a: unknown, b: unknown): void }) {
  const tunnel = await fixture.connect(`127.0.0.1:${target.port}`);
  tunnel.stream.end('alive');
  t.is(await readAll(tunnel.stream), 'alive');
}

/** Opens a raw HTTP/2 session with a good client certificate, to send what our client never would. */
async function rawSession() {
  const cert = await fixture.pki.cert('ns', 'client');
  const socket = tlsConnect({ ...clientTlsOptions(cert, [fixture.pki.id('ns', 'server')]), ...serverAddress() });
  await once(socket, 'secureConnect');
  const session = h2connect(`https://127.0.0.1:${serverAddress().port}`, { createConnection: () => socket });
  session.on('error', () => {});
  return session;
}

async function statusOf(headers: Record<string, string>) {
  const session = await rawSession();
  const stream = session.request(headers, { endStream: false });
  stream.on('error', () => {});
  const [response] = (await once(stream, 'response')) as [Record<string, unknown>];
  session.close();
  return Number(response[':status']);
}

test.serial('a non-CONNECT method gets 400 and a coded log line', async (t) => {
  t.is(await statusOf({ ':method': 'GET', ':path': '/', ':scheme': 'https', ':authority': `127.0.0.1:${target.port}` }), 400);
  const line = await serverLog.waitForCode(ErrorCode.HBONE_METHOD_NOT_ALLOWED);
  t.is(line.status, 400);
  await stillServes(t);
});

for (const authority of ['no-port', '127.0.0.1:0', '127.0.0.1:99999', '[::1:80', '::1:80', 'bad_host!:80', '127.0.0.1:+80']) {
  test.serial(`a malformed authority ${JSON.stringify(authority)} gets 400`, async (t) => {
    t.is(await statusOf({ ':method': 'CONNECT', ':authority': authority }), 400);
    await serverLog.waitForCode(ErrorCode.HBONE_BAD_AUTHORITY);
    await stillServes(t);
  });
}

test.serial('an unreachable target gets 503; the client reports HBONE_CONNECT_REJECTED with the status', async (t) => {
  const closed = await tcpServer(() => {});
  const port = closed.port;
  await closed.close();
  const error = await t.throwsAsync(fixture.connect(`127.0.0.1:${port}`));
  t.is((error as { code?: string }).code, ErrorCode.HBONE_CONNECT_REJECTED);
  t.is((error as { status?: number }).status, 503);
  await serverLog.waitForCode(ErrorCode.HBONE_UPSTREAM_CONNECT_FAILED);
  await stillServes(t);
});

test.serial('a hostname authority without service resolution gets 503', async (t) => {
  t.is(await statusOf({ ':method': 'CONNECT', ':authority': 'reviews.default.svc.cluster.local:9080' }), 503);
});

test.serial('a denied peer gets 401', async (t) => {
  const error = await t.throwsAsync(fixture.connect(`127.0.0.1:${target.port}`, { source: fixture.pki.id('ns', 'denied') }));
  t.is((error as { status?: number }).status, 401);
  await stillServes(t);
});

test.serial('a server presenting an unexpected identity is refused by the client (wrong SAN)', async (t) => {
  const error = await t.throwsAsync(fixture.connect(`127.0.0.1:${target.port}`, { expectedIdentities: [fixture.pki.id('ns', 'someone-else')] }));
  t.is((error as { code?: string }).code, ErrorCode.HBONE_PEER_IDENTITY_MISMATCH);
  await stillServes(t);
});

test.serial('a client certificate from another CA is refused by the server (wrong CA)', async (t) => {
  const otherPki = testPki('cluster.local');
  const foreign = await otherPki.cert('ns', 'client');
  // it trusts the server, but its own chain leads to a root the server does not know
  const client = clientWith({ ...foreign, rootsPem: [...foreign.rootsPem, ...fixture.pki.ca.rootsPem] });
  const since = serverLog.mark();
  const error = await t.throwsAsync(client.connect({ source: otherPki.id('ns', 'client'), expectedIdentities: [fixture.pki.id('ns', 'server')], address: serverAddress(), authority: `127.0.0.1:${target.port}` }));
  t.truthy((error as { code?: string }).code?.startsWith('HBONE_'));
  const line = await serverLog.waitForCode(ErrorCode.HBONE_TLS_HANDSHAKE_FAILED, since);
  t.regex(String(line.err), /client certificate rejected: (SELF_SIGNED_CERT_IN_CHAIN|UNABLE_TO_GET_ISSUER_CERT)/);
  client.destroy();
  await otherPki.close();
  await stillServes(t);
});

test.serial('a server certificate from another CA is refused by the client', async (t) => {
  const otherPki = testPki('cluster.local');
  const mine = await fixture.pki.cert('ns', 'client');
  const foreignRoots: WorkloadCertificate = { ...mine, rootsPem: otherPki.ca.rootsPem };
  const client = clientWith(foreignRoots);
  const error = await t.throwsAsync(client.connect({ source: mine.identity, expectedIdentities: [fixture.pki.id('ns', 'server')], address: serverAddress(), authority: `127.0.0.1:${target.port}` }));
  t.is((error as { code?: string }).code, ErrorCode.HBONE_TLS_HANDSHAKE_FAILED);
  client.destroy();
  await otherPki.close();
  await stillServes(t);
});

test.serial('a client from another trust domain (same CA) is dropped by the server', async (t) => {
  const foreign = await fixture.pki.certificates.fetch(spiffeId('other.local', 'ns', 'client'));
  const client = clientWith(foreign);
  const error = await t.throwsAsync(client.connect({ source: foreign.identity, expectedIdentities: [fixture.pki.id('ns', 'server')], address: serverAddress(), authority: `127.0.0.1:${target.port}` }));
  t.truthy((error as { code?: string }).code?.startsWith('HBONE_'));
  const line = await serverLog.waitForCode(ErrorCode.HBONE_PEER_TRUST_DOMAIN_MISMATCH);
  t.regex(String(line.err), /other\.local/);
  client.destroy();
  await stillServes(t);
});

test.serial('an expired client certificate is refused by the server', async (t) => {
  const clock = { now: Date.now() - 3 * 3600_000 };
  const pastPki = testPki('cluster.local', { now: () => clock.now, ttlSeconds: 3600 });
  const expired = await pastPki.cert('ns', 'client');
  t.true(expired.notAfter < Date.now());
  // the server trusts this CA too, so expiry is the only fault
  const both: WorkloadCertificate = { ...expired, rootsPem: [...expired.rootsPem, ...fixture.pki.ca.rootsPem] };
  const server = await (await import('../../src/hbone/server.ts')).startHboneServer({
    host: '127.0.0.1',
    port: 0,
    certificate: { ...(await fixture.pki.cert('ns', 'server')), rootsPem: [...fixture.pki.ca.rootsPem, ...pastPki.ca.rootsPem] },
    handler: forwardToTarget(),
    logger: serverLog.logger,
  });
  const client = clientWith(both);
  const since = serverLog.mark();
  const error = await t.throwsAsync(client.connect({ source: expired.identity, expectedIdentities: [fixture.pki.id('ns', 'server')], address: { host: '127.0.0.1', port: server.address().port }, authority: `127.0.0.1:${target.port}` }));
  t.truthy((error as { code?: string }).code?.startsWith('HBONE_'));
  const line = await serverLog.waitForCode(ErrorCode.HBONE_TLS_HANDSHAKE_FAILED, since);
  t.regex(String(line.err), /client certificate rejected: CERT_HAS_EXPIRED/);
  client.destroy();
  await server.close();
  await pastPki.close();
  await stillServes(t);
});

const closeOf = (socket: NodeJS.EventEmitter) => new Promise<void>((resolve) => socket.once('close', () => resolve()));

test.serial('plaintext on the HBONE port is dropped', async (t) => {
  const since = serverLog.mark();
  const socket = netConnect(serverAddress());
  socket.on('error', () => {});
  await once(socket, 'connect');
  socket.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
  await closeOf(socket);
  const line = await serverLog.waitForCode(ErrorCode.HBONE_TLS_HANDSHAKE_FAILED, since);
  t.regex(String(line.err), /wrong version number|http request|packet length/i);
  await stillServes(t);
});

test.serial('TLS 1.2 is refused', async (t) => {
  const cert = await fixture.pki.cert('ns', 'client');
  const since = serverLog.mark();
  const socket = tlsConnect({
    ...clientTlsOptions(cert, [fixture.pki.id('ns', 'server')]),
    minVersion: 'TLSv1.2',
    maxVersion: 'TLSv1.2',
    ciphers: 'ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384',
    ...serverAddress(),
  });
  const [error] = (await once(socket, 'error').catch((e: unknown) => [e])) as [Error & { code?: string }];
  t.is(error.code, 'ERR_SSL_TLSV1_ALERT_PROTOCOL_VERSION');
  socket.destroy();
  const line = await serverLog.waitForCode(ErrorCode.HBONE_TLS_HANDSHAKE_FAILED, since);
  t.regex(String(line.err), /unsupported protocol/i);
  await stillServes(t);
});

test.serial('a client without ALPN h2 is dropped', async (t) => {
  const cert = await fixture.pki.cert('ns', 'client');
  const since = serverLog.mark();
  const socket = tlsConnect({ ...clientTlsOptions(cert, [fixture.pki.id('ns', 'server')]), ALPNProtocols: ['http/1.1'], ...serverAddress() });
  const failed = new Promise<Error & { code?: string }>((resolve) => socket.once('error', resolve));
  await closeOf(socket);
  t.is((await failed).code, 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL');
  const line = await serverLog.waitForCode(ErrorCode.HBONE_TLS_HANDSHAKE_FAILED, since);
  t.regex(String(line.err), /no application protocol/i);
  await stillServes(t);
});

test.serial('a stream reset by the client before the answer does not disturb the server', async (t) => {
  const session = await rawSession();
  const stream = session.request({ ':method': 'CONNECT', ':authority': `127.0.0.1:${target.port}` }, { endStream: false });
  stream.on('error', () => {});
  stream.close(h2.NGHTTP2_CANCEL);
  await once(stream, 'close');
  session.destroy();
  await stillServes(t);
});

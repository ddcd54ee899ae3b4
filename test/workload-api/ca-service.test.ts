/**
 * The CA gRPC service and client on loopback with real TLS: the server's certificate is signed by the
 * mesh CA for `istiod.istio-system.svc` (a DNS SAN), clients verify it against the mesh root and
 * reach it as `localhost` with the alternate hostname, as ALT_CA_HOSTNAME does.
 */
import test, { type ExecutionContext } from 'ava';
import { status, type ServiceDefinition } from '@grpc/grpc-js';
import type { MethodDefinition } from '@grpc/proto-loader';
import { execFile } from 'node:child_process';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ErrorCode } from '../../src/core/error-codes.ts';
import type { Logger } from '../../src/core/logger.ts';
import { CertificateAuthority } from '../../src/identity/ca.ts';
import { CertManager } from '../../src/identity/cert-manager.ts';
import { formatSpiffeId, spiffeId, type SpiffeId } from '../../src/identity/spiffe.ts';
import { buildCsrPem, generateKeyPair } from '../../src/identity/x509.ts';
import { CaCallError, GrpcCaClient, type GrpcCaClientOptions } from '../../src/workload-api/ca-client.ts';
import { allowListAuthorizer, bearerTokenAuthenticator, caService, signingIdentity, type ImpersonationAuthorizer } from '../../src/workload-api/ca-service.ts';
import type { IstioCertificateRequest, IstioCertificateRequest__Output } from '../../src/workload-api/generated/istio/v1/auth/IstioCertificateRequest.ts';
import { grpcTarget, type CallAuthOptions } from '../../src/workload-api/grpc-auth.ts';
import { startGrpcServer } from '../../src/workload-api/grpc-server.ts';
import { grpcPackageDefinition } from '../../src/workload-api/proto.ts';
import { captureLog } from '../helpers/log.ts';
import { compilePythonProtos, PYTHON, canRunPythonGrpc } from '../helpers/python-protos.ts';
import { tempDir } from '../helpers/tmp.ts';

const TD = 'cluster.local';
const ISTIOD = 'istiod.istio-system.svc';
const ztunnel = spiffeId(TD, 'istio-system', 'ztunnel');
const sleep = spiffeId(TD, 'default', 'sleep');
const httpbin = spiffeId(TD, 'default', 'httpbin');
const kubeSystem = spiffeId(TD, 'kube-system', 'coredns');
const TOKENS = { ztunnel: 'token-ztunnel-0123456789', sleep: 'token-sleep-0123456789', httpbin: 'token-httpbin-0123456789' } as const;
const SCRIPTS = fileURLToPath(new URL('../../../test/interop/', import.meta.url));

// ---------------------------------------------------------------------------------------------
// fixtures

interface CaFixture {
  readonly ca: CertificateAuthority;
  readonly port: number;
  /** The mesh root, which also signed the serving certificate. */
  readonly rootPem: string;
  readonly dir: string;
  client(auth: CallAuthOptions, overrides?: Partial<GrpcCaClientOptions>): GrpcCaClient;
  /** A client authenticating with a literal token (undefined: no token). */
  as(token: string | undefined, overrides?: Partial<GrpcCaClientOptions>): GrpcCaClient;
}

interface FixtureOptions {
  readonly authorizer?: ImpersonationAuthorizer;
  readonly logger?: Logger;
  readonly maxTtlSeconds?: number;
  readonly tls?: boolean;
}

/** The mesh CA served on 127.0.0.1:0 with TLS; server and clients are closed on teardown. */
async function startCa(t: ExecutionContext, options: FixtureOptions = {}): Promise<CaFixture> {
  const ca = CertificateAuthority.generate(TD, { maxTtlSeconds: 30 * 86_400 });
  const dir = await tempDir(t, 'ambient-ca-service-');
  const rootPem = ca.rootsPem.join('');
  const serving = ca.issueServingCertificate([ISTIOD]);
  const authenticator = bearerTokenAuthenticator(new Map([[TOKENS.ztunnel, ztunnel], [TOKENS.sleep, sleep], [TOKENS.httpbin, httpbin]]));
  const server = await startGrpcServer({
    host: '127.0.0.1',
    port: 0,
    ...(options.tls === false ? {} : { tls: serving }),
    services: [caService({ ca, authenticator, ...pick(options, 'authorizer', 'logger', 'maxTtlSeconds') })],
    drainMs: 1000,
  });
  t.teardown(() => server.close());
  const port = server.address().port;
  const client = (auth: CallAuthOptions, overrides: Partial<GrpcCaClientOptions> = {}) => {
    const c = new GrpcCaClient(
      options.tls === false
        ? { address: `http://127.0.0.1:${port}`, auth, ...overrides }
        : { address: `localhost:${port}`, rootCaPem: rootPem, alternateHostname: ISTIOD, auth, ...overrides },
    );
    t.teardown(() => c.close());
    return c;
  };
  const as = (token: string | undefined, overrides?: Partial<GrpcCaClientOptions>) =>
    client({ token: token === undefined ? { kind: 'none' } : { kind: 'literal', token }, clusterId: 'Kubernetes' }, overrides);
  return { ca, port, rootPem, dir, client, as };
}

function pick<T extends object, K extends keyof T>(from: T, ...keys: K[]): Partial<Pick<T, K>> {
  const out: Partial<Pick<T, K>> = {};
  for (const key of keys) if (from[key] !== undefined) out[key] = from[key];
  return out;
}

function csrFor(...ids: SpiffeId[]): string {
  return buildCsrPem(generateKeyPair().privateKey, ids.map(formatSpiffeId));
}

/** The leaf's URI SAN, after checking the chain's leaf was signed by the root the CA returned last. */
function leafSan(chain: readonly string[]): string | undefined {
  const leaf = new X509Certificate(chain[0] ?? '');
  const root = new X509Certificate(chain[chain.length - 1] ?? '');
  if (!leaf.verify(root.publicKey) || !leaf.checkIssued(root)) throw new Error('leaf not issued by the returned root');
  return leaf.subjectAltName;
}

async function refusal(t: ExecutionContext, call: Promise<unknown>, expected: status, message?: RegExp): Promise<CaCallError | undefined> {
  const err = await t.throwsAsync(call, { instanceOf: CaCallError });
  if (!err) return undefined;
  t.is(err.code, ErrorCode.IDENTITY_CERT_FETCH_FAILED);
  t.is(status[err.grpcStatus], status[expected], err.message);
  t.true(err.message.includes(status[expected]), 'the message names the gRPC status');
  if (message) t.regex(err.message, message);
  return err;
}

const trustZtunnel = allowListAuthorizer([{ caller: ztunnel, mayRequest: (id) => id.namespace === 'default' }]);

// ---------------------------------------------------------------------------------------------
// unit: addresses and the impersonation decision on the decoded wire shape

test('CA addresses follow Istio: a missing scheme means https; http:// is plaintext', (t) => {
  t.deepEqual(grpcTarget('istiod.istio-system.svc:15012'), { target: 'istiod.istio-system.svc:15012', host: 'istiod.istio-system.svc', secure: true });
  t.deepEqual(grpcTarget('https://istiod.istio-system.svc:15012'), { target: 'istiod.istio-system.svc:15012', host: 'istiod.istio-system.svc', secure: true });
  t.deepEqual(grpcTarget('http://127.0.0.1:15010'), { target: '127.0.0.1:15010', host: '127.0.0.1', secure: false });
  t.deepEqual(grpcTarget('https://[::1]:15012'), { target: '[::1]:15012', host: '::1', secure: true });
  t.deepEqual(grpcTarget('https://istiod'), { target: 'istiod:443', host: 'istiod', secure: true });
  t.throws(() => grpcTarget('ftp://istiod:21'), { message: /scheme must be https or http/ });
  t.throws(() => grpcTarget('https://istiod:15012/path'), { message: /only scheme, host and port/ });
});

test('the impersonation decision reads ImpersonatedIdentity from the request as grpc-js decodes it', (t) => {
  const method = (grpcPackageDefinition()['istio.v1.auth.IstioCertificateService'] as ServiceDefinition)['CreateCertificate'] as MethodDefinition<IstioCertificateRequest, unknown, IstioCertificateRequest__Output, unknown>;
  const decode = (request: IstioCertificateRequest) => method.requestDeserialize(method.requestSerialize(request));
  const impersonating = (value: NonNullable<IstioCertificateRequest['metadata']>) => decode({ csr: 'x', validityDuration: 60, metadata: value });

  const wire = impersonating({ fields: { ImpersonatedIdentity: { stringValue: formatSpiffeId(sleep) } } });
  t.like(wire.metadata?.fields['ImpersonatedIdentity'], { kind: 'stringValue', stringValue: formatSpiffeId(sleep) }, 'the decoded Struct shape');
  t.is(decode({ csr: 'x' }).metadata, null, 'no metadata decodes as null');

  const cases: Array<[string, SpiffeId, IstioCertificateRequest__Output, { ok: true; identity: SpiffeId; impersonated: boolean } | { ok: false; status: status }]> = [
    ['no metadata: own identity', sleep, decode({ csr: 'x' }), { ok: true, identity: sleep, impersonated: false }],
    ['empty metadata: own identity', sleep, impersonating({ fields: {} }), { ok: true, identity: sleep, impersonated: false }],
    ['empty string: own identity (as Istio)', sleep, impersonating({ fields: { ImpersonatedIdentity: { stringValue: '' } } }), { ok: true, identity: sleep, impersonated: false }],
    ['own id named explicitly', sleep, impersonating({ fields: { ImpersonatedIdentity: { stringValue: formatSpiffeId(sleep) } } }), { ok: true, identity: sleep, impersonated: false }],
    ['trusted node proxy, allowed id', ztunnel, wire, { ok: true, identity: sleep, impersonated: true }],
    ['trusted node proxy, id outside its rule', ztunnel, impersonating({ fields: { ImpersonatedIdentity: { stringValue: formatSpiffeId(kubeSystem) } } }), { ok: false, status: status.PERMISSION_DENIED }],
    ['untrusted caller', httpbin, wire, { ok: false, status: status.PERMISSION_DENIED }],
    ['not a SPIFFE id', ztunnel, impersonating({ fields: { ImpersonatedIdentity: { stringValue: 'spiffe://cluster.local/sleep' } } }), { ok: false, status: status.INVALID_ARGUMENT }],
    ['not a string', ztunnel, impersonating({ fields: { ImpersonatedIdentity: { numberValue: 7 } } }), { ok: false, status: status.INVALID_ARGUMENT }],
  ];
  for (const [title, caller, request, expected] of cases) t.like(signingIdentity(caller, request, trustZtunnel), expected, title);
});

// ---------------------------------------------------------------------------------------------
// integration: real gRPC over TLS on loopback

test('the CA issues a certificate for the caller identity, chained to its root', async (t) => {
  const fixture = await startCa(t);
  const chain = await fixture.as(TOKENS.sleep).createCertificate({ csrPem: csrFor(sleep), ttlSeconds: 3600 });
  t.is(chain.length, 2, 'leaf + root');
  t.is(leafSan(chain), `URI:${formatSpiffeId(sleep)}`);
  t.is(chain[chain.length - 1], fixture.rootPem);
  const leaf = new X509Certificate(chain[0]!);
  t.is(Date.parse(leaf.validTo) - Date.parse(leaf.validFrom), 3600_000);
});

test('impersonation: refused for an untrusted caller, allowed for the trusted node proxy within its rule', async (t) => {
  const fixture = await startCa(t, { authorizer: trustZtunnel });
  await refusal(t, fixture.as(TOKENS.httpbin).createCertificate({ csrPem: csrFor(sleep), ttlSeconds: 3600, impersonatedIdentity: formatSpiffeId(sleep) }), status.PERMISSION_DENIED, /may not request certificates for spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep/);

  const node = fixture.as(TOKENS.ztunnel);
  const chain = await node.createCertificate({ csrPem: csrFor(sleep), ttlSeconds: 3600, impersonatedIdentity: formatSpiffeId(sleep) });
  t.is(leafSan(chain), `URI:${formatSpiffeId(sleep)}`);
  await refusal(t, node.createCertificate({ csrPem: csrFor(kubeSystem), ttlSeconds: 3600, impersonatedIdentity: formatSpiffeId(kubeSystem) }), status.PERMISSION_DENIED);
  await refusal(t, node.createCertificate({ csrPem: csrFor(sleep), ttlSeconds: 3600, impersonatedIdentity: 'spiffe://cluster.local/ns/default' }), status.INVALID_ARGUMENT, /ImpersonatedIdentity/);
});

test('without an authorizer nobody may impersonate', async (t) => {
  const fixture = await startCa(t);
  await refusal(t, fixture.as(TOKENS.ztunnel).createCertificate({ csrPem: csrFor(sleep), ttlSeconds: 3600, impersonatedIdentity: formatSpiffeId(sleep) }), status.PERMISSION_DENIED);
});

test('a CSR for another identity than the one the caller may have is refused', async (t) => {
  const fixture = await startCa(t, { authorizer: trustZtunnel });
  await refusal(t, fixture.as(TOKENS.sleep).createCertificate({ csrPem: csrFor(httpbin), ttlSeconds: 3600 }), status.INVALID_ARGUMENT, /may only request spiffe:\/\/cluster\.local\/ns\/default\/sa\/sleep/);
  await refusal(t, fixture.as(TOKENS.ztunnel).createCertificate({ csrPem: csrFor(httpbin), ttlSeconds: 3600, impersonatedIdentity: formatSpiffeId(sleep) }), status.INVALID_ARGUMENT);
  await refusal(t, fixture.as(TOKENS.sleep).createCertificate({ csrPem: csrFor(sleep, httpbin), ttlSeconds: 3600 }), status.INVALID_ARGUMENT);
});

test('no token or an unknown token is UNAUTHENTICATED', async (t) => {
  const fixture = await startCa(t);
  await refusal(t, fixture.as(undefined).createCertificate({ csrPem: csrFor(sleep), ttlSeconds: 3600 }), status.UNAUTHENTICATED, /no bearer token/);
  const err = await refusal(t, fixture.as('not-a-known-token').createCertificate({ csrPem: csrFor(sleep), ttlSeconds: 3600 }), status.UNAUTHENTICATED, /bearer token is not recognized/);
  t.false(err?.message.includes('not-a-known-token'), 'the token is not echoed');
});

test('bad CSRs and TTLs are INVALID_ARGUMENT and the server keeps serving', async (t) => {
  const fixture = await startCa(t, { maxTtlSeconds: 7 * 86_400 });
  const client = fixture.as(TOKENS.sleep);
  await refusal(t, client.createCertificate({ csrPem: 'not a csr', ttlSeconds: 3600 }), status.INVALID_ARGUMENT, /csr: not a PEM CERTIFICATE REQUEST/);
  const tampered = csrFor(sleep).replace(/\n([A-Za-z0-9+/]{10})/, (_m, s: string) => `\n${s.split('').reverse().join('')}`);
  await refusal(t, client.createCertificate({ csrPem: tampered, ttlSeconds: 3600 }), status.INVALID_ARGUMENT, /csr:/);
  await refusal(t, client.createCertificate({ csrPem: csrFor(sleep), ttlSeconds: 10 * 365 * 86_400 }), status.INVALID_ARGUMENT, /validity_duration: requested 315360000s exceeds the maximum of 604800s/);
  await refusal(t, client.createCertificate({ csrPem: csrFor(sleep), ttlSeconds: -1 }), status.INVALID_ARGUMENT, /validity_duration: must be a non-negative/);

  // The CA's own maximum applies without a service cap; 0 takes the CA default (24 h).
  const uncapped = await startCa(t);
  await refusal(t, uncapped.as(TOKENS.sleep).createCertificate({ csrPem: csrFor(sleep), ttlSeconds: 10 * 365 * 86_400 }), status.INVALID_ARGUMENT, /exceeds the maximum of 2592000s/);
  const defaulted = new X509Certificate((await uncapped.as(TOKENS.sleep).createCertificate({ csrPem: csrFor(sleep), ttlSeconds: 0 }))[0]!);
  t.is(Date.parse(defaulted.validTo) - Date.parse(defaulted.validFrom), 86_400_000);

  t.is(leafSan(await client.createCertificate({ csrPem: csrFor(sleep), ttlSeconds: 3600 })), `URI:${formatSpiffeId(sleep)}`, 'still serving');
});

test('the token is re-read from its file on every call', async (t) => {
  const fixture = await startCa(t);
  const tokenFile = join(fixture.dir, 'istio-token');
  await writeFile(tokenFile, `${TOKENS.sleep}\n`);
  const client = fixture.client({ token: { kind: 'file', path: tokenFile }, clusterId: 'Kubernetes' });
  t.is(leafSan(await client.createCertificate({ csrPem: csrFor(sleep), ttlSeconds: 3600 })), `URI:${formatSpiffeId(sleep)}`);
  await writeFile(tokenFile, TOKENS.httpbin);
  t.is(leafSan(await client.createCertificate({ csrPem: csrFor(httpbin), ttlSeconds: 3600 })), `URI:${formatSpiffeId(httpbin)}`);
  await refusal(t, client.createCertificate({ csrPem: csrFor(sleep), ttlSeconds: 3600 }), status.INVALID_ARGUMENT, /may only request spiffe:\/\/cluster\.local\/ns\/default\/sa\/httpbin/);
  await writeFile(tokenFile, '');
  await refusal(t, client.createCertificate({ csrPem: csrFor(httpbin), ttlSeconds: 3600 }), status.UNAVAILABLE, /token file .* is empty/);
});

test('CertManager with GrpcCaClient gets workload certificates through impersonation, end to end', async (t) => {
  const fixture = await startCa(t, { authorizer: trustZtunnel });
  const manager = new CertManager({ ca: fixture.as(TOKENS.ztunnel), impersonate: true, ttlSeconds: 3600 });
  t.teardown(() => manager.close());
  const cert = await manager.fetch(sleep);
  t.deepEqual(cert.identity, sleep);
  t.deepEqual(cert.rootsPem, [fixture.rootPem]);
  t.is(new X509Certificate(cert.chainPem[0]!).subjectAltName, `URI:${formatSpiffeId(sleep)}`);
  t.true(new X509Certificate(cert.chainPem[0]!).checkPrivateKey(createPrivateKey(cert.privateKeyPem)));
  t.is(cert.notAfter - cert.notBefore, 3600_000);
  const refused = await t.throwsAsync(manager.fetch(kubeSystem), { instanceOf: CaCallError });
  t.is(refused?.code, ErrorCode.IDENTITY_CERT_FETCH_FAILED);
  t.regex(refused?.message ?? '', /PERMISSION_DENIED/);
});

test('the client verifies the server: wrong host name or untrusted root fail the call', async (t) => {
  const fixture = await startCa(t);
  const auth: CallAuthOptions = { token: { kind: 'literal', token: TOKENS.sleep }, clusterId: 'Kubernetes' };
  const direct = (options: GrpcCaClientOptions) => {
    const client = new GrpcCaClient(options);
    t.teardown(() => client.close());
    return client;
  };
  const request = () => ({ csrPem: csrFor(sleep), ttlSeconds: 3600 });
  // localhost is not in the serving certificate; only the alternate name makes it acceptable.
  const mismatch = /Hostname\/IP does not match certificate's altnames: Host: localhost/;
  await refusal(t, direct({ address: `https://localhost:${fixture.port}`, rootCaPem: fixture.rootPem, auth }).createCertificate(request()), status.UNAVAILABLE, mismatch);
  await refusal(t, direct({ address: `localhost:${fixture.port}`, rootCaPem: fixture.rootPem, auth, alternateHostname: 'istiod.other.svc' }).createCertificate(request()), status.UNAVAILABLE, mismatch);
  const otherRoot = CertificateAuthority.generate(TD).rootsPem.join('');
  await refusal(t, direct({ address: `localhost:${fixture.port}`, rootCaPem: otherRoot, auth, alternateHostname: ISTIOD }).createCertificate(request()), status.UNAVAILABLE, /unable to verify|certificate signature failure/);
  const good = direct({ address: `https://localhost:${fixture.port}`, rootCaPem: fixture.rootPem, auth, alternateHostname: ISTIOD });
  t.is(leafSan(await good.createCertificate(request())), `URI:${formatSpiffeId(sleep)}`);
});

test('a plaintext http:// client carries the auth metadata per call', async (t) => {
  const fixture = await startCa(t, { tls: false });
  t.is(leafSan(await fixture.as(TOKENS.sleep).createCertificate({ csrPem: csrFor(sleep), ttlSeconds: 3600 })), `URI:${formatSpiffeId(sleep)}`);
  await refusal(t, fixture.as(undefined).createCertificate({ csrPem: csrFor(sleep), ttlSeconds: 3600 }), status.UNAUTHENTICATED);
  t.throws(() => new GrpcCaClient({ address: `http://127.0.0.1:${fixture.port}`, rootCaPem: fixture.rootPem, auth: { token: { kind: 'none' }, clusterId: 'Kubernetes' } }), { message: /plaintext/ });
});

test('one log line per call with identity, ttl and outcome; never the CSR or the token', async (t) => {
  const log = captureLog();
  const fixture = await startCa(t, { logger: log.logger, authorizer: trustZtunnel });
  const csr = csrFor(sleep);
  await fixture.as(TOKENS.ztunnel).createCertificate({ csrPem: csr, ttlSeconds: 3600, impersonatedIdentity: formatSpiffeId(sleep) });
  await t.throwsAsync(fixture.as(TOKENS.sleep).createCertificate({ csrPem: csrFor(httpbin), ttlSeconds: 600 }));
  await t.throwsAsync(fixture.as('secret-unknown-token').createCertificate({ csrPem: csr, ttlSeconds: 60 }));
  const lines = log.records.filter((r) => r['component'] === 'ca-service');
  t.is(lines.length, 3);
  t.like(lines[0], { level: 'info', outcome: 'issued', caller: formatSpiffeId(ztunnel), identity: formatSpiffeId(sleep), requested: formatSpiffeId(sleep), impersonated: true, ttl: 3600 });
  t.like(lines[1], { level: 'warn', outcome: 'refused', caller: formatSpiffeId(sleep), identity: formatSpiffeId(sleep), ttl: 600, status: 'INVALID_ARGUMENT', code: ErrorCode.IDENTITY_INVALID_CSR });
  t.like(lines[2], { level: 'warn', outcome: 'refused', ttl: 60, status: 'UNAUTHENTICATED' });
  const text = JSON.stringify(log.records);
  for (const secret of [...Object.values(TOKENS), 'secret-unknown-token', 'CERTIFICATE REQUEST', csr.split('\n')[1]!]) t.false(text.includes(secret), `log holds ${secret.slice(0, 20)}`);
});

// ---------------------------------------------------------------------------------------------
// interop: Python grpcio (gRPC core + BoringSSL) as the client

interface PythonResult {
  readonly name: string;
  readonly ok: boolean;
  readonly certChain?: string[];
  readonly status?: string;
  readonly details?: string;
}

function runPython(pythonPath: string, input: object): Promise<PythonResult[]> {
  return new Promise((resolve, reject) => {
    const child = execFile(PYTHON, [join(SCRIPTS, 'ca_client.py')], { env: { ...process.env, PYTHONPATH: pythonPath }, timeout: 60_000 }, (err, stdout, stderr) => {
      if (err) reject(new Error(`ca_client.py failed: ${err.message}\n${stderr}`));
      else resolve(JSON.parse(stdout) as PythonResult[]);
    });
    child.stdin?.end(JSON.stringify(input));
  });
}

test('Python grpcio calls our CA over TLS: issues, impersonates, and refuses with the right statuses', async (t) => {
  if (!canRunPythonGrpc(t)) return;
  const protos = await compilePythonProtos();
  t.teardown(() => protos.cleanup());
  const fixture = await startCa(t, { authorizer: trustZtunnel });
  const results = await runPython(protos.dir, {
    target: `127.0.0.1:${fixture.port}`,
    rootCaPem: fixture.rootPem,
    serverName: ISTIOD,
    calls: [
      { name: 'own', token: TOKENS.sleep, csr: csrFor(sleep), ttl: 3600 },
      { name: 'impersonated', token: TOKENS.ztunnel, csr: csrFor(httpbin), ttl: 3600, impersonatedIdentity: formatSpiffeId(httpbin) },
      { name: 'untrusted', token: TOKENS.sleep, csr: csrFor(httpbin), ttl: 3600, impersonatedIdentity: formatSpiffeId(httpbin) },
      { name: 'no-token', token: null, csr: csrFor(sleep), ttl: 3600 },
      { name: 'bad-csr', token: TOKENS.sleep, csr: 'garbage', ttl: 3600 },
      { name: 'ten-years', token: TOKENS.sleep, csr: csrFor(sleep), ttl: 10 * 365 * 86_400 },
    ],
  });
  const byName = new Map(results.map((r) => [r.name, r]));
  t.true(byName.get('own')?.ok);
  t.is(leafSan(byName.get('own')?.certChain ?? []), `URI:${formatSpiffeId(sleep)}`);
  t.is(leafSan(byName.get('impersonated')?.certChain ?? []), `URI:${formatSpiffeId(httpbin)}`);
  t.like(byName.get('untrusted'), { ok: false, status: 'PERMISSION_DENIED' });
  t.like(byName.get('no-token'), { ok: false, status: 'UNAUTHENTICATED' });
  t.like(byName.get('bad-csr'), { ok: false, status: 'INVALID_ARGUMENT' });
  t.like(byName.get('ten-years'), { ok: false, status: 'INVALID_ARGUMENT' });
  t.regex(byName.get('ten-years')?.details ?? '', /validity_duration/);
});

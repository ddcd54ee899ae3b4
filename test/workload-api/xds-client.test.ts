/**
 * The delta ADS client against a fake ADS server written here with grpc-js (records every request,
 * lets the test push responses), and against a Python grpcio server for interop.
 */
import test, { type ExecutionContext } from 'ava';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Server, ServerCredentials, status as GrpcStatus, type Metadata, type ServerDuplexStream, type ServiceDefinition } from '@grpc/grpc-js';
import { Readiness } from '../../src/core/lifecycle.ts';
import { buildCertificatePem, generateKeyPair, privateKeyPem } from '../../src/identity/x509.ts';
import type { DeltaDiscoveryRequest__Output } from '../../src/workload-api/generated/envoy/service/discovery/v3/DeltaDiscoveryRequest.ts';
import type { DeltaDiscoveryResponse } from '../../src/workload-api/generated/envoy/service/discovery/v3/DeltaDiscoveryResponse.ts';
import type { Resource } from '../../src/workload-api/generated/envoy/service/discovery/v3/Resource.ts';
import type { Address__Output } from '../../src/workload-api/generated/istio/workload/Address.ts';
import type { CallAuthOptions } from '../../src/workload-api/grpc-auth.ts';
import { decodeMessage, encodeMessage, grpcPackageDefinition, TypeUrl } from '../../src/workload-api/proto.ts';
import { isBenignClose, parseXdsAddress, startXdsClient, xdsNode, type XdsClient, type XdsClientOptions, type XdsNackEvent } from '../../src/workload-api/xds-client.ts';
import type { Rejection, XdsHandler, XdsResource } from '../../src/workload-api/xds-types.ts';
import { compilePythonProtos, PYTHON, canRunPythonGrpc } from '../helpers/python-protos.ts';

const ADS_SERVICE = 'envoy.service.discovery.v3.AggregatedDiscoveryService';
/** Only to turn a hang into a readable failure; nothing waits on it to synchronise. */
const WAIT_MS = 15_000;

// ---------------------------------------------------------------------------------------------
// Helpers

/** Resolves with what arrives, in order; `next()` waits when nothing is queued yet. */
class Queue<T> {
  readonly all: T[] = [];
  #read = 0;
  #waiters: Array<(value: T) => void> = [];

  push(value: T): void {
    this.all.push(value);
    const waiter = this.#waiters.shift();
    if (waiter) {
      this.#read += 1;
      waiter(value);
    }
  }

  next(what = 'item'): Promise<T> {
    if (this.#read < this.all.length) return Promise.resolve(this.all[this.#read++] as T);
    return within(new Promise<T>((resolve) => this.#waiters.push(resolve)), what);
  }
}

function within<T>(promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), WAIT_MS);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

interface FakeStream {
  readonly metadata: Metadata;
  readonly requests: Queue<DeltaDiscoveryRequest__Output>;
  /** Resolves when the client cancelled the stream. */
  readonly cancelled: Promise<void>;
  send(response: DeltaDiscoveryResponse): void;
  /** Ends the stream with OK (a benign close). */
  end(): void;
  /** Ends the stream with an error status. */
  fail(code: GrpcStatus, details: string): void;
}

interface ServerTls {
  readonly certPem: string;
  readonly keyPem: string;
  readonly rootPem: string;
}

/** A root and an istiod-like leaf whose only name is the subject CN `istiod.test`. */
function istiodTls(): ServerTls {
  const rootKey = generateKeyPair();
  const rootName = [['2.5.4.10', 'xds-client test root']] as const;
  const notBefore = new Date(Date.now() - 60_000);
  const notAfter = new Date(Date.now() + 3_600_000);
  const rootPem = buildCertificatePem({
    subject: rootName,
    issuer: rootName,
    notBefore,
    notAfter,
    publicKey: rootKey.publicKey,
    signingKey: rootKey.privateKey,
    issuerPublicKey: rootKey.publicKey,
    isCa: true,
  });
  const leafKey = generateKeyPair();
  const certPem = buildCertificatePem({
    subject: [['2.5.4.3', 'istiod.test']],
    issuer: rootName,
    notBefore,
    notAfter,
    publicKey: leafKey.publicKey,
    signingKey: rootKey.privateKey,
    issuerPublicKey: rootKey.publicKey,
    isCa: false,
  });
  return { certPem, keyPem: privateKeyPem(leafKey.privateKey), rootPem };
}

interface FakeAds {
  readonly address: string;
  readonly streams: Queue<FakeStream>;
}

/** A delta ADS server on loopback that records each stream and its requests; shut down on teardown. */
async function fakeAds(t: ExecutionContext, tls?: ServerTls): Promise<FakeAds> {
  const definition = grpcPackageDefinition()[ADS_SERVICE] as unknown as ServiceDefinition;
  const streams = new Queue<FakeStream>();
  const server = new Server();
  server.addService(definition, {
    DeltaAggregatedResources: (call: ServerDuplexStream<DeltaDiscoveryRequest__Output, DeltaDiscoveryResponse>) => {
      const requests = new Queue<DeltaDiscoveryRequest__Output>();
      call.on('error', () => {});
      call.on('data', (request: DeltaDiscoveryRequest__Output) => requests.push(request));
      streams.push({
        metadata: call.metadata,
        requests,
        cancelled: new Promise<void>((resolve) => call.once('cancelled', () => resolve())),
        send: (response) => call.write(response),
        end: () => call.end(),
        fail: (code, details) => call.emit('error', { code, details }),
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(
      '127.0.0.1:0',
      tls ? ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(tls.certPem), private_key: Buffer.from(tls.keyPem) }], false) : ServerCredentials.createInsecure(),
      (err, bound) => (err ? reject(err) : resolve(bound)),
    ),
  );
  t.teardown(() => server.forceShutdown());
  // TLS by name (an IP as TLS server name is deprecated); the certificate does not name localhost.
  return { address: tls ? `https://localhost:${port}` : `http://127.0.0.1:${port}`, streams };
}

async function tokenFile(t: ExecutionContext, token: string): Promise<{ path: string; write(token: string): Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), 'xds-client-'));
  t.teardown(() => rm(dir, { recursive: true, force: true }));
  const path = join(dir, 'istio-token');
  await writeFile(path, token);
  return { path, write: (next) => writeFile(path, next) };
}

/** An Address handler as the store will be: decode, reject an empty uid, keep the rest. */
class AddressHandler implements XdsHandler {
  readonly typeUrl = TypeUrl.address;
  readonly workloads = new Map<string, { uid: string; version: string }>();
  readonly calls: Array<{ names: string[]; removed: string[] }> = [];
  throwNext: string | undefined;

  handle(resources: readonly XdsResource[], removed: readonly string[]): readonly Rejection[] {
    this.calls.push({ names: resources.map((r) => r.name), removed: [...removed] });
    if (this.throwNext) {
      const message = this.throwNext;
      this.throwNext = undefined;
      throw new Error(message);
    }
    const rejections: Rejection[] = [];
    for (const resource of resources) {
      const address = decodeMessage<Address__Output>('istio.workload.Address', resource.value);
      const uid = address.workload?.uid ?? '';
      if (!uid) rejections.push({ name: resource.name, reason: 'workload.uid: must not be empty' });
      else this.workloads.set(resource.name, { uid, version: resource.version });
    }
    for (const name of removed) this.workloads.delete(name);
    return rejections;
  }
}

class AuthorizationHandler implements XdsHandler {
  readonly typeUrl = TypeUrl.authorization;
  readonly names = new Set<string>();

  handle(resources: readonly XdsResource[], removed: readonly string[]): readonly Rejection[] {
    for (const r of resources) this.names.add(r.name);
    for (const name of removed) this.names.delete(name);
    return [];
  }
}

function addressResource(name: string, uid: string, version: string, typeUrl: string = TypeUrl.address): Resource {
  return { name, version, resource: { type_url: typeUrl, value: encodeMessage('istio.workload.Address', { workload: { uid, name, namespace: 'default' } }) } };
}

const NODE = xdsNode({ podName: 'ztunnel-abc', podNamespace: 'istio-system', instanceIp: '10.0.0.7', nodeName: 'node-1', env: { ISTIO_META_CLUSTER_ID: 'Kubernetes' } });

interface Running {
  readonly client: XdsClient;
  readonly addresses: AddressHandler;
  readonly authorizations: AuthorizationHandler;
}

function startClient(t: ExecutionContext, ads: FakeAds, auth: CallAuthOptions, extra: Partial<XdsClientOptions> = {}): Running {
  const addresses = new AddressHandler();
  const authorizations = new AuthorizationHandler();
  const client = startXdsClient({ address: ads.address, auth, node: NODE, handlers: [addresses, authorizations], ...extra });
  t.teardown(() => client.close());
  return { client, addresses, authorizations };
}

const literalAuth: CallAuthOptions = { token: { kind: 'literal', token: 'test-token' }, clusterId: 'Kubernetes' };

/** Opens a stream and consumes its two initial requests. */
async function initialStream(ads: FakeAds): Promise<{ stream: FakeStream; initial: DeltaDiscoveryRequest__Output[] }> {
  const stream = await ads.streams.next('a stream');
  const initial = [await stream.requests.next('initial Address request'), await stream.requests.next('initial Authorization request')];
  return { stream, initial };
}

/** Answers the initial Authorization request with an empty response and consumes its ACK. */
async function syncAuthorization(stream: FakeStream, nonce = 'authz-0'): Promise<void> {
  stream.send({ typeUrl: TypeUrl.authorization, nonce, resources: [] });
  const ack = await stream.requests.next('Authorization ACK');
  if (ack.responseNonce !== nonce || ack.errorDetail) throw new Error(`expected ACK of ${nonce}, got ${JSON.stringify(ack)}`);
}

// ---------------------------------------------------------------------------------------------
// Pure parts

test('xdsNode builds ztunnel node id and metadata from the passed-in environment', (t) => {
  const node = xdsNode({
    podName: 'ztunnel-x',
    podNamespace: 'istio-system',
    nodeName: 'worker-1',
    env: { ISTIO_META_DNS_CAPTURE: 'true', ISTIO_METAJSON_LABELS: '{"a":"b","n":2}', OTHER: 'ignored', ISTIO_META_NAME: 'override' },
  });
  t.is(node.id, 'ztunnel~1.1.1.1~ztunnel-x.istio-system~istio-system.svc.cluster.local');
  t.deepEqual(node.metadata, { NAME: 'override', NAMESPACE: 'istio-system', INSTANCE_IPS: '1.1.1.1', NODE_NAME: 'worker-1', DNS_CAPTURE: 'true', LABELS: { a: 'b', n: 2 } });
  t.is(xdsNode({ podName: 'p', podNamespace: 'n', instanceIp: '10.1.2.3' }).id, 'ztunnel~10.1.2.3~p.n~n.svc.cluster.local');
  const err = t.throws(() => xdsNode({ env: { ISTIO_METAJSON_BAD: '{nope' } }));
  t.regex(err.message, /ISTIO_METAJSON_BAD/);
});

test('addresses and benign closes are read as ztunnel does', (t) => {
  t.deepEqual(parseXdsAddress('istiod.istio-system.svc:15012'), { target: 'istiod.istio-system.svc:15012', host: 'istiod.istio-system.svc', secure: true });
  t.deepEqual(parseXdsAddress('http://127.0.0.1:9000'), { target: '127.0.0.1:9000', host: '127.0.0.1', secure: false });
  t.deepEqual(parseXdsAddress('https://[::1]:15012'), { target: '[::1]:15012', host: '::1', secure: true });
  t.throws(() => parseXdsAddress('ftp://x:1'));
  t.true(isBenignClose({ code: GrpcStatus.OK, details: '' }));
  t.true(isBenignClose({ code: GrpcStatus.CANCELLED, details: '' }));
  t.true(isBenignClose({ code: GrpcStatus.UNAVAILABLE, details: 'transport is closing' }));
  t.false(isBenignClose({ code: GrpcStatus.UNAVAILABLE, details: 'No connection established' }));
  t.false(isBenignClose({ code: GrpcStatus.PERMISSION_DENIED, details: 'no' }));
});

// ---------------------------------------------------------------------------------------------
// Against the fake server

test('initial requests: node, wildcard, types in order, auth metadata; the token is re-read per stream', async (t) => {
  const ads = await fakeAds(t);
  const token = await tokenFile(t, 'token-one\n');
  const auth: CallAuthOptions = { token: { kind: 'file', path: token.path }, clusterId: 'cluster-7', headers: { 'X-Extra-Header': 'extra' } };
  const { client } = startClient(t, ads, auth);

  const first = await initialStream(ads);
  t.deepEqual(first.stream.metadata.get('authorization'), ['Bearer token-one']);
  t.deepEqual(first.stream.metadata.get('clusterid'), ['cluster-7']);
  t.deepEqual(first.stream.metadata.get('x-extra-header'), ['extra']);
  t.deepEqual(
    first.initial.map((r) => r.typeUrl),
    [TypeUrl.address, TypeUrl.authorization],
  );
  for (const request of first.initial) {
    t.is(request.node?.id, 'ztunnel~10.0.0.7~ztunnel-abc.istio-system~istio-system.svc.cluster.local');
    const fields = request.node?.metadata?.fields ?? {};
    t.is(fields['NAME']?.stringValue, 'ztunnel-abc');
    t.is(fields['NAMESPACE']?.stringValue, 'istio-system');
    t.is(fields['INSTANCE_IPS']?.stringValue, '10.0.0.7');
    t.is(fields['NODE_NAME']?.stringValue, 'node-1');
    t.is(fields['CLUSTER_ID']?.stringValue, 'Kubernetes');
    t.deepEqual(request.resourceNamesSubscribe, []);
    t.deepEqual(request.resourceNamesUnsubscribe, []);
    t.deepEqual(request.initialResourceVersions, {});
    t.is(request.responseNonce, '');
    t.is(request.errorDetail, null);
  }

  await token.write('token-two');
  const disconnected = once(client, 'disconnected');
  first.stream.end();
  const [ended] = (await disconnected) as [{ benign: boolean; retryInMs: number }];
  t.true(ended.benign);
  t.is(ended.retryInMs, 10);
  const second = await initialStream(ads);
  t.deepEqual(second.stream.metadata.get('authorization'), ['Bearer token-two']);
  t.truthy(second.initial[0]?.node?.id);
  t.is(client.stats().reconnects, 1);
});

test('a good response is ACKed without node; synced and readiness follow once every type is answered', async (t) => {
  const ads = await fakeAds(t);
  const readiness = new Readiness();
  const { client, addresses } = startClient(t, ads, literalAuth, { readiness });
  const { stream } = await initialStream(ads);
  t.deepEqual(readiness.report().pending, ['xds']);

  const acked = once(client, 'ack');
  stream.send({ typeUrl: TypeUrl.address, nonce: 'n-1', systemVersionInfo: 'v', resources: [addressResource('w1', 'Kubernetes//Pod/default/w1', 'v1')] });
  const ack = await stream.requests.next('ACK');
  t.deepEqual(await acked, [{ typeUrl: TypeUrl.address, nonce: 'n-1' }]);
  t.is(ack.typeUrl, TypeUrl.address);
  t.is(ack.responseNonce, 'n-1');
  t.is(ack.errorDetail, null);
  t.is(ack.node, null);
  t.deepEqual(ack.initialResourceVersions, {});
  t.deepEqual(addresses.workloads.get('w1'), { uid: 'Kubernetes//Pod/default/w1', version: 'v1' });
  t.false(readiness.report().ready, 'one type is still unanswered');

  await syncAuthorization(stream);
  await within(client.synced, 'synced');
  t.true(readiness.report().ready);
  t.like(client.stats(), { acks: 2, nacks: 0, connected: true });
});

test('partial NACK names the bad resource; the good one applies; removals reach the handler; reconnect lists only accepted versions', async (t) => {
  const ads = await fakeAds(t);
  const { client, addresses } = startClient(t, ads, literalAuth);
  const { stream } = await initialStream(ads);

  stream.send({ typeUrl: TypeUrl.address, nonce: 'n-1', resources: [addressResource('old', 'uid-old', 'v1'), addressResource('keep', 'uid-keep', 'v3')] });
  t.is((await stream.requests.next('ACK n-1')).errorDetail, null);

  const nacked = once(client, 'nack');
  stream.send({ typeUrl: TypeUrl.address, nonce: 'n-2', resources: [addressResource('bad', '', 'v1'), addressResource('good', 'uid-good', 'v2')] });
  const nack = await stream.requests.next('NACK n-2');
  t.is(nack.typeUrl, TypeUrl.address);
  t.is(nack.responseNonce, 'n-2');
  t.is(nack.errorDetail?.message, 'bad: workload.uid: must not be empty');
  t.is(nack.errorDetail?.code, 0);
  const [event] = (await nacked) as [XdsNackEvent];
  t.is(event.message, 'bad: workload.uid: must not be empty');
  t.true(addresses.workloads.has('good'));
  t.false(addresses.workloads.has('bad'));

  stream.send({ typeUrl: TypeUrl.address, nonce: 'n-3', resources: [], removedResources: ['old'] });
  t.is((await stream.requests.next('ACK n-3')).errorDetail, null);
  t.deepEqual(addresses.calls.at(-1), { names: [], removed: ['old'] });
  t.false(addresses.workloads.has('old'));
  await syncAuthorization(stream);

  stream.end();
  const again = await initialStream(ads);
  t.deepEqual(again.initial[0]?.initialResourceVersions, { keep: 'v3', good: 'v2' });
  t.deepEqual(again.initial[1]?.initialResourceVersions, {});
  t.like(client.stats(), { acks: 3, nacks: 1, reconnects: 1 });
});

test('a resource whose Any type differs from the response type is rejected without reaching the handler', async (t) => {
  const ads = await fakeAds(t);
  const { addresses } = startClient(t, ads, literalAuth);
  const { stream } = await initialStream(ads);
  const missing: Resource = { name: 'no-any', version: 'v1' };
  stream.send({
    typeUrl: TypeUrl.address,
    nonce: 'n-1',
    resources: [addressResource('wrong', 'uid-wrong', 'v1', TypeUrl.authorization), missing, addressResource('fine', 'uid-fine', 'v1')],
  });
  const nack = await stream.requests.next('NACK');
  t.regex(nack.errorDetail?.message ?? '', /^wrong: .*istio\.security\.Authorization.*; no-any: .*type_url/);
  t.notRegex(nack.errorDetail?.message ?? '', /fine/);
  t.deepEqual(addresses.calls, [{ names: ['fine'], removed: [] }]);
  t.true(addresses.workloads.has('fine'));
});

test('a throwing handler NACKs the whole response and the client keeps going', async (t) => {
  const ads = await fakeAds(t);
  const { client, addresses } = startClient(t, ads, literalAuth);
  const { stream } = await initialStream(ads);
  addresses.throwNext = 'store exploded';
  stream.send({ typeUrl: TypeUrl.address, nonce: 'n-1', resources: [addressResource('w', 'uid-w', 'v1')] });
  const nack = await stream.requests.next('NACK');
  t.is(nack.responseNonce, 'n-1');
  t.regex(nack.errorDetail?.message ?? '', /store exploded/);

  stream.send({ typeUrl: TypeUrl.address, nonce: 'n-2', resources: [addressResource('w', 'uid-w', 'v2')] });
  const ack = await stream.requests.next('ACK');
  t.is(ack.responseNonce, 'n-2');
  t.is(ack.errorDetail, null);
  await syncAuthorization(stream);

  // The failed apply recorded no version; the accepted one did.
  stream.end();
  const again = await initialStream(ads);
  t.deepEqual(again.initial[0]?.initialResourceVersions, { w: 'v2' });
  t.like(client.stats(), { nacks: 1, acks: 2 });
});

test('a response of an unknown type is ACKed', async (t) => {
  const ads = await fakeAds(t);
  startClient(t, ads, literalAuth);
  const { stream } = await initialStream(ads);
  stream.send({ typeUrl: 'type.googleapis.com/envoy.config.cluster.v3.Cluster', nonce: 'c-1', resources: [] });
  const ack = await stream.requests.next('ACK');
  t.is(ack.typeUrl, 'type.googleapis.com/envoy.config.cluster.v3.Cluster');
  t.is(ack.responseNonce, 'c-1');
  t.is(ack.errorDetail, null);
});

test('with nothing listening, attempts are retried with a growing, capped delay', async (t) => {
  const ads = await fakeAds(t);
  // A port with nothing listening: every attempt fails with UNAVAILABLE (not benign).
  const probe = await fakeAdsPortClosed();
  const { client } = startClient(t, { ...ads, address: probe }, literalAuth, { backoff: { initialMs: 1, maxMs: 4 } });
  const delays: number[] = [];
  for (let i = 0; i < 4; i++) {
    const [event] = (await within(once(client, 'disconnected'), 'a failed attempt')) as [{ benign: boolean; retryInMs: number }];
    t.false(event.benign);
    delays.push(event.retryInMs);
  }
  t.deepEqual(delays, [1, 2, 4, 4]);
  t.false(client.stats().connected);
});

test('a non-benign stream error doubles the delay; a response resets it', async (t) => {
  const ads = await fakeAds(t);
  const { client } = startClient(t, ads, literalAuth, { backoff: { initialMs: 1, maxMs: 64 } });
  const failOnce = async (): Promise<number> => {
    const stream = await ads.streams.next('a stream');
    const disconnected = once(client, 'disconnected');
    stream.fail(GrpcStatus.PERMISSION_DENIED, 'token rejected');
    const [event] = (await within(disconnected, 'disconnected')) as [{ benign: boolean; retryInMs: number; code: number }];
    t.false(event.benign);
    t.is(event.code, GrpcStatus.PERMISSION_DENIED);
    return event.retryInMs;
  };
  t.deepEqual([await failOnce(), await failOnce(), await failOnce()], [1, 2, 4]);

  const { stream } = await initialStream(ads);
  stream.send({ typeUrl: TypeUrl.address, nonce: 'n-1', resources: [] });
  await stream.requests.next('ACK');
  const disconnected = once(client, 'disconnected');
  stream.fail(GrpcStatus.PERMISSION_DENIED, 'token rejected');
  const [event] = (await within(disconnected, 'disconnected')) as [{ retryInMs: number }];
  t.is(event.retryInMs, 1, 'reset by the response');
});

/** An address on loopback where nothing listens (bound, then released). */
async function fakeAdsPortClosed(): Promise<string> {
  const server = new Server();
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  server.forceShutdown();
  return `http://127.0.0.1:${port}`;
}

test('close() cancels the stream and stops reconnecting; synced rejects if it never synced', async (t) => {
  const ads = await fakeAds(t);
  const { client } = startClient(t, ads, literalAuth, { backoff: { initialMs: 1, maxMs: 1 } });
  const first = await initialStream(ads);
  first.stream.end();
  const second = await initialStream(ads);
  t.is(client.stats().reconnects, 1);

  const closing = client.close();
  t.is(client.close(), closing, 'close is idempotent');
  await closing;
  await within(second.stream.cancelled, 'the stream cancelled');
  await t.throwsAsync(client.synced, { message: /closed before it synced/ });
  t.false(client.stats().connected);

  // A second client runs a full exchange (far longer than the 1 ms backoff): the first never came back.
  const other = startXdsClient({ address: ads.address, auth: literalAuth, node: { id: 'other', metadata: {} }, handlers: [new AuthorizationHandler()] });
  t.teardown(() => other.close());
  const third = await ads.streams.next('the other client stream');
  t.is((await third.requests.next('other initial')).node?.id, 'other');
  await syncAuthorization(third);
  await within(other.synced, 'other synced');
  t.is(ads.streams.all.length, 3);
  t.is(client.stats().reconnects, 1);
});

test('over TLS: the server is verified against the root and the alternate name; auth goes as call credentials', async (t) => {
  const tls = istiodTls();
  const ads = await fakeAds(t, tls);
  const auth: CallAuthOptions = { token: { kind: 'literal', token: 'tls-token' }, clusterId: 'Kubernetes' };

  // localhost is not in the certificate: refused without the alternate name.
  const refused = startClient(t, ads, auth, { rootCaPem: tls.rootPem });
  const [failure] = (await within(once(refused.client, 'disconnected'), 'a refused handshake')) as [{ benign: boolean; details: string }];
  t.false(failure.benign);
  t.regex(failure.details, /does not match|altnames|certificate/i);
  await refused.client.close();

  const { client } = startClient(t, ads, auth, { rootCaPem: tls.rootPem, alternateHostname: 'istiod.test' });
  const { stream, initial } = await initialStream(ads);
  t.deepEqual(stream.metadata.get('authorization'), ['Bearer tls-token']);
  t.deepEqual(stream.metadata.get('clusterid'), ['Kubernetes']);
  t.is(initial[0]?.node?.id, NODE.id);
  stream.send({ typeUrl: TypeUrl.address, nonce: 'n-1', resources: [] });
  t.is((await stream.requests.next('ACK')).responseNonce, 'n-1');
  await syncAuthorization(stream);
  await within(client.synced, 'synced over TLS');
  t.is(ads.streams.all.length, 1, 'the refused client never got a stream');
});

// ---------------------------------------------------------------------------------------------
// Python grpcio interop

const SCRIPT = join(fileURLToPath(new URL('../../../test/interop/', import.meta.url)), 'ads_server.py');

interface PyLine {
  readonly event?: string;
  readonly port?: number;
  readonly typeUrl?: string;
  readonly nonce?: string;
  readonly errorDetail?: string | null;
  readonly nodeId?: string;
  readonly hasNode?: boolean;
  readonly metadata?: Record<string, unknown>;
  readonly detail?: string;
}

test('interop: Python grpcio ADS server gets a partial NACK naming the bad workload', async (t) => {
  if (!canRunPythonGrpc(t)) return;
  if (!existsSync(SCRIPT)) throw new Error(`interop script not found: ${SCRIPT}`);
  const protos = await compilePythonProtos();
  t.teardown(() => protos.cleanup());
  const child = spawn(PYTHON, [SCRIPT], { env: { ...process.env, PYTHONPATH: protos.dir, PYTHONUNBUFFERED: '1' }, stdio: ['pipe', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const exited = once(child, 'exit');
  t.teardown(async () => {
    child.stdin.end();
    if (child.exitCode === null && child.signalCode === null) {
      const killer = setTimeout(() => child.kill('SIGKILL'), 5_000);
      await exited;
      clearTimeout(killer);
    }
  });
  const lines = new Queue<PyLine>();
  createInterface({ input: child.stdout }).on('line', (line) => lines.push(JSON.parse(line) as PyLine));
  child.on('exit', (code) => lines.push({ event: 'exit', detail: `code ${code}: ${stderr}` }));

  const ready = await lines.next('the Python server port');
  if (typeof ready.port !== 'number') throw new Error(`Python server did not start: ${JSON.stringify(ready)} ${stderr}`);
  const addresses = new AddressHandler();
  const client = startXdsClient({
    address: `http://127.0.0.1:${ready.port}`,
    auth: literalAuth,
    node: NODE,
    handlers: [addresses, new AuthorizationHandler()],
  });
  t.teardown(() => client.close());

  const seen: PyLine[] = [];
  let answer: PyLine | undefined;
  while (!answer) {
    const line = await lines.next('the Address NACK at the Python server');
    if (line.event === 'exit') throw new Error(`Python server exited: ${line.detail}`);
    seen.push(line);
    if (line.event === 'request' && line.nonce === 'addr-1') answer = line;
  }
  await within(client.synced, 'synced against Python');

  const stream = seen.find((l) => l.event === 'stream');
  t.is(stream?.metadata?.['authorization'], 'Bearer test-token');
  t.is(stream?.metadata?.['clusterid'], 'Kubernetes');
  const initial = seen.filter((l) => l.event === 'request' && !l.nonce);
  t.deepEqual(
    initial.map((l) => l.typeUrl),
    [TypeUrl.address, TypeUrl.authorization],
  );
  t.true(initial.every((l) => l.hasNode && l.nodeId === NODE.id));
  t.like(initial[0]?.metadata, { NAME: 'ztunnel-abc', INSTANCE_IPS: '10.0.0.7' });
  t.is(answer.typeUrl, TypeUrl.address);
  t.is(answer.hasNode, false);
  t.is(answer.errorDetail, 'bad: workload.uid: must not be empty');
  t.deepEqual(addresses.workloads.get('good'), { uid: 'Kubernetes//Pod/default/good', version: 'v1' });
  t.false(addresses.workloads.has('bad'));
});

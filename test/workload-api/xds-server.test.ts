/**
 * The delta ADS server over a ResourceSnapshot, driven by raw grpc-js clients on loopback (and one
 * Python grpcio client): initial sync, pushes of changes only, removals, reconnect with
 * initial_resource_versions, ACK/NACK accounting, explicit and on-demand names, 100 clients,
 * backpressure, garbage, TLS.
 */
import test, { type ExecutionContext } from 'ava';
import { Client, credentials, type ChannelOptions, status as GrpcStatus, type ClientDuplexStream, type MethodDefinition, type ServiceDefinition, type StatusObject } from '@grpc/grpc-js';
import { spawn } from 'node:child_process';
import { EventEmitter, once } from 'node:events';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { startGrpcServer, type GrpcServerHandle } from '../../src/workload-api/grpc-server.ts';
import type { DeltaDiscoveryRequest } from '../../src/workload-api/generated/envoy/service/discovery/v3/DeltaDiscoveryRequest.ts';
import type { DeltaDiscoveryResponse__Output } from '../../src/workload-api/generated/envoy/service/discovery/v3/DeltaDiscoveryResponse.ts';
import type { Address__Output } from '../../src/workload-api/generated/istio/workload/Address.ts';
import { decodeMessage, encodeMessage, grpcPackageDefinition, TypeUrl } from '../../src/workload-api/proto.ts';
import { contentVersion, ResourceSnapshot, type SnapshotChange } from '../../src/workload-api/snapshot.ts';
import { xdsService, type XdsAckEvent, type XdsNackEvent, type XdsServerOptions, type XdsService } from '../../src/workload-api/xds-server.ts';
import { captureLog } from '../helpers/log.ts';
import { testPki } from '../helpers/pki.ts';
import { compilePythonProtos, PYTHON, canRunPythonGrpc } from '../helpers/python-protos.ts';

type Request = DeltaDiscoveryRequest;
type Response = DeltaDiscoveryResponse__Output;

const ADDRESS = TypeUrl.address;
const RESPONSE_TIMEOUT_MS = 15_000;
const SCRIPT = join(fileURLToPath(new URL('../../../test/interop/', import.meta.url)), 'ads_client.py');

// ---------------------------------------------------------------------------------------------
// Resources

function uid(i: number): string {
  return `Kubernetes//Pod/default/pod-${i}`;
}

function workload(i: number, extra: { node?: string } = {}): Buffer {
  return encodeMessage('istio.workload.Address', {
    workload: { uid: uid(i), name: `pod-${i}`, namespace: 'default', addresses: [Buffer.from([10, 0, 0, i])], node: extra.node ?? 'node-a' },
  });
}

function service(hostname: string, ip: readonly number[]): Buffer {
  return encodeMessage('istio.workload.Address', {
    service: { name: hostname.split('.')[0] ?? hostname, namespace: 'default', hostname, addresses: [{ network: '', address: Buffer.from(ip) }] },
  });
}

function decodeAddress(value: Buffer): Address__Output {
  return decodeMessage<Address__Output>('istio.workload.Address', value);
}

function names(response: Response): string[] {
  return response.resources.map((r) => r.name).sort();
}

// ---------------------------------------------------------------------------------------------
// Server harness

interface Harness {
  readonly snapshot: ResourceSnapshot;
  readonly xds: XdsService;
  readonly server: GrpcServerHandle;
  readonly target: string;
  /** ACK / NACK events from the server's callbacks. */
  readonly events: EventEmitter<{ ack: [XdsAckEvent]; nack: [XdsNackEvent] }>;
  /** Resolves when the server has processed the ACK of `nonce`. */
  acked(nonce: string): Promise<XdsAckEvent>;
  nacked(nonce: string): Promise<XdsNackEvent>;
}

async function startXds(t: ExecutionContext, options: Partial<XdsServerOptions> & { tls?: { certChainPem: string; privateKeyPem: string } } = {}): Promise<Harness> {
  const snapshot = options.snapshot ?? new ResourceSnapshot();
  const events = new EventEmitter<{ ack: [XdsAckEvent]; nack: [XdsNackEvent] }>();
  events.setMaxListeners(0);
  const { tls, ...rest } = options;
  const xds = xdsService({ ...rest, snapshot, onAck: (e) => events.emit('ack', e), onNack: (e) => events.emit('nack', e) });
  const server = await startGrpcServer({ host: '127.0.0.1', port: 0, services: [xds], drainMs: 2_000, ...(tls ? { tls } : {}) });
  t.teardown(async () => {
    await xds.close();
    await server.close();
  });
  const acked = (nonce: string) =>
    new Promise<XdsAckEvent>((resolve) => {
      const listener = (e: XdsAckEvent) => {
        if (e.nonce !== nonce) return;
        events.off('ack', listener);
        resolve(e);
      };
      events.on('ack', listener);
    });
  const nacked = (nonce: string) =>
    new Promise<XdsNackEvent>((resolve) => {
      const listener = (e: XdsNackEvent) => {
        if (e.nonce !== nonce) return;
        events.off('nack', listener);
        resolve(e);
      };
      events.on('nack', listener);
    });
  return {
    snapshot,
    xds,
    server,
    target: `127.0.0.1:${server.address().port}`,
    events,
    acked,
    nacked,
  };
}

// ---------------------------------------------------------------------------------------------
// A raw delta-ADS client: one stream, responses queued in order.

const method = (grpcPackageDefinition()['envoy.service.discovery.v3.AggregatedDiscoveryService'] as unknown as ServiceDefinition)[
  'DeltaAggregatedResources'
] as MethodDefinition<Request, Response>;

class AdsStream {
  readonly call: ClientDuplexStream<Request, Response>;
  readonly status: Promise<StatusObject>;
  readonly received: Response[] = [];
  #next = 0;
  #waiter: (() => void) | undefined;
  #error: Error | undefined;

  constructor(client: Client) {
    this.call = client.makeBidiStreamRequest(method.path, method.requestSerialize, method.responseDeserialize);
    this.status = new Promise((resolve) => this.call.on('status', resolve));
    this.call.on('data', (r: Response) => {
      this.received.push(r);
      this.#waiter?.();
    });
    this.call.on('error', (err: Error) => {
      this.#error = err;
      this.#waiter?.();
    });
  }

  send(request: Request): void {
    this.call.write(request);
  }

  /** The next response not yet returned (fails on a stream error, or after a safety timeout). */
  async next(): Promise<Response> {
    const deadline = Date.now() + RESPONSE_TIMEOUT_MS;
    while (this.#next >= this.received.length) {
      if (this.#error) throw this.#error;
      if (Date.now() > deadline) throw new Error('no xDS response in time');
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, RESPONSE_TIMEOUT_MS).unref();
        this.#waiter = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#waiter = undefined;
    }
    return this.received[this.#next++] as Response;
  }

  ack(response: Response): void {
    this.send({ typeUrl: response.typeUrl, responseNonce: response.nonce });
  }

  nack(response: Response, message: string): void {
    this.send({ typeUrl: response.typeUrl, responseNonce: response.nonce, errorDetail: { code: 0, message } });
  }
}

/** A client (own connection) whose streams are cancelled and channel closed on teardown. */
function adsClient(t: ExecutionContext, h: Harness, creds = credentials.createInsecure(), options: ChannelOptions = {}): { open(initial?: Request): AdsStream; client: Client } {
  const client = new Client(h.target, creds, { 'grpc.use_local_subchannel_pool': 1, 'grpc.max_receive_message_length': 256 * 1024 * 1024, ...options });
  const streams: AdsStream[] = [];
  t.teardown(() => {
    for (const s of streams) s.call.cancel();
    client.close();
  });
  return {
    client,
    open(initial) {
      const stream = new AdsStream(client);
      streams.push(stream);
      if (initial) stream.send(initial);
      return stream;
    },
  };
}

function wildcard(typeUrl: string = ADDRESS, initialResourceVersions: Record<string, string> = {}): Request {
  return { node: { id: 'sidecar~10.0.0.1~ztunnel.istio-system~istio-system.svc.cluster.local' }, typeUrl, initialResourceVersions };
}

/** Sets N workloads in one batch. */
function seed(snapshot: ResourceSnapshot, n: number): void {
  snapshot.update(() => {
    for (let i = 1; i <= n; i++) snapshot.set(ADDRESS, uid(i), workload(i));
  });
}

/**
 * Proves nothing else was pushed: changes a sentinel resource and returns the next response, which
 * must be exactly the sentinel (responses are ordered, so an unwanted push would come first).
 */
async function barrier(t: ExecutionContext, h: Harness, stream: AdsStream, round: number): Promise<void> {
  const name = `barrier-${round}`;
  h.snapshot.set(ADDRESS, name, workload(200 + round));
  const response = await stream.next();
  t.deepEqual(names(response), [name], 'only the barrier resource was pushed');
  t.deepEqual(response.removedResources, []);
  stream.ack(response);
  await h.acked(response.nonce);
}

/** Bounded wait (event-loop turns, no timers) for a condition the server reaches asynchronously. */
async function eventually(condition: () => boolean, turns = 2_000): Promise<boolean> {
  for (let i = 0; i < turns && !condition(); i++) await new Promise((resolve) => setImmediate(resolve));
  return condition();
}

// ---------------------------------------------------------------------------------------------
// ResourceSnapshot (pure)

test('snapshot: content versions, no-op sets, one change event per batch, replaceAll diff', (t) => {
  const snapshot = new ResourceSnapshot();
  const changes: SnapshotChange[] = [];
  snapshot.on('change', (c) => changes.push(c));

  t.true(snapshot.set(ADDRESS, 'a', workload(1)));
  t.is(snapshot.entry(ADDRESS, 'a')?.version, contentVersion(workload(1)));
  t.regex(snapshot.entry(ADDRESS, 'a')?.version ?? '', /^[0-9a-f]{16}$/);
  t.false(snapshot.set(ADDRESS, 'a', workload(1)), 'same bytes: unchanged, same version');
  t.is(changes.length, 1);
  t.is(snapshot.version, 1);

  snapshot.update(() => {
    snapshot.set(ADDRESS, 'b', workload(2));
    snapshot.set(ADDRESS, 'c', workload(3));
    snapshot.set(TypeUrl.authorization, 'p', Buffer.from([8, 1]));
    snapshot.delete(ADDRESS, 'a');
  });
  t.is(changes.length, 3, 'one event per type URL');
  t.deepEqual(changes.slice(1).map((c) => [c.typeUrl, [...c.names].sort(), c.version]), [
    [ADDRESS, ['a', 'b', 'c'], 2],
    [TypeUrl.authorization, ['p'], 2],
  ]);

  const changed = snapshot.replaceAll(ADDRESS, [
    ['b', workload(2)], // unchanged
    ['c', workload(33)], // changed
    ['d', workload(4)], // new
  ]);
  t.deepEqual([...changed].sort(), ['c', 'd']);
  t.deepEqual([...snapshot.get(ADDRESS).keys()].sort(), ['b', 'c', 'd']);
  t.is(changes.length, 4);
  t.deepEqual([...(changes[3]?.names ?? [])].sort(), ['c', 'd']);

  t.deepEqual([...snapshot.replaceAll(ADDRESS, [['d', workload(4)]])].sort(), ['b', 'c'], 'absent names are deleted');
  t.false(snapshot.delete(ADDRESS, 'zzz'));
  t.is(snapshot.get('type.googleapis.com/unknown').size, 0);
  t.is(changes.length, 5);

  // The snapshot owns its bytes.
  const bytes = workload(9);
  snapshot.set(ADDRESS, 'owned', bytes);
  bytes.fill(0);
  t.deepEqual(snapshot.entry(ADDRESS, 'owned')?.value, workload(9));
});

// ---------------------------------------------------------------------------------------------
// The server

test('wildcard initial sync sends every resource; an empty type still gets a (empty) response', async (t) => {
  const h = await startXds(t);
  seed(h.snapshot, 5);
  h.snapshot.set(ADDRESS, 'default/echo.default.svc.cluster.local', service('echo.default.svc.cluster.local', [10, 96, 0, 10]));
  const stream = adsClient(t, h).open(wildcard());
  stream.send(wildcard(TypeUrl.authorization));

  const first = await stream.next();
  t.is(first.typeUrl, ADDRESS);
  t.truthy(first.nonce);
  t.is(first.systemVersionInfo, String(h.snapshot.version));
  t.deepEqual(names(first), [...[1, 2, 3, 4, 5].map(uid), 'default/echo.default.svc.cluster.local'].sort());
  t.deepEqual(first.removedResources, []);
  for (const r of first.resources) {
    t.is(r.resource?.type_url, ADDRESS, 'Any.type_url is the type URL');
    t.is(r.version, h.snapshot.entry(ADDRESS, r.name)?.version ?? '(missing)');
    const address = decodeAddress(r.resource?.value ?? Buffer.alloc(0));
    if (address.workload) {
      t.is(address.workload.uid, r.name);
      t.is(address.workload.addresses[0]?.[0], 10);
    } else {
      t.is(address.service?.hostname, 'echo.default.svc.cluster.local');
    }
  }
  stream.ack(first);

  const second = await stream.next();
  t.is(second.typeUrl, TypeUrl.authorization);
  t.deepEqual(second.resources, []);
  t.not(second.nonce, first.nonce);
  stream.ack(second);
  await h.acked(second.nonce);
  t.like(h.xds.stats(), { streams: 1, acks: 2, nacks: 0, pushes: 2 });
});

test('after an ACK a change pushes only that resource; a deletion pushes removedResources; a bulk replace is one push', async (t) => {
  const h = await startXds(t);
  seed(h.snapshot, 4);
  const stream = adsClient(t, h).open(wildcard());
  const initial = await stream.next();
  t.is(initial.resources.length, 4);
  stream.ack(initial);
  await h.acked(initial.nonce);

  h.snapshot.set(ADDRESS, uid(2), workload(2, { node: 'node-b' }));
  const changed = await stream.next();
  t.deepEqual(names(changed), [uid(2)]);
  t.is(decodeAddress(changed.resources[0]?.resource?.value ?? Buffer.alloc(0)).workload?.node, 'node-b');
  t.deepEqual(changed.removedResources, []);
  stream.ack(changed);

  h.snapshot.delete(ADDRESS, uid(3));
  const removed = await stream.next();
  t.deepEqual(removed.resources, []);
  t.deepEqual(removed.removedResources, [uid(3)]);
  stream.ack(removed);

  // Setting identical bytes is not a change: nothing is pushed before the barrier.
  h.snapshot.set(ADDRESS, uid(1), workload(1));
  await barrier(t, h, stream, 1);

  // One bulk replace → one response with all of it.
  h.snapshot.replaceAll(ADDRESS, [
    [uid(1), workload(1, { node: 'node-c' })],
    [uid(2), workload(2, { node: 'node-b' })],
    [uid(5), workload(5)],
  ]);
  const bulk = await stream.next();
  t.deepEqual(names(bulk), [uid(1), uid(5)]);
  t.deepEqual([...bulk.removedResources].sort(), [uid(4), 'barrier-1'].sort());
  stream.ack(bulk);
  await h.acked(bulk.nonce);
  await barrier(t, h, stream, 2);
  t.like(h.xds.stats(), { nacks: 0, pushes: 6, acks: 6 });
});

test('reconnect with initial_resource_versions gets only the differences', async (t) => {
  const h = await startXds(t);
  seed(h.snapshot, 5);
  const client = adsClient(t, h);
  const first = client.open(wildcard());
  const initial = await first.next();
  first.ack(initial);
  await h.acked(initial.nonce);
  const held = Object.fromEntries(initial.resources.map((r) => [r.name, r.version]));
  first.call.end();
  t.is((await first.status).code, GrpcStatus.OK, 'a client half-close ends the stream with OK');
  t.true(await eventually(() => h.xds.stats().streams === 0));

  // Nothing changed: an empty answer (the client's readiness waits for one), nothing resent.
  const same = client.open(wildcard(ADDRESS, held));
  const empty = await same.next();
  t.deepEqual(empty.resources, []);
  t.deepEqual(empty.removedResources, []);
  same.ack(empty);
  await h.acked(empty.nonce);
  await barrier(t, h, same, 1);
  same.call.end();
  await same.status;
  const before = Object.fromEntries([...h.snapshot.get(ADDRESS)].map(([name, entry]) => [name, entry.version]));

  // While away: pod-2 changed, pod-4 deleted, pod-6 added; the client also lists a name long gone.
  h.snapshot.update(() => {
    h.snapshot.set(ADDRESS, uid(2), workload(2, { node: 'node-z' }));
    h.snapshot.delete(ADDRESS, uid(4));
    h.snapshot.set(ADDRESS, uid(6), workload(6));
  });
  const again = client.open(wildcard(ADDRESS, { ...before, 'Kubernetes//Pod/default/gone': 'abc' }));
  const diff = await again.next();
  t.deepEqual(names(diff), [uid(2), uid(6)]);
  t.deepEqual([...diff.removedResources].sort(), [uid(4), 'Kubernetes//Pod/default/gone'].sort());
  again.ack(diff);
  await h.acked(diff.nonce);
  await barrier(t, h, again, 2);

  // A resource the client rejected is not listed by Istio's client on reconnect, so it is resent.
  const current = [...h.snapshot.get(ADDRESS)].filter(([name]) => name !== uid(1)).map(([name, entry]) => [name, entry.version] as const);
  const third = client.open(wildcard(ADDRESS, Object.fromEntries(current)));
  const resent = await third.next();
  t.deepEqual(names(resent), [uid(1)]);
  t.deepEqual(resent.removedResources, []);
});

test('a NACK is logged and counted, and the rejected version is not resent in a loop', async (t) => {
  const log = captureLog();
  const h = await startXds(t, { logger: log.logger });
  seed(h.snapshot, 2);
  const stream = adsClient(t, h).open(wildcard());
  const initial = await stream.next();
  stream.ack(initial);
  await h.acked(initial.nonce);

  h.snapshot.set(ADDRESS, uid(1), Buffer.from('not an address, the client rejects it'));
  const bad = await stream.next();
  t.deepEqual(names(bad), [uid(1)]);
  const nacked = h.nacked(bad.nonce);
  stream.nack(bad, `${uid(1)}: invalid workload`);
  const event = await nacked;
  t.is(event.message, `${uid(1)}: invalid workload`);
  t.deepEqual(event.resourceNames, [uid(1)]);
  t.is(event.typeUrl, ADDRESS);
  t.true(event.nodeId.startsWith('sidecar~'));
  const record = log.records.find((r) => r['errorMessage'] === `${uid(1)}: invalid workload`);
  t.truthy(record, 'the NACK is logged with its message');
  t.is(record?.['level'], 'warn');

  // No resend of the NACKed version: the next response is the barrier alone.
  await barrier(t, h, stream, 1);
  await barrier(t, h, stream, 2);
  t.like(h.xds.stats(), { nacks: 1 });

  // It goes out again when it changes.
  h.snapshot.set(ADDRESS, uid(1), workload(1, { node: 'fixed' }));
  const fixed = await stream.next();
  t.deepEqual(names(fixed), [uid(1)]);
  stream.ack(fixed);
  await h.acked(fixed.nonce);
  t.like(h.xds.stats(), { nacks: 1, acks: 4, pushes: 5 });
});

test('explicit names: only those are sent, missing ones are mentioned as removed; on-demand subscribe/unsubscribe', async (t) => {
  const h = await startXds(t);
  seed(h.snapshot, 4);
  const stream = adsClient(t, h).open({ typeUrl: ADDRESS, resourceNamesSubscribe: [uid(1), uid(2), 'default/missing.svc'] });
  const initial = await stream.next();
  t.deepEqual(names(initial), [uid(1), uid(2)]);
  t.deepEqual(initial.removedResources, ['default/missing.svc'], 'a missing subscribed name is still mentioned');
  stream.ack(initial);

  // A change outside the subscription is not pushed; one inside is.
  h.snapshot.update(() => {
    h.snapshot.set(ADDRESS, uid(3), workload(3, { node: 'x' }));
    h.snapshot.set(ADDRESS, uid(2), workload(2, { node: 'x' }));
  });
  const change = await stream.next();
  t.deepEqual(names(change), [uid(2)]);
  stream.ack(change);

  // Subscribe one more (on demand): pushed at once, even though nothing changed.
  stream.send({ typeUrl: ADDRESS, resourceNamesSubscribe: [uid(3)] });
  const added = await stream.next();
  t.deepEqual(names(added), [uid(3)]);

  // Unsubscribe pod-1 (carried with the ACK, so the server has applied it once the ACK is seen):
  // its changes no longer come; a subscribed name created later does.
  stream.send({ typeUrl: ADDRESS, responseNonce: added.nonce, resourceNamesUnsubscribe: [uid(1)] });
  await h.acked(added.nonce);
  h.snapshot.update(() => {
    h.snapshot.set(ADDRESS, uid(1), workload(1, { node: 'x' }));
    h.snapshot.set(ADDRESS, 'default/missing.svc', service('missing.default.svc.cluster.local', [10, 96, 0, 1]));
  });
  const created = await stream.next();
  t.deepEqual(names(created), ['default/missing.svc']);
  t.deepEqual(created.removedResources, []);
  stream.ack(created);
  await h.acked(created.nonce);

  // Istio's on-demand mode: "*" in both lists = subscribe to nothing, then names one at a time.
  const onDemand = adsClient(t, h).open({ typeUrl: ADDRESS, resourceNamesSubscribe: ['*'], resourceNamesUnsubscribe: ['*'] });
  const nothing = await onDemand.next();
  t.deepEqual(nothing.resources, []);
  t.deepEqual(nothing.removedResources, []);
  onDemand.ack(nothing);
  h.snapshot.set(ADDRESS, uid(4), workload(4, { node: 'y' }));
  onDemand.send({ typeUrl: ADDRESS, resourceNamesSubscribe: ['default/10.0.0.99'] });
  const unknown = await onDemand.next();
  t.deepEqual(unknown.resources, [], 'pod-4 changed but is not subscribed');
  t.deepEqual(unknown.removedResources, ['default/10.0.0.99'], 'an unknown lookup is answered as removed');
  onDemand.send({ typeUrl: ADDRESS, resourceNamesSubscribe: [uid(4)] });
  const found = await onDemand.next();
  t.deepEqual(names(found), [uid(4)]);

  // Switching to wildcard later sends everything the client lacks.
  onDemand.send({ typeUrl: ADDRESS, resourceNamesSubscribe: ['*'] });
  const all = await onDemand.next();
  t.deepEqual(names(all), [uid(1), uid(2), uid(3), 'default/missing.svc'].sort());
});

test('100 clients each get a pushed change and ACK it', async (t) => {
  const h = await startXds(t);
  seed(h.snapshot, 10);
  const clients = Array.from({ length: 100 }, () => adsClient(t, h).open(wildcard()));
  const initials = await Promise.all(clients.map((c) => c.next()));
  for (const r of initials) t.is(r.resources.length, 10);
  let acks = 0;
  const allAcked = (target: number) =>
    new Promise<void>((resolve) => {
      const onAck = () => {
        if (++acks >= target) {
          h.events.off('ack', onAck);
          resolve();
        }
      };
      h.events.on('ack', onAck);
    });
  let done = allAcked(100);
  clients.forEach((c, i) => c.ack(initials[i] as Response));
  await done;
  t.is(h.xds.stats().streams, 100);

  acks = 0;
  done = allAcked(100);
  h.snapshot.set(ADDRESS, uid(7), workload(7, { node: 'moved' }));
  const pushes = await Promise.all(clients.map((c) => c.next()));
  for (const p of pushes) t.deepEqual(names(p), [uid(7)]);
  t.is(new Set(pushes.map((p) => p.nonce)).size, 100, 'nonces are unique');
  clients.forEach((c, i) => c.ack(pushes[i] as Response));
  await done;
  t.like(h.xds.stats(), { streams: 100, acks: 200, nacks: 0, pushes: 200 });

  for (const c of clients) c.call.end();
  await Promise.all(clients.map((c) => c.status));
  t.true(await eventually(() => h.xds.stats().streams === 0), 'every stream state is cleaned up');
});

test('a client that does not read blocks nobody and gets coalesced pushes when it resumes', async (t) => {
  const h = await startXds(t);
  const big = (round: number) => Buffer.concat([workload(1, { node: `node-${round}` }), encodeMessage('istio.workload.Address', { workload: { clusterId: 'x'.repeat(256 * 1024) } })]);
  h.snapshot.set(ADDRESS, uid(1), big(0));
  const slow = adsClient(t, h).open(wildcard());
  const fast = adsClient(t, h).open(wildcard());
  t.is((await slow.next()).resources.length, 1);
  const first = await fast.next();
  fast.ack(first);
  slow.call.pause();

  const rounds = 80;
  for (let round = 1; round <= rounds; round++) {
    h.snapshot.set(ADDRESS, uid(1), big(round));
    const push = await fast.next();
    t.is(push.resources[0]?.version, h.snapshot.entry(ADDRESS, uid(1))?.version);
    fast.ack(push);
    await h.acked(push.nonce);
  }
  const latest = h.snapshot.entry(ADDRESS, uid(1))?.version;
  slow.call.resume();
  let last: Response | undefined;
  while (last?.resources[0]?.version !== latest) last = await slow.next();
  t.log(`slow client: ${slow.received.length - 1} pushes for ${rounds} changes`);
  t.true(slow.received.length - 1 < rounds, 'pushes to the slow client were coalesced');
  await barrier(t, h, slow, 1);
});

test('garbage from a client ends only that stream; odd requests are ignored; the server keeps serving', async (t) => {
  const h = await startXds(t);
  seed(h.snapshot, 2);
  const { client, open } = adsClient(t, h);

  // Bytes that are not a DeltaDiscoveryRequest.
  const raw = client.makeBidiStreamRequest(method.path, (b: Buffer) => b, (b: Buffer) => b);
  raw.on('error', () => {}); // the status below is what matters
  const rawStatus = new Promise<StatusObject>((resolve) => raw.on('status', resolve));
  raw.write(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f, 0x12, 0x99]));
  const status = await rawStatus;
  t.is(status.code, GrpcStatus.INTERNAL);

  // Well-formed but meaningless requests.
  const odd = open({ typeUrl: 'type.googleapis.com/envoy.config.cluster.v3.Cluster' });
  odd.send({ typeUrl: '' });
  odd.send({ typeUrl: ADDRESS, responseNonce: 'never-sent' }); // ACK before any subscription = first request with a bogus nonce
  const subscribed = await odd.next();
  t.deepEqual(names(subscribed), [uid(1), uid(2)]);
  odd.send({ typeUrl: ADDRESS, responseNonce: 'never-sent-either', errorDetail: { message: 'x' } });
  odd.send({ typeUrl: ADDRESS, errorDetail: { message: 'no nonce' } });
  odd.send({ typeUrl: ADDRESS, resourceNamesUnsubscribe: ['not-subscribed', '*', '*'] });
  odd.send({ typeUrl: ADDRESS, resourceNamesSubscribe: ['', '\u0000\uffff'.repeat(100)] });
  const mentioned = await odd.next();
  t.deepEqual([...mentioned.removedResources].sort(), ['', '\u0000\uffff'.repeat(100)].sort());
  t.like(h.xds.stats(), { acks: 0, nacks: 0 });
  t.true(h.xds.stats().ignoredRequests >= 3);

  // Another client is unaffected.
  const good = open(wildcard());
  const sync = await good.next();
  t.is(sync.resources.length, 2);
  good.ack(sync);
  await h.acked(sync.nonce);
  t.true(await eventually(() => h.xds.stats().streams === 2), 'the garbage stream is gone, the others remain');
});

test('cancel and close clean up stream state; close() ends open streams with OK', async (t) => {
  const h = await startXds(t);
  seed(h.snapshot, 1);
  const client = adsClient(t, h);
  const a = client.open(wildcard());
  const b = client.open(wildcard());
  await Promise.all([a.next(), b.next()]);
  t.is(h.xds.stats().streams, 2);
  a.call.cancel();
  t.true(await eventually(() => h.xds.stats().streams === 1));
  await h.xds.close();
  t.is((await b.status).code, GrpcStatus.OK);
  t.is(h.xds.stats().streams, 0);
  // Changes after close go nowhere (the snapshot listener is gone).
  t.is(h.snapshot.listenerCount('change'), 0);
});

test('delta ADS over TLS (server-only TLS, as istiod on 15012)', async (t) => {
  const pki = testPki();
  t.teardown(() => pki.close());
  const cert = await pki.cert('istio-system', 'istiod');
  const h = await startXds(t, { tls: { certChainPem: cert.chainPem.join('\n'), privateKeyPem: cert.privateKeyPem } });
  seed(h.snapshot, 3);
  // The serving certificate carries a SPIFFE URI SAN, no DNS name: verify the chain, not the host name.
  const creds = credentials.createSsl(Buffer.from(cert.rootsPem.join('\n')), null, null, { checkServerIdentity: () => undefined });
  const stream = adsClient(t, h, creds, { 'grpc.ssl_target_name_override': 'istiod.istio-system.svc' }).open(wildcard());
  const initial = await stream.next();
  t.deepEqual(names(initial), [uid(1), uid(2), uid(3)]);
  stream.ack(initial);
  await h.acked(initial.nonce);
  h.snapshot.delete(ADDRESS, uid(2));
  const removed = await stream.next();
  t.deepEqual(removed.removedResources, [uid(2)]);
});

// ---------------------------------------------------------------------------------------------
// Python grpcio interop

interface PyResource {
  readonly name: string;
  readonly version: string;
  readonly anyTypeUrl: string;
  readonly kind: string;
  readonly uid?: string;
  readonly hostname?: string;
  readonly ips: readonly string[];
}
interface PyLine {
  readonly nonce?: string;
  readonly typeUrl?: string;
  readonly resources?: readonly PyResource[];
  readonly removed?: readonly string[];
  readonly done?: boolean;
  readonly code?: string;
  readonly error?: string;
}

test('interop: a Python grpcio delta-ADS client syncs, ACKs, and sees pushes and removals', async (t) => {
  if (!canRunPythonGrpc(t)) return;
  if (!existsSync(SCRIPT)) throw new Error(`interop script not found: ${SCRIPT}`);
  const protos = await compilePythonProtos();
  t.teardown(() => protos.cleanup());
  const h = await startXds(t);
  h.snapshot.update(() => {
    h.snapshot.set(ADDRESS, uid(1), workload(1));
    h.snapshot.set(ADDRESS, uid(2), workload(2));
    h.snapshot.set(ADDRESS, 'default/echo.default.svc.cluster.local', service('echo.default.svc.cluster.local', [10, 96, 0, 10]));
  });

  const child = spawn(PYTHON, [SCRIPT, JSON.stringify({ address: h.target, typeUrl: ADDRESS, nodeId: 'python~1', responses: 3 })], {
    env: { ...process.env, PYTHONPATH: protos.dir },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => (stderr += String(d)));
  const exited = once(child, 'exit');
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const nextLine = async (): Promise<PyLine> => {
    const { value, done } = await lines.next();
    if (done) throw new Error(`Python client ended early: ${stderr}`);
    const line = JSON.parse(value) as PyLine;
    if (line.error) throw new Error(`Python client: ${line.error}\n${stderr}`);
    return line;
  };

  const initial = await nextLine();
  t.is(initial.typeUrl, ADDRESS);
  const byName = new Map((initial.resources ?? []).map((r) => [r.name, r]));
  t.deepEqual([...byName.keys()].sort(), [uid(1), uid(2), 'default/echo.default.svc.cluster.local'].sort());
  t.like(byName.get(uid(1)), { kind: 'workload', uid: uid(1), ips: ['10.0.0.1'], anyTypeUrl: ADDRESS, version: contentVersion(workload(1)) });
  t.like(byName.get(uid(2)), { kind: 'workload', uid: uid(2), ips: ['10.0.0.2'] });
  t.like(byName.get('default/echo.default.svc.cluster.local'), { kind: 'service', hostname: 'echo.default.svc.cluster.local', ips: ['10.96.0.10'] });

  h.snapshot.set(ADDRESS, uid(3), workload(3));
  const pushed = await nextLine();
  t.deepEqual(pushed.resources?.map((r) => [r.uid, r.ips]), [[uid(3), ['10.0.0.3']]]);

  h.snapshot.delete(ADDRESS, uid(1));
  const removed = await nextLine();
  t.deepEqual(removed.removed, [uid(1)]);
  t.deepEqual(removed.resources, []);

  const done = await nextLine();
  t.deepEqual(done, { done: true, code: 'OK' });
  const [code] = (await exited) as [number | null];
  t.is(code, 0, stderr);
  // The client ACKs before printing a line, so the server's count (not a per-nonce wait) is the check.
  t.like(h.xds.stats(), { acks: 3, nacks: 0, streams: 0 });
});

/**
 * The delta ADS client's `istio_xds_*` metrics (ztunnel.md §6.2): the pure parts, then against our
 * ADS server over TLS on loopback (test/helpers/xds.ts) and a grpc-js stub for a failing stream.
 */
import test, { type ExecutionContext } from 'ava';
import { once } from 'node:events';
import { Server, ServerCredentials, status as GrpcStatus, type ServerDuplexStream, type ServiceDefinition } from '@grpc/grpc-js';
import { createMetricsRegistry, renderPrometheus, type MetricsRegistry } from '../../src/core/metrics.ts';
import { CertificateAuthority } from '../../src/identity/ca.ts';
import type { DeltaDiscoveryRequest__Output } from '../../src/workload-api/generated/envoy/service/discovery/v3/DeltaDiscoveryRequest.ts';
import type { DeltaDiscoveryResponse } from '../../src/workload-api/generated/envoy/service/discovery/v3/DeltaDiscoveryResponse.ts';
import { encodeMessage, grpcPackageDefinition, TypeUrl } from '../../src/workload-api/proto.ts';
import { WorkloadStore } from '../../src/workload-api/store.ts';
import { addressHandler, authorizationHandler } from '../../src/workload-api/store-handlers.ts';
import { startXdsClient, terminationReason, xdsNode, type XdsClient, type XdsClientOptions, type XdsStreamEndEvent } from '../../src/workload-api/xds-client.ts';
import { anyPayloadBytes, createXdsMetrics } from '../../src/workload-api/xds-metrics.ts';
import { ISTIOD, startXdsServer } from '../helpers/xds.ts';

const ca = CertificateAuthority.generate('cluster.local');
const NODE = xdsNode({ podName: 'ztunnel-x', podNamespace: 'istio-system', nodeName: 'node-1' });
const AUTH = { token: { kind: 'literal', token: 'test-token' }, clusterId: 'Kubernetes' } as const;

/** Every sample of `name` in the exposition: the label block (`{url="…"}`) → value. */
function samples(text: string, name: string): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    const match = /^(\S+?)(\{.*\})? (\S+)$/.exec(line);
    if (match && match[1] === name) out[match[2] ?? ''] = Number(match[3]);
  }
  return out;
}

async function metricSamples(registry: MetricsRegistry, name: string): Promise<Record<string, number>> {
  return samples(await renderPrometheus(registry), name);
}

/** A client feeding a fresh store, with metrics in `registry`; closed on teardown. */
function startClient(t: ExecutionContext, registry: MetricsRegistry, options: Partial<XdsClientOptions> & Pick<XdsClientOptions, 'address'>): XdsClient {
  const store = new WorkloadStore();
  const client = startXdsClient({
    auth: AUTH,
    node: NODE,
    handlers: [addressHandler(store), authorizationHandler(store)],
    metrics: createXdsMetrics(registry),
    ...options,
  });
  t.teardown(() => client.close());
  return client;
}

const workload = (uid: string, extra: Record<string, unknown> = {}): Buffer =>
  encodeMessage('istio.workload.Address', { workload: { uid, name: uid.split('/').pop(), namespace: 'ns', ...extra } });

// ---------------------------------------------------------------------------------------------
// Pure parts

test('anyPayloadBytes sums the Any value sizes and skips resources without an Any', (t) => {
  t.is(anyPayloadBytes([]), 0);
  t.is(
    anyPayloadBytes([
      { resource: { value: Buffer.alloc(7) } },
      { resource: null },
      { resource: { value: new Uint8Array(5) } },
    ]),
    12,
  );
});

test('terminationReason: before an answer a ConnectionError; after, benign closes reconnect and the rest are errors', (t) => {
  t.is(terminationReason({ code: GrpcStatus.UNAVAILABLE, details: 'No connection established' }, false), 'ConnectionError');
  t.is(terminationReason({ code: GrpcStatus.OK, details: '' }, false), 'ConnectionError');
  t.is(terminationReason({ code: GrpcStatus.OK, details: '' }, true), 'Reconnect');
  t.is(terminationReason({ code: GrpcStatus.UNAVAILABLE, details: 'transport is closing' }, true), 'Reconnect');
  t.is(terminationReason({ code: GrpcStatus.UNAVAILABLE, details: 'No connection established' }, true), 'Error');
  t.is(terminationReason({ code: GrpcStatus.PERMISSION_DENIED, details: 'no' }, true), 'Error');
});

test('createXdsMetrics renders ztunnel family names, counter HELP/TYPE under the base name, and zero-byte series', async (t) => {
  const registry = createMetricsRegistry();
  const metrics = createXdsMetrics(registry);
  t.is(await renderPrometheus(registry), '', 'no samples before anything happened');
  metrics.message(TypeUrl.authorization, 0);
  metrics.message(TypeUrl.address, 10);
  metrics.message(TypeUrl.address, 5);
  metrics.terminated('Reconnect');
  const text = await renderPrometheus(registry);
  t.true(text.includes('# TYPE istio_xds_message counter\n'));
  t.true(text.includes('# TYPE istio_xds_message_bytes counter\n'));
  t.true(text.includes('# TYPE istio_xds_connection_terminations counter\n'));
  t.true(text.includes(`\nistio_xds_message_total{url="${TypeUrl.address}"} 2\n`));
  t.deepEqual(samples(text, 'istio_xds_message_total'), { [`{url="${TypeUrl.address}"}`]: 2, [`{url="${TypeUrl.authorization}"}`]: 1 });
  t.deepEqual(samples(text, 'istio_xds_message_bytes_total'), { [`{url="${TypeUrl.address}"}`]: 15, [`{url="${TypeUrl.authorization}"}`]: 0 });
  t.deepEqual(samples(text, 'istio_xds_connection_terminations_total'), { '{reason="Reconnect"}': 1 });
});

// ---------------------------------------------------------------------------------------------
// Against our ADS server over TLS

test('messages and Any bytes are counted per type URL; the server going away is a Reconnect, then a ConnectionError; close() is Complete', async (t) => {
  const xds = await startXdsServer(ca);
  t.teardown(() => xds.close());
  const values = [workload('Kubernetes//Pod/ns/a'), workload('Kubernetes//Pod/ns/b', { serviceAccount: 'sa-b' }), workload('Kubernetes//Pod/ns/c')];
  xds.snapshot.replaceAll(TypeUrl.address, values.map((value, i) => [`Kubernetes//Pod/ns/${'abc'[i]}`, value] as const));
  const served = values.reduce((sum, v) => sum + v.byteLength, 0);
  const registry = createMetricsRegistry();
  const client = startClient(t, registry, { address: `localhost:${xds.port}`, rootCaPem: xds.rootPem, alternateHostname: ISTIOD, backoff: { initialMs: 10, maxMs: 60_000 } });
  await client.synced;

  const urlAddress = `{url="${TypeUrl.address}"}`;
  const urlAuthorization = `{url="${TypeUrl.authorization}"}`;
  t.deepEqual(await metricSamples(registry, 'istio_xds_message_total'), { [urlAddress]: 1, [urlAuthorization]: 1 });
  t.deepEqual(await metricSamples(registry, 'istio_xds_message_bytes_total'), { [urlAddress]: served, [urlAuthorization]: 0 });
  t.deepEqual(await metricSamples(registry, 'istio_xds_connection_terminations_total'), {}, 'no stream has ended yet');

  // A push of one changed resource: one more Address message carrying only its bytes.
  const changed = workload('Kubernetes//Pod/ns/a', { serviceAccount: 'sa-a2' });
  const acked = once(client, 'ack');
  xds.snapshot.set(TypeUrl.address, 'Kubernetes//Pod/ns/a', changed);
  await acked;
  t.deepEqual(await metricSamples(registry, 'istio_xds_message_total'), { [urlAddress]: 2, [urlAuthorization]: 1 });
  t.deepEqual(await metricSamples(registry, 'istio_xds_message_bytes_total'), { [urlAddress]: served + changed.byteLength, [urlAuthorization]: 0 });

  // The service ends the open stream with OK (benign: Reconnect); the next stream is refused with
  // UNAVAILABLE before any answer (ConnectionError). Closing on that second end stops further attempts.
  const ends: XdsStreamEndEvent[] = [];
  const stopped = new Promise<void>((resolve) => {
    client.on('disconnected', (event) => {
      ends.push(event);
      if (ends.length === 2) void client.close().then(resolve);
    });
  });
  await xds.service.close();
  await stopped;
  t.deepEqual(
    ends.map((e) => e.benign),
    [true, false],
  );
  t.deepEqual(await metricSamples(registry, 'istio_xds_connection_terminations_total'), {
    '{reason="Reconnect"}': 1,
    '{reason="ConnectionError"}': 1,
    '{reason="Complete"}': 1,
  });
  await client.close();
  t.is((await metricSamples(registry, 'istio_xds_connection_terminations_total'))['{reason="Complete"}'], 1, 'close() is idempotent and counts once');
});

test('an unreachable server is a ConnectionError and nothing is counted as a message', async (t) => {
  // A port that was just bound and released: nothing listens there.
  const gone = await startXdsServer(ca);
  await gone.close();
  const registry = createMetricsRegistry();
  const client = startClient(t, registry, { address: `localhost:${gone.port}`, rootCaPem: gone.rootPem, alternateHostname: ISTIOD, backoff: { initialMs: 60_000, maxMs: 60_000 } });
  const [ended] = (await once(client, 'disconnected')) as [XdsStreamEndEvent];
  t.is(ended.code, GrpcStatus.UNAVAILABLE);
  t.deepEqual(await metricSamples(registry, 'istio_xds_connection_terminations_total'), { '{reason="ConnectionError"}': 1 });
  await client.close();
  const text = await renderPrometheus(registry);
  t.deepEqual(samples(text, 'istio_xds_connection_terminations_total'), { '{reason="ConnectionError"}': 1, '{reason="Complete"}': 1 });
  t.false(text.includes('istio_xds_message'), 'no message or byte series without a response');
});

// ---------------------------------------------------------------------------------------------
// A connected stream that fails

test('a connected stream failing with a non-benign status is an Error', async (t) => {
  const definition = grpcPackageDefinition()['envoy.service.discovery.v3.AggregatedDiscoveryService'] as unknown as ServiceDefinition;
  const server = new Server();
  server.addService(definition, {
    DeltaAggregatedResources: (call: ServerDuplexStream<DeltaDiscoveryRequest__Output, DeltaDiscoveryResponse>) => {
      call.on('error', () => {});
      let answered = false;
      call.on('data', (request: DeltaDiscoveryRequest__Output) => {
        if (!answered) {
          answered = true;
          call.write({ typeUrl: TypeUrl.address, nonce: 'n-1', resources: [{ name: 'w', version: 'v1', resource: { type_url: TypeUrl.address, value: workload('Kubernetes//Pod/ns/w') } }] });
        } else if (request.responseNonce === 'n-1') {
          call.emit('error', { code: GrpcStatus.PERMISSION_DENIED, details: 'token rejected' });
        }
      });
    },
  });
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', ServerCredentials.createInsecure(), (err, bound) => (err ? reject(err) : resolve(bound))),
  );
  t.teardown(() => server.forceShutdown());
  const registry = createMetricsRegistry();
  const client = startClient(t, registry, { address: `http://127.0.0.1:${port}`, backoff: { initialMs: 60_000, maxMs: 60_000 } });
  const [ended] = (await once(client, 'disconnected')) as [XdsStreamEndEvent];
  t.is(ended.code, GrpcStatus.PERMISSION_DENIED);
  t.false(ended.benign);
  t.deepEqual(await metricSamples(registry, 'istio_xds_connection_terminations_total'), { '{reason="Error"}': 1 });
  t.deepEqual(await metricSamples(registry, 'istio_xds_message_total'), { [`{url="${TypeUrl.address}"}`]: 1 });
  t.deepEqual(await metricSamples(registry, 'istio_xds_message_bytes_total'), { [`{url="${TypeUrl.address}"}`]: workload('Kubernetes//Pod/ns/w').byteLength });
});

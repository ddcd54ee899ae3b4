import test from 'ava';
import { once } from 'node:events';
import { CertificateAuthority } from '../../src/identity/ca.ts';
import { ipToBytes } from '../../src/workload-api/convert.ts';
import { encodeMessage, TypeUrl } from '../../src/workload-api/proto.ts';
import type { XdsAckEvent, XdsNackEvent } from '../../src/workload-api/xds-server.ts';
import { workloadResources } from '../../bench/xds-fixtures.ts';
import { startStoreClient, startXdsServer } from '../helpers/xds.ts';

const ca = CertificateAuthority.generate('cluster.local');

const workload = (uid: string, ip: string, extra: Record<string, unknown> = {}) =>
  encodeMessage('istio.workload.Address', { workload: { uid, name: uid.split('/').pop(), namespace: 'ns', addresses: [ipToBytes(ip)], ...extra } }, { unchecked: true });

test('10,000 workloads arrive in one push over TLS and are indexed', async (t) => {
  const xds = await startXdsServer(ca);
  xds.snapshot.replaceAll(TypeUrl.address, workloadResources(10_000).map((r) => [r.name, r.value] as const));
  const { client, store } = startStoreClient(xds.port, xds.rootPem);
  await client.synced;
  t.is(store.counts().workloads, 10_000);
  t.is(store.workloadByAddress('', '10.0.39.15')?.uid, 'Kubernetes//Pod/ns19/pod-9999');
  t.is(store.endpoints('ns0', 'svc-0.ns0.svc.cluster.local').length, 100); // pods 0, 100, 200, …
  t.is(client.stats().nacks, 0);
  await client.close();
  await xds.close();
});

test('a malformed resource is NACKed with its field path; the rest of the push applies; its last good version stays', async (t) => {
  const serverNack = Promise.withResolvers<XdsNackEvent>();
  const xds = await startXdsServer(ca, { onNack: serverNack.resolve });
  xds.snapshot.update(() => {
    xds.snapshot.set(TypeUrl.address, 'c//Pod/ns/a', workload('c//Pod/ns/a', '10.0.0.1'));
    xds.snapshot.set(TypeUrl.address, 'c//Pod/ns/b', workload('c//Pod/ns/b', '10.0.0.2'));
  });
  const { client, store } = startStoreClient(xds.port, xds.rootPem);
  await client.synced;
  const nacked = once(client, 'nack');
  xds.snapshot.update(() => {
    xds.snapshot.set(TypeUrl.address, 'c//Pod/ns/a', workload('c//Pod/ns/a', '10.0.0.1', { addresses: [Buffer.from([10, 0, 0])] }));
    xds.snapshot.set(TypeUrl.address, 'garbage', Buffer.from([0xff, 0xff, 0xff]));
    xds.snapshot.set(TypeUrl.address, 'c//Pod/ns/b', workload('c//Pod/ns/b', '10.0.0.22'));
  });
  await nacked;
  const nack = await serverNack.promise;
  t.regex(nack?.message ?? '', /c\/\/Pod\/ns\/a: workload\.addresses\[0\]: must be 4 or 16 bytes, got 3/);
  t.regex(nack?.message ?? '', /garbage: malformed protobuf/);
  t.is(store.workloadByUid('c//Pod/ns/a')?.addresses[0], '10.0.0.1', 'the last good version stays');
  t.is(store.workloadByUid('c//Pod/ns/b')?.addresses[0], '10.0.0.22', 'the good change applied');
  t.is(xds.service.stats().nacks, 1);
  await client.close();
  await xds.close();
});

test('a reconnect resumes from the versions held: nothing is resent when nothing changed, and a removal reaches the store', async (t) => {
  const first = await startXdsServer(ca);
  first.snapshot.replaceAll(TypeUrl.address, workloadResources(500).map((r) => [r.name, r.value] as const));
  const { client, store } = startStoreClient(first.port, first.rootPem);
  await client.synced;
  t.is(store.counts().workloads, 500);

  // A new server on the same port with the same snapshot, one workload fewer: only the removal is sent.
  await first.close();
  const addressAck = Promise.withResolvers<XdsAckEvent>();
  first.snapshot.delete(TypeUrl.address, 'Kubernetes//Pod/ns7/pod-7');
  const second = await startXdsServer(ca, { snapshot: first.snapshot, port: first.port, onAck: (e) => e.typeUrl === TypeUrl.address && addressAck.resolve(e) });
  t.deepEqual((await addressAck.promise).resourceNames, ['Kubernetes//Pod/ns7/pod-7'], 'only the removal, no resend of 499 workloads');
  t.is(store.counts().workloads, 499);
  t.is(store.workloadByUid('Kubernetes//Pod/ns7/pod-7'), undefined);
  await client.close();
  await second.close();
});

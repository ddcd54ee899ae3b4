import { performance } from 'node:perf_hooks';
import { CertificateAuthority } from '../src/identity/ca.ts';
import { encodeMessage, TypeUrl } from '../src/workload-api/proto.ts';
import { ResourceSnapshot } from '../src/workload-api/snapshot.ts';
import { ipToBytes } from '../src/workload-api/convert.ts';
import { startStoreClient, startXdsServer } from '../test/helpers/xds.ts';
import { workloadResources } from './xds-fixtures.ts';

export interface PushResult {
  readonly clients: number;
  readonly workloads: number;
  readonly initialSyncMs: number;
  /** From the snapshot change to the last client's ACK of it (at the server). */
  readonly allAckedMs: number;
  readonly p50Ms: number;
  readonly maxMs: number;
}

/** `clients` real xDS clients over TLS, each with its own store; one changed workload pushed to all. */
export async function pushToClients(options: { clients: number; workloads: number }): Promise<PushResult> {
  const ca = CertificateAuthority.generate('cluster.local');
  const snapshot = new ResourceSnapshot();
  snapshot.replaceAll(TypeUrl.address, workloadResources(options.workloads).map((r) => [r.name, r.value] as const));
  const changed = 'Kubernetes//Pod/ns0/pod-0';
  let changedAt = 0;
  const ackTimes: number[] = [];
  const allAcked = Promise.withResolvers<void>();
  const xds = await startXdsServer(ca, {
    snapshot,
    onAck: (event) => {
      if (changedAt === 0 || !event.resourceNames.includes(changed)) return;
      ackTimes.push(performance.now() - changedAt);
      if (ackTimes.length === options.clients) allAcked.resolve();
    },
  });
  const start = performance.now();
  const clients = Array.from({ length: options.clients }, () => startStoreClient(xds.port, xds.rootPem).client);
  try {
    await Promise.all(clients.map((c) => c.synced));
    const initialSyncMs = performance.now() - start;
    changedAt = performance.now();
    snapshot.set(TypeUrl.address, changed, encodeMessage('istio.workload.Address', { workload: { uid: changed, name: 'pod-0', namespace: 'ns0', addresses: [ipToBytes('10.200.0.1')] } }));
    const deadline = setTimeout(() => allAcked.reject(new Error(`only ${ackTimes.length} of ${options.clients} clients ACKed within 60 s`)), 60_000);
    await allAcked.promise;
    clearTimeout(deadline);
    const sorted = [...ackTimes].sort((a, b) => a - b);
    return {
      clients: options.clients,
      workloads: options.workloads,
      initialSyncMs,
      allAckedMs: sorted[sorted.length - 1] as number,
      p50Ms: sorted[Math.floor(sorted.length / 2)] as number,
      maxMs: sorted[sorted.length - 1] as number,
    };
  } finally {
    await Promise.all(clients.map((c) => c.close()));
    await xds.close();
  }
}

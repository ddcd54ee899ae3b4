/**
 * Control plane benchmark: a cluster of 10,000 pods, 1,000 services and 500 authorization policies (100
 * namespaces) in the fake API server; `startControlPlane` lists it through the informers and translates it.
 * Measured: the time from start to the first full push (sources synced, everything translated and in the xDS
 * snapshot), the translation alone (in-process, no API server), heap, the time for connected xDS clients to sync
 * the whole mesh, and the time from one pod change in the API server to every connected client having ACKed it.
 * Prints a table and writes JSON under bench/results/.
 *
 *   node --expose-gc dist/bench/control-plane.js [--pods 10000] [--services 1000] [--policies 500] [--clients 20] [--changes 5] [--no-write]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { parseControlPlaneConfig } from '../src/control-plane/config.ts';
import { startControlPlane } from '../src/control-plane/control-plane.ts';
import type { KubeObject } from '../src/control-plane/kube-objects.ts';
import { Translator } from '../src/control-plane/translator.ts';
import { silentLogger } from '../src/core/logger.ts';
import { TypeUrl } from '../src/workload-api/proto.ts';
import { ResourceSnapshot } from '../src/workload-api/snapshot.ts';
import { WorkloadStore } from '../src/workload-api/store.ts';
import { addressHandler, authorizationHandler } from '../src/workload-api/store-handlers.ts';
import { startXdsClient, xdsNode, type XdsClient } from '../src/workload-api/xds-client.ts';
import type { XdsHandler } from '../src/workload-api/xds-types.ts';
import { startFakeKube, type FakeResource } from '../src/demo/api-server.ts';

const { values } = parseArgs({
  options: {
    pods: { type: 'string', default: '10000' },
    services: { type: 'string', default: '1000' },
    policies: { type: 'string', default: '500' },
    namespaces: { type: 'string', default: '100' },
    clients: { type: 'string', default: '20' },
    changes: { type: 'string', default: '5' },
    'no-write': { type: 'boolean', default: false },
  },
});
const PODS = Number(values.pods);
const SERVICES = Number(values.services);
const POLICIES = Number(values.policies);
const NAMESPACES = Number(values.namespaces);
const CLIENTS = Number(values.clients);
const CHANGES = Number(values.changes);

const gc = (globalThis as { gc?: () => void }).gc;
const heapMiB = () => {
  gc?.();
  return process.memoryUsage().heapUsed / 1024 / 1024;
};

/** The cluster: every namespace gets pods, services selecting them (by `svc` label), policies. */
function cluster(): Array<[FakeResource, string, KubeObject]> {
  const out: Array<[FakeResource, string, KubeObject]> = [];
  const nodes = 50;
  out.push(['namespaces', 'Namespace', { metadata: { name: 'istio-system' } }]);
  out.push(['peerauthentications', 'PeerAuthentication', { metadata: { name: 'default', namespace: 'istio-system' }, spec: { mtls: { mode: 'STRICT' } } } as KubeObject]);
  for (let n = 0; n < nodes; n++) out.push(['nodes', 'Node', { metadata: { name: `node-${n}`, labels: { 'topology.kubernetes.io/region': 'r1', 'topology.kubernetes.io/zone': `z${n % 3}` } } }]);
  const servicesPerNs = Math.ceil(SERVICES / NAMESPACES);
  for (let ns = 0; ns < NAMESPACES; ns++) out.push(['namespaces', 'Namespace', { metadata: { name: `ns-${ns}`, labels: { 'istio.io/dataplane-mode': 'ambient' } } }]);
  for (let i = 0; i < SERVICES; i++) {
    const ns = i % NAMESPACES;
    const s = Math.floor(i / NAMESPACES);
    out.push([
      'services',
      'Service',
      {
        metadata: { name: `svc-${s}`, namespace: `ns-${ns}` },
        spec: { selector: { svc: `svc-${s}` }, clusterIP: `10.96.${Math.floor(i / 250)}.${i % 250}`, clusterIPs: [`10.96.${Math.floor(i / 250)}.${i % 250}`], ipFamilies: ['IPv4'], ports: [{ name: 'http', port: 80, targetPort: 'http' }, { name: 'grpc', port: 9090, targetPort: 9090 }] },
      } as KubeObject,
    ]);
  }
  for (let i = 0; i < PODS; i++) {
    const ns = i % NAMESPACES;
    const s = Math.floor(i / NAMESPACES) % servicesPerNs;
    out.push([
      'pods',
      'Pod',
      {
        metadata: {
          name: `pod-${i}`,
          namespace: `ns-${ns}`,
          labels: { svc: `svc-${s}`, app: `app-${s}`, version: 'v1', 'pod-template-hash': 'abc12' },
          annotations: { 'ambient.istio.io/redirection': 'enabled' },
          ownerReferences: [{ kind: 'ReplicaSet', name: `app-${s}-abc12`, controller: true }],
        },
        spec: { nodeName: `node-${i % nodes}`, serviceAccountName: `sa-${s}`, containers: [{ name: 'app', ports: [{ name: 'http', containerPort: 8080 }] }] },
        status: { phase: 'Running', podIP: `10.${16 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`, conditions: [{ type: 'Ready', status: 'True' }] },
      } as KubeObject,
    ]);
  }
  for (let i = 0; i < POLICIES; i++) {
    const ns = i % NAMESPACES;
    const k = Math.floor(i / NAMESPACES);
    const spec =
      k % 3 === 0
        ? { selector: { matchLabels: { app: `app-${k}` } }, rules: [{ from: [{ source: { principals: [`cluster.local/ns/ns-${ns}/sa/sa-${k + 1}`] } }], to: [{ operation: { ports: ['8080'] } }] }] }
        : k % 3 === 1
          ? { action: 'DENY', rules: [{ from: [{ source: { notNamespaces: [`ns-${ns}`, 'istio-system'] } }] }] }
          : { selector: { matchLabels: { app: `app-${k}` } }, rules: [{ to: [{ operation: { methods: ['GET'], ports: ['8080'] } }] }, { from: [{ source: { namespaces: ['*'] } }] }] };
    out.push(['authorizationpolicies', 'AuthorizationPolicy', { metadata: { name: `policy-${k}`, namespace: `ns-${ns}` }, spec } as KubeObject]);
  }
  return out;
}

const objects = cluster();

// ---- 1. the translation alone ----
const heapBefore = heapMiB();
const snapshot = new ResourceSnapshot();
const translator = new Translator({ snapshot, autoFlush: false });
const t0 = performance.now();
for (const [, kind, object] of objects) translator.change({ kind, type: 'upsert', object });
const ingestMs = performance.now() - t0;
translator.markAll();
const t1 = performance.now();
translator.flush();
const translateMs = performance.now() - t1;
const heapTranslator = heapMiB() - heapBefore;
const stats = translator.stats();
const onePod = objects.find(([, kind]) => kind === 'Pod')![2];
const t2 = performance.now();
const incremental = 200;
for (let i = 0; i < incremental; i++) {
  translator.change({ kind: 'Pod', type: 'upsert', object: { ...onePod, metadata: { ...onePod.metadata, labels: { ...onePod.metadata?.labels, bump: String(i) } } } });
  translator.flush();
}
const podChangeUs = ((performance.now() - t2) * 1000) / incremental;

// ---- 2. through the API server, with connected clients ----
const fake = await startFakeKube();
for (const [resource, , object] of objects) fake.create(resource, object as never);
const config = parseControlPlaneConfig({ 'listen-address': '127.0.0.1', 'grpc-port': '0', 'monitoring-port': '0', 'readiness-port': '0' }, { KUBECONFIG: fake.kubeconfigPath });
if (!config.ok) throw new Error(config.errors.join('; '));
const heapBeforeCp = heapMiB();
const startAt = performance.now();
const cp = await startControlPlane(config.value, { logger: silentLogger() });
await cp.ready;
const firstPushMs = performance.now() - startAt;
const heapCp = heapMiB() - heapBeforeCp;

const changedUid = 'Kubernetes//Pod/ns-0/pod-0';
let changeAt = 0;
const ackTimes: number[] = [];
let acked: (() => void) | undefined;
const clients: XdsClient[] = [];
const syncStart = performance.now();
for (let c = 0; c < CLIENTS; c++) {
  const store = new WorkloadStore();
  const address = addressHandler(store);
  let sawChange = false;
  const watching: XdsHandler = {
    typeUrl: address.typeUrl,
    handle(resources, removed) {
      if (changeAt > 0 && resources.some((r) => r.name === changedUid)) sawChange = true;
      return address.handle(resources, removed);
    },
  };
  const client = startXdsClient({
    address: `localhost:${cp.ports().grpc}`,
    rootCaPem: cp.rootCertPem(),
    alternateHostname: 'istiod.istio-system.svc',
    auth: { token: { kind: 'literal', token: 'bench' }, clusterId: 'Kubernetes' },
    node: xdsNode({ podName: `ztunnel-${c}`, podNamespace: 'istio-system', nodeName: `node-${c}` }),
    handlers: [watching, authorizationHandler(store)],
    logger: silentLogger(),
  });
  client.on('ack', (e) => {
    if (sawChange && e.typeUrl === TypeUrl.address) {
      sawChange = false;
      ackTimes.push(performance.now() - changeAt);
      if (ackTimes.length % CLIENTS === 0) acked?.();
    }
  });
  clients.push(client);
}
await Promise.all(clients.map((c) => c.synced));
const clientsSyncMs = performance.now() - syncStart;

const changeMs: number[] = [];
for (let i = 0; i < CHANGES; i++) {
  const done = new Promise<void>((resolve) => (acked = resolve));
  const pod = fake.get('pods', 'ns-0', 'pod-0')!;
  changeAt = performance.now();
  const before = ackTimes.length;
  fake.update('pods', { ...pod, metadata: { ...pod.metadata, labels: { ...pod.metadata?.labels, version: `v${i + 2}` } } } as never);
  const timer = setTimeout(() => {
    throw new Error(`only ${ackTimes.length - before} of ${CLIENTS} clients ACKed the change within 30 s`);
  }, 30_000);
  await done;
  clearTimeout(timer);
  changeMs.push(Math.max(...ackTimes.slice(before)));
}
const sortedChange = [...changeMs].sort((a, b) => a - b);

await Promise.all(clients.map((c) => c.close()));
await cp.close();
await fake.close();

const fmt = (n: number, d = 1) => n.toFixed(d);
console.log(`\nControl plane benchmark — ${new Date().toISOString()} — node ${process.version}, ${cpus()[0]?.model ?? '?'} × ${cpus().length}${gc ? '' : ' (run with --expose-gc for heap figures)'}`);
console.log(`cluster: ${PODS} pods, ${SERVICES} services, ${POLICIES} policies in ${NAMESPACES} namespaces → ${stats.workloads} workloads, ${stats.services} services, ${stats.policies} authorizations\n`);
console.log('translation alone (in-process)');
console.log(`  ingest ${objects.length} objects        ${fmt(ingestMs).padStart(8)} ms`);
console.log(`  translate + encode everything ${fmt(translateMs).padStart(8)} ms`);
console.log(`  heap (state + snapshot)       ${fmt(heapTranslator).padStart(8)} MiB`);
console.log(`  one pod change, recompute     ${fmt(podChangeUs, 0).padStart(8)} µs`);
console.log('through the API server (fake, real informers and gRPC)');
console.log(`  start → first full push       ${fmt(firstPushMs).padStart(8)} ms`);
console.log(`  heap of the control plane     ${fmt(heapCp).padStart(8)} MiB`);
console.log(`  ${String(CLIENTS).padStart(3)} clients full sync         ${fmt(clientsSyncMs).padStart(8)} ms`);
console.log(`  pod change → all ACKed        ${fmt(sortedChange[Math.floor(sortedChange.length / 2)] ?? 0).padStart(8)} ms median of ${CHANGES} (max ${fmt(sortedChange[sortedChange.length - 1] ?? 0)} ms)`);

if (!values['no-write']) {
  const dir = join(import.meta.dirname, '..', '..', 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const result = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: cpus()[0]?.model,
    cores: cpus().length,
    cluster: { pods: PODS, services: SERVICES, policies: POLICIES, namespaces: NAMESPACES },
    output: { workloads: stats.workloads, services: stats.services, authorizations: stats.policies },
    translation: { ingestMs, translateMs, heapMiB: heapTranslator, podChangeUs },
    controlPlane: { firstPushMs, heapMiB: heapCp, clients: CLIENTS, clientsSyncMs, podChangeToAllAckedMs: changeMs },
  };
  writeFileSync(join(dir, 'control-plane-latest.json'), `${JSON.stringify(result, null, 2)}\n`);
  console.log('\nwrote bench/results/control-plane-latest.json');
}

import test from 'ava';
import type { KubeObject } from '../../src/control-plane/kube-objects.ts';
import { Translator } from '../../src/control-plane/translator.ts';
import { ResourceSnapshot } from '../../src/workload-api/snapshot.ts';
import { snapshotJson } from './golden.ts';

// Objects with fields of the wrong type (what a hand-written --config-dir file may hold): the translator neither
// throws nor fails a whole translation; wrong fields are reported and dropped, and the snapshot stays decodable.

/** A small seeded PRNG (mulberry32), so every run mutates the same way. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const WEIRD: readonly unknown[] = [5, 'x', null, [], {}, true, { a: 1 }, [1, 'b'], -1, 1e9, '10.0.0.300', [{}]];

const BASE: Record<string, (n: number) => KubeObject> = {
  Pod: (n) => ({ metadata: { name: `p${n}`, namespace: 'ns', labels: { app: 'a', 'istio.io/use-waypoint': 'wp' }, ownerReferences: [{ kind: 'ReplicaSet', name: 'a-1', controller: true }] }, spec: { nodeName: 'n', containers: [{ ports: [{ name: 'http', containerPort: 80 }] }] }, status: { phase: 'Running', podIP: '10.0.0.1', podIPs: [{ ip: '10.0.0.1' }], conditions: [{ type: 'Ready', status: 'True' }] } }) as KubeObject,
  Service: (n) => ({ metadata: { name: `s${n}`, namespace: 'ns', labels: { 'istio.io/use-waypoint': 'wp', 'istio.io/use-waypoint-canary': 'wp' }, annotations: { 'istio.io/use-waypoint-canary-weight': '10' } }, spec: { selector: { app: 'a' }, clusterIP: '10.96.0.1', ports: [{ name: 'http', port: 80, targetPort: 'http' }] } }) as KubeObject,
  ServiceEntry: (n) => ({ metadata: { name: `se${n}`, namespace: 'ns' }, spec: { hosts: ['a.com'], addresses: ['1.2.3.4'], ports: [{ number: 80, name: 'http' }], endpoints: [{ address: '1.1.1.1', ports: { http: 8080 } }], workloadSelector: { labels: { app: 'a' } } } }) as KubeObject,
  WorkloadEntry: (n) => ({ metadata: { name: `we${n}`, namespace: 'ns' }, spec: { address: '2.2.2.2', labels: { app: 'a' }, locality: 'a/b/c', weight: 2, ports: { http: 81 } } }) as KubeObject,
  AuthorizationPolicy: (n) => ({ metadata: { name: `ap${n}`, namespace: 'ns' }, spec: { selector: { matchLabels: { app: 'a' } }, rules: [{ from: [{ source: { principals: ['a'], ipBlocks: ['1.2.3.4'] } }], to: [{ operation: { ports: ['80'], methods: ['GET'] } }], when: [{ key: 'source.ip', values: ['1.2.3.4'] }] }] } }) as KubeObject,
  PeerAuthentication: (n) => ({ metadata: { name: `pa${n}`, namespace: 'ns' }, spec: { selector: { matchLabels: { app: 'a' } }, mtls: { mode: 'STRICT' }, portLevelMtls: { '80': { mode: 'PERMISSIVE' } } } }) as KubeObject,
  Gateway: () => ({ metadata: { name: 'wp', namespace: 'ns', labels: { 'istio.io/waypoint-for': 'all' } }, spec: { gatewayClassName: 'istio-waypoint', listeners: [{ protocol: 'HBONE', port: 15008, allowedRoutes: { namespaces: { from: 'Selector', selector: { matchLabels: { a: 'b' }, matchExpressions: [{ key: 'a', operator: 'In', values: ['b'] }] } } } }] }, status: { addresses: [{ type: 'IPAddress', value: '10.9.9.9' }] } }) as KubeObject,
  Namespace: () => ({ metadata: { name: 'ns', labels: { 'istio.io/use-waypoint': 'wp', a: 'b' }, annotations: { 'networking.istio.io/traffic-distribution': 'PreferClose' } } }),
  Node: () => ({ metadata: { name: 'n', labels: { 'topology.kubernetes.io/zone': 'z' } } }),
  EndpointSlice: (n) => ({ metadata: { name: `es${n}`, namespace: 'ns', labels: { 'kubernetes.io/service-name': 's1' } }, endpoints: [{ addresses: ['3.3.3.3'] }, { addresses: ['10.0.0.1'], targetRef: { kind: 'Pod', name: 'p1' } }], ports: [{ name: 'http', port: 80 }] }) as KubeObject,
  GatewayClass: () => ({ metadata: { name: 'istio-waypoint' }, spec: { controllerName: 'istio.io/mesh-controller' } }) as KubeObject,
};

function mutate(value: unknown, random: () => number, depth: number): unknown {
  if (depth > 4 || value === null || typeof value !== 'object') return value;
  const obj = value as Record<string, unknown>;
  for (const k of Object.keys(obj)) {
    if (depth > 0 && random() < 0.25) obj[k] = WEIRD[Math.floor(random() * WEIRD.length)];
    else obj[k] = mutate(obj[k], random, depth + 1);
  }
  return obj;
}

test('fuzzed field types: nothing throws, no translation fails as a whole, the snapshot decodes', (t) => {
  const random = prng(42);
  const snapshot = new ResourceSnapshot();
  const translator = new Translator({ snapshot, autoFlush: false });
  const kinds = Object.keys(BASE);
  for (let i = 0; i < 1500; i++) {
    const kind = kinds[i % kinds.length]!;
    const obj = mutate(BASE[kind]!(i % 5), random, 0) as KubeObject;
    t.notThrows(() => {
      translator.change({ kind, type: random() < 0.1 ? 'delete' : 'upsert', object: obj });
      translator.flush();
    });
  }
  const wholeFailures = translator.problems().filter((p) => p.report.problems.some((x) => x.startsWith('<translation>')));
  t.deepEqual(wholeFailures, []);
  t.true(translator.problems().some((p) => p.report.problems.some((x) => x.includes('; ignored'))), 'wrong types were reported');
  t.notThrows(() => snapshotJson(snapshot));
});

test('a wrong type drops only that field, with its path', (t) => {
  const snapshot = new ResourceSnapshot();
  const translator = new Translator({ snapshot, autoFlush: false });
  translator.change({
    kind: 'Pod',
    type: 'upsert',
    object: { metadata: { name: 'p', namespace: 'ns', labels: { app: 'a', bad: 7 } }, spec: { nodeName: 3, containers: 'nope' }, status: { podIP: '10.0.0.1', conditions: [{ type: 'Ready', status: 'True' }, 'junk'] } } as unknown as KubeObject,
  });
  translator.change({ kind: 'Node', type: 'upsert', object: { metadata: { name: 'n1', labels: 'zone-a' } } as unknown as KubeObject });
  translator.flush();
  const w = (snapshotJson(snapshot).addresses['Kubernetes//Pod/ns/p'] as { workload: { node: string; status: string; canonicalName: string } }).workload;
  t.like(w, { node: '', status: 'HEALTHY', canonicalName: 'a' });
  t.deepEqual(translator.reportOf('Pod', 'ns', 'p')?.problems, [
    'metadata.labels.bad: must be a string, got number; ignored',
    'spec.nodeName: must be a string, got number; ignored',
    'spec.containers: must be a list, got string; ignored',
    'status.conditions[1]: must be an object, got string; ignored',
  ]);
  t.deepEqual(translator.reportOf('Node', undefined, 'n1')?.problems, ['metadata.labels: must be a map of strings, got string; ignored']);
});

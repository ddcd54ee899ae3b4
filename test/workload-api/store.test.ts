import test from 'ava';
import { canonicalIp, ipFromBytes, ipToBytes } from '../../src/workload-api/convert.ts';
import { encodeMessage, TypeUrl } from '../../src/workload-api/proto.ts';
import { WorkloadStore } from '../../src/workload-api/store.ts';
import { addressHandler, authorizationHandler } from '../../src/workload-api/store-handlers.ts';
import type { XdsResource } from '../../src/workload-api/xds-types.ts';

const ip = (text: string) => ipToBytes(text);

function workloadResource(uid: string, fields: Record<string, unknown> = {}): XdsResource {
  const [, , , ns = 'default', name = uid] = uid.split('/'); // cluster/group/kind/namespace/name
  return {
    name: uid,
    version: '1',
    typeUrl: TypeUrl.address,
    value: encodeMessage('istio.workload.Address', { workload: { uid, name, namespace: ns, ...fields } }, { unchecked: true }),
  };
}

function serviceResource(namespace: string, hostname: string, fields: Record<string, unknown> = {}): XdsResource {
  return {
    name: `${namespace}/${hostname}`,
    version: '1',
    typeUrl: TypeUrl.address,
    value: encodeMessage('istio.workload.Address', { service: { name: hostname.split('.')[0], namespace, hostname, ...fields } }, { unchecked: true }),
  };
}

const raw = (name: string, value: Buffer, typeUrl: string = TypeUrl.address): XdsResource => ({ name, version: '1', typeUrl, value });

test('ip bytes convert both ways in canonical form', (t) => {
  t.is(ipFromBytes(Buffer.from([10, 0, 0, 1])), '10.0.0.1');
  t.is(ipFromBytes(ipToBytes('fd00:0:0::1')), 'fd00::1');
  t.is(ipFromBytes(Buffer.from([1, 2, 3])), undefined);
  t.is(canonicalIp('FD00::0001'), 'fd00::1');
  t.is(canonicalIp('10.0.0.256'), undefined);
  t.deepEqual([...ipToBytes('::1')], [...Array(15).fill(0), 1]);
});

test('workloads are indexed by uid and network/ip, with xDS defaults applied', (t) => {
  const store = new WorkloadStore();
  const rejected = addressHandler(store).handle(
    [workloadResource('Kubernetes//Pod/default/a', { addresses: [ip('10.0.0.1'), ip('fd00::1')], network: 'n1', tunnelProtocol: 'HBONE', capacity: { value: 3 } })],
    [],
  );
  t.deepEqual(rejected, []);
  const w = store.workloadByAddress('n1', '10.0.0.1');
  t.is(w?.uid, 'Kubernetes//Pod/default/a');
  t.is(store.workloadByAddress('n1', 'fd00::1'), w);
  t.is(store.workloadByAddress('', '10.0.0.1'), undefined, 'the network is part of the key');
  t.like(w, { trustDomain: 'cluster.local', serviceAccount: 'default', clusterId: 'Kubernetes', tunnelProtocol: 'HBONE', capacity: 3, workloadType: 'deployment' });
});

test('host-network workloads are never found by IP', (t) => {
  const store = new WorkloadStore();
  addressHandler(store).handle([workloadResource('c//Pod/ns/h', { addresses: [ip('10.0.0.9')], networkMode: 'HOST_NETWORK' })], []);
  t.truthy(store.workloadByUid('c//Pod/ns/h'));
  t.is(store.workloadByAddress('', '10.0.0.9'), undefined);
});

test('services by key, VIP and hostname; endpoints come from workloads, even before the service arrives', (t) => {
  const store = new WorkloadStore();
  const handler = addressHandler(store);
  const key = 'default/reviews.default.svc.cluster.local';
  handler.handle([workloadResource('c//Pod/default/r1', { addresses: [ip('10.0.0.1')], services: { [key]: { ports: [{ servicePort: 9080, targetPort: 9080 }] } } })], []);
  t.deepEqual(store.endpoints('default', 'reviews.default.svc.cluster.local').map((e) => e.workload.uid), ['c//Pod/default/r1'], 'staged');
  handler.handle([serviceResource('default', 'reviews.default.svc.cluster.local', { addresses: [{ network: '', address: ip('10.96.0.10') }], ports: [{ servicePort: 9080, targetPort: 9080 }] })], []);
  t.is(store.serviceByVip('', '10.96.0.10')?.hostname, 'reviews.default.svc.cluster.local');
  t.is(store.servicesByHostname('reviews.default.svc.cluster.local').length, 1);
  handler.handle([workloadResource('c//Pod/default/r2', { addresses: [ip('10.0.0.2')], services: { [key]: { ports: [{ servicePort: 9080, targetPort: 0 }] } } })], []);
  t.deepEqual(store.endpoints('default', 'reviews.default.svc.cluster.local').map((e) => e.workload.uid).sort(), ['c//Pod/default/r1', 'c//Pod/default/r2']);
  handler.handle([], ['c//Pod/default/r1', key]);
  t.is(store.service('default', 'reviews.default.svc.cluster.local'), undefined);
  t.is(store.serviceByVip('', '10.96.0.10'), undefined);
  t.deepEqual(store.endpoints('default', 'reviews.default.svc.cluster.local').map((e) => e.workload.uid), ['c//Pod/default/r2']);
  t.deepEqual(store.counts(), { workloads: 1, services: 0, policies: 0 });
});

test('a VIP shared by several services resolves to the canonical one', (t) => {
  const store = new WorkloadStore();
  const vip = [{ network: '', address: ip('10.96.0.1') }];
  addressHandler(store).handle([serviceResource('a', 'x.a', { addresses: vip }), serviceResource('b', 'x.b', { addresses: vip, canonical: true }), serviceResource('c', 'x.c', { addresses: vip })], []);
  t.is(store.serviceByVip('', '10.96.0.1')?.namespace, 'b');
});

test('an updated workload moves its IP index and a removed one frees it for the older owner', (t) => {
  const store = new WorkloadStore();
  const handler = addressHandler(store);
  handler.handle([workloadResource('c//Pod/ns/old', { addresses: [ip('10.0.0.5')] })], []);
  handler.handle([workloadResource('c//Pod/ns/new', { addresses: [ip('10.0.0.5')] })], []);
  t.is(store.workloadByAddress('', '10.0.0.5')?.uid, 'c//Pod/ns/new');
  handler.handle([], ['c//Pod/ns/new']);
  t.is(store.workloadByAddress('', '10.0.0.5')?.uid, 'c//Pod/ns/old');
  handler.handle([workloadResource('c//Pod/ns/old', { addresses: [ip('10.0.0.6')] })], []);
  t.is(store.workloadByAddress('', '10.0.0.5'), undefined);
  t.is(store.workloadByAddress('', '10.0.0.6')?.uid, 'c//Pod/ns/old');
});

const badAddresses: Array<[string, XdsResource, RegExp]> = [
  ['neither workload nor service', raw('x', encodeMessage('istio.workload.Address', {})), /^address: unknown address type/],
  ['truncated protobuf', raw('x', encodeMessage('istio.workload.Address', { workload: { uid: 'u', name: 'n' } }).subarray(0, 5)), /^malformed protobuf: /],
  ['garbage bytes', raw('x', Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])), /^malformed protobuf: /],
  ['wrong type URL', raw('x', encodeMessage('istio.workload.Address', {}), 'type.googleapis.com/istio.workload.Bogus'), /is not type\.googleapis\.com\/istio\.workload\.Address/],
  ['an IP of 3 bytes', workloadResource('c//Pod/ns/a', { addresses: [Buffer.from([1, 2, 3])] }), /^workload\.addresses\[0\]: must be 4 or 16 bytes, got 3$/],
  ['an empty uid', workloadResource('', {}), /^workload\.uid: must not be empty$/],
  ['an unknown enum value', workloadResource('c//Pod/ns/a', { tunnelProtocol: 7 }), /^workload\.tunnel_protocol: unknown enum value 7$/],
  ['legacy istio mTLS', workloadResource('c//Pod/ns/a', { tunnelProtocol: 'LEGACY_ISTIO_MTLS' }), /LEGACY_ISTIO_MTLS is not supported/],
  ['a services key without a slash', workloadResource('c//Pod/ns/a', { services: { nohost: { ports: [] } } }), /^workload\.services\["nohost"\]: key must be <namespace>\/<hostname>$/],
  ['a gateway without destination', workloadResource('c//Pod/ns/a', { waypoint: { hboneMtlsPort: 15008 } }), /^workload\.waypoint\.destination: must set hostname or address$/],
  ['a service VIP of 5 bytes', serviceResource('ns', 'svc.ns', { addresses: [{ network: '', address: Buffer.from([1, 2, 3, 4, 5]) }] }), /^service\.addresses\[0\]\.address: must be 4 or 16 bytes, got 5$/],
  ['a service port 0', serviceResource('ns', 'svc.ns', { ports: [{ servicePort: 0, targetPort: 80 }] }), /^service\.ports\[0\]\.service_port: must be 1-65535, got 0$/],
  ['an unknown LB scope', serviceResource('ns', 'svc.ns', { loadBalancing: { routingPreference: [0] } }), /^service\.load_balancing\.routing_preference\[0\]: unknown enum value "UNSPECIFIED_SCOPE"$/],
];
for (const [what, resource, reason] of badAddresses) {
  test(`NACK: ${what}; the good resource beside it applies and the last good version stays`, (t) => {
    const store = new WorkloadStore();
    const handler = addressHandler(store);
    const lastGood = workloadResource('c//Pod/ns/a', { addresses: [ip('10.0.0.1')] });
    handler.handle([lastGood], []);
    const rejected = handler.handle([resource, workloadResource('c//Pod/ns/good', { addresses: [ip('10.0.0.2')] })], []);
    t.is(rejected.length, 1);
    t.is(rejected[0]?.name, resource.name);
    t.regex(rejected[0]?.reason ?? '', reason);
    t.truthy(store.workloadByUid('c//Pod/ns/good'));
    t.is(store.workloadByUid('c//Pod/ns/a')?.addresses[0], '10.0.0.1');
  });
}

test('several problems of one resource are reported together', (t) => {
  const rejected = addressHandler(new WorkloadStore()).handle([workloadResource('', { addresses: [Buffer.from([1])], status: 9 })], []);
  t.deepEqual(rejected[0]?.reason.split('; '), ['workload.uid: must not be empty', 'workload.addresses[0]: must be 4 or 16 bytes, got 1', 'workload.status: unknown enum value 9']);
});

test('a duplicate uid within one response is rejected', (t) => {
  const store = new WorkloadStore();
  const rejected = addressHandler(store).handle([workloadResource('c//Pod/ns/a', { addresses: [ip('10.0.0.1')] }), { ...workloadResource('c//Pod/ns/a', { addresses: [ip('10.0.0.2')] }), name: 'other-name' }], []);
  t.deepEqual(rejected.map((r) => r.name), ['other-name']);
  t.regex(rejected[0]?.reason ?? '', /duplicate uid c\/\/Pod\/ns\/a/);
  t.is(store.workloadByUid('c//Pod/ns/a')?.addresses[0], '10.0.0.1');
});

function policy(namespace: string, name: string, fields: Record<string, unknown> = {}): XdsResource {
  return { name: `${namespace}/${name}`, version: '1', typeUrl: TypeUrl.authorization, value: encodeMessage('istio.security.Authorization', { name, namespace, ...fields }, { unchecked: true }) };
}

test('policies apply by scope: every global one, namespace-wide ones of its namespace, and those it selects', (t) => {
  const store = new WorkloadStore();
  const rejected = authorizationHandler(store).handle(
    [
      policy('istio-system', 'global', { scope: 'GLOBAL', action: 'DENY', rules: [{ clauses: [{ matches: [{ notDestinationPorts: [9999] }] }] }] }),
      policy('prod', 'ns-wide', { scope: 'NAMESPACE' }),
      policy('prod', 'selected', { scope: 'WORKLOAD_SELECTOR', rules: [{ clauses: [{ matches: [{ principals: [{ prefix: 'cluster.local/ns/prod/' }, { presence: {} }, {}] }] }] }] }),
      policy('prod', 'not-selected', { scope: 'WORKLOAD_SELECTOR' }),
      policy('other', 'ns-wide', { scope: 'NAMESPACE' }),
      policy('other', 'global-too', { scope: 'GLOBAL' }),
    ],
    [],
  );
  t.deepEqual(rejected, []);
  addressHandler(store).handle([workloadResource('c//Pod/prod/a', { authorizationPolicies: ['prod/selected'] })], []);
  const names = store.policiesFor(store.workloadByUid('c//Pod/prod/a')!).map((p) => `${p.namespace}/${p.name}`).sort();
  t.deepEqual(names, ['istio-system/global', 'other/global-too', 'prod/ns-wide', 'prod/selected']);
  const selected = store.policy('prod', 'selected');
  t.deepEqual(selected?.rules[0]?.clauses[0]?.matches[0]?.principals, [{ kind: 'prefix', value: 'cluster.local/ns/prod/' }, { kind: 'presence' }], 'an empty StringMatch is dropped');
  authorizationHandler(store).handle([], ['prod/selected', 'other/global-too']);
  t.is(store.policy('prod', 'selected'), undefined);
  t.deepEqual(store.policiesFor(store.workloadByUid('c//Pod/prod/a')!).map((p) => p.name).sort(), ['global', 'ns-wide']);
});

test('a policy with an unknown action or a bad port is NACKed with its path', (t) => {
  const rejected = authorizationHandler(new WorkloadStore()).handle(
    [policy('ns', 'a', { action: 5 }), policy('ns', 'b', { rules: [{ clauses: [{ matches: [{ destinationPorts: [70000] }] }] }] })],
    [],
  );
  t.deepEqual(rejected.map((r) => r.reason), ['authorization.action: unknown enum value 5', 'authorization.rules[0].clauses[0].matches[0].destination_ports[0]: must be 1-65535, got 70000']);
});

test('servicesByVip lists every service on a VIP in arrival order, and forgets removed ones', (t) => {
  const store = new WorkloadStore();
  const handler = addressHandler(store);
  const vip = [{ network: 'n1', address: ip('10.96.0.20') }];
  handler.handle([serviceResource('a', 'y.a', { addresses: vip }), serviceResource('b', 'y.b', { addresses: vip, canonical: true }), serviceResource('c', 'y.c', { addresses: vip })], []);
  t.deepEqual(store.servicesByVip('n1', '10.96.0.20').map((s) => s.namespace), ['a', 'b', 'c']);
  t.deepEqual(store.servicesByVip('', '10.96.0.20'), [], 'the network is part of the key');
  handler.handle([], ['b/y.b']);
  t.deepEqual(store.servicesByVip('n1', '10.96.0.20').map((s) => s.namespace), ['a', 'c']);
});

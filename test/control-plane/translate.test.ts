import test from 'ava';
import type { KubeObject } from '../../src/control-plane/kube-objects.ts';
import { Translator } from '../../src/control-plane/translator.ts';
import type { TranslatorSettings } from '../../src/control-plane/view.ts';
import { authorize } from '../../src/ztunnel/rbac.ts';
import type { AuthorizationPolicy } from '../../src/workload-api/types.ts';
import { ResourceSnapshot } from '../../src/workload-api/snapshot.ts';
import type { Service, Workload } from '../../src/workload-api/types.ts';
import { snapshotJson } from './golden.ts';

// The translation rules one by one (reference istio-ambient.md §2.4, §3.3–§3.5), on a translator fed directly.

type Obj = [kind: string, object: KubeObject];

function translate(objects: readonly Obj[], settings: Partial<TranslatorSettings> = {}) {
  const snapshot = new ResourceSnapshot();
  const translator = new Translator({ snapshot, autoFlush: false, settings });
  for (const [kind, object] of objects) translator.change({ kind, type: 'upsert', object });
  translator.markAll();
  translator.flush();
  const json = snapshotJson(snapshot);
  const workload = (uid: string) => (json.addresses[uid] as { workload?: Workload } | undefined)?.workload;
  const service = (key: string) => (json.addresses[key] as { service?: Service } | undefined)?.service;
  return { translator, json, workload, service };
}

const ns = (name: string, labels: Record<string, string> = {}, annotations: Record<string, string> = {}): Obj => ['Namespace', { metadata: { name, labels, annotations } }];
const pod = (name: string, extra: Record<string, unknown> = {}, labels: Record<string, string> = { app: 'web' }): Obj => [
  'Pod',
  {
    metadata: { name, namespace: 'ns1', labels },
    spec: { nodeName: 'n1', containers: [{ name: 'c', ports: [{ name: 'http', containerPort: 8080 }, { name: 'udp-dns', containerPort: 53, protocol: 'UDP' }] }] },
    status: { phase: 'Running', podIP: '10.0.0.1', conditions: [{ type: 'Ready', status: 'True' }] },
    ...extra,
  } as KubeObject,
];
const svc = (name: string, spec: Record<string, unknown>, labels: Record<string, string> = {}, annotations: Record<string, string> = {}): Obj => [
  'Service',
  { metadata: { name, namespace: 'ns1', labels, annotations }, spec: { selector: { app: 'web' }, clusterIP: '10.96.0.1', ports: [{ name: 'http', port: 80, targetPort: 8080 }], ...spec } } as KubeObject,
];
const waypoint = (name: string, namespace: string, labels: Record<string, string> = {}, status: unknown = { addresses: [{ type: 'Hostname', value: `${name}.${namespace}.svc.cluster.local` }] }, listeners: unknown[] = [{ name: 'mesh', port: 15008, protocol: 'HBONE' }]): Obj => [
  'Gateway',
  { metadata: { name, namespace, labels }, spec: { gatewayClassName: 'istio-waypoint', listeners }, status } as KubeObject,
];
const UID = 'Kubernetes//Pod/ns1/p';
const SVC = 'ns1/s.ns1.svc.cluster.local';

test('pod: uid, addresses, tunnel from the redirection annotation or the tunnel label, status, network mode', (t) => {
  const table: Array<[string, Record<string, unknown>, Partial<Workload> | undefined]> = [
    ['plain', {}, { uid: UID, addresses: ['10.0.0.1'], tunnelProtocol: 'NONE', nativeTunnel: false, status: 'HEALTHY', networkMode: 'STANDARD', serviceAccount: 'default' }],
    ['captured', { metadata: { name: 'p', namespace: 'ns1', annotations: { 'ambient.istio.io/redirection': 'enabled' } } }, { tunnelProtocol: 'HBONE' }],
    ['pending is not captured', { metadata: { name: 'p', namespace: 'ns1', annotations: { 'ambient.istio.io/redirection': 'pending' } } }, { tunnelProtocol: 'NONE' }],
    ['native HBONE', { metadata: { name: 'p', namespace: 'ns1', labels: { 'networking.istio.io/tunnel': 'http' } } }, { tunnelProtocol: 'HBONE', nativeTunnel: true }],
    ['dual stack', { status: { phase: 'Running', podIP: '10.0.0.1', podIPs: [{ ip: '10.0.0.1' }, { ip: 'fd00::0001' }] } }, { addresses: ['10.0.0.1', 'fd00::1'], status: 'UNHEALTHY' }],
    ['not ready', { status: { phase: 'Running', podIP: '10.0.0.1', conditions: [{ type: 'Ready', status: 'False' }] } }, { status: 'UNHEALTHY' }],
    ['deleting', { metadata: { name: 'p', namespace: 'ns1', deletionTimestamp: '2026-01-01T00:00:00Z' } }, { status: 'UNHEALTHY' }],
    ['host network', { spec: { nodeName: 'n1', hostNetwork: true, serviceAccountName: 'sa1' } }, { networkMode: 'HOST_NETWORK', serviceAccount: 'sa1' }],
    ['succeeded', { status: { phase: 'Succeeded', podIP: '10.0.0.1' } }, undefined],
    ['failed', { status: { phase: 'Failed', podIP: '10.0.0.1' } }, undefined],
    ['no IP yet', { status: { phase: 'Pending' } }, undefined],
  ];
  for (const [name, extra, expected] of table) {
    const { workload } = translate([pod('p', extra)]);
    if (expected === undefined) t.is(workload(UID), undefined, name);
    else t.like(workload(UID), expected, name);
  }
});

test('pod: workload name from the owner (Deployment via ReplicaSet, CronJob via Job, else the owner or the pod); canonical labels', (t) => {
  const owned = (kind: string, owner: string, labels: Record<string, string>) => pod('p', { metadata: { name: 'p', namespace: 'ns1', labels, ownerReferences: [{ kind, name: owner, controller: true }] } });
  const table: Array<[Obj, string, string, string]> = [
    [owned('ReplicaSet', 'web-7d9f8', { 'pod-template-hash': '7d9f8' }), 'web', 'web', 'latest'],
    [owned('ReplicaSet', 'web-7d9f8', {}), 'web-7d9f8', 'web-7d9f8', 'latest'],
    [owned('Job', 'backup-28391000', {}), 'backup', 'backup', 'latest'],
    [owned('Job', 'once', {}), 'once', 'once', 'latest'],
    [owned('StatefulSet', 'db', { app: 'database', version: 'v2' }), 'db', 'database', 'v2'],
    [owned('DaemonSet', 'ds', { 'app.kubernetes.io/name': 'n', 'app.kubernetes.io/version': '1.2', app: 'x' }), 'ds', 'n', '1.2'],
    [owned('DaemonSet', 'ds', { 'service.istio.io/canonical-name': 'c', 'service.istio.io/canonical-revision': 'r', app: 'x', version: 'v' }), 'ds', 'c', 'r'],
    [pod('p', {}, {}), 'p', 'p', 'latest'],
  ];
  for (const [obj, workloadName, canonicalName, canonicalRevision] of table) t.like(translate([obj]).workload(UID), { workloadName, canonicalName, canonicalRevision, workloadType: 'pod' }, workloadName);
});

test('pod: services map with named target ports resolved (TCP only), unresolvable ones dropped; selector-less services via EndpointSlices', (t) => {
  const { workload } = translate([
    pod('p'),
    svc('s', { ports: [{ name: 'http', port: 80, targetPort: 'http' }, { name: 'dns', port: 53, targetPort: 'udp-dns' }, { name: 'raw', port: 81, targetPort: 9000 }, { name: 'same', port: 82 }] }),
    svc('other', { selector: { app: 'db' } }),
    svc('manual', { selector: undefined, ports: [{ name: 'web', port: 80 }] }),
    ['EndpointSlice', { metadata: { name: 'manual-1', namespace: 'ns1', labels: { 'kubernetes.io/service-name': 'manual' } }, endpoints: [{ addresses: ['10.0.0.1'], targetRef: { kind: 'Pod', name: 'p' } }], ports: [{ name: 'web', port: 8080 }] } as KubeObject],
    svc('ext', { type: 'ExternalName' }),
  ]);
  t.deepEqual(Object.keys((workload(UID)?.services ?? {}) as object).sort(), ['ns1/manual.ns1.svc.cluster.local', SVC]);
  t.deepEqual((workload(UID)?.services as unknown as Record<string, unknown>)[SVC], [
    { servicePort: 80, targetPort: 8080, appProtocol: 'UNKNOWN' },
    { servicePort: 81, targetPort: 9000, appProtocol: 'UNKNOWN' },
    { servicePort: 82, targetPort: 82, appProtocol: 'UNKNOWN' },
  ]);
  t.deepEqual((workload(UID)?.services as unknown as Record<string, unknown>)['ns1/manual.ns1.svc.cluster.local'], [{ servicePort: 80, targetPort: 8080, appProtocol: 'UNKNOWN' }]);
});

test('pod: locality from the node labels, cluster id and network from the settings and the system namespace', (t) => {
  const { workload } = translate([
    pod('p'),
    ['Node', { metadata: { name: 'n1', labels: { 'topology.kubernetes.io/region': 'r', 'topology.kubernetes.io/zone': 'z', 'topology.istio.io/subzone': 's' } } }],
    ns('istio-system', { 'topology.istio.io/network': 'net1' }),
  ]);
  t.like(workload(UID), { locality: { region: 'r', zone: 'z', subzone: 's' }, clusterId: 'Kubernetes', network: 'net1', node: 'n1' });
  t.is(translate([pod('p')]).workload(UID)?.locality, undefined, 'no node, no locality');
});

test('service: hostname, VIPs, ports with app protocol, load balancing, ip families; ExternalName not published', (t) => {
  const table: Array<[string, Obj[], Partial<Service> | undefined]> = [
    ['basic', [svc('s', { clusterIPs: ['10.96.0.1', 'fd00::10'], ipFamilies: ['IPv4', 'IPv6'] })], { hostname: 's.ns1.svc.cluster.local', addresses: [{ network: '', ip: '10.96.0.1' }, { network: '', ip: 'fd00::10' }], ipFamilies: 'DUAL', canonical: true, visibility: 'PUBLIC' }],
    ['headless', [svc('s', { clusterIP: 'None' })], { addresses: [], ipFamilies: 'AUTOMATIC' }],
    ['ipv6 only', [svc('s', { clusterIP: 'fd00::1', ipFamilies: ['IPv6'] })], { ipFamilies: 'IPV6_ONLY' }],
    [
      'protocols',
      [svc('s', { ports: [{ name: 'http-web', port: 1 }, { name: 'grpc', port: 2 }, { name: 'x', port: 3, appProtocol: 'HTTP2' }, { name: 'https', port: 4 }, { name: 'tcp', port: 5 }, { name: 'redis', port: 6 }, { name: 'h', port: 7, appProtocol: 'kubernetes.io/h2c' }, { name: 'tls-x', port: 8, targetPort: 'named' }] })],
      {
        ports: [
          { servicePort: 1, targetPort: 1, appProtocol: 'HTTP11' },
          { servicePort: 2, targetPort: 2, appProtocol: 'GRPC' },
          { servicePort: 3, targetPort: 3, appProtocol: 'HTTP2' },
          { servicePort: 4, targetPort: 4, appProtocol: 'TLS' },
          { servicePort: 5, targetPort: 5, appProtocol: 'TCP' },
          { servicePort: 6, targetPort: 6, appProtocol: 'UNKNOWN' },
          { servicePort: 7, targetPort: 7, appProtocol: 'HTTP2' },
          { servicePort: 8, targetPort: 0, appProtocol: 'TLS' },
        ],
      },
    ],
    ['internal traffic policy Local', [svc('s', { internalTrafficPolicy: 'Local' })], { loadBalancing: { routingPreference: ['NODE'], mode: 'STRICT', healthPolicy: 'ONLY_HEALTHY' } }],
    ['trafficDistribution', [svc('s', { trafficDistribution: 'PreferClose' })], { loadBalancing: { routingPreference: ['NETWORK', 'REGION', 'ZONE'], mode: 'FAILOVER', healthPolicy: 'ONLY_HEALTHY' } }],
    ['annotation PreferSameNode', [svc('s', {}, {}, { 'networking.istio.io/traffic-distribution': 'PreferSameNode' })], { loadBalancing: { routingPreference: ['NETWORK', 'REGION', 'ZONE', 'SUBZONE', 'NODE'], mode: 'FAILOVER', healthPolicy: 'ONLY_HEALTHY' } }],
    ['namespace annotation', [svc('s', {}), ns('ns1', {}, { 'networking.istio.io/traffic-distribution': 'PreferSameZone' })], { loadBalancing: { routingPreference: ['NETWORK', 'REGION', 'ZONE'], mode: 'FAILOVER', healthPolicy: 'ONLY_HEALTHY' } }],
    ['publishNotReadyAddresses', [svc('s', { publishNotReadyAddresses: true })], { loadBalancing: { routingPreference: [], mode: 'UNSPECIFIED_MODE', healthPolicy: 'ALLOW_ALL' } }],
    ['ingress-use-waypoint from the namespace', [svc('s', {}), ns('ns1', { 'istio.io/ingress-use-waypoint': 'true' })], { ingressUseWaypoint: true }],
    ['ExternalName', [svc('s', { type: 'ExternalName', externalName: 'x.com' })], undefined],
  ];
  for (const [name, objects, expected] of table) {
    const { service } = translate(objects);
    if (expected === undefined) t.is(service(SVC), undefined, name);
    else t.like(service(SVC), expected, name);
  }
});

const HOST_WP = (name: string, namespace: string) => ({ destination: { kind: 'hostname', namespace, hostname: `${name}.${namespace}.svc.cluster.local` }, hboneMtlsPort: 15008 });

test('waypoints: labels on service, pod and namespace; waypoint-for; none; a Gateway without address is not used', (t) => {
  const wpFor = (v: string) => ({ 'istio.io/waypoint-for': v });
  const table: Array<[string, Obj[], unknown, unknown, string?]> = [
    ['namespace label: services bound, workloads not (service waypoint)', [ns('ns1', { 'istio.io/use-waypoint': 'wp' }), waypoint('wp', 'ns1'), pod('p'), svc('s', {})], HOST_WP('wp', 'ns1'), undefined],
    ['waypoint for all: both', [ns('ns1', { 'istio.io/use-waypoint': 'wp' }), waypoint('wp', 'ns1', wpFor('all')), pod('p'), svc('s', {})], HOST_WP('wp', 'ns1'), HOST_WP('wp', 'ns1')],
    ['waypoint for workload: workloads only', [ns('ns1', { 'istio.io/use-waypoint': 'wp' }), waypoint('wp', 'ns1', wpFor('workload')), pod('p'), svc('s', {})], undefined, HOST_WP('wp', 'ns1'), 'UnsupportedTrafficType'],
    ['waypoint for none', [ns('ns1', { 'istio.io/use-waypoint': 'wp' }), waypoint('wp', 'ns1', wpFor('none')), pod('p'), svc('s', {})], undefined, undefined, 'UnsupportedTrafficType'],
    ['service label none overrides the namespace', [ns('ns1', { 'istio.io/use-waypoint': 'wp' }), waypoint('wp', 'ns1'), pod('p'), svc('s', {}, { 'istio.io/use-waypoint': 'none' })], undefined, undefined],
    ['pod label to a service-only waypoint', [waypoint('wp', 'ns1'), pod('p', {}, { app: 'web', 'istio.io/use-waypoint': 'wp' }), svc('s', {})], undefined, undefined],
    ['cross-namespace without allowedRoutes: denied', [svc('s', { }, { 'istio.io/use-waypoint': 'wp', 'istio.io/use-waypoint-namespace': 'shared' }), waypoint('wp', 'shared')], undefined, undefined, 'AttachmentDenied'],
    ['cross-namespace with from: All', [svc('s', {}, { 'istio.io/use-waypoint': 'wp', 'istio.io/use-waypoint-namespace': 'shared' }), waypoint('wp', 'shared', {}, undefined, [{ name: 'mesh', port: 15008, protocol: 'HBONE', allowedRoutes: { namespaces: { from: 'All' } } }])], HOST_WP('wp', 'shared'), undefined],
    ['cross-namespace with a matching Selector', [ns('ns1', { team: 'a' }), svc('s', {}, { 'istio.io/use-waypoint': 'wp', 'istio.io/use-waypoint-namespace': 'shared' }), waypoint('wp', 'shared', {}, undefined, [{ name: 'mesh', port: 15008, protocol: 'HBONE', allowedRoutes: { namespaces: { from: 'Selector', selector: { matchLabels: { team: 'a' } } } } }])], HOST_WP('wp', 'shared'), undefined],
    ['no status address yet', [svc('s', {}, { 'istio.io/use-waypoint': 'wp' }), waypoint('wp', 'ns1', {}, { addresses: [] })], undefined, undefined, 'WaypointIsNotReady'],
    ['a Gateway that does not exist', [svc('s', {}, { 'istio.io/use-waypoint': 'nope' })], undefined, undefined, 'WaypointIsNotReady'],
    ['only an IP in the status', [svc('s', {}, { 'istio.io/use-waypoint': 'wp' }), waypoint('wp', 'ns1', {}, { addresses: [{ type: 'IPAddress', value: '10.96.0.9' }] })], { destination: { kind: 'address', network: '', ip: '10.96.0.9' }, hboneMtlsPort: 15008 }, undefined],
    ['a waypoint service itself is never bound', [ns('ns1', { 'istio.io/use-waypoint': 'wp' }), waypoint('wp', 'ns1'), svc('s', {}, { 'gateway.istio.io/managed': 'istio.io-mesh-controller' })], undefined, undefined],
  ];
  for (const [name, objects, serviceWp, workloadWp, reason] of table) {
    const { service, workload, translator } = translate(objects);
    t.deepEqual(service(SVC)?.waypoint, serviceWp, `${name}: service`);
    t.deepEqual(workload(UID)?.waypoint, workloadWp, `${name}: workload`);
    if (reason) t.like(translator.reportOf('Service', 'ns1', 's')?.conditions[0], { type: 'istio.io/WaypointBound', status: 'False', reason }, name);
  }
});

test('ServiceEntry and WorkloadEntry: one service per host, inline endpoints and selected entries as workloads', (t) => {
  const { json, service, workload, translator } = translate([
    [
      'ServiceEntry',
      {
        metadata: { name: 'ext', namespace: 'ns1' },
        spec: {
          hosts: ['api.example.com', 'api2.example.com'],
          addresses: ['240.0.0.1', '240.1.0.0/16'],
          ports: [{ number: 443, name: 'https', protocol: 'TLS' }, { number: 80, name: 'http', protocol: 'HTTP', targetPort: 8080 }],
          resolution: 'STATIC',
          endpoints: [{ address: '192.0.2.1', ports: { http: 8081 } }, { address: 'backend.example.com', weight: 3, locality: 'us/east/1a' }],
          subjectAltNames: ['spiffe://cluster.local/ns/ns1/sa/ext'],
        },
      } as KubeObject,
    ],
    ['ServiceEntry', { metadata: { name: 'sel', namespace: 'ns1' }, spec: { hosts: ['db.internal'], ports: [{ number: 5432, name: 'tcp', protocol: 'TCP' }], resolution: 'NONE', workloadSelector: { labels: { app: 'db' } } } } as KubeObject],
    ['WorkloadEntry', { metadata: { name: 'vm1', namespace: 'ns1' }, spec: { address: '192.0.2.10', labels: { app: 'db' }, serviceAccount: 'db', network: 'vm-net' } } as KubeObject],
  ]);
  t.like(service('ns1/api.example.com'), {
    name: 'ext',
    hostname: 'api.example.com',
    addresses: [{ network: '', ip: '240.0.0.1' }, { network: '', ip: '240.1.0.0', prefixLength: 16 }],
    ports: [{ servicePort: 443, targetPort: 443, appProtocol: 'TLS' }, { servicePort: 80, targetPort: 8080, appProtocol: 'HTTP11' }],
    subjectAltNames: ['spiffe://cluster.local/ns/ns1/sa/ext'],
  });
  t.truthy(service('ns1/api2.example.com'));
  t.like(service('ns1/db.internal'), { loadBalancing: { routingPreference: [], mode: 'PASSTHROUGH', healthPolicy: 'ALLOW_ALL' } });
  const ep1 = workload('Kubernetes/networking.istio.io/ServiceEntry/ns1/ext/192.0.2.1');
  t.like(ep1, { addresses: ['192.0.2.1'], status: 'HEALTHY', capacity: 1 });
  t.deepEqual((ep1?.services as unknown as Record<string, unknown>)['ns1/api.example.com'], [{ servicePort: 443, targetPort: 443, appProtocol: 'UNKNOWN' }, { servicePort: 80, targetPort: 8081, appProtocol: 'UNKNOWN' }]);
  t.like(workload('Kubernetes/networking.istio.io/ServiceEntry/ns1/ext/backend.example.com'), { addresses: [], hostname: 'backend.example.com', capacity: 3, locality: { region: 'us', zone: 'east', subzone: '1a' } });
  const vm = workload('Kubernetes/networking.istio.io/WorkloadEntry/ns1/vm1');
  t.like(vm, { addresses: ['192.0.2.10'], serviceAccount: 'db', network: 'vm-net', canonicalName: 'db' });
  t.deepEqual(Object.keys(vm?.services as object), ['ns1/db.internal']);
  t.is(Object.keys(json.addresses).length, 6);
  t.deepEqual(translator.problems(), []);
});

test('bad input: counted against the object, the rest translated', (t) => {
  const { translator, workload, json } = translate([
    pod('p', { status: { phase: 'Running', podIPs: [{ ip: '10.0.0.1' }, { ip: 'nonsense' }] } }),
    ['ServiceEntry', { metadata: { name: 'bad', namespace: 'ns1' }, spec: { hosts: ['ok.example.com', 'bad/host'], addresses: ['not-ip'], ports: [{ number: 0 }] } } as KubeObject],
    ['WorkloadEntry', { metadata: { name: 'noaddr', namespace: 'ns1' }, spec: {} } as KubeObject],
    ['Pod', { metadata: { namespace: 'ns1' } }],
  ]);
  t.deepEqual(workload(UID)?.addresses, ['10.0.0.1']);
  t.deepEqual(translator.reportOf('Pod', 'ns1', 'p')?.problems, ['status.podIPs[1]: "nonsense" is not an IP address']);
  t.deepEqual(translator.reportOf('ServiceEntry', 'ns1', 'bad')?.problems, ['spec.hosts[1]: "bad/host" is not a host name', 'spec.addresses[0]: "not-ip" is not an IP address or CIDR', 'spec.ports[0].number: must be 1-65535, got 0']);
  t.truthy(json.addresses['ns1/ok.example.com']);
  t.deepEqual(translator.reportOf('WorkloadEntry', 'ns1', 'noaddr')?.problems, ['spec.address: is required']);
  t.is(translator.problems().length, 4, 'the unnamed pod too');
});

test('EndpointSlice endpoints without a pod are HOST_NETWORK workloads of their Service; pod endpoints and FQDN slices are not', (t) => {
  const slice = (name: string, addressType: string, endpoints: unknown[]): Obj => [
    'EndpointSlice',
    { metadata: { name, namespace: 'ns1', labels: { 'kubernetes.io/service-name': 'manual' } }, addressType, endpoints, ports: [{ name: 'web', port: 8080 }, { name: 'dns', port: 53, protocol: 'UDP' }] } as KubeObject,
  ];
  const { workload, json, translator } = translate([
    pod('p'),
    svc('manual', { selector: undefined, ports: [{ name: 'web', port: 80 }, { name: 'dns', port: 53, protocol: 'UDP' }] }),
    slice('manual-a', 'IPv4', [
      { addresses: ['10.0.0.1'], targetRef: { kind: 'Pod', name: 'p' } },
      { addresses: ['192.168.1.5'], nodeName: 'n9' },
      { addresses: ['192.168.1.6'], conditions: { ready: false } },
      { addresses: ['bogus'] },
    ]),
    slice('manual-fqdn', 'FQDN', [{ addresses: ['db.example.com'] }]),
  ]);
  const uid = (ip: string) => `Kubernetes/discovery.k8s.io/EndpointSlice/ns1/manual-a/${ip}`;
  t.like(workload(uid('192.168.1.5')), { addresses: ['192.168.1.5'], networkMode: 'HOST_NETWORK', status: 'HEALTHY', node: 'n9', tunnelProtocol: 'NONE', authorizationPolicies: [] });
  t.deepEqual((workload(uid('192.168.1.5'))?.services as unknown as Record<string, unknown>)['ns1/manual.ns1.svc.cluster.local'], [{ servicePort: 80, targetPort: 8080, appProtocol: 'UNKNOWN' }]);
  t.like(workload(uid('192.168.1.6')), { status: 'UNHEALTHY' });
  t.is(workload(uid('10.0.0.1')), undefined, 'the pod endpoint is the pod workload');
  t.truthy(workload(UID));
  t.deepEqual(Object.keys(json.addresses).filter((k) => k.includes('EndpointSlice')).sort(), [uid('192.168.1.5'), uid('192.168.1.6')]);
  t.deepEqual(translator.reportOf('EndpointSlice', 'ns1', 'manual-a')?.problems, ['endpoints[3].addresses[0]: "bogus" is not an IP address']);
});

test('canary waypoint: weighted_waypoints [primary 100-w, canary w] with the primary as waypoint; a bad weight or a missing canary is a problem', (t) => {
  const canary = (weight: string, canaryName = 'wp2'): Obj[] => [
    waypoint('wp', 'ns1'),
    waypoint('wp2', 'ns1'),
    svc('s', {}, { 'istio.io/use-waypoint': 'wp', 'istio.io/use-waypoint-canary': canaryName }, { 'istio.io/use-waypoint-canary-weight': weight }),
  ];
  const ok = translate(canary('20'));
  t.deepEqual(ok.service(SVC)?.waypoint, HOST_WP('wp', 'ns1'));
  t.deepEqual(ok.service(SVC)?.weightedWaypoints, [{ destination: HOST_WP('wp', 'ns1'), weight: 80 }, { destination: HOST_WP('wp2', 'ns1'), weight: 20 }]);
  const bad = translate(canary('150'));
  t.deepEqual(bad.service(SVC)?.weightedWaypoints, []);
  t.deepEqual(bad.translator.reportOf('Service', 'ns1', 's')?.problems, ['metadata.annotations["istio.io/use-waypoint-canary-weight"]: must be 0-100, got "150"; no canary']);
  const missing = translate(canary('10', 'ghost'));
  t.deepEqual(missing.service(SVC)?.weightedWaypoints, []);
  t.regex(missing.translator.reportOf('Service', 'ns1', 's')?.problems[0] ?? '', /canary waypoint ns1\/ghost is not usable \(WaypointIsNotReady\)/);
  const fromNamespace = translate([waypoint('wp', 'ns1'), waypoint('wp2', 'ns1'), ns('ns1', { 'istio.io/use-waypoint': 'wp', 'istio.io/use-waypoint-canary': 'wp2' }, { 'istio.io/use-waypoint-canary-weight': '50' }), svc('s', {})]);
  t.deepEqual(fromNamespace.service(SVC)?.weightedWaypoints.map((w) => w.weight), [50, 50]);
});

test('ServiceEntry host collisions: a Kubernetes Service wins, else the oldest entry; the loser reports it', (t) => {
  const se = (name: string, created: string, hosts: string[]): Obj => [
    'ServiceEntry',
    { metadata: { name, namespace: 'ns1', creationTimestamp: created }, spec: { hosts, ports: [{ number: 80, name: 'http', protocol: 'HTTP' }] } } as KubeObject,
  ];
  const { json, translator } = translate([svc('s', {}), se('young', '2026-02-01T00:00:00Z', ['shared.example.com', 's.ns1.svc.cluster.local']), se('old', '2025-01-01T00:00:00Z', ['shared.example.com'])]);
  t.is((json.addresses['ns1/shared.example.com'] as { service: { name: string } }).service.name, 'old');
  t.is((json.addresses[SVC] as { service: { name: string } }).service.name, 's');
  t.deepEqual(translator.reportOf('ServiceEntry', 'ns1', 'young')?.problems, [
    'spec.hosts: shared.example.com is also a host of the older ServiceEntry ns1/old, which wins',
    "spec.hosts: s.ns1.svc.cluster.local is a Kubernetes Service's hostname; the Service wins",
  ]);
  t.is(translator.reportOf('ServiceEntry', 'ns1', 'old'), undefined);
});

test('a host moves to the next oldest ServiceEntry when the winner goes, whatever the recompute order (names have one owner)', (t) => {
  for (const order of [['old', 'young'], ['young', 'old']]) {
    const snapshot = new ResourceSnapshot();
    const translator = new Translator({ snapshot, autoFlush: false });
    const se = (name: string, created: string): KubeObject => ({ metadata: { name, namespace: 'ns1', creationTimestamp: created }, spec: { hosts: ['shared.example.com'], ports: [{ number: 80 }] } }) as KubeObject;
    const entries: Record<string, KubeObject> = { old: se('old', '2025-01-01T00:00:00Z'), young: se('young', '2026-01-01T00:00:00Z') };
    for (const name of order) translator.change({ kind: 'ServiceEntry', type: 'upsert', object: entries[name]! });
    translator.flush();
    t.is((snapshotJson(snapshot).addresses['ns1/shared.example.com'] as { service: { name: string } }).service.name, 'old');
    // The young entry changes in the same batch, so it is recomputed before the old one's deletion.
    translator.change({ kind: 'ServiceEntry', type: 'upsert', object: { ...entries['young']!, metadata: { ...entries['young']!.metadata, labels: { touched: 'yes' } } } });
    translator.change({ kind: 'ServiceEntry', type: 'delete', object: entries['old']! });
    translator.flush();
    t.is((snapshotJson(snapshot).addresses['ns1/shared.example.com'] as { service: { name: string } } | undefined)?.service.name, 'young', order.join(','));
    translator.change({ kind: 'ServiceEntry', type: 'delete', object: entries['young']! });
    translator.flush();
    t.is(snapshotJson(snapshot).addresses['ns1/shared.example.com'], undefined);
  }
});

test('Workload.authorization_policies: sent selector policies of its namespace and the root namespace that match, sorted, then PeerAuthentication\'s', (t) => {
  const ap = (namespace: string, name: string, spec: Record<string, unknown>, annotations: Record<string, string> = {}): Obj => ['AuthorizationPolicy', { metadata: { name, namespace, annotations }, spec } as KubeObject];
  const match = { selector: { matchLabels: { app: 'web' } }, rules: [{}] };
  const { workload } = translate([
    pod('p'),
    ap('ns1', 'z-local', match),
    ap('ns1', 'a-local', match),
    ap('istio-system', 'mesh-wide', match),
    ap('ns2', 'elsewhere', match),
    ap('ns1', 'not-matching', { selector: { matchLabels: { app: 'db' } }, rules: [{}] }),
    ap('ns1', 'namespace-scope', { rules: [{}] }),
    ap('ns1', 'custom', { ...match, action: 'CUSTOM', provider: { name: 'x' } }),
    ap('ns1', 'dry', match, { 'istio.io/dry-run': 'true' }),
    ap('ns1', 'at-waypoint', { ...match, targetRefs: [{ kind: 'Gateway', name: 'wp' }] }),
    ['PeerAuthentication', { metadata: { name: 'default', namespace: 'istio-system' }, spec: { mtls: { mode: 'STRICT' } } } as KubeObject],
  ]);
  t.deepEqual(workload(UID)?.authorizationPolicies, ['istio-system/istio_converted_static_strict', 'istio-system/mesh-wide', 'ns1/a-local', 'ns1/z-local']);
});

test('WorkloadEntry waypoint binding: bound to a workload waypoint, with the WaypointBound condition Istio sets on it', (t) => {
  const we = (name: string, wp: string): Obj => ['WorkloadEntry', { metadata: { name, namespace: 'ns1', labels: { 'istio.io/use-waypoint': wp } }, spec: { address: '192.0.2.1' } } as KubeObject];
  const { workload, translator } = translate([waypoint('wl', 'ns1', { 'istio.io/waypoint-for': 'workload' }), waypoint('svc-only', 'ns1'), we('vm1', 'wl'), we('vm2', 'svc-only')]);
  t.deepEqual(workload('Kubernetes/networking.istio.io/WorkloadEntry/ns1/vm1')?.waypoint, HOST_WP('wl', 'ns1'));
  t.like(translator.reportOf('WorkloadEntry', 'ns1', 'vm1')?.conditions[0], { type: 'istio.io/WaypointBound', status: 'True' });
  t.is(workload('Kubernetes/networking.istio.io/WorkloadEntry/ns1/vm2')?.waypoint, undefined);
  t.like(translator.reportOf('WorkloadEntry', 'ns1', 'vm2')?.conditions[0], { type: 'istio.io/WaypointBound', status: 'False', reason: 'UnsupportedTrafficType' });
});

test('PILOT_AUTO_ALLOW_WAYPOINT_POLICY: one ALLOW per waypoint with its pods\' identities, listed by workloads bound to it directly or through a service', (t) => {
  const objects: Obj[] = [
    waypoint('wp', 'ns1', { 'istio.io/waypoint-for': 'all' }),
    ['Pod', { metadata: { name: 'wp-1', namespace: 'ns1', labels: { 'gateway.networking.k8s.io/gateway-name': 'wp' } }, spec: { serviceAccountName: 'wp' }, status: { podIP: '10.0.0.9' } } as KubeObject],
    pod('p'),
    svc('s', {}, { 'istio.io/use-waypoint': 'wp' }),
    ['Pod', { metadata: { name: 'direct', namespace: 'ns1', labels: { app: 'other', 'istio.io/use-waypoint': 'wp' } }, status: { podIP: '10.0.0.2' } } as KubeObject],
    ['Pod', { metadata: { name: 'alone', namespace: 'ns1', labels: { app: 'other' } }, status: { podIP: '10.0.0.3' } } as KubeObject],
  ];
  const on = translate(objects, { autoAllowWaypointPolicy: true });
  const policy = on.json.authorizations['ns1/istio_allow_waypoint_ns1_wp'] as AuthorizationPolicy;
  t.like(policy, { name: 'istio_allow_waypoint_ns1_wp', namespace: 'ns1', scope: 'WORKLOAD_SELECTOR', action: 'ALLOW' });
  t.deepEqual(policy.rules[0]?.clauses[0]?.matches[0]?.principals, [{ kind: 'exact', value: 'cluster.local/ns/ns1/sa/wp' }]);
  t.deepEqual(on.workload(UID)?.authorizationPolicies, ['ns1/istio_allow_waypoint_ns1_wp'], 'through its service');
  t.deepEqual(on.workload('Kubernetes//Pod/ns1/direct')?.authorizationPolicies, ['ns1/istio_allow_waypoint_ns1_wp'], 'bound directly');
  t.deepEqual(on.workload('Kubernetes//Pod/ns1/alone')?.authorizationPolicies, []);
  // What it means in ztunnel: only the waypoint's identity gets in.
  const from = (sa: string) => authorize([policy], { sourceIp: '10.0.0.9', destinationIp: '10.0.0.1', destinationPort: 8080, peer: { trustDomain: 'cluster.local', namespace: 'ns1', serviceAccount: sa } }).decision.allowed;
  t.true(from('wp'));
  t.false(from('client'));
  const off = translate(objects);
  t.is(off.json.authorizations['ns1/istio_allow_waypoint_ns1_wp'], undefined, 'off by default');
  t.deepEqual(off.workload(UID)?.authorizationPolicies, []);
  const noInstances = translate(objects.filter(([, o]) => o.metadata?.name !== 'wp-1'), { autoAllowWaypointPolicy: true });
  t.is(noInstances.json.authorizations['ns1/istio_allow_waypoint_ns1_wp'], undefined, 'no instance pod: no policy (it would allow everyone)');
  t.deepEqual(noInstances.workload(UID)?.authorizationPolicies, []);
});

test('the waypoint allow policy follows its instance pods incrementally', (t) => {
  const snapshot = new ResourceSnapshot();
  const translator = new Translator({ snapshot, autoFlush: false, settings: { autoAllowWaypointPolicy: true } });
  for (const [kind, object] of [waypoint('wp', 'ns1'), pod('p'), svc('s', {}, { 'istio.io/use-waypoint': 'wp' })]) translator.change({ kind, type: 'upsert', object });
  translator.markAll();
  translator.flush();
  t.is(snapshotJson(snapshot).authorizations['ns1/istio_allow_waypoint_ns1_wp'], undefined);
  const instance = { metadata: { name: 'wp-1', namespace: 'ns1', labels: { 'gateway.networking.k8s.io/gateway-name': 'wp' } }, spec: { serviceAccountName: 'wp' }, status: { podIP: '10.0.0.9' } } as KubeObject;
  translator.change({ kind: 'Pod', type: 'upsert', object: instance });
  translator.flush();
  t.truthy(snapshotJson(snapshot).authorizations['ns1/istio_allow_waypoint_ns1_wp']);
  t.deepEqual((snapshotJson(snapshot).addresses[UID] as { workload: Workload }).workload.authorizationPolicies, ['ns1/istio_allow_waypoint_ns1_wp']);
  translator.change({ kind: 'Pod', type: 'delete', object: instance });
  translator.flush();
  t.is(snapshotJson(snapshot).authorizations['ns1/istio_allow_waypoint_ns1_wp'], undefined);
  t.deepEqual((snapshotJson(snapshot).addresses[UID] as { workload: Workload }).workload.authorizationPolicies, []);
});

test('ServiceEntry exportTo: everyone by default or with *, NAMESPACE for "." alone, not published for "~"', (t) => {
  const se = (name: string, exportTo?: string[]): Obj => ['ServiceEntry', { metadata: { name, namespace: 'ns1' }, spec: { hosts: [`${name}.example.com`], ports: [{ number: 80 }], ...(exportTo ? { exportTo } : {}) } } as KubeObject];
  const { service } = translate([se('all'), se('star', ['*']), se('dot', ['.']), se('own', ['ns1']), se('other', ['.', 'ns2']), se('hidden', ['~'])]);
  t.is(service('ns1/all.example.com')?.visibility, 'PUBLIC');
  t.is(service('ns1/star.example.com')?.visibility, 'PUBLIC');
  t.is(service('ns1/dot.example.com')?.visibility, 'NAMESPACE');
  t.is(service('ns1/own.example.com')?.visibility, 'NAMESPACE');
  t.is(service('ns1/other.example.com')?.visibility, 'PUBLIC', 'another namespace too: no narrower visibility exists');
  t.is(service('ns1/hidden.example.com'), undefined);
});

test('a DNS ServiceEntry without endpoints has one hostname workload per host (wildcards excepted)', (t) => {
  const { workload, json } = translate([
    ['ServiceEntry', { metadata: { name: 'ext', namespace: 'ns1' }, spec: { hosts: ['api.example.com', '*.wild.example.com'], ports: [{ number: 443, name: 'tls', protocol: 'TLS' }], resolution: 'DNS' } } as KubeObject],
    ['ServiceEntry', { metadata: { name: 'static', namespace: 'ns1' }, spec: { hosts: ['s.example.com'], ports: [{ number: 80 }], resolution: 'STATIC' } } as KubeObject],
  ]);
  t.like(workload('Kubernetes/networking.istio.io/ServiceEntry/ns1/ext/api.example.com'), { hostname: 'api.example.com', addresses: [], status: 'HEALTHY' });
  t.deepEqual(Object.keys(workload('Kubernetes/networking.istio.io/ServiceEntry/ns1/ext/api.example.com')?.services as object), ['ns1/api.example.com']);
  t.deepEqual(Object.keys(json.addresses).filter((k) => k.includes('/ServiceEntry/')), ['Kubernetes/networking.istio.io/ServiceEntry/ns1/ext/api.example.com']);
});

test('a ServiceEntry without addresses takes the VIPs recorded per host in its status', (t) => {
  const { service } = translate([
    ['ServiceEntry', { metadata: { name: 'ext', namespace: 'ns1' }, spec: { hosts: ['a.example.com', 'b.example.com'], ports: [{ number: 80 }], resolution: 'DNS' }, status: { addresses: [{ host: 'a.example.com', value: '240.240.0.1' }, { host: 'b.example.com', value: '240.240.0.2' }, { host: 'b.example.com', value: '2001:2::2' }] } } as KubeObject],
  ]);
  t.deepEqual(service('ns1/a.example.com')?.addresses, [{ network: '', ip: '240.240.0.1' }]);
  t.deepEqual(service('ns1/b.example.com')?.addresses, [{ network: '', ip: '240.240.0.2' }, { network: '', ip: '2001:2::2' }]);
});

test('ServiceEntry VIP auto-allocation: stable per host in 240.240.0.0/16, distinct, released with the host; none for wildcards or recorded ones', (t) => {
  const snapshot = new ResourceSnapshot();
  const translator = new Translator({ snapshot, autoFlush: false });
  const se = (name: string, hosts: string[]): KubeObject => ({ metadata: { name, namespace: 'ns1' }, spec: { hosts, ports: [{ number: 80 }], resolution: 'DNS' } }) as KubeObject;
  const vip = (host: string) => (snapshotJson(snapshot).addresses[`ns1/${host}`] as { service: Service } | undefined)?.service.addresses.map((a) => a.ip);
  translator.change({ kind: 'ServiceEntry', type: 'upsert', object: se('a', ['one.example.com', 'two.example.com', '*.wild.example.com']) });
  translator.flush();
  const one = vip('one.example.com');
  t.regex(one?.[0] ?? '', /^240\.240\.\d+\.\d+$/);
  t.notDeepEqual(vip('two.example.com'), one);
  t.deepEqual(vip('*.wild.example.com'), []);
  // Recomputed (the entry changes): the same VIPs.
  translator.change({ kind: 'ServiceEntry', type: 'upsert', object: { ...se('a', ['one.example.com', 'two.example.com']), metadata: { name: 'a', namespace: 'ns1', labels: { x: 'y' } } } as KubeObject });
  translator.flush();
  t.deepEqual(vip('one.example.com'), one);
  // A fresh translator computes the same VIP for the same host: stable across restarts.
  const again = new Translator({ snapshot: new ResourceSnapshot(), autoFlush: false });
  t.is(again.view.allocateVip('ns1', 'one.example.com'), one?.[0] ?? '');
  // Written addresses are used as they are.
  translator.change({ kind: 'ServiceEntry', type: 'upsert', object: { metadata: { name: 'b', namespace: 'ns1' }, spec: { hosts: ['fixed.example.com'], addresses: ['10.1.1.1'], ports: [{ number: 80 }] } } as KubeObject });
  translator.flush();
  t.deepEqual(vip('fixed.example.com'), ['10.1.1.1']);
  // The entry gone, so is its service; the same host later gets the same VIP.
  translator.change({ kind: 'ServiceEntry', type: 'delete', object: se('a', []) });
  translator.flush();
  t.is(vip('one.example.com'), undefined);
  translator.change({ kind: 'ServiceEntry', type: 'upsert', object: se('c', ['one.example.com']) });
  translator.flush();
  t.deepEqual(vip('one.example.com'), one);
});

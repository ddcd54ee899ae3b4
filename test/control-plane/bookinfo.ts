import type { FakeKube, FakeObjectInput, FakeResource } from '../../src/demo/api-server.ts';

/**
 * A bookinfo-like mesh for the control plane's tests: namespaces, nodes, the deployments' pods (as the
 * ReplicaSet controller names them), services, a waypoint Gateway with a status address, an HTTPRoute, policies.
 */

export const REDIRECTION = 'ambient.istio.io/redirection';

interface PodSpec {
  readonly app: string;
  readonly version: string;
  readonly ip: string;
  readonly node: string;
  readonly ready?: boolean;
  readonly hash?: string;
}

export const PODS: readonly PodSpec[] = [
  { app: 'productpage', version: 'v1', ip: '10.244.1.10', node: 'node-a', hash: '7f9d8b6c5' },
  { app: 'details', version: 'v1', ip: '10.244.1.11', node: 'node-a', hash: '65599dcf68' },
  { app: 'reviews', version: 'v1', ip: '10.244.2.12', node: 'node-b', hash: '5fd7c7d6b8' },
  { app: 'reviews', version: 'v2', ip: '10.244.2.13', node: 'node-b', hash: '6cb6ccd848' },
  { app: 'reviews', version: 'v3', ip: '10.244.1.14', node: 'node-a', hash: '5c5d764c9b', ready: false },
  { app: 'ratings', version: 'v1', ip: '10.244.2.15', node: 'node-b', hash: '7c4bbf97db' },
];

export function podName(p: PodSpec): string {
  return `${p.app}-${p.version}-${p.hash}-x1y2z`;
}

function appPod(p: PodSpec): FakeObjectInput {
  return {
    metadata: {
      name: podName(p),
      namespace: 'bookinfo',
      labels: { app: p.app, version: p.version, 'pod-template-hash': p.hash ?? '' },
      annotations: { [REDIRECTION]: 'enabled' },
      ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: `${p.app}-${p.version}-${p.hash}`, controller: true, uid: 'u' }],
    },
    spec: {
      nodeName: p.node,
      serviceAccountName: `bookinfo-${p.app}`,
      containers: [{ name: p.app, image: `bookinfo/${p.app}`, ports: [{ name: 'http', containerPort: 9080, protocol: 'TCP' }] }],
    },
    status: {
      phase: 'Running',
      podIP: p.ip,
      podIPs: [{ ip: p.ip }],
      conditions: [{ type: 'Ready', status: p.ready === false ? 'False' : 'True' }],
    },
  } as FakeObjectInput;
}

const svc = (name: string, ip: string, spec: Record<string, unknown> = {}, labels: Record<string, string> = {}, annotations: Record<string, string> = {}): FakeObjectInput =>
  ({
    metadata: { name, namespace: 'bookinfo', labels: { app: name, ...labels }, annotations },
    spec: { selector: { app: name }, clusterIP: ip, clusterIPs: [ip], ipFamilies: ['IPv4'], ports: [{ name: 'http', port: 9080, targetPort: 9080, protocol: 'TCP' }], ...spec },
  }) as FakeObjectInput;

export function bookinfo(): Array<[FakeResource, FakeObjectInput]> {
  const out: Array<[FakeResource, FakeObjectInput]> = [
    ['namespaces', { metadata: { name: 'istio-system' } }],
    ['namespaces', { metadata: { name: 'bookinfo', labels: { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'waypoint' } } }],
    ['namespaces', { metadata: { name: 'other', labels: { 'istio.io/dataplane-mode': 'ambient' } } }],
    ['nodes', { metadata: { name: 'node-a', labels: { 'topology.kubernetes.io/region': 'eu-west', 'topology.kubernetes.io/zone': 'eu-west-1a' } } }],
    ['nodes', { metadata: { name: 'node-b', labels: { 'topology.kubernetes.io/region': 'eu-west', 'topology.kubernetes.io/zone': 'eu-west-1b', 'topology.istio.io/subzone': 'rack7' } } }],
    ['gatewayclasses', { metadata: { name: 'istio-waypoint' }, spec: { controllerName: 'istio.io/mesh-controller' } } as FakeObjectInput],
    [
      'gateways',
      {
        metadata: { name: 'waypoint', namespace: 'bookinfo', labels: { 'istio.io/waypoint-for': 'service' } },
        spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
        status: { addresses: [{ type: 'Hostname', value: 'waypoint.bookinfo.svc.cluster.local' }, { type: 'IPAddress', value: '10.96.0.50' }] },
      } as FakeObjectInput,
    ],
    [
      'pods',
      {
        metadata: {
          name: 'waypoint-6d4b9c7f5-qwert',
          namespace: 'bookinfo',
          labels: {
            'gateway.networking.k8s.io/gateway-name': 'waypoint',
            'gateway.istio.io/managed': 'istio.io-mesh-controller',
            'istio.io/dataplane-mode': 'none',
            'service.istio.io/canonical-name': 'waypoint',
            'service.istio.io/canonical-revision': 'latest',
            'pod-template-hash': '6d4b9c7f5',
          },
          ownerReferences: [{ apiVersion: 'apps/v1', kind: 'ReplicaSet', name: 'waypoint-6d4b9c7f5', controller: true, uid: 'u' }],
        },
        spec: { nodeName: 'node-b', serviceAccountName: 'waypoint', containers: [{ name: 'istio-proxy', ports: [{ name: 'metrics', containerPort: 15020 }] }] },
        status: { phase: 'Running', podIP: '10.244.2.20', podIPs: [{ ip: '10.244.2.20' }], conditions: [{ type: 'Ready', status: 'True' }] },
      } as FakeObjectInput,
    ],
    [
      'services',
      {
        metadata: { name: 'waypoint', namespace: 'bookinfo', labels: { 'gateway.istio.io/managed': 'istio.io-mesh-controller', 'gateway.networking.k8s.io/gateway-name': 'waypoint' } },
        spec: {
          selector: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' },
          clusterIP: '10.96.0.50',
          clusterIPs: ['10.96.0.50'],
          ipFamilies: ['IPv4'],
          ports: [{ name: 'status-port', port: 15021, appProtocol: 'tcp' }, { name: 'mesh', port: 15008, appProtocol: 'hbone' }],
        },
      } as FakeObjectInput,
    ],
    ['services', svc('productpage', '10.96.0.10')],
    ['services', svc('details', '10.96.0.11')],
    // Named target port; traffic distribution from the annotation.
    ['services', svc('reviews', '10.96.0.12', { ports: [{ name: 'http', port: 9080, targetPort: 'http' }, { name: 'grpc-admin', port: 9090, targetPort: 'admin' }] }, {}, { 'networking.istio.io/traffic-distribution': 'PreferClose' })],
    // Opts out of the namespace's waypoint; node-local.
    ['services', svc('ratings', '10.96.0.13', { internalTrafficPolicy: 'Local' }, { 'istio.io/use-waypoint': 'none' })],
    [
      'httproutes',
      {
        metadata: { name: 'reviews', namespace: 'bookinfo' },
        spec: { parentRefs: [{ group: '', kind: 'Service', name: 'reviews', port: 9080 }], rules: [{ backendRefs: [{ name: 'reviews', port: 9080 }] }] },
      } as FakeObjectInput,
    ],
    ['peerauthentications', { metadata: { name: 'default', namespace: 'istio-system' }, spec: { mtls: { mode: 'STRICT' } } } as FakeObjectInput],
    [
      'authorizationpolicies',
      {
        metadata: { name: 'productpage-viewer', namespace: 'bookinfo' },
        spec: { selector: { matchLabels: { app: 'productpage' } }, action: 'ALLOW', rules: [{ from: [{ source: { namespaces: ['bookinfo', 'istio-system'] } }], to: [{ operation: { ports: ['9080'] } }] }] },
      } as FakeObjectInput,
    ],
    [
      'authorizationpolicies',
      {
        metadata: { name: 'ratings-from-reviews', namespace: 'bookinfo' },
        spec: {
          selector: { matchLabels: { app: 'ratings' } },
          rules: [
            { from: [{ source: { principals: ['cluster.local/ns/bookinfo/sa/bookinfo-reviews'] } }] },
            // HTTP attributes: this ALLOW rule is dropped for ztunnel.
            { to: [{ operation: { methods: ['GET'], paths: ['/ratings/*'] } }] },
          ],
        },
      } as FakeObjectInput,
    ],
    ['authorizationpolicies', { metadata: { name: 'deny-other', namespace: 'bookinfo' }, spec: { action: 'DENY', rules: [{ from: [{ source: { namespaces: ['other'] } }], when: [{ key: 'destination.port', values: ['9080'] }] }] } } as FakeObjectInput],
    // At the waypoint, not sent to ztunnel.
    [
      'authorizationpolicies',
      {
        metadata: { name: 'reviews-get-only', namespace: 'bookinfo' },
        spec: { targetRefs: [{ kind: 'Service', group: '', name: 'reviews' }], rules: [{ to: [{ operation: { methods: ['GET'] } }] }] },
      } as FakeObjectInput,
    ],
  ];
  for (const p of PODS) out.push(['pods', appPod(p)]);
  return out;
}

export function load(fake: FakeKube): void {
  for (const [resource, obj] of bookinfo()) fake.create(resource, obj);
}

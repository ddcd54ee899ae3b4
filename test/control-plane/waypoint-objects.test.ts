import test from 'ava';
import {
  decideWaypoint,
  gatewayClassStatus,
  listenerVerdicts,
  programmedCondition,
  revisionMatches,
  sameStatus,
  sanitizePortName,
  serviceIps,
  waypointGateway,
  waypointGatewayClass,
  waypointStatus,
  type Gateway,
  type Manifest,
  type WaypointRenderOptions,
} from '../../src/control-plane/waypoint-objects.ts';

/** The waypoint's objects as pure functions: snapshots of the reference's names, labels, ports, probes and status. */

const RENDER: WaypointRenderOptions = {
  clusterDomain: 'cluster.local',
  trustDomain: 'cluster.local',
  clusterId: 'Kubernetes',
  xdsAddress: 'istiod.istio-system.svc:15012',
  caAddress: 'istiod.istio-system.svc:15012',
  image: 'ambient-node:0.1.0',
};

function gateway(over: Partial<Gateway['metadata']> = {}, spec: Partial<Gateway['spec']> = {}): Gateway {
  const base = waypointGateway({ name: 'waypoint', namespace: 'bookinfo', for: 'service' });
  return { ...base, metadata: { ...base.metadata, uid: 'uid-1', generation: 2, ...over }, spec: { ...base.spec, ...spec } };
}

function deployed(gw: Gateway, options: WaypointRenderOptions = RENDER) {
  const d = decideWaypoint(gw, options);
  if (d.kind !== 'deploy') throw new Error(`expected deploy, got ${JSON.stringify(d)}`);
  return d;
}

const at = (m: Manifest, path: string): unknown => path.split('.').reduce<unknown>((v, k) => (v as Record<string, unknown> | undefined)?.[k], m);

test('waypointGateway: the Gateway istioctl produces; labels only for the flags given', (t) => {
  t.deepEqual(waypointGateway({ name: 'waypoint', namespace: 'default' }), {
    apiVersion: 'gateway.networking.k8s.io/v1',
    kind: 'Gateway',
    metadata: { name: 'waypoint', namespace: 'default' },
    spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] },
  });
  t.deepEqual(waypointGateway({ name: 'wp', namespace: 'prod', for: 'all', revision: 'canary' }).metadata, {
    name: 'wp',
    namespace: 'prod',
    labels: { 'istio.io/waypoint-for': 'all', 'istio.io/rev': 'canary' },
  });
});

test('decideWaypoint: other classes, other revisions and newer controllers are ignored', (t) => {
  t.is(decideWaypoint(gateway({}, { gatewayClassName: 'istio' }), RENDER).kind, 'ignore');
  t.is(decideWaypoint(gateway({ labels: { 'istio.io/rev': 'canary' } }), RENDER).kind, 'ignore');
  t.is(decideWaypoint(gateway({ labels: { 'istio.io/rev': 'canary' } }), { ...RENDER, revision: 'canary' }).kind, 'deploy');
  t.is(decideWaypoint(gateway({ labels: { 'istio.io/rev': 'default' } }), RENDER).kind, 'deploy');
  t.is(decideWaypoint(gateway(), { ...RENDER, revision: 'canary' }).kind, 'ignore', 'a revisioned control plane leaves unlabeled Gateways to the default one');
  t.is(decideWaypoint(gateway({ annotations: { 'gateway.istio.io/controller-version': '99' } }), RENDER).kind, 'ignore');
  t.true(revisionMatches(gateway(), undefined));
});

test('listenerVerdicts: one 15008/HBONE listener and istio.io/PROXY are accepted; anything else is UnsupportedProtocol', (t) => {
  const gw = gateway({}, {
    listeners: [
      { name: 'mesh', port: 15008, protocol: 'HBONE' },
      { name: 'http', port: 80, protocol: 'HTTP' },
      { name: 'again', port: 15008, protocol: 'HBONE' },
      { name: 'proxy', port: 15088, protocol: 'istio.io/PROXY' },
    ],
  });
  t.deepEqual(listenerVerdicts(gw).map((l) => [l.name, l.accepted, l.reason]), [
    ['mesh', true, 'Accepted'],
    ['http', false, 'UnsupportedProtocol'],
    ['again', false, 'UnsupportedProtocol'],
    ['proxy', true, 'Accepted'],
  ]);
  // The Service gets only the accepted listeners' ports.
  const ports = at(deployed(gw).objects.service, 'spec.ports') as Array<{ name: string; port: number; appProtocol: string }>;
  t.deepEqual(ports.map((p) => [p.name, p.port, p.appProtocol]), [
    ['status-port', 15021, 'tcp'],
    ['mesh', 15008, 'hbone'],
    ['proxy', 15088, 'istio.io/proxy'],
  ]);
});

test('decideWaypoint: no HBONE listener or a bad name is refused with the reason', (t) => {
  const noHbone = decideWaypoint(gateway({}, { listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] }), RENDER);
  t.like(noHbone, { kind: 'refuse', reason: 'ListenersNotValid' });
  const badName = decideWaypoint(gateway({ annotations: { 'gateway.istio.io/name-override': 'Not_A_Name' } }), RENDER);
  t.like(badName, { kind: 'refuse', reason: 'Invalid' });
});

test('ServiceAccount: named after the Gateway (or the override), the two gateway labels, owned by the Gateway', (t) => {
  const d = deployed(gateway());
  t.deepEqual(d.objects.serviceAccount, {
    apiVersion: 'v1',
    kind: 'ServiceAccount',
    metadata: {
      name: 'waypoint',
      namespace: 'bookinfo',
      labels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint', 'gateway.networking.k8s.io/gateway-class-name': 'istio-waypoint' },
      ownerReferences: [{ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', name: 'waypoint', uid: 'uid-1' }],
    },
  });
  const over = deployed(gateway({ annotations: { 'gateway.istio.io/service-account': 'custom-sa', 'gateway.istio.io/name-override': 'wp-override' } }));
  t.is(over.objects.serviceAccount.metadata.name, 'custom-sa');
  t.is(over.objects.deployment.metadata.name, 'wp-override');
  t.is(over.objects.service.metadata.name, 'wp-override');
  t.is(at(over.objects.deployment, 'spec.template.spec.serviceAccountName'), 'custom-sa');
  t.is(over.hostname, 'wp-override.bookinfo.svc.cluster.local');
  // The selector still names the Gateway, not the override.
  t.deepEqual(at(over.objects.service, 'spec.selector'), { 'gateway.networking.k8s.io/gateway-name': 'waypoint' });
});

test('Deployment: selector, pod labels and annotations, the ambientd waypoint container, ports, probes, security context, volumes', (t) => {
  const d = deployed(gateway({ labels: { 'istio.io/waypoint-for': 'service', team: 'books', 'gateway.networking.k8s.io/ignored': 'x' } }));
  const dep = d.objects.deployment;
  t.deepEqual(dep.metadata.labels, {
    'istio.io/waypoint-for': 'service',
    team: 'books',
    'gateway.networking.k8s.io/gateway-name': 'waypoint',
    'gateway.networking.k8s.io/gateway-class-name': 'istio-waypoint',
    'gateway.istio.io/managed': 'istio.io-mesh-controller',
  });
  t.deepEqual(dep.metadata.ownerReferences, [{ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', name: 'waypoint', uid: 'uid-1' }]);
  t.deepEqual(at(dep, 'spec.selector'), { matchLabels: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' } });
  t.deepEqual(at(dep, 'spec.template.metadata'), {
    labels: {
      'sidecar.istio.io/inject': 'false',
      'istio.io/dataplane-mode': 'none',
      'service.istio.io/canonical-name': 'waypoint',
      'service.istio.io/canonical-revision': 'latest',
      'istio.io/waypoint-for': 'service',
      team: 'books',
      'gateway.networking.k8s.io/gateway-name': 'waypoint',
      'gateway.networking.k8s.io/gateway-class-name': 'istio-waypoint',
      'gateway.istio.io/managed': 'istio.io-mesh-controller',
    },
    annotations: { 'istio.io/rev': 'default', 'prometheus.io/path': '/stats/prometheus', 'prometheus.io/port': '15020', 'prometheus.io/scrape': 'true' },
  });
  const [container, ...more] = at(dep, 'spec.template.spec.containers') as Array<Record<string, unknown>>;
  t.is(more.length, 0);
  t.like(container, { name: 'istio-proxy', image: 'ambient-node:0.1.0', command: ['ambientd'], args: ['waypoint'] });
  t.deepEqual(container?.['ports'], [
    { containerPort: 15020, name: 'metrics', protocol: 'TCP' },
    { containerPort: 15021, name: 'status-port', protocol: 'TCP' },
  ]);
  t.deepEqual(container?.['startupProbe'], { httpGet: { path: '/healthz/ready', port: 15021, scheme: 'HTTP' }, periodSeconds: 1, failureThreshold: 30, successThreshold: 1, timeoutSeconds: 1 });
  t.deepEqual(container?.['readinessProbe'], { httpGet: { path: '/healthz/ready', port: 15021, scheme: 'HTTP' }, periodSeconds: 15, failureThreshold: 4, successThreshold: 1, timeoutSeconds: 1 });
  t.deepEqual(container?.['securityContext'], { allowPrivilegeEscalation: false, privileged: false, readOnlyRootFilesystem: true, runAsNonRoot: true, runAsUser: 1337, runAsGroup: 1337, capabilities: { drop: ['ALL'] } });
  const volumes = at(dep, 'spec.template.spec.volumes') as Array<Record<string, unknown>>;
  t.deepEqual(volumes[0], { name: 'istio-token', projected: { sources: [{ serviceAccountToken: { audience: 'istio-ca', expirationSeconds: 43200, path: 'istio-token' } }] } });
  t.deepEqual(volumes[1], { name: 'istiod-ca-cert', configMap: { name: 'istio-ca-root-cert' } });
  t.deepEqual((container?.['volumeMounts'] as Array<{ mountPath: string }>).map((m) => m.mountPath), ['/var/run/secrets/tokens', '/var/run/secrets/istio', '/var/run/secrets/workload-spiffe-uds', '/var/lib/istio/data', '/etc/istio/pod']);
});

test('Deployment env: the control plane address, identity from the downward API, Istio metadata; network from the infra label first', (t) => {
  const env = (gw: Gateway, options: WaypointRenderOptions = RENDER) => {
    const [c] = at(deployed(gw, options).objects.deployment, 'spec.template.spec.containers') as Array<{ env: Array<{ name: string; value?: string; valueFrom?: { fieldRef: { fieldPath: string } } }> }>;
    return Object.fromEntries(c!.env.map((e) => [e.name, e.value ?? `fieldRef:${e.valueFrom?.fieldRef.fieldPath}`]));
  };
  t.deepEqual(env(gateway()), {
    XDS_ADDRESS: 'istiod.istio-system.svc:15012',
    CA_ADDRESS: 'istiod.istio-system.svc:15012',
    XDS_ROOT_CA: '/var/run/secrets/istio/root-cert.pem',
    CA_ROOT_CA: '/var/run/secrets/istio/root-cert.pem',
    AUTH_TOKEN: '/var/run/secrets/tokens/istio-token',
    TRUST_DOMAIN: 'cluster.local',
    CLUSTER_ID: 'Kubernetes',
    CLUSTER_DOMAIN: 'cluster.local',
    GATEWAY_NAME: 'waypoint',
    POD_NAME: 'fieldRef:metadata.name',
    POD_NAMESPACE: 'fieldRef:metadata.namespace',
    INSTANCE_IP: 'fieldRef:status.podIP',
    SERVICE_ACCOUNT: 'fieldRef:spec.serviceAccountName',
    NODE_NAME: 'fieldRef:spec.nodeName',
    HOST_IP: 'fieldRef:status.hostIP',
    ISTIO_META_SERVICE_ACCOUNT: 'fieldRef:spec.serviceAccountName',
    ISTIO_META_NODE_NAME: 'fieldRef:spec.nodeName',
    ISTIO_META_CLUSTER_ID: 'Kubernetes',
    ISTIO_META_INTERCEPTION_MODE: 'REDIRECT',
    ISTIO_META_WORKLOAD_NAME: 'waypoint',
    ISTIO_META_OWNER: 'kubernetes://apis/apps/v1/namespaces/bookinfo/deployments/waypoint',
  });
  const withNet = env(gateway({}, { infrastructure: { labels: { 'topology.istio.io/network': 'net-b' } } }), { ...RENDER, network: 'net-a', meshId: 'mesh1' });
  t.is(withNet['NETWORK'], 'net-b');
  t.is(withNet['ISTIO_META_NETWORK'], 'net-b');
  t.is(withNet['ISTIO_META_MESH_ID'], 'mesh1');
  t.is(env(gateway(), { ...RENDER, network: 'net-a' })['NETWORK'], 'net-a');
});

test('Service: PreferClose, PreferDualStack, ClusterIP (or the override), the gateway selector, status-port then the listeners', (t) => {
  const svc = deployed(gateway({ annotations: { note: 'copied' } })).objects.service;
  t.deepEqual(svc, {
    apiVersion: 'v1',
    kind: 'Service',
    metadata: {
      name: 'waypoint',
      namespace: 'bookinfo',
      labels: { 'istio.io/waypoint-for': 'service', 'gateway.networking.k8s.io/gateway-name': 'waypoint', 'gateway.networking.k8s.io/gateway-class-name': 'istio-waypoint' },
      annotations: { note: 'copied', 'networking.istio.io/traffic-distribution': 'PreferClose' },
      ownerReferences: [{ apiVersion: 'gateway.networking.k8s.io/v1', kind: 'Gateway', name: 'waypoint', uid: 'uid-1' }],
    },
    spec: {
      ipFamilyPolicy: 'PreferDualStack',
      type: 'ClusterIP',
      selector: { 'gateway.networking.k8s.io/gateway-name': 'waypoint' },
      ports: [
        { name: 'status-port', port: 15021, protocol: 'TCP', appProtocol: 'tcp' },
        { name: 'mesh', port: 15008, protocol: 'TCP', appProtocol: 'hbone' },
      ],
    },
  });
  t.is(at(deployed(gateway({ annotations: { 'networking.istio.io/service-type': 'LoadBalancer' } })).objects.service, 'spec.type'), 'LoadBalancer');
  // Infrastructure labels and annotations replace the Gateway's own when set.
  const infra = deployed(gateway({ annotations: { own: 'x' } }, { infrastructure: { labels: { a: '1' }, annotations: { b: '2' } } })).objects.service;
  t.deepEqual(infra.metadata.annotations, { b: '2', 'networking.istio.io/traffic-distribution': 'PreferClose' });
  t.is(infra.metadata.labels?.['a'], '1');
  t.is(infra.metadata.labels?.['istio.io/waypoint-for'], undefined);
});

test('sanitizePortName: lower case, [a-z0-9-], at most 63 characters', (t) => {
  t.is(sanitizePortName('Mesh_Port.1'), 'mesh-port-1');
  t.is(sanitizePortName('x'.repeat(80)).length, 63);
  t.is(sanitizePortName('***'), 'port');
});

test('waypointStatus: Accepted at once; Programmed and the addresses only once the Service has a ClusterIP', (t) => {
  const gw = gateway();
  const d = deployed(gw);
  const t0 = new Date('2026-12-02T06:00:00.123Z');
  const pending = waypointStatus(gw, d, { metadata: { name: 'waypoint' }, spec: { clusterIP: '' } }, t0);
  t.is(pending.addresses, undefined);
  t.deepEqual(pending.conditions?.map((c) => [c.type, c.status, c.reason, c.observedGeneration, c.lastTransitionTime]), [
    ['Accepted', 'True', 'Accepted', 2, '2026-12-02T06:00:00Z'],
    ['Programmed', 'False', 'AddressNotUsable', 2, '2026-12-02T06:00:00Z'],
    ['ResolvedRefs', 'True', 'ResolvedRefs', 2, '2026-12-02T06:00:00Z'],
  ]);
  t.like(pending.listeners?.[0], { name: 'mesh', attachedRoutes: 0 });

  const t1 = new Date('2026-12-02T06:00:05Z');
  const programmed = waypointStatus({ ...gw, status: pending }, d, { metadata: { name: 'waypoint' }, spec: { clusterIP: '10.96.0.20', clusterIPs: ['10.96.0.20', 'fd00::20'] } }, t1);
  t.deepEqual(programmed.addresses, [
    { type: 'Hostname', value: 'waypoint.bookinfo.svc.cluster.local' },
    { type: 'IPAddress', value: '10.96.0.20' },
    { type: 'IPAddress', value: 'fd00::20' },
  ]);
  const cond = programmedCondition({ status: programmed });
  t.like(cond, { status: 'True', reason: 'Programmed', message: 'Resource programmed, assigned to service(s) waypoint.bookinfo.svc.cluster.local:15008', lastTransitionTime: '2026-12-02T06:00:05Z' });
  t.is(programmed.conditions?.[0]?.lastTransitionTime, '2026-12-02T06:00:00Z', 'an unchanged condition keeps its transition time');
  // The same inputs later give the same status: nothing to write.
  t.true(sameStatus(programmed, waypointStatus({ ...gw, status: programmed }, d, { metadata: { name: 'waypoint' }, spec: { clusterIP: '10.96.0.20', clusterIPs: ['10.96.0.20', 'fd00::20'] } }, new Date('2026-12-02T07:00:00Z'))));
  t.false(sameStatus(pending, programmed));
});

test('waypointStatus: a refused Gateway is Accepted=False with the reason; serviceIps skips None', (t) => {
  const gw = gateway({}, { listeners: [{ name: 'http', port: 80, protocol: 'HTTP' }] });
  const status = waypointStatus(gw, decideWaypoint(gw, RENDER), undefined, new Date(0));
  t.like(status.conditions?.[0], { type: 'Accepted', status: 'False', reason: 'ListenersNotValid' });
  t.like(status.listeners?.[0]?.conditions[0], { type: 'Accepted', status: 'False', reason: 'UnsupportedProtocol' });
  t.deepEqual(serviceIps({ metadata: { name: 'x' }, spec: { clusterIP: 'None' } }), []);
  t.deepEqual(serviceIps(undefined), []);
});

test('gatewayClassStatus: Accepted for our controller\'s class, nothing to write once it says so, nothing for another controller\'s', (t) => {
  const gc = waypointGatewayClass();
  const status = gatewayClassStatus(gc, new Date('2026-12-02T06:00:00.5Z'));
  t.like(status?.conditions[0], { type: 'Accepted', status: 'True', reason: 'Accepted', lastTransitionTime: '2026-12-02T06:00:00Z' });
  t.is(gatewayClassStatus({ ...gc, status: status! }, new Date()), undefined);
  t.is(gatewayClassStatus({ ...gc, spec: { controllerName: 'example.com/other' } }, new Date()), undefined);
});

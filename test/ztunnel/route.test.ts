import test from 'ava';
import { spiffeId, type SpiffeId } from '../../src/identity/spiffe.ts';
import { WorkloadStore } from '../../src/workload-api/store.ts';
import { serviceKey, type GatewayAddress, type LoadBalancing, type Port, type Service, type Workload } from '../../src/workload-api/types.ts';
import { routeOutbound, type OutboundRequest, type RouteDecision } from '../../src/ztunnel/route.ts';
import { testService, testWorkload } from '../helpers/mesh.ts';

// ---- builders: plain domain objects with defaults ----

const NET = 'n1';
const OWN_PORTS = [15001, 15006, 15008];

type Mutable<T> = { -readonly [K in keyof T]?: T[K] };

function wl(name: string, ip: string | readonly string[], over: Mutable<Workload> & { ns?: string } = {}): Workload {
  const { ns = 'b', ...rest } = over;
  return testWorkload({
    name,
    namespace: ns,
    addresses: typeof ip === 'string' ? [ip] : ip,
    network: NET,
    locality: { region: 'r1', zone: 'z1', subzone: 's1' },
    ...rest,
  });
}

/** Makes `w` an endpoint of the service ns/host serving these ports. */
function serving(w: Workload, ns: string, host: string, ports: Port[]): Workload {
  return { ...w, services: new Map([...w.services, [serviceKey(ns, host), ports]]) };
}

const port = (servicePort: number, targetPort: number): Port => ({ servicePort, targetPort, appProtocol: 'TCP' });

function svc(name: string, vip: string, over: Mutable<Service> & { ns?: string } = {}): Service {
  const { ns = 'b', ...rest } = over;
  return testService({ name, namespace: ns, addresses: [{ network: NET, ip: vip }], ports: [port(80, 8080)], ...rest });
}

const lb = (mode: LoadBalancing['mode'], routingPreference: LoadBalancing['routingPreference'] = [], healthPolicy: LoadBalancing['healthPolicy'] = 'ONLY_HEALTHY'): LoadBalancing => ({ mode, routingPreference, healthPolicy });
const gwHost = (ns: string, hostname: string, hboneMtlsPort = 15008): GatewayAddress => ({ destination: { kind: 'hostname', namespace: ns, hostname }, hboneMtlsPort });
const gwIp = (ip: string, hboneMtlsPort = 15008): GatewayAddress => ({ destination: { kind: 'address', network: NET, ip }, hboneMtlsPort });

function store(items: ReadonlyArray<Workload | Service>): WorkloadStore {
  const s = new WorkloadStore();
  for (const item of items) {
    if ('uid' in item) s.upsertWorkload(item);
    else s.upsertService(item);
  }
  return s;
}

const id = (w: Workload): SpiffeId => spiffeId(w.trustDomain, w.namespace, w.serviceAccount);

// ---- the world ----

const sleep = wl('sleep', '10.0.0.1', { ns: 'a' });
const pod = wl('pod', '10.0.1.5');
const legacy = wl('legacy', '10.0.1.6', { tunnelProtocol: 'NONE' });

const REVIEWS = 'reviews.b.svc.cluster.local';
const reviews = svc('reviews', '10.96.0.1', { ports: [port(9080, 0)], subjectAltNames: ['spiffe://cluster.local/ns/b/sa/reviews-san', 'not-a-spiffe-id'] });
const r1 = serving(wl('r1', '10.0.2.1'), 'b', REVIEWS, [port(9080, 9081)]);

// A waypoint: service wp.b with VIP 10.96.0.99, one instance 10.0.9.9.
const WP = 'wp.b.svc.cluster.local';
const wpSvc = svc('wp', '10.96.0.99', { ports: [port(15008, 15008)], subjectAltNames: ['spiffe://cluster.local/ns/b/sa/wp-extra'] });
const wpPod = serving(wl('wp', '10.0.9.9'), 'b', WP, [port(15008, 15008)]);
const wp2Svc = svc('wp2', '10.96.0.98', { ports: [port(15008, 15008)] });
const wp2Pod = serving(wl('wp2', '10.0.9.8'), 'b', 'wp2.b.svc.cluster.local', [port(15008, 15008)]);

const ep = (name: string, ip: string | readonly string[], over: Mutable<Workload> = {}): Workload => serving(wl(name, ip, over), 'b', 'lb.b.svc.cluster.local', [port(80, 8080)]);
const lbSvc = (over: Mutable<Service> = {}): Service => svc('lb', '10.96.0.2', over);

function req(ip: string, dstPort: number, over: Partial<OutboundRequest> = {}): OutboundRequest {
  return { source: sleep, sourceAddress: { ip: sleep.addresses[0] ?? '', port: 40000 }, destination: { ip, port: dstPort }, network: NET, ownPorts: OWN_PORTS, ...over };
}

interface Case {
  readonly name: string;
  readonly state: ReadonlyArray<Workload | Service>;
  readonly request: OutboundRequest;
  readonly random?: number;
  /** Compared with t.like (only the listed fields). */
  readonly expect: Record<string, unknown>;
  readonly identities?: readonly SpiffeId[];
  readonly workload?: string;
  readonly service?: string;
}

const cases: Case[] = [
  // §4.2 step 1
  { name: 'loopback to an own port is a self call', state: [], request: req('127.0.0.1', 15008), expect: { kind: 'refuse', code: 'PROXY_SELF_CALL' } },
  { name: 'IPv6 loopback to 15001 is a self call', state: [], request: req('::1', 15001), expect: { kind: 'refuse', code: 'PROXY_SELF_CALL' } },
  { name: 'loopback to another port is not a self call (passthrough)', state: [], request: req('127.0.0.1', 8080), expect: { kind: 'passthrough', dial: { ip: '127.0.0.1', port: 8080 } } },
  // unknown destination
  { name: 'an unknown address passes through', state: [pod], request: req('1.2.3.4', 443), expect: { kind: 'passthrough', dial: { ip: '1.2.3.4', port: 443 } } },
  { name: 'a workload on another network is not found by IP (passthrough)', state: [wl('far', '10.0.1.5', { network: 'n2' })], request: req('10.0.1.5', 80), expect: { kind: 'passthrough' } },
  // direct
  {
    name: 'workload IP, HBONE: TLS to ip:15008, authority ip:port, the workload identity',
    state: [pod],
    request: req('10.0.1.5', 8080),
    expect: { kind: 'hbone', via: 'direct', dial: { ip: '10.0.1.5', port: 15008 }, authority: '10.0.1.5:8080' },
    identities: [id(pod)],
    workload: pod.uid,
  },
  { name: 'workload IP, tunnel NONE: plain TCP to ip:port', state: [legacy], request: req('10.0.1.6', 8080), expect: { kind: 'tcp', dial: { ip: '10.0.1.6', port: 8080 } }, workload: legacy.uid },
  {
    name: 'IPv6 workload: bracketed authority',
    state: [wl('v6', 'fd00::5')],
    request: req('fd00::5', 8080),
    expect: { kind: 'hbone', dial: { ip: 'fd00::5', port: 15008 }, authority: '[fd00::5]:8080' },
  },
  // services
  {
    name: 'service VIP: endpoint target port from its mapping; identities add the service SANs that parse',
    state: [reviews, r1],
    request: req('10.96.0.1', 9080),
    expect: { kind: 'hbone', via: 'direct', dial: { ip: '10.0.2.1', port: 15008 }, authority: '10.0.2.1:9081' },
    identities: [id(r1), spiffeId('cluster.local', 'b', 'reviews-san')],
    workload: r1.uid,
    service: REVIEWS,
  },
  { name: 'service VIP: service target port when the endpoint does not map it', state: [lbSvc(), serving(wl('e', '10.0.3.1'), 'b', 'lb.b.svc.cluster.local', [])], request: req('10.96.0.2', 80), expect: { kind: 'hbone', authority: '10.0.3.1:8080' } },
  { name: 'service VIP with a NONE endpoint: plain TCP to ip:target port', state: [lbSvc(), ep('e', '10.0.3.1', { tunnelProtocol: 'NONE' })], request: req('10.96.0.2', 80), expect: { kind: 'tcp', dial: { ip: '10.0.3.1', port: 8080 } }, service: 'lb.b.svc.cluster.local' },
  { name: 'a service without the requested port: no healthy upstream', state: [reviews, r1], request: req('10.96.0.1', 9999), expect: { kind: 'refuse', code: 'PROXY_NO_HEALTHY_UPSTREAM' } },
  { name: 'a service without endpoints: no healthy upstream', state: [lbSvc()], request: req('10.96.0.2', 80), expect: { kind: 'refuse', code: 'PROXY_NO_HEALTHY_UPSTREAM' } },
  {
    name: 'target port 0 everywhere and no application tunnel: no target port',
    state: [svc('named', '10.96.0.3', { ports: [port(80, 0)] }), serving(wl('e', '10.0.3.1'), 'b', 'named.b.svc.cluster.local', [port(80, 0)])],
    request: req('10.96.0.3', 80),
    expect: { kind: 'refuse', code: 'PROXY_NO_TARGET_PORT' },
  },
  {
    name: 'target port 0 with an application tunnel: the service port',
    state: [svc('named', '10.96.0.3', { ports: [port(80, 0)] }), serving(wl('e', '10.0.3.1', { applicationTunnel: { protocol: 'PROXY', port: 15088 } }), 'b', 'named.b.svc.cluster.local', [port(80, 0)])],
    request: req('10.96.0.3', 80),
    expect: { kind: 'hbone', authority: '10.0.3.1:80' },
  },
  { name: 'PASSTHROUGH service: plain TCP to the original destination', state: [lbSvc({ loadBalancing: lb('PASSTHROUGH') }), ep('e', '10.0.3.1')], request: req('10.96.0.2', 80), expect: { kind: 'passthrough', dial: { ip: '10.96.0.2', port: 80 } }, service: 'lb.b.svc.cluster.local' },
  // health
  { name: 'UNHEALTHY endpoints are excluded', state: [lbSvc(), ep('sick', '10.0.3.1', { status: 'UNHEALTHY' })], request: req('10.96.0.2', 80), expect: { kind: 'refuse', code: 'PROXY_NO_HEALTHY_UPSTREAM' } },
  { name: 'UNHEALTHY endpoints are used with ALLOW_ALL', state: [lbSvc({ loadBalancing: lb('UNSPECIFIED_MODE', [], 'ALLOW_ALL') }), ep('sick', '10.0.3.1', { status: 'UNHEALTHY' })], request: req('10.96.0.2', 80), expect: { kind: 'hbone', dial: { ip: '10.0.3.1', port: 15008 } } },
  { name: 'a healthy endpoint is chosen over an unhealthy one', state: [lbSvc(), ep('sick', '10.0.3.1', { status: 'UNHEALTHY' }), ep('ok', '10.0.3.2')], request: req('10.96.0.2', 80), random: 0, expect: { kind: 'hbone', dial: { ip: '10.0.3.2', port: 15008 } } },
  // capacity weighting: e1 (1) takes [0, 0.25), e3 (3) takes [0.25, 1)
  { name: 'capacity weighting: low draw picks capacity 1', state: [lbSvc(), ep('e1', '10.0.3.1'), ep('e3', '10.0.3.3', { capacity: 3 })], request: req('10.96.0.2', 80), random: 0.2, expect: { dial: { ip: '10.0.3.1', port: 15008 } } },
  { name: 'capacity weighting: higher draw picks capacity 3', state: [lbSvc(), ep('e1', '10.0.3.1'), ep('e3', '10.0.3.3', { capacity: 3 })], request: req('10.96.0.2', 80), random: 0.3, expect: { dial: { ip: '10.0.3.3', port: 15008 } } },
  { name: 'capacity 0 is never chosen', state: [lbSvc(), ep('e0', '10.0.3.1', { capacity: 0 }), ep('e1', '10.0.3.2')], request: req('10.96.0.2', 80), random: 0, expect: { dial: { ip: '10.0.3.2', port: 15008 } } },
  // locality
  {
    name: 'STRICT keeps only full matches',
    state: [lbSvc({ loadBalancing: lb('STRICT', ['REGION', 'ZONE']) }), ep('other-zone', '10.0.3.1', { locality: { region: 'r1', zone: 'z2', subzone: 's1' } }), ep('same', '10.0.3.2')],
    request: req('10.96.0.2', 80),
    random: 0,
    expect: { dial: { ip: '10.0.3.2', port: 15008 } },
  },
  { name: 'STRICT without a full match: no healthy upstream', state: [lbSvc({ loadBalancing: lb('STRICT', ['REGION', 'ZONE']) }), ep('other-zone', '10.0.3.1', { locality: { region: 'r1', zone: 'z2', subzone: 's1' } })], request: req('10.96.0.2', 80), expect: { kind: 'refuse', code: 'PROXY_NO_HEALTHY_UPSTREAM' } },
  {
    name: 'FAILOVER keeps the best rank (same region beats other region)',
    state: [lbSvc({ loadBalancing: lb('FAILOVER', ['REGION', 'ZONE']) }), ep('far', '10.0.3.1', { locality: { region: 'r2', zone: 'z1', subzone: 's1' } }), ep('near', '10.0.3.2', { locality: { region: 'r1', zone: 'z9', subzone: 's1' } })],
    request: req('10.96.0.2', 80),
    random: 0,
    expect: { dial: { ip: '10.0.3.2', port: 15008 } },
  },
  {
    name: 'FAILOVER by NODE',
    state: [lbSvc({ loadBalancing: lb('FAILOVER', ['NODE']) }), ep('n2', '10.0.3.1', { node: 'node2' }), ep('n1', '10.0.3.2')],
    request: req('10.96.0.2', 80),
    random: 0,
    expect: { dial: { ip: '10.0.3.2', port: 15008 } },
  },
  {
    name: 'NETWORK first: same network outranks a remote endpoint matching every other scope',
    state: [lbSvc({ loadBalancing: lb('FAILOVER', ['NETWORK', 'REGION', 'ZONE']) }), ep('remote', '10.1.0.1', { network: 'n2' }), ep('local', '10.0.3.2', { locality: { region: 'r9', zone: 'z9', subzone: 's9' } })],
    request: req('10.96.0.2', 80),
    random: 0,
    expect: { kind: 'hbone', dial: { ip: '10.0.3.2', port: 15008 } },
  },
  {
    name: 'NETWORK last: the remote endpoint wins on region, and cross-network is refused',
    state: [lbSvc({ loadBalancing: lb('FAILOVER', ['REGION', 'ZONE', 'NETWORK']) }), ep('remote', '10.1.0.1', { network: 'n2' }), ep('local', '10.0.3.2', { locality: { region: 'r9', zone: 'z9', subzone: 's9' } })],
    request: req('10.96.0.2', 80),
    random: 0,
    expect: { kind: 'refuse', code: 'PROXY_CROSS_NETWORK_UNSUPPORTED' },
  },
  { name: 'an endpoint on another network is refused (no double HBONE yet)', state: [lbSvc(), ep('remote', '10.1.0.1', { network: 'n2' })], request: req('10.96.0.2', 80), expect: { kind: 'refuse', code: 'PROXY_CROSS_NETWORK_UNSUPPORTED' } },
  // IP choice
  { name: 'endpoint IP of the request family', state: [lbSvc(), ep('dual', ['fd00::7', '10.0.3.7'])], request: req('10.96.0.2', 80), expect: { dial: { ip: '10.0.3.7', port: 15008 }, authority: '10.0.3.7:8080' } },
  { name: 'IPV6_ONLY service: the IPv6 address even for an IPv4 VIP', state: [lbSvc({ ipFamilies: 'IPV6_ONLY' }), ep('dual', ['10.0.3.7', 'fd00::7'])], request: req('10.96.0.2', 80), expect: { dial: { ip: 'fd00::7', port: 15008 }, authority: '[fd00::7]:8080' } },
  // VIP choice
  {
    name: 'shared VIP: a NAMESPACE-visible service of another namespace is dropped',
    state: [svc('x', '10.96.0.5', { ns: 'b', visibility: 'NAMESPACE', canonical: true }), svc('x', '10.96.0.5', { ns: 'c', ports: [port(80, 8082)] }), serving(wl('xb', '10.0.4.1'), 'b', 'x.b.svc.cluster.local', []), serving(wl('xc', '10.0.4.2', { ns: 'c' }), 'c', 'x.c.svc.cluster.local', [])],
    request: req('10.96.0.5', 80),
    expect: { dial: { ip: '10.0.4.2', port: 15008 } },
    service: 'x.c.svc.cluster.local',
  },
  {
    name: 'shared VIP: the client namespace wins, even over canonical and NAMESPACE visibility',
    state: [svc('x', '10.96.0.5', { ns: 'a', visibility: 'NAMESPACE' }), svc('x', '10.96.0.5', { ns: 'c', canonical: true }), serving(wl('xa', '10.0.4.1', { ns: 'a' }), 'a', 'x.a.svc.cluster.local', []), serving(wl('xc', '10.0.4.2', { ns: 'c' }), 'c', 'x.c.svc.cluster.local', [])],
    request: req('10.96.0.5', 80),
    expect: { dial: { ip: '10.0.4.1', port: 15008 } },
    service: 'x.a.svc.cluster.local',
  },
  {
    name: 'shared VIP: canonical breaks the tie between other namespaces',
    state: [svc('x', '10.96.0.5', { ns: 'b' }), svc('x', '10.96.0.5', { ns: 'c', canonical: true }), serving(wl('xb', '10.0.4.1'), 'b', 'x.b.svc.cluster.local', []), serving(wl('xc', '10.0.4.2', { ns: 'c' }), 'c', 'x.c.svc.cluster.local', [])],
    request: req('10.96.0.5', 80),
    expect: { dial: { ip: '10.0.4.2', port: 15008 } },
    service: 'x.c.svc.cluster.local',
  },
  {
    name: 'shared VIP: otherwise the first to arrive',
    state: [svc('x', '10.96.0.5', { ns: 'b' }), svc('x', '10.96.0.5', { ns: 'c' }), serving(wl('xb', '10.0.4.1'), 'b', 'x.b.svc.cluster.local', []), serving(wl('xc', '10.0.4.2', { ns: 'c' }), 'c', 'x.c.svc.cluster.local', [])],
    request: req('10.96.0.5', 80),
    expect: { dial: { ip: '10.0.4.1', port: 15008 } },
    service: 'x.b.svc.cluster.local',
  },
  {
    name: 'a workload IP wins over a service VIP',
    state: [svc('x', '10.0.1.5'), pod],
    request: req('10.0.1.5', 80),
    expect: { kind: 'hbone', authority: '10.0.1.5:80' },
    workload: pod.uid,
  },
  // service waypoint
  {
    name: 'service waypoint by hostname: HBONE to the waypoint, authority = VIP:port, waypoint identities',
    state: [{ ...reviews, waypoint: gwHost('b', WP) }, r1, wpSvc, wpPod],
    request: req('10.96.0.1', 9080),
    expect: { kind: 'hbone', via: 'service-waypoint', dial: { ip: '10.0.9.9', port: 15008 }, authority: '10.96.0.1:9080' },
    identities: [id(wpPod), spiffeId('cluster.local', 'b', 'wp-extra')],
    service: REVIEWS,
  },
  { name: 'service waypoint by workload IP', state: [{ ...reviews, waypoint: gwIp('10.0.9.9') }, r1, wpPod], request: req('10.96.0.1', 9080), expect: { kind: 'hbone', via: 'service-waypoint', dial: { ip: '10.0.9.9', port: 15008 }, authority: '10.96.0.1:9080' }, identities: [id(wpPod)] },
  { name: 'service waypoint by service VIP: load-balanced over its endpoints', state: [{ ...reviews, waypoint: gwIp('10.96.0.99') }, r1, wpSvc, wpPod], request: req('10.96.0.1', 9080), expect: { kind: 'hbone', via: 'service-waypoint', dial: { ip: '10.0.9.9', port: 15008 } } },
  {
    name: 'service waypoint: the hbone port maps to the instance target port',
    state: [{ ...reviews, waypoint: gwHost('b', WP) }, r1, wpSvc, serving(wl('wp', '10.0.9.9'), 'b', WP, [port(15008, 15009)])],
    request: req('10.96.0.1', 9080),
    expect: { kind: 'hbone', dial: { ip: '10.0.9.9', port: 15009 } },
  },
  { name: 'service waypoint wins over PASSTHROUGH', state: [{ ...lbSvc({ loadBalancing: lb('PASSTHROUGH') }), waypoint: gwHost('b', WP) }, wpSvc, wpPod], request: req('10.96.0.2', 80), expect: { kind: 'hbone', via: 'service-waypoint', authority: '10.96.0.2:80' } },
  { name: 'unknown service waypoint hostname: refused', state: [{ ...reviews, waypoint: gwHost('b', 'nope.b.svc.cluster.local') }, r1], request: req('10.96.0.1', 9080), expect: { kind: 'refuse', code: 'PROXY_UNKNOWN_WAYPOINT' } },
  { name: 'unknown service waypoint address: refused', state: [{ ...reviews, waypoint: gwIp('10.9.9.9') }, r1], request: req('10.96.0.1', 9080), expect: { kind: 'refuse', code: 'PROXY_UNKNOWN_WAYPOINT' } },
  { name: 'waypoint service without instances: refused as unknown waypoint', state: [{ ...reviews, waypoint: gwHost('b', WP) }, r1, wpSvc], request: req('10.96.0.1', 9080), expect: { kind: 'refuse', code: 'PROXY_UNKNOWN_WAYPOINT' } },
  {
    name: 'waypoint on another network: refused (no double HBONE yet)',
    state: [{ ...reviews, waypoint: gwHost('b', WP) }, r1, wpSvc, serving(wl('wp', '10.1.9.9', { network: 'n2' }), 'b', WP, [port(15008, 15008)])],
    request: req('10.96.0.1', 9080),
    expect: { kind: 'refuse', code: 'PROXY_CROSS_NETWORK_UNSUPPORTED' },
  },
  // weighted waypoints: wp (1) takes [0, 0.25), wp2 (3) takes [0.25, 1)
  {
    name: 'weighted waypoints: low draw picks the weight-1 waypoint',
    state: [{ ...reviews, waypoint: gwHost('b', 'ignored'), weightedWaypoints: [{ destination: gwHost('b', WP), weight: 1 }, { destination: gwHost('b', 'wp2.b.svc.cluster.local'), weight: 3 }] }, r1, wpSvc, wpPod, wp2Svc, wp2Pod],
    request: req('10.96.0.1', 9080),
    random: 0.2,
    expect: { kind: 'hbone', via: 'service-waypoint', dial: { ip: '10.0.9.9', port: 15008 } },
  },
  {
    name: 'weighted waypoints: higher draw picks the weight-3 waypoint',
    state: [{ ...reviews, waypoint: gwHost('b', 'ignored'), weightedWaypoints: [{ destination: gwHost('b', WP), weight: 1 }, { destination: gwHost('b', 'wp2.b.svc.cluster.local'), weight: 3 }] }, r1, wpSvc, wpPod, wp2Svc, wp2Pod],
    request: req('10.96.0.1', 9080),
    random: 0.3,
    expect: { kind: 'hbone', via: 'service-waypoint', dial: { ip: '10.0.9.8', port: 15008 } },
  },
  // workload waypoint
  {
    name: 'workload waypoint: HBONE to the waypoint, authority = pod IP:port',
    state: [{ ...pod, waypoint: gwHost('b', WP) }, wpSvc, wpPod],
    request: req('10.0.1.5', 8080),
    expect: { kind: 'hbone', via: 'workload-waypoint', dial: { ip: '10.0.9.9', port: 15008 }, authority: '10.0.1.5:8080' },
    identities: [id(wpPod), spiffeId('cluster.local', 'b', 'wp-extra')],
    workload: pod.uid,
  },
  {
    name: 'workload waypoint: traffic from the waypoint itself goes direct (loop avoidance)',
    state: [{ ...pod, waypoint: gwHost('b', WP) }, wpSvc, wpPod],
    request: req('10.0.1.5', 8080, { source: wpPod, sourceAddress: { ip: '10.0.9.9', port: 40000 } }),
    expect: { kind: 'hbone', via: 'direct', dial: { ip: '10.0.1.5', port: 15008 }, authority: '10.0.1.5:8080' },
  },
  {
    name: 'workload waypoint: the waypoint identity from another IP still goes through the waypoint',
    state: [{ ...pod, waypoint: gwHost('b', WP) }, wpSvc, wpPod],
    request: req('10.0.1.5', 8080, { source: wpPod, sourceAddress: { ip: '10.0.0.77', port: 40000 } }),
    expect: { kind: 'hbone', via: 'workload-waypoint' },
  },
  { name: 'workload waypoint unknown: refused', state: [{ ...pod, waypoint: gwIp('10.9.9.9') }], request: req('10.0.1.5', 8080), expect: { kind: 'refuse', code: 'PROXY_UNKNOWN_WAYPOINT' } },
  {
    name: 'service-addressed traffic ignores the endpoint workload waypoint',
    state: [reviews, { ...r1, waypoint: gwHost('b', WP) }, wpSvc, wpPod],
    request: req('10.96.0.1', 9080),
    expect: { kind: 'hbone', via: 'direct', dial: { ip: '10.0.2.1', port: 15008 }, authority: '10.0.2.1:9081' },
  },
];

for (const c of cases) {
  test(c.name, (t) => {
    const decision: RouteDecision = routeOutbound(store(c.state), c.request, () => c.random ?? 0);
    t.like(decision, c.expect);
    if (decision.kind === 'refuse') t.true(decision.reason.length > 0);
    if (c.identities) {
      t.is(decision.kind, 'hbone');
      if (decision.kind === 'hbone') t.deepEqual(decision.expectedIdentities, c.identities);
    }
    if (c.workload !== undefined) t.is(decision.kind !== 'refuse' && decision.kind !== 'passthrough' ? decision.destinationWorkload?.uid : undefined, c.workload);
    if (c.service !== undefined) t.is(decision.kind !== 'refuse' ? decision.destinationService?.hostname : undefined, c.service);
  });
}

test('the random source defaults to Math.random and stays within the candidates', (t) => {
  const s = store([lbSvc(), ep('e1', '10.0.3.1'), ep('e2', '10.0.3.2')]);
  const seen = new Set<string>();
  for (let i = 0; i < 50; i++) {
    const d = routeOutbound(s, req('10.96.0.2', 80));
    if (d.kind === 'hbone') seen.add(d.dial.ip);
  }
  t.true([...seen].every((ip) => ip === '10.0.3.1' || ip === '10.0.3.2'));
  t.true(seen.size >= 1);
});

test('the decision is pure: the same inputs give the same decision and the state is untouched', (t) => {
  const s = store([{ ...reviews, waypoint: gwHost('b', WP) }, r1, wpSvc, wpPod]);
  const before = s.counts();
  const a = routeOutbound(s, req('10.96.0.1', 9080), () => 0.5);
  const b = routeOutbound(s, req('10.96.0.1', 9080), () => 0.5);
  t.deepEqual(a, b);
  t.deepEqual(s.counts(), before);
});

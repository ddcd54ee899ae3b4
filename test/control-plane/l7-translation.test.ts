import test from 'ava';
import { gatewayDurationMs } from '../../src/control-plane/l7/http-route.ts';
import { l7Extension } from '../../src/control-plane/l7/extension.ts';
import type { KubeObject } from '../../src/control-plane/kube-objects.ts';
import { Translator } from '../../src/control-plane/translator.ts';
import { istioDurationMs, resolveHost } from '../../src/control-plane/l7/destination-rule.ts';
import type { AuthorizationPolicy__Output } from '../../src/workload-api/generated/ambient/l7/AuthorizationPolicy.ts';
import type { DestinationPolicy__Output } from '../../src/workload-api/generated/ambient/l7/DestinationPolicy.ts';
import type { RequestAuthentication__Output } from '../../src/workload-api/generated/ambient/l7/RequestAuthentication.ts';
import type { RouteConfiguration__Output } from '../../src/workload-api/generated/ambient/l7/RouteConfiguration.ts';
import { destinationPolicyFromWire, l7AuthorizationFromWire, requestAuthenticationFromWire, routeConfigurationFromWire } from '../../src/workload-api/l7-convert.ts';
import { DEFAULT_RETRY_POLICY, type DestinationPolicy, type L7AuthorizationPolicy, type RequestAuthentication, type RouteConfiguration } from '../../src/workload-api/l7-types.ts';
import { decodeMessage, TypeUrl } from '../../src/workload-api/proto.ts';
import { ResourceSnapshot } from '../../src/workload-api/snapshot.ts';
import { captureLog } from '../helpers/log.ts';

// HTTPRoute (GAMMA) → the waypoint's RouteConfiguration, and targetRef AuthorizationPolicies → its L7
// AuthorizationPolicy, through the translator with the L7 extension, read back from the snapshot as the waypoint
// decodes them.

type Obj = [kind: string, object: KubeObject];

const ns = (name: string, labels: Record<string, string> = {}): Obj => ['Namespace', { metadata: { name, labels } }];
const svc = (name: string, namespace = 'shop', labels: Record<string, string> = {}): Obj => [
  'Service',
  { metadata: { name, namespace, labels }, spec: { selector: { app: name }, clusterIP: '10.96.0.1', ports: [{ name: 'http', port: 9080, targetPort: 9080 }] } } as KubeObject,
];
const route = (name: string, spec: Record<string, unknown>, created = '2026-01-01T00:00:00Z', namespace = 'shop'): Obj => [
  'HTTPRoute',
  { metadata: { name, namespace, creationTimestamp: created }, spec } as KubeObject,
];
const parent = (name: string, extra: Record<string, unknown> = {}) => ({ parentRefs: [{ group: '', kind: 'Service', name, ...extra }] });
const backend = (name: string, weight?: number, port = 9080) => ({ name, port, ...(weight === undefined ? {} : { weight }) });
const HOST = (name: string) => `${name}.shop.svc.cluster.local`;

function translate(objects: readonly Obj[]) {
  const snapshot = new ResourceSnapshot();
  const log = captureLog();
  const extension = l7Extension({ logger: log.logger });
  const translator = new Translator({ snapshot, autoFlush: false, extensions: [extension] });
  const apply = (changes: readonly Obj[], type: 'upsert' | 'delete' = 'upsert') => {
    for (const [kind, object] of changes) translator.change({ kind, type, object });
    translator.flush();
  };
  apply(objects);
  const configs = (): Record<string, RouteConfiguration> => {
    const out: Record<string, RouteConfiguration> = {};
    for (const [name, entry] of snapshot.get(TypeUrl.routeConfiguration)) {
      const decoded = routeConfigurationFromWire(decodeMessage<RouteConfiguration__Output>('ambient.l7.RouteConfiguration', entry.value));
      if (!decoded.ok) throw new Error(decoded.errors.join('; '));
      out[name] = decoded.value;
    }
    return out;
  };
  const policies = (): Record<string, L7AuthorizationPolicy> => {
    const out: Record<string, L7AuthorizationPolicy> = {};
    for (const [name, entry] of snapshot.get(TypeUrl.l7Authorization)) {
      const decoded = l7AuthorizationFromWire(decodeMessage<AuthorizationPolicy__Output>('ambient.l7.AuthorizationPolicy', entry.value));
      if (!decoded.ok) throw new Error(decoded.errors.join('; '));
      out[name] = decoded.value;
    }
    return out;
  };
  const destinations = (): Record<string, DestinationPolicy> => {
    const out: Record<string, DestinationPolicy> = {};
    for (const [name, entry] of snapshot.get(TypeUrl.destinationPolicy)) {
      const decoded = destinationPolicyFromWire(decodeMessage<DestinationPolicy__Output>('ambient.l7.DestinationPolicy', entry.value));
      if (!decoded.ok) throw new Error(decoded.errors.join('; '));
      out[name] = decoded.value;
    }
    return out;
  };
  const authentications = (): Record<string, RequestAuthentication> => {
    const out: Record<string, RequestAuthentication> = {};
    for (const [name, entry] of snapshot.get(TypeUrl.requestAuthentication)) {
      const decoded = requestAuthenticationFromWire(decodeMessage<RequestAuthentication__Output>('ambient.l7.RequestAuthentication', entry.value));
      if (!decoded.ok) throw new Error(decoded.errors.join('; '));
      out[name] = decoded.value;
    }
    return out;
  };
  return { configs, policies, destinations, authentications, apply, problems: () => extension.problems(), log, snapshot };
}

const BOUND_NS = ns('shop', { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'waypoint' });

test('a 90/10 split on a Service bound to a waypoint becomes its RouteConfiguration; weights and ports as written', (t) => {
  const { configs, problems } = translate([
    BOUND_NS, svc('reviews'), svc('reviews-v1'), svc('reviews-v2'),
    route('split', { ...parent('reviews', { port: 9080 }), rules: [{ backendRefs: [backend('reviews-v1', 90), backend('reviews-v2', 10)] }] }),
  ]);
  t.deepEqual(problems(), []);
  const rc = configs()[`shop/${HOST('reviews')}`];
  t.deepEqual(rc?.ports, [9080]);
  t.deepEqual(rc?.routes.map((r) => r.name), ['shop/split.0']);
  t.deepEqual(rc?.routes[0]?.matches, [{ path: { kind: 'prefix', value: '/' }, headers: [], queryParams: [] }], 'no match means PathPrefix /');
  t.deepEqual(rc?.routes[0]?.backends.map((b) => [b.hostname, b.port, b.weight]), [[HOST('reviews-v1'), 9080, 90], [HOST('reviews-v2'), 9080, 10]]);
  t.deepEqual(rc?.routes[0]?.retries, DEFAULT_RETRY_POLICY, "Istio's default retries (HTTPRoute v1 has no retry field)");
});

test('matches, filters and timeouts carry over; the Gateway API precedence orders the matches of all routes of a parent', (t) => {
  const { configs, problems } = translate([
    BOUND_NS, svc('web'), svc('api'), svc('shadow'),
    route('newer', {
      ...parent('web'),
      rules: [
        { matches: [{ path: { type: 'PathPrefix', value: '/api' } }], backendRefs: [backend('api')], timeouts: { request: '1m30s' } },
        { matches: [{ path: { type: 'Exact', value: '/login' }, method: 'post' }], filters: [{ type: 'RequestRedirect', requestRedirect: { scheme: 'https', port: 8443 } }] },
      ],
    }, '2026-02-01T00:00:00Z'),
    route('older', {
      ...parent('web'),
      rules: [{
        matches: [{ path: { type: 'PathPrefix', value: '/api/v2' }, headers: [{ name: 'X-User', value: 'test' }], queryParams: [{ type: 'RegularExpression', name: 'v', value: '[0-9]+' }] }],
        filters: [
          { type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-Route', value: 'v2' }], remove: ['Cookie'] } },
          { type: 'URLRewrite', urlRewrite: { hostname: 'api.internal', path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v2' } } },
          { type: 'RequestMirror', requestMirror: { backendRef: backend('shadow'), fraction: { numerator: 1, denominator: 4 } } },
        ],
        backendRefs: [{ ...backend('api'), filters: [{ type: 'ResponseHeaderModifier', responseHeaderModifier: { add: [{ name: 'X-Served', value: 'api' }] } }] }],
      }, {
        matches: [{ path: { type: 'PathPrefix', value: '/api' } }],
        backendRefs: [backend('web')],
      }],
    }, '2026-01-01T00:00:00Z'),
  ]);
  t.deepEqual(problems(), []);
  const rc = configs()[`shop/${HOST('web')}`];
  // Exact first; then the longest prefix; for the same prefix the older route wins.
  t.deepEqual(rc?.routes.map((r) => r.name), ['shop/newer.1', 'shop/older.0', 'shop/older.1', 'shop/newer.0']);
  const [login, v2, olderApi, newerApi] = rc?.routes ?? [];
  t.deepEqual(login?.matches[0], { path: { kind: 'exact', value: '/login' }, headers: [], queryParams: [], method: 'POST' });
  t.deepEqual(login?.redirect, { statusCode: 302, scheme: 'https', port: 8443 }, 'RequestRedirect defaults to 302');
  t.deepEqual(v2?.matches[0]?.headers, [{ name: 'x-user', invert: false, value: { kind: 'exact', value: 'test' } }]);
  t.is(v2?.matches[0]?.queryParams[0]?.value?.kind, 'regex');
  t.deepEqual(v2?.requestHeaders, { set: [['x-route', 'v2']], add: [], remove: ['cookie'] });
  t.deepEqual(v2?.rewrite, { path: { kind: 'prefix', value: '/v2' }, host: 'api.internal' });
  t.deepEqual(v2?.mirrors, [{ namespace: 'shop', hostname: HOST('shadow'), port: 9080, subset: '', percentage: 25 }]);
  t.deepEqual(v2?.backends[0]?.responseHeaders, { set: [], add: [['x-served', 'api']], remove: [] });
  t.is(olderApi?.backends[0]?.hostname, HOST('web'));
  t.is(newerApi?.timeoutMs, 90_000);
});

test('MissingUseWaypointLabel, unknown parents and bad fields are problems; the rest still applies; Gateway routes are ignored', (t) => {
  const { configs, problems, log } = translate([
    ns('shop'), ns('other', { 'istio.io/use-waypoint': 'wp' }), svc('unbound'), svc('bound', 'shop', { 'istio.io/use-waypoint': 'waypoint' }), svc('x', 'other'),
    route('to-unbound', { ...parent('unbound'), rules: [{ backendRefs: [backend('unbound')] }] }),
    route('to-missing', { ...parent('nope'), rules: [{}] }),
    route('ingress', { parentRefs: [{ name: 'public-gateway' }], rules: [{ backendRefs: [backend('bound')] }] }),
    route('mixed', {
      ...parent('bound'),
      rules: [
        { matches: [{ path: { type: 'RegularExpression', value: '(' } }], backendRefs: [backend('bound')] },
        { backendRefs: [{ name: 'x', namespace: 'other', port: 80 }] },
        { filters: [{ type: 'ExtensionRef' }] },
        { timeouts: { request: 'soon' } },
        { matches: [{ path: { type: 'Exact', value: '/ok' } }], backendRefs: [backend('bound', 0), backend('bound', 2)] },
      ],
    }),
  ]);
  const all = configs();
  t.deepEqual(Object.keys(all), [`shop/${HOST('bound')}`], 'only the bound service has a configuration');
  t.deepEqual(all[`shop/${HOST('bound')}`]?.routes.map((r) => r.name), ['shop/mixed.4'], 'the good rule of the mixed route applies');
  const text = problems().join('\n');
  t.regex(text, /shop\/to-unbound: spec\.parentRefs\[0\]: MissingUseWaypointLabel/);
  t.regex(text, /shop\/to-missing: spec\.parentRefs\[0\]: Service shop\/nope does not exist/);
  t.regex(text, /shop\/mixed: spec\.rules\[0\]\.matches\[0\]\.path: invalid regular expression/);
  t.regex(text, /shop\/mixed: spec\.rules\[1\]\.backendRefs\[0\]: a backend in namespace other needs a ReferenceGrant/);
  t.regex(text, /shop\/mixed: spec\.rules\[2\]\.filters\[0\]\.type: "ExtensionRef" is not supported/);
  t.regex(text, /shop\/mixed: spec\.rules\[3\]\.timeouts\.request: "soon" is not a duration/);
  t.notRegex(text, /ingress/, 'a route of a Gateway is not the mesh\'s business');
  t.true(log.records.some((r) => r['code'] === 'CP_INVALID_OBJECT' && r['object'] === 'shop/mixed'), 'logged with its code');
});

test('changes: a weight change rewrites only that configuration; unbinding the service or deleting the route removes it', (t) => {
  const base: Obj[] = [BOUND_NS, svc('reviews'), svc('reviews-v1'), svc('reviews-v2'), svc('ratings')];
  const split = (a: number, b: number) => route('split', { ...parent('reviews'), rules: [{ backendRefs: [backend('reviews-v1', a), backend('reviews-v2', b)] }] });
  const ratings = route('ratings', { ...parent('ratings'), rules: [{ backendRefs: [backend('ratings')] }] });
  const { configs, apply } = translate([...base, split(90, 10), ratings]);
  const before = configs();
  t.deepEqual(Object.keys(before).sort(), [`shop/${HOST('ratings')}`, `shop/${HOST('reviews')}`]);
  apply([split(50, 50)]);
  const after = configs();
  t.deepEqual(after[`shop/${HOST('reviews')}`]?.routes[0]?.backends.map((b) => b.weight), [50, 50]);
  t.deepEqual(after[`shop/${HOST('ratings')}`], before[`shop/${HOST('ratings')}`]);
  apply([ratings], 'delete');
  t.deepEqual(Object.keys(configs()), [`shop/${HOST('reviews')}`]);
  apply([ns('shop', { 'istio.io/dataplane-mode': 'ambient' })]);
  t.deepEqual(Object.keys(configs()), [], 'no waypoint binding: the route is not respected');
});

test('gatewayDurationMs: the Gateway API duration format', (t) => {
  t.is(gatewayDurationMs('10s'), 10_000);
  t.is(gatewayDurationMs('500ms'), 500);
  t.is(gatewayDurationMs('1h30m'), 5_400_000);
  t.is(gatewayDurationMs('2m'), 120_000);
  t.is(gatewayDurationMs('1m500ms'), 60_500);
  t.is(gatewayDurationMs(''), undefined);
  t.is(gatewayDurationMs('1.5s'), undefined);
  t.is(gatewayDurationMs('10'), undefined);
});

const gateway = (name: string, namespace = 'shop'): Obj => [
  'Gateway',
  { metadata: { name, namespace }, spec: { gatewayClassName: 'istio-waypoint', listeners: [{ name: 'mesh', port: 15008, protocol: 'HBONE' }] }, status: { addresses: [{ type: 'Hostname', value: `${name}.${namespace}.svc.cluster.local` }] } } as KubeObject,
];
const policy = (name: string, spec: Record<string, unknown>, namespace = 'shop', annotations: Record<string, string> = {}): Obj => [
  'AuthorizationPolicy', { metadata: { name, namespace, annotations }, spec } as KubeObject,
];
const GW_REF = { group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'waypoint' };

test('waypoint policies: Gateway, GatewayClass and Service targets; rules field for field; selector policies are not the waypoint\'s', (t) => {
  const { policies, problems } = translate([
    BOUND_NS, ns('istio-system'), gateway('waypoint'), svc('reviews'), svc('ratings'), svc('elsewhere', 'shop', { 'istio.io/use-waypoint': 'other' }),
    policy('no-delete', { targetRefs: [GW_REF], action: 'DENY', rules: [{ to: [{ operation: { methods: ['DELETE'] } }] }] }),
    policy('reviews-readers', {
      targetRefs: [{ kind: 'Service', group: '', name: 'reviews' }],
      rules: [{
        from: [{ source: { principals: ['cluster.local/ns/shop/sa/web'], serviceAccounts: ['batch', 'ops/cron'], namespaces: ['shop'], notIpBlocks: ['10.9.0.0/16'] } }],
        to: [{ operation: { methods: ['GET'], paths: ['/api/*'], ports: ['9080'], notHosts: ['admin.*'] } }],
        when: [{ key: 'request.headers[x-env]', values: ['prod'], notValues: ['dev'] }],
      }],
    }, 'shop', { 'istio.io/dry-run': 'true' }),
    policy('mesh-wide', { targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'GatewayClass', name: 'istio-waypoint' }], action: 'DENY', rules: [{ to: [{ operation: { paths: ['/debug*'] } }] }] }, 'istio-system'),
    policy('ztunnel-only', { selector: { matchLabels: { app: 'reviews' } }, rules: [{}] }),
  ]);
  t.deepEqual(problems(), []);
  const all = policies();
  t.deepEqual(Object.keys(all).sort(), ['istio-system/mesh-wide', 'shop/no-delete', 'shop/reviews-readers']);
  t.deepEqual(all['shop/no-delete']?.targetServices, [`shop/${HOST('ratings')}`, `shop/${HOST('reviews')}`], 'every service bound to the waypoint, not the one bound elsewhere');
  t.is(all['shop/no-delete']?.action, 'DENY');
  t.deepEqual(all['istio-system/mesh-wide']?.targetServices, [], 'the GatewayClass: every service of every waypoint');
  const readers = all['shop/reviews-readers'];
  t.deepEqual(readers?.targetServices, [`shop/${HOST('reviews')}`]);
  t.true(readers?.dryRun);
  t.deepEqual(readers?.rules[0]?.from[0]?.principals, ['cluster.local/ns/shop/sa/web', 'cluster.local/ns/shop/sa/batch', 'cluster.local/ns/ops/sa/cron']);
  t.deepEqual(readers?.rules[0]?.from[0]?.notIpBlocks, ['10.9.0.0/16']);
  t.deepEqual(readers?.rules[0]?.to[0], { hosts: [], notHosts: ['admin.*'], ports: [9080], notPorts: [], methods: ['GET'], notMethods: [], paths: ['/api/*'], notPaths: [] });
  t.deepEqual(readers?.rules[0]?.when, [{ key: 'request.headers[x-env]', values: ['prod'], notValues: ['dev'] }]);
});

test('waypoint policies fail closed: CUSTOM is not sent, an unsupported field drops an ALLOW rule but keeps a DENY rule, bad targets are problems', (t) => {
  const { policies, problems } = translate([
    BOUND_NS, gateway('waypoint'), svc('reviews'),
    policy('custom', { targetRefs: [GW_REF], action: 'CUSTOM', provider: { name: 'ext' }, rules: [{}] }),
    policy('allow-remote', { targetRefs: [GW_REF], rules: [{ from: [{ source: { remoteIpBlocks: ['1.2.3.4'] } }] }, { to: [{ operation: { methods: ['GET'] } }] }] }),
    policy('deny-remote', { targetRefs: [GW_REF], action: 'DENY', rules: [{ from: [{ source: { remoteIpBlocks: ['1.2.3.4'] } }], to: [{ operation: { methods: ['POST'] } }] }] }),
    policy('bad-port', { targetRefs: [GW_REF], rules: [{ to: [{ operation: { ports: ['http'] } }] }] }),
    policy('missing-gw', { targetRefs: [{ ...GW_REF, name: 'nope' }], rules: [{}] }),
    policy('class-outside-root', { targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'GatewayClass', name: 'istio-waypoint' }], rules: [{}] }),
  ]);
  const all = policies();
  t.false('shop/custom' in all);
  t.deepEqual(all['shop/allow-remote']?.rules.map((r) => r.to[0]?.methods), [['GET']], 'the ALLOW rule with remoteIpBlocks is dropped, the other stays');
  t.deepEqual(all['shop/deny-remote']?.rules.map((r) => r.to[0]?.methods), [['POST']], 'the DENY rule stays without the field: it denies more');
  t.deepEqual(all['shop/bad-port']?.rules, [], 'an ALLOW whose only rule is invalid allows nothing');
  t.false('shop/missing-gw' in all);
  t.false('shop/class-outside-root' in all);
  const text = problems().join('\n');
  t.regex(text, /shop\/custom: spec\.action: CUSTOM is not supported/);
  t.regex(text, /shop\/allow-remote: spec\.rules\[0\]\.from\[0\]\.source\.remoteIpBlocks: not supported at the waypoint; the rule is dropped/);
  t.regex(text, /shop\/deny-remote: .*the rule denies without it/);
  t.regex(text, /shop\/bad-port: spec\.rules\[0\]\.to\[0\]\.operation\.ports\[0\]: "http" is not a port/);
  t.regex(text, /shop\/missing-gw: spec\.targetRefs\[0\]: Gateway shop\/nope does not exist/);
  t.regex(text, /shop\/class-outside-root: .*root namespace istio-system/);
});

test('a Gateway-targeted policy follows the services that bind to the waypoint', (t) => {
  const { policies, apply } = translate([
    ns('shop'), gateway('waypoint'), svc('reviews'),
    policy('no-delete', { targetRefs: [GW_REF], action: 'DENY', rules: [{ to: [{ operation: { methods: ['DELETE'] } }] }] }),
  ]);
  t.deepEqual(policies(), {}, 'nothing is bound yet');
  apply([svc('reviews', 'shop', { 'istio.io/use-waypoint': 'waypoint' })]);
  t.deepEqual(policies()['shop/no-delete']?.targetServices, [`shop/${HOST('reviews')}`]);
  apply([policy('no-delete', {}, 'shop')], 'delete');
  t.deepEqual(policies(), {});
});

const podOf = (name: string, labels: Record<string, string>): Obj => [
  'Pod',
  { metadata: { name, namespace: 'shop', labels }, spec: { nodeName: 'n1' }, status: { phase: 'Running', podIP: '10.0.0.9' } } as KubeObject,
];
const dr = (name: string, spec: Record<string, unknown>, created = '2026-01-01T00:00:00Z'): Obj => ['DestinationRule', { metadata: { name, namespace: 'shop', creationTimestamp: created }, spec } as KubeObject];

test('DestinationRule → DestinationPolicy: host resolution, traffic policy with Istio defaults, subsets resolved to the pods behind the service', (t) => {
  const { destinations, problems, apply } = translate([
    BOUND_NS, svc('reviews'), podOf('reviews-v1-a', { app: 'reviews', version: 'v1' }), podOf('reviews-v2-a', { app: 'reviews', version: 'v2' }),
    podOf('reviews-v2-b', { app: 'reviews', version: 'v2' }), podOf('other-v2', { app: 'other', version: 'v2' }),
    dr('reviews', {
      host: 'reviews',
      trafficPolicy: {
        loadBalancer: { consistentHash: { httpCookie: { name: 'session', ttl: '0s' } } },
        connectionPool: { tcp: { maxConnections: 10, connectTimeout: '250ms' }, http: { http1MaxPendingRequests: 1, maxRetries: 3 } },
        outlierDetection: { consecutive5xxErrors: 2, baseEjectionTime: '1m' },
        tls: { mode: 'ISTIO_MUTUAL' },
      },
      subsets: [
        { name: 'v1', labels: { version: 'v1' } },
        { name: 'v2', labels: { version: 'v2' }, trafficPolicy: { loadBalancer: { simple: 'LEAST_CONN' } } },
      ],
    }),
    dr('late-duplicate', { host: 'reviews.shop.svc.cluster.local' }, '2026-06-01T00:00:00Z'),
    dr('broken', { host: 'ratings.other', trafficPolicy: { loadBalancer: { simple: 'PASSTHROUGH' }, outlierDetection: { interval: 'often' }, portLevelSettings: [{}] } }),
  ]);
  const all = destinations();
  t.deepEqual(Object.keys(all).sort(), ['other/ratings.other.svc.cluster.local', `shop/${HOST('reviews')}`]);
  const reviews = all[`shop/${HOST('reviews')}`];
  t.deepEqual(reviews?.trafficPolicy?.loadBalancer, { kind: 'hash', key: { kind: 'cookie', name: 'session' } });
  t.deepEqual(reviews?.trafficPolicy?.connectionPool, { maxConnections: 10, connectTimeoutMs: 250, http1MaxPendingRequests: 1, maxRetries: 3 });
  t.deepEqual(reviews?.trafficPolicy?.outlierDetection, { consecutive5xxErrors: 2, consecutiveGatewayErrors: 0, intervalMs: 10_000, baseEjectionTimeMs: 60_000, maxEjectionPercent: 10, minHealthPercent: 0 });
  t.deepEqual(reviews?.subsets.map((s) => [s.name, s.workloadUids]), [
    ['v1', ['Kubernetes//Pod/shop/reviews-v1-a']],
    ['v2', ['Kubernetes//Pod/shop/reviews-v2-a', 'Kubernetes//Pod/shop/reviews-v2-b']],
  ], 'only pods the service selects');
  t.deepEqual(reviews?.subsets[1]?.trafficPolicy?.loadBalancer, { kind: 'least-request' });
  const text = problems().join('\n');
  t.regex(text, /shop\/late-duplicate: spec\.host: reviews\.shop\.svc\.cluster\.local already has the older DestinationRule shop\/reviews/);
  t.regex(text, /shop\/broken: spec\.trafficPolicy\.loadBalancer\.simple: PASSTHROUGH is not supported/);
  t.regex(text, /shop\/broken: spec\.trafficPolicy\.outlierDetection\.interval: "often" is not a duration/);
  t.regex(text, /shop\/broken: spec\.trafficPolicy\.portLevelSettings: not supported/);

  // A new pod of the subset joins it.
  apply([podOf('reviews-v1-b', { app: 'reviews', version: 'v1' })]);
  t.deepEqual(destinations()[`shop/${HOST('reviews')}`]?.subsets[0]?.workloadUids, ['Kubernetes//Pod/shop/reviews-v1-a', 'Kubernetes//Pod/shop/reviews-v1-b']);
});

test('istioDurationMs and resolveHost', (t) => {
  t.deepEqual(['30s', '1.5s', '3m', '100ms', '1h30m', '0s', '250us'].map(istioDurationMs), [30_000, 1500, 180_000, 100, 5_400_000, 0, 0]);
  t.deepEqual(['', '10', 'soon', '-1s'].map(istioDurationMs), [undefined, undefined, undefined, undefined]);
  t.deepEqual(resolveHost('reviews', 'shop', 'cluster.local'), { namespace: 'shop', hostname: 'reviews.shop.svc.cluster.local' });
  t.deepEqual(resolveHost('reviews.prod', 'shop', 'cluster.local'), { namespace: 'prod', hostname: 'reviews.prod.svc.cluster.local' });
  t.deepEqual(resolveHost('reviews.prod.svc.cluster.local', 'shop', 'cluster.local'), { namespace: 'prod', hostname: 'reviews.prod.svc.cluster.local' });
  t.deepEqual(resolveHost('api.example.com', 'shop', 'cluster.local'), { namespace: 'shop', hostname: 'api.example.com' });
});

const vs = (name: string, spec: Record<string, unknown>, created = '2026-01-01T00:00:00Z', namespace = 'shop'): Obj => [
  'VirtualService', { metadata: { name, namespace, creationTimestamp: created }, spec } as KubeObject,
];

test('VirtualService http routes → RouteConfiguration: matches, weighted subsets, retries, faults, mirrors, rewrite, redirect, headers', (t) => {
  const { configs, problems } = translate([
    BOUND_NS, svc('reviews'), svc('shadow'),
    vs('reviews', {
      hosts: ['reviews'],
      http: [
        {
          name: 'jason',
          match: [{ headers: { 'End-User': { exact: 'jason' } }, withoutHeaders: { 'x-skip': {} }, queryParams: { debug: { regex: '1|true' } }, method: { exact: 'get' } }],
          route: [{ destination: { host: 'reviews', subset: 'v2', port: { number: 9080 } } }],
          retries: { attempts: 3, perTryTimeout: '2s', retryOn: 'gateway-error,connect-failure,503' },
          headers: { request: { set: { 'X-Who': 'jason' } }, response: { remove: ['Server'] } },
        },
        {
          match: [{ uri: { prefix: '/api' } }],
          rewrite: { uri: '/v1', authority: 'api.internal' },
          fault: { delay: { fixedDelay: '1.5s', percentage: { value: 50 } }, abort: { grpcStatus: 'UNAVAILABLE', percentage: { value: 5 } } },
          mirror: { host: 'shadow' }, mirrorPercentage: { value: 10 },
          route: [{ destination: { host: 'reviews', subset: 'v1' } }],
          timeout: '3s',
        },
        { match: [{ uri: { exact: '/old' } }], redirect: { uri: '/new', authority: 'shop.example', redirectCode: 308 } },
        { route: [{ destination: { host: 'reviews', subset: 'v1' }, weight: 90 }, { destination: { host: 'reviews.shop.svc.cluster.local', subset: 'v2' }, weight: 10 }] },
      ],
    }),
  ]);
  t.deepEqual(problems(), []);
  const rc = configs()[`shop/${HOST('reviews')}`];
  t.deepEqual(rc?.routes.map((r) => r.name), ['jason', 'shop/reviews.1', 'shop/reviews.2', 'shop/reviews.3']);
  const [jason, api, old, split] = rc?.routes ?? [];
  t.deepEqual(jason?.matches[0]?.headers.map((h) => [h.name, h.invert, h.value?.value]), [['end-user', false, 'jason'], ['x-skip', true, undefined]]);
  t.is(jason?.matches[0]?.queryParams[0]?.value?.kind, 'regex');
  t.is(jason?.matches[0]?.method, 'GET');
  t.deepEqual(jason?.backends.map((b) => [b.subset, b.port, b.weight]), [['v2', 9080, 100]], 'a single destination takes all the weight');
  t.deepEqual(jason?.retries, { attempts: 3, perTryTimeoutMs: 2000, retryOn: ['gateway-error', 'connect-failure', 'retriable-status-codes'], retriableStatusCodes: [503] });
  t.deepEqual(jason?.requestHeaders, { set: [['x-who', 'jason']], add: [], remove: [] });
  t.deepEqual(jason?.responseHeaders, { set: [], add: [], remove: ['server'] });
  t.deepEqual(api?.rewrite, { path: { kind: 'prefix', value: '/v1' }, host: 'api.internal' }, 'a prefix match rewrites the prefix');
  t.deepEqual(api?.fault, { delay: { fixedDelayMs: 1500, percentage: 50 }, abort: { kind: 'grpc', status: 14, percentage: 5 } });
  t.deepEqual(api?.mirrors, [{ namespace: 'shop', hostname: HOST('shadow'), port: 0, subset: '', percentage: 10 }]);
  t.is(api?.timeoutMs, 3000);
  t.deepEqual(api?.retries, DEFAULT_RETRY_POLICY, 'no retries given: Istio\'s default');
  t.is(old?.retries, undefined, 'a redirect does not retry');
  t.deepEqual(old?.redirect, { statusCode: 308, host: 'shop.example', path: { kind: 'full', value: '/new' } });
  t.deepEqual(split?.backends.map((b) => [b.hostname, b.subset, b.weight]), [[HOST('reviews'), 'v1', 90], [HOST('reviews'), 'v2', 10]]);
});

test('VirtualService bad input and precedence: ingress-only and unbound hosts are skipped, routes after a catch-all are dropped, HTTPRoutes win on a shared host', (t) => {
  const { configs, problems } = translate([
    BOUND_NS, svc('reviews'), svc('ratings'), svc('web'), ns('plain'), svc('free', 'plain'),
    vs('ingress', { hosts: ['web'], gateways: ['istio-system/public'], http: [{ route: [{ destination: { host: 'web' } }] }] }),
    vs('ratings', {
      hosts: ['ratings', 'api.example.com', 'free.plain'],
      http: [
        { match: [{ uri: { prefix: '/x' }, ignoreUriCase: true }], route: [{ destination: { host: 'ratings' } }] },
        { match: [{ uri: { regex: '(' } }], route: [{ destination: { host: 'ratings' } }] },
        { timeout: 'later', route: [{ destination: { host: 'ratings' } }] },
        { route: [{ destination: { host: 'ratings' } }] },
        { match: [{ uri: { exact: '/never' } }], route: [{ destination: { host: 'ratings' } }] },
      ],
    }),
    vs('reviews-vs', { hosts: ['reviews'], http: [{ route: [{ destination: { host: 'reviews', subset: 'v9' } }] }] }),
    route('reviews-route', { ...parent('reviews'), rules: [{ backendRefs: [backend('reviews')] }] }),
  ]);
  const all = configs();
  t.false(`shop/${HOST('web')}` in all, 'an ingress-only VirtualService is not the mesh\'s');
  t.deepEqual(all[`shop/${HOST('ratings')}`]?.routes.length, 1, 'only the catch-all survives');
  t.deepEqual(all[`shop/${HOST('reviews')}`]?.routes.map((r) => r.name), ['shop/reviews-route.0'], 'the HTTPRoute wins');
  const text = problems().join('\n');
  t.regex(text, /shop\/ratings: spec\.http\[0\]\.match\[0\]\.ignoreUriCase: not supported/);
  t.regex(text, /shop\/ratings: spec\.http\[1\]\.match\[0\]\.uri\.regex: invalid regular expression/);
  t.regex(text, /shop\/ratings: spec\.http\[2\]\.timeout: "later" is not a duration/);
  t.regex(text, /shop\/ratings: spec\.http\[4\]: unreachable after the catch-all/);
  t.regex(text, /shop\/ratings: spec\.hosts\[1\]: api\.example\.com is not a Kubernetes Service/);
  t.regex(text, /shop\/ratings: spec\.hosts\[2\]: free\.plain is in namespace plain/);
  t.regex(text, /shop\/reviews\.shop\.svc\.cluster\.local: the host also has HTTPRoutes/);
});

test('GRPCRoute: method matches become POST path matches on /service/method; backends and header matches carry over', (t) => {
  const { configs, problems } = translate([
    BOUND_NS, svc('greeter'), svc('greeter-v2'),
    ['GRPCRoute', { metadata: { name: 'greeter', namespace: 'shop', creationTimestamp: '2026-01-01T00:00:00Z' }, spec: {
      ...parent('greeter'),
      rules: [
        { matches: [{ method: { service: 'helloworld.Greeter', method: 'SayHello' }, headers: [{ name: 'x-canary', value: 'yes' }] }], backendRefs: [backend('greeter-v2')] },
        { matches: [{ method: { service: 'helloworld.Greeter' } }], backendRefs: [backend('greeter', 90), backend('greeter-v2', 10)] },
        { matches: [{ method: { type: 'RegularExpression', method: 'Say.*' } }], backendRefs: [backend('greeter')] },
      ],
    } } as KubeObject],
  ]);
  t.deepEqual(problems(), []);
  const rc = configs()[`shop/${HOST('greeter')}`];
  const byRule = Object.fromEntries((rc?.routes ?? []).map((r) => [r.name, r]));
  t.deepEqual(byRule['shop/greeter.0']?.matches[0]?.path, { kind: 'exact', value: '/helloworld.Greeter/SayHello' });
  t.is(byRule['shop/greeter.0']?.matches[0]?.method, 'POST');
  t.is(byRule['shop/greeter.0']?.matches[0]?.headers[0]?.name, 'x-canary');
  t.deepEqual(byRule['shop/greeter.1']?.matches[0]?.path, { kind: 'prefix', value: '/helloworld.Greeter/' });
  t.deepEqual(byRule['shop/greeter.1']?.backends.map((b) => b.weight), [90, 10]);
  const re = byRule['shop/greeter.2']?.matches[0]?.path;
  t.is(re?.kind, 'regex');
  t.true(re?.kind === 'regex' && re.regex.test('/any.Service/SayHi') && !re.regex.test('/any.Service/Other'));
  t.deepEqual(rc?.routes.map((r) => r.name), ['shop/greeter.0', 'shop/greeter.1', 'shop/greeter.2'], 'exact, then prefix, then regex');
});

test('RequestAuthentication with targetRefs → the waypoint\'s JWT rules; selector ones are not the waypoint\'s; bad rules are skipped and reported', (t) => {
  const { authentications, problems } = translate([
    BOUND_NS, gateway('waypoint'), svc('reviews'),
    ['RequestAuthentication', { metadata: { name: 'jwt', namespace: 'shop' }, spec: {
      targetRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'waypoint' }],
      jwtRules: [
        { issuer: 'https://issuer.example', audiences: ['shop'], jwks: '{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}', fromHeaders: [{ name: 'X-JWT', prefix: 'Bearer ' }], forwardOriginalToken: true },
        { issuer: 'uri-only', jwksUri: 'https://issuer.example/.well-known/jwks.json', outputPayloadToHeader: 'x-payload' },
        { issuer: 'no-keys' },
        { issuer: 'bad-json', jwks: '{' },
      ],
    } } as KubeObject],
    ['RequestAuthentication', { metadata: { name: 'sidecar-style', namespace: 'shop' }, spec: { selector: { matchLabels: { app: 'reviews' } }, jwtRules: [{ issuer: 'x', jwksUri: 'https://x' }] } } as KubeObject],
  ]);
  const all = authentications();
  t.deepEqual(Object.keys(all), ['shop/jwt']);
  const jwt = all['shop/jwt'];
  t.deepEqual(jwt?.targetServices, [`shop/${HOST('reviews')}`]);
  t.deepEqual(jwt?.rules.map((r) => r.issuer), ['https://issuer.example', 'uri-only']);
  t.deepEqual(jwt?.rules[0]?.jwks, { kind: 'inline', keys: [{ kty: 'oct', k: 'c2VjcmV0' }] });
  t.deepEqual(jwt?.rules[0]?.fromHeaders, [{ name: 'x-jwt', prefix: 'Bearer ' }]);
  t.true(jwt?.rules[0]?.forwardOriginalToken);
  t.deepEqual(jwt?.rules[1]?.jwks, { kind: 'uri', uri: 'https://issuer.example/.well-known/jwks.json' });
  const text = problems().join('\n');
  t.regex(text, /shop\/jwt: spec\.jwtRules\[1\]\.outputPayloadToHeader: not supported/);
  t.regex(text, /shop\/jwt: spec\.jwtRules\[2\]: one of jwks or jwksUri is needed/);
  t.regex(text, /shop\/jwt: spec\.jwtRules\[3\]\.jwks: not JSON/);
});

import test from 'ava';
import { gatewayDurationMs } from '../../src/control-plane/l7/http-route.ts';
import { l7Extension } from '../../src/control-plane/l7/extension.ts';
import type { KubeObject } from '../../src/control-plane/kube-objects.ts';
import { Translator } from '../../src/control-plane/translator.ts';
import type { RouteConfiguration__Output } from '../../src/workload-api/generated/ambient/l7/RouteConfiguration.ts';
import { routeConfigurationFromWire } from '../../src/workload-api/l7-convert.ts';
import type { RouteConfiguration } from '../../src/workload-api/l7-types.ts';
import { decodeMessage, TypeUrl } from '../../src/workload-api/proto.ts';
import { ResourceSnapshot } from '../../src/workload-api/snapshot.ts';
import { captureLog } from '../helpers/log.ts';

// HTTPRoute (GAMMA) → the waypoint's RouteConfiguration, through the translator with the L7 extension, read back
// from the snapshot as the waypoint decodes it.

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
  return { configs, apply, problems: () => extension.problems(), log };
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

import test from 'ava';
import { translateHttpRoute, type HttpRouteObject } from '../../../src/control-plane/l7/http-route.ts';
import { routeConfigurationFromWire } from '../../../src/workload-api/l7-convert.ts';
import type { RouteConfiguration__Output } from '../../../src/workload-api/generated/ambient/l7/RouteConfiguration.ts';
import type { RouteConfiguration } from '../../../src/workload-api/l7-types.ts';
import { decodeMessage, encodeMessage } from '../../../src/workload-api/proto.ts';
import { routeRequest } from '../../../src/waypoint/router.ts';
import { req } from '../../waypoint/helpers.ts';

const route: HttpRouteObject = {
  metadata: { name: 'reviews', namespace: 'prod' },
  spec: {
    parentRefs: [{ group: '', kind: 'Service', name: 'reviews', port: 9080 }],
    rules: [
      { backendRefs: [{ name: 'reviews-v1', port: 9080, weight: 90 }, { name: 'reviews-v2', port: 9080, weight: 10 }], timeouts: { request: '2s' } },
      { matches: [{ path: { type: 'PathPrefix', value: '/api' }, headers: [{ name: 'X-User', value: 'jason' }] }], backendRefs: [{ name: 'reviews-v2' }],
        filters: [{ type: 'RequestHeaderModifier', requestHeaderModifier: { set: [{ name: 'X-From', value: 'route' }] } }, { type: 'RequestMirror', requestMirror: { backendRef: { name: 'shadow', port: 9080 }, percent: 10 } }] },
      { matches: [{ path: { type: 'Exact', value: '/old' } }], filters: [{ type: 'RequestRedirect', requestRedirect: { path: { type: 'ReplaceFullPath', replaceFullPath: '/new' }, statusCode: 301 } }] },
      { matches: [{ path: { type: 'PathPrefix', value: '/v1' } }], filters: [{ type: 'URLRewrite', urlRewrite: { path: { type: 'ReplacePrefixMatch', replacePrefixMatch: '/v2' } } }], backendRefs: [{ name: 'reviews' }] },
    ],
  },
};

/** Through the wire and back, exactly as the waypoint would receive it. */
function viaWire(wire: object): RouteConfiguration {
  const bytes = encodeMessage('ambient.l7.RouteConfiguration', wire);
  const converted = routeConfigurationFromWire(decodeMessage<RouteConfiguration__Output>('ambient.l7.RouteConfiguration', bytes));
  if (!converted.ok) throw new Error(converted.errors.join('\n'));
  return converted.value;
}

test('HTTPRoute → RouteConfiguration: one per parent service, rules ordered by Gateway API precedence', (t) => {
  const result = translateHttpRoute(route, { clusterDomain: 'cluster.local' });
  if (!result.ok) return t.fail(result.errors.join('\n'));
  t.deepEqual([...result.value.keys()], ['prod/reviews.prod.svc.cluster.local']);
  const rc = viaWire(result.value.get('prod/reviews.prod.svc.cluster.local')!);
  t.deepEqual(rc.ports, [9080]);
  t.deepEqual(rc.routes.map((r) => r.name), ['prod.reviews.2.0', 'prod.reviews.1.0', 'prod.reviews.3.0', 'prod.reviews.0.0'], 'exact, then the longer prefix with a header, then /v1, then the catch-all');
  const catchAll = rc.routes[3]!;
  t.is(catchAll.timeoutMs, 2000);
  t.deepEqual(catchAll.backends.map((b) => [b.hostname, b.weight]), [['reviews-v1.prod.svc.cluster.local', 90], ['reviews-v2.prod.svc.cluster.local', 10]]);
  t.is(catchAll.retries?.attempts, 2, "Istio's default retries");
  const header = rc.routes[1]!;
  t.deepEqual(header.matches[0]?.headers, [{ name: 'x-user', value: { kind: 'exact', value: 'jason' }, invert: false }]);
  t.deepEqual(header.requestHeaders?.set, [['x-from', 'route']]);
  t.deepEqual(header.mirrors.map((m) => [m.hostname, m.percentage]), [['shadow.prod.svc.cluster.local', 10]]);

  const service = { namespace: 'prod', hostname: 'reviews.prod.svc.cluster.local' };
  const redirect = routeRequest({ request: req({ path: '/old' }), service, config: rc, random: () => 0 });
  t.like(redirect, { kind: 'redirect', status: 301, location: 'http://reviews.prod.svc.cluster.local:9080/new' });
  const rewritten = routeRequest({ request: req({ path: '/v1/items' }), service, config: rc, random: () => 0 });
  t.like(rewritten, { kind: 'forward', path: '/v2/items' });
  const jason = routeRequest({ request: req({ path: '/api/x', headers: { 'x-user': 'jason' } }), service, config: rc, random: () => 0.99 });
  t.like(jason, { kind: 'forward', route: 'prod.reviews.1.0', backend: { hostname: 'reviews-v2.prod.svc.cluster.local' } });
  const split = routeRequest({ request: req({ path: '/x' }), service, config: rc, random: () => 0.95 });
  t.like(split, { kind: 'forward', backend: { hostname: 'reviews-v2.prod.svc.cluster.local', port: 9080 } });
});

test('HTTPRoute: unsupported parents, backends and filters are errors with their path', (t) => {
  const bad: HttpRouteObject = {
    metadata: { name: 'r', namespace: 'prod' },
    spec: {
      parentRefs: [{ group: 'gateway.networking.k8s.io', kind: 'Gateway', name: 'gw' }],
      rules: [{ backendRefs: [{ group: 'x.io', kind: 'Bucket', name: 'b' }], filters: [{ type: 'ExtensionRef' }], timeouts: { request: 'forever' } }],
    },
  };
  const result = translateHttpRoute(bad, { clusterDomain: 'cluster.local' });
  t.false(result.ok);
  if (result.ok) return;
  const text = result.errors.join('\n');
  t.regex(text, /spec\.parentRefs\[0\]: only Service parents/);
  t.regex(text, /spec\.rules\[0\]\.backendRefs\[0\]: only Service backends/);
  t.regex(text, /spec\.rules\[0\]\.filters\[0\]\.type: "ExtensionRef" is not supported/);
  t.regex(text, /spec\.rules\[0\]\.timeouts\.request: "forever" is not a duration/);
});

import test from 'ava';
import type { KubeObject } from '../../src/control-plane/kube-objects.ts';
import { l7Extension } from '../../src/control-plane/l7/extension.ts';
import { Translator } from '../../src/control-plane/translator.ts';
import type { RouteConfiguration__Output } from '../../src/workload-api/generated/ambient/l7/RouteConfiguration.ts';
import { routeConfigurationFromWire } from '../../src/workload-api/l7-convert.ts';
import type { RouteConfiguration } from '../../src/workload-api/l7-types.ts';
import { decodeMessage, TypeUrl } from '../../src/workload-api/proto.ts';
import { ResourceSnapshot } from '../../src/workload-api/snapshot.ts';
import { captureLog } from '../helpers/log.ts';

// VirtualService `corsPolicy` and HTTPRoute's CORS filter → the waypoint's route CORS policy, through the translator
// with the L7 extension and read back from the snapshot as the waypoint decodes it.

type Obj = [kind: string, object: KubeObject];

const BOUND_NS: Obj = ['Namespace', { metadata: { name: 'shop', labels: { 'istio.io/dataplane-mode': 'ambient', 'istio.io/use-waypoint': 'waypoint' } } }];
const svc = (name: string): Obj => [
  'Service',
  { metadata: { name, namespace: 'shop' }, spec: { selector: { app: name }, clusterIP: '10.96.0.1', ports: [{ name: 'http', port: 9080, targetPort: 9080 }] } } as KubeObject,
];
const obj = (kind: string, name: string, spec: Record<string, unknown>): Obj => [kind, { metadata: { name, namespace: 'shop', creationTimestamp: '2026-01-01T00:00:00Z' }, spec } as KubeObject];
const HOST = (name: string) => `${name}.shop.svc.cluster.local`;

function translate(objects: readonly Obj[]) {
  const snapshot = new ResourceSnapshot();
  const extension = l7Extension({ logger: captureLog().logger });
  const translator = new Translator({ snapshot, autoFlush: false, extensions: [extension] });
  for (const [kind, object] of objects) translator.change({ kind, type: 'upsert', object });
  translator.flush();
  const configs: Record<string, RouteConfiguration> = {};
  for (const [name, entry] of snapshot.get(TypeUrl.routeConfiguration)) {
    const decoded = routeConfigurationFromWire(decodeMessage<RouteConfiguration__Output>('ambient.l7.RouteConfiguration', entry.value));
    if (!decoded.ok) throw new Error(decoded.errors.join('; '));
    configs[name] = decoded.value;
  }
  return { configs, problems: extension.problems() };
}

const plain = (r: RouteConfiguration['routes'][number] | undefined) =>
  r?.cors && { ...r.cors, allowOrigins: r.cors.allowOrigins.map((m) => [m.kind, m.value]) };

test('VirtualService corsPolicy: origins (exact, prefix, regex, the deprecated allowOrigin), methods, headers, maxAge, credentials, unmatchedPreflights', (t) => {
  const { configs, problems } = translate([
    BOUND_NS, svc('reviews'),
    obj('VirtualService', 'reviews', {
      hosts: ['reviews'],
      http: [
        {
          match: [{ uri: { prefix: '/api' } }],
          route: [{ destination: { host: 'reviews' } }],
          corsPolicy: {
            allowOrigins: [{ exact: 'https://shop.example' }, { prefix: 'https://dev.' }, { regex: 'https://.*\\.partner\\.example' }],
            allowMethods: ['GET', 'POST'],
            allowHeaders: ['X-Token', 'Content-Type'],
            exposeHeaders: ['X-Trace'],
            maxAge: '24h',
            allowCredentials: true,
            unmatchedPreflights: 'IGNORE',
          },
        },
        { route: [{ destination: { host: 'reviews' } }], corsPolicy: { allowOrigin: ['*'] } },
      ],
    }),
  ]);
  t.deepEqual(problems, []);
  const [api, rest] = configs[`shop/${HOST('reviews')}`]?.routes ?? [];
  t.deepEqual(plain(api), {
    allowOrigins: [['exact', 'https://shop.example'], ['prefix', 'https://dev.'], ['regex', 'https://.*\\.partner\\.example']],
    allowMethods: ['GET', 'POST'],
    allowHeaders: ['x-token', 'content-type'],
    exposeHeaders: ['x-trace'],
    maxAgeSeconds: 86_400,
    allowCredentials: true,
    forwardNotMatchingPreflights: false,
  });
  t.deepEqual(plain(rest), { allowOrigins: [['exact', '*']], allowMethods: [], allowHeaders: [], exposeHeaders: [], allowCredentials: false, forwardNotMatchingPreflights: true });
});

test('VirtualService corsPolicy bad input: each bad field is a problem with its path, the rest of the policy and the route are kept', (t) => {
  const { configs, problems } = translate([
    BOUND_NS, svc('reviews'),
    obj('VirtualService', 'reviews', {
      hosts: ['reviews'],
      http: [{
        route: [{ destination: { host: 'reviews' } }],
        corsPolicy: { allowOrigins: [{ regex: '(' }, { exact: 'https://ok.example' }, {}], allowMethods: ['GET', 'BAD METHOD'], maxAge: 'soon', unmatchedPreflights: 'MAYBE' },
      }],
    }),
  ]);
  const text = problems.join('\n');
  t.regex(text, /shop\/reviews: spec\.http\[0\]\.corsPolicy\.allowOrigins\[0\]\.regex: invalid regular expression/);
  t.regex(text, /shop\/reviews: spec\.http\[0\]\.corsPolicy\.allowOrigins\[2\]: one of exact, prefix or regex is needed/);
  t.regex(text, /shop\/reviews: spec\.http\[0\]\.corsPolicy\.allowMethods\[1\]: "BAD METHOD" is not a method/);
  t.regex(text, /shop\/reviews: spec\.http\[0\]\.corsPolicy\.maxAge: "soon" is not a duration/);
  t.regex(text, /shop\/reviews: spec\.http\[0\]\.corsPolicy\.unmatchedPreflights: "MAYBE" is not FORWARD or IGNORE/);
  const [only] = configs[`shop/${HOST('reviews')}`]?.routes ?? [];
  t.truthy(only, 'the route is kept');
  t.deepEqual(plain(only), { allowOrigins: [['exact', 'https://ok.example']], allowMethods: ['GET'], allowHeaders: [], exposeHeaders: [], allowCredentials: false, forwardNotMatchingPreflights: true });
});

test('HTTPRoute CORS filter: "*", exact and wildcard-subdomain origins; maxAge defaults to 5; a bad origin is a problem and the rule is kept', (t) => {
  const { configs, problems } = translate([
    BOUND_NS, svc('reviews'),
    obj('HTTPRoute', 'reviews', {
      parentRefs: [{ group: '', kind: 'Service', name: 'reviews' }],
      rules: [
        { matches: [{ path: { type: 'PathPrefix', value: '/a' } }], filters: [{ type: 'CORS', cors: { allowOrigins: ['https://shop.example', 'https://*.shop.example', 'not an origin'], allowMethods: ['GET'], allowCredentials: true, exposeHeaders: ['X-Trace'] } }], backendRefs: [{ name: 'reviews', port: 9080 }] },
        { matches: [{ path: { type: 'PathPrefix', value: '/b' } }], filters: [{ type: 'CORS', cors: { allowOrigins: ['*'], maxAge: 60, allowHeaders: ['*'] } }], backendRefs: [{ name: 'reviews', port: 9080 }] },
      ],
    }),
  ]);
  t.deepEqual(problems, ['shop/reviews: spec.rules[0].filters[0].cors.allowOrigins[2]: "not an origin" is not "*" or scheme://host[:port]']);
  const routes = configs[`shop/${HOST('reviews')}`]?.routes ?? [];
  const a = routes.find((r) => r.matches[0]?.path?.value === '/a');
  const b = routes.find((r) => r.matches[0]?.path?.value === '/b');
  t.deepEqual(plain(a)?.allowOrigins, [['exact', 'https://shop.example'], ['regex', 'https://[^/]+\\.shop\\.example']]);
  t.true(a?.cors?.allowOrigins[1]?.kind === 'regex' && a.cors.allowOrigins[1].regex.test('https://eu.shop.example'));
  t.false(a?.cors?.allowOrigins[1]?.kind === 'regex' && a.cors.allowOrigins[1].regex.test('https://shop.example'), 'the wildcard needs a subdomain');
  t.like(a?.cors, { allowMethods: ['GET'], allowCredentials: true, exposeHeaders: ['x-trace'], maxAgeSeconds: 5 });
  t.like(b?.cors, { allowHeaders: ['*'], maxAgeSeconds: 60, allowCredentials: false });
});

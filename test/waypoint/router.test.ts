import test from 'ava';
import { parseL7Config } from '../../src/workload-api/l7-local.ts';
import type { RouteConfiguration } from '../../src/workload-api/l7-types.ts';
import { applyHeaderMutations, DEFAULT_RETRY_POLICY, pickWeighted, routeRequest, type RouteDecision } from '../../src/waypoint/router.ts';
import { req, sequence } from './helpers.ts';

const HOST = 'reviews.prod.svc.cluster.local';
const service = { namespace: 'prod', hostname: HOST };

function config(routes: string): RouteConfiguration {
  const parsed = parseL7Config(`routeConfigurations:\n  - namespace: prod\n    hostname: ${HOST}\n    routes: ${routes.replace(/\n/g, '\n      ')}\n`);
  if (!parsed.ok) throw new Error(parsed.errors.join('\n'));
  return parsed.value.routes[0] as RouteConfiguration;
}
const be = (subset: string, weight = 1, extra = '') => `{ namespace: prod, hostname: ${HOST}, subset: ${subset}, weight: ${weight} ${extra} }`;

const table = config(`[
  { name: header, matches: [{ headers: [{ name: x-user, value: { exact: jason } }] }], backends: [${be('v2')}] },
  { name: not-header, matches: [{ path: { exact: /inv }, headers: [{ name: x-debug, invert: true }] }], backends: [${be('v3')}] },
  { name: query, matches: [{ queryParams: [{ name: canary, value: { exact: "yes" } }] }], backends: [${be('v3')}] },
  { name: regex, matches: [{ path: { regex: "/items/[0-9]+" }, method: PUT }], backends: [${be('v1')}] },
  { name: redirect, matches: [{ path: { prefix: /old } }], redirect: { prefixMatch: /new, statusCode: 302 } },
  { name: redirect-host, matches: [{ path: { exact: /elsewhere } }], redirect: { scheme: https, host: example.com } },
  { name: rewrite, matches: [{ path: { prefix: /api/v1 } }], rewrite: { prefixMatch: /v1, host: internal.example }, backends: [${be('v1')}], timeout: 2s, retries: { attempts: 3, retryOn: [5xx] } },
  { name: abort, matches: [{ path: { prefix: /fault } }], fault: { abort: { httpStatus: 418, percentage: { value: 50 } }, delay: { fixedDelay: 100ms, percentage: { value: 50 } } } },
  { name: split, matches: [{ path: { prefix: / } }], backends: [${be('v1', 90)}, ${be('v2', 10, ', requestHeaders: { set: [{ name: x-canary, value: "1" }] }')}], requestHeaders: { add: [{ name: x-route, value: split }] }, mirrors: [{ namespace: prod, hostname: shadow, percentage: { value: 50 } }] }
]`);

const fwd = (d: RouteDecision) => (d.kind === 'forward' ? d : undefined);

const cases: Array<{ name: string; request: Parameters<typeof req>[0]; random?: number[]; expect: (d: RouteDecision) => unknown; want: unknown }> = [
  { name: 'a header match', request: { headers: { 'x-user': 'jason' } }, expect: (d) => [d.kind === 'forward' && d.route, fwd(d)?.backend.subset], want: ['header', 'v2'] },
  { name: 'a header value that differs falls through', request: { headers: { 'x-user': 'bob' } }, random: [0.1], expect: (d) => fwd(d)?.route, want: 'split' },
  { name: 'an inverted header match holds without the header', request: { path: '/inv' }, expect: (d) => fwd(d)?.route, want: 'not-header' },
  { name: 'an inverted header match fails with it', request: { path: '/inv', headers: { 'x-debug': '1' } }, random: [0.1], expect: (d) => fwd(d)?.route, want: 'split' },
  { name: 'a query parameter', request: { path: '/x', query: 'a=1&canary=yes' }, expect: (d) => fwd(d)?.route, want: 'query' },
  { name: 'a regex path with a method', request: { method: 'PUT', path: '/items/42' }, expect: (d) => fwd(d)?.route, want: 'regex' },
  { name: 'a regex is anchored', request: { method: 'PUT', path: '/items/42/x' }, random: [0.1], expect: (d) => fwd(d)?.route, want: 'split' },
  { name: 'the method must match', request: { method: 'GET', path: '/items/42' }, random: [0.1], expect: (d) => fwd(d)?.route, want: 'split' },
  { name: 'a prefix redirect keeps the query', request: { path: '/old/page', query: 'q=1' }, expect: (d) => d, want: { kind: 'redirect', route: 'redirect', status: 302, location: 'http://reviews.prod.svc.cluster.local:9080/new/page?q=1', responseHeaders: [] } },
  { name: 'a scheme and host redirect drops the port', request: { path: '/elsewhere' }, expect: (d) => d.kind === 'redirect' && [d.status, d.location], want: [301, 'https://example.com/elsewhere'] },
  {
    name: 'a prefix rewrite, host rewrite, timeout and retries',
    request: { path: '/api/v1/users', query: 'id=7' },
    expect: (d) => { const f = fwd(d); return f && [f.path, f.authority, f.timeoutMs, f.retries.attempts, f.backend]; },
    want: ['/v1/users?id=7', 'internal.example', 2000, 3, { namespace: 'prod', hostname: HOST, port: 9080, subset: 'v1' }],
  },
  { name: 'a fault abort within its percentage (after the delay draw)', request: { path: '/fault' }, random: [0.2, 0.3], expect: (d) => d, want: { kind: 'abort', route: 'abort', delayMs: 100, abort: { kind: 'http', status: 418 } } },
  { name: 'no abort and no delay outside the percentages', request: { path: '/fault' }, random: [0.7, 0.9], expect: (d) => d.kind === 'forward' && [d.route, d.delayMs], want: ['abort', 0] },
  { name: '90/10: a low draw picks v1', request: { path: '/p' }, random: [0.899, 0.9], expect: (d) => [fwd(d)?.backend.subset, fwd(d)?.mirrors.length], want: ['v1', 0] },
  { name: '90/10: a high draw picks v2 with its headers; the mirror is drawn', request: { path: '/p' }, random: [0.9, 0.1], expect: (d) => { const f = fwd(d); return f && [f.backend.subset, f.requestHeaders.length, f.mirrors.map((m) => m.hostname)]; }, want: ['v2', 2, ['shadow']] },
];

for (const c of cases) {
  test(`router: ${c.name}`, (t) => {
    const d = routeRequest({ request: req(c.request), service, config: table, random: sequence(...(c.random ?? [0])) });
    t.deepEqual(c.expect(d), c.want);
  });
}

test('router: no matching route is no-route; no configuration is the implicit route with Istio\'s default retries', (t) => {
  const only = config('[{ name: only, matches: [{ path: { exact: /a } }] }]');
  t.deepEqual(routeRequest({ request: req({ path: '/b' }), service, config: only, random: Math.random }), { kind: 'no-route' });
  const d = routeRequest({ request: req({ path: '/b', port: 8080 }), service, config: undefined, random: Math.random });
  t.is(d.kind, 'forward');
  if (d.kind === 'forward') {
    t.deepEqual(d.backend, { namespace: 'prod', hostname: HOST, port: 8080, subset: '' });
    t.is(d.retries, DEFAULT_RETRY_POLICY);
    t.is(d.timeoutMs, undefined);
  }
});

test('router: weights split as drawn over a uniform grid', (t) => {
  const items = [{ weight: 90, id: 'a' }, { weight: 10, id: 'b' }, { weight: 0, id: 'c' }];
  const counts = { a: 0, b: 0, c: 0 };
  for (let i = 0; i < 1000; i++) counts[pickWeighted(items, i / 1000)!.id as 'a']++;
  t.deepEqual(counts, { a: 900, b: 100, c: 0 });
  t.is(pickWeighted([{ weight: 0, id: 'x' }, { weight: 0, id: 'y' }], 0.7)?.id, 'x');
});

test('router: header mutations set, add and remove in order and never touch pseudo-headers', (t) => {
  const headers = new Map([['a', '1'], ['b', '2'], [':path', '/']]);
  applyHeaderMutations(headers, [
    { set: [['a', 'x'], [':path', '/evil']], add: [['b', '3'], ['c', '4']], remove: ['gone'] },
    { set: [], add: [], remove: ['c', ':path'] },
  ]);
  t.deepEqual([...headers], [['a', 'x'], ['b', '2,3'], [':path', '/']]);
});

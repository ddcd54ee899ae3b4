import test from 'ava';
import { once } from 'node:events';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CertificateAuthority } from '../../src/identity/ca.ts';
import { l7Handlers } from '../../src/workload-api/l7-handlers.ts';
import { parseL7Config, startL7LocalSource } from '../../src/workload-api/l7-local.ts';
import { L7Store } from '../../src/workload-api/l7-store.ts';
import { encodeMessage, TypeUrl } from '../../src/workload-api/proto.ts';
import { startXdsClient, xdsNode } from '../../src/workload-api/xds-client.ts';
import type { XdsNackEvent } from '../../src/workload-api/xds-server.ts';
import { tempDir } from '../helpers/tmp.ts';
import { ISTIOD, startXdsServer } from '../helpers/xds.ts';

const FILE = `
routeConfigurations:
  - namespace: prod
    hostname: reviews.prod.svc.cluster.local
    routes:
      - name: canary
        matches: [{ headers: [{ name: x-canary, value: { exact: "1" } }] }]
        backends: [{ namespace: prod, hostname: reviews.prod.svc.cluster.local, subset: v2, weight: 1 }]
      - name: split
        matches: [{ path: { prefix: /api } , method: GET }]
        backends:
          - { namespace: prod, hostname: reviews.prod.svc.cluster.local, subset: v1, weight: 90 }
          - { namespace: prod, hostname: reviews.prod.svc.cluster.local, subset: v2, weight: 10 }
        timeout: 1.5s
        retries: { attempts: 3, perTryTimeout: 200ms, retryOn: [5xx, reset], retriableStatusCodes: [418] }
        fault: { abort: { httpStatus: 503, percentage: { value: 10 } }, delay: { fixedDelay: 1s } }
        rewrite: { prefixMatch: /v1 }
        mirrors: [{ namespace: prod, hostname: shadow.prod.svc.cluster.local, percentage: { value: 5 } }]
destinationPolicies:
  - namespace: prod
    hostname: reviews.prod.svc.cluster.local
    trafficPolicy:
      loadBalancer: { consistentHash: { httpHeaderName: x-user } }
      connectionPool: { http1MaxPendingRequests: 1, maxRetries: 2 }
      outlierDetection: { consecutive_5xxErrors: 2, baseEjectionTime: 5s }
    subsets:
      - { name: v1, labels: { version: v1 } }
      - { name: v2, labels: { version: v2 }, workloadUids: [uid-2] }
authorizationPolicies:
  - name: no-delete
    namespace: prod
    action: DENY
    rules: [{ to: [{ methods: [DELETE] }] }]
  - name: allow-get
    namespace: prod
    targetServices: [prod/reviews.prod.svc.cluster.local]
    rules: [{ from: [{ principals: [cluster.local/ns/prod/sa/web] }], to: [{ paths: [/api/*], ports: ["9080"] }], when: [{ key: "request.headers[x-env]", values: [prod] }] }]
`;

test('the local L7 file converts into domain types with Istio defaults', (t) => {
  const parsed = parseL7Config(FILE);
  if (!parsed.ok) return t.fail(parsed.errors.join('\n'));
  const [rc] = parsed.value.routes;
  t.is(rc?.routes.length, 2);
  const split = rc?.routes[1];
  t.deepEqual(split?.matches[0]?.path, { kind: 'prefix', value: '/api' });
  t.is(split?.matches[0]?.method, 'GET');
  t.is(split?.timeoutMs, 1500);
  t.deepEqual(split?.retries, { attempts: 3, perTryTimeoutMs: 200, retryOn: ['5xx', 'reset'], retriableStatusCodes: [418] });
  t.deepEqual(split?.fault, { delay: { fixedDelayMs: 1000, percentage: 100 }, abort: { kind: 'http', status: 503, percentage: 10 } });
  t.deepEqual(split?.rewrite, { path: { kind: 'prefix', value: '/v1' } });
  t.is(split?.mirrors[0]?.percentage, 5);
  t.deepEqual(split?.backends.map((b) => [b.subset, b.weight]), [['v1', 90], ['v2', 10]]);
  const [dp] = parsed.value.destinations;
  t.deepEqual(dp?.trafficPolicy?.loadBalancer, { kind: 'hash', key: { kind: 'header', name: 'x-user' } });
  t.deepEqual(dp?.trafficPolicy?.connectionPool, { http1MaxPendingRequests: 1, maxRetries: 2 });
  t.deepEqual(dp?.trafficPolicy?.outlierDetection, { consecutive5xxErrors: 2, consecutiveGatewayErrors: 0, intervalMs: 10_000, baseEjectionTimeMs: 5000, maxEjectionPercent: 10, minHealthPercent: 0 });
  t.is(dp?.subsets[0]?.labels.get('version'), 'v1');
  t.deepEqual(dp?.subsets[1]?.workloadUids, ['uid-2']);
  const [deny, allow] = parsed.value.policies;
  t.is(deny?.action, 'DENY');
  t.is(allow?.action, 'ALLOW');
  t.deepEqual(allow?.rules[0]?.to[0]?.ports, [9080]);
  t.deepEqual(allow?.targetServices, ['prod/reviews.prod.svc.cluster.local']);
});

const bad: Array<[string, string, RegExp]> = [
  ['unknown field', 'routeConfigurations: [{ namespace: a, hostname: b, routez: [] }]', /routeConfigurations\[0\]\.routez: unknown field/],
  ['bad regex', 'routeConfigurations: [{ namespace: a, hostname: b, routes: [{ matches: [{ path: { regex: "(" } }] }] }]', /routeConfigurations\[0\]\.routes\[0\]\.matches\[0\]\.path\.regex: invalid regular expression/],
  ['bad retryOn', 'routeConfigurations: [{ namespace: a, hostname: b, routes: [{ retries: { attempts: 1, retryOn: [sometimes] } }] }]', /routes\[0\]\.retries\.retry_on\[0\]: unknown condition "sometimes"/],
  ['bad duration', 'routeConfigurations: [{ namespace: a, hostname: b, routes: [{ timeout: soon }] }]', /routes\[0\]\.timeout: "soon" is not a duration/],
  ['bad percent', 'routeConfigurations: [{ namespace: a, hostname: b, routes: [{ fault: { abort: { httpStatus: 500, percentage: { value: 150 } } } }] }]', /fault\.abort\.percentage: must be between 0 and 100/],
  ['bad redirect', 'routeConfigurations: [{ namespace: a, hostname: b, routes: [{ redirect: { statusCode: 200 } }] }]', /redirect\.status_code: must be one of/],
  ['missing hostname', 'destinationPolicies: [{ namespace: a }]', /destinationPolicies\[0\]\.hostname: must not be empty/],
  ['duplicate subset', 'destinationPolicies: [{ namespace: a, hostname: b, subsets: [{ name: v1 }, { name: v1 }] }]', /subsets\[1\]\.name: duplicate subset "v1"/],
  ['bad condition key', 'authorizationPolicies: [{ name: p, namespace: a, rules: [{ when: [{ key: request.body, values: [x] }] }] }]', /rules\[0\]\.when\[0\]\.key: unsupported condition key "request.body"/],
  ['bad port', 'authorizationPolicies: [{ name: p, namespace: a, rules: [{ to: [{ ports: [http] }] }] }]', /to\[0\]\.ports\[0\]: "http" is not a port/],
  ['bad ip block', 'authorizationPolicies: [{ name: p, namespace: a, rules: [{ from: [{ ipBlocks: [10.0.0.0/33] }] }] }]', /from\[0\]\.ip_blocks\[0\]: "10.0.0.0\/33" is not an IP or CIDR/],
  ['unknown section', 'routes: []', /routes: unknown field/],
  ['a JWT rule without keys', 'requestAuthentications: [{ name: j, namespace: a, rules: [{ issuer: i }] }]', /requestAuthentications\[0\]\.rules\[0\]: one of jwks or jwks_uri is required/],
  ['a JWKS that is not JSON', "requestAuthentications: [{ name: j, namespace: a, rules: [{ issuer: i, jwks: '{keys' }] }]", /rules\[0\]\.jwks: is not JSON/],
  ['a JWKS URI that is not http', 'requestAuthentications: [{ name: j, namespace: a, rules: [{ issuer: i, jwksUri: "file:///etc/keys" }] }]', /rules\[0\]\.jwks_uri: "file:\/\/\/etc\/keys" is not an http\(s\) URI/],
];
for (const [name, text, error] of bad) {
  test(`the local L7 file refuses: ${name}`, (t) => {
    const parsed = parseL7Config(text);
    t.false(parsed.ok);
    if (!parsed.ok) t.regex(parsed.errors.join('\n'), error);
  });
}

test('the local source loads, reloads on change and keeps the last good state on a bad rewrite', async (t) => {
  const dir = await tempDir(t, 'l7-local-');
  const path = join(dir, 'l7.yaml');
  await writeFile(path, FILE);
  const store = new L7Store();
  const source = await startL7LocalSource({ store, path, watch: true, debounceMs: 10 });
  t.teardown(() => source.close());
  t.is(store.routeConfiguration('prod', 'reviews.prod.svc.cluster.local')?.routes.length, 2);
  t.deepEqual(store.authorizationPoliciesFor('prod', 'reviews.prod.svc.cluster.local').map((p) => p.name).sort(), ['allow-get', 'no-delete']);
  t.deepEqual(store.authorizationPoliciesFor('prod', 'other.prod.svc.cluster.local').map((p) => p.name), ['no-delete']);
  const rejected = once(source, 'rejected');
  await writeFile(path, 'routeConfigurations: [{ namespace: prod }]');
  const [errors] = (await rejected) as [string[]];
  t.regex(errors.join(), /hostname: must not be empty/);
  t.is(store.routeConfiguration('prod', 'reviews.prod.svc.cluster.local')?.routes.length, 2, 'the last good state stays');
  const reloaded = once(source, 'reload');
  await writeFile(path, 'routeConfigurations: [{ namespace: prod, hostname: x.prod.svc.cluster.local }]');
  await reloaded;
  t.is(store.routeConfiguration('prod', 'reviews.prod.svc.cluster.local'), undefined);
  t.truthy(store.routeConfiguration('prod', 'x.prod.svc.cluster.local'));
});

test('an invalid first local file is refused with CONFIG_INVALID and every problem', async (t) => {
  const dir = await tempDir(t, 'l7-local-bad-');
  const path = join(dir, 'l7.yaml');
  await writeFile(path, 'destinationPolicies: [{ namespace: a }, { hostname: b }]');
  const err = await t.throwsAsync(startL7LocalSource({ store: new L7Store(), path }));
  t.is((err as { code?: string }).code, 'CONFIG_INVALID');
  t.regex(err?.message ?? '', /destinationPolicies\[0\]\.hostname/);
  t.regex(err?.message ?? '', /destinationPolicies\[1\]\.namespace/);
});

test('L7 resources travel as extra delta-xDS types; a bad one is NACKed by name with its field path and the rest apply', async (t) => {
  const ca = CertificateAuthority.generate('cluster.local');
  const serverNack = Promise.withResolvers<XdsNackEvent>();
  const xds = await startXdsServer(ca, { typeUrls: [TypeUrl.address, TypeUrl.authorization, TypeUrl.routeConfiguration, TypeUrl.destinationPolicy, TypeUrl.l7Authorization, TypeUrl.requestAuthentication], onNack: serverNack.resolve });
  t.teardown(() => xds.close());
  const route = (host: string, extra: object = {}) => encodeMessage('ambient.l7.RouteConfiguration', { namespace: 'prod', hostname: host, routes: [{ name: 'r', ...extra }] });
  xds.snapshot.update(() => {
    xds.snapshot.set(TypeUrl.routeConfiguration, 'prod/a.prod.svc.cluster.local', route('a.prod.svc.cluster.local'));
    xds.snapshot.set(TypeUrl.destinationPolicy, 'prod/a.prod.svc.cluster.local', encodeMessage('ambient.l7.DestinationPolicy', { namespace: 'prod', hostname: 'a.prod.svc.cluster.local', trafficPolicy: { loadBalancer: { simple: 'LEAST_REQUEST' } } }));
    xds.snapshot.set(TypeUrl.l7Authorization, 'prod/deny', encodeMessage('ambient.l7.AuthorizationPolicy', { name: 'deny', namespace: 'prod', action: 'DENY', rules: [{ to: [{ methods: ['DELETE'] }] }] }));
  });
  const store = new L7Store();
  const client = startXdsClient({
    address: `localhost:${xds.port}`,
    rootCaPem: xds.rootPem,
    alternateHostname: ISTIOD,
    auth: { token: { kind: 'literal', token: 't' }, clusterId: 'Kubernetes' },
    node: xdsNode({ podName: 'waypoint-x', podNamespace: 'prod', nodeName: 'n' }),
    handlers: l7Handlers(store),
  });
  t.teardown(() => client.close());
  await client.synced;
  t.is(store.routeConfiguration('prod', 'a.prod.svc.cluster.local')?.routes[0]?.name, 'r');
  t.deepEqual(store.destinationPolicy('prod', 'a.prod.svc.cluster.local')?.trafficPolicy?.loadBalancer, { kind: 'least-request' });
  t.is(store.authorizationPoliciesFor('prod', 'a.prod.svc.cluster.local')[0]?.action, 'DENY');

  const nacked = once(client, 'nack');
  xds.snapshot.update(() => {
    xds.snapshot.set(TypeUrl.routeConfiguration, 'prod/a.prod.svc.cluster.local', route('a.prod.svc.cluster.local', { matches: [{ path: { regex: '[' } }] }));
    xds.snapshot.set(TypeUrl.routeConfiguration, 'prod/b.prod.svc.cluster.local', route('b.prod.svc.cluster.local'));
    xds.snapshot.set(TypeUrl.routeConfiguration, 'wrong-name', route('c.prod.svc.cluster.local'));
  });
  await nacked;
  const nack = await serverNack.promise;
  t.regex(nack.message, /prod\/a\.prod\.svc\.cluster\.local: route_configuration\.routes\[0\]\.matches\[0\]\.path\.regex: invalid regular expression/);
  t.regex(nack.message, /wrong-name: resource name must be "prod\/c\.prod\.svc\.cluster\.local"/);
  t.deepEqual(store.routeConfiguration('prod', 'a.prod.svc.cluster.local')?.routes[0]?.matches, [], 'the last good version stays');
  t.truthy(store.routeConfiguration('prod', 'b.prod.svc.cluster.local'), 'the good resource applied');
});

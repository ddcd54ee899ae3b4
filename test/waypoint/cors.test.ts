import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { evaluateCors, type CorsVerdict } from '../../src/waypoint/cors.ts';
import type { RouteConfiguration__Output } from '../../src/workload-api/generated/ambient/l7/RouteConfiguration.ts';
import { routeConfigurationFromWire } from '../../src/workload-api/l7-convert.ts';
import { encodeRouteConfiguration } from '../../src/workload-api/l7-encode.ts';
import type { CorsPolicy, RouteConfiguration } from '../../src/workload-api/l7-types.ts';
import { decodeMessage, encodeMessage } from '../../src/workload-api/proto.ts';
import { hasCommand } from '../helpers/commands.ts';
import { HOST, VIP, startFixture } from './harness.ts';

/** CORS as Envoy's filter does it with a route policy: the pure decision, the wire form, and curl through a waypoint. */

const run = promisify(execFile);

const POLICY: CorsPolicy = {
  allowOrigins: [{ kind: 'exact', value: 'https://shop.example' }, { kind: 'prefix', value: 'https://dev.' }, { kind: 'regex', value: 'https://.*\\.partner\\.example', regex: /^(?:https:\/\/.*\.partner\.example)$/u }],
  allowMethods: ['GET', 'POST'],
  allowHeaders: ['x-token', 'content-type'],
  exposeHeaders: ['x-pod', 'x-trace'],
  maxAgeSeconds: 600,
  allowCredentials: true,
  forwardNotMatchingPreflights: true,
};

const h = (o: Record<string, string>) => new Map(Object.entries(o));
const preflight = (origin: string, extra: Record<string, string> = {}) => h({ origin, 'access-control-request-method': 'PUT', ...extra });

const CASES: ReadonlyArray<{ name: string; policy: CorsPolicy | undefined; method: string; headers: Map<string, string>; want: CorsVerdict }> = [
  { name: 'no policy', policy: undefined, method: 'GET', headers: h({ origin: 'https://shop.example' }), want: { kind: 'none' } },
  { name: 'no Origin', policy: POLICY, method: 'GET', headers: h({}), want: { kind: 'none' } },
  { name: 'an empty Origin', policy: POLICY, method: 'OPTIONS', headers: h({ origin: '', 'access-control-request-method': 'GET' }), want: { kind: 'none' } },
  {
    name: 'simple request from an exact origin: origin echoed, credentials, expose headers', policy: POLICY, method: 'GET', headers: h({ origin: 'https://shop.example' }),
    want: { kind: 'forward', responseHeaders: [['access-control-allow-origin', 'https://shop.example'], ['access-control-allow-credentials', 'true'], ['access-control-expose-headers', 'x-pod,x-trace']] },
  },
  { name: 'simple request from a prefix origin', policy: POLICY, method: 'POST', headers: h({ origin: 'https://dev.shop.example' }), want: { kind: 'forward', responseHeaders: [['access-control-allow-origin', 'https://dev.shop.example'], ['access-control-allow-credentials', 'true'], ['access-control-expose-headers', 'x-pod,x-trace']] } },
  { name: 'a regex origin must match whole', policy: POLICY, method: 'GET', headers: h({ origin: 'https://eu.partner.example.evil' }), want: { kind: 'forward', responseHeaders: [] } },
  { name: 'simple request from another origin: no CORS header', policy: POLICY, method: 'GET', headers: h({ origin: 'https://evil.example' }), want: { kind: 'forward', responseHeaders: [] } },
  { name: 'OPTIONS without Access-Control-Request-Method is not a preflight', policy: POLICY, method: 'OPTIONS', headers: h({ origin: 'https://shop.example' }), want: { kind: 'forward', responseHeaders: [['access-control-allow-origin', 'https://shop.example'], ['access-control-allow-credentials', 'true'], ['access-control-expose-headers', 'x-pod,x-trace']] } },
  {
    name: 'preflight from an allowed origin: answered with every header', policy: POLICY, method: 'OPTIONS', headers: preflight('https://eu.partner.example', { 'access-control-request-headers': 'x-token' }),
    want: { kind: 'preflight', headers: { 'access-control-allow-origin': 'https://eu.partner.example', 'access-control-allow-credentials': 'true', 'access-control-allow-methods': 'GET,POST', 'access-control-allow-headers': 'x-token,content-type', 'access-control-max-age': '600' } },
  },
  { name: 'preflight from another origin: forwarded upstream (the default)', policy: POLICY, method: 'OPTIONS', headers: preflight('https://evil.example'), want: { kind: 'forward', responseHeaders: [] } },
  {
    name: 'preflight from another origin with forwarding off: answered without Allow-Origin', policy: { ...POLICY, forwardNotMatchingPreflights: false }, method: 'OPTIONS', headers: preflight('https://evil.example'),
    want: { kind: 'preflight', headers: { 'access-control-allow-credentials': 'true', 'access-control-allow-methods': 'GET,POST', 'access-control-allow-headers': 'x-token,content-type', 'access-control-max-age': '600' } },
  },
  {
    name: '"*" methods and headers echo the request; a "*" origin allows all; no max-age, no credentials',
    policy: { allowOrigins: [{ kind: 'exact', value: '*' }], allowMethods: ['*'], allowHeaders: ['*'], exposeHeaders: [], allowCredentials: false, forwardNotMatchingPreflights: true },
    method: 'OPTIONS', headers: preflight('https://any.example', { 'access-control-request-headers': 'x-a, x-b' }),
    want: { kind: 'preflight', headers: { 'access-control-allow-origin': 'https://any.example', 'access-control-allow-methods': 'PUT', 'access-control-allow-headers': 'x-a, x-b' } },
  },
  { name: 'no origins at all: nothing is allowed', policy: { ...POLICY, allowOrigins: [] }, method: 'GET', headers: h({ origin: 'https://shop.example' }), want: { kind: 'forward', responseHeaders: [] } },
];

for (const c of CASES) {
  test(`evaluateCors: ${c.name}`, (t) => {
    t.deepEqual(evaluateCors(c.policy, c.method, c.headers), c.want);
  });
}

test('the CORS policy round-trips on the wire; a bad origin regex or header name is a field-path problem', (t) => {
  const rc: RouteConfiguration = { namespace: 'prod', hostname: HOST.reviews, ports: [], routes: [{ name: 'r', matches: [], backends: [], mirrors: [], cors: POLICY }] };
  const back = routeConfigurationFromWire(decodeMessage<RouteConfiguration__Output>('ambient.l7.RouteConfiguration', encodeRouteConfiguration(rc)));
  if (!back.ok) return void t.fail(back.errors.join('\n'));
  t.deepEqual(back.value, rc);

  const bad = encodeMessage('ambient.l7.RouteConfiguration', {
    namespace: 'prod', hostname: HOST.reviews,
    routes: [{ name: 'r', cors: { allowOrigins: [{ regex: '(' }, { exact: 'https://ok.example' }], allowHeaders: ['bad header'], allowMethods: ['GET', 'NOT A METHOD'] } }],
  });
  const result = routeConfigurationFromWire(decodeMessage<RouteConfiguration__Output>('ambient.l7.RouteConfiguration', bad));
  t.false(result.ok);
  const text = result.ok ? '' : result.errors.join('\n');
  t.regex(text, /route_configuration\.routes\[0\]\.cors\.allow_origins\[0\]\.regex: invalid regular expression/);
  t.regex(text, /route_configuration\.routes\[0\]\.cors\.allow_headers\[0\]: "bad header" is not a lower-case header name/);
  t.regex(text, /route_configuration\.routes\[0\]\.cors\.allow_methods\[1\]: "NOT A METHOD" is not a method/);
});

const L7 = `
routeConfigurations:
  - namespace: prod
    hostname: ${HOST.reviews}
    routes:
      - name: cors
        matches: [{ path: { prefix: /api } }]
        cors:
          allowOrigins: [{ exact: "https://shop.example" }, { regex: "https://.*\\\\.partner\\\\.example" }]
          allowMethods: [GET, POST]
          allowHeaders: [x-token]
          exposeHeaders: [x-pod]
          maxAge: 3600s
          allowCredentials: true
      - name: strict
        matches: [{ path: { prefix: /strict } }]
        cors: { allowOrigins: [{ exact: "https://shop.example" }], forwardNotMatchingPreflights: false }
      - name: aborted
        matches: [{ path: { prefix: /teapot } }]
        fault: { abort: { httpStatus: 418 } }
        cors: { allowOrigins: [{ exact: "https://shop.example" }] }
      - name: rest
        matches: [{ path: { prefix: / } }]
`;

/** Response headers of `curl -si` output, lower-case names. */
function parse(stdout: string): { status: number; headers: Record<string, string> } {
  const [head = ''] = stdout.split('\r\n\r\n');
  const [statusLine = '', ...lines] = head.split('\r\n');
  const headers: Record<string, string> = {};
  for (const l of lines) {
    const i = l.indexOf(':');
    headers[l.slice(0, i).toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status: Number(statusLine.split(' ')[1]), headers };
}

test.serial('curl through a waypoint: a preflight is answered by the waypoint; simple requests get the CORS headers; other origins none', async (t) => {
  if (!(await hasCommand(t, 'curl'))) return;
  const f = await startFixture(t, { l7: L7 });
  const port = await f.bridge(`${VIP.reviews}:9080`);
  const curl = async (...args: string[]) => parse((await run('curl', ['-sS', '-i', '--max-time', '5', ...args])).stdout);
  const url = (path: string) => `http://127.0.0.1:${port}${path}`;

  const pre = await curl('-X', 'OPTIONS', '-H', 'Origin: https://shop.example', '-H', 'Access-Control-Request-Method: POST', '-H', 'Access-Control-Request-Headers: x-token', url('/api/items'));
  t.is(pre.status, 200);
  t.like(pre.headers, {
    'access-control-allow-origin': 'https://shop.example',
    'access-control-allow-methods': 'GET,POST',
    'access-control-allow-headers': 'x-token',
    'access-control-max-age': '3600',
    'access-control-allow-credentials': 'true',
    'content-length': '0',
  });
  t.false(f.requests.some((r) => r.url === '/api/items'), 'the preflight never reached the app');
  t.true(f.log.records.some((r) => r['component'] === 'access' && r['response_code_details'] === 'cors_response'));

  const simple = await curl('-H', 'Origin: https://eu.partner.example', url('/api/items?x=1'));
  t.is(simple.status, 200);
  t.like(simple.headers, { 'access-control-allow-origin': 'https://eu.partner.example', 'access-control-allow-credentials': 'true', 'access-control-expose-headers': 'x-pod' });
  t.truthy(simple.headers['x-pod'], 'the app answered');

  const other = await curl('-H', 'Origin: https://evil.example', url('/api/items'));
  t.is(other.status, 200);
  t.is(other.headers['access-control-allow-origin'], undefined);

  const forwarded = await curl('-X', 'OPTIONS', '-H', 'Origin: https://evil.example', '-H', 'Access-Control-Request-Method: POST', url('/api/forwarded'));
  t.is(forwarded.status, 200);
  t.is(forwarded.headers['access-control-allow-origin'], undefined);
  t.true(f.requests.some((r) => r.url === '/api/forwarded' && r.method === 'OPTIONS'), 'a preflight from another origin goes upstream by default');

  const ignored = await curl('-X', 'OPTIONS', '-H', 'Origin: https://evil.example', '-H', 'Access-Control-Request-Method: POST', url('/strict/x'));
  t.is(ignored.status, 200);
  t.is(ignored.headers['access-control-allow-origin'], undefined);
  t.false(f.requests.some((r) => r.url === '/strict/x'), 'with forwarding off the waypoint answers it');

  const aborted = await curl('-H', 'Origin: https://shop.example', url('/teapot'));
  t.is(aborted.status, 418);
  t.is(aborted.headers['access-control-allow-origin'], 'https://shop.example', 'a fault answer (after the CORS filter) carries the headers too');
  const abortedPreflight = await curl('-X', 'OPTIONS', '-H', 'Origin: https://shop.example', '-H', 'Access-Control-Request-Method: GET', url('/teapot'));
  t.is(abortedPreflight.status, 200, 'the preflight is answered before fault injection');
});

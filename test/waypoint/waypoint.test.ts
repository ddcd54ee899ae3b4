import test from 'ava';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { HboneError } from '../../src/hbone/errors.ts';
import { sample, total } from '../helpers/prometheus.ts';
import { hasCommand } from '../helpers/commands.ts';
import { HOST, VIP, h2request, startFixture } from './harness.ts';

/**
 * The waypoint in-process on loopback: a real HBONE client (the calling workload's identity) →
 * waypoint → HBONE → ztunnel-like HBONE servers → HTTP apps; curl and nghttp through a local
 * TCP→HBONE bridge. Asserts routing, resilience, policy and telemetry as observed by clients, apps
 * and the Prometheus scrape.
 */

const run = promisify(execFile);
const REVIEWS = `${VIP.reviews}:9080`;
const SECURE = `${VIP.secure}:9080`;

test.serial('a 90/10 split over 2,000 HTTP/2 requests from nghttp lands within statistical tolerance', async (t) => {
  if (!(await hasCommand(t, 'nghttp', 'nghttp2-client'))) return;
  const f = await startFixture(t);
  const port = await f.bridge(REVIEWS);
  // -m 2000: the same URI 2,000 times over one HTTP/2 connection; -v prints each response's headers.
  const { stdout } = await run('nghttp', ['-nv', '-m', '2000', `http://127.0.0.1:${port}/split`], { maxBuffer: 64 * 1024 * 1024 });
  const pods = [...stdout.matchAll(/x-pod: (reviews-v\d)/g)].map((m) => m[1]);
  const statuses = [...stdout.matchAll(/:status: (\d+)/g)].map((m) => m[1]);
  if (statuses.length !== 2000) {
    t.log(f.log.records.filter((r) => r['code'] === 'WAYPOINT_UPSTREAM_RESET' || (r['component'] === 'access' && r['response_flags'] !== '-')).slice(0, 3), f.log.records.filter((r) => r['component'] === 'access').length, f.requests.length);
  }
  t.is(statuses.length, 2000);
  t.true(statuses.every((s) => s === '200'));
  t.is(pods.length, 2000);
  // Binomial(2000, 0.1): mean 200, sd 13.4; 140-260 is ±4.5 sd.
  const v2 = pods.filter((p) => p === 'reviews-v2').length;
  t.true(v2 > 140 && v2 < 260, `v2 got ${v2} of 2000`);
  t.is(f.requests.filter((r) => r.url === '/split' && r.protocol === '2.0').length, 2000, 'the upstream spoke HTTP/2 too');
});

test.serial('header routing sends every matching request to the v2 subset and sets the route\'s response header', async (t) => {
  const f = await startFixture(t);
  for (let i = 0; i < 20; i++) {
    const res = await f.http1(REVIEWS, { path: `/r/${i}`, headers: { 'x-version': 'v2' } });
    t.is(res.status, 200);
    t.is(JSON.parse(res.body).pod, 'reviews-v2');
    t.is(res.headers['x-route'], 'by-header');
  }
  const seen = f.requests.filter((r) => r.url.startsWith('/r/'));
  t.is(seen.length, 20);
  t.true(seen.every((r) => typeof r.headers['x-request-id'] === 'string' && /^00-[0-9a-f]{32}-[0-9a-f]{16}-0[01]$/.test(String(r.headers['traceparent']))), 'x-request-id generated and traceparent set');
});

test.serial('traceparent and x-request-id are propagated: the trace id is kept, the request id passed on', async (t) => {
  const f = await startFixture(t);
  const trace = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
  await f.http1(REVIEWS, { path: '/trace', headers: { traceparent: trace, 'x-request-id': 'req-42', 'x-b3-traceid': 'abc' } });
  const seen = f.requests.find((r) => r.url === '/trace');
  t.regex(String(seen?.headers['traceparent']), /^00-0af7651916cd43dd8448eb211c80319c-[0-9a-f]{16}-01$/);
  t.not(String(seen?.headers['traceparent']).split('-')[2], 'b7ad6b7169203331', 'a new parent span');
  t.is(seen?.headers['x-request-id'], 'req-42');
  t.is(seen?.headers['x-b3-traceid'], 'abc');
});

test.serial('a retry turns a flaky upstream into success, and stops at the attempt limit', async (t) => {
  const f = await startFixture(t);
  const ok = await f.http1(REVIEWS, { path: '/flaky?key=recover&fail=2' });
  t.is(ok.status, 200);
  t.true(JSON.parse(ok.body).recovered);
  t.is(f.requests.filter((r) => r.url.includes('key=recover')).length, 3, 'one try and two retries');

  const failed = await f.http1(REVIEWS, { path: '/flaky?key=never&fail=10' });
  t.is(failed.status, 503, 'the last answer is passed on');
  t.is(f.requests.filter((r) => r.url.includes('key=never')).length, 3, 'attempts: 2 means three tries, no more');
  const log = f.log.records.find((r) => r['component'] === 'access' && String(r['path']).includes('key=never'));
  t.is(log?.['response_flags'], 'URX');
});

test.serial('a route timeout answers 504 and a per-try timeout is retried then answers 504', async (t) => {
  const f = await startFixture(t);
  const start = Date.now();
  const res = await f.http1(REVIEWS, { path: '/slow?ms=3000' });
  const took = Date.now() - start;
  t.is(res.status, 504);
  t.is(res.body, 'upstream request timeout');
  t.true(took >= 280 && took < 2500, `took ${took} ms`);

  const perTry = await f.http1(REVIEWS, { path: '/pertry' });
  t.is(perTry.status, 504);
  const retried = f.log.records.filter((r) => r['code'] === 'WAYPOINT_RETRY' && r['outcome'] === 'per-try-timeout');
  t.is(retried.length, 1, 'the per-try timeout was retried once (attempts: 1)');
  const tries = f.requests.filter((r) => r.url === '/slow').length;
  t.true(tries >= 1 && tries <= 2, `the rewritten path reached the app ${tries} times`);
  const log = f.log.records.filter((r) => r['component'] === 'access' && r['response_code'] === 504);
  t.true(log.every((r) => String(r['response_flags']).includes('UT')));
});

test.serial('fault injection: an abort answers without reaching the app, a delay holds the request', async (t) => {
  const f = await startFixture(t);
  const aborted = await f.http1(REVIEWS, { path: '/fault/abort' });
  t.is(aborted.status, 418);
  t.is(aborted.body, 'fault filter abort');
  t.is(f.requests.filter((r) => r.url.startsWith('/fault/abort')).length, 0);
  const start = Date.now();
  const delayed = await f.http1(REVIEWS, { path: '/fault/delay' });
  t.is(delayed.status, 200);
  t.true(Date.now() - start >= 290);
  t.is(f.requests.filter((r) => r.url.startsWith('/fault/delay')).length, 1);
});

test.serial('DENY on DELETE answers 403 RBAC: access denied; other methods pass', async (t) => {
  const f = await startFixture(t);
  const denied = await f.http1(REVIEWS, { method: 'DELETE', path: '/items/1', headers: { 'x-version': 'v2' } });
  t.is(denied.status, 403);
  t.is(denied.body, 'RBAC: access denied');
  t.is(f.requests.filter((r) => r.method === 'DELETE').length, 0);
  const record = await f.log.waitForCode('WAYPOINT_AUTHZ_DENIED');
  t.is(record['policy'], 'prod/no-delete');
  const put = await f.http1(REVIEWS, { method: 'PUT', path: '/items/1', headers: { 'x-version': 'v2' }, body: 'x' });
  t.is(put.status, 200);
  t.is(JSON.parse(put.body).body, 'x');
});

test.serial('path normalization: // and %2F do not get past an ALLOW list (curl --path-as-is over HTTP/1.1)', async (t) => {
  if (!(await hasCommand(t, 'curl'))) return;
  const f = await startFixture(t);
  const port = await f.bridge(SECURE);
  const curl = async (path: string) => {
    const { stdout } = await run('curl', ['-s', '--path-as-is', '-o', '-', '-w', '\n%{http_code}', `http://127.0.0.1:${port}${path}`]);
    const lines = stdout.split('\n');
    return { status: Number(lines.pop()), body: lines.join('\n') };
  };
  t.is((await curl('/public/page')).status, 200);
  t.is((await curl('/healthz')).status, 200);
  for (const path of ['/admin', '//admin', '/public/../admin', '/public/%2e%2e/admin', '/public/./../admin', '/%61dmin', '/public\\..\\admin']) {
    const res = await curl(path);
    t.is(res.status, 403, `${path} must be denied`);
    t.is(res.body, 'RBAC: access denied');
  }
  // With Istio's default (BASE) an escaped slash stays escaped: the ALLOW list judges the same path
  // the app receives, and the app never sees /admin.
  const escaped = await curl('/public/..%2Fadmin');
  t.not(escaped.body.includes('ADMIN SECRET'), true);
  t.false(f.requests.some((r) => r.url === '/admin'), 'nothing reached /admin');
  t.deepEqual(f.requests.map((r) => r.url).filter((u) => !u.startsWith('/public/page') && u !== '/healthz'), ['/public/..%2Fadmin']);
});

test.serial('path normalization DECODE_AND_MERGE_SLASHES decodes %2F and merges slashes before policy and routing', async (t) => {
  const f = await startFixture(t, { env: { PATH_NORMALIZATION: 'DECODE_AND_MERGE_SLASHES' } });
  t.is((await f.http1(SECURE, { path: '/public/..%2Fadmin' })).status, 403);
  t.is((await f.http1(SECURE, { path: '/public//x' })).status, 200);
  t.deepEqual(f.requests.map((r) => r.url), ['/public/x']);
});

test.serial('HTTP/2 from nghttp: header routing and the response through the waypoint', async (t) => {
  if (!(await hasCommand(t, 'nghttp', 'nghttp2-client'))) return;
  const f = await startFixture(t);
  const port = await f.bridge(REVIEWS);
  const { stdout } = await run('nghttp', ['-H', 'x-version: v2', `http://127.0.0.1:${port}/via-nghttp`]);
  t.is(JSON.parse(stdout).pod, 'reviews-v2');
  const seen = f.requests.find((r) => r.url === '/via-nghttp');
  t.is(seen?.protocol, '2.0');
});

test.serial('gRPC: trailers and grpc-status pass through and are counted as request_protocol grpc', async (t) => {
  const f = await startFixture(t);
  const session = await f.http2(REVIEWS);
  const res = await h2request(session, { ':path': '/grpc?status=7', ':method': 'POST', 'content-type': 'application/grpc', te: 'trailers' }, Buffer.from([0, 0, 0, 0, 0]));
  session.close();
  t.is(res.status, 200);
  t.is(res.trailers['grpc-status'], '7');
  t.is(res.trailers['grpc-message'], 'done');
  t.deepEqual([...res.body], [0, 0, 0, 0, 2, 8, 1]);
  const metrics = await f.metrics();
  t.is(sample(metrics, 'istio_requests_total', 'request_protocol="grpc"', 'grpc_response_status="7"', 'response_code="200"'), 1);
});

test.serial('metric values and Istio\'s labels after a known set of requests; readiness', async (t) => {
  const f = await startFixture(t);
  for (let i = 0; i < 3; i++) t.is((await f.http1(REVIEWS, { path: '/m', headers: { 'x-version': 'v2' } })).status, 200);
  t.is((await f.http1(REVIEWS, { method: 'DELETE', path: '/m' })).status, 403);
  t.is((await f.http1(REVIEWS, { path: '/fault/abort' })).status, 418);
  const m = await f.metrics();
  const common = ['reporter="waypoint"', 'source_workload="web"', 'source_principal="spiffe://cluster.local/ns/prod/sa/web"', 'source_workload_namespace="prod"', 'destination_service="reviews.prod.svc.cluster.local"', 'destination_service_name="reviews"', 'destination_service_namespace="prod"', 'connection_security_policy="mutual_tls"', 'request_protocol="http"'];
  t.is(sample(m, 'istio_requests_total', ...common, 'destination_workload="reviews-v2"', 'destination_version="v2"', 'destination_principal="spiffe://cluster.local/ns/prod/sa/reviews"', 'response_code="200"', 'response_flags="-"'), 3);
  t.is(sample(m, 'istio_requests_total', ...common, 'response_code="403"', 'response_flags="RBAC"'), 1);
  t.is(sample(m, 'istio_requests_total', ...common, 'response_code="418"', 'response_flags="FI"'), 1);
  t.is(total(m, 'istio_requests_total'), 5);
  t.is(total(m, 'istio_request_duration_milliseconds_count'), 5);
  t.is(total(m, 'istio_request_bytes_count'), 5);
  t.true(total(m, 'istio_response_bytes_sum') > 0);
  t.is(sample(m, 'istio_request_duration_milliseconds_bucket', 'response_code="200"', 'le="+Inf"'), 3);
  t.regex(m, /# TYPE istio_requests_total counter/);
  t.regex(m, /grpc_response_status=""/);
  const ready = await fetch(`http://127.0.0.1:${f.waypoint.ports().readiness}/healthz/ready`);
  t.is(ready.status, 200);
  t.is(await ready.text(), 'ready');
  const access = f.log.records.filter((r) => r['component'] === 'access');
  t.is(access.length, 5);
  t.like(access[0], { method: 'GET', path: '/m', response_code: 200, response_flags: '-', authority: REVIEWS, route_name: 'by-header', upstream_cluster: `inbound-vip|9080|http/v2|${HOST.reviews}` });
});

test.serial('bad input: request smuggling (Content-Length with Transfer-Encoding) gets 400 and the waypoint keeps serving', async (t) => {
  const f = await startFixture(t);
  const tunnel = await f.tunnel(REVIEWS);
  tunnel.stream.end('POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n');
  const chunks: Buffer[] = [];
  for await (const c of tunnel.stream) chunks.push(c as Buffer);
  t.regex(Buffer.concat(chunks).toString(), /^HTTP\/1\.1 400/);
  t.false(f.requests.some((r) => r.url === '/smuggled'));
  await f.log.waitForCode('WAYPOINT_BAD_REQUEST');
  t.is((await f.http1(REVIEWS, { path: '/after', headers: { 'x-version': 'v2' } })).status, 200);
});

test.serial('a CONNECT to an unknown address is refused with 503; a non-HTTP stream on a sniffed port is relayed as TCP', async (t) => {
  const f = await startFixture(t);
  const err = await t.throwsAsync(f.tunnel('10.96.99.99:80'));
  t.true(err instanceof HboneError);
  t.is((err as HboneError).code, 'HBONE_CONNECT_REJECTED');
  const tunnel = await f.tunnel(`${VIP.tcp}:7000`);
  tunnel.stream.end('\x16\x03\x01 not http at all\r\n\r\n');
  const chunks: Buffer[] = [];
  for await (const c of tunnel.stream) chunks.push(c as Buffer);
  t.regex(Buffer.concat(chunks).toString(), /^HTTP\/1\.1 400 Bad Request/, 'the bytes reached the app, which answered as HTTP/1.1 apps do');
});

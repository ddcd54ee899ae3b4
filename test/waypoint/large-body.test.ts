import test from 'ava';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { readRequestBody, streamCopies } from '../../src/waypoint/body.ts';
import { until } from '../helpers/prometheus.ts';
import { HOST, VIP, h2request, startFixture } from './harness.ts';

/**
 * Request bodies over the 1 MiB retry/shadow buffer: streamed to the primary with one try only (Envoy abandons
 * the retry, `retry_or_shadow_abandoned`), and streamed to mirrors too, intact; a body under the limit is
 * still retried.
 */

const REVIEWS = `${VIP.reviews}:9080`;
const L7 = `
routeConfigurations:
  - namespace: prod
    hostname: ${HOST.reviews}
    routes:
      - name: mirrored
        matches: [{ path: { prefix: /upload } }]
        backends: [{ namespace: prod, hostname: ${HOST.reviews}, subset: v1, weight: 1 }]
        mirrors: [{ namespace: prod, hostname: ${HOST.reviews}, subset: v2 }]
      - name: flaky
        matches: [{ path: { prefix: /flaky } }]
        backends: [{ namespace: prod, hostname: ${HOST.reviews}, subset: v1, weight: 1 }]
        retries: { attempts: 2, retryOn: [5xx] }
destinationPolicies:
  - namespace: prod
    hostname: ${HOST.reviews}
    subsets:
      - { name: v1, labels: { version: v1 } }
      - { name: v2, labels: { version: v2 } }
`;

const sha256 = (b: Buffer | string) => createHash('sha256').update(b).digest('hex');
/** A printable body of `bytes` bytes (the harness client sends strings). */
const payload = (bytes: number) => randomBytes(Math.ceil((bytes * 3) / 4)).toString('base64').slice(0, bytes);

test.serial('a 3 MiB upload reaches the primary and the mirror intact', async (t) => {
  const f = await startFixture(t, { l7: L7 });
  const body = payload(3 * 1024 * 1024);
  const res = await f.http1(REVIEWS, { method: 'POST', path: '/upload/big', body, headers: { 'content-type': 'application/octet-stream' } });
  t.is(res.status, 200);
  const answer = JSON.parse(res.body) as { pod: string; bytes: number; sha256: string };
  t.is(answer.pod, 'reviews-v1');
  t.is(answer.bytes, body.length);
  t.is(answer.sha256, sha256(body));
  await until(() => f.requests.some((r) => r.pod === 'reviews-v2' && r.url === '/upload/big'), 'the mirrored upload');
  const shadow = f.requests.find((r) => r.pod === 'reviews-v2' && r.url === '/upload/big');
  t.is(shadow?.bodyBytes, body.length);
  t.is(shadow?.bodySha256, sha256(body));
  t.regex(String(shadow?.headers.host), /-shadow:9080$/);
  // The access log and metrics count the whole body.
  const access = f.log.records.find((r) => r['component'] === 'access' && r['path'] === '/upload/big');
  t.true(Number(access?.['bytes_received'] ?? 0) >= body.length, `bytes_received ${access?.['bytes_received']}`);
});

test.serial('HTTP/2 both ways: 3 MiB uploads, streamed and buffered, reach the pod intact over the nested HTTP/2 session', async (t) => {
  // HTTP/2 downstream makes the upstream HTTP/2 too: node's HTTP/2 client session on a TunnelSocket over
  // the upstream tunnel. Every byte of both bodies must arrive in order, in many DATA frames.
  const f = await startFixture(t, { l7: L7 });
  const session = await f.http2(REVIEWS);
  try {
    for (const [path, bytes] of [['/upload/h2-streamed', 3 * 1024 * 1024], ['/upload/h2-buffered', 900 * 1024]] as const) {
      const body = Buffer.from(payload(bytes));
      const res = await h2request(session, { ':method': 'POST', ':path': path, 'content-type': 'application/octet-stream' }, body);
      t.is(res.status, 200, path);
      const answer = JSON.parse(res.body.toString()) as { pod: string; bytes: number; sha256: string };
      t.is(answer.bytes, body.length, path);
      t.is(answer.sha256, sha256(body), path);
      t.is(f.requests.find((r) => r.url === path)?.protocol, '2.0', `${path} went upstream as HTTP/2`);
    }
  } finally {
    session.close();
  }
});

test.serial('a mirror that stops reading is dropped; the primary still gets its 32 MiB upload whole', async (t) => {
  const f = await startFixture(t, { l7: L7 });
  const body = payload(32 * 1024 * 1024); // far more than loopback socket buffers and HBONE windows hold
  const res = await f.http1(REVIEWS, { method: 'POST', path: '/upload/stall', body });
  t.is(res.status, 200);
  const answer = JSON.parse(res.body) as { pod: string; bytes: number; sha256: string };
  t.is(answer.pod, 'reviews-v1');
  t.is(answer.sha256, sha256(body));
  const dropped = f.log.records.find((r) => r['code'] === 'WAYPOINT_MIRROR_DROPPED');
  t.truthy(dropped, 'the stalled mirror was dropped');
  t.regex(String(dropped?.['cluster']), /http\/v2/);
});

test.serial('a flaky upstream with a 3 MiB body gets exactly one try and its 503 is passed through', async (t) => {
  const f = await startFixture(t, { l7: L7 });
  const body = payload(3 * 1024 * 1024);
  const res = await f.http1(REVIEWS, { method: 'POST', path: '/flaky?key=big&fail=1', body });
  t.is(res.status, 503);
  t.like(JSON.parse(res.body), { failed: true });
  t.is(f.requests.filter((r) => r.url.includes('key=big')).length, 1);
  const skipped = f.log.records.find((r) => r['code'] === 'WAYPOINT_RETRY_ABANDONED' && r['msg'] === 'retry skipped: the request body was streamed, not buffered');
  t.truthy(skipped, 'the skipped retry is logged with its code');
  const metrics = await f.metrics();
  t.regex(metrics, new RegExp(`envoy_cluster_retry_or_shadow_abandoned\\{cluster_name="inbound-vip\\|9080\\|http/v1\\|${HOST.reviews.replace(/\./g, '\\.')}"\\} 1`));
});

test.serial('a flaky upstream with a 100 KB body is retried', async (t) => {
  const f = await startFixture(t, { l7: L7 });
  const body = payload(100 * 1024);
  const res = await f.http1(REVIEWS, { method: 'POST', path: '/flaky?key=small&fail=1', body });
  t.is(res.status, 200);
  t.like(JSON.parse(res.body), { recovered: true });
  const tries = f.requests.filter((r) => r.url.includes('key=small'));
  t.is(tries.length, 2);
  t.true(tries.every((r) => r.bodySha256 === sha256(body)), 'every try carried the whole body');
});

test('streamCopies: a mirror copy nobody reads is dropped; the primary still gets every byte', async (t) => {
  const chunks = Array.from({ length: 64 }, () => randomBytes(64 * 1024));
  const source = Readable.from(chunks);
  const read = await readRequestBody(source, 1024 * 1024, () => {});
  if (read.kind !== 'streamed') return t.fail('a 4 MiB body must stream');
  const dropped: number[] = [];
  const copies = streamCopies(read, 2, { maxLagBytes: 256 * 1024, onDrop: (i) => dropped.push(i) });
  const fast: Buffer[] = [];
  (copies.branches[1] as Readable).on('data', (c: Buffer) => fast.push(c));
  const ended = once(copies.branches[1] as Readable, 'end');
  const main: Buffer[] = [];
  for await (const c of copies.main) main.push(c as Buffer);
  await ended;
  t.is(sha256(Buffer.concat(main)), sha256(Buffer.concat(chunks)));
  t.is(sha256(Buffer.concat(fast)), sha256(Buffer.concat(chunks)), 'the mirror that keeps up gets the whole body');
  t.deepEqual(dropped, [0]);
  t.true((copies.branches[0] as Readable).destroyed);
});

test('streamCopies: a primary that fails part way destroys the mirror copies instead of ending them', async (t) => {
  async function* broken() {
    yield randomBytes(2 * 1024 * 1024);
    throw new Error('downstream reset');
  }
  const read = await readRequestBody(Readable.from(broken()), 1024 * 1024, () => {});
  if (read.kind !== 'streamed') return t.fail('must stream');
  const copies = streamCopies(read, 1, { maxLagBytes: 8 * 1024 * 1024, onDrop: () => {} });
  const branch = copies.branches[0] as Readable;
  let ended = false;
  branch.on('data', () => {});
  branch.on('end', () => (ended = true));
  await t.throwsAsync(async () => {
    for await (const _ of copies.main) void _;
  }, { message: 'downstream reset' });
  await until(() => branch.destroyed, 'the mirror copy destroyed');
  t.false(ended);
});

import test from 'ava';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { Backoff } from '../../src/core/backoff.ts';
import { ErrorCode } from '../../src/core/error-codes.ts';
import { MeshError, errorCode } from '../../src/core/errors.ts';
import { closeInOrder, Drain, onceClose, Readiness } from '../../src/core/lifecycle.ts';
import { bufferedDestination, createLogger } from '../../src/core/logger.ts';
import { atPath, fail, ok } from '../../src/core/result.ts';
import { SerialRunner } from '../../src/core/serial-runner.ts';
import { TokenBucket } from '../../src/core/token-bucket.ts';

test('error codes are unique and equal their names', (t) => {
  const entries = Object.entries(ErrorCode);
  t.true(entries.length > 10);
  for (const [name, code] of entries) t.is(name, code);
  t.is(new Set(Object.values(ErrorCode)).size, entries.length);
});

test('MeshError carries code, cause and class name; errorCode reads ours and node codes', (t) => {
  const cause = new Error('inner');
  const err = new MeshError(ErrorCode.CONFIG_INVALID, 'bad', { cause });
  t.is(err.code, 'CONFIG_INVALID');
  t.is(err.cause, cause);
  t.is(err.name, 'MeshError');
  t.is(errorCode(err), 'CONFIG_INVALID');
  t.is(errorCode(Object.assign(new Error('x'), { code: 'ECONNRESET' })), 'ECONNRESET');
  t.is(errorCode('string'), 'UNKNOWN');
});

test('results prefix errors with a field path', (t) => {
  t.deepEqual(atPath('a.b', fail('must be set', 'too long')), { ok: false, errors: ['a.b: must be set', 'a.b: too long'] });
  t.deepEqual(atPath('a', ok(3)), { ok: true, value: 3 });
});

test('backoff grows by the multiplier to the cap and resets', (t) => {
  const b = new Backoff({ initialMs: 500, maxMs: 3000, multiplier: 2 });
  t.deepEqual([b.next(), b.next(), b.next(), b.next(), b.next()], [500, 1000, 2000, 3000, 3000]);
  b.reset();
  t.is(b.next(), 500);
});

test('backoff jitter stays within its fraction and under the cap', (t) => {
  const low = new Backoff({ initialMs: 1000, maxMs: 10_000, jitter: 0.2, random: () => 0 });
  const high = new Backoff({ initialMs: 1000, maxMs: 1000, jitter: 0.2, random: () => 0.999 });
  t.is(low.next(), 800);
  t.is(high.next(), 1000);
});

test('drain waits for tracked tasks and reports a missed deadline', async (t) => {
  const drain = new Drain();
  const done = drain.track({});
  let told = false;
  drain.onDrain(() => (told = true));
  const finished = drain.drain(10_000);
  t.true(drain.draining);
  t.true(told);
  done();
  t.true(await finished);

  const stuck = new Drain();
  stuck.track({});
  t.false(await stuck.drain(20));
  t.is(stuck.liveCount, 1);
});

test('readiness reports pending tasks by name until each is marked', async (t) => {
  const readiness = new Readiness();
  const certs = readiness.register('certificates');
  readiness.register('listeners');
  t.deepEqual(readiness.report(), { ready: false, pending: ['certificates', 'listeners'] });
  certs();
  readiness.markReady('listeners');
  await readiness.whenReady();
  t.deepEqual(readiness.report(), { ready: true, pending: [] });
});

test('closeInOrder closes children before parents, once each, and surfaces failures', async (t) => {
  const order: string[] = [];
  const make = (name: string, failWith?: Error) => ({ close: onceClose(async () => { order.push(name); if (failWith) throw failWith; }) });
  const child = make('child');
  const parent = make('parent', new Error('boom'));
  await t.throwsAsync(closeInOrder([child, parent, child]), { message: 'boom' });
  t.deepEqual(order, ['child', 'parent']);
});

test('the logger writes JSON with component and redacts keys', async (t) => {
  const lines: string[] = [];
  const sink = new Writable({ write(chunk, _enc, cb) { lines.push(String(chunk)); cb(); } });
  const log = createLogger({ destination: sink }).child({ component: 'test' });
  log.info({ key: 'PRIVATE', token: 'SECRET', code: 'X' }, 'hello');
  const record = JSON.parse(lines[0] ?? '{}') as Record<string, unknown>;
  t.is(record.component, 'test');
  t.is(record.msg, 'hello');
  t.is(record.level, 'info');
  t.is(record.key, '[redacted]');
  t.is(record.token, '[redacted]');
  t.is(record.code, 'X');
});

test('a buffered destination holds lines until 8 KiB, its flush interval or close, and writes whole lines', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'buffered-log-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'access.log');
  const fd = openSync(path, 'w');
  t.teardown(() => closeSync(fd));
  const buffered = bufferedDestination(fd, 200);
  const log = createLogger({ destination: buffered.destination });
  const lines = () => readFileSync(path, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as { n: number });

  log.info({ n: 0 }, 'first');
  t.is(readFileSync(path, 'utf8'), '', 'one line waits in the buffer');
  await new Promise((resolve) => setTimeout(resolve, 500));
  t.deepEqual(lines().map((l) => l.n), [0], 'the interval flushed it');

  for (let n = 1; n <= 100; n++) log.info({ n, pad: 'x'.repeat(100) }, 'bulk');
  const atOnce = lines().length;
  t.true(atOnce > 1 && atOnce < 101, `8 KiB of lines are written at once, the rest wait (${atOnce} of 101 written)`);
  log.info({ n: 101 }, 'last');
  buffered.close();
  t.deepEqual(lines().map((l) => l.n), Array.from({ length: 102 }, (_, n) => n), 'close writes the rest, every line whole and in order');
});

test('TokenBucket: a burst passes at once, then work is spread at the rate', (t) => {
  let now = 1000;
  const bucket = new TokenBucket(10, 3, () => now);
  t.deepEqual([bucket.take(), bucket.take(), bucket.take()], [0, 0, 0], 'the burst');
  t.is(bucket.take(), 100, 'the 4th waits one refill at 10/s');
  t.is(bucket.take(), 200, 'the 5th waits two');
  now += 1000; // 10 tokens refilled, capped at the burst: -2 + 10 → 3
  t.deepEqual([bucket.take(), bucket.take(), bucket.take(), bucket.take()], [0, 0, 0, 100]);
  t.throws(() => new TokenBucket(0, 1), { instanceOf: RangeError });
});

test('SerialRunner: one run at a time; requests during a run coalesce into exactly one more; idle waits; stopped ends reruns', async (t) => {
  const gates: Array<() => void> = [];
  let stopped = false;
  const runner = new SerialRunner(() => new Promise<void>((resolve) => gates.push(resolve)), () => stopped);
  const open = async (): Promise<void> => {
    while (gates.length === 0) await new Promise((r) => setImmediate(r));
    gates.shift()!();
  };
  const first = runner.run();
  t.is(runner.run(), first, 'a request during a run shares its promise');
  runner.run();
  await open(); // the first run ends; the two requests made during it become one rerun
  await open();
  await runner.idle();
  await new Promise((r) => setImmediate(r));
  t.is(gates.length, 0, 'exactly two runs');

  const third = runner.run();
  runner.run();
  stopped = true;
  await open();
  await third;
  await new Promise((r) => setImmediate(r));
  t.is(gates.length, 0, 'once stopped, the queued rerun does not happen');
});

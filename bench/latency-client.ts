/**
 * Request/response latency at a fixed rate, over ONE TCP connection to an echo target (directly or
 * through a proxy path). Every `1000/rate` ms a `size`-byte message is due; the client sends it,
 * waits for the whole echo, and records the time from the message's SCHEDULED send time to the end
 * of its echo. A slow echo therefore delays the next send, and the delay is charged to every
 * message that should have gone out meanwhile (no coordinated omission, as wrk2).
 *
 * Sub-millisecond scheduling: libuv timers have 1 ms resolution, so the client sleeps with
 * `Atomics.wait` (a futex with a fractional timeout) until ~80 µs before the due time and spins the
 * rest. It blocks its own event loop only while no message is outstanding; the load generator is a
 * separate process so this costs the measured path nothing beyond one core's slice.
 *
 * Prints one JSON line (microseconds) and exits 0, or `{"error":...}` and exits 1.
 *
 *   node dist/bench/latency-client.js --port N [--host 127.0.0.1] [--rate 1000] [--duration 10]
 *        [--warmup 1] [--size 64] [--timeout-ms 5000]
 */
import { once } from 'node:events';
import { connect } from 'node:net';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

export interface LatencyReport {
  readonly rate: number;
  readonly size: number;
  readonly warmupSeconds: number;
  readonly durationSeconds: number;
  /** Messages measured (after warm-up). */
  readonly count: number;
  /** From scheduled send time to the end of the echo. */
  readonly p50Us: number;
  readonly p90Us: number;
  readonly p99Us: number;
  readonly p999Us: number;
  readonly maxUs: number;
  readonly meanUs: number;
  /** From the actual send to the end of the echo (what a closed loop would report). */
  readonly serviceP50Us: number;
  readonly serviceP99Us: number;
  /** How late the generator itself sent (actual − scheduled): its own precision. */
  readonly sendLagP50Us: number;
  readonly sendLagP99Us: number;
}

const { values } = parseArgs({
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    rate: { type: 'string', default: '1000' },
    duration: { type: 'string', default: '10' },
    warmup: { type: 'string', default: '1' },
    size: { type: 'string', default: '64' },
    'timeout-ms': { type: 'string', default: '5000' },
  },
});

function fatal(message: string): never {
  process.stdout.write(`${JSON.stringify({ error: message })}\n`);
  process.exit(1);
}

const port = Number(values.port);
const rate = Number(values.rate);
const durationSeconds = Number(values.duration);
const warmupSeconds = Number(values.warmup);
const size = Number(values.size);
const timeoutMs = Number(values['timeout-ms']);
if (!Number.isInteger(port) || port <= 0) fatal('--port is required');
if (!(rate > 0) || !(durationSeconds > 0) || !(warmupSeconds >= 0) || !(size > 0) || !(timeoutMs > 0)) fatal('bad --rate/--duration/--warmup/--size/--timeout-ms');

const intervalMs = 1000 / rate;
const warmupCount = Math.round(warmupSeconds * rate);
const measured = Math.round(durationSeconds * rate);
const total = warmupCount + measured;
const latency = new Float64Array(measured);
const service = new Float64Array(measured);
const sendLag = new Float64Array(measured);
const payload = Buffer.alloc(size, 0x5a);

const futex = new Int32Array(new SharedArrayBuffer(4));
const SPIN_MS = 0.2;
function sleepUntil(due: number): void {
  for (;;) {
    const left = due - performance.now();
    if (left <= 0) return;
    if (left > SPIN_MS) Atomics.wait(futex, 0, 0, left - SPIN_MS);
  }
}

const socket = connect({ host: values.host, port, noDelay: true });
socket.on('error', (err) => fatal(`connection: ${err.message}`));
const connectTimer = setTimeout(() => fatal(`connect to ${values.host}:${port} timed out`), timeoutMs);
await once(socket, 'connect');
clearTimeout(connectTimer);

let index = 0;
let scheduled = 0;
let sentAt = 0;
let received = 0;
const start = performance.now() + 5;

function sendNext(): void {
  scheduled = start + index * intervalMs;
  sleepUntil(scheduled);
  sentAt = performance.now();
  socket.write(payload);
}

const done = new Promise<void>((resolve) => {
  socket.on('data', (chunk: Buffer) => {
    received += chunk.length;
    if (received > size) fatal(`echo returned ${received} bytes for a ${size}-byte message`);
    if (received < size) return;
    const now = performance.now();
    received = 0;
    const slot = index - warmupCount;
    if (slot >= 0) {
      latency[slot] = (now - scheduled) * 1000;
      service[slot] = (now - sentAt) * 1000;
      sendLag[slot] = (sentAt - scheduled) * 1000;
    }
    index++;
    if (index === total) resolve();
    else sendNext();
  });
  socket.once('end', () => {
    if (index < total) fatal(`the path closed the connection after ${index} of ${total} messages`);
  });
});

// Watchdog: a lost echo or a stalled path ends the run instead of hanging it.
const watchdog = setInterval(() => {
  if (performance.now() - sentAt > timeoutMs) fatal(`no echo for message ${index} within ${timeoutMs} ms`);
}, 250);
sendNext();
await done;
clearInterval(watchdog);
socket.end();

const sorted = (values: Float64Array) => values.slice().sort();
const pct = (values: Float64Array, p: number) => round(values[Math.min(values.length - 1, Math.ceil((p / 100) * values.length) - 1)] ?? NaN);
const round = (us: number) => Math.round(us * 10) / 10;
const lat = sorted(latency);
const svc = sorted(service);
const lag = sorted(sendLag);
const report: LatencyReport = {
  rate,
  size,
  warmupSeconds,
  durationSeconds,
  count: measured,
  p50Us: pct(lat, 50),
  p90Us: pct(lat, 90),
  p99Us: pct(lat, 99),
  p999Us: pct(lat, 99.9),
  maxUs: round(lat[lat.length - 1] ?? NaN),
  meanUs: round(lat.reduce((a, b) => a + b, 0) / lat.length),
  serviceP50Us: pct(svc, 50),
  serviceP99Us: pct(svc, 99),
  sendLagP50Us: pct(lag, 50),
  sendLagP99Us: pct(lag, 99),
};
process.stdout.write(`${JSON.stringify(report)}\n`);
process.exit(0);

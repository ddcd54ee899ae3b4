/**
 * Connection loads for bench/l4.ts, against an echo target (bench/echo-server.ts), directly or
 * through a proxy path.
 *
 *   rate: `--concurrency` workers each loop: connect, send `--size` bytes, read the whole echo,
 *         end, wait for the close. Connections completed in the `--duration` seconds after a
 *         `--warmup` are counted; prints `{"perSecond":..,"count":..,"p50Us":..,"p99Us":..,"errors":..}`
 *         (latency from the connect call to the close) and exits.
 *   hold: opens `--count` connections, `--concurrency` at a time, each with one `--size`-byte round
 *         trip (so the whole path is set up, not just the first hop), prints
 *         `{"ready":true,"open":N,"seconds":S}` and keeps them idle until SIGTERM/SIGINT or stdin
 *         (if a pipe) closes. Any connection that fails or closes early prints `{"error":...}` and exits 1.
 *
 *   node dist/bench/conn-client.js rate --host H --port P [--duration 4] [--warmup 0.5] [--concurrency 8] [--size 64]
 *   node dist/bench/conn-client.js hold --host H --port P [--count 10000] [--concurrency 100] [--size 1]
 */
import { fstatSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';

export interface ConnRateReport {
  readonly concurrency: number;
  readonly durationSeconds: number;
  /** Connections completed (echo received and closed) in the measured window. */
  readonly count: number;
  readonly perSecond: number;
  /** Connect call to close, over the measured window. */
  readonly p50Us: number;
  readonly p99Us: number;
  readonly errors: number;
  readonly firstError?: string;
}

export interface HoldReport {
  readonly ready: true;
  readonly open: number;
  readonly seconds: number;
}

const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    host: { type: 'string', default: '127.0.0.1' },
    port: { type: 'string' },
    duration: { type: 'string', default: '4' },
    warmup: { type: 'string', default: '0.5' },
    concurrency: { type: 'string' },
    count: { type: 'string', default: '10000' },
    size: { type: 'string' },
    'timeout-ms': { type: 'string', default: '10000' },
  },
});

function fatal(message: string): never {
  process.stdout.write(`${JSON.stringify({ error: message })}\n`);
  process.exit(1);
}

const mode = positionals[0];
const host = values.host;
const port = Number(values.port);
const timeoutMs = Number(values['timeout-ms']);
if (mode !== 'rate' && mode !== 'hold') fatal('usage: conn-client.js rate|hold --host H --port P ...');
if (!Number.isInteger(port) || port <= 0) fatal('--port is required');

/** One connection: connect, `size`-byte round trip; resolves with the socket once the echo is complete. */
function roundTrip(size: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host, port, noDelay: true });
    let received = 0;
    const timer = setTimeout(() => fail(new Error(`no echo within ${timeoutMs} ms`)), timeoutMs);
    const fail = (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(err);
    };
    socket.on('error', fail);
    socket.once('end', () => fail(new Error(`closed by the path after ${received} of ${size} echo bytes`)));
    socket.once('connect', () => socket.write(Buffer.alloc(size, 0x5a)));
    const onData = (chunk: Buffer) => {
      received += chunk.length;
      if (received < size) return;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.removeAllListeners('end');
      socket.removeListener('error', fail);
      resolve(socket);
    };
    socket.on('data', onData);
  });
}

async function rate(): Promise<void> {
  const concurrency = Number(values.concurrency ?? 8);
  const size = Number(values.size ?? 64);
  const duration = Number(values.duration);
  const warmup = Number(values.warmup);
  const t0 = performance.now();
  const from = t0 + warmup * 1000;
  const until = from + duration * 1000;
  const latencies: number[] = [];
  let errors = 0;
  let firstError: string | undefined;
  const worker = async () => {
    while (performance.now() < until) {
      const started = performance.now();
      try {
        const socket = await roundTrip(size);
        socket.on('error', () => {});
        socket.on('data', () => {});
        await new Promise<void>((resolve) => {
          socket.once('close', () => resolve());
          socket.end();
        });
        const ended = performance.now();
        if (started >= from && ended <= until) latencies.push((ended - started) * 1000);
      } catch (err) {
        errors++;
        firstError ??= (err as Error).message;
        if (errors > 1000) fatal(`too many errors: ${firstError}`);
      }
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  latencies.sort((a, b) => a - b);
  const pct = (p: number) => Math.round(latencies[Math.min(latencies.length - 1, Math.ceil((p / 100) * latencies.length) - 1)] ?? NaN);
  const report: ConnRateReport = {
    concurrency,
    durationSeconds: duration,
    count: latencies.length,
    perSecond: Math.round(latencies.length / duration),
    p50Us: pct(50),
    p99Us: pct(99),
    errors,
    ...(firstError === undefined ? {} : { firstError }),
  };
  process.stdout.write(`${JSON.stringify(report)}\n`);
  process.exit(0);
}

async function hold(): Promise<void> {
  const count = Number(values.count);
  const concurrency = Number(values.concurrency ?? 100);
  const size = Number(values.size ?? 1);
  const sockets: Socket[] = [];
  let holding = false;
  const started = performance.now();
  let next = 0;
  const worker = async () => {
    while (next < count) {
      next++;
      let socket: Socket;
      try {
        socket = await roundTrip(size);
      } catch (err) {
        fatal(`connection ${sockets.length + 1} of ${count}: ${(err as Error).message}`);
      }
      socket.on('error', (err) => fatal(`a held connection failed: ${err.message}`));
      socket.on('close', () => {
        if (holding) fatal('a held connection was closed by the path');
      });
      sockets.push(socket);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  holding = true;
  const report: HoldReport = { ready: true, open: sockets.length, seconds: Math.round(performance.now() - started) / 1000 };
  process.stdout.write(`${JSON.stringify(report)}\n`);
  const stop = () => {
    holding = false;
    process.exit(0);
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
  if (fstatSync(0).isFIFO()) process.stdin.on('end', stop).on('error', stop).resume();
}

if (mode === 'rate') await rate();
else await hold();

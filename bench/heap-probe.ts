/**
 * Where a Node process's memory is: `process.memoryUsage()` of a running process, before and after a
 * full garbage collection, read through its inspector (which `kill -USR1 <pid>` opens on
 * 127.0.0.1:9229; run this in the same network namespace). Used by `bench/l4.ts --heap-probe` to
 * tell collectable garbage from retained memory in the ztunnels. Prints one JSON line (MB):
 * `{"before":{rss,heapTotal,heapUsed,external,arrayBuffers},"afterGc":{...}}`.
 *
 *   node dist/bench/heap-probe.js [--port 9229]
 */
import { parseArgs } from 'node:util';

const { values } = parseArgs({ options: { port: { type: 'string', default: '9229' } } });

function fatal(message: string): never {
  process.stdout.write(`${JSON.stringify({ error: message })}\n`);
  process.exit(1);
}

const deadline = Date.now() + 10_000;
let url: string | undefined;
while (!url) {
  try {
    const targets = (await (await fetch(`http://127.0.0.1:${values.port}/json/list`)).json()) as Array<{ webSocketDebuggerUrl?: string }>;
    url = targets[0]?.webSocketDebuggerUrl;
  } catch {
    // inspector not listening yet
  }
  if (!url) {
    if (Date.now() > deadline) fatal(`no inspector on 127.0.0.1:${values.port}`);
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
}

const ws = new WebSocket(url);
await new Promise<void>((resolve, reject) => {
  ws.addEventListener('open', () => resolve(), { once: true });
  ws.addEventListener('error', () => reject(new Error(`cannot open ${url}`)), { once: true });
}).catch((err: unknown) => fatal((err as Error).message));

let nextId = 1;
const pending = new Map<number, (result: unknown) => void>();
ws.addEventListener('message', (event) => {
  const message = JSON.parse(String(event.data)) as { id?: number; result?: unknown; error?: { message: string } };
  if (message.id === undefined) return;
  if (message.error) fatal(message.error.message);
  pending.get(message.id)?.(message.result);
  pending.delete(message.id);
});
const call = (method: string, params: Record<string, unknown> = {}) =>
  new Promise<unknown>((resolve) => {
    const id = nextId++;
    pending.set(id, resolve);
    ws.send(JSON.stringify({ id, method, params }));
  });

const usage = async () => {
  const result = (await call('Runtime.evaluate', { expression: 'JSON.stringify(process.memoryUsage())', returnByValue: true })) as { result: { value: string } };
  const raw = JSON.parse(result.result.value) as Record<string, number>;
  return Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, Math.round(v / 1024 / 102.4) / 10]));
};

const before = await usage();
await call('HeapProfiler.collectGarbage');
const afterGc = await usage();
process.stdout.write(`${JSON.stringify({ before, afterGc })}\n`);
ws.close();
process.exit(0);

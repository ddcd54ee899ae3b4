/**
 * Workload API benchmark: apply and index 10k and 50k workloads into the store (time, heap), and
 * push one change to 100 connected xDS clients (time until all ACKed). Prints a table and writes
 * JSON under bench/results/.
 *
 *   node --expose-gc dist/bench/xds.js [--no-write]
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { WorkloadStore } from '../src/workload-api/store.ts';
import { addressHandler } from '../src/workload-api/store-handlers.ts';
import { workloadResources } from './xds-fixtures.ts';
import { pushToClients } from './xds-push.ts';

const gc = (globalThis as { gc?: () => void }).gc;
const heapMiB = () => {
  gc?.();
  return process.memoryUsage().heapUsed / 1024 / 1024;
};

interface ApplyResult {
  readonly workloads: number;
  readonly applyMs: number;
  readonly perWorkloadUs: number;
  readonly heapMiB: number;
  readonly lookupsPerSecond: number;
}

function applyBench(count: number): ApplyResult {
  const resources = workloadResources(count);
  const before = heapMiB();
  const store = new WorkloadStore();
  const handler = addressHandler(store);
  const start = performance.now();
  const rejected = handler.handle(resources, []);
  const applyMs = performance.now() - start;
  if (rejected.length > 0) throw new Error(`fixture rejected: ${rejected[0]?.reason}`);
  const heap = heapMiB() - before;
  const lookups = 200_000;
  const t0 = performance.now();
  let found = 0;
  for (let i = 0; i < lookups; i++) {
    const n = i % count;
    if (store.workloadByAddress('', `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`)) found++;
  }
  const lookupMs = performance.now() - t0;
  if (found !== lookups) throw new Error(`lookups found ${found} of ${lookups}`);
  return { workloads: count, applyMs, perWorkloadUs: (applyMs * 1000) / count, heapMiB: heap, lookupsPerSecond: lookups / (lookupMs / 1000) };
}

const applies = [10_000, 50_000].map(applyBench);
const push = await pushToClients({ clients: 100, workloads: 1000 });

const fmt = (n: number, digits = 1) => n.toFixed(digits);
console.log(`\nWorkload API benchmark — ${new Date().toISOString()} — node ${process.version}, ${cpus()[0]?.model ?? '?'} × ${cpus().length}${gc ? '' : ' (run with --expose-gc for heap figures)'}\n`);
console.log('workloads  apply ms  µs/workload  heap MiB  IP lookups/s');
for (const a of applies) console.log(`${String(a.workloads).padStart(9)}  ${fmt(a.applyMs).padStart(8)}  ${fmt(a.perWorkloadUs, 2).padStart(11)}  ${fmt(a.heapMiB).padStart(8)}  ${Math.round(a.lookupsPerSecond).toString().padStart(12)}`);
console.log(`\npush one changed workload to ${push.clients} clients (each holding ${push.workloads}): all ACKed after ${fmt(push.allAckedMs)} ms (p50 ${fmt(push.p50Ms)} ms, max ${fmt(push.maxMs)} ms); initial sync of all clients ${fmt(push.initialSyncMs)} ms`);

if (!process.argv.includes('--no-write')) {
  const dir = join(import.meta.dirname, '..', '..', 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const result = { date: new Date().toISOString(), node: process.version, cpu: cpus()[0]?.model, cores: cpus().length, applies, push };
  writeFileSync(join(dir, 'xds-latest.json'), `${JSON.stringify(result, null, 2)}\n`);
  console.log(`\nwrote bench/results/xds-latest.json`);
}

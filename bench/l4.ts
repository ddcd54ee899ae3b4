/**
 * L4 end-to-end benchmark: our ztunnel pair against direct TCP and a stunnel pair, on two simulated
 * nodes (network namespaces joined by a veth pair), in one run.
 *
 *   ztunnel  load (node A) ─▶ iptables REDIRECT ─▶ ztunnel A :15001 ══ HBONE (mTLS + HTTP/2 CONNECT) ══▶ ztunnel B :15008 ─▶ target (node B)
 *   direct   load (node A) ────────────────────────────────────────────────────────────────────────────────────────────▶ target (node B)
 *   stunnel  load (node A) ─▶ stunnel client (A) ══ TLS 1.3, client cert ══▶ stunnel server (B) ─▶ target (node B)
 *
 * Loads, each from node A: single-stream throughput (iperf3), fixed-rate request/response latency
 * (bench/latency-client.ts against bench/echo-server.ts), new connections per second
 * (bench/conn-client.ts rate), and resident memory of the proxies idle and with 10,000 idle
 * connections open through them (bench/conn-client.ts hold). Prints one table with the issue's goal
 * figures and writes bench/results/l4-<date>.json and bench/results/l4-latest.json. See bench/README.md.
 *
 *   node dist/bench/l4.js [--iperf-seconds 4] [--rounds 3] [--latency-seconds 8] [--latency-warmup 1]
 *                         [--rate 1000] [--conn-seconds 4] [--conn-concurrency 8]
 *                         [--idle-connections 10000] [--heap-probe] [--no-write]
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir, release as osRelease, platform } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { TLS_CIPHERS } from '../src/hbone/settings.ts';
import { CertificateAuthority } from '../src/identity/ca.ts';
import { spiffeId } from '../src/identity/spiffe.ts';
import { cleanupOnExit, running, start as startChild, stop, stopAll, type Child } from './children.ts';
import { cpuSeconds, iperfResult, round, STUNNEL_GLOBAL, stunnelTls, writeCertificates, type ThroughputResult } from './common.ts';
import type { ConnRateReport, HoldReport } from './conn-client.ts';
import type { LatencyReport } from './latency-client.ts';
import { captureOutbound, createNodePair, inNode, netnsMissing, nodeArgv, openFilesHardLimit, removeNamespacesSync, type BenchNode, type NodePair } from './netns.ts';

const PATHS = ['ztunnel', 'direct', 'stunnel'] as const;
type PathName = (typeof PATHS)[number];

const { values } = parseArgs({
  options: {
    'iperf-seconds': { type: 'string', default: '4' },
    rounds: { type: 'string', default: '3' },
    'latency-seconds': { type: 'string', default: '8' },
    'latency-warmup': { type: 'string', default: '1' },
    rate: { type: 'string', default: '1000' },
    'conn-seconds': { type: 'string', default: '4' },
    'conn-concurrency': { type: 'string', default: '8' },
    'idle-connections': { type: 'string', default: '10000' },
    'heap-probe': { type: 'boolean', default: false },
    'ztunnel-node-flags': { type: 'string', default: '' },
    'no-write': { type: 'boolean', default: false },
  },
});
const heapProbe = values['heap-probe'];
/** Extra flags for the ztunnels' `node` (V8 tuning experiments), e.g. `--max-semi-space-size=4`. */
const ztunnelNodeFlags = values['ztunnel-node-flags'].split(' ').filter((f) => f !== '');
const iperfSeconds = Number(values['iperf-seconds']);
const rounds = Math.max(1, Math.floor(Number(values.rounds)));
const latencySeconds = Number(values['latency-seconds']);
const latencyWarmup = Number(values['latency-warmup']);
const rate = Number(values.rate);
const connSeconds = Number(values['conn-seconds']);
const connConcurrency = Number(values['conn-concurrency']);
const idleConnections = Number(values['idle-connections']);

const STUNNEL = '/usr/bin/stunnel4';
const IPERF3 = '/usr/bin/iperf3';
/** The launcher a deployment runs (with its node flags), not the bare module. */
const AMBIENTD = fileURLToPath(new URL('../../bin/ambientd', import.meta.url));
const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));
const resultsDir = fileURLToPath(new URL('../../bench/results/', import.meta.url));
const READY_TIMEOUT_MS = 20_000;
const PACKET_MARK = 0x539;

/**
 * Ports. Node B runs two of each target: one reached through the mesh (captured in A) and one in
 * EXCLUDED (not captured in A) for direct TCP and as the stunnel server's upstream. The stunnel
 * server listens in EXCLUDED too; the stunnel client listens on A's loopback (never captured).
 */
const EXCLUDED = '20000:29999';
const PORT = {
  meshIperf: 5201,
  meshEcho: 7000,
  directIperf: 25201,
  directEcho: 27000,
  stunnelServerIperf: 25443,
  stunnelServerEcho: 27443,
  stunnelClientIperf: 25200,
  stunnelClientEcho: 27001,
} as const;

/** Where the load generator in node A connects, per path and target. */
function endpoint(path: PathName, target: 'iperf' | 'echo', b: BenchNode): { host: string; port: number } {
  switch (path) {
    case 'ztunnel':
      return { host: b.ip, port: target === 'iperf' ? PORT.meshIperf : PORT.meshEcho };
    case 'direct':
      return { host: b.ip, port: target === 'iperf' ? PORT.directIperf : PORT.directEcho };
    case 'stunnel':
      return { host: '127.0.0.1', port: target === 'iperf' ? PORT.stunnelClientIperf : PORT.stunnelClientEcho };
  }
}

// ───────────────────────── child processes: every one is tracked and killed ─────────────────────────

let namespaces: readonly string[] = [];

/** `command args` as a tracked child inside `node` (see `nodeArgv`). */
function start(name: string, node: BenchNode, command: string, args: readonly string[], env: Record<string, string> = {}): Child {
  const argv = nodeArgv(node, command, args);
  return startChild(name, argv.command, argv.args, { env });
}

function removeNamespaces(): void {
  removeNamespacesSync(namespaces);
  namespaces = [];
}

async function cleanup(): Promise<void> {
  await stopAll();
  removeNamespaces();
}

cleanupOnExit({ describe: () => `, removing ${namespaces.join(', ')}`, after: removeNamespaces });

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Polls `probe` every 50 ms until it returns a value; fails if `child` exits or the deadline passes. */
async function until<T>(what: string, probe: () => T | undefined | Promise<T | undefined>, child?: Child, timeoutMs = READY_TIMEOUT_MS): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child && !running(child)) throw new Error(`${child.name} exited before ${what}: ${child.stderr().trim() || child.stdout().slice(-2000)}`);
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${child ? `: ${child.stderr().trim() || child.stdout().slice(-2000)}` : ''}`);
    await sleep(50);
  }
}

/** The last stdout line of a finished child as JSON. */
async function finish<T>(child: Child, timeoutMs: number): Promise<T> {
  const timer = setTimeout(() => void stop(child, 500), timeoutMs);
  const code = await child.exited;
  clearTimeout(timer);
  const last = child.stdout().trim().split('\n').pop() ?? '';
  let parsed: T & { error?: string };
  try {
    parsed = JSON.parse(last) as T & { error?: string };
  } catch {
    throw new Error(`${child.name} exited ${code} without a JSON result: ${child.stderr().trim() || last}`);
  }
  if (code !== 0 || parsed.error) throw new Error(`${child.name} failed (exit ${code}): ${parsed.error ?? child.stderr().trim()}`);
  return parsed;
}

/** The first stdout line that parses as JSON with `ready: true`. */
function readyJson<T>(child: Child): T | undefined {
  for (const line of child.stdout().split('\n')) {
    try {
      const parsed = JSON.parse(line) as { ready?: unknown; error?: string };
      if (parsed.error) throw new Error(`${child.name}: ${parsed.error}`);
      if (parsed.ready === true) return parsed as T;
    } catch (err) {
      if (err instanceof SyntaxError) continue;
      throw err;
    }
  }
  return undefined;
}

/** True once the process (in its own namespace) has a TCP socket listening on `port`, IPv4 or IPv6. */
function listening(pid: number | undefined, port: number): boolean {
  const hex = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const table of ['tcp', 'tcp6']) {
    let text: string;
    try {
      text = readFileSync(`/proc/${pid}/net/${table}`, 'utf8');
    } catch {
      continue;
    }
    for (const row of text.split('\n')) {
      const cols = row.trim().split(/\s+/);
      if (cols[1]?.endsWith(hex) && cols[3] === '0A') return true; // 0A = TCP_LISTEN
    }
  }
  return false;
}

/** VmRSS in MB (MiB). */
function rssMb(pid: number | undefined): number {
  const match = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!match) throw new Error(`no VmRSS for pid ${pid}`);
  return round(Number(match[1]) / 1024, 1);
}

// ───────────────────────── certificates and mesh config ─────────────────────────

const TRUST_DOMAIN = 'cluster.local';
const clientId = spiffeId(TRUST_DOMAIN, 'default', 'client');
const serverId = spiffeId(TRUST_DOMAIN, 'default', 'server');

/** One CA in `caDir` (FAKE_CA_DIR for both ztunnels) and, from it, PEM files for stunnel. */
async function writePki(dir: string): Promise<{ caDir: string; certs: Awaited<ReturnType<typeof writeCertificates>> }> {
  const ca = CertificateAuthority.generate(TRUST_DOMAIN);
  const caDir = join(dir, 'ca');
  await ca.save(caDir);
  return { caDir, certs: await writeCertificates(ca, dir, { client: clientId, server: serverId }) };
}

function meshYaml(pair: NodePair): string {
  const workload = (name: string, ip: string, node: string) => `
- uid: bench//v1/Pod/default/${name}
  name: ${name}
  namespace: default
  serviceAccount: ${name}
  trustDomain: ${TRUST_DOMAIN}
  workloadIps: ["${ip}"]
  protocol: HBONE
  node: ${node}
  workloadName: ${name}
  canonicalName: ${name}`;
  return `workloads:${workload('client', pair.a.ip, 'node-a')}${workload('server', pair.b.ip, 'node-b')}\n`;
}

// ───────────────────────── the paths ─────────────────────────

function startZtunnel(node: BenchNode, workload: string, nodeName: string, meshFile: string, caDir: string): Child {
  // bin/ambientd carries the runtime flags ztunnel ships with; --ztunnel-node-flags adds to them.
  return start(`ztunnel ${nodeName}`, node, AMBIENTD, ['ztunnel'], {
    NODE: process.execPath,
    ...(ztunnelNodeFlags.length > 0 ? { NODE_OPTIONS: ztunnelNodeFlags.join(' ') } : {}),
    PROXY_MODE: 'dedicated',
    PROXY_WORKLOAD_INFO: `default/${workload}/${workload}`,
    XDS_ADDRESS: '',
    LOCAL_XDS_PATH: meshFile,
    FAKE_CA: 'true',
    FAKE_CA_DIR: caDir,
    NODE_NAME: nodeName,
    PACKET_MARK: String(PACKET_MARK),
    RUST_LOG: 'warn',
  });
}

async function ztunnelReady(node: BenchNode, child: Child): Promise<void> {
  await until(`${child.name} /healthz/ready`, async () => {
    const code = await inNode(node, 'curl', ['-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '1', 'http://127.0.0.1:15021/healthz/ready']).catch(() => '');
    return code === '200' ? true : undefined;
  }, child);
}

function stunnelConfig(global: Record<string, string>, services: Record<string, Record<string, string | string[]>>): string {
  const lines = Object.entries(global).map(([k, v]) => `${k} = ${v}`);
  for (const [name, options] of Object.entries(services)) {
    lines.push(`[${name}]`);
    for (const [k, v] of Object.entries(options)) for (const item of Array.isArray(v) ? v : [v]) lines.push(`${k} = ${item}`);
  }
  return `${lines.join('\n')}\n`;
}

async function startStunnel(pair: NodePair, dir: string, pki: Awaited<ReturnType<typeof writePki>>): Promise<{ client: Child; server: Child }> {
  const global = STUNNEL_GLOBAL;
  const tls = stunnelTls(pki.certs.rootsPem);
  const serverConf = join(dir, 'stunnel-server.conf');
  const serverSide = { cert: pki.certs.server.certPem, key: pki.certs.server.keyPem, ...tls };
  writeFileSync(serverConf, stunnelConfig(global, {
    iperf: { accept: `0.0.0.0:${PORT.stunnelServerIperf}`, connect: `${pair.b.ip}:${PORT.directIperf}`, ...serverSide },
    echo: { accept: `0.0.0.0:${PORT.stunnelServerEcho}`, connect: `${pair.b.ip}:${PORT.directEcho}`, ...serverSide },
  }));
  const server = start('stunnel server', pair.b, STUNNEL, [serverConf]);
  const clientConf = join(dir, 'stunnel-client.conf');
  const clientSide = { client: 'yes', cert: pki.certs.client.certPem, key: pki.certs.client.keyPem, ...tls };
  writeFileSync(clientConf, stunnelConfig(global, {
    iperf: { accept: `127.0.0.1:${PORT.stunnelClientIperf}`, connect: `${pair.b.ip}:${PORT.stunnelServerIperf}`, ...clientSide },
    echo: { accept: `127.0.0.1:${PORT.stunnelClientEcho}`, connect: `${pair.b.ip}:${PORT.stunnelServerEcho}`, ...clientSide },
  }));
  const client = start('stunnel client', pair.a, STUNNEL, [clientConf]);
  // No ready line at level warning, and a probe connection would be forwarded: wait for the listeners.
  for (const [child, ports] of [[server, [PORT.stunnelServerIperf, PORT.stunnelServerEcho]], [client, [PORT.stunnelClientIperf, PORT.stunnelClientEcho]]] as const) {
    for (const port of ports) await until(`${child.name} listening on ${port}`, () => (listening(child.proc.pid, port) ? true : undefined), child);
  }
  return { client, server };
}

async function startTargets(b: BenchNode): Promise<void> {
  for (const port of [PORT.meshIperf, PORT.directIperf]) {
    const iperf = start(`iperf3 server :${port}`, b, IPERF3, ['-s', '-p', String(port), '--forceflush']);
    await until(`${iperf.name} listening`, () => (listening(iperf.proc.pid, port) ? true : undefined), iperf);
  }
  for (const port of [PORT.meshEcho, PORT.directEcho]) {
    const echo = start(`echo server :${port}`, b, process.execPath, [here('./echo-server.js'), '--host', '0.0.0.0', '--port', String(port)]);
    await until(`${echo.name} ready`, () => readyJson<{ port: number }>(echo), echo);
  }
}

/** The sum of every sample of a Prometheus counter whose labels contain all the fragments. */
function metricTotal(text: string, name: string, ...fragments: string[]): number {
  return text
    .split('\n')
    .filter((l) => l.startsWith(`${name}{`) && fragments.every((f) => l.includes(f)))
    .reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(' ') + 1)), 0);
}

async function ztunnelMetrics(node: BenchNode): Promise<string> {
  return inNode(node, 'curl', ['-s', '--max-time', '5', 'http://127.0.0.1:15020/metrics']);
}

// ───────────────────────── loads ─────────────────────────

async function iperf(a: BenchNode, target: { host: string; port: number }, proxies: readonly Child[]): Promise<ThroughputResult> {
  const before = proxies.map((c) => cpuSeconds(c.proc.pid));
  const child = start('iperf3 client', a, IPERF3, ['-c', target.host, '-p', String(target.port), '-t', String(iperfSeconds), '-J', '--connect-timeout', '5000']);
  const timer = setTimeout(() => void stop(child, 500), (iperfSeconds + 20) * 1000);
  const code = await child.exited;
  clearTimeout(timer);
  const proxyCpuSeconds = proxies.reduce((sum, c, i) => sum + cpuSeconds(c.proc.pid) - (before[i] ?? 0), 0);
  return iperfResult(code, child.stdout(), child.stderr(), proxyCpuSeconds);
}

async function latency(a: BenchNode, target: { host: string; port: number }): Promise<LatencyReport> {
  const child = start('latency client', a, process.execPath, [
    here('./latency-client.js'), '--host', target.host, '--port', String(target.port), '--rate', String(rate),
    '--duration', String(latencySeconds), '--warmup', String(latencyWarmup), '--size', '64',
  ]);
  return finish<LatencyReport>(child, (latencyWarmup + latencySeconds + 20) * 1000);
}

async function connRate(a: BenchNode, target: { host: string; port: number }): Promise<ConnRateReport> {
  const child = start('conn client', a, process.execPath, [
    here('./conn-client.js'), 'rate', '--host', target.host, '--port', String(target.port),
    '--duration', String(connSeconds), '--warmup', '0.5', '--concurrency', String(connConcurrency), '--size', '64',
  ]);
  return finish<ConnRateReport>(child, (connSeconds + 30) * 1000);
}

interface MemoryResult {
  /** Right after start, before any traffic. */
  idleFreshMb?: readonly [number, number];
  /** After the other loads, with no connection open. */
  idleAfterLoadMb?: readonly [number, number];
  /** With `heldCount` idle connections open through the path. */
  heldMb?: readonly [number, number];
  heldCount?: number;
  heldOpenSeconds?: number;
  /** A few seconds after those connections closed. */
  afterHeldMb?: readonly [number, number];
  /** `--heap-probe`: both ztunnels' memoryUsage() with the connections open, before and after a full GC. */
  heldHeap?: readonly [HeapProbe, HeapProbe];
}

/** Opens `count` connections through the path, reads both proxies' RSS, closes them, reads again. */
async function holdIdle(
  a: BenchNode,
  target: { host: string; port: number },
  proxies: readonly [Child, Child],
  count: number,
  memory: MemoryResult,
  probe?: () => Promise<readonly [HeapProbe, HeapProbe]>,
): Promise<void> {
  memory.heldCount = count;
  const holder = start('hold client', a, process.execPath, [
    here('./conn-client.js'), 'hold', '--host', target.host, '--port', String(target.port),
    '--count', String(count), '--concurrency', '100', '--size', '1',
  ]);
  try {
    const ready = await until('the idle connections to open', () => readyJson<HoldReport>(holder), holder, 120_000);
    memory.heldOpenSeconds = ready.seconds;
    await sleep(2000);
    if (!running(holder)) throw new Error(`hold client exited: ${holder.stdout().trim()}`);
    memory.heldMb = [rssMb(proxies[0].proc.pid), rssMb(proxies[1].proc.pid)];
    if (probe) memory.heldHeap = await probe();
  } catch (err) {
    const tails = proxies.map((c) => c.stderr().trim()).filter(Boolean).map((t) => t.split('\n').slice(-3).join(' | '));
    throw new Error(`${(err as Error).message}${tails.length ? `; proxy stderr: ${tails.join(' ‖ ')}` : ''}`, { cause: err });
  } finally {
    await stop(holder);
  }
  await sleep(3000);
  memory.afterHeldMb = [rssMb(proxies[0].proc.pid), rssMb(proxies[1].proc.pid)];
}

// ───────────────────────── run ─────────────────────────

interface PathResult {
  throughput?: ThroughputResult;
  throughputRounds: ThroughputResult[];
  latency?: LatencyReport;
  connections?: ConnRateReport;
  memory: MemoryResult;
  errors: string[];
}

async function step(result: PathResult, what: string, body: () => Promise<string>): Promise<void> {
  process.stderr.write(`${what} …`);
  try {
    process.stderr.write(` ${await body()}\n`);
  } catch (err) {
    result.errors.push(`${what}: ${(err as Error).message}`);
    process.stderr.write(` failed: ${(err as Error).message}\n`);
  }
}

/** RSS (MB) of both ztunnels and both stunnels after each phase: where the memory goes. */
const timeline: Array<{ after: string; ztunnel: readonly [number, number]; stunnel: readonly [number, number]; ztunnelHeap?: readonly [HeapProbe, HeapProbe] }> = [];

type MemoryUsageMb = Record<'rss' | 'heapTotal' | 'heapUsed' | 'external' | 'arrayBuffers', number>;
interface HeapProbe {
  readonly before: MemoryUsageMb;
  readonly afterGc: MemoryUsageMb;
}

/** `--heap-probe`: process.memoryUsage() of a ztunnel before and after a forced full GC, through its inspector. */
async function probeHeap(node: BenchNode, child: Child): Promise<HeapProbe> {
  child.proc.kill('SIGUSR1'); // opens the inspector on 127.0.0.1:9229 in the ztunnel's namespace (no-op once open)
  const probe = start('heap probe', node, process.execPath, [here('./heap-probe.js')]);
  return finish<HeapProbe>(probe, 20_000);
}
/** 1-minute load average before and after the run (other work on the machine skews everything). */
const load: { before?: number; after?: number } = {};

async function main(): Promise<void> {
  const missing = netnsMissing();
  if (missing) throw new Error(`bench:l4 cannot run: ${missing}`);
  const started = Date.now();
  load.before = round(loadavg()[0] ?? 0, 2);
  const dir = mkdtempSync(join(tmpdir(), 'ambient-l4-'));
  const results = new Map<PathName, PathResult>(PATHS.map((p) => [p, { throughputRounds: [], memory: {}, errors: [] }]));
  const get = (p: PathName) => results.get(p)!;
  try {
    const pair = await createNodePair(`l4b-${process.pid}`);
    namespaces = pair.namespaces;
    const pki = await writePki(dir);
    const meshFile = join(dir, 'mesh.yaml');
    writeFileSync(meshFile, meshYaml(pair));

    process.stderr.write(`namespaces ${pair.namespaces.join(', ')}; starting ztunnels, stunnel and targets …\n`);
    const ztunnelA = startZtunnel(pair.a, 'client', 'node-a', meshFile, pki.caDir);
    const ztunnelB = startZtunnel(pair.b, 'server', 'node-b', meshFile, pki.caDir);
    await ztunnelReady(pair.a, ztunnelA);
    await ztunnelReady(pair.b, ztunnelB);
    await captureOutbound(pair.a, { port: 15001, mark: PACKET_MARK, exclude: EXCLUDED });
    const stunnel = await startStunnel(pair, dir, pki);
    await startTargets(pair.b);
    await sleep(1000);
    get('ztunnel').memory.idleFreshMb = [rssMb(ztunnelA.proc.pid), rssMb(ztunnelB.proc.pid)];
    get('stunnel').memory.idleFreshMb = [rssMb(stunnel.client.proc.pid), rssMb(stunnel.server.proc.pid)];
    const mark = async (after: string) => {
      const ztunnelRss = [rssMb(ztunnelA.proc.pid), rssMb(ztunnelB.proc.pid)] as const;
      const stunnelRss = [rssMb(stunnel.client.proc.pid), rssMb(stunnel.server.proc.pid)] as const;
      const ztunnelHeap = heapProbe ? ([await probeHeap(pair.a, ztunnelA), await probeHeap(pair.b, ztunnelB)] as const) : undefined;
      timeline.push({ after, ztunnel: ztunnelRss, stunnel: stunnelRss, ...(ztunnelHeap ? { ztunnelHeap } : {}) });
    };
    await mark('start');

    // The mesh path must really be HBONE (mutual_tls), not a passthrough: check ztunnel A's counters.
    const probe = await connRateProbe(pair.a, endpoint('ztunnel', 'echo', pair.b));
    const metrics = await ztunnelMetrics(pair.a);
    const tunnelled = metricTotal(metrics, 'istio_tcp_connections_opened_total', 'reporter="source"', 'connection_security_policy="mutual_tls"', 'destination_workload="server"');
    if (tunnelled < probe) throw new Error(`ztunnel A counted ${tunnelled} mutual_tls connections to "server" after ${probe} probe connections: the mesh path is not HBONE`);
    process.stderr.write(`mesh path check: ${probe} connections, ${tunnelled} counted by ztunnel A as mutual_tls to server\n`);

    const proxiesOf = (p: PathName): readonly Child[] => (p === 'ztunnel' ? [ztunnelA, ztunnelB] : p === 'stunnel' ? [stunnel.client, stunnel.server] : []);

    for (let pass = 1; pass <= rounds; pass++) {
      for (const p of PATHS) {
        await step(get(p), `throughput ${pass}/${rounds}: ${p}`, async () => {
          const measured = await iperf(pair.a, endpoint(p, 'iperf', pair.b), proxiesOf(p));
          get(p).throughputRounds.push(measured);
          return `${measured.gbps.toFixed(2)} Gbit/s, proxy CPU ${measured.proxyCpuSecondsPerGB} s/GB`;
        });
      }
    }
    await mark('throughput');
    for (const result of results.values()) {
      const sorted = [...result.throughputRounds].sort((x, y) => x.gbps - y.gbps);
      const median = sorted[Math.floor((sorted.length - 1) / 2)];
      if (median) result.throughput = median;
    }

    for (const p of PATHS) {
      await step(get(p), `latency: ${p}`, async () => {
        const r = (get(p).latency = await latency(pair.a, endpoint(p, 'echo', pair.b)));
        return `p50 ${r.p50Us} µs, p99 ${r.p99Us} µs`;
      });
    }
    await mark('latency');

    for (const p of PATHS) {
      await step(get(p), `new connections: ${p}`, async () => {
        const r = (get(p).connections = await connRate(pair.a, endpoint(p, 'echo', pair.b)));
        return `${r.perSecond}/s, p99 ${r.p99Us} µs, ${r.errors} errors`;
      });
      await sleep(500);
    }

    await sleep(2000);
    await mark('connections');
    get('ztunnel').memory.idleAfterLoadMb = [rssMb(ztunnelA.proc.pid), rssMb(ztunnelB.proc.pid)];
    get('stunnel').memory.idleAfterLoadMb = [rssMb(stunnel.client.proc.pid), rssMb(stunnel.server.proc.pid)];

    // A stunnel process holds two sockets per connection, a ztunnel about one (the tunnels share a
    // few HTTP/2 connections); without CAP_SYS_RESOURCE the hard open-files limit caps stunnel's share:
    // stunnel itself refuses clients beyond 125/256 of its open-files limit ("too many clients").
    const stunnelMax = Math.floor((openFilesHardLimit() * 125) / 256) - 10;
    for (const p of ['ztunnel', 'stunnel'] as const) {
      const proxies = (p === 'ztunnel' ? [ztunnelA, ztunnelB] : [stunnel.client, stunnel.server]) as [Child, Child];
      const count = p === 'stunnel' ? Math.min(idleConnections, stunnelMax) : idleConnections;
      await step(get(p), `${count} idle connections: ${p}`, async () => {
        const m = get(p).memory;
        const probe = heapProbe && p === 'ztunnel' ? async () => [await probeHeap(pair.a, ztunnelA), await probeHeap(pair.b, ztunnelB)] as const : undefined;
        await holdIdle(pair.a, endpoint(p, 'echo', pair.b), proxies, count, m, probe);
        return `opened in ${m.heldOpenSeconds} s; RSS ${m.heldMb?.join(' / ')} MB; after close ${m.afterHeldMb?.join(' / ')} MB`;
      });
      await mark(`${p} idle connections closed`);
    }
  } finally {
    await cleanup();
    rmSync(dir, { recursive: true, force: true });
  }
  load.after = round(loadavg()[0] ?? 0, 2);
  report(results, (Date.now() - started) / 1000);
  if ([...results.values()].some((r) => r.errors.length > 0)) process.exitCode = 1;
}

/** A few connections through the path; returns how many completed (throws if any failed). */
async function connRateProbe(a: BenchNode, target: { host: string; port: number }): Promise<number> {
  const child = start('probe client', a, process.execPath, [
    here('./conn-client.js'), 'rate', '--host', target.host, '--port', String(target.port),
    '--duration', '0.3', '--warmup', '0', '--concurrency', '2', '--size', '64',
  ]);
  const r = await finish<ConnRateReport>(child, 15_000);
  if (r.errors > 0 || r.count === 0) throw new Error(`probe through ${target.host}:${target.port}: ${r.count} ok, ${r.errors} errors: ${r.firstError ?? ''}`);
  return r.count;
}

// ───────────────────────── report ─────────────────────────

interface Row {
  readonly metric: string;
  readonly ztunnel: string;
  readonly direct: string;
  readonly stunnel: string;
  readonly goal: string;
  readonly met: string;
}

const GOALS = { idleRssMb: 100, heldRssMb: 300, p99AddedVsStunnel: 1.5 } as const;

function report(results: ReadonlyMap<PathName, PathResult>, seconds: number): void {
  const z = results.get('ztunnel')!;
  const d = results.get('direct')!;
  const s = results.get('stunnel')!;
  const fmt = (v: number | undefined, digits = 0) => (v === undefined || Number.isNaN(v) ? '—' : v.toFixed(digits));
  const pairMb = (v: readonly [number, number] | undefined) => (v ? `${v[0].toFixed(0)} / ${v[1].toFixed(0)}` : '—');
  const yesNo = (ok: boolean | undefined) => (ok === undefined ? '—' : ok ? 'yes' : 'NO');
  const added = (r: PathResult) => (r.latency && d.latency ? r.latency.p99Us - d.latency.p99Us : undefined);
  const zAdded = added(z);
  const sAdded = added(s);
  const maxOf = (v: readonly [number, number] | undefined) => (v ? Math.max(...v) : undefined);
  const under = (v: number | undefined, limit: number) => (v === undefined ? undefined : v < limit);
  const heldCell = (m: MemoryResult) => `${pairMb(m.heldMb)}${m.heldMb && m.heldCount !== idleConnections ? ` (${m.heldCount?.toLocaleString('en')} conns)` : ''}`;

  const rows: Row[] = [
    {
      metric: `throughput, 1 stream (Gbit/s)`,
      ztunnel: fmt(z.throughput?.gbps, 2), direct: fmt(d.throughput?.gbps, 2), stunnel: fmt(s.throughput?.gbps, 2),
      goal: `≥ stunnel`,
      met: yesNo(z.throughput && s.throughput ? z.throughput.gbps >= s.throughput.gbps : undefined),
    },
    {
      metric: 'proxy CPU (s/GB, both proxies)',
      ztunnel: fmt(z.throughput?.proxyCpuSecondsPerGB, 2), direct: '—', stunnel: fmt(s.throughput?.proxyCpuSecondsPerGB, 2), goal: '', met: '',
    },
    {
      metric: `req/resp p50 (µs) @${rate}/s`,
      ztunnel: fmt(z.latency?.p50Us), direct: fmt(d.latency?.p50Us), stunnel: fmt(s.latency?.p50Us), goal: '', met: '',
    },
    {
      metric: `req/resp p99 (µs) @${rate}/s`,
      ztunnel: fmt(z.latency?.p99Us), direct: fmt(d.latency?.p99Us), stunnel: fmt(s.latency?.p99Us), goal: '', met: '',
    },
    {
      metric: 'p99 added vs direct (µs)',
      ztunnel: fmt(zAdded), direct: d.latency ? '0' : '—', stunnel: fmt(sAdded),
      goal: `≤ ${GOALS.p99AddedVsStunnel} × stunnel${sAdded === undefined ? '' : ` (${fmt(GOALS.p99AddedVsStunnel * sAdded)})`}`,
      met: yesNo(zAdded !== undefined && sAdded !== undefined ? zAdded <= GOALS.p99AddedVsStunnel * sAdded : undefined),
    },
    {
      metric: `new connections/s (${connConcurrency} concurrent)`,
      ztunnel: fmt(z.connections?.perSecond), direct: fmt(d.connections?.perSecond), stunnel: fmt(s.connections?.perSecond), goal: '', met: '',
    },
    {
      metric: 'connection p99, connect→echo→close (ms)',
      ztunnel: fmt(msOf(z.connections?.p99Us), 2), direct: fmt(msOf(d.connections?.p99Us), 2), stunnel: fmt(msOf(s.connections?.p99Us), 2), goal: '', met: '',
    },
    {
      metric: 'RSS idle, fresh (MB, A / B)',
      ztunnel: pairMb(z.memory.idleFreshMb), direct: '—', stunnel: pairMb(s.memory.idleFreshMb),
      goal: `< ${GOALS.idleRssMb} each`, met: yesNo(under(maxOf(z.memory.idleFreshMb), GOALS.idleRssMb)),
    },
    {
      metric: 'RSS idle, after the loads (MB, A / B)',
      ztunnel: pairMb(z.memory.idleAfterLoadMb), direct: '—', stunnel: pairMb(s.memory.idleAfterLoadMb),
      goal: `< ${GOALS.idleRssMb} each`, met: yesNo(under(maxOf(z.memory.idleAfterLoadMb), GOALS.idleRssMb)),
    },
    {
      metric: `RSS, ${idleConnections.toLocaleString('en')} idle conns (MB, A / B)`,
      ztunnel: heldCell(z.memory), direct: '—', stunnel: heldCell(s.memory),
      goal: `< ${GOALS.heldRssMb} each`, met: yesNo(under(maxOf(z.memory.heldMb), GOALS.heldRssMb)),
    },
    {
      metric: `  time to open them (s)`,
      ztunnel: fmt(z.memory.heldOpenSeconds, 1), direct: '—', stunnel: fmt(s.memory.heldOpenSeconds, 1), goal: '', met: '',
    },
    {
      metric: '  RSS 3 s after they closed (MB, A / B)',
      ztunnel: pairMb(z.memory.afterHeldMb), direct: '—', stunnel: pairMb(s.memory.afterHeldMb), goal: '', met: '',
    },
  ];

  const header = ['metric', 'ztunnel A→HBONE→B', 'direct TCP', 'stunnel pair', 'goal', 'met'];
  const table = [header, ...rows.map((r) => [r.metric, r.ztunnel, r.direct, r.stunnel, r.goal, r.met])];
  const widths = header.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((cell, i) => (i === 0 || i >= 4 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ').trimEnd();
  const cpu = cpus();
  const machine = { node: process.version, cpu: cpu[0]?.model ?? 'unknown', cores: cpu.length, platform: `${platform()} ${osRelease()}` };
  const date = new Date().toISOString();

  console.log(`\nL4 benchmark — ${date} — node ${machine.node}, ${machine.cpu} × ${machine.cores}, ${seconds.toFixed(0)} s`);
  console.log(`two netns nodes over a veth pair; throughput: iperf3 -t ${iperfSeconds}, 1 stream, median of ${rounds}; latency: 64 B echo at ${rate}/s for ${latencySeconds} s (+${latencyWarmup} s warm-up), from scheduled send time; connections: ${connConcurrency} workers × ${connSeconds} s, 64 B round trip each\n`);
  console.log(line(table[0]!));
  console.log(widths.map((w) => '─'.repeat(w)).join('  '));
  for (const row of table.slice(1)) console.log(line(row));
  for (const [p, r] of results) for (const e of r.errors) console.log(`  ${p}: ${e}`);
  for (const [p, r] of results) if (r.connections?.errors) console.log(`  ${p}: ${r.connections.errors} connection errors, first: ${r.connections.firstError}`);
  console.log(`\nRSS after each phase (MB), ztunnel A / B; stunnel client / server:`);
  for (const t of timeline) {
    const heap = t.ztunnelHeap?.map((h) => `heapUsed ${h.before.heapUsed}→${h.afterGc.heapUsed} after GC, heapTotal ${h.afterGc.heapTotal}, external ${h.afterGc.external}, rss→${h.afterGc.rss}`);
    console.log(`  ${t.after.padEnd(30)} ${pairMb(t.ztunnel).padStart(11)};  ${heap ? `${pairMb(t.stunnel).padEnd(11)}  ztunnel A: ${heap[0]}; B: ${heap[1]}` : pairMb(t.stunnel)}`);
  }
  if (z.memory.heldHeap) {
    const h = z.memory.heldHeap.map((x) => `heapUsed ${x.before.heapUsed}→${x.afterGc.heapUsed} after GC, heapTotal ${x.afterGc.heapTotal}, external ${x.afterGc.external}, rss ${x.before.rss}→${x.afterGc.rss}`);
    console.log(`  with ${z.memory.heldCount} idle connections open: ztunnel A: ${h[0]}; B: ${h[1]}`);
  }
  console.log(`load average (1 min): ${load.before} before, ${load.after} after, on ${cpu.length} cores${Math.max(load.before ?? 0, load.after ?? 0) > cpu.length ? ' — the machine was busy with other work; treat the figures as noisy' : ''}`);

  if (values['no-write']) return;
  const out = {
    date,
    machine,
    loadAverage: load,
    seconds: round(seconds, 1),
    settings: {
      topology: 'netns A (10.88.0.1) ─veth─ netns B (10.88.0.2); ztunnel dedicated mode, iptables REDIRECT in A',
      iperfSeconds,
      rounds,
      latency: { rate, seconds: latencySeconds, warmupSeconds: latencyWarmup, messageBytes: 64 },
      connections: { concurrency: connConcurrency, seconds: connSeconds, messageBytes: 64 },
      idleConnections,
      tls: { version: 'TLSv1.3', ciphersuites: TLS_CIPHERS },
    },
    goals: GOALS,
    table: rows,
    rssTimelineMb: timeline,
    results: Object.fromEntries([...results].map(([p, r]) => [p, { ...r, throughputRoundsGbps: r.throughputRounds.map((t) => round(t.gbps, 3)) }])),
  };
  mkdirSync(resultsDir, { recursive: true });
  const text = `${JSON.stringify(out, null, 2)}\n`;
  const dated = join(resultsDir, `l4-${date.replace(/\.\d+Z$/, 'Z').replace(/:/g, '-')}.json`);
  writeFileSync(dated, text);
  writeFileSync(join(resultsDir, 'l4-latest.json'), text);
  console.log(`\nwrote ${dated} and ${join(resultsDir, 'l4-latest.json')}`);
}

const msOf = (us: number | undefined) => (us === undefined ? undefined : us / 1000);

await main().catch(async (err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  await cleanup();
  process.exitCode = 1;
});

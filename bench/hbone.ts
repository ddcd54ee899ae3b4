/**
 * HBONE end-to-end benchmark: the same load through three paths, side by side, in one run.
 *
 *   direct   load ─────────────────────────────────────────────────▶ target
 *   stunnel  load ─▶ stunnel (client, TLS 1.3 + client cert) ─▶ stunnel (server, verify=2) ─▶ target
 *   hbone    load ─▶ hbone-proxy client ══ HTTP/2 CONNECT over mTLS ══▶ hbone-proxy server ─▶ target
 *
 * Loads: iperf3 single-stream throughput (target: `iperf3 -s`), and fixed-rate request/response
 * latency (bench/latency-client.ts against bench/echo-server.ts). Every process is separate and
 * binds 127.0.0.1; each path is started fresh for each load and stopped after it. Prints a table
 * and writes bench/results/hbone-<date>.json and bench/results/latest.json. See bench/README.md.
 *
 *   node dist/bench/hbone.js [--only direct,stunnel,node-tcp,hbone] [--iperf-seconds 8] [--rounds 3]
 *                            [--latency-seconds 10] [--cpu-prof-dir DIR] [--no-write]
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir, release as osRelease, platform } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { Http2Settings, TLS_CIPHERS } from '../src/hbone/settings.ts';
import { CertificateAuthority } from '../src/identity/ca.ts';
import { formatSpiffeId, spiffeId } from '../src/identity/spiffe.ts';
import { cleanupOnExit, listening, readyLine, start, stop, stopAll, withTimeout, type Child } from './children.ts';
import { cpuSeconds, freePort, iperfResult, jsonReady, printProfiles, round, STUNNEL_GLOBAL, stunnelConfig, stunnelTls, writeCertificates, type CertFiles, type ThroughputResult } from './common.ts';
import type { LatencyReport } from './latency-client.ts';

const PATHS = ['direct', 'stunnel', 'node-tcp', 'hbone'] as const;
type PathName = (typeof PATHS)[number];

const { values } = parseArgs({
  options: {
    only: { type: 'string', default: PATHS.join(',') },
    'iperf-seconds': { type: 'string', default: '8' },
    rounds: { type: 'string', default: '3' },
    'latency-seconds': { type: 'string', default: '10' },
    'latency-warmup': { type: 'string', default: '1' },
    rate: { type: 'string', default: '1000' },
    'cpu-prof-dir': { type: 'string' },
    'no-write': { type: 'boolean', default: false },
  },
});
const selected = values.only.split(',').map((p) => p.trim()) as PathName[];
for (const p of selected) if (!PATHS.includes(p)) throw new Error(`--only: unknown path "${p}" (known: ${PATHS.join(', ')})`);
const iperfSeconds = Number(values['iperf-seconds']);
/** Throughput rounds; the paths take turns in each round and the median round is reported. */
const rounds = Math.max(1, Math.floor(Number(values.rounds)));
const latencySeconds = Number(values['latency-seconds']);
const latencyWarmup = Number(values['latency-warmup']);
const rate = Number(values.rate);

const STUNNEL = '/usr/bin/stunnel4';
const IPERF3 = '/usr/bin/iperf3';
const HOST = '127.0.0.1';
const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));
const resultsDir = fileURLToPath(new URL('../../bench/results/', import.meta.url));

// ───────────────────────── child processes: every one is tracked and killed ─────────────────────────

cleanupOnExit();

// ───────────────────────── certificates ─────────────────────────

const TRUST_DOMAIN = 'cluster.local';
const clientId = spiffeId(TRUST_DOMAIN, 'bench', 'client');
const serverId = spiffeId(TRUST_DOMAIN, 'bench', 'server');

async function writeBenchCertificates(dir: string): Promise<{ client: CertFiles; server: CertFiles; rootsPem: string }> {
  return writeCertificates(CertificateAuthority.generate(TRUST_DOMAIN), dir, { client: clientId, server: serverId });
}

// ───────────────────────── the three paths ─────────────────────────

interface OpenPath {
  /** Where the load generator connects. */
  readonly port: number;
  readonly children: readonly Child[];
}

interface PathContext {
  readonly dir: string;
  readonly certs: Awaited<ReturnType<typeof writeCertificates>>;
  /** Set to profile the proxies of this run. */
  readonly cpuProfDir?: string;
  readonly label: string;
}

async function openPath(path: PathName, targetPort: number, ctx: PathContext): Promise<OpenPath> {
  switch (path) {
    case 'direct':
      return { port: targetPort, children: [] };
    case 'stunnel':
      return openStunnel(targetPort, ctx);
    case 'node-tcp':
      return openNodeTcp(targetPort);
    case 'hbone':
      return openHbone(targetPort, ctx);
  }
}

async function openStunnel(targetPort: number, ctx: PathContext): Promise<OpenPath> {
  const common = STUNNEL_GLOBAL;
  const tls = stunnelTls(ctx.certs.rootsPem);
  const serverPort = await freePort();
  const serverConf = join(ctx.dir, `stunnel-server-${ctx.label}.conf`);
  writeFileSync(serverConf, stunnelConfig({
    ...common,
    '[hbone-bench-server]': '',
    accept: `${HOST}:${serverPort}`,
    connect: `${HOST}:${targetPort}`,
    cert: ctx.certs.server.certPem,
    key: ctx.certs.server.keyPem,
    ...tls,
  }));
  const server = start('stunnel server', STUNNEL, [serverConf]);
  await listening(server, serverPort);

  const clientPort = await freePort();
  const clientConf = join(ctx.dir, `stunnel-client-${ctx.label}.conf`);
  writeFileSync(clientConf, stunnelConfig({
    ...common,
    '[hbone-bench-client]': '',
    client: 'yes',
    accept: `${HOST}:${clientPort}`,
    connect: `${HOST}:${serverPort}`,
    cert: ctx.certs.client.certPem,
    key: ctx.certs.client.keyPem,
    ...tls,
  }));
  const client = start('stunnel client', STUNNEL, [clientConf]);
  await listening(client, clientPort);
  return { port: clientPort, children: [client, server] };
}

async function openHbone(targetPort: number, ctx: PathContext): Promise<OpenPath> {
  const node = (name: string) => [
    ...(ctx.cpuProfDir ? ['--cpu-prof', `--cpu-prof-dir=${ctx.cpuProfDir}`, `--cpu-prof-name=hbone-${name}-${ctx.label}.cpuprofile`] : []),
    here('./hbone-proxy.js'),
  ];
  const server = start('hbone server', process.execPath, [...node('server'), 'server', '--cert', ctx.certs.server.json]);
  const serverPort = await readyLine(server, jsonReady);
  const client = start('hbone client', process.execPath, [
    ...node('client'), 'client', '--cert', ctx.certs.client.json,
    '--hbone', `${HOST}:${serverPort}`, '--target', `${HOST}:${targetPort}`, '--expect', formatSpiffeId(serverId),
  ]);
  const clientPort = await readyLine(client, jsonReady);
  return { port: clientPort, children: [client, server] };
}

/** Two Node processes relaying plain TCP with the same relay: what Node alone adds, without TLS or HTTP/2. */
async function openNodeTcp(targetPort: number): Promise<OpenPath> {
  const server = start('node-tcp server', process.execPath, [here('./hbone-proxy.js'), 'tcp', '--target', `${HOST}:${targetPort}`]);
  const serverPort = await readyLine(server, jsonReady);
  const client = start('node-tcp client', process.execPath, [here('./hbone-proxy.js'), 'tcp', '--target', `${HOST}:${serverPort}`]);
  const clientPort = await readyLine(client, jsonReady);
  return { port: clientPort, children: [client, server] };
}

async function closePath(open: OpenPath): Promise<void> {
  for (const child of open.children) await stop(child); // client first, then server
}

// ───────────────────────── loads ─────────────────────────

async function iperf(port: number, path: OpenPath): Promise<ThroughputResult> {
  const cpuBefore = path.children.map((c) => cpuSeconds(c.proc.pid));
  const child = start('iperf3 client', IPERF3, ['-c', HOST, '-p', String(port), '-t', String(iperfSeconds), '-J', '--connect-timeout', '5000']);
  let out = '';
  child.proc.stdout?.setEncoding('utf8').on('data', (t: string) => (out += t));
  const code = await withTimeout(child.exited, (iperfSeconds + 20) * 1000, 'iperf3 client').catch(async (err: unknown) => {
    await stop(child, 500);
    throw err;
  });
  const proxyCpuSeconds = path.children.reduce((sum, c, i) => sum + cpuSeconds(c.proc.pid) - (cpuBefore[i] ?? 0), 0);
  return iperfResult(code, out, child.stderr(), proxyCpuSeconds);
}

async function latency(port: number): Promise<LatencyReport> {
  const child = start('latency client', process.execPath, [
    here('./latency-client.js'), '--port', String(port), '--rate', String(rate),
    '--duration', String(latencySeconds), '--warmup', String(latencyWarmup), '--size', '64',
  ]);
  let out = '';
  child.proc.stdout?.setEncoding('utf8').on('data', (t: string) => (out += t));
  const code = await withTimeout(child.exited, (latencyWarmup + latencySeconds + 20) * 1000, 'latency client').catch(async (err: unknown) => {
    await stop(child, 500);
    throw err;
  });
  const parsed = JSON.parse(out.trim().split('\n').pop() ?? '{}') as LatencyReport & { error?: string };
  if (code !== 0 || parsed.error) throw new Error(`latency client failed (exit ${code}): ${parsed.error ?? child.stderr().trim()}`);
  return parsed;
}

// ───────────────────────── profiles ─────────────────────────

// ───────────────────────── run ─────────────────────────

interface PathResult {
  /** The median of the rounds, by Gbit/s. */
  throughput?: ThroughputResult;
  throughputRounds: ThroughputResult[];
  latency?: LatencyReport;
  errors: string[];
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ambient-bench-'));
  const results = new Map<PathName, PathResult>(selected.map((p) => [p, { throughputRounds: [], errors: [] }]));
  try {
    const certs = await writeBenchCertificates(dir);

    // Throughput: iperf3 server as the target.
    const iperfPort = await freePort();
    const iperfServer = start('iperf3 server', IPERF3, ['-s', '-B', HOST, '-p', String(iperfPort), '--forceflush']);
    await readyLine(iperfServer, (line) => (line.includes('Server listening') ? true : undefined));
    for (let pass = 1; pass <= rounds; pass++) {
      for (const path of selected) {
        const result = results.get(path)!;
        const cpuProfDir = path === 'hbone' && values['cpu-prof-dir'] ? values['cpu-prof-dir'] : undefined;
        if (cpuProfDir) mkdirSync(cpuProfDir, { recursive: true });
        process.stderr.write(`throughput ${pass}/${rounds}: ${path} …`);
        let open: OpenPath | undefined;
        try {
          open = await openPath(path, iperfPort, { dir, certs, label: `iperf-${pass}`, ...(cpuProfDir ? { cpuProfDir } : {}) });
          const measured = await iperf(open.port, open);
          result.throughputRounds.push(measured);
          process.stderr.write(` ${measured.gbps.toFixed(2)} Gbit/s, proxy CPU ${measured.proxyCpuSecondsPerGB} s/GB\n`);
        } catch (err) {
          result.errors.push(`throughput round ${pass}: ${(err as Error).message}`);
          process.stderr.write(` failed: ${(err as Error).message}\n`);
        } finally {
          if (open) await closePath(open);
        }
      }
    }
    for (const result of results.values()) {
      const sorted = [...result.throughputRounds].sort((a, b) => a.gbps - b.gbps);
      const median = sorted[Math.floor((sorted.length - 1) / 2)];
      if (median) result.throughput = median;
    }
    await stop(iperfServer);

    // Latency: echo server as the target.
    const echo = start('echo server', process.execPath, [here('./echo-server.js')]);
    const echoPort = await readyLine(echo, jsonReady);
    for (const path of selected) {
      const result = results.get(path)!;
      process.stderr.write(`latency: ${path} …`);
      let open: OpenPath | undefined;
      try {
        open = await openPath(path, echoPort, { dir, certs, label: 'echo' });
        result.latency = await latency(open.port);
        process.stderr.write(` p50 ${result.latency.p50Us} µs, p99 ${result.latency.p99Us} µs\n`);
      } catch (err) {
        result.errors.push(`latency: ${(err as Error).message}`);
        process.stderr.write(` failed: ${(err as Error).message}\n`);
      } finally {
        if (open) await closePath(open);
      }
    }
    await stop(echo);
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }

  report(results);
  if (values['cpu-prof-dir']) printProfiles(values['cpu-prof-dir']);
  if ([...results.values()].some((r) => r.errors.length > 0)) process.exitCode = 1;
}

function report(results: ReadonlyMap<PathName, PathResult>): void {
  const direct = results.get('direct');
  const stunnel = results.get('stunnel');
  const ratio = (a: number | undefined, b: number | undefined) => (a !== undefined && b ? a / b : undefined);
  const rows = [...results].map(([path, r]) => ({
    path,
    throughputGbps: r.throughput ? round(r.throughput.gbps, 3) : null,
    p50Us: r.latency?.p50Us ?? null,
    p99Us: r.latency?.p99Us ?? null,
    p999Us: r.latency?.p999Us ?? null,
    vsDirect: nullable(ratio(r.throughput?.gbps, direct?.throughput?.gbps), 3),
    vsStunnel: nullable(ratio(r.throughput?.gbps, stunnel?.throughput?.gbps), 3),
    p99AddedUs: r.latency && direct?.latency ? round(r.latency.p99Us - direct.latency.p99Us, 1) : null,
    proxyCpuSecondsPerGB: r.throughput && r.throughput.proxyCpuSeconds > 0 ? r.throughput.proxyCpuSecondsPerGB : null,
    throughput: r.throughput ?? null,
    throughputRoundsGbps: r.throughputRounds.map((t) => round(t.gbps, 3)),
    latency: r.latency ?? null,
    errors: r.errors,
  }));

  const fmt = (v: number | null, digits: number) => (v === null ? '—' : v.toFixed(digits));
  const table = [
    ['path', 'Gbit/s', 'p50 µs', 'p99 µs', 'p99.9 µs', '×direct', '×stunnel', 'p99 +µs vs direct', 'proxy CPU s/GB'],
    ...rows.map((r) => [
      r.path, fmt(r.throughputGbps, 2), fmt(r.p50Us, 0), fmt(r.p99Us, 0), fmt(r.p999Us, 0),
      fmt(r.vsDirect, 2), fmt(r.vsStunnel, 2), fmt(r.p99AddedUs, 0), fmt(r.proxyCpuSecondsPerGB, 2),
    ]),
  ];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  const cpu = cpus();
  const machine = { node: process.version, cpu: cpu[0]?.model ?? 'unknown', cores: cpu.length, platform: `${platform()} ${osRelease()}` };
  const date = new Date().toISOString();

  console.log(`\nHBONE benchmark — ${date} — node ${machine.node}, ${machine.cpu} × ${machine.cores}`);
  console.log(`throughput: iperf3 -t ${iperfSeconds}, 1 stream, median of ${rounds} round(s); latency: 64 B echo at ${rate}/s for ${latencySeconds} s (+${latencyWarmup} s warm-up), from scheduled send time\n`);
  console.log(line(table[0]!));
  console.log(widths.map((w) => '─'.repeat(w)).join('  '));
  for (const row of table.slice(1)) console.log(line(row));
  for (const r of rows) for (const e of r.errors) console.log(`  ${r.path}: ${e}`);

  const previous = readPrevious();
  if (previous) {
    console.log(`\nprevious run (${previous.date}, node ${previous.machine?.node ?? '?'}):`);
    for (const r of rows) {
      const before = previous.rows?.find((p) => p.path === r.path);
      if (!before) continue;
      console.log(`  ${r.path.padEnd(8)} Gbit/s ${fmt(before.throughputGbps, 2)} → ${fmt(r.throughputGbps, 2)}   p99 µs ${fmt(before.p99Us, 0)} → ${fmt(r.p99Us, 0)}`);
    }
  }

  if (values['no-write']) return;
  const out = {
    date,
    machine,
    settings: {
      iperfSeconds,
      rounds,
      latency: { rate, seconds: latencySeconds, warmupSeconds: latencyWarmup, messageBytes: 64 },
      http2: { streamWindow: Http2Settings.streamWindow, connectionWindow: Http2Settings.connectionWindow, maxFrameSize: Http2Settings.maxFrameSize },
      tls: { version: 'TLSv1.3', ciphersuites: TLS_CIPHERS },
    },
    rows,
  };
  mkdirSync(resultsDir, { recursive: true });
  const text = `${JSON.stringify(out, null, 2)}\n`;
  const dated = join(resultsDir, `hbone-${date.replace(/\.\d+Z$/, 'Z').replace(/:/g, '-')}.json`);
  writeFileSync(dated, text);
  writeFileSync(join(resultsDir, 'latest.json'), text);
  console.log(`\nwrote ${dated} and ${join(resultsDir, 'latest.json')}`);
}

function readPrevious(): { date?: string; machine?: { node?: string }; rows?: Array<{ path: string; throughputGbps: number | null; p99Us: number | null }> } | undefined {
  try {
    return JSON.parse(readFileSync(join(resultsDir, 'latest.json'), 'utf8')) as ReturnType<typeof readPrevious>;
  } catch {
    return undefined;
  }
}

const nullable = (v: number | undefined, digits: number) => (v === undefined ? null : round(v, digits));

await main().catch(async (err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  await stopAll();
  process.exitCode = 1;
});

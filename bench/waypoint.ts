/**
 * Waypoint benchmark: 1 KiB HTTP/1.1 GETs (wrk, keep-alive) through five paths, side by side, in one run,
 * at 1, 16 and 64 connections:
 *
 *   direct      wrk ─────────────────────────────────────────────────────────────────────────▶ backend
 *   nginx       wrk ─▶ nginx (HTTP reverse proxy, upstream keepalive) ─────────────────────────▶ backend
 *   nginx-mtls  wrk ─▶ stunnel client ══mTLS══▶ nginx (ssl_verify_client, proxy_ssl + keepalive) ══mTLS══▶ stunnel server ─▶ backend
 *   node-http   wrk ─▶ node:http server + client (plain reverse proxy, node-http-proxy.ts) ────────▶ backend
 *   hbone-l4    wrk ─▶ hbone-proxy client ══HBONE══▶ hbone-proxy server ─▶ backend        (the tunnel ends alone)
 *   waypoint    wrk ─▶ hbone-proxy client ══HBONE══▶ ambientd waypoint ══HBONE══▶ hbone-proxy server ─▶ backend
 *
 * Two rows bound what the waypoint path can reach on the machine, and the report gives both as ratios to
 * nginx: node-http is the floor cost of any proxy built on node's HTTP modules (no TLS, no log), and
 * hbone-l4 is the ceiling of the waypoint path, which runs through the same two HBONE ends on the same CPU.
 *
 * Both proxies write an access log line per request, buffered and written at least once a second (nginx
 * `buffer=32k flush=1s`; the waypoint's ACCESS_LOG_FLUSH_INTERVAL, 1s by default).
 * The backend is nginx answering a 1 KiB body from memory. Every process is a child; with --pin (the
 * default on a machine with 2+ cores) the proxy under test (nginx or the waypoint) runs alone on the
 * last CPU and everything else (wrk, the backend, the HBONE / stunnel ends) on the others. Prints a table
 * (with the issue's goal figures) and writes bench/results/waypoint-<date>.json and waypoint-latest.json.
 *
 * Every path is started first and stays up; then the cells are measured in rounds (each round takes every
 * path at each connection count in turn), each row shows the median round, and the goal ratios are
 * medians of ratios within a round, so a machine whose speed drifts affects every path alike.
 *
 *   node dist/bench/waypoint.js [--only direct,nginx,nginx-mtls,node-http,hbone-l4,waypoint] [--connections 1,16,64]
 *                               [--seconds 5] [--warmup 1] [--rounds 3] [--no-pin] [--cpu-prof-dir DIR] [--no-write]
 */
import { mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, chmodSync, closeSync } from 'node:fs';
import { cpus, loadavg, release as osRelease, platform, tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { TLS_CIPHERS } from '../src/hbone/settings.ts';
import { WAYPOINT_NODE_FLAGS } from '../src/waypoint/config.ts';
import { CertificateAuthority } from '../src/identity/ca.ts';
import { formatSpiffeId, spiffeId } from '../src/identity/spiffe.ts';
import { cleanupOnExit, listening, readyLine, running, start, stop, stopAll, withTimeout, type Child } from './children.ts';
import { cpuSeconds, freePort, jsonReady, printProfiles, round, STUNNEL_GLOBAL, stunnelConfig, stunnelTls, writeCertificates } from './common.ts';

const PATHS = ['direct', 'nginx', 'nginx-mtls', 'node-http', 'hbone-l4', 'waypoint'] as const;
type PathName = (typeof PATHS)[number];

const { values } = parseArgs({
  options: {
    only: { type: 'string', default: PATHS.join(',') },
    connections: { type: 'string', default: '1,16,64' },
    seconds: { type: 'string', default: '5' },
    warmup: { type: 'string', default: '1' },
    rounds: { type: 'string', default: '3' },
    'no-pin': { type: 'boolean', default: false },
    'cpu-prof-dir': { type: 'string' },
    'no-write': { type: 'boolean', default: false },
  },
});
const selected = values.only.split(',').map((p) => p.trim()) as PathName[];
for (const p of selected) if (!PATHS.includes(p)) throw new Error(`--only: unknown path "${p}" (known: ${PATHS.join(', ')})`);
const connectionCounts = values.connections.split(',').map(Number);
if (connectionCounts.some((n) => !Number.isInteger(n) || n < 1)) throw new Error('--connections: positive integers, comma-separated');
const seconds = Number(values.seconds);
const warmup = Number(values.warmup);
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error('--rounds: a positive integer');
const cores = cpus().length;
const pin = !values['no-pin'] && cores >= 2;
/** The proxy under test gets the last CPU to itself; everything else shares the rest. */
const CPU = pin ? { proxy: String(cores - 1), rest: cores === 2 ? '0' : `0-${cores - 2}` } : undefined;

const NGINX = '/usr/sbin/nginx';
const WRK = '/usr/bin/wrk';
const STUNNEL = '/usr/bin/stunnel4';
const HOST = '127.0.0.1';
const BODY_BYTES = 1024;
const here = (file: string) => fileURLToPath(new URL(file, import.meta.url));
const resultsDir = fileURLToPath(new URL('../../bench/results/', import.meta.url));
const AMBIENTD = fileURLToPath(new URL('../src/cli/ambientd.js', import.meta.url));

const TRUST_DOMAIN = 'cluster.local';
const ids = { client: spiffeId(TRUST_DOMAIN, 'bench', 'client'), waypoint: spiffeId(TRUST_DOMAIN, 'bench', 'waypoint'), server: spiffeId(TRUST_DOMAIN, 'bench', 'server') };
const SERVICE = { vip: '10.96.0.1', port: 80, hostname: 'backend.bench.svc.cluster.local' };

cleanupOnExit();

// ───────────────────────── setup ─────────────────────────

interface Setup {
  readonly dir: string;
  readonly ca: CertificateAuthority;
  /** client (bench/client) and server (bench/waypoint): the downstream hop. */
  readonly inbound: Awaited<ReturnType<typeof writeCertificates>>;
  /** client (bench/waypoint) and server (bench/server): the upstream hop. */
  readonly outbound: Awaited<ReturnType<typeof writeCertificates>>;
  readonly backendPort: number;
}

interface OpenPath {
  readonly port: number;
  readonly children: readonly Child[];
  /** The process whose CPU time per request is reported (the proxy under test). */
  readonly measured: readonly Child[];
}

const opts = (cpu: 'proxy' | 'rest') => (CPU ? { cpus: CPU[cpu] } : {});

/** nginx as a child: one process (`master_process off`), as nobody, its files in `dir`. */
async function startNginx(name: string, dir: string, port: number, http: string, cpu: 'proxy' | 'rest'): Promise<Child> {
  const prefix = join(dir, name);
  mkdirSync(prefix, { recursive: true });
  chmodSync(prefix, 0o777);
  const conf = join(prefix, 'nginx.conf');
  writeFileSync(conf, `daemon off;
master_process off;
worker_processes 1;
pid ${prefix}/nginx.pid;
error_log ${prefix}/error.log warn;
events { worker_connections 4096; multi_accept on; }
http {
  client_body_temp_path ${prefix}/body; proxy_temp_path ${prefix}/proxy; fastcgi_temp_path ${prefix}/fastcgi;
  uwsgi_temp_path ${prefix}/uwsgi; scgi_temp_path ${prefix}/scgi;
  keepalive_requests 100000000;
  keepalive_timeout 75s;
  tcp_nodelay on;
${http}
}
`);
  const child = start(name, '/usr/bin/setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', NGINX, '-p', prefix, '-e', join(prefix, 'error.log'), '-c', conf], opts(cpu));
  await listening(child, port);
  return child;
}

async function startBackend(dir: string): Promise<{ port: number; child: Child }> {
  const port = await freePort();
  const body = 'x'.repeat(BODY_BYTES);
  const child = await startNginx('backend', dir, port, `  access_log off;
  server {
    listen ${HOST}:${port} backlog=4096;
    location / { default_type text/plain; return 200 "${body}"; }
  }`, 'rest');
  return { port, child };
}

async function openPath(path: PathName, s: Setup, label: string): Promise<OpenPath> {
  switch (path) {
    case 'direct':
      return { port: s.backendPort, children: [], measured: [] };
    case 'nginx': {
      const port = await freePort();
      const nginx = await startNginx(`nginx-${label}`, s.dir, port, `  access_log ${s.dir}/nginx-${label}/access.log combined buffer=32k flush=1s;
  upstream backend { server ${HOST}:${s.backendPort}; keepalive 128; keepalive_requests 100000000; }
  server {
    listen ${HOST}:${port} backlog=4096;
    location / {
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Request-Id $request_id;
      proxy_set_header X-Forwarded-Proto $scheme;
    }
  }`, 'proxy');
      return { port, children: [nginx], measured: [nginx] };
    }
    case 'nginx-mtls':
      return openNginxMtls(s, label);
    case 'node-http': {
      const child = start('node-http proxy', process.execPath, [...WAYPOINT_NODE_FLAGS, here('./node-http-proxy.js'), '--upstream', `${HOST}:${s.backendPort}`], opts('proxy'));
      return { port: await readyLine(child, jsonReady), children: [child], measured: [child] };
    }
    case 'hbone-l4': {
      const server = await hboneServer(s);
      const client = await hboneClient(s.inbound.client.json, server.port, `${HOST}:${s.backendPort}`, ids.server);
      return { port: client.port, children: [client.child, server.child], measured: [] };
    }
    case 'waypoint':
      return openWaypoint(s, label);
  }
}

async function openNginxMtls(s: Setup, label: string): Promise<OpenPath> {
  const tls = stunnelTls(s.inbound.rootsPem);
  // Upstream side: stunnel server terminating mTLS in front of the backend (the pod's ztunnel).
  const upstreamPort = await freePort();
  const serverConf = join(s.dir, `stunnel-server-${label}.conf`);
  writeFileSync(serverConf, stunnelConfig({ ...STUNNEL_GLOBAL, '[pod]': '', accept: `${HOST}:${upstreamPort}`, connect: `${HOST}:${s.backendPort}`, cert: s.outbound.server.certPem, key: s.outbound.server.keyPem, ...tls }));
  const server = start('stunnel server', STUNNEL, [serverConf], opts('rest'));
  await listening(server, upstreamPort);
  // nginx: mTLS listener, mTLS upstream with keepalive.
  const port = await freePort();
  const nginx = await startNginx(`nginx-mtls-${label}`, s.dir, port, `  access_log ${s.dir}/nginx-mtls-${label}/access.log combined buffer=32k flush=1s;
  upstream backend_tls { server ${HOST}:${upstreamPort}; keepalive 128; keepalive_requests 100000000; }
  server {
    listen ${HOST}:${port} ssl backlog=4096;
    ssl_protocols TLSv1.3;
    ssl_conf_command Ciphersuites ${TLS_CIPHERS};
    ssl_certificate ${s.inbound.server.certPem};
    ssl_certificate_key ${s.inbound.server.keyPem};
    ssl_client_certificate ${s.inbound.rootsPem};
    ssl_verify_client on;
    ssl_verify_depth 3;
    location / {
      proxy_pass https://backend_tls;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Request-Id $request_id;
      proxy_set_header X-Forwarded-Proto $scheme;
      proxy_ssl_protocols TLSv1.3;
      proxy_ssl_conf_command Ciphersuites ${TLS_CIPHERS};
      proxy_ssl_certificate ${s.outbound.client.certPem};
      proxy_ssl_certificate_key ${s.outbound.client.keyPem};
      proxy_ssl_session_reuse on;
    }
  }`, 'proxy');
  // Downstream side: stunnel client presenting the client's certificate (the client's ztunnel).
  const clientPort = await freePort();
  const clientConf = join(s.dir, `stunnel-client-${label}.conf`);
  writeFileSync(clientConf, stunnelConfig({ ...STUNNEL_GLOBAL, '[client]': '', client: 'yes', accept: `${HOST}:${clientPort}`, connect: `${HOST}:${port}`, cert: s.inbound.client.certPem, key: s.inbound.client.keyPem, ...tls }));
  const client = start('stunnel client', STUNNEL, [clientConf], opts('rest'));
  await listening(client, clientPort);
  return { port: clientPort, children: [client, nginx, server], measured: [nginx] };
}

async function hboneServer(s: Setup): Promise<{ port: number; child: Child }> {
  const child = start('hbone server', process.execPath, [here('./hbone-proxy.js'), 'server', '--cert', s.outbound.server.json], opts('rest'));
  return { port: await readyLine(child, jsonReady), child };
}

async function hboneClient(cert: string, hbonePort: number, target: string, expect: typeof ids.server): Promise<{ port: number; child: Child }> {
  const child = start('hbone client', process.execPath, [here('./hbone-proxy.js'), 'client', '--cert', cert, '--hbone', `${HOST}:${hbonePort}`, '--target', target, '--expect', formatSpiffeId(expect)], opts('rest'));
  return { port: await readyLine(child, jsonReady), child };
}

async function openWaypoint(s: Setup, label: string): Promise<OpenPath> {
  const pod = await hboneServer(s);
  const mesh = join(s.dir, 'mesh.yaml');
  writeFileSync(mesh, `workloads:
- uid: Kubernetes//Pod/bench/backend
  name: backend
  namespace: bench
  serviceAccount: server
  trustDomain: ${TRUST_DOMAIN}
  workloadIps: ["${HOST}"]
  protocol: HBONE
  canonicalName: backend
  canonicalRevision: v1
  services: { "bench/${SERVICE.hostname}": { ${SERVICE.port}: ${s.backendPort} } }
services:
- name: backend
  namespace: bench
  hostname: ${SERVICE.hostname}
  vips: ["/${SERVICE.vip}"]
  ports: { ${SERVICE.port}: ${SERVICE.port} }
`);
  const l7 = join(s.dir, 'l7.yaml');
  writeFileSync(l7, `routeConfigurations: [{ namespace: bench, hostname: ${SERVICE.hostname}, routes: [{ name: all, matches: [{ path: { prefix: / } }] }] }]\n`);
  const [hbone, stats, readiness] = [await freePort(), await freePort(), await freePort()];
  const logFd = openSync(join(s.dir, `waypoint-${label}.log`), 'w');
  const prof = values['cpu-prof-dir'] ? ['--cpu-prof', `--cpu-prof-dir=${values['cpu-prof-dir']}`, `--cpu-prof-name=waypoint-${label}.cpuprofile`] : [];
  // bin/ambientd's runtime flags, with node called directly (so --cpu-prof applies to the waypoint).
  const waypoint = start('waypoint', process.execPath, [
    ...prof, ...WAYPOINT_NODE_FLAGS, AMBIENTD, 'waypoint', '--bind-address', HOST,
    '--hbone-port', String(hbone), '--stats-port', String(stats), '--readiness-port', String(readiness), '--upstream-hbone-port', String(pod.port),
  ], {
    ...opts('proxy'),
    stdoutFd: logFd,
    env: {
      XDS_ADDRESS: '', FAKE_CA: 'true', FAKE_CA_DIR: join(s.dir, 'ca'), LOCAL_XDS_PATH: mesh, L7_CONFIG_PATH: l7,
      POD_NAMESPACE: 'bench', SERVICE_ACCOUNT: 'waypoint', TRUST_DOMAIN, UV_THREADPOOL_SIZE: '16', CONNECTION_TERMINATION_DEADLINE: '2s',
    },
  });
  closeSync(logFd);
  await waitReady(waypoint, readiness);
  const client = await hboneClient(s.inbound.client.json, hbone, `${SERVICE.vip}:${SERVICE.port}`, ids.waypoint);
  return { port: client.port, children: [client.child, waypoint, pod.child], measured: [waypoint] };
}

async function waitReady(child: Child, port: number): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (Date.now() < deadline) {
    if (!running(child)) throw new Error(`${child.name} exited: ${child.stderr().trim()}`);
    const ready = await fetch(`http://${HOST}:${port}/healthz/ready`).then((r) => r.status === 200, () => false);
    if (ready) return;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  throw new Error(`${child.name} not ready on ${port}: ${child.stderr().trim()}`);
}

// ───────────────────────── load ─────────────────────────

/** wrk's Lua `done` hook: the run's numbers as one JSON line (latencies in µs, from its HdrHistogram). */
const WRK_SCRIPT = `done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('{"requests":%d,"durationUs":%d,"bytes":%d,"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},"latencyUs":{"p50":%d,"p90":%d,"p99":%d,"p999":%d,"max":%d,"mean":%.1f}}\\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency:percentile(99.9), latency.max, latency.mean))
end
`;

interface WrkReport {
  readonly requests: number;
  readonly durationUs: number;
  readonly bytes: number;
  readonly errors: { connect: number; read: number; write: number; status: number; timeout: number };
  readonly latencyUs: { p50: number; p90: number; p99: number; p999: number; max: number; mean: number };
}

async function wrk(port: number, connections: number, secs: number, script: string): Promise<WrkReport> {
  const child = start('wrk', WRK, ['-t1', `-c${connections}`, `-d${secs}s`, '--timeout', '5s', '-s', script, `http://${HOST}:${port}/1k`], opts('rest'));
  let out = '';
  child.proc.stdout?.setEncoding('utf8').on('data', (t: string) => (out += t));
  const code = await withTimeout(child.exited, (secs + 20) * 1000, 'wrk').catch(async (err: unknown) => {
    await stop(child, 500);
    throw err;
  });
  const line = out.trim().split('\n').filter((l) => l.startsWith('{')).pop();
  if (code !== 0 || !line) throw new Error(`wrk failed (exit ${code}): ${child.stderr().trim() || out.trim()}`);
  return JSON.parse(line) as WrkReport;
}

// ───────────────────────── run ─────────────────────────

interface Measurement {
  readonly rps: number;
  readonly p50Ms: number;
  readonly p99Ms: number;
  readonly p999Ms: number;
  /** CPU time of the proxy under test per request (user + system), µs; null for paths without one. */
  readonly proxyCpuUsPerRequest: number | null;
  readonly errors: number;
  readonly wrk: WrkReport;
}

interface Cell extends Measurement {
  readonly path: PathName;
  readonly connections: number;
  readonly round: number;
}

/** One path at one connection count: the median round's numbers, and every round's req/s and p99. */
interface Row extends Cell {
  readonly rounds: ReadonlyArray<{ readonly rps: number; readonly p99Ms: number }>;
}

async function measure(open: OpenPath, connections: number, script: string): Promise<Measurement> {
  await wrk(open.port, connections, warmup, script);
  const before = open.measured.map((m) => cpuSeconds(m.proc.pid));
  const report = await wrk(open.port, connections, seconds, script);
  const cpu = open.measured.reduce((sum, m, i) => sum + cpuSeconds(m.proc.pid) - (before[i] ?? 0), 0);
  const e = report.errors;
  return {
    rps: round(report.requests / (report.durationUs / 1e6), 0),
    p50Ms: round(report.latencyUs.p50 / 1000, 3), p99Ms: round(report.latencyUs.p99 / 1000, 3), p999Ms: round(report.latencyUs.p999 / 1000, 3),
    proxyCpuUsPerRequest: open.measured.length > 0 ? round((cpu * 1e6) / Math.max(1, report.requests), 1) : null,
    errors: e.connect + e.read + e.write + e.status + e.timeout,
    wrk: report,
  };
}

function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  const mid = Math.floor(sorted.length / 2);
  return sorted.length % 2 === 1 ? sorted[mid]! : ((sorted[mid - 1]! + sorted[mid]!) / 2);
}

/** Per path and connection count, the round with the median req/s (ties: the earlier round). */
function rowsOf(cells: readonly Cell[]): Row[] {
  const rows: Row[] = [];
  for (const path of selected) {
    for (const c of connectionCounts) {
      const mine = cells.filter((x) => x.path === path && x.connections === c);
      if (mine.length === 0) continue;
      const byRps = [...mine].sort((a, b) => a.rps - b.rps || a.round - b.round);
      const mid = byRps[Math.floor((byRps.length - 1) / 2)]!;
      rows.push({ ...mid, rounds: mine.map((x) => ({ rps: x.rps, p99Ms: x.p99Ms })) });
    }
  }
  return rows;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'ambient-bench-waypoint-'));
  chmodSync(dir, 0o755);
  const cells: Cell[] = [];
  const failures: string[] = [];
  const load = loadavg()[0] ?? 0;
  if (values['cpu-prof-dir']) mkdirSync(values['cpu-prof-dir'], { recursive: true });
  try {
    const ca = CertificateAuthority.generate(TRUST_DOMAIN);
    await ca.save(join(dir, 'ca'));
    mkdirSync(join(dir, 'in'));
    mkdirSync(join(dir, 'out'));
    const inbound = await writeCertificates(ca, join(dir, 'in'), { client: ids.client, server: ids.waypoint });
    const outbound = await writeCertificates(ca, join(dir, 'out'), { client: ids.waypoint, server: ids.server });
    for (const f of [inbound.server.keyPem, outbound.client.keyPem, inbound.server.certPem, outbound.client.certPem]) chmodSync(f, 0o644); // nginx runs as nobody
    const script = join(dir, 'report.lua');
    writeFileSync(script, WRK_SCRIPT);
    const backend = await startBackend(dir);
    const setup: Setup = { dir, ca, inbound, outbound, backendPort: backend.port };

    // Every path stays open for the whole run, and the cells are taken in rounds (each round measures every
    // path at each connection count, one after the other), so a machine whose speed drifts during the run
    // affects all paths alike; each row is the median round, and the goal ratios are medians of the ratios
    // taken within the same round.
    const open = new Map<PathName, OpenPath>();
    try {
      for (const path of selected) {
        try {
          open.set(path, await openPath(path, setup, 'run'));
        } catch (err) {
          failures.push(`${path}: ${(err as Error).message}`);
          process.stderr.write(`${path} failed to start: ${(err as Error).message}\n`);
        }
      }
      for (let round = 1; round <= rounds; round++) {
        for (const c of connectionCounts) {
          for (const [path, o] of open) {
            process.stderr.write(`round ${round}/${rounds}: ${path} × ${c} connection(s) …`);
            try {
              const cell = await measure(o, c, script);
              cells.push({ path, connections: c, round, ...cell });
              const e = cell.wrk.errors;
              if (cell.errors > 0) failures.push(`${path} × ${c} (round ${round}): ${JSON.stringify(e)}`);
              process.stderr.write(` ${cell.rps} req/s, p50 ${cell.p50Ms} ms, p99 ${cell.p99Ms} ms${cell.errors ? `, ${cell.errors} errors` : ''}\n`);
            } catch (err) {
              failures.push(`${path} × ${c} (round ${round}): ${(err as Error).message}`);
              process.stderr.write(` failed: ${(err as Error).message}\n`);
            }
          }
        }
      }
    } finally {
      for (const o of open.values()) for (const child of o.children) await stop(child);
    }
  } finally {
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
  report(cells, failures, load);
  if (values['cpu-prof-dir']) printProfiles(values['cpu-prof-dir']);
  if (failures.length > 0) process.exitCode = 1;
}

interface Goal {
  readonly against: PathName;
  readonly connections: number;
  readonly rpsRatio: number;
  readonly p99Ratio: number;
  readonly rpsMet: boolean;
  readonly p99Met: boolean;
  /** The ratios within each round, in round order. */
  readonly perRound: ReadonlyArray<{ readonly rps: number; readonly p99: number }>;
}

/**
 * The issue's goal: at 64 connections, ≥ 50% of nginx's requests/s and a p99 within 2× of nginx's. Each
 * ratio is the median over the rounds of the ratio within a round (the waypoint and nginx measured
 * minutes apart on a drifting machine would compare the machine, not the proxies).
 */
function goals(cells: readonly Cell[]): Goal[] {
  const c = goalConnections();
  return (['nginx', 'nginx-mtls'] as const).map((against) => ({ against, paired: pairedRatios(cells, 'waypoint', against, c) })).filter((x) => x.paired.length > 0).map(({ against, paired }) => {
    const { rps: rpsRatio, p99: p99Ratio } = medianRatios(paired);
    const perRound = paired.map((x) => ({ rps: round(x.rps, 3), p99: round(x.p99, 3) }));
    return { against, connections: c, rpsRatio, p99Ratio, perRound, rpsMet: rpsRatio >= 0.5, p99Met: p99Ratio <= 2 };
  });
}

const goalConnections = () => (connectionCounts.includes(64) ? 64 : Math.max(...connectionCounts));

/** The medians of per-round ratios, rounded as the report prints them. */
function medianRatios(paired: ReadonlyArray<{ rps: number; p99: number }>): { rps: number; p99: number } {
  return { rps: round(median(paired.map((x) => x.rps)), 3), p99: round(median(paired.map((x) => x.p99)), 3) };
}

/** `path` against `against` at `c` connections, within each round both were measured in. */
function pairedRatios(cells: readonly Cell[], path: PathName, against: PathName, c: number): Array<{ rps: number; p99: number }> {
  const at = (p: PathName, r: number) => cells.find((x) => x.path === p && x.connections === c && x.round === r);
  return cells.filter((x) => x.path === path && x.connections === c).flatMap((x) => {
    const other = at(against, x.round);
    return other ? [{ rps: x.rps / other.rps, p99: x.p99Ms / other.p99Ms }] : [];
  });
}

interface Bound {
  readonly path: 'node-http' | 'hbone-l4';
  readonly meaning: string;
  /** req/s and p99 against nginx's at the goal's connection count (medians of per-round ratios). */
  readonly rpsRatioToNginx: number;
  readonly p99RatioToNginx: number;
}

/** What the machine allows: node:http's floor and the HBONE ends' ceiling, against nginx. */
function bounds(cells: readonly Cell[]): Bound[] {
  const c = goalConnections();
  const meaning = { 'node-http': "node's HTTP server and client alone, no TLS (a floor for any proxy on them)", 'hbone-l4': "the waypoint path's two HBONE ends alone (its ceiling)" } as const;
  return (['node-http', 'hbone-l4'] as const).flatMap((path) => {
    const paired = pairedRatios(cells, path, 'nginx', c);
    if (paired.length === 0) return [];
    const { rps, p99 } = medianRatios(paired);
    return [{ path, meaning: meaning[path], rpsRatioToNginx: rps, p99RatioToNginx: p99 }];
  });
}

function report(cells: readonly Cell[], failures: readonly string[], load: number): void {
  const rows = rowsOf(cells);
  const cpu = cpus();
  const machine = { node: process.version, cpu: cpu[0]?.model ?? 'unknown', cores: cpu.length, platform: `${platform()} ${osRelease()}`, loadAverage1mAtStart: round(load, 2) };
  const date = new Date().toISOString();
  const fmt = (v: number | null, digits: number) => (v === null ? '—' : v.toFixed(digits));
  const table = [
    ['path', 'conns', 'req/s', 'p50 ms', 'p99 ms', 'p99.9 ms', 'proxy CPU µs/req', 'errors', 'by round: req/s @ p99 ms'],
    ...rows.map((r) => [r.path, String(r.connections), fmt(r.rps, 0), fmt(r.p50Ms, 2), fmt(r.p99Ms, 2), fmt(r.p999Ms, 2), fmt(r.proxyCpuUsPerRequest, 1), String(r.errors), r.rounds.map((x) => `${x.rps} @ ${fmt(x.p99Ms, 1)}`).join(' / ')]),
  ];
  const widths = table[0]!.map((_, i) => Math.max(...table.map((row) => row[i]!.length)));
  const line = (row: string[]) => row.map((cell, i) => (i === 0 ? cell.padEnd(widths[i]!) : cell.padStart(widths[i]!))).join('  ');
  console.log(`\nWaypoint benchmark — ${date} — node ${machine.node}, ${machine.cpu} × ${machine.cores}, load average ${machine.loadAverage1mAtStart} at start`);
  console.log(`wrk -t1, HTTP/1.1 keep-alive GET of ${BODY_BYTES} B, ${seconds} s per cell after ${warmup} s warm-up, ${rounds} round(s), median shown; ${CPU ? `proxy under test pinned to CPU ${CPU.proxy}, everything else to CPU ${CPU.rest}` : 'no CPU pinning'}`);
  console.log('direct: wrk → backend | nginx: plain HTTP proxy | nginx-mtls: mTLS in (stunnel client) and out (stunnel server) | node-http: node:http proxy, plain | hbone-l4: HBONE ends only | waypoint: HBONE in, L7, HBONE out\n');
  console.log(line(table[0]!));
  console.log(widths.map((w) => '─'.repeat(w)).join('  '));
  for (const row of table.slice(1)) console.log(line(row));
  const g = goals(cells);
  if (g.length > 0) console.log('\ngoal (issue 7): waypoint ≥ 50% of nginx req/s and p99 ≤ 2× nginx, at 64 connections (median of per-round ratios)');
  const verdict = (met: boolean) => (met ? 'MET' : 'NOT MET');
  for (const x of g) {
    const rounds = x.perRound.length > 1 ? `   rounds: req/s ${x.perRound.map((r) => `×${fmt(r.rps, 2)}`).join(' ')}, p99 ${x.perRound.map((r) => `×${fmt(r.p99, 2)}`).join(' ')}` : '';
    console.log(`  vs ${x.against.padEnd(10)} req/s ×${fmt(x.rpsRatio, 2)} (${verdict(x.rpsMet)})   p99 ×${fmt(x.p99Ratio, 2)} (${verdict(x.p99Met)})${rounds}`);
  }
  const b = bounds(cells);
  if (b.length > 0) console.log(`\nbounds on this machine, against nginx at ${goalConnections()} connections (median of per-round ratios):`);
  for (const x of b) console.log(`  ${x.path.padEnd(10)} req/s ×${fmt(x.rpsRatioToNginx, 2)}   p99 ×${fmt(x.p99RatioToNginx, 2)}   ${x.meaning}`);
  for (const f of failures) console.log(`  failure: ${f}`);

  const previous = readPrevious();
  if (previous?.rows) {
    console.log(`\nprevious run (${previous.date}):`);
    for (const r of rows) {
      const before = previous.rows.find((p) => p.path === r.path && p.connections === r.connections);
      if (before) console.log(`  ${r.path.padEnd(10)} × ${String(r.connections).padStart(2)}  req/s ${before.rps} → ${r.rps}   p99 ms ${before.p99Ms} → ${r.p99Ms}`);
    }
  }
  if (values['no-write']) return;
  const out = {
    date, machine,
    settings: { seconds, warmupSeconds: warmup, rounds, connections: connectionCounts, bodyBytes: BODY_BYTES, loadGenerator: 'wrk 4 -t1 (Lua done() report)', pinning: CPU ?? null, tls: { version: 'TLSv1.3', ciphersuites: TLS_CIPHERS } },
    rows, cells, goals: g, bounds: b, failures,
  };
  mkdirSync(resultsDir, { recursive: true });
  const text = `${JSON.stringify(out, null, 2)}\n`;
  const dated = join(resultsDir, `waypoint-${date.replace(/\.\d+Z$/, 'Z').replace(/:/g, '-')}.json`);
  writeFileSync(dated, text);
  writeFileSync(join(resultsDir, 'waypoint-latest.json'), text);
  console.log(`\nwrote ${dated} and ${join(resultsDir, 'waypoint-latest.json')}`);
}

function readPrevious(): { date?: string; rows?: Array<{ path: string; connections: number; rps: number; p99Ms: number }> } | undefined {
  try {
    return JSON.parse(readFileSync(join(resultsDir, 'waypoint-latest.json'), 'utf8')) as ReturnType<typeof readPrevious>;
  } catch {
    return undefined;
  }
}

await main().catch(async (err: unknown) => {
  process.stderr.write(`bench failed: ${err instanceof Error ? err.stack : String(err)}\n`);
  await stopAll();
  process.exitCode = 1;
});

import { once } from 'node:events';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import { basename, join } from 'node:path';
import { TLS_CIPHERS } from '../src/hbone/settings.ts';
import type { CertificateAuthority } from '../src/identity/ca.ts';
import { CertManager } from '../src/identity/cert-manager.ts';
import { LocalCaClient } from '../src/identity/local-ca-client.ts';
import type { SpiffeId } from '../src/identity/spiffe.ts';

/** What the benchmarks share: certificate files for the proxies, CPU accounting, iperf3 reports. */

export interface CertFiles {
  /** WorkloadCertificate JSON (for bench/hbone-proxy). */
  readonly json: string;
  /** Leaf + chain (stunnel `cert`). */
  readonly certPem: string;
  /** PKCS#8 (stunnel `key`). */
  readonly keyPem: string;
}

/** Issues a certificate for each of `client` and `server` from `ca` and writes them, with the roots, into `dir`. */
export async function writeCertificates(ca: CertificateAuthority, dir: string, ids: { client: SpiffeId; server: SpiffeId }): Promise<{ client: CertFiles; server: CertFiles; rootsPem: string }> {
  const manager = new CertManager({ ca: new LocalCaClient(ca), ttlSeconds: 3600 });
  try {
    const write = async (name: string, id: SpiffeId): Promise<CertFiles> => {
      const cert = await manager.fetch(id);
      const files = { json: join(dir, `${name}.json`), certPem: join(dir, `${name}-cert.pem`), keyPem: join(dir, `${name}-key.pem`) };
      writeFileSync(files.json, JSON.stringify(cert), { mode: 0o600 });
      writeFileSync(files.certPem, cert.chainPem.join(''));
      writeFileSync(files.keyPem, cert.privateKeyPem, { mode: 0o600 });
      return files;
    };
    const client = await write('client', ids.client);
    const server = await write('server', ids.server);
    const rootsPem = join(dir, 'roots.pem');
    writeFileSync(rootsPem, ca.rootsPem.join(''));
    return { client, server, rootsPem };
  } finally {
    await manager.close();
  }
}

/** User + system CPU seconds of a process so far, from /proc/<pid>/stat (clock ticks of 1/100 s). */
export function cpuSeconds(pid: number | undefined): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' '); // fields[0] is stat field 3 (state)
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

export interface ThroughputResult {
  readonly gbps: number;
  readonly bytes: number;
  /** User + system CPU seconds of the path's proxies during the run (0 for direct). */
  readonly proxyCpuSeconds: number;
  /** Proxy CPU per gigabyte carried: the cost that decides throughput on a saturated machine. */
  readonly proxyCpuSecondsPerGB: number;
}

export const round = (n: number, digits: number): number => Number(n.toFixed(digits));

/** The throughput of one `iperf3 -J` client run, or an error naming what went wrong. */
export function iperfResult(exitCode: number | null, stdout: string, stderr: string, proxyCpuSeconds: number): ThroughputResult {
  let report: { error?: string; end?: { sum_received?: { bits_per_second?: number; bytes?: number } } };
  try {
    report = JSON.parse(stdout) as typeof report;
  } catch {
    throw new Error(`iperf3 exited ${exitCode} without JSON: ${stderr.trim()}`);
  }
  const bps = report.end?.sum_received?.bits_per_second;
  const bytes = report.end?.sum_received?.bytes;
  if (exitCode !== 0 || report.error || typeof bps !== 'number' || typeof bytes !== 'number') {
    throw new Error(`iperf3 failed (exit ${exitCode}): ${report.error ?? stderr.trim()}`);
  }
  return { gbps: bps / 1e9, bytes, proxyCpuSeconds: round(proxyCpuSeconds, 2), proxyCpuSecondsPerGB: round(proxyCpuSeconds / (bytes / 1e9), 3) };
}

/** A stunnel configuration file from its options (`[name]` keys start a service section). */
export function stunnelConfig(lines: Record<string, string | string[]>): string {
  return Object.entries(lines)
    .flatMap(([key, value]) => (Array.isArray(value) ? value : [value]).map((v) => (key.startsWith('[') ? key : `${key} = ${v}`)))
    .join('\n')
    .concat('\n');
}

/** stunnel's global options for a benchmark process: foreground, no pid file, quiet. */
export const STUNNEL_GLOBAL = { foreground: 'yes', pid: '', syslog: 'no', debug: 'warning' } as const;

/** The TLS options both stunnel ends use: TLS 1.3 with Istio's suites, peers verified against `caFile`. */
export function stunnelTls(caFile: string) {
  return { sslVersionMin: 'TLSv1.3', ciphersuites: TLS_CIPHERS, CAfile: caFile, verify: '2', socket: ['l:TCP_NODELAY=1', 'r:TCP_NODELAY=1'] };
}

/** The port of a `{"ready":true,"port":N}` line (bench/hbone-proxy.ts, bench/echo-server.ts). */
export const jsonReady = (line: string): number | undefined => {
  try {
    const parsed = JSON.parse(line) as { ready?: unknown; port?: unknown };
    return parsed.ready === true && typeof parsed.port === 'number' ? parsed.port : undefined;
  } catch {
    return undefined;
  }
};

/** A port that was free a moment ago (for programs that cannot bind port 0 and report it). */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const server = createServer();
  server.listen(0, host);
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

export interface CpuProfile {
  readonly nodes: ReadonlyArray<{ id: number; callFrame: { functionName: string; url: string; lineNumber: number } }>;
  readonly samples: readonly number[];
  readonly timeDeltas: readonly number[];
}

/** Self time per function (name + file:line), largest first, from a V8 .cpuprofile. */
export function summariseProfile(profile: CpuProfile, top = 15): { totalMs: number; rows: Array<{ fn: string; ms: number; pct: number }> } {
  const byNode = new Map<number, string>();
  for (const node of profile.nodes) {
    const { functionName, url, lineNumber } = node.callFrame;
    const where = url ? ` ${basename(url)}:${lineNumber + 1}` : '';
    byNode.set(node.id, `${functionName || '(anonymous)'}${where}`);
  }
  const self = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, i) => {
    const dt = profile.timeDeltas[i] ?? 0;
    const fn = byNode.get(id) ?? '?';
    if (fn === '(idle)') return;
    total += dt;
    self.set(fn, (self.get(fn) ?? 0) + dt);
  });
  const rows = [...self]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([fn, us]) => ({ fn, ms: Math.round(us / 100) / 10, pct: Math.round((1000 * us) / Math.max(1, total)) / 10 }));
  return { totalMs: Math.round(total / 1000), rows };
}

/** Prints the top self-time functions of every .cpuprofile in `dir`. */
export function printProfiles(dir: string): void {
  for (const file of readdirSync(dir).filter((f) => f.endsWith('.cpuprofile')).sort()) {
    const { totalMs, rows } = summariseProfile(JSON.parse(readFileSync(join(dir, file), 'utf8')) as CpuProfile);
    console.log(`\n${join(dir, file)}: ${totalMs} ms on CPU (idle excluded), top self time:`);
    for (const r of rows) console.log(`  ${r.pct.toFixed(1).padStart(5)}%  ${r.ms.toFixed(0).padStart(6)} ms  ${r.fn}`);
  }
}


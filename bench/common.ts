import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
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

/** stunnel's global options for a benchmark process: foreground, no pid file, quiet. */
export const STUNNEL_GLOBAL = { foreground: 'yes', pid: '', syslog: 'no', debug: 'warning' } as const;

/** The TLS options both stunnel ends use: TLS 1.3 with Istio's suites, peers verified against `caFile`. */
export function stunnelTls(caFile: string) {
  return { sslVersionMin: 'TLSv1.3', ciphersuites: TLS_CIPHERS, CAfile: caFile, verify: '2', socket: ['l:TCP_NODELAY=1', 'r:TCP_NODELAY=1'] };
}

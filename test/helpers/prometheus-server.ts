import type { ExecutionContext } from 'ava';
import { spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { existsSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { tempDir } from './tmp.ts';

/**
 * Debian's `prometheus` and `promtool` as real peers: a Prometheus on loopback only, with its storage in a temp dir,
 * scraping the targets given (or a whole configuration) every second, killed when the test ends.
 */

export const PROMETHEUS = '/usr/bin/prometheus';
export const PROMTOOL = '/usr/bin/promtool';

/**
 * At the top of a test that needs Prometheus. On CI (`CI` set) a missing binary throws; elsewhere it logs
 * `not run: <why>`, passes and returns false.
 */
export function requirePrometheus(t: ExecutionContext): boolean {
  const missing = [PROMETHEUS, PROMTOOL].filter((p) => !existsSync(p));
  if (missing.length === 0) return true;
  const why = `${missing.join(', ')} missing (install the Debian package prometheus)`;
  if (process.env['CI']) throw new Error(`Prometheus test cannot run on CI: ${why}`);
  t.log(`not run: ${why}`);
  t.pass();
  return false;
}

export interface ScrapeTarget {
  readonly job: string;
  /** `host:port`. */
  readonly address: string;
  readonly metricsPath: string;
}

export interface PromSample {
  readonly metric: Record<string, string>;
  readonly value: readonly [number, string];
}

export interface PrometheusServer {
  readonly url: string;
  /** An instant query through the HTTP API (`/api/v1/query`); throws unless the status is success. */
  query(expr: string): Promise<PromSample[]>;
  /** GET of an HTTP API path (`/api/v1/...`), its `data` when the status is success. */
  api(path: string): Promise<unknown>;
  /** Polls `query(expr)` until `accept` holds; throws naming `expr` and the last answer after `timeoutMs`. */
  waitFor(expr: string, accept: (samples: PromSample[]) => boolean, timeoutMs?: number): Promise<PromSample[]>;
  close(): Promise<void>;
}

async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  server.close();
  await once(server, 'close');
  return port;
}

function scrapeConfig(targets: readonly ScrapeTarget[]): string {
  const jobs = targets.map((target) => [
    `  - job_name: ${JSON.stringify(target.job)}`,
    `    metrics_path: ${JSON.stringify(target.metricsPath)}`,
    '    static_configs:',
    `      - targets: [${JSON.stringify(target.address)}]`,
  ].join('\n'));
  return ['global:', '  scrape_interval: 1s', '  scrape_timeout: 1s', '  evaluation_interval: 1s', 'scrape_configs:', ...jobs, ''].join('\n');
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** A label name as Prometheus sanitizes it (every character outside `[a-zA-Z0-9_]` becomes `_`). */
const sanitize = (name: string): string => name.replace(/[^a-zA-Z0-9_]/g, '_');

export interface PodForDiscovery {
  readonly namespace: string;
  readonly name: string;
  readonly ip: string;
  readonly phase: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly annotations: Readonly<Record<string, string>>;
  readonly containers: ReadonlyArray<{ readonly name: string; readonly ports: ReadonlyArray<{ readonly name?: string; readonly containerPort: number }> }>;
}

/**
 * The targets Prometheus's Kubernetes `role: pod` discovery makes of a pod (one per container port, `__address__`
 * `<podIP>:<port>`, and its documented `__meta_kubernetes_*` labels), in file_sd form. Debian builds Prometheus
 * without Kubernetes discovery, so the tests hand these over through a file; the relabelling is Prometheus's own.
 */
export function podTargets(pod: PodForDiscovery): Array<{ targets: string[]; labels: Record<string, string> }> {
  const common: Record<string, string> = {
    __meta_kubernetes_namespace: pod.namespace,
    __meta_kubernetes_pod_name: pod.name,
    __meta_kubernetes_pod_ip: pod.ip,
    __meta_kubernetes_pod_phase: pod.phase,
  };
  for (const [k, v] of Object.entries(pod.labels)) {
    common[`__meta_kubernetes_pod_label_${sanitize(k)}`] = v;
    common[`__meta_kubernetes_pod_labelpresent_${sanitize(k)}`] = 'true';
  }
  for (const [k, v] of Object.entries(pod.annotations)) {
    common[`__meta_kubernetes_pod_annotation_${sanitize(k)}`] = v;
    common[`__meta_kubernetes_pod_annotationpresent_${sanitize(k)}`] = 'true';
  }
  return pod.containers.flatMap((c) => c.ports.map((p) => ({
    targets: [`${pod.ip}:${p.containerPort}`],
    labels: {
      ...common,
      __meta_kubernetes_pod_container_name: c.name,
      __meta_kubernetes_pod_container_port_number: String(p.containerPort),
      __meta_kubernetes_pod_container_port_protocol: 'TCP',
      ...(p.name !== undefined ? { __meta_kubernetes_pod_container_port_name: p.name } : {}),
    },
  })));
}

/**
 * The annotation-driven `kubernetes-pods` job of Istio's Prometheus add-on (reference istio-ambient.md §5.1): pods
 * with `prometheus.io/scrape: "true"`, the port and path from `prometheus.io/port` and `prometheus.io/path`, pod
 * labels copied, and `namespace` and `pod` labels; the pod targets come from `sdFile` (see `podTargets`).
 */
export function kubernetesPodsConfig(sdFile: string): string {
  return `global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: kubernetes-pods
    honor_labels: true
    file_sd_configs:
      - files: [${JSON.stringify(sdFile)}]
        refresh_interval: 1s
    relabel_configs:
      - action: keep
        regex: true
        source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape]
      - action: drop
        regex: true
        source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scrape_slow]
      - action: replace
        regex: (https?)
        source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_scheme]
        target_label: __scheme__
      - action: replace
        regex: (.+)
        source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_path]
        target_label: __metrics_path__
      - action: replace
        regex: (\\d+);((([0-9]+?)(\\.|$)){4})
        replacement: $2:$1
        source_labels: [__meta_kubernetes_pod_annotation_prometheus_io_port, __meta_kubernetes_pod_ip]
        target_label: __address__
      - action: labelmap
        regex: __meta_kubernetes_pod_label_(.+)
      - action: replace
        source_labels: [__meta_kubernetes_namespace]
        target_label: namespace
      - action: replace
        source_labels: [__meta_kubernetes_pod_name]
        target_label: pod
      - action: drop
        regex: Pending|Succeeded|Failed|Completed
        source_labels: [__meta_kubernetes_pod_phase]
`;
}

export async function startPrometheus(t: ExecutionContext, targets: readonly ScrapeTarget[] | string): Promise<PrometheusServer> {
  const dir = await tempDir(t, 'ambient-prometheus-');
  const config = join(dir, 'prometheus.yml');
  await writeFile(config, typeof targets === 'string' ? targets : scrapeConfig(targets));
  for (let attempt = 1; ; attempt++) {
    const port = await freeLoopbackPort();
    const child = spawn(PROMETHEUS, [
      `--config.file=${config}`,
      `--storage.tsdb.path=${join(dir, 'data')}`,
      `--web.listen-address=127.0.0.1:${port}`,
      '--storage.tsdb.retention.time=1h',
      '--log.level=warn',
    ], { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => (stderr = (stderr + c.toString()).slice(-4000)));
    t.teardown(() => stop(child));
    const url = `http://127.0.0.1:${port}`;
    const exited = once(child, 'exit').then(() => 'exited' as const);
    let ready = false;
    for (let i = 0; i < 300 && !ready; i++) {
      const outcome = await Promise.race([
        fetch(`${url}/-/ready`).then((r) => r.status === 200, () => false),
        exited,
      ]);
      if (outcome === 'exited') break;
      ready = outcome;
      if (!ready) await new Promise((resolve) => setTimeout(resolve, 100));
    }
    if (!ready) {
      await stop(child);
      if (attempt < 3 && /address already in use/.test(stderr)) continue;
      throw new Error(`prometheus did not become ready on ${url}: ${stderr}`);
    }

    const query = async (expr: string): Promise<PromSample[]> => {
      const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(expr)}`);
      const body = (await res.json()) as { status: string; error?: string; data?: { resultType: string; result: PromSample[] } };
      if (body.status !== 'success' || body.data?.resultType !== 'vector') throw new Error(`query ${expr}: ${body.error ?? JSON.stringify(body)}`);
      return body.data.result;
    };
    return {
      url,
      query,
      async api(path) {
        const body = (await (await fetch(`${url}${path}`)).json()) as { status: string; error?: string; data?: unknown };
        if (body.status !== 'success') throw new Error(`${path}: ${body.error ?? JSON.stringify(body)}`);
        return body.data;
      },
      async waitFor(expr, accept, timeoutMs = 20_000) {
        const deadline = Date.now() + timeoutMs;
        let last: PromSample[] = [];
        while (Date.now() < deadline) {
          last = await query(expr);
          if (accept(last)) return last;
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
        throw new Error(`timed out waiting for ${expr}; last answer ${JSON.stringify(last)}`);
      },
      close: () => stop(child),
    };
  }
}

export interface PromtoolResult {
  readonly code: number | null;
  readonly output: string;
}

/** `promtool check metrics` over an exposition text (its stdin): exit 0 and no output means it passed the lint. */
export async function promtoolCheckMetrics(text: string): Promise<PromtoolResult> {
  const child = spawn(PROMTOOL, ['check', 'metrics'], { stdio: ['pipe', 'pipe', 'pipe'] });
  let output = '';
  child.stdout.on('data', (c: Buffer) => (output += c.toString()));
  child.stderr.on('data', (c: Buffer) => (output += c.toString()));
  child.stdin.end(text);
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, output };
}

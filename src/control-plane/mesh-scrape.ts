import { ErrorCode } from '../core/error-codes.ts';
import { errorMessage, MeshError } from '../core/errors.ts';
import { fail, ok, type Result } from '../core/result.ts';
import type { Pod } from './kube-objects.ts';
import type { ScrapeInput } from './mesh-graph.ts';
import { parsePrometheusText } from '../core/prometheus-text.ts';

/**
 * Scraping the data plane's metrics for the mesh page: one GET per target, in parallel, each with a deadline
 * and a size cap. A target that refuses, times out, answers other than 200 or too much is `up: false` with the
 * reason; its answer's unreadable lines are listed and the rest used. Never throws.
 */

export interface ScrapeOptions {
  readonly timeoutMs: number;
  readonly maxBytes: number;
}

export const DEFAULT_SCRAPE: ScrapeOptions = Object.freeze({ timeoutMs: 1500, maxBytes: 8 * 1024 * 1024 });

/** Checks a list of metrics URLs (http or https, absolute). */
export function parseMeshTargets(urls: readonly string[]): Result<readonly string[]> {
  const errors: string[] = [];
  const out: string[] = [];
  for (const [i, text] of urls.entries()) {
    let url: URL;
    try {
      url = new URL(text);
    } catch {
      errors.push(`[${i}] "${text}": not an absolute URL`);
      continue;
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') errors.push(`[${i}] "${text}": must be http or https`);
    else out.push(url.href);
  }
  return errors.length > 0 ? fail(...errors) : ok(Object.freeze([...new Set(out)]));
}

/** `parseMeshTargets` that throws a `CP_MESH_TARGET_INVALID` (for the handle's `setMeshTargets`). */
export function meshTargetsOrThrow(urls: readonly string[]): readonly string[] {
  const parsed = parseMeshTargets(urls);
  if (!parsed.ok) throw new MeshError(ErrorCode.CP_MESH_TARGET_INVALID, `mesh scrape targets: ${parsed.errors.join('; ')}`);
  return parsed.value;
}

/** The label of a waypoint's pods (waypoint-objects.ts writes it, as Istio's deployment controller). */
const GATEWAY_NAME_LABEL = 'gateway.networking.k8s.io/gateway-name';

/**
 * The metrics URLs of the data plane's own pods among `pods`: ztunnels (label `app: ztunnel` in the system
 * namespace) and waypoint instances (label `gateway.networking.k8s.io/gateway-name` naming a waypoint Gateway of
 * their namespace, per `isWaypoint`), running, with a pod IP and
 * `prometheus.io/scrape: "true"`; port and path from `prometheus.io/port` / `prometheus.io/path` (15020 and
 * `/metrics` or, for a waypoint, `/stats/prometheus`). Pure; sorted. Application pods are never scraped.
 */
export function discoverMeshTargets(pods: Iterable<Pod>, systemNamespace: string, isWaypoint: (namespace: string, name: string) => boolean): string[] {
  const out = new Set<string>();
  for (const pod of pods) {
    const labels = pod.metadata?.labels ?? {};
    const annotations = pod.metadata?.annotations ?? {};
    const ztunnel = pod.metadata?.namespace === systemNamespace && labels['app'] === 'ztunnel';
    const gateway = labels[GATEWAY_NAME_LABEL];
    const waypoint = gateway !== undefined && gateway !== '' && isWaypoint(pod.metadata?.namespace ?? '', gateway);
    if (!(ztunnel || waypoint) || annotations['prometheus.io/scrape'] !== 'true') continue;
    if (pod.status?.phase !== 'Running' || !pod.status.podIP) continue;
    const port = annotations['prometheus.io/port'] ?? '15020';
    if (!/^\d{1,5}$/.test(port) || Number(port) > 65_535) continue;
    const path = annotations['prometheus.io/path'] ?? (waypoint ? '/stats/prometheus' : '/metrics');
    const host = pod.status.podIP.includes(':') ? `[${pod.status.podIP}]` : pod.status.podIP;
    try {
      out.add(new URL(`http://${host}:${port}${path.startsWith('/') ? path : `/${path}`}`).href);
    } catch {
      // A pod IP or path that makes no URL: not a target.
    }
  }
  return [...out].sort();
}

async function readCapped(res: Response, maxBytes: number): Promise<string | undefined> {
  if (!res.body) return '';
  const chunks: Uint8Array[] = [];
  let size = 0;
  for await (const chunk of res.body as AsyncIterable<Uint8Array>) {
    size += chunk.byteLength;
    if (size > maxBytes) return undefined;
    chunks.push(chunk);
  }
  return Buffer.concat(chunks).toString('utf8');
}

export async function scrapeTarget(url: string, options: ScrapeOptions = DEFAULT_SCRAPE): Promise<ScrapeInput> {
  const down = (error: string): ScrapeInput => ({ url, up: false, error, samples: [], problems: [] });
  try {
    // The classic text format: every proxy serves it, and `# EOF`-less bodies are fine for our reader too.
    const res = await fetch(url, { headers: { accept: 'text/plain;version=0.0.4' }, signal: AbortSignal.timeout(options.timeoutMs), redirect: 'error' });
    if (res.status !== 200) {
      await res.body?.cancel().catch(() => {});
      return down(`HTTP ${res.status}`);
    }
    const text = await readCapped(res, options.maxBytes);
    if (text === undefined) return down(`answer larger than ${options.maxBytes} bytes`);
    const parsed = parsePrometheusText(text);
    return { url, up: true, samples: parsed.samples, problems: parsed.problems };
  } catch (err) {
    const cause = (err as { cause?: unknown }).cause;
    if (err instanceof DOMException && err.name === 'TimeoutError') return down(`no answer in ${options.timeoutMs} ms`);
    return down(cause !== undefined ? errorMessage(cause) : errorMessage(err));
  }
}

export async function scrapeTargets(urls: readonly string[], options: ScrapeOptions = DEFAULT_SCRAPE): Promise<ScrapeInput[]> {
  return Promise.all(urls.map((url) => scrapeTarget(url, options)));
}

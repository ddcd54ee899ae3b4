import { HttpMethod, IsomorphicFetchHttpLibrary, RequestContext, type KubeConfig } from '@kubernetes/client-node';
import { onceClose, type Handle } from '../core/lifecycle.ts';
import type { Logger } from '../core/logger.ts';
import { startInformer, type Informer } from '../workload-api/kube/index.ts';
import { COLLECTION_PATHS, KINDS, type KubeObject } from './kube-objects.ts';
import type { Translator } from './translator.ts';

/**
 * The Kubernetes source: one list+watch informer per kind (cluster-wide), feeding the translator. The translator is
 * held until every informer has listed once, then everything is computed in one flush (the first full push); from
 * then on each event goes through as it comes. Kinds whose API group the server does not serve (Istio or Gateway
 * API CRDs not installed) are skipped with a warning, as istiod does, instead of waiting forever.
 */

export interface KubeSourceOptions {
  readonly kubeConfig: KubeConfig;
  readonly translator: Translator;
  readonly logger: Logger;
  /** Collection paths of extra kinds (an extension's), e.g. `{ VirtualService: '/apis/networking.istio.io/v1/virtualservices' }`. */
  readonly extraCollections?: Readonly<Record<string, string>>;
  readonly backoff?: { readonly initialMs: number; readonly maxMs: number };
}

export interface KubeSource extends Handle {
  /** Resolves once every informer has listed and the first full translation is done. */
  readonly synced: Promise<void>;
  /** Kinds skipped because the server does not serve their API group/version. */
  readonly skipped: Promise<readonly string[]>;
}

/** Whether `GET <group/version discovery path>` says the collection's resource is served. */
async function served(kc: KubeConfig, path: string): Promise<boolean> {
  const parts = path.split('/').filter(Boolean);
  const discovery = parts[0] === 'api' ? `/api/${parts[1] ?? ''}` : `/apis/${parts[1] ?? ''}/${parts[2] ?? ''}`;
  const resource = parts[parts.length - 1];
  const cluster = kc.getCurrentCluster();
  if (!cluster) return true;
  try {
    const ctx = new RequestContext(`${cluster.server.replace(/\/+$/, '')}${discovery}`, HttpMethod.GET);
    await kc.applySecurityAuthentication(ctx);
    ctx.setHeaderParam('Accept', 'application/json');
    const response = await new IsomorphicFetchHttpLibrary().send(ctx).toPromise();
    const text = await response.body.text();
    if (response.httpStatusCode === 404) return false;
    if (response.httpStatusCode >= 300) return true;
    const body = JSON.parse(text) as { resources?: Array<{ name?: string }> };
    return (body.resources ?? []).some((r) => r.name === resource);
  } catch {
    // Cannot tell (the server down, a proxy in the way): let the informer try, and retry.
    return true;
  }
}

export function startKubeSource(options: KubeSourceOptions): KubeSource {
  const log = options.logger.child({ component: 'kube-source' });
  const translator = options.translator;
  const informers: Array<Informer<KubeObject>> = [];
  const collections: Record<string, string> = { ...COLLECTION_PATHS };
  for (const kind of translator.extensionKinds()) {
    const path = options.extraCollections?.[kind];
    if (path) collections[kind] = path;
    else if (!(KINDS as readonly string[]).includes(kind)) log.warn({ kind }, 'an extension asks for a kind without a collection path; not watched');
  }
  let closed = false;
  translator.hold();
  let skippedResolve!: (kinds: readonly string[]) => void;
  const skipped = new Promise<readonly string[]>((resolve) => (skippedResolve = resolve));

  const synced = (async () => {
    const checks = await Promise.all(Object.entries(collections).map(async ([kind, path]) => [kind, path, await served(options.kubeConfig, path)] as const));
    const skip = checks.filter(([, , ok]) => !ok).map(([kind]) => kind);
    skippedResolve(skip);
    for (const kind of skip) log.warn({ kind, path: collections[kind] }, 'the API server does not serve this kind; not watched');
    if (closed) throw new Error('closed before sync');
    for (const [kind, path, ok] of checks) {
      if (!ok) continue;
      const informer = startInformer<KubeObject>({
        kubeConfig: options.kubeConfig,
        path,
        logger: log,
        ...(options.backoff ? { backoff: options.backoff } : {}),
      });
      informer.on('add', (object) => translator.change({ kind, type: 'upsert', object }));
      informer.on('update', (object) => translator.change({ kind, type: 'upsert', object }));
      informer.on('delete', (object) => translator.change({ kind, type: 'delete', object }));
      informers.push(informer);
    }
    await Promise.all(informers.map((i) => i.synced));
    translator.markAll();
    translator.release();
    log.info({ kinds: informers.length }, 'Kubernetes informers synced');
  })();
  synced.catch(() => {});

  return {
    synced,
    skipped,
    close: onceClose(async () => {
      closed = true;
      await Promise.all(informers.map((i) => i.close()));
    }),
  };
}

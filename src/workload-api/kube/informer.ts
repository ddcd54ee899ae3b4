// The Kubernetes list+watch cache lives in workload-api (not core, not cni): both the CNI node agent (pods and
// namespaces on its node) and the control plane (pods, services, ... cluster-wide) need it, and workload-api is the
// lowest module both may import that may also hold IO. core stays free of Kubernetes.
import { EventEmitter } from 'node:events';
import { HttpMethod, IsomorphicFetchHttpLibrary, RequestContext, Watch, type KubeConfig } from '@kubernetes/client-node';
import { Backoff, type BackoffOptions } from '../../core/backoff.ts';
import { ErrorCode } from '../../core/error-codes.ts';
import { MeshError, errorCode, errorMessage } from '../../core/errors.ts';
import type { Logger } from '../../core/logger.ts';

/** The part of every Kubernetes object the informer reads. */
export interface KubeObject {
  metadata?: {
    name?: string;
    namespace?: string;
    resourceVersion?: string;
  };
}

export interface InformerOptions {
  readonly kubeConfig: KubeConfig;
  /** The collection path, e.g. `/api/v1/pods`, `/api/v1/namespaces/prod/pods`, `/api/v1/namespaces`. */
  readonly path: string;
  readonly fieldSelector?: string;
  readonly labelSelector?: string;
  readonly logger: Logger;
  /** Delay between failed attempts; 200 ms doubling to 30 s with 20 % jitter by default. */
  readonly backoff?: BackoffOptions;
  /** Asked of the server per watch so that watches are renewed now and then; 300 s by default. */
  readonly watchTimeoutSeconds?: number;
}

export interface InformerEvents<T> {
  add: [obj: T];
  update: [obj: T, previous: T];
  delete: [obj: T];
}

export interface Informer<T extends KubeObject> extends EventEmitter<InformerEvents<T>> {
  /** Resolves once the first list is in the cache (and its adds emitted); rejects if closed before that. */
  readonly synced: Promise<void>;
  /** A snapshot of the cache. */
  list(): T[];
  get(namespace: string | undefined, name: string): T | undefined;
  /** The resourceVersion the cache reflects. */
  resourceVersion(): string | undefined;
  close(): Promise<void>;
}

export class KubeError extends MeshError {}

const DEFAULT_BACKOFF: BackoffOptions = { initialMs: 200, maxMs: 30_000, jitter: 0.2 };
const MIN_HEALTHY_WATCH_MS = 1000;

function keyOf(obj: KubeObject): string {
  return `${obj.metadata?.namespace ?? ''}/${obj.metadata?.name ?? ''}`;
}

interface KubeList<T> {
  metadata?: { resourceVersion?: string };
  items?: T[];
}

interface WatchStatus {
  kind?: string;
  code?: number;
  reason?: string;
  message?: string;
}

type WatchEnd = 'gone' | 'ended' | 'closed';

/**
 * A list+watch cache of one collection. The informer alone writes its cache (one owner); callers read snapshots and
 * receive add/update/delete events. After a 410 Gone it lists again and emits only the difference from the cache, so a
 * relist never repeats an add; a dropped watch resumes from the last resourceVersion after a backoff.
 */
class KubeInformer<T extends KubeObject> extends EventEmitter<InformerEvents<T>> implements Informer<T> {
  readonly synced: Promise<void>;
  readonly #options: InformerOptions;
  readonly #log: Logger;
  readonly #watch: Watch;
  readonly #backoff: Backoff;
  #cache = new Map<string, T>();
  #rv: string | undefined;
  #closed = false;
  #abort: AbortController | undefined;
  #endWait: (() => void) | undefined;
  #markSynced!: () => void;
  #failSync!: (err: Error) => void;
  #loop: Promise<void>;

  constructor(options: InformerOptions) {
    super();
    this.#options = options;
    this.#log = options.logger.child({ component: 'kube-informer', path: options.path });
    this.#watch = new Watch(options.kubeConfig);
    this.#backoff = new Backoff(options.backoff ?? DEFAULT_BACKOFF);
    this.synced = new Promise<void>((resolve, reject) => {
      this.#markSynced = resolve;
      this.#failSync = reject;
    });
    this.synced.catch(() => {});
    this.#loop = this.#run();
  }

  list(): T[] {
    return [...this.#cache.values()];
  }

  get(namespace: string | undefined, name: string): T | undefined {
    return this.#cache.get(`${namespace ?? ''}/${name}`);
  }

  resourceVersion(): string | undefined {
    return this.#rv;
  }

  async close(): Promise<void> {
    if (!this.#closed) {
      this.#closed = true;
      this.#abort?.abort();
      this.#endWait?.();
      this.#failSync(new KubeError(ErrorCode.CORE_CLOSED, `informer for ${this.#options.path} closed before its first list`));
    }
    await this.#loop;
  }

  async #run(): Promise<void> {
    while (!this.#closed) {
      try {
        if (this.#rv === undefined) {
          await this.#relist();
          if (this.#closed) break;
          this.#markSynced();
        }
        const started = performance.now();
        const end = await this.#watchOnce(this.#rv!);
        if (end === 'closed') break;
        if (end === 'gone') {
          this.#log.info({ resourceVersion: this.#rv }, 'watch resourceVersion expired (410 Gone); listing again');
          this.#rv = undefined;
          continue;
        }
        this.#log.debug({ resourceVersion: this.#rv }, 'watch ended; resuming');
        // A watch that ran a while and ended cleanly (server timeoutSeconds, client-node's 30 s idle limit) is renewed
        // at once, as client-go does; one that ends straight away is retried with backoff so it cannot spin.
        if (performance.now() - started >= MIN_HEALTHY_WATCH_MS) {
          this.#backoff.reset();
          continue;
        }
      } catch (err) {
        if (this.#closed) break;
        const code = err instanceof MeshError ? err.code : ErrorCode.KUBE_REQUEST_FAILED;
        this.#log.warn({ code, cause: errorCode(err), err: errorMessage(err), resourceVersion: this.#rv }, 'Kubernetes list or watch failed; retrying');
        if ((err as { statusCode?: number }).statusCode === 410) this.#rv = undefined;
      }
      await this.#sleep(this.#backoff.next());
    }
  }

  #sleep(ms: number): Promise<void> {
    if (this.#closed) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(done, ms);
      timer.unref();
      function done(): void {
        clearTimeout(timer);
        resolve();
      }
      this.#endWait = () => {
        this.#endWait = undefined;
        done();
      };
    });
  }

  #url(extra: Record<string, string>): string {
    const cluster = this.#options.kubeConfig.getCurrentCluster();
    if (!cluster) throw new KubeError(ErrorCode.KUBE_REQUEST_FAILED, 'the kubeconfig has no current cluster');
    const url = new URL(cluster.server.replace(/\/+$/, '') + this.#options.path);
    if (this.#options.fieldSelector !== undefined) url.searchParams.set('fieldSelector', this.#options.fieldSelector);
    if (this.#options.labelSelector !== undefined) url.searchParams.set('labelSelector', this.#options.labelSelector);
    for (const [k, v] of Object.entries(extra)) url.searchParams.set(k, v);
    return url.toString();
  }

  async #relist(): Promise<void> {
    const ctx = new RequestContext(this.#url({}), HttpMethod.GET);
    await this.#options.kubeConfig.applySecurityAuthentication(ctx);
    ctx.setHeaderParam('Accept', 'application/json');
    this.#abort = new AbortController();
    ctx.setSignal(this.#abort.signal);
    let text: string;
    let response;
    try {
      response = await new IsomorphicFetchHttpLibrary().send(ctx).toPromise();
      text = await response.body.text();
    } finally {
      this.#abort = undefined;
    }
    if (response.httpStatusCode !== 200) {
      throw new KubeError(ErrorCode.KUBE_REQUEST_FAILED, `listing ${this.#options.path} failed with HTTP ${response.httpStatusCode}: ${text.slice(0, 200)}`);
    }
    const list = JSON.parse(text) as KubeList<T>;
    if (this.#closed) return;
    const rv = list.metadata?.resourceVersion;
    if (!rv) throw new KubeError(ErrorCode.KUBE_REQUEST_FAILED, `the list of ${this.#options.path} carries no resourceVersion`);
    const fresh = new Map<string, T>();
    for (const item of list.items ?? []) fresh.set(keyOf(item), item);
    const old = this.#cache;
    this.#cache = fresh;
    this.#rv = rv;
    this.#backoff.reset();
    this.#log.debug({ resourceVersion: rv, count: fresh.size }, 'listed');
    for (const [key, obj] of old) if (!fresh.has(key)) this.#emit('delete', obj);
    for (const [key, obj] of fresh) {
      const prev = old.get(key);
      if (!prev) this.#emit('add', obj);
      else if (prev.metadata?.resourceVersion !== obj.metadata?.resourceVersion) this.#emit('update', obj, prev);
    }
  }

  /** One watch from `rv`; resolves how it ended. Rejects on a connection or HTTP failure. */
  #watchOnce(rv: string): Promise<WatchEnd> {
    return new Promise<WatchEnd>((resolve, reject) => {
      let finished = false;
      let gone = false;
      const query = {
        resourceVersion: rv,
        allowWatchBookmarks: true,
        timeoutSeconds: this.#options.watchTimeoutSeconds ?? 300,
        ...(this.#options.fieldSelector !== undefined ? { fieldSelector: this.#options.fieldSelector } : {}),
        ...(this.#options.labelSelector !== undefined ? { labelSelector: this.#options.labelSelector } : {}),
      };
      const onEvent = (type: string, obj: unknown): void => {
        if (finished || this.#closed) return;
        if (type === 'ERROR') {
          const status = obj as WatchStatus;
          if (status.code === 410) gone = true;
          else this.#log.warn({ code: ErrorCode.KUBE_REQUEST_FAILED, status: status.code, reason: status.reason }, `watch error: ${status.message ?? ''}`);
          return;
        }
        this.#apply(type, obj as T);
      };
      const done = (err: unknown): void => {
        if (finished) return;
        finished = true;
        this.#abort = undefined;
        if (this.#closed) resolve('closed');
        else if (gone || (err as { statusCode?: number } | null)?.statusCode === 410) resolve('gone');
        else if (err && (err as { name?: string }).name === 'TimeoutError') resolve('ended');
        else if (err) reject(err);
        else resolve('ended');
      };
      this.#watch.watch(this.#options.path, query, onEvent, done).then(
        (controller) => {
          if (finished) return;
          if (this.#closed) controller.abort();
          else this.#abort = controller;
        },
        (err: unknown) => done(err ?? new Error('watch failed')),
      );
    });
  }

  #apply(type: string, obj: T): void {
    const rv = obj.metadata?.resourceVersion;
    if (type === 'BOOKMARK') {
      if (rv) this.#rv = rv;
      return;
    }
    const key = keyOf(obj);
    const prev = this.#cache.get(key);
    switch (type) {
      case 'ADDED':
      case 'MODIFIED':
        this.#cache.set(key, obj);
        if (rv) this.#rv = rv;
        this.#backoff.reset();
        if (!prev) this.#emit('add', obj);
        else if (prev.metadata?.resourceVersion !== rv) this.#emit('update', obj, prev);
        return;
      case 'DELETED':
        this.#cache.delete(key);
        if (rv) this.#rv = rv;
        this.#backoff.reset();
        if (prev) this.#emit('delete', obj);
        return;
      default:
        this.#log.debug({ type }, 'ignoring an unknown watch event type');
    }
  }

  #emit<K extends keyof InformerEvents<T>>(event: K, ...args: InformerEvents<T>[K]): void {
    try {
      (this.emit as (e: K, ...a: InformerEvents<T>[K]) => boolean)(event, ...args);
    } catch (err) {
      this.#log.error({ code: ErrorCode.KUBE_HANDLER_FAILED, event, err: errorMessage(err) }, 'an informer event handler threw');
    }
  }
}

/** Starts listing and watching `path`; see `Informer`. */
export function startInformer<T extends KubeObject>(options: InformerOptions): Informer<T> {
  return new KubeInformer<T>(options);
}

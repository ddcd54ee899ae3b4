import { ErrorCode } from '../core/error-codes.ts';
import { errorMessage } from '../core/errors.ts';
import { onceClose, type Handle, type Readiness } from '../core/lifecycle.ts';
import type { Logger } from '../core/logger.ts';
import { formatSpiffeId, type SpiffeId } from '../identity/spiffe.ts';
import type { StateReader } from '../workload-api/store.ts';
import type { Workload } from '../workload-api/types.ts';
import type { ZdsWorkloadInfo } from '../workload-api/zds.ts';

/**
 * The one owner of the per-pod proxies of shared (in-pod) mode, driven by the ZDS client (reference
 * ztunnel.md §1.3). For each pod UID it keeps the pod's netns fd and its running proxy, or the reason
 * the proxy could not start (then the pod stays pending and is retried every 5 s).
 *
 * Snapshot: on each connection the node agent re-announces every pod (Add or Keep), then sends
 * SnapshotSent; the proxies of pods not mentioned since the connection started are drained then.
 * The readiness task `workload proxy manager` clears once the snapshot is complete and no pod is
 * pending, and is re-armed when the connection is lost.
 *
 * The decisions are the pure functions at the top; the class applies them. Calls are serialized, so a
 * retry never races an Add or Del for the same pod.
 */

export const WORKLOAD_PROXY_MANAGER_TASK = 'workload proxy manager';
const DEFAULT_RETRY_MS = 5000;

/** The uids whose proxies go at SnapshotSent: known here but not mentioned (Add/Keep) since the connection started. */
export function uidsToDrain(known: Iterable<string>, mentioned: ReadonlySet<string>): string[] {
  return [...known].filter((uid) => !mentioned.has(uid)).sort();
}

/** What an Add does to a uid: start it, replace the proxy (new netns), or nothing (same netns; retry if still pending). */
export type AddDecision = 'start' | 'replace' | 'unchanged' | 'retry';

export function addDecision(existing: { readonly netns: string; readonly up: boolean } | undefined, netns: string): AddDecision {
  if (!existing) return 'start';
  if (existing.netns !== netns) return 'replace';
  return existing.up ? 'unchanged' : 'retry';
}

/** Whether the readiness task can clear: the snapshot is complete and no proxy is pending. */
export function managerReady(snapshotSent: boolean, pending: number): boolean {
  return snapshotSent && pending === 0;
}

/** The two lookups that find a pod in the mesh state (the WorkloadStore has both). */
export interface PodLookup extends Pick<StateReader, 'workloadByUid'> {
  workloadByName(namespace: string, name: string): Workload | undefined;
}

/** A per-pod proxy's handle, as the manager needs it. */
export type PodProxy = Handle;

export interface StartPodProxy {
  readonly uid: string;
  readonly identity: SpiffeId;
  readonly info: ZdsWorkloadInfo;
  /** The pod as the mesh state has it now (by namespace/name, else by uid). */
  readonly workload: () => Workload | undefined;
  /** The pod's network namespace (owned by the manager; open while the proxy runs). */
  readonly netnsFd: number;
}

/** The namespace operations the manager needs (the sys module in production; fakes in unit tests). */
export interface NetnsHandles {
  /** `<dev>:<ino>` of the namespace behind `fd`. */
  inode(fd: number): string;
  close(fd: number): void;
}

export interface ProxyManagerOptions {
  readonly trustDomain: string;
  readonly state: PodLookup;
  /** Starts one pod's proxy (listeners bound inside `netnsFd`); rejects when it cannot. */
  readonly startProxy: (request: StartPodProxy) => Promise<PodProxy>;
  readonly netns: NetnsHandles;
  readonly readiness: Readiness;
  readonly logger: Logger;
  /** How often pending pods are retried (ztunnel: 5 s). */
  readonly retryMs?: number;
}

export interface WorkloadStateDump {
  readonly state: 'Pending' | 'Up';
  readonly info: ZdsWorkloadInfo;
  readonly error?: string;
}

interface Entry {
  readonly uid: string;
  readonly info: ZdsWorkloadInfo;
  readonly netnsFd: number;
  readonly netns: string;
  proxy: PodProxy | undefined;
  error: string | undefined;
}

export class ProxyManager implements Handle {
  readonly #options: ProxyManagerOptions;
  readonly #log: Logger;
  readonly #entries = new Map<string, Entry>();
  /** Proxies being drained in the background (Del, replaced, not in the snapshot). */
  readonly #draining = new Set<Promise<void>>();
  #queue: Promise<unknown> = Promise.resolve();
  #mentioned = new Set<string>();
  #snapshotSent = false;
  #markReady: (() => void) | undefined;
  #retry: NodeJS.Timeout | undefined;
  #closed = false;
  readonly close: () => Promise<void>;

  constructor(options: ProxyManagerOptions) {
    this.#options = options;
    this.#log = options.logger.child({ component: 'proxy-manager' });
    this.#markReady = options.readiness.register(WORKLOAD_PROXY_MANAGER_TASK);
    this.close = onceClose(() => this.#close());
  }

  /** A new ZDS connection: the snapshot starts over. */
  connectionStarted(): void {
    this.#mentioned = new Set();
    this.#snapshotSent = false;
  }

  /** The ZDS connection was lost: readiness is pending again until the next snapshot. */
  connectionLost(): void {
    this.#snapshotSent = false;
    this.#markReady ??= this.#options.readiness.register(WORKLOAD_PROXY_MANAGER_TASK);
  }

  /**
   * AddWorkload. Takes ownership of `netnsFd`. Resolves with undefined (ACK) or the text of why the proxy
   * could not start (NACK; the pod stays pending and is retried).
   */
  add(uid: string, info: ZdsWorkloadInfo, netnsFd: number): Promise<string | undefined> {
    return this.#serial(async () => {
      this.#mentioned.add(uid);
      if (this.#closed) {
        this.#closeFd(netnsFd);
        return 'ztunnel is shutting down';
      }
      let netns: string;
      try {
        netns = this.#options.netns.inode(netnsFd);
      } catch (err) {
        this.#closeFd(netnsFd);
        return `cannot inspect the network namespace of ${uid}: ${errorMessage(err)}`;
      }
      const existing = this.#entries.get(uid);
      const decision = addDecision(existing && { netns: existing.netns, up: existing.proxy !== undefined }, netns);
      if (existing && (decision === 'unchanged' || decision === 'retry')) {
        this.#closeFd(netnsFd); // the same namespace: keep the fd we have
        if (decision === 'unchanged') return undefined;
        return this.#start(existing);
      }
      if (existing) {
        this.#log.info({ uid, name: info.name, namespace: info.namespace }, 'pod network namespace changed: replacing its proxy');
        this.#entries.delete(uid);
        this.#drainInBackground(existing);
      }
      const entry: Entry = { uid, info, netnsFd, netns, proxy: undefined, error: undefined };
      this.#entries.set(uid, entry);
      return this.#start(entry);
    });
  }

  /** KeepWorkload (only before SnapshotSent; the ZDS client enforces that): the pod stays. */
  keep(uid: string): Promise<string | undefined> {
    return this.#serial(async () => {
      this.#mentioned.add(uid);
      return undefined;
    });
  }

  /** DelWorkload: the pod's proxy drains (in the background, up to the termination deadline), then its netns fd closes. */
  del(uid: string): Promise<string | undefined> {
    return this.#serial(async () => {
      this.#mentioned.delete(uid);
      const entry = this.#entries.get(uid);
      if (entry) {
        this.#entries.delete(uid);
        this.#log.info({ uid, name: entry.info.name, namespace: entry.info.namespace }, 'pod removed: draining its proxy');
        this.#drainInBackground(entry);
      }
      this.#updateReadiness();
      return undefined;
    });
  }

  /** SnapshotSent: drains the pods not mentioned since the connection started; readiness may clear. */
  snapshotSent(): Promise<string | undefined> {
    return this.#serial(async () => {
      this.#snapshotSent = true;
      for (const uid of uidsToDrain(this.#entries.keys(), this.#mentioned)) {
        const entry = this.#entries.get(uid)!;
        this.#entries.delete(uid);
        this.#log.info({ uid, name: entry.info.name, namespace: entry.info.namespace }, 'pod not in the node agent snapshot: draining its proxy');
        this.#drainInBackground(entry);
      }
      this.#updateReadiness();
      return undefined;
    });
  }

  /** uid → state, for the admin's `workloadState`. */
  dump(): Record<string, WorkloadStateDump> {
    const out: Record<string, WorkloadStateDump> = {};
    for (const [uid, e] of [...this.#entries].sort(([a], [b]) => a.localeCompare(b))) {
      out[uid] = { state: e.proxy ? 'Up' : 'Pending', info: e.info, ...(e.error ? { error: e.error } : {}) };
    }
    return out;
  }

  /** How many pod proxies are up. */
  activeProxies(): number {
    let n = 0;
    for (const e of this.#entries.values()) if (e.proxy) n++;
    return n;
  }

  #serial<T>(fn: () => Promise<T>): Promise<T> {
    const run = this.#queue.then(fn, fn);
    this.#queue = run.catch(() => {});
    return run;
  }

  async #start(entry: Entry): Promise<string | undefined> {
    const { uid, info } = entry;
    const identity: SpiffeId = { trustDomain: this.#options.trustDomain, namespace: info.namespace, serviceAccount: info.serviceAccount };
    try {
      const proxy = await this.#options.startProxy({ uid, identity, info, workload: this.#lookup(uid, info), netnsFd: entry.netnsFd });
      if (this.#entries.get(uid) !== entry || this.#closed) {
        // Removed (or shut down) while starting: nothing may keep it.
        await proxy.close().catch(() => {});
        return undefined;
      }
      entry.proxy = proxy;
      entry.error = undefined;
      this.#log.info({ uid, name: info.name, namespace: info.namespace, identity: formatSpiffeId(identity) }, 'pod proxy started');
      this.#updateReadiness();
      return undefined;
    } catch (err) {
      entry.error = errorMessage(err);
      this.#log.error({ code: ErrorCode.PROXY_START_FAILED, uid, name: info.name, namespace: info.namespace, err: entry.error }, `pod proxy failed to start; retrying every ${this.#retryMs()} ms`);
      this.#scheduleRetry();
      this.#updateReadiness();
      return `failed to start the proxy for ${info.namespace}/${info.name}: ${entry.error}`;
    }
  }

  /** The pod in the mesh state: by namespace/name once found (a scan), then by the store's uid. */
  #lookup(zdsUid: string, info: ZdsWorkloadInfo): () => Workload | undefined {
    const state = this.#options.state;
    let storeUid: string | undefined;
    return () => {
      const byUid = storeUid === undefined ? undefined : state.workloadByUid(storeUid);
      if (byUid) return byUid;
      const found = state.workloadByName(info.namespace, info.name) ?? state.workloadByUid(zdsUid);
      storeUid = found?.uid;
      return found;
    };
  }

  #retryMs(): number {
    return this.#options.retryMs ?? DEFAULT_RETRY_MS;
  }

  #scheduleRetry(): void {
    if (this.#retry || this.#closed) return;
    this.#retry = setTimeout(() => {
      this.#retry = undefined;
      void this.#serial(async () => {
        for (const entry of [...this.#entries.values()]) if (!entry.proxy && !this.#closed) await this.#start(entry);
      });
    }, this.#retryMs());
    this.#retry.unref();
  }

  #updateReadiness(): void {
    let pending = 0;
    for (const e of this.#entries.values()) if (!e.proxy) pending++;
    if (this.#markReady && managerReady(this.#snapshotSent, pending)) {
      this.#markReady();
      this.#markReady = undefined;
    } else if (!this.#markReady && !managerReady(this.#snapshotSent, pending)) {
      this.#markReady = this.#options.readiness.register(WORKLOAD_PROXY_MANAGER_TASK);
    }
  }

  #drainInBackground(entry: Entry): void {
    const drained = (async () => {
      try {
        await entry.proxy?.close();
      } catch (err) {
        this.#log.warn({ uid: entry.uid, err: errorMessage(err) }, 'pod proxy drain failed');
      } finally {
        this.#closeFd(entry.netnsFd);
      }
    })();
    this.#draining.add(drained);
    void drained.finally(() => this.#draining.delete(drained));
  }

  #closeFd(fd: number): void {
    try {
      this.#options.netns.close(fd);
    } catch (err) {
      this.#log.warn({ fd, err: errorMessage(err) }, 'closing a pod network namespace fd failed');
    }
  }

  async #close(): Promise<void> {
    this.#closed = true;
    if (this.#retry) clearTimeout(this.#retry);
    this.#retry = undefined;
    await this.#serial(async () => {
      for (const entry of this.#entries.values()) this.#drainInBackground(entry);
      this.#entries.clear();
    });
    await Promise.allSettled([...this.#draining]);
  }
}

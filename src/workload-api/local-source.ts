import { EventEmitter } from 'node:events';
import { watch, type FSWatcher } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { ErrorCode } from '../core/error-codes.ts';
import { MeshError, errorCode, errorMessage } from '../core/errors.ts';
import { onceClose, type Handle } from '../core/lifecycle.ts';
import { silentLogger, type Logger } from '../core/logger.ts';
import { parseLocalConfig, type LocalConfig } from './local-config.ts';
import type { WorkloadStore } from './store.ts';

/** The part of the store the local source writes: it replaces everything on each load. */
export type LocalStoreWriter = Pick<WorkloadStore, 'clear' | 'upsertWorkload' | 'upsertService' | 'upsertPolicy'>;

export interface LocalSourceOptions {
  readonly store: LocalStoreWriter;
  /** `LOCAL_XDS_PATH`: a YAML file. Exactly one of `path` and `inline`. */
  readonly path?: string;
  /** `LOCAL_XDS`: the YAML itself. */
  readonly inline?: string;
  readonly logger?: Logger;
  /** Re-read `path` when its directory changes (ignored for `inline`). */
  readonly watch?: boolean;
  /** Quiet time after the last change before the file is read again. */
  readonly debounceMs?: number;
}

export interface LocalSourceEvents {
  /** A changed file was valid and now is the whole state. */
  reload: [config: LocalConfig];
  /** A changed file was invalid or unreadable; the previous state stays. */
  rejected: [errors: readonly string[]];
}

/** The initial local config was invalid: every problem, each with its field path. */
export class LocalConfigError extends MeshError {
  readonly errors: readonly string[];

  constructor(source: string, errors: readonly string[]) {
    super(ErrorCode.CONFIG_INVALID, `local config ${source} is invalid:\n  ${errors.join('\n  ')}`);
    this.errors = errors;
  }
}

/** Emits `reload` and `rejected` (LocalSourceEvents), so tests and callers can `await once(handle, 'reload')`. */
export interface LocalSourceHandle extends Handle, EventEmitter<LocalSourceEvents> {
  /** Successful loads after the first one. */
  readonly reloads: number;
  /** Changed files that were refused. */
  readonly rejections: number;
  /** Why the latest change was refused; empty when it applied. */
  readonly lastErrors: readonly string[];
  /** The config the store holds now. */
  readonly config: LocalConfig;
  /** True until close(), when started with `watch` and a path. */
  readonly watching: boolean;
}

/**
 * Loads ztunnel's local config (LOCAL_XDS_PATH or LOCAL_XDS, reference ztunnel.md §10.1) into the
 * workload store. Each load replaces the whole state, and only a valid file is applied: an invalid
 * initial file rejects with a LocalConfigError; an invalid change is logged (CONFIG_INVALID, one
 * line per problem) and the last good state stays.
 */
export function startLocalSource(options: LocalSourceOptions): Promise<LocalSourceHandle> {
  return LocalSource.start(options);
}

/** Writes a validated config into the store as the whole state (synchronous: no reader sees half of it). */
export function applyLocalConfig(store: LocalStoreWriter, config: LocalConfig): void {
  store.clear();
  for (const workload of config.workloads) store.upsertWorkload(workload);
  for (const service of config.services) store.upsertService(service);
  for (const policy of config.policies) store.upsertPolicy(policy);
}

class LocalSource extends EventEmitter<LocalSourceEvents> implements LocalSourceHandle {
  readonly #store: LocalStoreWriter;
  readonly #path: string | undefined;
  readonly #source: string;
  readonly #logger: Logger;
  readonly #debounceMs: number;
  #watcher: FSWatcher | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Reloads run one at a time, in order. */
  #running: Promise<void> = Promise.resolve();
  /** The last content read (valid or not): a change event with the same content is no change. */
  #lastText: string | undefined;
  #config: LocalConfig = { workloads: [], services: [], policies: [] };
  #reloads = 0;
  #rejections = 0;
  #lastErrors: readonly string[] = [];
  #closed = false;

  static async start(options: LocalSourceOptions): Promise<LocalSource> {
    if ((options.path === undefined) === (options.inline === undefined)) {
      throw new MeshError(ErrorCode.CONFIG_INVALID, 'local config: set exactly one of LOCAL_XDS_PATH and LOCAL_XDS');
    }
    const source = new LocalSource(options);
    try {
      await source.#init(options.watch === true, options.inline);
    } catch (err) {
      await source.close();
      throw err;
    }
    return source;
  }

  private constructor(options: LocalSourceOptions) {
    super();
    this.#store = options.store;
    this.#path = options.path;
    this.#source = options.path !== undefined ? `LOCAL_XDS_PATH ${options.path}` : 'LOCAL_XDS';
    this.#logger = (options.logger ?? silentLogger()).child({ component: 'local-config' });
    this.#debounceMs = options.debounceMs ?? 50;
  }

  get reloads(): number {
    return this.#reloads;
  }

  get rejections(): number {
    return this.#rejections;
  }

  get lastErrors(): readonly string[] {
    return this.#lastErrors;
  }

  get config(): LocalConfig {
    return this.#config;
  }

  get watching(): boolean {
    return this.#watcher !== undefined;
  }

  readonly close = onceClose(async () => {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#watcher?.close();
    this.#watcher = undefined;
    await this.#running;
  });

  async #init(watchFile: boolean, inline: string | undefined): Promise<void> {
    // Watch before the first read, so a change made during it is not missed. The directory is
    // watched, not the file: editors and Kubernetes ConfigMap mounts replace files by renaming.
    if (watchFile && this.#path !== undefined) {
      this.#watcher = watch(dirname(this.#path), { persistent: true }, () => this.#changed());
      this.#watcher.on('error', (err) => this.#logger.warn({ code: errorCode(err), err: errorMessage(err) }, 'local config watch failed'));
    }
    let text: string;
    if (inline !== undefined) {
      text = inline;
    } else {
      try {
        text = await readFile(this.#path as string, 'utf8');
      } catch (err) {
        throw new MeshError(ErrorCode.CONFIG_INVALID, `cannot read local config ${this.#source}: ${errorMessage(err)}`, { cause: err });
      }
    }
    this.#lastText = text;
    const parsed = parseLocalConfig(text);
    if (!parsed.ok) throw new LocalConfigError(this.#source, parsed.errors);
    this.#apply(parsed.value);
  }

  #changed(): void {
    if (this.#closed) return;
    clearTimeout(this.#timer);
    this.#timer = setTimeout(() => {
      this.#running = this.#running
        .then(() => this.#reload())
        .catch((err: unknown) => this.#logger.error({ code: errorCode(err), err: errorMessage(err) }, 'local config reload failed'));
    }, this.#debounceMs);
    this.#timer.unref();
  }

  async #reload(): Promise<void> {
    if (this.#closed || this.#path === undefined) return;
    let text: string;
    try {
      text = await readFile(this.#path, 'utf8');
    } catch (err) {
      if (this.#closed) return;
      this.#reject([`cannot read ${this.#path}: ${errorMessage(err)}`]);
      return;
    }
    if (this.#closed || text === this.#lastText) return;
    this.#lastText = text;
    const parsed = parseLocalConfig(text);
    if (!parsed.ok) {
      this.#reject(parsed.errors);
      return;
    }
    this.#apply(parsed.value);
    this.#reloads += 1;
    this.emit('reload', parsed.value);
  }

  #apply(config: LocalConfig): void {
    applyLocalConfig(this.#store, config);
    this.#config = config;
    this.#lastErrors = [];
    this.#logger.info(
      { source: this.#source, workloads: config.workloads.length, services: config.services.length, policies: config.policies.length },
      'local config applied',
    );
  }

  #reject(errors: readonly string[]): void {
    this.#rejections += 1;
    this.#lastErrors = errors;
    for (const error of errors) {
      this.#logger.warn({ code: ErrorCode.CONFIG_INVALID, source: this.#source, error }, 'local config rejected; keeping the previous state');
    }
    this.emit('rejected', errors);
  }
}

import { EventEmitter, once } from 'node:events';
import { setTimeout as sleep } from 'node:timers/promises';

/** Anything that holds resources: closing is graceful and idempotent. */
export interface Handle {
  close(): Promise<void>;
}

/** A handle that also owns a listening address. */
export interface ServerHandle extends Handle {
  address(): { readonly address: string; readonly port: number; readonly family: string };
}

/** Makes `close` idempotent: the first call runs it, later calls share its promise. */
export function onceClose(close: () => Promise<void>): () => Promise<void> {
  let closing: Promise<void> | undefined;
  return () => (closing ??= close());
}

/** Closes handles in the order given (children first), each awaited, collecting failures. */
export async function closeInOrder(handles: readonly Handle[]): Promise<void> {
  const failures: unknown[] = [];
  for (const handle of handles) {
    try {
      await handle.close();
    } catch (err) {
      failures.push(err);
    }
  }
  if (failures.length === 1) throw failures[0];
  if (failures.length > 1) throw new AggregateError(failures, 'several handles failed to close');
}

/**
 * One drain signal handed down to every connection. `start()` asks them to finish; each live task
 * (a connection, a stream) is tracked with `track()`; `drain(deadline)` resolves when all have
 * finished or the deadline passed, and reports whether any were left to be destroyed.
 */
export class Drain {
  readonly #events = new EventEmitter();
  readonly #live = new Set<object>();
  #draining = false;

  get draining(): boolean {
    return this.#draining;
  }

  get liveCount(): number {
    return this.#live.size;
  }

  /** Registers a task; the returned function marks it finished. */
  track(task: object): () => void {
    this.#live.add(task);
    return () => {
      if (this.#live.delete(task) && this.#live.size === 0) this.#events.emit('idle');
    };
  }

  /** Calls `listener` once when draining starts (at once if it already has). Returns an unsubscribe. */
  onDrain(listener: () => void): () => void {
    if (this.#draining) {
      queueMicrotask(listener);
      return () => {};
    }
    this.#events.once('drain', listener);
    return () => this.#events.off('drain', listener);
  }

  /** Starts draining and waits up to `deadlineMs`. Resolves true when every task finished in time. */
  async drain(deadlineMs: number): Promise<boolean> {
    if (!this.#draining) {
      this.#draining = true;
      this.#events.emit('drain');
    }
    if (this.#live.size === 0) return true;
    const controller = new AbortController();
    try {
      const finished = await Promise.race([
        once(this.#events, 'idle', { signal: controller.signal }).then(() => true),
        sleep(deadlineMs, false, { signal: controller.signal }),
      ]);
      return finished;
    } finally {
      controller.abort();
    }
  }
}

export interface ReadinessReport {
  readonly ready: boolean;
  readonly pending: readonly string[];
}

/** Readiness as a set of named tasks (`certificates`, `listeners`, `xds`); ready when none is pending. */
export class Readiness {
  readonly #pending = new Set<string>();
  readonly #events = new EventEmitter();

  /** Registers a pending task and returns the function that marks it done. */
  register(task: string): () => void {
    this.#pending.add(task);
    return () => this.markReady(task);
  }

  markReady(task: string): void {
    if (this.#pending.delete(task) && this.#pending.size === 0) this.#events.emit('ready');
  }

  report(): ReadinessReport {
    return { ready: this.#pending.size === 0, pending: [...this.#pending].sort() };
  }

  async whenReady(): Promise<void> {
    if (this.#pending.size === 0) return;
    await once(this.#events, 'ready');
  }
}

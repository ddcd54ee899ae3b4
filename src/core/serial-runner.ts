/**
 * Runs a task one at a time, coalescing requests: `run()` while the task runs queues exactly one more run (which
 * sees every change made meanwhile) and returns the current promise; `idle()` waits for whatever is running.
 * What re-reads a folder or reconciles files on each watch event uses it, so a burst of events costs two runs.
 */
export class SerialRunner {
  readonly #task: () => Promise<void>;
  readonly #stopped: () => boolean;
  #running: Promise<void> | undefined;
  #again = false;

  /** `stopped` ends the queued reruns (a closing owner). */
  constructor(task: () => Promise<void>, stopped: () => boolean = () => false) {
    this.#task = task;
    this.#stopped = stopped;
  }

  run(): Promise<void> {
    if (this.#running) {
      this.#again = true;
      return this.#running;
    }
    this.#running = (async () => {
      do {
        this.#again = false;
        await this.#task();
      } while (this.#again && !this.#stopped());
    })().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  /** Resolves when no run is in progress (a failed run counts as over). */
  async idle(): Promise<void> {
    await this.#running?.catch(() => {});
  }
}

export interface BackoffOptions {
  /** First delay after a failure, in milliseconds. */
  readonly initialMs: number;
  readonly maxMs: number;
  readonly multiplier?: number;
  /** Fraction of each delay randomised away or added, 0..1. */
  readonly jitter?: number;
  /** Injected for deterministic tests; returns [0, 1). */
  readonly random?: () => number;
}

/** Capped exponential backoff with jitter. One instance per retrying thing; `reset()` after a success. */
export class Backoff {
  readonly #options: Required<BackoffOptions>;
  #current: number;

  constructor(options: BackoffOptions) {
    this.#options = { multiplier: 2, jitter: 0, random: Math.random, ...options };
    this.#current = options.initialMs;
  }

  /** The delay to wait before the next attempt; each call grows the next one. */
  next(): number {
    const { maxMs, multiplier, jitter, random } = this.#options;
    const base = Math.min(this.#current, maxMs);
    this.#current = Math.min(this.#current * multiplier, maxMs);
    const spread = base * jitter * (random() * 2 - 1);
    return Math.max(0, Math.round(Math.min(base + spread, maxMs)));
  }

  reset(): void {
    this.#current = this.#options.initialMs;
  }
}

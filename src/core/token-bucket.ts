/**
 * A token bucket: `burst` tokens, refilled at `perSecond`. `take()` spends one token and says how long the
 * caller must wait before acting (0 while tokens are left), so queued work is spread out at the rate instead
 * of refused. The clock is injected for tests.
 */
export class TokenBucket {
  readonly #perSecond: number;
  readonly #burst: number;
  readonly #now: () => number;
  #tokens: number;
  #updated: number;

  constructor(perSecond: number, burst: number, now: () => number = Date.now) {
    if (!(perSecond > 0) || !(burst >= 1)) throw new RangeError('a token bucket needs perSecond > 0 and burst >= 1');
    this.#perSecond = perSecond;
    this.#burst = burst;
    this.#now = now;
    this.#tokens = burst;
    this.#updated = now();
  }

  /** Spends a token (possibly one not yet refilled) and returns the milliseconds until it is really there. */
  take(): number {
    const now = this.#now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#updated) / 1000) * this.#perSecond);
    this.#updated = now;
    this.#tokens -= 1;
    return this.#tokens >= 0 ? 0 : Math.ceil((-this.#tokens / this.#perSecond) * 1000);
  }
}

/**
 * The adaptive polling window both sides of a virtqueue use: the device watching the avail ring after
 * a completion for the driver's next request (src/transport/vhost-user/backend-polling.ts, also the
 * embedded device's threads), and the driver watching the used ring after a notify for the device's
 * completion (src/driver/completion-spin.ts). What they share, so that it is written once:
 *  - a moving average (weight 1/8) of the time the awaited event takes; each sample is clamped to 4x
 *    the bound, so that the average comes back under it within a few events after a slow one;
 *  - polling pays only while that average is under the bound;
 *  - the back-off: an episode that misses (nothing came within the window, or the polling thread was
 *    descheduled: a gap over PREEMPTED_MS between two checks) makes the following 1, 3, 7, ...
 *    2^maxBackoff - 1 episodes be skipped; a hit resets it.
 * Each side sizes its window from the average and runs its own episode loop.
 */

/** A gap this long between two polling checks means the polling thread was descheduled (a busy host). */
export const PREEMPTED_MS = 0.1;

export class AdaptiveWindow {
  /** The window's upper bound in ms (0: never poll). */
  readonly boundMs: number;
  readonly #maxBackoff: number;
  #averageMs = Infinity;
  #backoff = 0;
  #skips = 0;
  /** Episodes that found what they waited for / did not. */
  hits = 0;
  misses = 0;

  /** `boundMs` >= 0 (checked by the caller, which names its own option); `maxBackoff` 0..30. */
  constructor(boundMs: number, maxBackoff: number) {
    if (!Number.isInteger(maxBackoff) || maxBackoff < 0 || maxBackoff > 30) throw new RangeError(`maxBackoff must be 0..30, got ${maxBackoff}`);
    this.boundMs = boundMs;
    this.#maxBackoff = maxBackoff;
  }

  /** The moving average (ms; Infinity before the first sample). */
  get averageMs(): number {
    return this.#averageMs;
  }

  /** Folds one sample (ms) into the moving average. */
  addSample(ms: number): void {
    const sample = Math.min(ms, 4 * this.boundMs);
    this.#averageMs = this.#averageMs === Infinity ? sample : this.#averageMs + (sample - this.#averageMs) / 8;
  }

  /** Is polling worth it now: a bound, and an average under it? */
  get worthPolling(): boolean {
    return this.boundMs > 0 && this.#averageMs < this.boundMs;
  }

  /** True if this episode is skipped (backing off after misses); consumes the skip. */
  skipEpisode(): boolean {
    if (this.#skips === 0) return false;
    this.#skips--;
    return true;
  }

  /** Records an episode's outcome and returns it: a hit resets the back-off, a miss grows it. */
  outcome(hit: boolean): boolean {
    if (hit) {
      this.hits++;
      this.#backoff = 0;
    } else {
      this.misses++;
      this.#backoff = Math.min(this.#backoff + 1, this.#maxBackoff);
      this.#skips = (1 << this.#backoff) - 1;
    }
    return hit;
  }
}

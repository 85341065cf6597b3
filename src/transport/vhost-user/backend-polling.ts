/**
 * The back-end's adaptive polling after a completion, as a pure state machine: the clock and the
 * "yield the CPU" call are injected, so its decisions are unit-tested with a fake clock
 * (test/transport/backend-polling.test.ts) and the connection wires in performance.now() and
 * sched_yield(2).
 *
 * After a completion the connection may watch the avail rings for the front-end's next request
 * for a short window (notifications still disabled, so the front-end does not kick) instead of
 * sleeping in poll(2): a guest running one AF_ALG request at a time saves a kick (an MMIO exit) and
 * we save a wake-up. Rules:
 *  - the window is twice the moving average of the gaps between a completion and the next request,
 *    capped at the bound (`--poll-us`); nothing is polled while requests come slower than the
 *    bound, nor when idle (an episode only follows a completion);
 *  - an episode ends after MAX_POLL_EPISODE_MS even if requests keep coming (control messages wait
 *    meanwhile);
 *  - on a busy host polling competes with the threads that produce the next request: an episode
 *    that finds nothing, or in which this thread was descheduled (a gap between two checks longer
 *    than PREEMPTED_MS), is a miss, and consecutive misses skip the next 1, 3, 7, ... 63
 *    completions' episodes (any hit resets that back-off).
 */

/**
 * Default bound of the polling window after a completion. A TCG guest running one AF_ALG request
 * at a time submits its next request ~125-150 µs after our interrupt at 4 KiB, ~300 µs at 16 KiB,
 * ~520 µs at 64 KiB (measured). Polling saves the guest's kick (an MMIO exit, then the vCPU halts)
 * and our wake-up (on this 2-vCPU VM, an IPI to a halted vCPU): ~75 µs per 4 KiB request
 * (`vcrypto vm --bench`: +30% ops/s at 4 KiB). At 64 KiB a 400 µs bound did not poll; 1000 µs
 * does, and gave +5% ops/s (4 interleaved pairs of 5 s runs: mean 1662 vs 1577 ops/s) for about
 * 330 µs more device CPU per request. Requests that come slower than this are not polled for,
 * nor is an idle connection (the window only follows a completion); `--poll-us 0` turns it off.
 */
export const DEFAULT_POLL_MICROS = 1000;

/** One polling episode ends after this long even if requests keep coming (control messages wait). */
export const MAX_POLL_EPISODE_MS = 2;
/** A gap this long between two polling checks means this thread was descheduled (a busy host). */
export const PREEMPTED_MS = 0.1;
/** Consecutive missed episodes skip up to 2^this - 1 of the following ones. */
export const MAX_POLL_BACKOFF = 6;

export interface PollingEnvironment {
  /** Milliseconds, monotonic (performance.now()). */
  readonly now: () => number;
  /** Gives the CPU away between two checks (sched_yield(2)). */
  readonly yieldCpu: () => void;
  /** May a CPU be spent polling now (src/transport/spare-cpu.ts)? Default: always. */
  readonly cpuSpare?: () => boolean;
}

export class AdaptivePolling {
  readonly #boundMs: number;
  readonly #env: PollingEnvironment;
  #gapAverageMs = Infinity;
  #lastCompletionMs = -1;
  #backoff = 0;
  #skips = 0;
  /** Episodes that found work / ran out. */
  hits = 0;
  misses = 0;

  readonly #maxBackoff: number;

  /**
   * `boundMicros`: the window's upper bound (0: never poll). `maxBackoff`: consecutive misses skip
   * up to 2^maxBackoff - 1 episodes (default MAX_POLL_BACKOFF).
   */
  constructor(boundMicros: number, env: PollingEnvironment, maxBackoff = MAX_POLL_BACKOFF) {
    if (!Number.isFinite(boundMicros) || boundMicros < 0) throw new RangeError(`pollMicros must be >= 0, got ${boundMicros}`);
    if (!Number.isInteger(maxBackoff) || maxBackoff < 0 || maxBackoff > 30) throw new RangeError(`maxBackoff must be 0..30, got ${maxBackoff}`);
    this.#boundMs = boundMicros / 1000;
    this.#env = env;
    this.#maxBackoff = maxBackoff;
  }

  /** The moving average of request gaps (ms; Infinity before the first one). */
  get gapAverageMs(): number {
    return this.#gapAverageMs;
  }

  /** Requests were completed just now. */
  noteCompletion(): void {
    this.#lastCompletionMs = this.#env.now();
  }

  /**
   * A request arrived (a kick, or a poll hit): fold the time since the previous completion into the
   * moving average that sizes the window. Gaps are clamped to 4x the bound so that the average comes
   * down within a few requests after an idle period.
   */
  noteRequest(): void {
    if (this.#lastCompletionMs < 0) return;
    const gap = Math.min(this.#env.now() - this.#lastCompletionMs, 4 * this.#boundMs);
    this.#gapAverageMs = this.#gapAverageMs === Infinity ? gap : this.#gapAverageMs + (gap - this.#gapAverageMs) / 8;
  }

  /**
   * One episode after a completion. `findWork()` looks at the rings (cheap: one avail.idx load each)
   * and returns a ring with work or -1; `serve(ring)` serves it and returns the chains completed
   * (it must call noteCompletion() when > 0). Returns when the window closes.
   */
  episode(findWork: () => number, serve: (ring: number) => number): void {
    const bound = this.#boundMs;
    if (bound === 0 || !(this.#gapAverageMs < bound)) return;
    if (this.#skips > 0) {
      this.#skips--;
      return;
    }
    const env = this.#env;
    if (env.cpuSpare !== undefined && !env.cpuSpare()) return;
    const window = Math.min(bound, 2 * this.#gapAverageMs);
    let prev = env.now();
    const episodeEnd = prev + MAX_POLL_EPISODE_MS;
    let deadline = this.#lastCompletionMs + window;
    for (;;) {
      const now = env.now();
      if (now >= deadline || now >= episodeEnd || now - prev > PREEMPTED_MS) {
        this.misses++;
        this.#backoff = Math.min(this.#backoff + 1, this.#maxBackoff);
        this.#skips = (1 << this.#backoff) - 1;
        return;
      }
      prev = now;
      const found = findWork();
      if (found < 0) {
        env.yieldCpu();
        continue;
      }
      this.hits++;
      this.#backoff = 0;
      this.noteRequest();
      if (serve(found) > 0) deadline = this.#lastCompletionMs + window;
      prev = env.now();
    }
  }
}

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
 * The average, the bound and the back-off are src/virtqueue/adaptive-window.ts, shared with the
 * driver's spin on the used ring.
 */
import { AdaptiveWindow, PREEMPTED_MS } from '../../virtqueue/adaptive-window.js';

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
  /** The average (completion to next request), the back-off, hits and misses. */
  readonly #window: AdaptiveWindow;
  readonly #env: PollingEnvironment;
  #lastCompletionMs = -1;

  /**
   * `boundMicros`: the window's upper bound (0: never poll). `maxBackoff`: consecutive misses skip
   * up to 2^maxBackoff - 1 episodes (default MAX_POLL_BACKOFF).
   */
  constructor(boundMicros: number, env: PollingEnvironment, maxBackoff = MAX_POLL_BACKOFF) {
    if (!Number.isFinite(boundMicros) || boundMicros < 0) throw new RangeError(`pollMicros must be >= 0, got ${boundMicros}`);
    this.#window = new AdaptiveWindow(boundMicros / 1000, maxBackoff);
    this.#env = env;
  }

  /** Episodes that found work / ran out. A productive episode counts a hit per find, then its end as a miss. */
  get hits(): number {
    return this.#window.hits;
  }

  get misses(): number {
    return this.#window.misses;
  }

  /** The moving average of request gaps (ms; Infinity before the first one). */
  get gapAverageMs(): number {
    return this.#window.averageMs;
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
    this.#window.addSample(this.#env.now() - this.#lastCompletionMs);
  }

  /**
   * One episode after a completion. `findWork()` looks at the rings (cheap: one avail.idx load each)
   * and returns a ring with work or -1; `serve(ring)` serves it and returns the chains completed
   * (it must call noteCompletion() when > 0). Returns when the window closes.
   */
  episode(findWork: () => number, serve: (ring: number) => number): void {
    const w = this.#window;
    if (!w.worthPolling) return;
    if (w.skipEpisode()) return;
    const env = this.#env;
    if (env.cpuSpare !== undefined && !env.cpuSpare()) return;
    const window = Math.min(w.boundMs, 2 * w.averageMs);
    let prev = env.now();
    const episodeEnd = prev + MAX_POLL_EPISODE_MS;
    let deadline = this.#lastCompletionMs + window;
    for (;;) {
      const now = env.now();
      if (now >= deadline || now >= episodeEnd || now - prev > PREEMPTED_MS) {
        w.outcome(false);
        return;
      }
      prev = now;
      const found = findWork();
      if (found < 0) {
        env.yieldCpu();
        continue;
      }
      w.outcome(true);
      this.noteRequest();
      if (serve(found) > 0) deadline = this.#lastCompletionMs + window;
      prev = env.now();
    }
  }
}

/**
 * The driver's spin-then-sleep on the used rings, as a pure state machine (the clock is injected,
 * so its decisions are unit-tested with a fake clock: test/driver/completion-spin.test.ts).
 *
 * After the driver publishes a request, it may watch the used rings for a short window (interrupts
 * suppressed, so the device does not signal) instead of waiting for the interrupt: at depth 1 the
 * completion then costs neither the device's notification nor the driver's wake-up through the
 * event loop. Rules (the vhost-user back-end's AdaptivePolling, from the driver's side):
 *  - the window is twice the moving average of the time from publishing a request to seeing a
 *    completion, capped at the bound; nothing is polled while completions come slower than the
 *    bound (a large request: the event loop is better used meanwhile);
 *  - only with few requests in flight (at most SPIN_MAX_IN_FLIGHT): with more, completions come
 *    by themselves and a spinning main thread would take a CPU from the device threads;
 *  - the event loop must run: spinning episodes that follow each other within one macrotask (the
 *    caller's next request is submitted from the completion's promise reactions) stop after
 *    MAX_SYNC_RUN_MS, and the next publish waits for its interrupt (the caller's `runEnded()`,
 *    from a setImmediate, starts a new run);
 *  - it spins only while the transport says a CPU can be spared (src/transport/spare-cpu.ts); on
 *    a busy machine (more threads runnable than CPUs) a transport that can block on its interrupt
 *    (`waitForInterrupt`: a futex, a poll(2)) sleeps in it for the window instead: no CPU spent,
 *    and the completion skips the event loop's wake-up;
 *  - on a busy machine spinning competes with the device threads it waits for: an episode that
 *    finds nothing within its window, or in which this thread was descheduled (a gap between two
 *    checks longer than PREEMPTED_MS), is a miss, and consecutive misses skip the next 1, then 3
 *    episodes (MAX_SPIN_BACKOFF; a hit resets the back-off).
 * The average, the bound and the back-off are src/virtqueue/adaptive-window.ts, shared with the
 * device side's polling.
 */

import { AdaptiveWindow, PREEMPTED_MS } from '../virtqueue/adaptive-window.js';

/** At most this many requests in flight for the driver to spin. */
export const SPIN_MAX_IN_FLIGHT = 2;
/** Spinning episodes back to back (no macrotask boundary between them) stop after this long. */
export const MAX_SYNC_RUN_MS = 4;
/** Consecutive misses skip up to 2^this - 1 of the following episodes. */
export const MAX_SPIN_BACKOFF = 2;

export class CompletionSpin {
  /** The average (publish to completion), the back-off, hits and misses (src/virtqueue/adaptive-window.ts). */
  readonly #window: AdaptiveWindow;
  readonly #now: () => number;
  readonly #cpuSpare: () => boolean;
  #publishedAt = -1;
  #runStart = -1;

  /** `boundMicros`: the window's upper bound (0: never spin); `cpuSpare`: may a CPU be spent spinning now? */
  constructor(boundMicros: number, now: () => number, cpuSpare: () => boolean = () => true) {
    if (!Number.isFinite(boundMicros) || boundMicros < 0) throw new RangeError(`spin bound must be >= 0 us, got ${boundMicros}`);
    this.#window = new AdaptiveWindow(boundMicros / 1000, MAX_SPIN_BACKOFF);
    this.#now = now;
    this.#cpuSpare = cpuSpare;
  }

  /** Episodes that saw a completion / did not. */
  get hits(): number {
    return this.#window.hits;
  }

  get misses(): number {
    return this.#window.misses;
  }

  /** The moving average of publish-to-completion times (ms; Infinity before the first one). */
  get latencyAverageMs(): number {
    return this.#window.averageMs;
  }

  /** Requests were published just now. */
  notePublished(): void {
    this.#publishedAt = this.#now();
  }

  /**
   * A completion was seen (by spinning or by interrupt): folds the time since the last publish into
   * the average (clamped to 4x the bound, so it comes down within a few requests after a slow one).
   */
  noteCompletion(): void {
    if (this.#publishedAt < 0) return;
    this.#window.addSample(this.#now() - this.#publishedAt);
    this.#publishedAt = -1;
  }

  /** A macrotask boundary passed (the event loop ran): a new run of episodes may start. */
  runEnded(): void {
    this.#runStart = -1;
  }

  /**
   * Should an episode start now with `inFlight` requests in flight? Returns its window in ms (0: no).
   * `newRun` is called when this starts a run of episodes (the caller schedules runEnded()).
   */
  window(inFlight: number, newRun: () => void): number {
    const w = this.#window;
    if (inFlight === 0 || inFlight > SPIN_MAX_IN_FLIGHT || !w.worthPolling) return 0;
    if (w.skipEpisode()) return 0;

    const now = this.#now();
    if (this.#runStart < 0) {
      this.#runStart = now;
      newRun();
    } else if (now - this.#runStart > MAX_SYNC_RUN_MS) {
      return 0; // let the event loop run; runEnded() comes from there
    }
    return Math.min(w.boundMs, 2 * w.averageMs + 0.002);
  }

  /** May this episode spin (a CPU to spare), or should it sleep? */
  cpuSpare(): boolean {
    return this.#cpuSpare();
  }

  /**
   * One sleeping episode, for a busy machine: `wait(ms)` blocks this thread until a used-buffer
   * notification comes (and delivers it: true) or the window closes (false). No CPU is spent; the
   * event loop waits as it would while spinning. Hits and misses count as for spinning.
   */
  sleepEpisode(windowMs: number, wait: (ms: number) => boolean): boolean {
    return this.#window.outcome(wait(windowMs));
  }

  /**
   * One episode: calls `check()` (true: completions are there) until it succeeds or the window
   * closes. True on a hit (the caller reaps), false on a miss.
   */
  episode(windowMs: number, check: () => boolean): boolean {
    const now = this.#now;
    const start = now();
    let prev = start;
    for (;;) {
      if (check()) return this.#window.outcome(true);
      const t = now();
      if (t - start >= windowMs || t - prev > PREEMPTED_MS) return this.#window.outcome(false);
      prev = t;
    }
  }
}

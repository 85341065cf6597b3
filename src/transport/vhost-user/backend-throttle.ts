/**
 * Per-connection QoS (`--throttle-ops N`, `--throttle-bps N`: QEMU cryptodev's option names) as
 * token buckets, pure (the clock is injected; test/transport/backend-throttle.test.ts).
 *
 * Each bucket refills at `rate` tokens per second up to BURST_SECONDS worth of tokens. A request
 * may start while a bucket is not in debt (tokens > 0) and then takes its cost (1 for ops, its
 * source bytes for bps), possibly going into debt: a request larger than the burst is still served,
 * and the debt delays the next ones, so the long-run rate is exactly `rate`. Requests over the limit
 * are never dropped or failed: the serving routine stops popping (they stay in the ring), and the
 * connection sleeps until waitMs() has passed (its kick and socket fds still wake it).
 */

/** Burst: this many seconds of the rate may be used at once after an idle period. */
export const BURST_SECONDS = 0.02;

export class TokenBucket {
  readonly rate: number;
  readonly capacity: number;
  #tokens: number;
  #last: number;
  readonly #now: () => number;

  /** `rate` per second (> 0); `now` in milliseconds. */
  constructor(rate: number, now: () => number) {
    if (!(rate > 0) || !Number.isFinite(rate)) throw new RangeError(`rate must be > 0, got ${rate}`);
    this.rate = rate;
    this.capacity = Math.max(1, rate * BURST_SECONDS);
    this.#tokens = this.capacity;
    this.#now = now;
    this.#last = now();
  }

  #refill(): void {
    const t = this.#now();
    this.#tokens = Math.min(this.capacity, this.#tokens + ((t - this.#last) * this.rate) / 1000);
    this.#last = t;
  }

  /** May a request start now? */
  ready(): boolean {
    if (this.#tokens > 0) return true;
    this.#refill();
    return this.#tokens > 0;
  }

  /** A request of `cost` started. */
  take(cost: number): void {
    this.#refill();
    this.#tokens -= cost;
  }

  /** Milliseconds until ready() (0 if ready now). */
  waitMs(): number {
    this.#refill();
    return this.#tokens > 0 ? 0 : (-this.#tokens * 1000) / this.rate + 0.001;
  }
}

/** Both limits of one connection (either may be absent). */
export class ConnectionThrottle {
  readonly #ops: TokenBucket | null;
  readonly #bytes: TokenBucket | null;

  constructor(opts: { readonly ops?: number; readonly bps?: number }, now: () => number) {
    this.#ops = opts.ops ? new TokenBucket(opts.ops, now) : null;
    this.#bytes = opts.bps ? new TokenBucket(opts.bps, now) : null;
  }

  ready(): boolean {
    return (this.#ops === null || this.#ops.ready()) && (this.#bytes === null || this.#bytes.ready());
  }

  take(bytes: number): void {
    this.#ops?.take(1);
    this.#bytes?.take(bytes);
  }

  waitMs(): number {
    return Math.max(this.#ops?.waitMs() ?? 0, this.#bytes?.waitMs() ?? 0);
  }
}

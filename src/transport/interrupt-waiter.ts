/**
 * Waiting for used-buffer notifications, shared by the transports whose interrupts are file
 * descriptors (the vhost-user front-end's call eventfds, the PCI transport's VFIO/uio interrupt fd).
 *
 * One poll(2) at a time runs on a koffi async thread (the event loop stays free), on a private wake
 * eventfd plus the transport's fds, and only while the driver has work in flight (`hold()` /
 * `release()`): an idle device lets the process exit. After the last release the wait lingers
 * briefly, because a synchronous caller (depth 1) submits its next request within microseconds and
 * restarting the wait for every request would double its latency. Ownership: the waiter owns its wake
 * eventfd (closed by close()); the transport's fds are borrowed.
 */
import { performance } from 'node:perf_hooks';
import { createEventFd, signalEventFd, drainEventFd, closeFd, pollAsync, POLLIN, type PollRequest } from '../sys/fd.js';

/** How long the wait outlives the last request in flight. */
export const IDLE_LINGER_MS = 20;

export interface WaiterHooks {
  /** May the wait run now (the transport is started and has not failed)? */
  ready(): boolean;
  /** The fds to wait on (besides the wake fd), built for each wait. */
  fds(): PollRequest[];
  /** poll(2)'s timeout in ms (-1: wait for an event). */
  timeoutMs(): number;
  /** The revents of fds() (same order; all 0 after a timeout). */
  handle(revents: readonly number[]): void;
  /** The wait failed (a poll error, or `handle` threw): the transport has failed. */
  onError(error: Error): void;
}

export class InterruptWaiter {
  readonly #hooks: WaiterHooks;
  readonly #wakeFd = createEventFd();
  #holds = 0;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #releasedAt = 0;
  #loop: Promise<void> | undefined;
  #closed = false;

  constructor(hooks: WaiterHooks) {
    this.#hooks = hooks;
  }

  /** Is work in flight (a hold() not yet released)? */
  get held(): boolean {
    return this.#holds > 0;
  }

  /** Work is in flight: wait for interrupts. Nested. */
  hold(): void {
    this.#holds++;
    // A linger timer still armed is left alone: it finds the waiter held (or released again more
    // recently) when it fires. At depth 1 the driver holds and releases on every request, and a
    // timer created and cleared each time was a measurable share of a request in a TCG guest.
    this.start();
  }

  /** No work in flight: stop waiting after the linger, so an idle process can exit. */
  release(): void {
    if (this.#holds > 0) this.#holds--;
    if (this.#holds > 0 || this.#loop === undefined) return;
    this.#releasedAt = performance.now();
    if (this.#idleTimer === undefined) this.#armLinger(IDLE_LINGER_MS);
  }

  #armLinger(ms: number): void {
    this.#idleTimer = setTimeout(this.#lingerEnded, ms);
    this.#idleTimer.unref();
  }

  readonly #lingerEnded = (): void => {
    this.#idleTimer = undefined;
    if (this.#holds > 0 || this.#closed) return; // held again: the next release re-arms it
    const left = IDLE_LINGER_MS - (performance.now() - this.#releasedAt);
    if (left >= 1) this.#armLinger(left); // released again since: linger from that release
    else signalEventFd(this.#wakeFd);
  };

  /** Starts the wait if work is held and none runs (e.g. once the transport has become ready). */
  start(): void {
    if (this.#loop === undefined && this.#holds > 0 && !this.#closed && this.#hooks.ready()) this.#loop = this.#run();
  }

  /** Ends the wait (and waits for it), then closes the wake eventfd. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#idleTimer !== undefined) clearTimeout(this.#idleTimer);
    signalEventFd(this.#wakeFd);
    await this.#loop;
    closeFd(this.#wakeFd);
  }

  async #run(): Promise<void> {
    try {
      while (!this.#closed && this.#hooks.ready() && (this.#holds > 0 || this.#idleTimer !== undefined)) {
        const revents = await pollAsync([{ fd: this.#wakeFd, events: POLLIN }, ...this.#hooks.fds()], this.#hooks.timeoutMs());
        if ((revents[0] ?? 0) !== 0) drainEventFd(this.#wakeFd);
        if (this.#closed) return;
        this.#hooks.handle(revents.slice(1));
      }
    } catch (err) {
      this.#hooks.onError(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.#loop = undefined;
      // A hold() that raced with the end of the loop restarts it.
      this.start();
    }
  }
}

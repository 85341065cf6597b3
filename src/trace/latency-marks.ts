/**
 * Timestamps of the stages of ONE request's round trip, for `bench/breakdown.ts` (where each
 * microsecond of a depth-1 round trip goes). Off by default: until `installMarks()` is called in a
 * thread, `mark()` is one test of a module variable. When installed, every thread that takes part
 * (the driver's main thread, each device worker) writes CLOCK_MONOTONIC nanoseconds
 * (process.hrtime, one clock for every thread and process) into the same shared Float64Array,
 * one slot per stage: the last request to pass a stage overwrites it, so the marks describe a
 * round trip only when one request is in flight at a time (depth 1).
 */

/** The stages, in the order a request passes them (slot index in the shared array). */
export const MARK = {
  /** The caller is about to call the session API (set by the measuring script). */
  CALL: 0,
  /** Driver: the request is in guest memory and on a descriptor chain (not yet published). */
  SUBMITTED: 1,
  /** Driver: the batching microtask runs (publishes avail.idx, then kicks). */
  FLUSH: 2,
  /** Driver: the kick has been sent (doorbell rung / kick eventfd written). */
  KICKED: 3,
  /** Device thread: awake (or its polling found the request) and about to serve the queue. */
  DEVICE_AWAKE: 4,
  /** Device: the chain is popped, about to be processed (request parsed, crypto, result and status written). */
  PROCESS_START: 5,
  /** Device: processed (the used element not yet added). */
  PROCESS_END: 6,
  /** Device: used.idx published and the interrupt raised. */
  INTERRUPT_RAISED: 7,
  /** Driver: a completion is noticed (interrupt delivered, or found by polling the used ring). */
  COMPLETION_SEEN: 8,
  /** Driver: the request's result decoded and its promise resolved. */
  RESOLVED: 9,
  /** The caller's `await` returned (set by the measuring script). */
  RETURNED: 10,
} as const;

export const MARK_SLOTS = 16;

let marks: Float64Array | null = null;

/** A buffer for installMarks(), shared with the other threads that should record. */
export function createMarkBuffer(): SharedArrayBuffer {
  return new SharedArrayBuffer(MARK_SLOTS * Float64Array.BYTES_PER_ELEMENT);
}

/** Starts recording in this thread into `buffer` (null: stop). */
export function installMarks(buffer: SharedArrayBuffer | null): void {
  marks = buffer === null ? null : new Float64Array(buffer);
}

/** Is recording on in this thread? */
export function marking(): boolean {
  return marks !== null;
}

/** Records stage `point` now (nothing when recording is off). */
export function mark(point: number): void {
  if (marks !== null) marks[point] = Number(process.hrtime.bigint());
}

/**
 * The embedded transport's register block: a small Int32Array on a SharedArrayBuffer shared by the
 * driver (main thread) and the device (worker thread). It plays the part of virtio-pci's notify and
 * ISR registers; everything rarer (status, features, queue addresses) travels as messages.
 *
 * Memory ordering: every access below is an Atomics operation (sequentially consistent), so a
 * kick published with `Atomics.add` after the driver wrote `avail.idx` is ordered after that write,
 * and an interrupt raised after the device wrote `used.idx` is ordered after it (VIRTIO 1.2 §2.7.13:
 * "the driver MUST perform a suitable memory barrier before ... notify").
 */

export const Register = {
  /** Doorbell sequence: bumped by the driver on every kick or control message; the device waits on it. */
  DOORBELL: 0,
  /** Bit i set = queue i was kicked (available-buffer notification, VIRTIO 1.2 §2.9). */
  KICK_PENDING: 1,
  /** Interrupt sequence: bumped by the device when it raises a used-buffer notification. */
  INTERRUPT: 2,
  /** Bit i set = queue i has used buffers to look at (like virtio-pci's ISR, per queue). */
  INTERRUPT_PENDING: 3,
  /** Set to 1 by the driver side to ask the device loop to stop. */
  STOP: 4,
  /** Bumped by the driver side after posting a control message: the device drains its port only then. */
  MESSAGES: 5,
  /** 1 while the driver thread blocks in Atomics.wait on SYNC_INTERRUPT (waitForInterrupt). */
  SYNC_WAITING: 6,
  /** Interrupt sequence for that blocking wait (the event loop's INTERRUPT is not bumped then). */
  SYNC_INTERRUPT: 7,
  /** Doorbells of device threads 1..MAX_DEVICE_THREADS-1 (thread 0 uses DOORBELL), see doorbellWord(). */
  DOORBELL_THREAD_1: 8,
} as const;

/** Device threads at most (one per data queue, up to this many; thread 0 also serves the controlq). */
export const MAX_DEVICE_THREADS = 8;

/** The doorbell word of device thread `thread`. */
export function doorbellWord(thread: number): number {
  return thread === 0 ? Register.DOORBELL : Register.DOORBELL_THREAD_1 + thread - 1;
}

/**
 * Which device thread serves queue `index`: the control queue (index `controlIndex`) is thread 0's,
 * data queue i is thread (i mod threads)'s.
 */
export function queueThread(index: number, controlIndex: number, threads: number): number {
  return index === controlIndex ? 0 : index % threads;
}

/** Number of Int32 words in the register block (rounded up for cache-line separation). */
export const REGISTER_WORDS = 16;

/** Queues are addressed by bit in a 32-bit mask: at most 31 data queues plus the control queue. */
export const MAX_QUEUES = 32;

export function createRegisterBlock(): Int32Array {
  return new Int32Array(new SharedArrayBuffer(REGISTER_WORDS * Int32Array.BYTES_PER_ELEMENT));
}

/**
 * Driver side: available-buffer notification for queue `index`, on the doorbell word of the device
 * thread that serves it (default: thread 0's). Never blocks.
 */
export function ringDoorbell(regs: Int32Array, index: number, word: number = Register.DOORBELL): void {
  Atomics.or(regs, Register.KICK_PENDING, 1 << index);
  Atomics.add(regs, word, 1);
  Atomics.notify(regs, word, 1);
}

/** Driver side: wake the device for a control message without kicking a queue. */
export function wakeDevice(regs: Int32Array): void {
  Atomics.add(regs, Register.MESSAGES, 1); // after postMessage: the device that sees it finds the message
  Atomics.add(regs, Register.DOORBELL, 1);
  Atomics.notify(regs, Register.DOORBELL, 1);
}

/**
 * Device side: used-buffer notification for the queues in `mask`. If bits were already pending, an
 * earlier notification has not been taken yet: the driver will collect these bits with it (it clears
 * INTERRUPT_PENDING with one exchange after waking), so the costly wake-up is skipped.
 */
export function raiseInterrupt(regs: Int32Array, mask: number): void {
  if (Atomics.or(regs, Register.INTERRUPT_PENDING, mask) !== 0) return;
  // The driver blocks in Atomics.wait for it (a short window after it submitted): wake only that
  // wait, a futex wake, rather than the event loop's Atomics.waitAsync (a task posted to the event
  // loop). The driver sets SYNC_WAITING and then re-checks INTERRUPT_PENDING; we set the bit and then
  // read SYNC_WAITING (all sequentially consistent): one of us sees the other, nothing is lost.
  if (Atomics.load(regs, Register.SYNC_WAITING) !== 0) {
    Atomics.add(regs, Register.SYNC_INTERRUPT, 1);
    Atomics.notify(regs, Register.SYNC_INTERRUPT);
    return;
  }
  Atomics.add(regs, Register.INTERRUPT, 1);
  Atomics.notify(regs, Register.INTERRUPT);
}

/**
 * Driver side: blocks this thread up to `timeoutMs` for an interrupt (see raiseInterrupt); returns
 * the pending queue bits taken (0: none came).
 */
export function waitInterruptSync(regs: Int32Array, timeoutMs: number): number {
  Atomics.store(regs, Register.SYNC_WAITING, 1);
  const seq = Atomics.load(regs, Register.SYNC_INTERRUPT);
  if (Atomics.load(regs, Register.INTERRUPT_PENDING) === 0) Atomics.wait(regs, Register.SYNC_INTERRUPT, seq, timeoutMs);
  Atomics.store(regs, Register.SYNC_WAITING, 0);
  // After clearing SYNC_WAITING: a device that still saw it set has set its bit before, taken here.
  return Atomics.exchange(regs, Register.INTERRUPT_PENDING, 0);
}

/**
 * Plain file-descriptor operations: close, non-blocking mode, eventfds and poll(2).
 *
 * Ownership: `closeFd` takes ownership of `fd` and releases it; every other function borrows the fd.
 */
import { native, check, lastErrno, errnoValues, SysError } from './libc.js';

const F_GETFL = 3;
const F_SETFL = 4;
const O_NONBLOCK = 0o4000;
const EFD_CLOEXEC = 0o2000000;
const EFD_NONBLOCK = 0o4000;

export const POLLIN = 0x001;
export const POLLOUT = 0x004;
export const POLLERR = 0x008;
export const POLLHUP = 0x010;
export const POLLNVAL = 0x020;

/** Releases `fd` (the caller gives up ownership). Errors are ignored: the fd is gone either way. */
export function closeFd(fd: number): void {
  if (fd >= 0) native.close(fd);
}

/** Closes every fd of a list (error paths: fds received from a peer that will not be used). */
export function closeFds(fds: Iterable<number>): void {
  for (const fd of fds) closeFd(fd);
}

/** Puts a borrowed fd into non-blocking mode (shared with every holder of the same open file). */
export function setNonBlocking(fd: number): void {
  const flags = check('fcntl(F_GETFL)', native.fcntl(fd, F_GETFL) as number);
  check('fcntl(F_SETFL)', native.fcntl(fd, F_SETFL, 'int', flags | O_NONBLOCK) as number);
}

/** A new eventfd (non-blocking, close-on-exec). The caller owns it. */
export function createEventFd(initial = 0): number {
  return check('eventfd', native.eventfd(initial, EFD_CLOEXEC | EFD_NONBLOCK) as number);
}

const one = Buffer.alloc(8);
one.writeBigUInt64LE(1n);

/**
 * Adds 1 to an eventfd's counter (a kick or an interrupt). Borrowed fd. Never blocks: on a
 * non-blocking eventfd a saturated counter (EAGAIN) already means "signalled".
 * Returns false when the fd is unusable (EBADF etc.).
 */
export function signalEventFd(fd: number): boolean {
  const n = native.write(fd, one, 8) as number;
  if (n === 8) return true;
  return lastErrno() === errnoValues.EAGAIN;
}

/** One 8-byte buffer per thread for eventfd reads (every call below is synchronous). */
const counter = Buffer.alloc(8);

/** Reads (and so resets) an eventfd counter; 0n when it was not signalled (EAGAIN). Borrowed fd. */
export function drainEventFd(fd: number): bigint {
  const n = native.read(fd, counter, 8) as number;
  if (n === 8) return counter.readBigUInt64LE(0);
  const errno = lastErrno();
  if (n < 0 && errno === errnoValues.EAGAIN) return 0n;
  throw new SysError('read(eventfd)', errno);
}

export interface PollRequest {
  fd: number;
  events: number;
}

function pollBuffer(fds: readonly PollRequest[]): Buffer {
  // struct pollfd { int fd; short events; short revents; } — 8 bytes each.
  const buf = Buffer.alloc(8 * fds.length);
  fds.forEach((p, i) => {
    buf.writeInt32LE(p.fd, 8 * i);
    buf.writeInt16LE(p.events, 8 * i + 4);
  });
  return buf;
}

function revents(buf: Buffer, count: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < count; i++) out.push(buf.readInt16LE(8 * i + 6));
  return out;
}

/**
 * poll(2) on the calling thread (blocks it; use in worker threads). `timeoutMs` -1 = forever.
 * Returns the revents of each entry (all 0 on timeout). EINTR is retried.
 */
export function pollSync(fds: readonly PollRequest[], timeoutMs: number): number[] {
  const buf = pollBuffer(fds);
  for (;;) {
    const n = native.poll(buf, fds.length, timeoutMs) as number;
    if (n >= 0) return revents(buf, fds.length);
    const errno = lastErrno();
    if (errno !== errnoValues.EINTR) throw new SysError('poll', errno);
  }
}

/**
 * A reusable poll(2) set for a thread's hot loop: the struct pollfd array is allocated once (and
 * re-filled only when the set changes), and waiting allocates nothing. Blocks the calling thread
 * (use in worker threads). The fds are borrowed.
 */
export class PollSet {
  #buf: Buffer = Buffer.alloc(0);
  #count = 0;
  /** struct timespec { time_t tv_sec; long tv_nsec; } for waitMicros (ppoll). */
  readonly #timespec = Buffer.alloc(16);

  /** Number of entries. */
  get size(): number {
    return this.#count;
  }

  /** Replaces the entries. */
  set(fds: readonly PollRequest[]): void {
    if (this.#buf.length < 8 * fds.length) this.#buf = Buffer.alloc(8 * fds.length);
    else this.#buf.fill(0);
    for (let i = 0; i < fds.length; i++) {
      const p = fds[i]!;
      this.#buf.writeInt32LE(p.fd, 8 * i);
      this.#buf.writeInt16LE(p.events, 8 * i + 4);
    }
    this.#count = fds.length;
  }

  /**
   * poll(2) with `timeoutMs` (-1 = forever); returns how many entries have events (0 on timeout).
   * EINTR is retried. Read each entry's events with revents(i) afterwards (also after waitMicros).
   */
  wait(timeoutMs: number): number {
    for (;;) {
      const n = native.poll(this.#buf, this.#count, timeoutMs) as number;
      if (n >= 0) return n;
      const errno = lastErrno();
      if (errno !== errnoValues.EINTR) throw new SysError('poll', errno);
    }
  }

  /**
   * ppoll(2) for at most `micros` microseconds (a short wait, finer than poll's milliseconds);
   * returns how many entries have events (0 on timeout). EINTR ends the wait early: 0, every
   * revents cleared.
   */
  waitMicros(micros: number): number {
    const us = Math.max(0, Math.floor(micros));
    this.#timespec.writeBigInt64LE(BigInt(Math.floor(us / 1e6)), 0);
    this.#timespec.writeBigInt64LE(BigInt((us % 1e6) * 1000), 8);
    const n = native.ppoll(this.#buf, this.#count, this.#timespec, null) as number;
    if (n >= 0) return n;
    const errno = lastErrno();
    if (errno !== errnoValues.EINTR) throw new SysError('ppoll', errno);
    for (let i = 0; i < this.#count; i++) this.#buf.writeInt16LE(0, 8 * i + 6);
    return 0;
  }

  /** The revents of entry `i` from the last wait() (0 for an index out of range). */
  revents(i: number): number {
    return i >= 0 && i < this.#count ? this.#buf.readInt16LE(8 * i + 6) : 0;
  }
}

/**
 * poll(2) on one of koffi's asynchronous call threads: the event loop stays free, nothing spins
 * while idle. Used by the listener and the front-end's interrupt and reply waits.
 */
export function pollAsync(fds: readonly PollRequest[], timeoutMs: number): Promise<number[]> {
  const buf = pollBuffer(fds);
  return new Promise((resolve, reject) => {
    native.poll.async(buf, fds.length, timeoutMs, (err: unknown, n: number) => {
      if (err) reject(err instanceof Error ? err : new Error(String(err)));
      else if (n < 0) {
        // errno is thread-local and lost across the async hop; EINTR is the only expected case.
        resolve(fds.map(() => 0));
      } else resolve(revents(buf, fds.length));
    });
  });
}

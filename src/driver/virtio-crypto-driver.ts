/**
 * The virtio-crypto driver (VIRTIO 1.2 §5.9) with the cryptodev-style session API on top, written once
 * against `VirtioTransport`: it does not know whether the device is a worker thread or a vhost-user
 * back-end in another process.
 *
 *  - Initialization (§3.1.1): reset, ACKNOWLEDGE, DRIVER, features (VERSION_1 required; EVENT_IDX taken
 *    when offered), FEATURES_OK re-read, config read and checked, queues (dataq 0..N-1, controlq N,
 *    §5.9.2), DRIVER_OK. DEVIATION: INDIRECT_DESC is not negotiated even when offered: every chain is
 *    two descriptors, so an indirect table would only add a translation.
 *  - Requests: each one is ONE block of guest memory, device-readable part then device-writable part, so a
 *    chain is two descriptors (§2.6.4 message framing: the device must not assume a layout). Blocks come
 *    from `BufferArena`; when memory or descriptors run out, requests wait in FIFO order (backpressure)
 *    and are admitted as completions free space.
 *  - Batching: submissions made in the same tick are published together and each queue is kicked at
 *    most once per tick (and only when the device asks for it: EVENT_IDX / NO_NOTIFY). Completions are
 *    consumed in batches per interrupt.
 *  - Every status byte starts at VIRTIO_CRYPTO_ERR before submission (as Linux does), and device status
 *    is mapped to `CryptoError` in one function (`errorFromStatus`).
 *  - Handles (virtio-crypto-handle.ts) own sessions; closing a handle rejects its pending requests (EBADF)
 *    and destroys its sessions; closing the device rejects everything pending and resets the device.
 *  - Deadline: a device that stops answering (a stopped back-end process, a wedged worker) must not
 *    leave callers waiting forever. One watchdog timer per driver, running only while requests are
 *    in flight, looks at the oldest request the device holds every `requestTimeoutMs / 4` (at most
 *    1 s); once it is older than `requestTimeoutMs` (default 30 s, or VCRYPTO_REQUEST_TIMEOUT_MS),
 *    every pending request is rejected with ETIMEDOUT and the device is marked failed (later calls:
 *    EIO). The queues' state is unknown then (the device may still own those buffers), so nothing is
 *    submitted again; close() does not wait for the wedged device's reset. No timer per request: the
 *    hot path only stores a timestamp.
 */
import { CryptoError, type CryptoDevice, type CryptoHandle, type DeviceInfo } from './api.js';
import type { VirtioTransport } from './virtio-transport.js';
import { BufferArena } from './buffer-arena.js';
import { VirtioHandle } from './virtio-crypto-handle.js';
import { dataLengthLimit } from './virtio-crypto-mapping.js';
import {
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FAILED,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_F_ACCESS_PLATFORM,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
} from '../spec/virtio.js';
import { VIRTIO_CRYPTO_S_HW_READY } from '../spec/virtio-crypto.js';
import { INHDR_SIZE, OP_DATA_REQ_SIZE, decodeConfig, type VirtioCryptoConfig } from '../wire/virtio-crypto.js';
import { DriverQueue } from '../virtqueue/driver-queue.js';
import { layoutRings, ringViews } from '../virtqueue/layout.js';
import { MARK, mark } from '../trace/latency-marks.js';
import { CompletionSpin } from './completion-spin.js';

export { dataLengthLimit, errorFromStatus } from './virtio-crypto-mapping.js';

// ------------------------------------------------------------------------------------------------
// Requests in guest memory

const enum State {
  Waiting,
  InFlight,
  /** Rejected while in flight (handle/device closed): free the block when the device completes it. */
  Abandoned,
  Done,
}

/** One request: a block of `readLen` device-readable bytes followed (16-aligned) by `writeLen` writable bytes. */
interface Request {
  readonly control: boolean;
  readonly readLen: number;
  readonly writeLen: number;
  /** The readable part holds key material: zero it when the request completes. */
  readonly secret: boolean;
  readonly owner: VirtioHandle | null;
  /** Writes the device-readable part at `off` and prepares the writable part at `woff`. */
  fill(mem: Uint8Array, off: number, woff: number): void;
  /** While waiting: the request's bytes, captured at submission (zeroed once used or rejected). */
  staged: Uint8Array | null;
  /** Decodes the writable part; returns the result or throws a CryptoError. */
  finish(mem: Uint8Array, woff: number, usedLen: number): unknown;
  resolve(value: unknown): void;
  reject(error: unknown): void;
  state: State;
  block: number;
  blockLen: number;
  /** performance.now() when it went on a queue (the deadline counts from there). */
  startedAt: number;
}

/** How the driver waits for the completions of what it just published (see #flush). */
const WAIT = {
  /** The interrupt, on the event loop. */
  INTERRUPT: 0,
  /** Spinning on the used rings, interrupts suppressed (a CPU is spare). */
  SPIN: 1,
  /** Blocked in the transport's waitForInterrupt (a busy machine). */
  BLOCK: 2,
} as const;

function align16(n: number): number {
  return (n + 15) & ~15;
}

// ------------------------------------------------------------------------------------------------

export interface VirtioCryptoDriverOptions {
  /** DeviceInfo.spec, e.g. 'virtio' or 'vhost-user:/run/vc.sock'. */
  spec: string;
  /** Queue size to ask for (capped by the device's maximum). Default 256. */
  queueSize?: number;
  /** Data queues to use (capped by max_dataqueues). Default: all the device offers, up to 31. */
  dataQueues?: number;
  /**
   * Deadline for the device to complete a request once it is on a queue, in ms; 0 = none. Default:
   * VCRYPTO_REQUEST_TIMEOUT_MS from the environment if set, else DEFAULT_REQUEST_TIMEOUT_MS.
   */
  requestTimeoutMs?: number;
}

/**
 * 30 s: far beyond what a healthy device needs even on a loaded 2-core machine (a full queue of
 * the largest requests completes in well under a second), short enough that a wedged one is noticed.
 */
export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
/** The environment variable that sets the default deadline (ms; 0 = none). */
export const REQUEST_TIMEOUT_ENV = 'VCRYPTO_REQUEST_TIMEOUT_MS';
/** Largest deadline accepted (setTimeout's limit, ~24.8 days). */
const MAX_REQUEST_TIMEOUT_MS = 2 ** 31 - 1;

/** The deadline from `env` (VCRYPTO_REQUEST_TIMEOUT_MS), or undefined if unset; EINVAL if malformed. */
export function requestTimeoutFromEnv(env: NodeJS.ProcessEnv = process.env): number | undefined {
  const raw = env[REQUEST_TIMEOUT_ENV];
  if (raw === undefined || raw === '') return undefined;
  if (!/^\d+$/.test(raw) || Number(raw) > MAX_REQUEST_TIMEOUT_MS) {
    throw new CryptoError('EINVAL', `${REQUEST_TIMEOUT_ENV}=${JSON.stringify(raw.slice(0, 40))}: expected milliseconds, 0 to ${MAX_REQUEST_TIMEOUT_MS} (0 = no deadline)`);
  }
  return Number(raw);
}

const DEFAULT_QUEUE_SIZE = 256;
const RING_ALIGN = 4096;

export class VirtioCryptoDriver implements CryptoDevice {
  readonly info: DeviceInfo;
  readonly config: VirtioCryptoConfig;
  readonly negotiatedFeatures: bigint;
  readonly #transport: VirtioTransport;
  readonly #mem: Uint8Array;
  /** Guest-physical address of memory byte 0, as an exact number (checked < 2^53 at init). */
  readonly #guestBase: number;
  readonly #queues: DriverQueue<Request>[];
  readonly #dataQueues: number;
  readonly #arena: BufferArena;
  readonly #timeoutMs: number;
  #watchdog: ReturnType<typeof setInterval> | undefined;
  /** A request timed out: the device is not answering (close() does not wait for its reset). */
  #wedged = false;
  readonly #handles = new Set<VirtioHandle>();
  readonly #waiting: Request[] = [];
  #waitingHead = 0;
  #inFlight = 0;
  #busy = false;
  /** The data queue the last request went to (a tie between queues goes to it, see #start). */
  #lastQueue = 0;
  /** Spin-then-sleep on the used rings (null: the transport does not want it). */
  readonly #spin: CompletionSpin | null;
  readonly #spinRunEnded = (): void => this.#spin?.runEnded();
  #dirty = 0;
  #flushScheduled = false;
  #failure: CryptoError | null = null;
  #closed = false;

  private constructor(init: {
    transport: VirtioTransport;
    info: DeviceInfo;
    config: VirtioCryptoConfig;
    features: bigint;
    queues: DriverQueue<Request>[];
    dataQueues: number;
    arena: BufferArena;
    timeoutMs: number;
  }) {
    this.#transport = init.transport;
    this.info = init.info;
    this.config = init.config;
    this.negotiatedFeatures = init.features;
    this.#mem = init.transport.memory.bytes;
    this.#guestBase = Number(init.transport.memory.guestPhysAddr);
    this.#queues = init.queues;
    this.#dataQueues = init.dataQueues;
    this.#arena = init.arena;
    this.#timeoutMs = init.timeoutMs;
    const spin = init.transport.completionSpin;
    this.#spin = spin !== undefined && spin.boundMicros > 0 ? new CompletionSpin(spin.boundMicros, () => performance.now(), spin.cpuSpare) : null;
  }

  /** Runs the VIRTIO 1.2 §3.1.1 initialization sequence over `transport`. */
  static async create(transport: VirtioTransport, opts: VirtioCryptoDriverOptions): Promise<VirtioCryptoDriver> {
    const t = transport;
    const timeoutMs = opts.requestTimeoutMs ?? requestTimeoutFromEnv() ?? DEFAULT_REQUEST_TIMEOUT_MS;
    if (!Number.isInteger(timeoutMs) || timeoutMs < 0 || timeoutMs > MAX_REQUEST_TIMEOUT_MS) {
      throw new CryptoError('EINVAL', `requestTimeoutMs ${timeoutMs}: expected an integer from 0 to ${MAX_REQUEST_TIMEOUT_MS}`);
    }
    const failed = async (message: string, cause?: unknown): Promise<never> => {
      // §3.1.1 step 8 / §2.1.2: on an unrecoverable error the driver sets FAILED.
      await t.setStatus((await t.getStatus()) | VIRTIO_CONFIG_S_FAILED).catch(() => undefined);
      throw new CryptoError('EIO', `virtio-crypto init: ${message}`, { cause });
    };
    await t.setStatus(0); // 1. reset
    let status = VIRTIO_CONFIG_S_ACKNOWLEDGE; // 2. we noticed the device
    await t.setStatus(status);
    status |= VIRTIO_CONFIG_S_DRIVER; // 3. we know how to drive it
    await t.setStatus(status);
    // 4. features: VERSION_1 is mandatory (§6.1: a device without it is legacy, not supported here);
    // EVENT_IDX taken when offered. INDIRECT_DESC is not needed: every request is a 2-descriptor chain.
    const offered = await t.getDeviceFeatures();
    const bit = (n: number): bigint => 1n << BigInt(n);
    if ((offered & bit(VIRTIO_F_VERSION_1)) === 0n) return failed('the device does not offer VIRTIO_F_VERSION_1');
    // VIRTIO_F_ACCESS_PLATFORM (§6.1): accepted when offered — the device then reaches our memory
    // through the platform's IOMMU, which is how a transport behind VFIO has mapped it.
    const features = bit(VIRTIO_F_VERSION_1) | (offered & (bit(VIRTIO_RING_F_EVENT_IDX) | bit(VIRTIO_F_ACCESS_PLATFORM)));
    await t.setDriverFeatures(features);
    status |= VIRTIO_CONFIG_S_FEATURES_OK; // 5.
    await t.setStatus(status);
    // 6. re-read: the device clears FEATURES_OK if it does not accept our subset.
    if (((await t.getStatus()) & VIRTIO_CONFIG_S_FEATURES_OK) === 0) return failed('the device did not accept the features');
    // 7. device-specific setup: config (§5.9.5) and queues (§5.9.2).
    let config: VirtioCryptoConfig;
    try {
      config = decodeConfig(await t.readConfig());
    } catch (err) {
      return failed('unreadable config space', err);
    }
    // §5.9.5.2: the driver MUST NOT submit requests before VIRTIO_CRYPTO_S_HW_READY.
    if ((config.status & VIRTIO_CRYPTO_S_HW_READY) === 0) return failed('the device is not ready (VIRTIO_CRYPTO_S_HW_READY clear)');
    if (config.maxDataqueues < 1) return failed('max_dataqueues is 0');
    const dataQueues = Math.min(config.maxDataqueues, opts.dataQueues ?? 31, 31);
    const controlIndex = config.maxDataqueues; // §5.9.2: controlq is queue N
    const eventIdx = (features & bit(VIRTIO_RING_F_EVENT_IDX)) !== 0n;
    const mem = t.memory.bytes;
    if (t.memory.guestPhysAddr < 0n || t.memory.guestPhysAddr + BigInt(mem.byteLength) > BigInt(Number.MAX_SAFE_INTEGER)) {
      return failed('guest memory must lie below 2^53');
    }
    let offset = 0;
    const queues: DriverQueue<Request>[] = [];
    for (let i = 0; i <= dataQueues; i++) {
      const index = i === dataQueues ? controlIndex : i;
      const max = await t.getQueueMaxSize(index);
      if (max === 0) return failed(`queue ${index} is not available`);
      let size = Math.min(opts.queueSize ?? DEFAULT_QUEUE_SIZE, max);
      size = 2 ** Math.floor(Math.log2(size)); // §2.7: a power of 2
      const layout = layoutRings(size);
      offset = Math.ceil(offset / RING_ALIGN) * RING_ALIGN;
      if (offset + layout.totalBytes > mem.byteLength / 2) return failed('guest memory too small for the rings');
      const q = new DriverQueue<Request>({ size, ...ringViews(mem, size, offset), eventIdx });
      const base = t.memory.guestPhysAddr + BigInt(offset);
      await t.setupQueue(index, {
        size,
        descAddr: base + BigInt(layout.descOffset),
        availAddr: base + BigInt(layout.availOffset),
        usedAddr: base + BigInt(layout.usedOffset),
      });
      queues[index === controlIndex ? dataQueues : i] = q;
      offset += layout.totalBytes;
    }
    const arenaBase = Math.ceil(offset / RING_ALIGN) * RING_ALIGN;
    const arena = new BufferArena(arenaBase, mem.byteLength - arenaBase);
    const info: DeviceInfo = Object.freeze({
      spec: opts.spec,
      description: `virtio-crypto (${t.description}, ${dataQueues} data queue${dataQueues === 1 ? '' : 's'})`,
      maxDataQueues: config.maxDataqueues,
      maxSize: dataLengthLimit(config.maxSize),
      maxCipherKeyLen: config.maxCipherKeyLen,
      maxAuthKeyLen: config.maxAuthKeyLen,
    });
    const driver = new VirtioCryptoDriver({ transport: t, info, config, features, queues, dataQueues, arena, timeoutMs });
    t.onInterrupt((index) => {
      if (index === controlIndex) driver.#onInterrupt(dataQueues);
      else if (index < dataQueues) driver.#onInterrupt(index); // a queue we did not set up has nothing for us
    });
    t.onFailure((err) => driver.#fail(new CryptoError('EIO', `device failed: ${err.message}`, { cause: err })));
    status |= VIRTIO_CONFIG_S_DRIVER_OK; // 8. live
    try {
      await t.setStatus(status);
    } catch (err) {
      return failed('DRIVER_OK refused', err);
    }
    return driver;
  }

  async open(): Promise<CryptoHandle> {
    this.#check();
    const h = new VirtioHandle(this);
    this.#handles.add(h);
    return h;
  }

  /** Rejects everything pending (EBADF), resets the device and releases the transport. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const h of [...this.#handles]) h.markClosed();
    this.#handles.clear();
    this.#rejectAll(new CryptoError('EBADF', 'device is closed'));
    this.#setBusy(false);
    clearInterval(this.#watchdog);
    this.#watchdog = undefined;
    // §2.1: reset; the device stops using our memory. Not for a device that stopped answering (it
    // would not answer this either), and never waiting longer than the deadline: closing the
    // transport below is what releases everything.
    if (!this.#wedged) {
      const reset = this.#transport.setStatus(0).catch(() => undefined); // the device may already be gone
      if (this.#timeoutMs === 0) {
        await reset;
      } else {
        let timer: ReturnType<typeof setTimeout> | undefined;
        await Promise.race([reset, new Promise<void>((resolve) => (timer = setTimeout(resolve, this.#timeoutMs)))]);
        clearTimeout(timer);
      }
    }
    this.#mem.fill(0, 0, this.#arena.usedEnd); // request buffers held plaintext and keys (the rest was never touched)
    this.#setBusy(false);
    await this.#transport.close();
  }

  // --- internal API used by handles -------------------------------------------------------------

  /** @internal */
  check(): void {
    this.#check();
  }

  #check(): void {
    if (this.#failure) throw this.#failure;
    if (this.#closed) throw new CryptoError('EBADF', 'device is closed');
  }

  /** @internal handle closed */
  forget(h: VirtioHandle): void {
    this.#handles.delete(h);
  }

  /** @internal Rejects the requests of `owner` (waiting ones are dropped; in-flight ones abandoned). */
  abandon(owner: VirtioHandle, error: CryptoError): void {
    for (let i = this.#waitingHead; i < this.#waiting.length; i++) {
      const r = this.#waiting[i]!;
      if (r.owner === owner && r.state === State.Waiting) {
        r.state = State.Done;
        r.staged?.fill(0);
        r.reject(error);
      }
    }
    for (const q of this.#queues) {
      q.forEachToken((r) => {
        if (r.owner === owner && r.state === State.InFlight) {
          r.state = State.Abandoned;
          r.reject(error);
        }
      });
    }
  }

  /** @internal Queues a request; the promise settles when the device completes it. */
  submit<T>(
    owner: VirtioHandle | null,
    control: boolean,
    readLen: number,
    writeLen: number,
    secret: boolean,
    fill: Request['fill'],
    finish: (mem: Uint8Array, woff: number, usedLen: number) => T,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.#failure) return reject(this.#failure);
      if (this.#closed) return reject(new CryptoError('EBADF', 'device is closed'));
      // §5.9.5: max_size bounds a data request's variable part (iv, src, aad, dst, hash_result);
      // reject what the device would refuse before sending it.
      const variableLen = readLen - OP_DATA_REQ_SIZE + writeLen - INHDR_SIZE;
      if (!control && variableLen > this.config.maxSize) {
        return reject(new CryptoError('ENOSPC', `request of ${variableLen} bytes exceeds the device's max_size ${this.config.maxSize}`));
      }
      const blockLen = align16(readLen) + writeLen;
      if (blockLen > this.#arena.maxBlock) {
        return reject(new CryptoError('ENOSPC', `request of ${blockLen} bytes does not fit the driver's guest memory (${this.#arena.maxBlock})`));
      }
      const r: Request = {
        control,
        readLen,
        writeLen,
        secret,
        owner,
        fill,
        finish,
        resolve: resolve as (v: unknown) => void,
        reject,
        state: State.Waiting,
        staged: null,
        block: -1,
        blockLen,
        startedAt: 0,
      };
      if (this.#waitingHead === this.#waiting.length) {
        if (!this.#start(r)) this.#wait(r);
      } else {
        // Others are waiting: keep FIFO order (and skip any of them rejected meanwhile).
        this.#wait(r);
        this.#admitWaiting();
      }
      this.#setBusy(true);
    });
  }

  // --- submission ---------------------------------------------------------------------------------

  /**
   * Queues `r` until memory and descriptors free up. Its bytes are captured now, as if it had been
   * submitted at once: the caller may reuse or zero its buffers as soon as the call returns.
   */
  #wait(r: Request): void {
    const staged = new Uint8Array(r.blockLen);
    const woff = align16(r.readLen);
    r.fill(staged, 0, woff);
    r.staged = staged;
    r.fill = (mem, off, w) => {
      mem.set(staged.subarray(0, r.readLen), off);
      mem.set(staged.subarray(woff, woff + r.writeLen), w);
      staged.fill(0); // may hold key material
      r.staged = null;
    };
    this.#waiting.push(r);
  }

  /** Places `r` in guest memory and on a queue; false if memory or descriptors are short (it waits). */
  #start(r: Request): boolean {
    let qi: number;
    if (r.control) {
      qi = this.#dataQueues;
      if (this.#queues[qi]!.freeCount < 2) return false;
    } else {
      // Spread over the data queues: the one with the most free descriptors (the fewest requests in
      // flight), a tie going to the queue used last, so one request at a time stays on one queue
      // (one device thread, whose polling window then sees every request) and many spread evenly.
      qi = this.#lastQueue;
      let best = this.#queues[qi]!.freeCount;
      for (let c = 0; c < this.#dataQueues; c++) {
        const free = this.#queues[c]!.freeCount;
        if (free > best) {
          best = free;
          qi = c;
        }
      }
      if (best < 2) return false;
      this.#lastQueue = qi;
    }
    const block = this.#arena.alloc(r.blockLen);
    if (block < 0) return false;
    const woff = block + align16(r.readLen);
    const mem = this.#mem;
    r.fill(mem, block, woff);
    r.block = block;
    r.state = State.InFlight;
    r.startedAt = performance.now();
    const addr = this.#guestBase + block;
    this.#queues[qi]!.addOutIn(addr, r.readLen, addr + (woff - block), r.writeLen, r);
    this.#inFlight++;
    mark(MARK.SUBMITTED);
    this.#dirty |= 1 << qi;
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(this.#flush);
    }
    return true;
  }

  /** Publishes every queue touched this tick, and kicks those whose device asked for it (§2.7.13). */
  readonly #flush = (): void => {
    mark(MARK.FLUSH);
    this.#flushScheduled = false;
    const dirty = this.#dirty;
    this.#dirty = 0;
    if (this.#closed || this.#failure) return;
    // Spin (or, on a busy machine, sleep) for the completions (completion-spin.ts)? Spinning
    // suppresses interrupts BEFORE the requests are published: the device may complete them before
    // the kick returns. Sleeping needs the interrupt.
    const spin = this.#spin;
    // (Not for the control queue: rare, and a transport may serve it on this very thread.)
    const windowMs = spin === null || (dirty & (1 << this.#dataQueues)) !== 0 ? 0 : spin.window(this.#inFlight, this.#newSpinRun);
    const mode = windowMs === 0 ? WAIT.INTERRUPT : spin!.cpuSpare() ? WAIT.SPIN : this.#transport.waitForInterrupt !== undefined ? WAIT.BLOCK : WAIT.INTERRUPT;
    if (mode === WAIT.SPIN) for (const q of this.#queues) q.disableInterrupts();
    // The control queue first, so the device sees a new session before data that uses it.
    const order = [this.#dataQueues];
    for (let i = 0; i < this.#dataQueues; i++) order.push(i);
    const kicks: number[] = [];
    for (const i of order) {
      if ((dirty & (1 << i)) === 0) continue;
      if (this.#queues[i]!.publish()) kicks.push(i);
    }
    spin?.notePublished();
    for (const i of kicks) this.#transport.notify(i === this.#dataQueues ? this.config.maxDataqueues : i);
    if (kicks.length > 0) mark(MARK.KICKED);
    if (mode === WAIT.SPIN) this.#spinForCompletions(spin!, windowMs);
    else if (mode === WAIT.BLOCK) spin!.sleepEpisode(windowMs, (ms) => this.#transport.waitForInterrupt!(ms));
  };

  readonly #newSpinRun = (): void => void setImmediate(this.#spinRunEnded).unref();

  /**
   * Spin-then-sleep (completion-spin.ts): with few requests in flight, watch the used rings for a
   * short adaptive window (interrupts suppressed by #flush, §2.7.7) and reap what comes; then
   * re-enable interrupts and re-check (§2.7.10, in #onInterrupt) whatever happened.
   */
  #spinForCompletions(spin: CompletionSpin, windowMs: number): void {
    const queues = this.#queues;
    spin.episode(windowMs, () => {
      for (const q of queues) if (q.hasUsed()) return true;
      return false;
    });
    for (let qi = 0; qi <= this.#dataQueues && !this.#closed; qi++) this.#onInterrupt(qi);
  }

  #admitWaiting(): void {
    while (this.#waitingHead < this.#waiting.length) {
      const r = this.#waiting[this.#waitingHead]!;
      if (r.state !== State.Waiting) {
        this.#waitingHead++;
        continue;
      }
      if (!this.#start(r)) break;
      this.#waitingHead++;
    }
    if (this.#waitingHead === this.#waiting.length) {
      this.#waiting.length = 0;
      this.#waitingHead = 0;
    } else if (this.#waitingHead > 1024) {
      this.#waiting.splice(0, this.#waitingHead);
      this.#waitingHead = 0;
    }
  }

  #setBusy(busy: boolean): void {
    if (busy === this.#busy) return;
    this.#busy = busy;
    // One watchdog for a run of busy periods: at depth 1 the driver goes busy and idle on every
    // request, and a timer created and cleared each time cost a quarter of the request rate in a
    // TCG guest (measured). It stops itself at its first tick while idle, and never holds the process.
    if (busy && this.#timeoutMs > 0 && !this.#closed && this.#watchdog === undefined) {
      this.#watchdog = setInterval(this.#checkDeadline, Math.max(10, Math.min(1000, Math.floor(this.#timeoutMs / 4))));
      this.#watchdog.unref();
    }
    // The transport waits for completions (and holds the process) only while work is in flight.
    if (busy) this.#transport.hold?.();
    else this.#transport.release?.();
  }

  /** The watchdog (runs only while busy): fails the device once its oldest request is past the deadline. */
  readonly #checkDeadline = (): void => {
    if (this.#closed || this.#failure || !this.#busy) {
      clearInterval(this.#watchdog);
      this.#watchdog = undefined;
      return;
    }
    let oldest = Infinity;
    let queue = -1;
    this.#queues.forEach((q, qi) => {
      q.forEachToken((r) => {
        // Abandoned ones count too: the device still owes them, and they keep the transport held.
        if ((r.state === State.InFlight || r.state === State.Abandoned) && r.startedAt < oldest) {
          oldest = r.startedAt;
          queue = qi;
        }
      });
    });
    const age = performance.now() - oldest;
    if (age <= this.#timeoutMs) return;
    const name = queue === this.#dataQueues ? 'the control queue' : `data queue ${queue}`;
    const timedOut = new CryptoError('ETIMEDOUT', `the device did not complete a request on ${name} within ${this.#timeoutMs} ms`);
    this.#wedged = true;
    this.#fail(new CryptoError('EIO', `device failed: it stopped answering (a request timed out after ${this.#timeoutMs} ms)`, { cause: timedOut }), timedOut);
  };

  // --- completion ---------------------------------------------------------------------------------

  #onInterrupt(qi: number): void {
    const q = this.#queues[qi];
    if (!q || this.#closed) return;
    const mem = this.#mem;
    q.disableInterrupts();
    try {
      for (;;) {
        for (;;) {
          const used = q.getUsed();
          if (used === null) break;
          if (this.#spin !== null) this.#spin.noteCompletion();
          mark(MARK.COMPLETION_SEEN);
          this.#complete(used.token, used.len, mem);
        }
        // The transport is polling the used ring: no interrupt needed (it calls us again when it stops).
        if (this.#transport.polling === true) break;
        // §2.7.10: re-enable, then re-check, or a completion can slip by without an interrupt.
        if (!q.enableInterrupts()) break;
      }
    } catch (err) {
      // A VirtqueueError (§2.7.8: a used element that was not outstanding, a used.len past the chain's
      // writable bytes, used.idx running ahead): the queue is broken, stop trusting the device.
      this.#fail(new CryptoError('EIO', `queue ${qi}: ${(err as Error).message}`, { cause: err }));
      return;
    }
    this.#admitWaiting();
    if (this.#inFlight === 0 && this.#waitingHead === this.#waiting.length) this.#setBusy(false);
  }

  #complete(r: Request, usedLen: number, mem: Uint8Array): void {
    this.#inFlight--;
    const woff = r.block + align16(r.readLen);
    if (r.state === State.InFlight) {
      r.state = State.Done;
      try {
        r.resolve(r.finish(mem, woff, usedLen));
      } catch (err) {
        r.reject(err);
      }
      mark(MARK.RESOLVED);
    } else {
      r.state = State.Done;
    }
    if (r.secret) mem.fill(0, r.block, r.block + r.readLen);
    this.#arena.free(r.block, r.blockLen);
  }

  #rejectAll(error: CryptoError): void {
    for (let i = this.#waitingHead; i < this.#waiting.length; i++) {
      const r = this.#waiting[i]!;
      if (r.state === State.Waiting) {
        r.state = State.Done;
        r.staged?.fill(0);
        r.reject(error);
      }
    }
    this.#waiting.length = 0;
    this.#waitingHead = 0;
    for (const q of this.#queues) {
      q.forEachToken((r) => {
        if (r.state === State.InFlight) {
          r.state = State.Abandoned;
          r.reject(error);
        }
      });
    }
  }

  /** Marks the device failed: later calls get `error`, pending requests `pendingError` (default the same). */
  #fail(error: CryptoError, pendingError: CryptoError = error): void {
    if (this.#failure || this.#closed) return;
    this.#failure = error;
    this.#rejectAll(pendingError);
    this.#setBusy(false);
  }
}

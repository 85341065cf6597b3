/**
 * The embedded transport, driver side: a `VirtioTransport` whose device is a worker thread.
 *
 *  - Guest memory: one SharedArrayBuffer region at guest-physical address GUEST_PHYS_BASE.
 *  - Kick: `Atomics.add` + `Atomics.notify` on the register block's DOORBELL (registers.ts).
 *  - Interrupt: the worker bumps INTERRUPT; we await it with `Atomics.waitAsync`, so the driver's
 *    event loop is never blocked and an idle device costs no CPU on either side.
 *  - Status, features and queue addresses live here (the transport owns the status state machine,
 *    VIRTIO 1.2 §3.1.1, as Firecracker's does); the worker learns only "activate" and "reset".
 *
 * Liveness: the worker is unref'ed, and a pending `Atomics.waitAsync` does not keep Node alive, so the
 * process may exit while the device is idle. `hold()`/`release()` ref the worker while work is in flight.
 */
import { once } from 'node:events';
import { MessageChannel, Worker, type MessagePort } from 'node:worker_threads';
import { statusTransition } from '../device-status.js';
import type { DriverMemory, QueueAddresses, VirtioTransport } from '../../driver/virtio-transport.js';
import { VIRTIO_STATUS } from '../../spec/virtio.js';
import type { DeviceWorkerData, FromDevice, ToDevice } from './messages.js';
import { MAX_DEVICE_THREADS, MAX_QUEUES, Register, createRegisterBlock, doorbellWord, queueThread, ringDoorbell, waitInterruptSync, wakeDevice } from './registers.js';
import { deviceWorkerEntry } from './worker-entry.js';
import { POLL_MODE, completionSpinFor, pollModeFromEnv, type PollMode } from '../spare-cpu.js';
import { DeviceStats, sumSnapshots, type StatsSnapshot } from '../../device/device-stats.js';

/** `Atomics.waitAsync` (ES2024; Node 20 has it, this project's `lib` is ES2023). */
type WaitAsync = (
  typedArray: Int32Array,
  index: number,
  value: number,
) => { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
const waitAsync = (Atomics as unknown as { waitAsync: WaitAsync }).waitAsync;

/** Guest-physical address of the memory region (non-zero so a null address is never valid). */
export const GUEST_PHYS_BASE = 0x1000_0000n;

export interface InProcessTransportOptions {
  /** Data queues the device offers (max_dataqueues). */
  maxDataQueues?: number;
  /** Largest queue size the device accepts. */
  queueMaxSize?: number;
  /** Bytes of guest memory (rings + request buffers). */
  memoryBytes?: number;
  /** Session table size of the device. */
  maxSessions?: number;
  /** max_size in the device config: the bound on a request's variable part (§5.9.5). Default 1 MiB. */
  maxSize?: bigint;
  /**
   * Device threads serving the data queues (data queue i on thread i mod threads; thread 0 also
   * serves the control queue and copies every session to the others). Default 1; at most
   * min(maxDataQueues, MAX_DEVICE_THREADS).
   */
  deviceThreads?: number;
  /** Round-trip stage timestamps for the device threads to record into (src/trace/latency-marks.ts). */
  traceMarks?: SharedArrayBuffer;
  /** When the driver and the device threads may poll (spare-cpu.ts). Default: VCRYPTO_POLL, else auto. */
  pollMode?: PollMode;
}

export const DEFAULT_MEMORY_BYTES = 32 * 1024 * 1024;

/** Bound of the driver's spin on the used rings (µs; requests that take longer are waited for). */
export const IN_PROCESS_SPIN_MICROS = 100;

export class InProcessTransport implements VirtioTransport {
  readonly description = 'embedded worker thread';
  /**
   * The device threads answer within microseconds on another CPU: the driver spins on the used rings
   * for up to this long (adaptively, completion-spin.ts) before it waits for the interrupt.
   */
  readonly completionSpin: { readonly boundMicros: number; readonly cpuSpare: () => boolean };
  readonly memory: DriverMemory;
  readonly #regs: Int32Array;
  /** Doorbell word per queue index (the device thread that serves it). */
  readonly #doorbells: readonly number[];
  readonly #worker: Worker;
  readonly #port: MessagePort;
  readonly #deviceFeatures: bigint;
  readonly #config: Uint8Array;
  readonly #queueMaxSizes: readonly number[];
  readonly #queues: (QueueAddresses | null)[];
  readonly #replies = new Map<number, { resolve: (error: string | null) => void }>();
  #nextId = 1;
  #status = 0;
  #driverFeatures = 0n;
  #interruptHandler: ((index: number) => void) | null = null;
  #failureHandler: ((error: Error) => void) | null = null;
  #interruptLoop = false;
  #holds = 0;
  #closed = false;
  #dead = false;
  #exited: Promise<unknown>;
  /** One DeviceStats block per device thread (written by the threads, read here). */
  readonly #stats: readonly DeviceStats[];

  private constructor(init: {
    stats: readonly DeviceStats[];
    regs: Int32Array;
    doorbells: readonly number[];
    worker: Worker;
    port: MessagePort;
    memory: DriverMemory;
    ready: Extract<FromDevice, { type: 'ready' }>;
    exited: Promise<unknown>;
    pollMode: PollMode;
  }) {
    this.completionSpin = completionSpinFor(IN_PROCESS_SPIN_MICROS, init.pollMode);
    this.#regs = init.regs;
    this.#stats = init.stats;
    this.#doorbells = init.doorbells;
    this.#worker = init.worker;
    this.#port = init.port;
    this.memory = init.memory;
    this.#deviceFeatures = init.ready.deviceFeatures;
    this.#config = init.ready.config;
    this.#queueMaxSizes = init.ready.queueMaxSizes;
    this.#queues = this.#queueMaxSizes.map(() => null);
    this.#exited = init.exited;
    void init.exited.then(() => {
      // The worker is gone (stopped, or crashed): nothing will answer any more.
      this.#dead = true;
      for (const r of this.#replies.values()) r.resolve('device worker exited');
      this.#replies.clear();
      if (!this.#closed) this.#fail(new Error('device worker exited'));
    });
    this.#port.on('message', (msg: FromDevice) => this.#onMessage(msg));
    this.#port.unref();
    this.#worker.on('error', (err) => this.#fail(new Error(`device worker failed: ${err.message}`, { cause: err })));
    this.#worker.unref();
  }

  /**
   * The device's statistics (device-stats.ts), summed over its threads; read from shared memory,
   * so this never waits for (or slows) a device thread.
   */
  statistics(): StatsSnapshot {
    return sumSnapshots(this.#stats.map((s) => s.snapshot()));
  }

  /** Starts the device worker and waits until it reports its features and config. */
  static async create(opts: InProcessTransportOptions = {}): Promise<InProcessTransport> {
    const maxDataQueues = opts.maxDataQueues ?? 1;
    if (!Number.isInteger(maxDataQueues) || maxDataQueues < 1 || maxDataQueues >= MAX_QUEUES) {
      throw new RangeError(`maxDataQueues must be 1..${MAX_QUEUES - 1}`);
    }
    const deviceThreads = opts.deviceThreads ?? 1;
    if (!Number.isInteger(deviceThreads) || deviceThreads < 1 || deviceThreads > Math.min(maxDataQueues, MAX_DEVICE_THREADS)) {
      throw new RangeError(`deviceThreads must be 1..${Math.min(maxDataQueues, MAX_DEVICE_THREADS)} (at most one per data queue)`);
    }
    const memoryBytes = opts.memoryBytes ?? DEFAULT_MEMORY_BYTES;
    const pollMode = opts.pollMode ?? pollModeFromEnv() ?? POLL_MODE.AUTO;
    if (!Number.isInteger(memoryBytes) || memoryBytes < 64 * 1024) throw new RangeError('memoryBytes must be at least 64 KiB');
    const regs = createRegisterBlock();
    const memory = new SharedArrayBuffer(memoryBytes);
    const channel = new MessageChannel();
    const statsBuffer = new SharedArrayBuffer(deviceThreads * DeviceStats.byteLength());
    const stats = Array.from({ length: deviceThreads }, (_, k) => new DeviceStats(statsBuffer, k * DeviceStats.byteLength()));
    const workerData: DeviceWorkerData = {
      stats: statsBuffer,
      registers: regs.buffer as SharedArrayBuffer,
      memory,
      guestPhysAddr: GUEST_PHYS_BASE,
      port: channel.port2,
      maxDataQueues,
      threads: deviceThreads,
      thread: 0,
      maxSessions: opts.maxSessions ?? 1024,
      maxSize: opts.maxSize ?? 1n << 20n,
      queueMaxSize: opts.queueMaxSize ?? 1024,
      ...(opts.traceMarks !== undefined && { traceMarks: opts.traceMarks }),
      pollMode,
    };
    const { entry, eval: isEval } = deviceWorkerEntry();
    const worker = new Worker(entry, { workerData, transferList: [channel.port2], eval: isEval });
    const exited = once(worker, 'exit').catch(() => undefined);
    const ready = await new Promise<Extract<FromDevice, { type: 'ready' }>>((resolve, reject) => {
      const onError = (err: Error): void => reject(new Error(`device worker failed to start: ${err.message}`, { cause: err }));
      const onExit = (code: number): void => reject(new Error(`device worker exited during start-up (code ${code})`));
      worker.once('error', onError);
      worker.once('exit', onExit);
      channel.port1.once('message', (msg: FromDevice) => {
        worker.off('error', onError);
        worker.off('exit', onExit);
        if (msg.type === 'ready') resolve(msg);
        else reject(new Error(msg.type === 'failure' ? `device failed to start: ${msg.message}` : `device worker sent '${msg.type}' before 'ready'`));
      });
    }).catch(async (err: unknown) => {
      channel.port1.close();
      await worker.terminate();
      throw err;
    });
    return new InProcessTransport({
      stats,
      regs,
      doorbells: Array.from({ length: maxDataQueues + 1 }, (_, i) => doorbellWord(queueThread(i, maxDataQueues, deviceThreads))),
      worker,
      port: channel.port1,
      memory: { guestPhysAddr: GUEST_PHYS_BASE, bytes: new Uint8Array(memory) },
      ready,
      exited,
      pollMode,
    });
  }

  /** Keep the process alive (ref the worker) while the driver has work in flight. Counted. */
  hold(): void {
    if (this.#holds++ === 0 && !this.#closed) this.#worker.ref();
  }

  release(): void {
    if (this.#holds > 0 && --this.#holds === 0 && !this.#closed) this.#worker.unref();
  }

  async getDeviceFeatures(): Promise<bigint> {
    return this.#deviceFeatures;
  }

  async setDriverFeatures(features: bigint): Promise<void> {
    // §2.2.1: the driver MUST NOT accept a feature the device did not offer; FEATURES_OK then stays clear.
    this.#driverFeatures = features;
  }

  async getStatus(): Promise<number> {
    return this.#status;
  }

  async setStatus(status: number): Promise<void> {
    this.#live();
    // §3.1.1 step 5-6: the device accepts only features it offered.
    const t = statusTransition(this.#status, status, () => (this.#driverFeatures & ~this.#deviceFeatures) === 0n);
    if (t.reset) {
      this.#status = 0;
      this.#driverFeatures = 0n;
      this.#queues.fill(null);
      await this.#request({ type: 'reset', id: 0 });
      return;
    }
    if (t.activate) {
      this.#startInterruptLoop();
      const error = await this.#request({ type: 'activate', id: 0, features: this.#driverFeatures, queues: [...this.#queues] });
      if (error !== null) {
        this.#status = t.next | VIRTIO_STATUS.DEVICE_NEEDS_RESET;
        throw new Error(`device refused DRIVER_OK: ${error}`);
      }
    }
    this.#status = t.next;
  }

  async readConfig(): Promise<Uint8Array> {
    return this.#config.slice();
  }

  async getQueueMaxSize(index: number): Promise<number> {
    return this.#queueMaxSizes[index] ?? 0;
  }

  async setupQueue(index: number, queue: QueueAddresses): Promise<void> {
    this.#live();
    const max = this.#queueMaxSizes[index];
    if (max === undefined) throw new RangeError(`queue ${index} does not exist`);
    // §2.7: split queue size is a power of 2, at most the device's maximum.
    if (!Number.isInteger(queue.size) || queue.size < 1 || queue.size > max || (queue.size & (queue.size - 1)) !== 0) {
      throw new RangeError(`queue ${index}: bad size ${queue.size} (power of two up to ${max})`);
    }
    if ((this.#status & VIRTIO_STATUS.DRIVER_OK) !== 0) throw new Error('queues must be set up before DRIVER_OK');
    this.#queues[index] = { size: queue.size, descAddr: queue.descAddr, availAddr: queue.availAddr, usedAddr: queue.usedAddr };
  }

  notify(index: number): void {
    if (this.#closed) return;
    ringDoorbell(this.#regs, index, this.#doorbells[index] ?? Register.DOORBELL);
  }

  onInterrupt(handler: (index: number) => void): void {
    this.#interruptHandler = handler;
  }

  /** Blocks in Atomics.wait for an interrupt, at most `timeoutMs`, and delivers it (registers.ts). */
  waitForInterrupt(timeoutMs: number): boolean {
    if (this.#closed || !this.#interruptLoop) return false;
    const pending = waitInterruptSync(this.#regs, timeoutMs);
    this.#deliverPending(pending);
    return pending !== 0;
  }

  #deliverPending(pending: number): void {
    try {
      for (let i = 0; pending >>> i !== 0; i++) {
        if ((pending & (1 << i)) !== 0) this.#interruptHandler?.(i);
      }
    } catch (err) {
      this.#fail(err instanceof Error ? err : new Error(String(err)));
    }
  }

  onFailure(handler: (error: Error) => void): void {
    this.#failureHandler = handler;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    Atomics.store(this.#regs, Register.STOP, 1);
    this.#post({ type: 'stop' });
    for (const r of this.#replies.values()) r.resolve('transport closed');
    this.#replies.clear();
    this.#worker.ref(); // wait for a clean exit rather than letting it be cut off
    const timer = setTimeout(() => void this.#worker.terminate(), 2000);
    await this.#exited;
    clearTimeout(timer);
    this.#port.close();
    // Wake our own interrupt waiter so its loop ends.
    Atomics.add(this.#regs, Register.INTERRUPT, 1);
    Atomics.notify(this.#regs, Register.INTERRUPT);
  }

  #live(): void {
    if (this.#closed) throw new Error('transport is closed');
  }

  #post(msg: ToDevice): void {
    this.#port.postMessage(msg);
    wakeDevice(this.#regs);
  }

  /** Sends a control message and waits for its reply; resolves with the device's error or null. */
  async #request(msg: Extract<ToDevice, { id: number }>): Promise<string | null> {
    if (this.#dead) return 'device worker exited';
    const id = this.#nextId++;
    this.hold();
    try {
      const reply = new Promise<string | null>((resolve) => this.#replies.set(id, { resolve }));
      this.#post({ ...msg, id });
      return await reply;
    } finally {
      this.release();
    }
  }

  #onMessage(msg: FromDevice): void {
    switch (msg.type) {
      case 'reply': {
        const r = this.#replies.get(msg.id);
        this.#replies.delete(msg.id);
        r?.resolve(msg.error);
        break;
      }
      case 'failure':
        this.#status |= VIRTIO_STATUS.DEVICE_NEEDS_RESET;
        this.#fail(new Error(`device needs reset: ${msg.message}`));
        break;
      case 'ready':
        break;
    }
  }

  #fail(error: Error): void {
    this.#failureHandler?.(error);
  }

  /** Delivers used-buffer notifications on the event loop, without blocking it (Atomics.waitAsync). */
  #startInterruptLoop(): void {
    if (this.#interruptLoop) return;
    this.#interruptLoop = true;
    const regs = this.#regs;
    let seen = Atomics.load(regs, Register.INTERRUPT);
    const loop = async (): Promise<void> => {
      while (!this.#closed) {
        const w = waitAsync(regs, Register.INTERRUPT, seen);
        if (w.async) await w.value;
        if (this.#closed) break;
        seen = Atomics.load(regs, Register.INTERRUPT);
        this.#deliverPending(Atomics.exchange(regs, Register.INTERRUPT_PENDING, 0));
      }
    };
    void loop();
  }
}

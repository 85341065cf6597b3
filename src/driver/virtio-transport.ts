/**
 * What the virtio-crypto driver needs from a transport (the "virtio-pci/virtio-mmio" of this
 * project). Two implementations:
 *  - in-process: the device runs on a worker thread, guest memory is a SharedArrayBuffer, doorbells are
 *    Atomics (src/transport/in-process/);
 *  - vhost-user front-end: guest memory is a memfd shared with the back-end process, rings are announced
 *    with SET_MEM_TABLE / SET_VRING_*, kicks and calls are eventfds (src/transport/vhost-user/).
 *
 * The driver (src/driver/virtio-crypto-driver.ts) is written once against this interface. Following
 * Firecracker, the transport owns the device-status state machine on the device side; the driver
 * performs the VIRTIO 1.2 §3.1.1 initialization sequence through it.
 */

/** The guest-physical memory the driver places its rings and request buffers in (one region). */
export interface DriverMemory {
  /** Guest-physical address of bytes[0]. */
  readonly guestPhysAddr: bigint;
  /** The region's bytes, as the driver sees them (SharedArrayBuffer or mmap'ed memfd). */
  readonly bytes: Uint8Array;
}

export interface QueueAddresses {
  /** Queue size (power of two). */
  readonly size: number;
  /** Guest-physical addresses of the three ring parts (VIRTIO 1.2 §2.7). */
  readonly descAddr: bigint;
  readonly availAddr: bigint;
  readonly usedAddr: bigint;
}

export interface VirtioTransport {
  /** Short description for status lines, e.g. "embedded (worker thread)" or "vhost-user:/run/vc.sock". */
  readonly description: string;
  readonly memory: DriverMemory;
  /** Device feature bits (64-bit). */
  getDeviceFeatures(): Promise<bigint>;
  /** Driver (negotiated) feature bits. */
  setDriverFeatures(features: bigint): Promise<void>;
  /** Device status register (VIRTIO 1.2 §2.1). Writing 0 resets the device. */
  getStatus(): Promise<number>;
  setStatus(status: number): Promise<void>;
  /** The device-specific configuration space (virtio-crypto: §5.9.4, le fields). */
  readConfig(): Promise<Uint8Array>;
  /** Maximum queue size the device accepts for queue `index` (0 = queue not available). */
  getQueueMaxSize(index: number): Promise<number>;
  /** Announce a queue's size and ring addresses and enable it (before DRIVER_OK). */
  setupQueue(index: number, queue: QueueAddresses): Promise<void>;
  /** Available-buffer notification ("kick") for queue `index`. Cheap; never blocks. */
  notify(index: number): void;
  /**
   * Used-buffer notifications ("interrupts") for any queue: the handler is called on the driver's
   * event loop with the queue index. Set once, before DRIVER_OK.
   */
  onInterrupt(handler: (index: number) => void): void;
  /** The device hit a fatal error (NEEDS_RESET, lost connection): fail everything pending. */
  onFailure(handler: (error: Error) => void): void;
  /**
   * Work is in flight (the first request became outstanding) / none is left: the transport waits for
   * completions and keeps the process alive only in between, so an idle device lets it exit. Called
   * by the driver on every busy transition; optional for transports with nothing to hold.
   */
  hold?(): void;
  release?(): void;
  /**
   * True while the transport polls the used rings itself (requests in flight): the driver then leaves
   * used-buffer notifications disabled after draining a queue. When polling stops, the transport
   * calls the interrupt handler of every queue once more, and the driver re-enables notifications and
   * re-checks (§2.7.10). Transports that never poll leave this undefined.
   */
  readonly polling?: boolean;
  /**
   * The driver's spin on the used rings after it publishes requests, with few in flight
   * (src/driver/completion-spin.ts): for transports whose device answers within microseconds on
   * another CPU. `boundMicros` bounds the window; `cpuSpare()` says whether a CPU can be spared for
   * spinning now (false on a busy machine). Undefined: the driver never spins, it waits for interrupts.
   */
  readonly completionSpin?: { readonly boundMicros: number; readonly cpuSpare: () => boolean };
  /**
   * Blocks the calling thread (the event loop) for at most `timeoutMs` until a used-buffer
   * notification comes, and delivers it (calls the interrupt handler) before returning true; false
   * after the timeout. Only for short windows (the driver's spin-then-sleep). Optional.
   */
  waitForInterrupt?(timeoutMs: number): boolean;
  /** Tear down: stop the device, release memory, threads, fds. Idempotent. */
  close(): Promise<void>;
}

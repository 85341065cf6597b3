/**
 * Our driver on a real virtio-pci device (VIRTIO 1.2 §4.1, the modern interface), from user space:
 * a `VirtioTransport` over a `PciFunction` (VFIO or uio), as DPDK's virtio crypto PMD does in C.
 *
 * - Registers: the common, notify, ISR and device-config structures found through the PCI capability
 *   list (pci-capabilities.ts, bounds-checked against their BARs), accessed in the BAR mapping with
 *   exactly one access of the field's width: Atomics.load/store on Uint8/16/32Array views (a DataView
 *   access is not guaranteed to be a single access). 64-bit fields are written as two 32-bit halves,
 *   low then high (§4.1.3.1).
 * - Status: §4.1.4.3.2 — after writing 0 the driver waits until device_status reads back 0.
 * - Queues: queue_select, queue_size, the three ring addresses, queue_enable = 1 (§4.1.5.1.3);
 *   notification = 16-bit write of the queue index at notify.offset + queue_notify_off ×
 *   notify_off_multiplier (§4.1.4.4), checked against the notify structure at set-up.
 * - DMA: the driver's memory is allocated by the PciFunction; the driver writes bus addresses (IOVAs
 *   under VFIO) into descriptors. When the device offers VIRTIO_F_ACCESS_PLATFORM the driver accepts
 *   it: the device then translates through the IOMMU (§6.1), which is what VFIO set up.
 * - Completions: an interrupt eventfd (MSI-X vector 0 for every queue, or INTx) waited on by
 *   poll(2) on a koffi async thread while requests are in flight (hold()/release()), so an idle
 *   process uses no CPU and may exit. INTx: the ISR is read (de-asserting the line) before it is
 *   re-enabled. Without any interrupt source the used rings are polled while requests are in flight.
 * - close(): device reset (status 0), interrupts off, DMA unmapped, fds closed.
 */
import { performance } from 'node:perf_hooks';
import { statusTransition } from '../device-status.js';
import { InterruptWaiter } from '../interrupt-waiter.js';
import { POLL_MODE, completionSpinFor, pollModeFromEnv } from '../spare-cpu.js';
import type { DriverMemory, QueueAddresses, VirtioTransport } from '../../driver/virtio-transport.js';
import {
  PCI_CFG,
  PCI_COMMAND_INTX_DISABLE,
  PCI_COMMAND_MASTER,
  PCI_COMMAND_MEMORY,
  VIRTIO_MSI_NO_VECTOR,
  VIRTIO_PCI_COMMON as C,
  VIRTIO_PCI_ISR_CONFIG,
} from '../../spec/virtio-pci.js';
import { VIRTIO_CONFIG_S_NEEDS_RESET } from '../../spec/virtio.js';
import { POLLIN } from '../../sys/fd.js';
import type { Mapping } from '../../sys/memfd.js';
import { parseVirtioPciCapabilities, type VirtioPciLayout, type VirtioPciRegion } from './pci-capabilities.js';
import type { InterruptSource, PciFunction, RegisterWindow } from './pci-function.js';

/** Default DMA memory under VFIO (rings + request buffers). */
export const DEFAULT_PCI_MEMORY_BYTES = 16 * 1024 * 1024;
const RESET_TIMEOUT_MS = 1000;
/** Adaptive polling stops after this long without a completion (then interrupts only). */
const POLL_WINDOW_MS = 0.5;
/**
 * Bound of the driver's spin on the used rings right after it publishes (src/driver/completion-spin.ts):
 * the device (QEMU's, on another host thread) answers a small request in about 0.1 ms of guest time
 * under TCG, so the window is larger than for the host transports. VCRYPTO_POLL=never turns it off.
 */
export const PCI_SPIN_MICROS = 400;

/** Width-exact MMIO views over one structure of a BAR mapping. */
class Mmio implements RegisterWindow {
  readonly u8: Uint8Array;
  readonly u16: Uint16Array;
  readonly u32: Uint32Array;
  constructor(
    bar: Mapping,
    readonly region: VirtioPciRegion,
  ) {
    // The region is 4-aligned and inside the BAR (checked by the capability parser).
    const whole = Math.floor(region.length / 4) * 4;
    this.u8 = new Uint8Array(bar.buffer, region.offset, region.length);
    this.u16 = new Uint16Array(bar.buffer, region.offset, Math.floor(region.length / 2));
    this.u32 = new Uint32Array(bar.buffer, region.offset, whole / 4);
  }
  r8(off: number): number {
    return Atomics.load(this.u8, off);
  }
  r16(off: number): number {
    return Atomics.load(this.u16, off >> 1);
  }
  r32(off: number): number {
    return Atomics.load(this.u32, off >> 2) >>> 0;
  }
  w8(off: number, v: number): void {
    Atomics.store(this.u8, off, v);
  }
  w16(off: number, v: number): void {
    Atomics.store(this.u16, off >> 1, v);
  }
  w32(off: number, v: number): void {
    Atomics.store(this.u32, off >> 2, v >>> 0);
  }
}

/** §4.1.3.1: a 64-bit field is written as two 32-bit halves, low then high. */
function w64(r: RegisterWindow, off: number, v: bigint): void {
  r.w32(off, Number(v & 0xffff_ffffn));
  r.w32(off + 4, Number(v >> 32n));
}

export interface PciTransportOptions {
  /** DMA memory bytes for rings and request buffers (VFIO; uio is one 2 MiB hugepage). */
  readonly memoryBytes?: number;
}

export class VirtioPciTransport implements VirtioTransport {
  readonly description: string;
  readonly memory: DriverMemory;
  readonly completionSpin: { readonly boundMicros: number; readonly cpuSpare: () => boolean };
  readonly layout: VirtioPciLayout;
  readonly #fn: PciFunction;
  readonly #common: RegisterWindow;
  readonly #isr: RegisterWindow;
  readonly #device: RegisterWindow;
  readonly #notify: RegisterWindow;
  readonly #notifyAt = new Map<number, number>();
  readonly #queues: number[] = [];
  /** Per queue: a view of used.idx (§2.7.8) and the last value the poll loop saw. */
  readonly #usedIdx = new Map<number, { view: Uint16Array; seen: number }>();
  #polling = false;
  #lastProgress = 0;
  readonly #irq: InterruptSource | null;
  readonly #waiter: InterruptWaiter;
  #interrupt: ((index: number) => void) | undefined;
  #failure: ((error: Error) => void) | undefined;
  #failed = false;
  #closed = false;

  private constructor(fn: PciFunction, layout: VirtioPciLayout, bars: Map<number, Mapping>, memory: DriverMemory, irq: InterruptSource | null) {
    this.#fn = fn;
    this.layout = layout;
    const mmio = (r: VirtioPciRegion): RegisterWindow => fn.registers?.(r) ?? new Mmio(bars.get(r.bar)!, r);
    this.#common = mmio(layout.common);
    this.#isr = mmio(layout.isr);
    this.#device = mmio(layout.device);
    this.#notify = mmio(layout.notify);
    this.memory = memory;
    this.#irq = irq;
    // Interrupts wake the wait; without an interrupt source it times out every 1 ms and the used
    // rings are read anyway (polling while requests are in flight).
    this.#waiter = new InterruptWaiter({
      ready: () => !this.#closed && !this.#failed,
      fds: () => (irq === null ? [] : [{ fd: irq.fd, events: POLLIN }]),
      timeoutMs: () => (irq === null ? 1 : -1),
      handle: (revents) => this.#onWake(irq !== null && (revents[0] ?? 0) !== 0),
      onError: (err) => this.#fail(err),
    });
    // In a guest, `auto` spins whenever the spin's own back-off allows: the guest's load average
    // cannot show how busy the host's CPUs are (where the device runs), and reading it costs more
    // under TCG than the spin saves. Measured in a TCG guest at depth 1 (4 KiB, idle host, 2 pairs
    // per device): spinning 1526-1918 ops/s (QEMU's device) and 3149-3905 (ours) against
    // 1360-1821 and 2379-2400 without.
    const pollMode = pollModeFromEnv() ?? POLL_MODE.AUTO;
    this.completionSpin = completionSpinFor(PCI_SPIN_MICROS, pollMode === POLL_MODE.AUTO ? POLL_MODE.ALWAYS : pollMode);
    this.description = `pci:${fn.bdf} (${fn.kind}, ${irq === null ? 'polling' : irq.kind === 'msix' ? 'MSI-X' : 'INTx'})`;
  }

  /** Parses the capabilities, maps the BARs, enables memory + bus mastering, allocates DMA memory. */
  static open(fn: PciFunction, opts: PciTransportOptions = {}): VirtioPciTransport {
    const layout = parseVirtioPciCapabilities(fn.readConfig(0, 256), (bar) => fn.barSize(bar));
    const bars = new Map<number, Mapping>();
    for (const r of [layout.common, layout.notify, layout.isr, layout.device]) {
      if (!bars.has(r.bar) && fn.registers === undefined) bars.set(r.bar, fn.mapBar(r.bar));
    }
    const command = new DataView(fn.readConfig(PCI_CFG.COMMAND, 2).buffer.slice(0)).getUint16(0, true);
    const enabled = (command | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER) & ~PCI_COMMAND_INTX_DISABLE;
    fn.writeConfig(PCI_CFG.COMMAND, new Uint8Array([enabled & 0xff, enabled >> 8]));
    const dma = fn.allocateDma(fn.kind === 'uio' ? 2 * 1024 * 1024 : (opts.memoryBytes ?? DEFAULT_PCI_MEMORY_BYTES));
    const irq = fn.enableInterrupts(layout.msixVectors);
    return new VirtioPciTransport(fn, layout, bars, { guestPhysAddr: dma.busAddress, bytes: new Uint8Array(dma.mapping.buffer) }, irq);
  }

  async getDeviceFeatures(): Promise<bigint> {
    const c = this.#common;
    c.w32(C.device_feature_select, 0);
    const lo = c.r32(C.device_feature);
    c.w32(C.device_feature_select, 1);
    const hi = c.r32(C.device_feature);
    return (BigInt(hi) << 32n) | BigInt(lo);
  }

  async setDriverFeatures(features: bigint): Promise<void> {
    const c = this.#common;
    c.w32(C.driver_feature_select, 0);
    c.w32(C.driver_feature, Number(features & 0xffff_ffffn));
    c.w32(C.driver_feature_select, 1);
    c.w32(C.driver_feature, Number((features >> 32n) & 0xffff_ffffn));
  }

  async getStatus(): Promise<number> {
    return this.#common.r8(C.device_status);
  }

  async setStatus(status: number): Promise<void> {
    // The device holds the register and decides FEATURES_OK; the driver's writes obey the same rules.
    statusTransition(this.#common.r8(C.device_status), status, () => true);
    if (status !== 0) {
      this.#common.w8(C.device_status, status);
      return;
    }
    if (!(await this.#reset())) throw new Error(`${this.description}: the device did not complete its reset within ${RESET_TIMEOUT_MS} ms`);
  }

  /** Writes 0 to device_status and waits (§4.1.4.3.2) until it reads back 0: false after RESET_TIMEOUT_MS. */
  async #reset(): Promise<boolean> {
    this.#common.w8(C.device_status, 0);
    const deadline = Date.now() + RESET_TIMEOUT_MS;
    while (this.#common.r8(C.device_status) !== 0) {
      if (Date.now() > deadline) return false;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
    return true;
  }

  /** §4.1.4.3 config_generation: re-read until the generation is stable around the copy. */
  async readConfig(): Promise<Uint8Array> {
    const d = this.#device;
    const words = Math.floor(d.region.length / 4);
    for (let attempt = 0; attempt < 100; attempt++) {
      const before = this.#common.r8(C.config_generation);
      const out = new Uint8Array(words * 4);
      const dv = new DataView(out.buffer);
      for (let i = 0; i < words; i++) dv.setUint32(4 * i, d.r32(4 * i), true);
      if (this.#common.r8(C.config_generation) === before) return out;
    }
    throw new Error(`${this.description}: device configuration kept changing (config_generation)`);
  }

  async getQueueMaxSize(index: number): Promise<number> {
    const c = this.#common;
    if (index < 0 || index >= c.r16(C.num_queues)) return 0;
    c.w16(C.queue_select, index);
    return c.r16(C.queue_size);
  }

  async setupQueue(index: number, queue: QueueAddresses): Promise<void> {
    const c = this.#common;
    const max = await this.getQueueMaxSize(index);
    if (max === 0) throw new RangeError(`queue ${index} does not exist`);
    if (queue.size > max || (queue.size & (queue.size - 1)) !== 0) throw new RangeError(`queue ${index}: size ${queue.size} (device maximum ${max})`);
    c.w16(C.queue_select, index);
    c.w16(C.queue_size, queue.size);
    w64(c, C.queue_desc, queue.descAddr);
    w64(c, C.queue_driver, queue.availAddr);
    w64(c, C.queue_device, queue.usedAddr);
    if (this.#irq?.kind === 'msix') {
      c.w16(C.queue_msix_vector, 0);
      if (c.r16(C.queue_msix_vector) === VIRTIO_MSI_NO_VECTOR) throw new Error(`${this.description}: queue ${index}: the device could not assign MSI-X vector 0`);
    }
    const notifyOff = c.r16(C.queue_notify_off);
    const at = notifyOff * this.layout.notify.notifyOffMultiplier;
    // §4.1.4.4: the notification address must lie inside the notify structure (2 bytes written).
    if (at + 2 > this.layout.notify.length) throw new Error(`${this.description}: queue ${index}: notify offset ${at} is outside the notification structure (${this.layout.notify.length} bytes)`);
    this.#notifyAt.set(index, at);
    c.w16(C.queue_enable, 1);
    this.#queues.push(index);
    const usedOffset = Number(queue.usedAddr - this.memory.guestPhysAddr) + 2;
    if (usedOffset >= 2 && usedOffset + 2 <= this.memory.bytes.byteLength && usedOffset % 2 === 0) {
      const mem = this.memory.bytes;
      this.#usedIdx.set(index, { view: new Uint16Array(mem.buffer, mem.byteOffset + usedOffset, 1), seen: 0 });
    }
  }

  notify(index: number): void {
    const at = this.#notifyAt.get(index);
    if (at !== undefined && !this.#closed) this.#notify.w16(at, index);
  }

  onInterrupt(handler: (index: number) => void): void {
    this.#interrupt = handler;
  }

  onFailure(handler: (error: Error) => void): void {
    this.#failure = handler;
  }

  /** Keep waiting for completions (work is in flight). Nested. */
  hold(): void {
    this.#waiter.hold();
    this.#startPolling();
  }

  /**
   * Adaptive polling while requests are in flight: every turn of the event loop reads each queue's
   * used.idx and hands the queue to the driver when it moved. A request completes without the
   * interrupt's round trip (eventfd, a thread-pool wake-up, the event loop); after POLL_WINDOW_MS
   * without progress polling stops and the interrupt alone wakes us (an idle process spins never).
   */
  #startPolling(): void {
    this.#lastProgress = performance.now();
    if (this.#polling || this.#usedIdx.size === 0) return;
    this.#polling = true;
    setImmediate(this.#pollTick);
  }

  get polling(): boolean {
    return this.#polling;
  }

  /** Polling ends: the driver re-enables used-buffer notifications on every queue and re-checks. */
  #stopPolling(): void {
    this.#polling = false;
    if (!this.#closed && !this.#failed) this.#serviceQueues();
  }

  readonly #pollTick = (): void => {
    if (this.#closed || this.#failed || !this.#waiter.held) {
      this.#stopPolling();
      return;
    }
    const now = performance.now();
    for (const [index, used] of this.#usedIdx) {
      const idx = Atomics.load(used.view, 0);
      if (idx !== used.seen) {
        used.seen = idx;
        this.#lastProgress = now;
        this.#interrupt?.(index);
      }
    }
    if (now - this.#lastProgress > POLL_WINDOW_MS) {
      this.#stopPolling();
      return;
    }
    setImmediate(this.#pollTick);
  };

  /** No work in flight: stop waiting (after a short linger), so an idle process can exit. */
  release(): void {
    this.#waiter.release();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#waiter.close();
    try {
      await this.#reset(); // the device stops using our memory (a device that never resets is released anyway)
    } finally {
      this.#fn.close();
    }
  }

  #fail(error: Error): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#failure?.(error);
  }

  #serviceQueues(): void {
    for (const index of this.#queues) this.#interrupt?.(index);
  }

  /** The wait ended: an interrupt (`fired`) or, without an interrupt source, its 1 ms timeout. */
  #onWake(fired: boolean): void {
    if (this.#closed) return;
    const irq = this.#irq;
    if (fired && irq !== null) {
      irq.consume();
      if (irq.kind === 'intx') {
        // §4.1.4.5: reading the ISR clears it and de-asserts INTx; then the line may be re-enabled.
        const isr = this.#isr.r8(0);
        irq.rearm();
        if ((isr & VIRTIO_PCI_ISR_CONFIG) !== 0) this.#checkNeedsReset();
      } else {
        this.#checkNeedsReset();
      }
    } else if (irq !== null) {
      return; // woken for another reason (release, close)
    }
    this.#serviceQueues();
  }

  #checkNeedsReset(): void {
    if ((this.#common.r8(C.device_status) & VIRTIO_CONFIG_S_NEEDS_RESET) !== 0) {
      this.#fail(new Error(`${this.description}: the device needs a reset (DEVICE_NEEDS_RESET)`));
    }
  }
}

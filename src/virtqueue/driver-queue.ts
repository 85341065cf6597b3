/**
 * Split virtqueue, driver side (VIRTIO 1.2 §2.7.13 "Supplying Buffers to The Device", §2.7.14
 * "Receiving Used Buffers From The Device"): free-list allocation of descriptors, direct or
 * indirect chains, avail.idx publication with notification suppression, reaping used elements.
 * Memory ordering: see ./ring-memory.ts.
 *
 * The driver's own bookkeeping (free list, chain links, lengths, tokens) lives in JS memory, never
 * re-read from the shared descriptor table, so a device scribbling on the table cannot corrupt it.
 * The device is checked: a used element naming a head that is not in flight, a `len` larger than
 * the chain's writable bytes (§2.7.8), or used.idx running ahead of what is in flight is a
 * VirtqueueError and marks the queue `broken` (the driver then resets the device).
 */

import { VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_USED_F_NO_NOTIFY } from '../spec/virtio.js';
import { VirtqueueError } from './chain.js';
import { AVAIL, DESC, USED, assertQueueSize, availEventOffset, checkRingViews, usedEventOffset } from './layout.js';
import { dataView, u16View, vringNeedEvent } from './ring-memory.js';

/** A guest-physical buffer. */
export interface BufferRef {
  addr: bigint;
  len: number;
}

export interface IndirectArea {
  /** Guest-physical address of `bytes[0]` (16-aligned). */
  addr: bigint;
  /** size * entriesPerChain * 16 bytes: one table per possible head descriptor. */
  bytes: Uint8Array;
  /** Maximum descriptors in one indirect table. */
  entriesPerChain: number;
}

export interface DriverQueueOptions {
  size: number;
  desc: Uint8Array;
  avail: Uint8Array;
  used: Uint8Array;
  /** VIRTIO_RING_F_EVENT_IDX negotiated. */
  eventIdx: boolean;
  /** VIRTIO_RING_F_INDIRECT_DESC negotiated and memory set aside for the tables. */
  indirect?: IndirectArea;
}

const U64_LIMIT = 1n << 64n;
const U32 = 4294967296;
const NONE = 0xffff_ffff;

export class DriverQueue<T> {
  readonly size: number;
  readonly eventIdx: boolean;
  readonly #mask: number;
  readonly #desc: DataView;
  readonly #avail: DataView;
  readonly #avail16: Uint16Array;
  readonly #used: DataView;
  readonly #used16: Uint16Array;
  readonly #usedEventIdx: number;
  readonly #availEventIdx: number;
  readonly #indirect: { addr: bigint; view: DataView; entries: number } | undefined;

  /** Per descriptor: next free descriptor while free, next descriptor of its chain while in use. */
  readonly #link: Uint32Array;
  #freeHead = 0;
  #freeCount: number;
  /** Per head: descriptors the chain occupies in the main table (0 = not in flight). */
  readonly #chainDescs: Uint32Array;
  /** Per head: total device-writable bytes of the chain (upper bound for used.len). */
  readonly #writableBytes: Float64Array;
  readonly #tokens: (T | undefined)[];
  #inFlight = 0;

  /** Our avail.idx, and the value at the last publish (Linux's avail_idx_shadow - num_added). */
  #availIdx = 0;
  #publishedIdx = 0;
  /** Next used index to reap, and the last used.idx read from memory. */
  #lastUsed = 0;
  #shadowUsed = 0;
  #broken = false;

  constructor(opts: DriverQueueOptions) {
    assertQueueSize(opts.size);
    checkRingViews(opts.size, opts.desc, opts.avail, opts.used);
    const size = opts.size;
    this.size = size;
    this.eventIdx = opts.eventIdx;
    this.#mask = size - 1;
    // The driver owns the rings: start from zeroed memory (idx 0, no flags, no events).
    opts.desc.fill(0);
    opts.avail.fill(0);
    opts.used.fill(0);
    this.#desc = dataView(opts.desc);
    this.#avail = dataView(opts.avail);
    this.#avail16 = u16View(opts.avail);
    this.#used = dataView(opts.used);
    this.#used16 = u16View(opts.used);
    this.#usedEventIdx = usedEventOffset(size) >>> 1;
    this.#availEventIdx = availEventOffset(size) >>> 1;
    if (opts.indirect !== undefined) {
      const { addr, bytes, entriesPerChain } = opts.indirect;
      if (!Number.isInteger(entriesPerChain) || entriesPerChain < 2 || entriesPerChain > 65536) {
        throw new RangeError(`entriesPerChain ${entriesPerChain} must be in 2..65536`);
      }
      if (addr < 0n || addr % 16n !== 0n || addr + BigInt(bytes.byteLength) > U64_LIMIT) {
        throw new RangeError('indirect area address must be 16-aligned and inside u64');
      }
      if (bytes.byteLength < size * entriesPerChain * 16) {
        throw new RangeError(`indirect area needs ${size * entriesPerChain * 16} bytes`);
      }
      this.#indirect = { addr, view: dataView(bytes), entries: entriesPerChain };
    }
    this.#link = new Uint32Array(size);
    for (let i = 0; i < size; i++) this.#link[i] = i + 1 < size ? i + 1 : NONE;
    this.#freeCount = size;
    this.#chainDescs = new Uint32Array(size);
    this.#writableBytes = new Float64Array(size);
    this.#tokens = new Array<T | undefined>(size).fill(undefined);
  }

  /** Free descriptors in the main table. */
  get freeCount(): number {
    return this.#freeCount;
  }

  /** Chains added and not yet reaped. */
  get inFlight(): number {
    return this.#inFlight;
  }

  /** The device broke the protocol; stop using this queue (reset the device). */
  get broken(): boolean {
    return this.#broken;
  }

  /** Main-table descriptors a chain of `n` buffers needs (1 when it goes indirect). */
  descriptorsNeeded(n: number): number {
    const ind = this.#indirect;
    return ind !== undefined && n > 1 && n <= ind.entries ? 1 : n;
  }

  /**
   * Add a chain: `out` device-readable buffers, then `inp` device-writable buffers (§2.7.4.2).
   * Indirect when configured and more than one buffer (§2.7.5.3), else direct. Not visible to the
   * device until publish(). Returns the head descriptor index. Throws RangeError for bad buffers
   * or when there is not enough room (check freeCount / descriptorsNeeded first).
   */
  addChain(out: readonly BufferRef[], inp: readonly BufferRef[], token: T): number {
    if (this.#broken) throw new Error('virtqueue is broken: reset the device');
    const n = out.length + inp.length;
    if (n === 0) throw new RangeError('a chain needs at least one buffer');
    let writable = 0;
    for (let i = 0; i < n; i++) {
      const b = i < out.length ? out[i]! : inp[i - out.length]!;
      if (typeof b.addr !== 'bigint' || b.addr < 0n || b.addr >= U64_LIMIT) throw new RangeError(`buffer address ${String(b.addr)} is not a u64`);
      if (!Number.isInteger(b.len) || b.len < 0 || b.len >= U32) throw new RangeError(`buffer length ${b.len} is not a u32`);
      if (i >= out.length) writable += b.len;
    }
    const need = this.descriptorsNeeded(n);
    if (need > this.#freeCount) throw new RangeError(`virtqueue full: need ${need} descriptors, ${this.#freeCount} free`);

    let head: number;
    if (need === 1 && n > 1) {
      // One main descriptor pointing at this head's indirect table (§2.7.5.3).
      head = this.#take();
      const ind = this.#indirect!;
      const base = head * ind.entries * 16;
      for (let i = 0; i < n; i++) {
        const isOut = i < out.length;
        const b = isOut ? out[i]! : inp[i - out.length]!;
        const at = base + i * 16;
        ind.view.setBigUint64(at + DESC.addr, b.addr, true);
        ind.view.setUint32(at + DESC.len, b.len, true);
        ind.view.setUint16(at + DESC.flags, (isOut ? 0 : VIRTQ_DESC_F_WRITE) | (i + 1 < n ? VIRTQ_DESC_F_NEXT : 0), true);
        ind.view.setUint16(at + DESC.next, i + 1 < n ? i + 1 : 0, true);
      }
      this.#writeDesc(head, ind.addr + BigInt(base), n * 16, VIRTQ_DESC_F_INDIRECT, 0);
      this.#link[head] = NONE;
      this.#chainDescs[head] = 1;
    } else {
      head = this.#take();
      let d = head;
      for (let i = 0; i < n; i++) {
        const isOut = i < out.length;
        const b = isOut ? out[i]! : inp[i - out.length]!;
        const last = i + 1 === n;
        const next = last ? NONE : this.#take();
        this.#writeDesc(d, b.addr, b.len, (isOut ? 0 : VIRTQ_DESC_F_WRITE) | (last ? 0 : VIRTQ_DESC_F_NEXT), last ? 0 : next);
        this.#link[d] = next;
        d = next;
      }
      this.#chainDescs[head] = n;
    }
    this.#writableBytes[head] = writable;
    this.#tokens[head] = token;
    this.#inFlight++;
    // avail.ring[idx % size] = head; made visible by the Atomics store of avail.idx in publish().
    this.#avail.setUint16(AVAIL.ring + 2 * (this.#availIdx & this.#mask), head, true);
    this.#availIdx = (this.#availIdx + 1) & 0xffff;
    return head;
  }

  /**
   * The common chain of one device-readable then one device-writable buffer (§2.7.4.2), with
   * guest-physical addresses given as exact numbers (safe integers): the per-request hot path of a
   * driver whose requests are one block each, without BufferRef objects or bigints. Same checks and
   * bookkeeping as addChain (which it defers to when indirect tables are configured).
   */
  addOutIn(readAddr: number, readLen: number, writeAddr: number, writeLen: number, token: T): number {
    if (this.#indirect !== undefined) {
      return this.addChain([{ addr: BigInt(readAddr), len: readLen }], [{ addr: BigInt(writeAddr), len: writeLen }], token);
    }
    if (this.#broken) throw new Error('virtqueue is broken: reset the device');
    if (!Number.isSafeInteger(readAddr) || readAddr < 0 || !Number.isSafeInteger(writeAddr) || writeAddr < 0) {
      throw new RangeError(`buffer address ${readAddr}/${writeAddr} is not an exact u64`);
    }
    if (!Number.isInteger(readLen) || readLen < 0 || readLen >= U32) throw new RangeError(`buffer length ${readLen} is not a u32`);
    if (!Number.isInteger(writeLen) || writeLen < 0 || writeLen >= U32) throw new RangeError(`buffer length ${writeLen} is not a u32`);
    if (this.#freeCount < 2) throw new RangeError(`virtqueue full: need 2 descriptors, ${this.#freeCount} free`);
    const head = this.#take();
    const tail = this.#take();
    this.#writeDescNum(head, readAddr, readLen, VIRTQ_DESC_F_NEXT, tail);
    this.#writeDescNum(tail, writeAddr, writeLen, VIRTQ_DESC_F_WRITE, 0);
    this.#link[head] = tail;
    this.#link[tail] = NONE;
    this.#chainDescs[head] = 2;
    this.#writableBytes[head] = writeLen;
    this.#tokens[head] = token;
    this.#inFlight++;
    this.#avail.setUint16(AVAIL.ring + 2 * (this.#availIdx & this.#mask), head, true);
    this.#availIdx = (this.#availIdx + 1) & 0xffff;
    return head;
  }

  /** #writeDesc with the address as a safe integer: written as its exact low and high u32 halves. */
  #writeDescNum(i: number, addr: number, len: number, flags: number, next: number): void {
    const at = i * 16;
    const v = this.#desc;
    v.setUint32(at + DESC.addr, addr % U32, true);
    v.setUint32(at + DESC.addr + 4, Math.floor(addr / U32), true);
    v.setUint32(at + DESC.len, len, true);
    v.setUint16(at + DESC.flags, flags, true);
    v.setUint16(at + DESC.next, next, true);
  }

  #take(): number {
    const d = this.#freeHead;
    this.#freeHead = this.#link[d]!;
    this.#freeCount--;
    return d;
  }

  #writeDesc(i: number, addr: bigint, len: number, flags: number, next: number): void {
    const at = i * 16;
    this.#desc.setBigUint64(at + DESC.addr, addr, true);
    this.#desc.setUint32(at + DESC.len, len, true);
    this.#desc.setUint16(at + DESC.flags, flags, true);
    this.#desc.setUint16(at + DESC.next, next, true);
  }

  /**
   * Publish avail.idx for every chain added since the last publish (one Atomics store, after the
   * descriptor and ring writes), then decide whether to kick: EVENT_IDX vring_need_event(avail_event,
   * new, old) (§2.7.10), else unless the device set VIRTQ_USED_F_NO_NOTIFY.
   */
  publish(): boolean {
    const old = this.#publishedIdx;
    const neu = this.#availIdx;
    if (old === neu) return false;
    Atomics.store(this.#avail16, AVAIL.idx >>> 1, neu);
    this.#publishedIdx = neu;
    if (this.eventIdx) return vringNeedEvent(Atomics.load(this.#used16, this.#availEventIdx), neu, old);
    return (Atomics.load(this.#used16, USED.flags >>> 1) & VIRTQ_USED_F_NO_NOTIFY) === 0;
  }

  #fail(kind: 'used-id-invalid' | 'used-len-invalid' | 'used-index-jump', message: string): never {
    this.#broken = true;
    throw new VirtqueueError(kind, message);
  }

  /** Has the device published used elements not reaped yet? (One Atomics load: for polling.) */
  hasUsed(): boolean {
    return !this.#broken && Atomics.load(this.#used16, USED.idx >>> 1) !== this.#lastUsed;
  }

  /** Reap one used element, or null if there is none. Frees the chain's descriptors. */
  getUsed(): { token: T; len: number } | null {
    if (this.#broken) return null;
    if (this.#lastUsed === this.#shadowUsed) {
      // Acquire: the used elements before this used.idx are visible below.
      this.#shadowUsed = Atomics.load(this.#used16, USED.idx >>> 1);
      if (this.#lastUsed === this.#shadowUsed) return null;
      const pending = (this.#shadowUsed - this.#lastUsed) & 0xffff;
      if (pending > this.#inFlight) {
        this.#fail('used-index-jump', `used.idx ${this.#shadowUsed} is ${pending} past ${this.#lastUsed} with ${this.#inFlight} in flight`);
      }
    }
    const at = USED.ring + 8 * (this.#lastUsed & this.#mask);
    const id = this.#used.getUint32(at + USED.elemId, true);
    const len = this.#used.getUint32(at + USED.elemLen, true);
    if (id >= this.size || this.#chainDescs[id] === 0) this.#fail('used-id-invalid', `used id ${id} is not an outstanding head`);
    // §2.7.8: len is the number of bytes written into the chain's device-writable buffers.
    if (len > this.#writableBytes[id]!) this.#fail('used-len-invalid', `used len ${len} > ${this.#writableBytes[id]} writable bytes of chain ${id}`);
    this.#lastUsed = (this.#lastUsed + 1) & 0xffff;
    const token = this.#tokens[id] as T;
    this.#tokens[id] = undefined;
    this.#free(id);
    this.#inFlight--;
    return { token, len };
  }

  #free(head: number): void {
    let last = head;
    for (let k = this.#chainDescs[head]!; k > 1; k--) last = this.#link[last]!;
    this.#link[last] = this.#freeHead;
    this.#freeHead = head;
    this.#freeCount += this.#chainDescs[head]!;
    this.#chainDescs[head] = 0;
  }

  /**
   * Ask for interrupts again (§2.7.7): EVENT_IDX: used_event = next used index we will read; else
   * clear VIRTQ_AVAIL_F_NO_INTERRUPT. Then re-check used.idx (sequentially consistent: a full fence
   * between): returns true if used elements are already pending — reap them, no interrupt will come.
   */
  enableInterrupts(): boolean {
    if (this.eventIdx) {
      Atomics.store(this.#avail16, this.#usedEventIdx, this.#lastUsed);
    } else {
      Atomics.store(this.#avail16, AVAIL.flags >>> 1, Atomics.load(this.#avail16, AVAIL.flags >>> 1) & ~VIRTQ_AVAIL_F_NO_INTERRUPT & 0xffff);
    }
    return Atomics.load(this.#used16, USED.idx >>> 1) !== this.#lastUsed;
  }

  /**
   * Suppress interrupts while polling. Without EVENT_IDX: set VIRTQ_AVAIL_F_NO_INTERRUPT. With
   * EVENT_IDX the flags must stay 0 (§2.7.7.1); used_event = last_used - 1 lies behind anything the
   * device will publish next, so vring_need_event stays false until interrupts are re-enabled.
   */
  disableInterrupts(): void {
    if (this.eventIdx) {
      Atomics.store(this.#avail16, this.#usedEventIdx, (this.#lastUsed - 1) & 0xffff);
    } else {
      Atomics.store(this.#avail16, AVAIL.flags >>> 1, Atomics.load(this.#avail16, AVAIL.flags >>> 1) | VIRTQ_AVAIL_F_NO_INTERRUPT);
    }
  }

  /** Visit every in-flight token (to fail them all when the device breaks or resets). */
  forEachToken(fn: (token: T) => void): void {
    for (let i = 0; i < this.size; i++) if (this.#chainDescs[i] !== 0) fn(this.#tokens[i] as T);
  }
}

/**
 * Split virtqueue, driver side (VIRTIO 1.2 §2.7), specialised for this driver's requests: every chain
 * is exactly two descriptors, one device-readable buffer then one device-writable buffer (§2.6.4: the
 * device may not assume a particular framing). Memory ordering follows ../virtqueue/ring-memory.ts:
 * descriptors and avail.ring[] entries are plain writes ordered before the Atomics store of avail.idx;
 * used elements are read after an Atomics load of used.idx; notification decisions load the other
 * side's event index after our own atomic store (a full fence in between).
 *
 * The device is trusted less than fully: a used element naming a descriptor that is not outstanding is
 * a protocol error (`broken`), never an out-of-bounds access.
 */
import { VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_USED_F_NO_NOTIFY } from '../spec/virtio.js';
import { AVAIL, DESC, USED, availEventOffset, layoutRings, usedEventOffset, type RingLayout } from '../virtqueue/layout.js';
import { vringNeedEvent } from '../virtqueue/ring-memory.js';

const U32 = 4294967296;
const NONE = 0xffff;

export class SplitDriverQueue<T> {
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
  readonly #tokens: (T | undefined)[];
  /** Free descriptor list, linked through `#nextFree` (not through the shared table: TOCTOU-proof). */
  readonly #nextFree: Uint16Array;
  #freeHead = 0;
  #freeCount: number;
  /** Our avail.idx (published by `publish()`), and the value at the last publish. */
  #availIdx = 0;
  #publishedIdx = 0;
  #lastUsed = 0;
  #shadowUsed = 0;
  #broken = false;

  static layout(size: number): RingLayout {
    return layoutRings(size);
  }

  /** Lays the rings out at `offset` in `mem` (zeroing them) for a queue of `size` (power of 2). */
  constructor(mem: Uint8Array, offset: number, size: number, eventIdx: boolean) {
    const l = layoutRings(size);
    if (offset % 16 !== 0 || offset + l.totalBytes > mem.byteLength) throw new RangeError('ring does not fit');
    mem.fill(0, offset, offset + l.totalBytes);
    this.size = size;
    this.eventIdx = eventIdx;
    this.#mask = size - 1;
    const at = (o: number, n: number): DataView => new DataView(mem.buffer, mem.byteOffset + offset + o, n);
    this.#desc = at(l.descOffset, l.descBytes);
    this.#avail = at(l.availOffset, l.availBytes);
    this.#used = at(l.usedOffset, l.usedBytes);
    this.#avail16 = new Uint16Array(mem.buffer, mem.byteOffset + offset + l.availOffset, l.availBytes >>> 1);
    this.#used16 = new Uint16Array(mem.buffer, mem.byteOffset + offset + l.usedOffset, l.usedBytes >>> 1);
    this.#usedEventIdx = usedEventOffset(size) >>> 1;
    this.#availEventIdx = availEventOffset(size) >>> 1;
    this.#tokens = new Array<T | undefined>(size).fill(undefined);
    this.#nextFree = new Uint16Array(size);
    for (let i = 0; i < size; i++) this.#nextFree[i] = i + 1 < size ? i + 1 : NONE;
    this.#freeCount = size;
  }

  get freeCount(): number {
    return this.#freeCount;
  }

  /** The device completed something that was not outstanding: stop trusting this queue. */
  get broken(): boolean {
    return this.#broken;
  }

  #take(): number {
    const d = this.#freeHead;
    this.#freeHead = this.#nextFree[d]!;
    this.#freeCount--;
    return d;
  }

  #writeDesc(d: number, addr: number, len: number, flags: number, next: number): void {
    const o = d * 16;
    const v = this.#desc;
    // addr < 2^53 (guest-physical, checked by the caller): split into exact u32 halves.
    v.setUint32(o + DESC.addr, addr % U32, true);
    v.setUint32(o + DESC.addr + 4, Math.floor(addr / U32), true);
    v.setUint32(o + DESC.len, len, true);
    v.setUint16(o + DESC.flags, flags, true);
    v.setUint16(o + DESC.next, next, true);
  }

  /**
   * Adds the chain [readable: readAddr/readLen][writable: writeAddr/writeLen] (§2.7.13.1) and makes it
   * available in our shadow index; `publish()` makes it visible. Needs `freeCount >= 2`.
   */
  addChain(readAddr: number, readLen: number, writeAddr: number, writeLen: number, token: T): number {
    if (this.#freeCount < 2) throw new RangeError('virtqueue full');
    const head = this.#take();
    const tail = this.#take();
    this.#writeDesc(head, readAddr, readLen, VIRTQ_DESC_F_NEXT, tail);
    this.#writeDesc(tail, writeAddr, writeLen, VIRTQ_DESC_F_WRITE, 0);
    this.#tokens[head] = token;
    this.#nextFree[head] = tail; // remember the chain's second descriptor for the free path
    // §2.7.13.2: place the head in the next ring slot.
    this.#avail.setUint16(AVAIL.ring + 2 * (this.#availIdx & this.#mask), head, true);
    this.#availIdx = (this.#availIdx + 1) & 0xffff;
    return head;
  }

  /**
   * Publishes every chain added since the last call (§2.7.13.3: store avail.idx after the ring
   * entries) and says whether the device wants a kick (§2.7.13.4 / §2.7.10).
   */
  publish(): boolean {
    const newIdx = this.#availIdx;
    const oldIdx = this.#publishedIdx;
    if (newIdx === oldIdx) return false;
    this.#publishedIdx = newIdx;
    Atomics.store(this.#avail16, AVAIL.idx >>> 1, newIdx);
    if (this.eventIdx) return vringNeedEvent(Atomics.load(this.#used16, this.#availEventIdx), newIdx, oldIdx);
    return (Atomics.load(this.#used16, USED.flags >>> 1) & VIRTQ_USED_F_NO_NOTIFY) === 0;
  }

  /** Next used element (§2.7.14), or null. A bogus element marks the queue broken and returns null. */
  getUsed(): { token: T; len: number } | null {
    if (this.#broken) return null;
    if (this.#lastUsed === this.#shadowUsed) {
      this.#shadowUsed = Atomics.load(this.#used16, USED.idx >>> 1);
      if (this.#lastUsed === this.#shadowUsed) return null;
      // §2.7.8: the device cannot have used more chains than are outstanding (two descriptors each).
      if (((this.#shadowUsed - this.#lastUsed) & 0xffff) > (this.size - this.#freeCount) >>> 1) {
        this.#broken = true;
        return null;
      }
    }
    const at = USED.ring + 8 * (this.#lastUsed & this.#mask);
    const id = this.#used.getUint32(at + USED.elemId, true);
    const len = this.#used.getUint32(at + USED.elemLen, true);
    const token = id < this.size ? this.#tokens[id] : undefined;
    if (token === undefined) {
      this.#broken = true;
      return null;
    }
    this.#lastUsed = (this.#lastUsed + 1) & 0xffff;
    this.#tokens[id] = undefined;
    const tail = this.#nextFree[id]!;
    this.#nextFree[tail] = this.#freeHead;
    this.#nextFree[id] = tail;
    this.#freeHead = id;
    this.#freeCount += 2;
    return { token, len };
  }

  /** Ask the device not to interrupt while we drain (§2.7.7; with EVENT_IDX used_event is simply not advanced). */
  disableInterrupts(): void {
    if (!this.eventIdx) Atomics.store(this.#avail16, AVAIL.flags >>> 1, VIRTQ_AVAIL_F_NO_INTERRUPT);
  }

  /** Ask for the next interrupt, then re-check (§2.7.10); true if more used entries are already there. */
  enableInterrupts(): boolean {
    if (this.eventIdx) Atomics.store(this.#avail16, this.#usedEventIdx, this.#lastUsed);
    else Atomics.store(this.#avail16, AVAIL.flags >>> 1, 0);
    return !this.#broken && Atomics.load(this.#used16, USED.idx >>> 1) !== this.#lastUsed;
  }

  /** Every outstanding token (for failing them on close or reset). */
  forEachToken(fn: (token: T) => void): void {
    for (const t of this.#tokens) if (t !== undefined) fn(t);
  }
}

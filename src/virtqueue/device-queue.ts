/**
 * Split virtqueue, device side (VIRTIO 1.2 §2.7): pop available descriptor chains, walk direct and
 * indirect descriptors into checked guest-memory views, push used elements, and decide on
 * notifications (flags or EVENT_IDX). Memory ordering: see ./ring-memory.ts.
 *
 * The device never trusts the driver. Per chain:
 *  - the walk visits at most `size` descriptors of the main table and at most `len / 16` of an
 *    indirect table (a loop ends as 'chain-too-long');
 *  - every `next` is checked against the table it indexes;
 *  - an indirect table is not nested, not combined with NEXT, its length is a non-zero multiple of
 *    16 and at most `maxIndirectEntries` entries;
 *  - device-readable descriptors come before device-writable ones;
 *  - every [addr, addr + len) is inside guest memory (piecewise across adjacent regions);
 *  - the total length is capped at `maxChainBytes` (checked before translation: no u32 wrap).
 * A broken chain is returned as `{ ok: false, head, error }`: the caller completes it with 0 bytes
 * and goes on. Queue-fatal problems (avail.idx jumping, a head index out of range: there is no
 * valid used id to complete it with) throw VirtqueueError and set `broken` (DEVICE_NEEDS_RESET, §2.1.2).
 * Each descriptor is copied into locals before it is validated (TOCTOU: the driver may rewrite it).
 */

import type { GuestMemory } from '../memory/guest-memory.js';
import { VIRTQ_AVAIL_F_NO_INTERRUPT, VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE, VIRTQ_USED_F_NO_NOTIFY } from '../spec/virtio.js';
import type { DescriptorChain, PoppedChain } from './chain.js';
import { VirtqueueError } from './chain.js';
import { AVAIL, DESC, USED, assertQueueSize, availEventOffset, checkRingViews, usedEventOffset } from './layout.js';
import { dataView, u16View, vringNeedEvent } from './ring-memory.js';

/**
 * Default cap on the bytes one chain may describe (readable + writable): twice the device's default
 * max_size (512 MiB + 128, a 256 MiB cipher request's src and dst) plus headers. A bound checked
 * before translation, not an allocation.
 */
export const DEFAULT_MAX_CHAIN_BYTES = 2 * (512 * 1024 * 1024 + 128) + 64 * 1024;
/**
 * Default cap on indirect table entries. Linux sends 64 KiB AF_ALG requests as ONE indirect table
 * of 292 descriptors (duplicated scatterlist entries), so a cap near 300 would break them.
 */
export const DEFAULT_MAX_INDIRECT_ENTRIES = 4096;

export interface DeviceQueueOptions {
  /** Queue Size (power of 2, §2.7). */
  size: number;
  /** Host views of the three ring parts (already translated and bounds-checked by the transport). */
  desc: Uint8Array;
  avail: Uint8Array;
  used: Uint8Array;
  /** Guest memory, for descriptor addresses and indirect tables (guest-physical). */
  memory: GuestMemory;
  /** VIRTIO_RING_F_EVENT_IDX negotiated. */
  eventIdx: boolean;
  maxChainBytes?: number;
  maxIndirectEntries?: number;
  /** Next available index to process (vhost-user SET_VRING_BASE); default 0. */
  lastAvailIdx?: number;
}

const U32 = 4294967296;
/** Descriptor addresses are u64; any with a high half above this is >= 2^53, i.e. unmapped. */
const MAX_ADDR_HIGH = 0x1fffff;

/** Slots of the per-walk translation memo (a power of 2). */
const MEMO_SLOTS = 64;

export class DeviceQueue {
  readonly size: number;
  readonly eventIdx: boolean;
  readonly maxChainBytes: number;
  readonly maxIndirectEntries: number;
  readonly #memory: GuestMemory;
  readonly #mask: number;
  readonly #descTable: DataView;
  readonly #availView: DataView;
  readonly #avail16: Uint16Array;
  readonly #used: DataView;
  readonly #used16: Uint16Array;
  /** u16 index of avail.used_event / used.avail_event inside the Uint16Array views. */
  readonly #usedEventIdx: number;
  readonly #availEventIdx: number;

  #lastAvail: number;
  /** Last avail.idx read from memory (re-read only when we have caught up with it). */
  #shadowAvail: number;
  /** Next used.idx to publish (our private copy; used.idx in memory lags until publishUsed()). */
  #usedIdx: number;
  /** used.idx at the last notification decision (QEMU's signalled_used). */
  #signalledUsed = 0;
  #signalledValid = false;
  #broken = false;
  /** Scratch for an indirect table that straddles two memory regions (copied: TOCTOU-safe). */
  #indirectScratch: Uint8Array | undefined;
  /**
   * Per-walk memo of translated one-region buffers: Linux repeats each scatterlist entry (e1..en,
   * e2..en, ..., en: 291 descriptors for a 64 KiB request, docs/qemu-vhost-user-crypto.md §5),
   * and a repeated range reuses its checked view instead of translating (and allocating) it again.
   * Direct-mapped by address bits (a Map keyed by doubles cost ~50 ns a descriptor); an entry is
   * valid only for the walk whose number it carries (so nothing is cleared between walks).
   */
  readonly #memoAddr = new Float64Array(MEMO_SLOTS);
  readonly #memoLen = new Float64Array(MEMO_SLOTS);
  readonly #memoWalk = new Float64Array(MEMO_SLOTS);
  readonly #memoView: (Uint8Array | undefined)[] = new Array<Uint8Array | undefined>(MEMO_SLOTS).fill(undefined);
  #walkNumber = 0;

  constructor(opts: DeviceQueueOptions) {
    assertQueueSize(opts.size);
    checkRingViews(opts.size, opts.desc, opts.avail, opts.used);
    this.size = opts.size;
    this.#mask = opts.size - 1;
    this.eventIdx = opts.eventIdx;
    this.maxChainBytes = opts.maxChainBytes ?? DEFAULT_MAX_CHAIN_BYTES;
    this.maxIndirectEntries = opts.maxIndirectEntries ?? DEFAULT_MAX_INDIRECT_ENTRIES;
    if (!Number.isSafeInteger(this.maxChainBytes) || this.maxChainBytes < 0) throw new RangeError('bad maxChainBytes');
    if (!Number.isInteger(this.maxIndirectEntries) || this.maxIndirectEntries < 1 || this.maxIndirectEntries > 65536) {
      throw new RangeError('bad maxIndirectEntries');
    }
    this.#memory = opts.memory;
    this.#descTable = dataView(opts.desc);
    this.#availView = dataView(opts.avail);
    this.#avail16 = u16View(opts.avail);
    this.#used = dataView(opts.used);
    this.#used16 = u16View(opts.used);
    this.#usedEventIdx = usedEventOffset(opts.size) >>> 1;
    this.#availEventIdx = availEventOffset(opts.size) >>> 1;
    this.#lastAvail = (opts.lastAvailIdx ?? 0) & 0xffff;
    this.#shadowAvail = this.#lastAvail;
    // vhost-user §5.3: start from the used.idx already in guest memory.
    this.#usedIdx = Atomics.load(this.#used16, USED.idx >>> 1);
  }

  /** True once a queue-fatal error was seen; the transport sets DEVICE_NEEDS_RESET. */
  get broken(): boolean {
    return this.#broken;
  }

  /** Next available ring index to process (vhost-user GET/SET_VRING_BASE). */
  get lastAvailIdx(): number {
    return this.#lastAvail;
  }

  set lastAvailIdx(v: number) {
    this.#lastAvail = v & 0xffff;
    this.#shadowAvail = this.#lastAvail;
  }

  /** used.idx as this side will publish it next (elements added so far). */
  get usedIdx(): number {
    return this.#usedIdx;
  }

  #fatal(kind: 'avail-index-jump' | 'head-out-of-range', message: string): never {
    this.#broken = true;
    throw new VirtqueueError(kind, message);
  }

  /** Is there an available entry we have not popped? (one atomic load of avail.idx) */
  hasAvailable(): boolean {
    if (this.#broken) return false;
    return Atomics.load(this.#avail16, AVAIL.idx >>> 1) !== this.#lastAvail;
  }

  /**
   * Pop the next available chain, or null if there is none (or the queue is broken). A malformed
   * chain is consumed and returned as `{ ok: false }`: complete it with addUsed(head, 0).
   */
  popChain(): PoppedChain | null {
    if (this.#broken) return null;
    if (this.#lastAvail === this.#shadowAvail) {
      // Acquire: everything the driver wrote before this store of avail.idx is visible below.
      this.#shadowAvail = Atomics.load(this.#avail16, AVAIL.idx >>> 1);
      if (this.#lastAvail === this.#shadowAvail) return null;
      // The available ring holds Queue Size entries (§2.7.6): more pending means a corrupt idx.
      const pending = (this.#shadowAvail - this.#lastAvail) & 0xffff;
      if (pending > this.size) {
        this.#fatal('avail-index-jump', `avail.idx ${this.#shadowAvail} is ${pending} entries past ${this.#lastAvail} (queue size ${this.size})`);
      }
    }
    const slot = this.#lastAvail & this.#mask;
    const head = this.#availView.getUint16(AVAIL.ring + 2 * slot, true);
    if (head >= this.size) {
      this.#fatal('head-out-of-range', `avail.ring[${slot}] = ${head} >= queue size ${this.size}`);
    }
    this.#lastAvail = (this.#lastAvail + 1) & 0xffff;
    return this.#walk(head);
  }

  #walk(head: number): PoppedChain {
    const memory = this.#memory;
    const readable: Uint8Array[] = [];
    const writable: Uint8Array[] = [];
    let readableLength = 0;
    let writableLength = 0;
    let table = this.#descTable;
    let tableSize = this.size;
    let inIndirect = false;
    let index = head;
    let visited = 0;
    let sawWritable = false;
    const cap = this.maxChainBytes;
    const walk = ++this.#walkNumber;
    const memoAddr = this.#memoAddr;
    const memoLen = this.#memoLen;
    const memoWalk = this.#memoWalk;
    const memoView = this.#memoView;

    for (;;) {
      // TTL (§2.7.5.2: "loops in the descriptor chain are forbidden"): visiting more descriptors
      // than the table holds means a loop, and the walk ends here.
      if (visited >= tableSize) {
        return fail(head, 'chain-too-long', `more than ${tableSize} descriptors in ${inIndirect ? 'indirect table' : 'chain'}`);
      }
      visited++;
      // Copy the descriptor into locals before validating it (TOCTOU).
      const at = index * 16;
      const addrLo = table.getUint32(at + DESC.addr, true);
      const addrHi = table.getUint32(at + DESC.addr + 4, true);
      const len = table.getUint32(at + DESC.len, true);
      const flags = table.getUint16(at + DESC.flags, true);
      const next = table.getUint16(at + DESC.next, true);

      if ((flags & VIRTQ_DESC_F_INDIRECT) !== 0) {
        // §2.7.5.3.1: "The driver MUST NOT set the VIRTQ_DESC_F_INDIRECT flag within an indirect
        // descriptor" and "MUST NOT set both VIRTQ_DESC_F_INDIRECT and VIRTQ_DESC_F_NEXT".
        if (inIndirect) return fail(head, 'nested-indirect', `indirect descriptor inside an indirect table`);
        if ((flags & VIRTQ_DESC_F_NEXT) !== 0) return fail(head, 'indirect-with-next', `descriptor ${index} has INDIRECT and NEXT`);
        // §2.7.5.3: the table is len/16 descriptors. (The WRITE flag here is ignored, §2.7.5.3.2.)
        // DEVIATION: §2.7.5.3.1 also bounds the chain by the Queue Size; we accept up to
        // maxIndirectEntries instead (a driver-side rule; Linux tables reach ~300 entries).
        if (len === 0 || len % 16 !== 0) return fail(head, 'indirect-bad-length', `indirect table length ${len} is not a non-zero multiple of 16`);
        const entries = len / 16;
        if (entries > this.maxIndirectEntries) {
          return fail(head, 'indirect-bad-length', `indirect table of ${entries} entries exceeds ${this.maxIndirectEntries}`);
        }
        const tbl = addrHi > MAX_ADDR_HIGH ? null : this.#indirectTable(addrHi * U32 + addrLo, len);
        if (tbl === null) return fail(head, 'address-out-of-bounds', `indirect table 0x${hex(addrHi, addrLo)} + ${len} not in guest memory`);
        table = tbl;
        tableSize = entries;
        inIndirect = true;
        index = 0;
        visited = 0;
        continue;
      }

      if ((flags & VIRTQ_DESC_F_WRITE) !== 0) {
        sawWritable = true;
      } else if (sawWritable) {
        // §2.7.4.2: device-writable elements come after all device-readable ones.
        return fail(head, 'readable-after-writable', `readable descriptor ${index} after a writable one`);
      }
      // Cap before translating: len <= 2^32-1 and the sums stay far below 2^53 (no wrap).
      if (readableLength + writableLength + len > cap) {
        return fail(head, 'chain-too-large', `chain exceeds ${cap} bytes`);
      }
      // Zero-length descriptors are legal: nothing to map (and nothing to check).
      if (len !== 0) {
        const out = sawWritable ? writable : readable;
        const gpa = addrHi * U32 + addrLo;
        const slot = ((addrLo >>> 12) ^ (addrLo >>> 4) ^ addrHi) & (MEMO_SLOTS - 1);
        if (memoWalk[slot] === walk && memoAddr[slot] === gpa && memoLen[slot] === len) {
          // The same [gpa, gpa + len) was translated and bounds-checked earlier in this walk.
          out.push(memoView[slot]!);
        } else {
          const before = out.length;
          if (addrHi > MAX_ADDR_HIGH || !memory.pushSlicesAt(gpa, len, out)) {
            return fail(head, 'address-out-of-bounds', `descriptor ${index}: 0x${hex(addrHi, addrLo)} + ${len} not in guest memory`);
          }
          if (out.length === before + 1) {
            memoWalk[slot] = walk;
            memoAddr[slot] = gpa;
            memoLen[slot] = len;
            memoView[slot] = out[before]!;
          }
        }
        if (sawWritable) writableLength += len;
        else readableLength += len;
      }
      if ((flags & VIRTQ_DESC_F_NEXT) === 0) break;
      if (next >= tableSize) return fail(head, 'next-out-of-range', `descriptor ${index}: next ${next} >= ${tableSize}`);
      index = next;
    }

    const chain: DescriptorChain = { head, readable, writable, readableLength, writableLength };
    return { ok: true, chain };
  }

  /** A DataView of an indirect table: a live view when in one region, else a private copy. */
  #indirectTable(gpa: number, len: number): DataView | null {
    const one = this.#memory.viewAt(gpa, len);
    if (one !== null) return dataView(one);
    const parts: Uint8Array[] = [];
    if (!this.#memory.pushSlicesAt(gpa, len, parts)) return null;
    let scratch = this.#indirectScratch;
    if (scratch === undefined || scratch.byteLength < len) {
      scratch = new Uint8Array(this.maxIndirectEntries * 16);
      this.#indirectScratch = scratch;
    }
    let off = 0;
    for (const p of parts) {
      scratch.set(p, off);
      off += p.byteLength;
    }
    return new DataView(scratch.buffer, 0, len);
  }

  /**
   * Write the used element for chain `head` with `len` bytes written (§2.7.8). Not visible to the
   * driver until publishUsed().
   */
  addUsed(head: number, len: number): void {
    if (!Number.isInteger(head) || head < 0 || head >= this.size) throw new RangeError(`used id ${head} out of range`);
    if (!Number.isInteger(len) || len < 0 || len >= U32) throw new RangeError(`used len ${len} is not a u32`);
    const at = USED.ring + 8 * (this.#usedIdx & this.#mask);
    this.#used.setUint32(at + USED.elemId, head, true);
    this.#used.setUint32(at + USED.elemLen, len, true);
    this.#usedIdx = (this.#usedIdx + 1) & 0xffff;
  }

  /** Release store of used.idx for everything added since the last publish (§2.7.8.2: elements first). */
  publishUsed(): void {
    Atomics.store(this.#used16, USED.idx >>> 1, this.#usedIdx);
  }

  /**
   * After publishUsed(): must the driver be notified? EVENT_IDX: vring_need_event(used_event, new,
   * old) with old = used.idx at the previous decision; otherwise unless the driver set
   * VIRTQ_AVAIL_F_NO_INTERRUPT (§2.7.7.2). The Atomics store of used.idx above and the Atomics
   * load below are sequentially consistent: the full barrier the spec asks for.
   */
  needsNotification(): boolean {
    const newIdx = this.#usedIdx;
    const valid = this.#signalledValid;
    const old = this.#signalledUsed;
    this.#signalledValid = true;
    this.#signalledUsed = newIdx;
    // Nothing used since the last decision: nothing to tell (the driver re-checks used.idx itself
    // after re-enabling interrupts, so no completion can be missed).
    if (valid && old === newIdx) return false;
    if (this.eventIdx) {
      if (!valid) return true;
      return vringNeedEvent(Atomics.load(this.#avail16, this.#usedEventIdx), newIdx, old);
    }
    return (Atomics.load(this.#avail16, AVAIL.flags >>> 1) & VIRTQ_AVAIL_F_NO_INTERRUPT) === 0;
  }

  /**
   * Ask the driver for kicks again, then re-check for work (§2.7.10). EVENT_IDX: write
   * avail_event = last_avail_idx (Linux never kicks otherwise, docs/qemu-vhost-user-crypto.md §6); else clear
   * VIRTQ_USED_F_NO_NOTIFY. Returns true if entries are available: process them before sleeping.
   */
  enableNotifications(): boolean {
    if (this.eventIdx) {
      Atomics.store(this.#used16, this.#availEventIdx, this.#lastAvail);
    } else {
      Atomics.store(this.#used16, USED.flags >>> 1, Atomics.load(this.#used16, USED.flags >>> 1) & ~VIRTQ_USED_F_NO_NOTIFY & 0xffff);
    }
    return this.hasAvailable();
  }

  /**
   * Tell the driver kicks are not needed while we poll. Without EVENT_IDX: set NO_NOTIFY. With
   * EVENT_IDX the driver ignores used.flags; avail_event is left where it is, so the driver kicks
   * at most once more (when it passes that index).
   */
  disableNotifications(): void {
    if (!this.eventIdx) {
      Atomics.store(this.#used16, USED.flags >>> 1, Atomics.load(this.#used16, USED.flags >>> 1) | VIRTQ_USED_F_NO_NOTIFY);
    }
  }
}

function fail(head: number, kind: ConstructorParameters<typeof VirtqueueError>[0], message: string): PoppedChain {
  return { ok: false, head, error: new VirtqueueError(kind, message, head) };
}

function hex(hi: number, lo: number): string {
  return (BigInt(hi) * BigInt(U32) + BigInt(lo)).toString(16);
}

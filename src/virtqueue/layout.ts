/**
 * Split virtqueue memory layout (VIRTIO 1.2 §2.7, "Split Virtqueues"):
 *
 *   part              alignment   size for Queue Size q
 *   Descriptor Table  16          16 * q                 struct virtq_desc  { le64 addr; le32 len; le16 flags; le16 next; }
 *   Available Ring    2           6 + 2 * q              struct virtq_avail { le16 flags; le16 idx; le16 ring[q]; le16 used_event; }
 *   Used Ring         4           6 + 8 * q              struct virtq_used  { le16 flags; le16 idx; struct { le32 id; le32 len; } ring[q]; le16 avail_event; }
 *
 * (§2.7 table "Virtqueue Part / Alignment / Size"; §2.7.5, §2.7.6, §2.7.8.)
 */

import { VIRTQ_DESC_SIZE, VIRTQ_MAX_SIZE, VIRTQ_USED_ELEM_SIZE } from '../spec/virtio.js';
import { VirtqueueError } from './chain.js';

/** §2.7: alignment of each part, in bytes. */
export const VIRTQ_ALIGN = { desc: 16, avail: 2, used: 4 } as const;

/** Byte offsets inside struct virtq_desc (§2.7.5). */
export const DESC = { addr: 0, len: 8, flags: 12, next: 14 } as const;
/** Byte offsets inside struct virtq_avail (§2.7.6). `ring` entries are 2 bytes each. */
export const AVAIL = { flags: 0, idx: 2, ring: 4 } as const;
/** Byte offsets inside struct virtq_used (§2.7.8). `ring` entries are 8 bytes: id @0, len @4. */
export const USED = { flags: 0, idx: 2, ring: 4, elemId: 0, elemLen: 4 } as const;

/** True for a legal split-virtqueue size: a power of 2 in 1..32768 (§2.7). */
export function isValidQueueSize(size: number): boolean {
  return Number.isInteger(size) && size >= 1 && size <= VIRTQ_MAX_SIZE && (size & (size - 1)) === 0;
}

export function assertQueueSize(size: number): void {
  if (!isValidQueueSize(size)) {
    throw new RangeError(`queue size ${size} is not a power of 2 in 1..${VIRTQ_MAX_SIZE} (VIRTIO 1.2 §2.7)`);
  }
}

export interface RingSizes {
  readonly descBytes: number;
  readonly availBytes: number;
  readonly usedBytes: number;
}

/** Sizes of the three parts for Queue Size `size` (§2.7), including used_event / avail_event. */
export function ringSizes(size: number): RingSizes {
  assertQueueSize(size);
  return {
    descBytes: VIRTQ_DESC_SIZE * size,
    availBytes: 6 + 2 * size,
    usedBytes: 6 + VIRTQ_USED_ELEM_SIZE * size,
  };
}

/** Offset of `used_event` inside the available ring (§2.7.6, only meaningful with EVENT_IDX). */
export function usedEventOffset(size: number): number {
  return AVAIL.ring + 2 * size;
}

/** Offset of `avail_event` inside the used ring (§2.7.8, only meaningful with EVENT_IDX). */
export function availEventOffset(size: number): number {
  return USED.ring + VIRTQ_USED_ELEM_SIZE * size;
}

export interface RingLayout extends RingSizes {
  /** Offsets of the three parts from the start of the area (the area itself starts 16-aligned). */
  readonly descOffset: number;
  readonly availOffset: number;
  readonly usedOffset: number;
  /** Bytes needed for the whole area. */
  readonly totalBytes: number;
}

function alignUp(n: number, align: number): number {
  return Math.ceil(n / align) * align;
}

/**
 * Lay out the three parts back to back in one area. `usedAlign` defaults to the spec's 4; pass 4096
 * for the legacy (§2.7.2 "Legacy Interfaces") contiguous layout.
 */
export function layoutRings(size: number, usedAlign: number = VIRTQ_ALIGN.used): RingLayout {
  const s = ringSizes(size);
  const descOffset = 0;
  const availOffset = alignUp(descOffset + s.descBytes, VIRTQ_ALIGN.avail);
  const usedOffset = alignUp(availOffset + s.availBytes, Math.max(usedAlign, VIRTQ_ALIGN.used));
  return { ...s, descOffset, availOffset, usedOffset, totalBytes: usedOffset + s.usedBytes };
}

export interface RingViews {
  readonly desc: Uint8Array;
  readonly avail: Uint8Array;
  readonly used: Uint8Array;
}

/** Views of the three parts of a ring laid out by `layoutRings` at `offset` inside `area`. */
export function ringViews(area: Uint8Array, size: number, offset = 0, usedAlign: number = VIRTQ_ALIGN.used): RingViews {
  const l = layoutRings(size, usedAlign);
  if (offset < 0 || offset + l.totalBytes > area.byteLength) {
    throw new RangeError(`ring of size ${size} (${l.totalBytes} bytes) does not fit at offset ${offset}`);
  }
  return {
    desc: area.subarray(offset + l.descOffset, offset + l.descOffset + l.descBytes),
    avail: area.subarray(offset + l.availOffset, offset + l.availOffset + l.availBytes),
    used: area.subarray(offset + l.usedOffset, offset + l.usedOffset + l.usedBytes),
  };
}

/**
 * Check the guest addresses of a ring (from SET_VRING_ADDR or the driver's setupQueue) against
 * the §2.7 alignment table. Untrusted input: a typed error, never a misaligned Atomics view.
 */
export function checkRingAlignment(descAddr: bigint, availAddr: bigint, usedAddr: bigint): void {
  if (descAddr % BigInt(VIRTQ_ALIGN.desc) !== 0n) {
    throw new VirtqueueError('ring-out-of-bounds', `descriptor table 0x${descAddr.toString(16)} is not 16-byte aligned`);
  }
  if (availAddr % BigInt(VIRTQ_ALIGN.avail) !== 0n) {
    throw new VirtqueueError('ring-out-of-bounds', `available ring 0x${availAddr.toString(16)} is not 2-byte aligned`);
  }
  if (usedAddr % BigInt(VIRTQ_ALIGN.used) !== 0n) {
    throw new VirtqueueError('ring-out-of-bounds', `used ring 0x${usedAddr.toString(16)} is not 4-byte aligned`);
  }
}

/**
 * Check the host views of a ring (what DeviceQueue/DriverQueue are given): large enough for
 * `size`, and aligned in their backing buffer so that the 16-bit index/flag/event fields can be
 * accessed with Atomics (which need naturally aligned typed-array offsets).
 */
export function checkRingViews(size: number, desc: Uint8Array, avail: Uint8Array, used: Uint8Array): void {
  const s = ringSizes(size);
  if (desc.byteLength < s.descBytes) {
    throw new VirtqueueError('ring-out-of-bounds', `descriptor table view ${desc.byteLength} < ${s.descBytes} bytes`);
  }
  if (avail.byteLength < s.availBytes) {
    throw new VirtqueueError('ring-out-of-bounds', `available ring view ${avail.byteLength} < ${s.availBytes} bytes`);
  }
  if (used.byteLength < s.usedBytes) {
    throw new VirtqueueError('ring-out-of-bounds', `used ring view ${used.byteLength} < ${s.usedBytes} bytes`);
  }
  if (avail.byteOffset % 2 !== 0 || used.byteOffset % 4 !== 0) {
    throw new VirtqueueError('ring-out-of-bounds', 'available/used ring views are misaligned in host memory');
  }
}

/**
 * How both sides of a split virtqueue touch ring memory, and the memory-ordering rules (stated once
 * here; DeviceQueue and DriverQueue follow them).
 *
 * Ring memory may be a SharedArrayBuffer shared with a worker thread, or an mmap'ed memfd shared
 * with another process (vhost-user). The fields that publish or request work are accessed with
 * Atomics (sequentially consistent loads/stores, which also act as the barriers the spec asks for):
 *   avail.flags, avail.idx, avail.used_event, used.flags, used.idx, used.avail_event.
 * Descriptors, avail.ring[] entries and used elements are accessed with plain little-endian DataView
 * reads/writes, and are ordered by those atomic accesses:
 *
 *   driver: write descriptors and avail.ring[i]  ->  Atomics.store(avail.idx)          (§2.7.13.3)
 *   device: Atomics.load(avail.idx)  ->  read avail.ring[i] and descriptors             (the pairing load)
 *   device: write used element (id, len)  ->  Atomics.store(used.idx)                   (§2.7.8.2)
 *   driver: Atomics.load(used.idx)  ->  read used element
 *   suppression (§2.7.7, §2.7.10): after re-enabling notifications (store avail_event / used_event
 *   or clear the flag) the side re-reads the other side's index with an atomic load: a full fence
 *   between the two, so a kick/interrupt can never be lost ("enable, then re-check").
 *   notification decision: store idx, then load the event/flags (again store-then-load, fenced).
 *
 * Typed arrays use the host byte order, so we assert a little-endian host (virtio 1.x rings are
 * little-endian: le16/le32/le64 fields, §2.7) at module load.
 */

import { endianness } from 'node:os';

if (endianness() !== 'LE') {
  throw new Error('virtqueue: a little-endian host is required (virtio rings are little-endian)');
}

/** A Uint16Array over the whole of `view` (its byteOffset must be even), for Atomics access. */
export function u16View(view: Uint8Array): Uint16Array {
  return new Uint16Array(view.buffer, view.byteOffset, view.byteLength >>> 1);
}

/** A DataView over exactly `view`. */
export function dataView(view: Uint8Array): DataView {
  return new DataView(view.buffer, view.byteOffset, view.byteLength);
}

/**
 * VIRTIO 1.2 §2.7.7.2 / §2.7.10: with EVENT_IDX, notify iff `event` lies in (old, new] modulo 2^16.
 * Same arithmetic as the spec's vring_need_event(event_idx, new_idx, old_idx).
 */
export function vringNeedEvent(event: number, newIdx: number, oldIdx: number): boolean {
  return ((newIdx - event - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
}

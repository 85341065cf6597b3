import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  availEventOffset,
  checkRingAlignment,
  checkRingViews,
  isValidQueueSize,
  layoutRings,
  ringSizes,
  ringViews,
  usedEventOffset,
} from '../../src/virtqueue/layout.js';
import { VirtqueueError } from '../../src/virtqueue/chain.js';

// Expected numbers computed by hand from the VIRTIO 1.2 §2.7 table:
//   desc 16*q, avail 6+2*q (flags, idx, ring[q], used_event), used 6+8*q (flags, idx, ring[q], avail_event).
describe('split ring layout (VIRTIO 1.2 §2.7)', () => {
  it('sizes for q = 1, 4, 256, 1024, 32768', () => {
    assert.deepEqual(ringSizes(1), { descBytes: 16, availBytes: 8, usedBytes: 14 });
    assert.deepEqual(ringSizes(4), { descBytes: 64, availBytes: 14, usedBytes: 38 });
    assert.deepEqual(ringSizes(256), { descBytes: 4096, availBytes: 518, usedBytes: 2054 });
    assert.deepEqual(ringSizes(1024), { descBytes: 16384, availBytes: 2054, usedBytes: 8198 });
    assert.deepEqual(ringSizes(32768), { descBytes: 524288, availBytes: 65542, usedBytes: 262150 });
  });

  it('used_event and avail_event offsets (q = 1024: avail+2052, used+8196)', () => {
    assert.equal(usedEventOffset(1024), 2052);
    assert.equal(availEventOffset(1024), 8196);
    assert.equal(usedEventOffset(4), 12);
    assert.equal(availEventOffset(4), 36);
  });

  it('queue size must be a power of 2 in 1..32768', () => {
    for (const q of [1, 2, 64, 1024, 32768]) assert.ok(isValidQueueSize(q));
    for (const q of [0, 3, 100, 65536, -4, 1.5, NaN]) {
      assert.ok(!isValidQueueSize(q));
      assert.throws(() => ringSizes(q), RangeError);
    }
  });

  it('layoutRings packs the parts at their alignments (modern and legacy 4096)', () => {
    // q = 4: desc [0,64), avail [64,78), used aligned to 4 -> 80, ends 80+38 = 118.
    assert.deepEqual(layoutRings(4), {
      descBytes: 64,
      availBytes: 14,
      usedBytes: 38,
      descOffset: 0,
      availOffset: 64,
      usedOffset: 80,
      totalBytes: 118,
    });
    // q = 256: avail [4096, 4614), used at 4616 (4-aligned); legacy: 8192.
    assert.equal(layoutRings(256).usedOffset, 4616);
    assert.equal(layoutRings(256, 4096).usedOffset, 8192);
    assert.equal(layoutRings(256, 4096).totalBytes, 8192 + 2054);
  });

  it('ringViews cuts the three parts out of one area', () => {
    const area = new Uint8Array(200);
    const v = ringViews(area, 4, 16);
    assert.equal(v.desc.byteOffset, 16);
    assert.equal(v.avail.byteOffset, 80);
    assert.equal(v.used.byteOffset, 96);
    assert.equal(v.used.byteLength, 38);
    assert.throws(() => ringViews(area, 8, 0), RangeError);
  });

  it('ring address alignment is checked (typed error)', () => {
    checkRingAlignment(0x1000n, 0x2002n, 0x3004n);
    assert.throws(() => checkRingAlignment(0x1008n, 0x2000n, 0x3000n), VirtqueueError);
    assert.throws(() => checkRingAlignment(0x1000n, 0x2001n, 0x3000n), VirtqueueError);
    assert.throws(() => checkRingAlignment(0x1000n, 0x2000n, 0x3002n), VirtqueueError);
  });

  it('ring views must be large enough and aligned for Atomics', () => {
    const buf = new Uint8Array(1024);
    checkRingViews(4, buf.subarray(0, 64), buf.subarray(64, 78), buf.subarray(80, 118));
    assert.throws(() => checkRingViews(4, buf.subarray(0, 63), buf.subarray(64, 78), buf.subarray(80, 118)), VirtqueueError);
    assert.throws(() => checkRingViews(4, buf.subarray(0, 64), buf.subarray(64, 77), buf.subarray(80, 118)), VirtqueueError);
    assert.throws(() => checkRingViews(4, buf.subarray(0, 64), buf.subarray(65, 79), buf.subarray(80, 118)), VirtqueueError);
    assert.throws(() => checkRingViews(4, buf.subarray(0, 64), buf.subarray(64, 78), buf.subarray(82, 120)), VirtqueueError);
  });
});

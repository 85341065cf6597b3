/**
 * The driver-side split ring against the device-side DeviceQueue (independent implementation of
 * VIRTIO 1.2 §2.7), in one memory region: chains arrive with the right bytes, completions come back
 * with their tokens, descriptors are recycled, EVENT_IDX and flag-based suppression decide kicks and
 * interrupts, and a lying device is detected rather than trusted.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { SplitDriverQueue } from '../../src/driver/split-driver-queue.js';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { DeviceQueue } from '../../src/virtqueue/device-queue.js';

const BASE = 0x4000_0000;

function pair(size: number, eventIdx: boolean) {
  const bytes = new Uint8Array(new SharedArrayBuffer(1 << 20));
  const drv = new SplitDriverQueue<string>(bytes, 0, size, eventIdx);
  const l = SplitDriverQueue.layout(size);
  const memory = new GuestMemory([{ guestPhysAddr: BigInt(BASE), bytes }]);
  const dev = new DeviceQueue({
    size,
    desc: bytes.subarray(l.descOffset, l.descOffset + l.descBytes),
    avail: bytes.subarray(l.availOffset, l.availOffset + l.availBytes),
    used: bytes.subarray(l.usedOffset, l.usedOffset + l.usedBytes),
    memory,
    eventIdx,
  });
  return { bytes, drv, dev, l };
}

describe('SplitDriverQueue <-> DeviceQueue', () => {
  it('delivers readable and writable buffers and returns tokens, recycling descriptors over many rounds', () => {
    const { bytes, drv, dev } = pair(8, false);
    const dataAt = 0x10000;
    for (let round = 0; round < 50; round++) {
      const n = 1 + (round % 4);
      for (let i = 0; i < n; i++) {
        const off = dataAt + i * 64;
        bytes.fill(round + i, off, off + 10);
        drv.addChain(BASE + off, 10, BASE + off + 32, 5, `r${round}.${i}`);
      }
      assert.equal(drv.freeCount, 8 - 2 * n);
      assert.equal(drv.publish(), true, 'without EVENT_IDX the device did not set NO_NOTIFY: kick');
      for (let i = 0; i < n; i++) {
        const p = dev.popChain();
        assert.ok(p && p.ok);
        assert.equal(p.chain.readable.length, 1);
        assert.equal(p.chain.writable.length, 1);
        assert.deepEqual([...p.chain.readable[0]!], new Array(10).fill(round + i));
        assert.equal(p.chain.writableLength, 5);
        p.chain.writable[0]!.fill(0xa0 + i);
        dev.addUsed(p.chain.head, 5);
      }
      assert.equal(dev.popChain(), null);
      dev.publishUsed();
      for (let i = 0; i < n; i++) {
        const u = drv.getUsed();
        assert.deepEqual(u, { token: `r${round}.${i}`, len: 5 });
        const off = dataAt + i * 64 + 32;
        assert.deepEqual([...bytes.subarray(off, off + 5)], new Array(5).fill(0xa0 + i));
      }
      assert.equal(drv.getUsed(), null);
      assert.equal(drv.freeCount, 8);
    }
  });

  it('completes out of order', () => {
    const { drv, dev } = pair(8, false);
    for (const t of ['a', 'b', 'c']) drv.addChain(BASE + 0x10000, 16, BASE + 0x10100, 16, t);
    drv.publish();
    const heads = [dev.popChain(), dev.popChain(), dev.popChain()].map((p) => (p && p.ok ? p.chain.head : -1));
    dev.addUsed(heads[2]!, 1);
    dev.addUsed(heads[0]!, 2);
    dev.addUsed(heads[1]!, 3);
    dev.publishUsed();
    assert.deepEqual([drv.getUsed(), drv.getUsed(), drv.getUsed()], [
      { token: 'c', len: 1 },
      { token: 'a', len: 2 },
      { token: 'b', len: 3 },
    ]);
    assert.equal(drv.freeCount, 8);
  });

  it('EVENT_IDX: kicks only when the device asked (avail_event), interrupts only past used_event', () => {
    const { drv, dev } = pair(16, true);
    drv.addChain(BASE + 0x10000, 8, BASE + 0x10100, 8, 'x');
    // Fresh ring: avail_event = 0, so publishing idx 0 -> 1 passes it: kick (§2.7.10).
    assert.equal(drv.publish(), true);
    dev.disableNotifications();
    const p = dev.popChain();
    assert.ok(p && p.ok);
    // The device is busy and has not re-enabled: avail_event still 0, publishing 1 -> 2 does not cross it.
    drv.addChain(BASE + 0x10000, 8, BASE + 0x10100, 8, 'y');
    assert.equal(drv.publish(), false);
    // Device catches up and re-enables: avail_event = 2, it sees the pending entry on re-check.
    assert.equal(dev.enableNotifications(), true);
    const q = dev.popChain();
    assert.ok(q && q.ok);
    assert.equal(dev.enableNotifications(), false);
    drv.addChain(BASE + 0x10000, 8, BASE + 0x10100, 8, 'z');
    assert.equal(drv.publish(), true, 'avail_event = 2 is crossed by 2 -> 3');

    // Interrupts: the driver asks for one at used_event = last seen (0).
    assert.equal(drv.enableInterrupts(), false);
    dev.addUsed(p.chain.head, 0);
    dev.publishUsed();
    assert.equal(dev.needsNotification(), true);
    drv.disableInterrupts(); // draining: used_event stays at 0
    assert.equal(drv.getUsed()?.token, 'x');
    dev.addUsed(q.chain.head, 0);
    dev.publishUsed();
    assert.equal(dev.needsNotification(), false, 'used_event 0 was already passed: no second interrupt');
    assert.equal(drv.enableInterrupts(), true, 're-check after enabling finds the completion');
    assert.equal(drv.getUsed()?.token, 'y');
    assert.equal(drv.enableInterrupts(), false);
  });

  it('without EVENT_IDX honours VIRTQ_USED_F_NO_NOTIFY and sets VIRTQ_AVAIL_F_NO_INTERRUPT', () => {
    const { drv, dev } = pair(8, false);
    dev.disableNotifications();
    drv.addChain(BASE + 0x10000, 8, BASE + 0x10100, 8, 'x');
    assert.equal(drv.publish(), false);
    assert.equal(dev.enableNotifications(), true);
    const p = dev.popChain();
    assert.ok(p && p.ok);
    drv.disableInterrupts();
    dev.addUsed(p.chain.head, 0);
    dev.publishUsed();
    assert.equal(dev.needsNotification(), false);
    assert.equal(drv.enableInterrupts(), true);
  });

  it('a used element naming a descriptor that is not outstanding breaks the queue (no crash, no bogus token)', () => {
    const { bytes, drv, l } = pair(8, false);
    drv.addChain(BASE + 0x10000, 8, BASE + 0x10100, 8, 'x'); // head 0 (descriptors 0, 1)
    drv.publish();
    const used = new DataView(bytes.buffer, l.usedOffset);
    used.setUint32(4, 1, true); // id 1: the chain's second descriptor, not a head
    used.setUint32(8, 0, true);
    used.setUint16(2, 1, true);
    assert.equal(drv.getUsed(), null);
    assert.equal(drv.broken, true);
  });

  it('a used index running ahead of what is outstanding breaks the queue', () => {
    const { bytes, drv, l } = pair(8, false);
    drv.addChain(BASE + 0x10000, 8, BASE + 0x10100, 8, 'x');
    drv.publish();
    new DataView(bytes.buffer, l.usedOffset).setUint16(2, 2, true); // 2 used, 1 outstanding
    assert.equal(drv.getUsed(), null);
    assert.equal(drv.broken, true);
  });
});

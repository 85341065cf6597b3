import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import type { DescriptorChain, PoppedChain } from '../../src/virtqueue/chain.js';
import { DeviceQueue } from '../../src/virtqueue/device-queue.js';
import { F_INDIRECT, F_NEXT, F_WRITE, RawRing } from '../fixtures/raw-ring.js';

function hex(s: string): Uint8Array {
  return Uint8Array.from(s.replace(/\s+/g, '').match(/../g)!.map((b) => parseInt(b, 16)));
}

function ok(p: PoppedChain | null): DescriptorChain {
  assert.ok(p !== null, 'expected a chain');
  if (!p.ok) assert.fail(`expected a good chain, got ${p.error.message}`);
  return p.chain;
}

function concat(parts: readonly Uint8Array[]): number[] {
  return parts.flatMap((p) => [...p]);
}

function pattern(len: number, seed: number): Uint8Array {
  return Uint8Array.from({ length: len }, (_, i) => (i * 7 + seed) & 0xff);
}

describe('DeviceQueue: chains written byte by byte from the spec', () => {
  it('walks a direct chain and writes the used element at the spec offsets', () => {
    const r = new RawRing({ size: 4 });
    // Layout by hand (q = 4): desc @0x100000, avail @0x100040, used @0x100050, data @0x101000.
    assert.equal(r.availAddr, 0x100040n);
    assert.equal(r.usedAddr, 0x100050n);
    // struct virtq_desc { le64 addr; le32 len; le16 flags; le16 next; }
    r.write(
      0x100000n,
      hex(`
        00101000 00000000  48000000  0100  0200
        00000000 00000000  00000000  0000  0000
        00111000 00000000  10000000  0300  0300
        00121000 00000000  01000000  0200  0000`),
    );
    r.write(0x101000n, pattern(0x48, 1));
    // struct virtq_avail { le16 flags; le16 idx; le16 ring[4]; le16 used_event; }: one entry, head 0.
    r.write(0x100040n, hex('0000 0100 0000 0000 0000 0000 0000'));
    const q = r.deviceQueue();
    const c = ok(q.popChain());
    assert.equal(c.head, 0);
    assert.equal(c.readable.length, 1);
    assert.deepEqual(concat(c.readable), [...pattern(0x48, 1)]);
    assert.equal(c.readable[0]!.buffer, r.regions[0]!.bytes.buffer);
    assert.equal(c.readable[0]!.byteOffset, 0x1000);
    assert.deepEqual(c.writable.map((w) => [w.byteOffset, w.byteLength]), [[0x1100, 0x10], [0x1200, 1]]);
    assert.equal(c.readableLength, 0x48);
    assert.equal(c.writableLength, 0x11);
    assert.equal(q.popChain(), null);

    q.addUsed(0, 0x11);
    // Not visible before publishUsed: used.idx still 0.
    assert.deepEqual([...r.read(0x100050n, 4)], [0, 0, 0, 0]);
    q.publishUsed();
    // struct virtq_used { le16 flags; le16 idx; { le32 id; le32 len; } ring[4]; ... }
    assert.deepEqual([...r.read(0x100050n, 12)], [...hex('0000 0100 00000000 11000000')]);
  });

  it('walks one main-ring INDIRECT descriptor of 292 entries (Linux 64 KiB request shape)', () => {
    const r = new RawRing({ size: 8 });
    const header = r.buffer(pattern(72, 3));
    const iv = r.buffer(pattern(16, 5));
    const src = r.buffer(pattern(65536, 9));
    const dst = r.alloc(65536);
    const status = r.alloc(1);
    const entries = [{ addr: header, len: 72, flags: F_NEXT }, { addr: iv, len: 16, flags: F_NEXT }];
    // 136 readable src pieces, 153 writable dst pieces (duplicated scatterlist entries), status.
    for (let i = 0; i < 136; i++) entries.push({ addr: src + BigInt(i * 256), len: 512, flags: F_NEXT });
    for (let i = 0; i < 153; i++) entries.push({ addr: dst + BigInt(i * 256), len: 512, flags: F_NEXT | F_WRITE });
    entries.push({ addr: status, len: 1, flags: F_WRITE });
    assert.equal(entries.length, 292);
    const table = r.indirectTable(entries);
    r.writeDesc(5, { addr: table, len: 16 * 292, flags: F_INDIRECT });
    r.pushAvail(5);
    const c = ok(r.deviceQueue().popChain());
    assert.equal(c.head, 5);
    assert.equal(c.readable.length, 138);
    assert.equal(c.writable.length, 154);
    assert.equal(c.readableLength, 72 + 16 + 136 * 512);
    assert.equal(c.writableLength, 153 * 512 + 1);
    assert.deepEqual([...c.readable[0]!], [...pattern(72, 3)]);
    assert.deepEqual([...c.readable[1]!], [...pattern(16, 5)]);
    assert.deepEqual([...c.readable[2]!], [...pattern(65536, 9).subarray(0, 512)]);
    assert.equal(c.writable[153]!.byteLength, 1);
  });

  it('Linux repeats (e1..en, e2..en, ..., en) and addresses that share a memo slot: every view is the right range', () => {
    const r = new RawRing({ size: 8 });
    // 16 "pages" of 64 bytes, each with its own pattern; two more ranges chosen to share a memo slot
    // with page 0 (same low address bits), one with the same length and one with another.
    const pages = Array.from({ length: 16 }, (_, i) => r.buffer(pattern(64, 100 + i)));
    // The memo slot is a function of address bits 4-9 and 12-17: +0x40000 lands in page 0's slot.
    const twinSame = pages[0]! + 0x40000n;
    r.write(twinSame, pattern(64, 7));
    const entries: { addr: bigint; len: number; flags: number }[] = [];
    for (let k = 0; k < 16; k++) for (let i = k; i < 16; i++) entries.push({ addr: pages[i]!, len: 64, flags: F_NEXT });
    entries.push({ addr: twinSame, len: 64, flags: F_NEXT }, { addr: pages[0]!, len: 32, flags: F_NEXT }, { addr: pages[0]!, len: 64, flags: F_NEXT });
    const status = r.alloc(1);
    entries.push({ addr: status, len: 1, flags: F_WRITE });
    const table = r.indirectTable(entries);
    r.writeDesc(0, { addr: table, len: 16 * entries.length, flags: F_INDIRECT });
    r.pushAvail(0);
    const c = ok(r.deviceQueue().popChain());
    assert.equal(c.readable.length, entries.length - 1);
    let j = 0;
    for (let k = 0; k < 16; k++) for (let i = k; i < 16; i++) assert.deepEqual([...c.readable[j++]!], [...pattern(64, 100 + i)], `entry ${j - 1}: page ${i}`);
    assert.deepEqual([...c.readable[j++]!], [...pattern(64, 7)]);
    assert.deepEqual([...c.readable[j++]!], [...pattern(64, 100).subarray(0, 32)]);
    assert.deepEqual([...c.readable[j++]!], [...pattern(64, 100)]);
    // A second chain over the same pages after one is rewritten: nothing from the first walk is reused.
    r.write(pages[3]!, pattern(64, 200));
    const table2 = r.indirectTable([{ addr: pages[3]!, len: 64, flags: F_NEXT }, { addr: status, len: 1, flags: F_WRITE }]);
    r.writeDesc(1, { addr: table2, len: 32, flags: F_INDIRECT });
    r.pushAvail(1);
    const q2 = r.deviceQueue();
    ok(q2.popChain());
    assert.deepEqual([...ok(q2.popChain()).readable[0]!], [...pattern(64, 200)]);
  });

  it('accepts direct descriptors followed by one indirect descriptor, ignoring WRITE on it', () => {
    const r = new RawRing({ size: 8 });
    const a = r.buffer(pattern(10, 1));
    const b = r.buffer(pattern(20, 2));
    const w = r.alloc(30);
    const table = r.indirectTable([
      { addr: b, len: 20, flags: F_NEXT },
      { addr: w, len: 30, flags: F_WRITE },
    ]);
    r.writeDesc(2, { addr: a, len: 10, flags: F_NEXT, next: 6 });
    // §2.7.5.3.2: the device MUST ignore the write-only flag of a descriptor that refers to an indirect table.
    r.writeDesc(6, { addr: table, len: 32, flags: F_INDIRECT | F_WRITE });
    r.pushAvail(2);
    const c = ok(r.deviceQueue().popChain());
    assert.deepEqual(concat(c.readable), [...pattern(10, 1), ...pattern(20, 2)]);
    assert.equal(c.writableLength, 30);
  });

  it('skips zero-length descriptors (legal) without checking their address', () => {
    const r = new RawRing({ size: 4 });
    const a = r.buffer(pattern(8, 1));
    r.writeDesc(0, { addr: 0xdead_beef_0000n, len: 0, flags: F_NEXT, next: 1 });
    r.writeDesc(1, { addr: a, len: 8, flags: F_NEXT, next: 2 });
    r.writeDesc(2, { addr: 0n, len: 0, flags: F_WRITE });
    r.pushAvail(0);
    const c = ok(r.deviceQueue().popChain());
    assert.equal(c.readable.length, 1);
    assert.equal(c.writable.length, 0);
    assert.equal(c.readableLength, 8);
  });

  it('translates a buffer and an indirect table that straddle two adjacent regions', () => {
    const r = new RawRing({
      size: 4,
      regions: [
        { gpa: 0x100000n, size: 0x4000 },
        { gpa: 0x104000n, size: 0x4000 },
        { gpa: 0x108000n, size: 0x4000 },
      ],
    });
    const data = pattern(100, 4);
    r.write(0x107fd0n, data); // 48 bytes in region 1, 52 in region 2
    // An indirect table of 2 entries at 0x103ff0: entry 0 in region 0, entry 1 in region 1.
    r.writeDesc(0, { addr: 0x107fd0n, len: 100, flags: F_NEXT, next: 1 }, 0x103ff0n);
    r.writeDesc(1, { addr: 0x104100n, len: 4, flags: F_WRITE }, 0x103ff0n);
    r.writeDesc(3, { addr: 0x103ff0n, len: 32, flags: F_INDIRECT });
    r.pushAvail(3);
    const c = ok(r.deviceQueue().popChain());
    assert.deepEqual(c.readable.map((v) => v.byteLength), [48, 52]);
    assert.equal(c.readable[0]!.buffer, r.regions[1]!.bytes.buffer);
    assert.equal(c.readable[1]!.buffer, r.regions[2]!.bytes.buffer);
    assert.deepEqual(concat(c.readable), [...data]);
    assert.equal(c.writable[0]!.buffer, r.regions[1]!.bytes.buffer);
  });
});

describe('DeviceQueue: repeated descriptor ranges (Linux duplicates scatterlist entries)', () => {
  it('maps every repetition to its own range: same address with other lengths, straddling, read then write', () => {
    const r = new RawRing({
      size: 4,
      regions: [
        { gpa: 0x100000n, size: 0x4000 },
        { gpa: 0x104000n, size: 0x4000 },
      ],
    });
    r.write(0x102000n, pattern(64, 1));
    r.write(0x103ff0n, pattern(32, 2)); // 16 bytes in region 0, 16 in region 1
    const d = [
      { addr: 0x102000n, len: 64, flags: F_NEXT }, // e1
      { addr: 0x103ff0n, len: 32, flags: F_NEXT }, // e2 (two views)
      { addr: 0x103ff0n, len: 32, flags: F_NEXT }, // e2 again
      { addr: 0x102000n, len: 8, flags: F_NEXT }, // e1's address, shorter
      { addr: 0x102000n, len: 64, flags: F_NEXT }, // e1 again
      { addr: 0x102000n, len: 64, flags: F_NEXT | F_WRITE }, // e1's range, now writable
      { addr: 0x102000n, len: 128, flags: F_WRITE }, // e1's address, longer
    ];
    d.forEach((e, i) => r.writeDesc(i, { ...e, next: i + 1 }, 0x101000n));
    r.writeDesc(0, { addr: 0x101000n, len: 16 * d.length, flags: F_INDIRECT });
    r.pushAvail(0);
    const c = ok(r.deviceQueue().popChain());
    const shape = (v: Uint8Array): [number, number, boolean] => [v.byteOffset, v.byteLength, v.buffer === r.regions[0]!.bytes.buffer];
    assert.deepEqual(c.readable.map(shape), [
      [0x2000, 64, true],
      [0x3ff0, 16, true],
      [0, 16, false],
      [0x3ff0, 16, true],
      [0, 16, false],
      [0x2000, 8, true],
      [0x2000, 64, true],
    ]);
    assert.deepEqual(c.writable.map(shape), [
      [0x2000, 64, true],
      [0x2000, 128, true],
    ]);
    assert.deepEqual(concat(c.readable), [...pattern(64, 1), ...pattern(32, 2), ...pattern(32, 2), ...pattern(8, 1), ...pattern(64, 1)]);
    assert.equal(c.readableLength, 64 + 32 + 32 + 8 + 64);
    assert.equal(c.writableLength, 64 + 128);
  });

  it('still bounds-checks a longer range at an address seen earlier in the chain', () => {
    const r = new RawRing({ size: 4, regions: [{ gpa: 0x100000n, size: 0x4000 }] });
    r.writeDesc(0, { addr: 0x103f00n, len: 0x100, flags: F_NEXT, next: 1 }); // ends exactly at the region end
    r.writeDesc(1, { addr: 0x103f00n, len: 0x101, flags: F_WRITE }); // one byte past it
    r.pushAvail(0);
    const p = r.deviceQueue().popChain();
    assert.ok(p !== null && !p.ok);
    assert.equal(p.error.kind, 'address-out-of-bounds');
    assert.equal(p.head, 0);
  });
});

describe('DeviceQueue: vhost-user style memory', () => {
  it('rings found through front-end virtual addresses, descriptors through guest-physical ones', () => {
    // Two regions like QEMU's (below 640 KiB, and from 1 MiB), each with its own mmap address.
    const low = new Uint8Array(new SharedArrayBuffer(0xa0000));
    const high = new Uint8Array(new SharedArrayBuffer(0x100000));
    const memory = new GuestMemory([
      { guestPhysAddr: 0n, bytes: low, userAddr: 0x7f00_0000_0000n },
      { guestPhysAddr: 0x100000n, bytes: high, userAddr: 0x7f00_1000_0000n },
    ]);
    // The rings at GPA 0x110000 = user address 0x7f00_1001_0000 (q = 4: avail +64, used +80).
    const ring = 0x7f00_1001_0000n;
    const desc = memory.viewUser(ring, 64);
    const avail = memory.viewUser(ring + 64n, 14);
    const used = memory.viewUser(ring + 80n, 38);
    const d = new DataView(high.buffer);
    // desc[0] = { addr 0x9000 (low region), len 3, NEXT, next 1 }, desc[1] = { 0x120000, 2, WRITE }
    d.setBigUint64(0x10000, 0x9000n, true);
    d.setUint32(0x10008, 3, true);
    d.setUint16(0x1000c, F_NEXT, true);
    d.setUint16(0x1000e, 1, true);
    d.setBigUint64(0x10010, 0x120000n, true);
    d.setUint32(0x10018, 2, true);
    d.setUint16(0x1001c, F_WRITE, true);
    low.set([7, 8, 9], 0x9000);
    d.setUint16(0x10040 + 2, 1, true); // avail.idx = 1, ring[0] = 0
    const q = new DeviceQueue({ size: 4, desc, avail, used, memory, eventIdx: true });
    const c = ok(q.popChain());
    assert.deepEqual(concat(c.readable), [7, 8, 9]);
    assert.equal(c.writable[0]!.buffer, high.buffer);
    assert.equal(c.writable[0]!.byteOffset, 0x20000);
    q.addUsed(c.head, 2);
    q.publishUsed();
    assert.equal(d.getUint16(0x10050 + 2, true), 1);
    q.enableNotifications();
    assert.equal(d.getUint16(0x10050 + 4 + 8 * 4, true), 1, 'avail_event written at used + 4 + 8q');
  });
});

describe('DeviceQueue: used ring, batching and indices', () => {
  it('publishes a batch with one used.idx store, elements in completion order', () => {
    const r = new RawRing({ size: 4 });
    const a = r.alloc(4);
    for (const h of [0, 1, 2]) {
      r.writeDesc(h, { addr: a, len: 4, flags: F_WRITE });
      r.pushAvail(h);
    }
    const q = r.deviceQueue();
    const heads = [ok(q.popChain()).head, ok(q.popChain()).head, ok(q.popChain()).head];
    assert.deepEqual(heads, [0, 1, 2]);
    q.addUsed(2, 4);
    q.addUsed(0, 1);
    assert.equal(r.usedIdx(), 0);
    q.addUsed(1, 0);
    q.publishUsed();
    assert.equal(r.usedIdx(), 3);
    assert.deepEqual([r.usedElem(0), r.usedElem(1), r.usedElem(2)], [
      { id: 2, len: 4 },
      { id: 0, len: 1 },
      { id: 1, len: 0 },
    ]);
    assert.throws(() => q.addUsed(4, 0), RangeError);
    assert.throws(() => q.addUsed(0, 2 ** 32), RangeError);
  });

  it('wraps avail and used indices at 2^16 and resumes from lastAvailIdx / used.idx in memory', () => {
    const r = new RawRing({ size: 4 });
    const a = r.alloc(4);
    for (let h = 0; h < 4; h++) r.writeDesc(h, { addr: a, len: 4, flags: F_WRITE });
    r.setAvailIdx(65534);
    r.write(r.usedAddr + 2n, Uint8Array.of(0xfe, 0xff)); // used.idx = 65534 (vhost-user resume)
    for (const h of [3, 1, 2]) r.pushAvail(h); // slots 2, 3, 0; avail.idx wraps to 1
    assert.equal(r.availIdx, 1);
    const q = r.deviceQueue({ lastAvailIdx: 65534 });
    assert.equal(q.lastAvailIdx, 65534);
    const heads: number[] = [];
    for (let c = q.popChain(); c !== null; c = q.popChain()) heads.push(ok(c).head);
    assert.deepEqual(heads, [3, 1, 2]);
    assert.equal(q.lastAvailIdx, 1);
    for (const h of heads) q.addUsed(h, 4);
    q.publishUsed();
    assert.equal(r.usedIdx(), 1);
    assert.deepEqual(r.usedElem(2), { id: 3, len: 4 }); // 65534 & 3
    assert.deepEqual(r.usedElem(0), { id: 2, len: 4 }); // 0 & 3
    q.lastAvailIdx = 0; // SET_VRING_BASE
    assert.equal(q.lastAvailIdx, 0);
    assert.equal(q.hasAvailable(), true);
  });
});

describe('DeviceQueue: notification suppression', () => {
  it('without EVENT_IDX: honours NO_INTERRUPT and toggles NO_NOTIFY', () => {
    const r = new RawRing({ size: 4 });
    const q = r.deviceQueue();
    q.addUsed(0, 0);
    q.publishUsed();
    assert.equal(q.needsNotification(), true);
    q.publishUsed();
    assert.equal(q.needsNotification(), false, 'nothing new since the last decision');
    q.addUsed(1, 0);
    q.publishUsed();
    r.setAvailFlags(1); // VIRTQ_AVAIL_F_NO_INTERRUPT
    assert.equal(q.needsNotification(), false);
    q.addUsed(2, 0);
    q.publishUsed();
    r.setAvailFlags(0);
    assert.equal(q.needsNotification(), true);
    q.disableNotifications();
    assert.equal(r.usedFlags(), 1); // VIRTQ_USED_F_NO_NOTIFY
    assert.equal(q.enableNotifications(), false);
    assert.equal(r.usedFlags(), 0);
    r.writeDesc(0, { addr: r.alloc(1), len: 1, flags: 0 });
    r.pushAvail(0);
    q.disableNotifications();
    assert.equal(q.enableNotifications(), true, 'work arrived while notifications were off');
  });

  it('with EVENT_IDX: writes avail_event = last_avail_idx and re-checks avail.idx', () => {
    const r = new RawRing({ size: 4 });
    const q = r.deviceQueue({ eventIdx: true });
    const a = r.alloc(1);
    r.writeDesc(0, { addr: a, len: 1, flags: 0 });
    r.writeDesc(1, { addr: a, len: 1, flags: 0 });
    r.pushAvail(0);
    r.pushAvail(1);
    ok(q.popChain());
    ok(q.popChain());
    assert.equal(q.enableNotifications(), false);
    assert.equal(r.availEvent(), 2);
    // The flag word is not used with EVENT_IDX.
    q.disableNotifications();
    assert.equal(r.usedFlags(), 0);
    r.pushAvail(0);
    assert.equal(q.enableNotifications(), true);
    assert.equal(r.availEvent(), 2);
  });

  it('with EVENT_IDX: notifies iff used_event lies in (old, new] (vring_need_event)', () => {
    const r = new RawRing({ size: 8 });
    const q = r.deviceQueue({ eventIdx: true });
    const publish = (n: number) => {
      for (let i = 0; i < n; i++) q.addUsed(0, 0);
      q.publishUsed();
      return q.needsNotification();
    };
    r.setAvailFlags(1); // NO_INTERRUPT is ignored with EVENT_IDX
    assert.equal(publish(1), true); // first decision always notifies (used 0 -> 1)
    r.setUsedEvent(1); // "interrupt me when used.idx passes 1"
    assert.equal(publish(1), true); // 1 -> 2
    r.setUsedEvent(5);
    assert.equal(publish(1), false); // 2 -> 3
    assert.equal(publish(2), false); // 3 -> 5
    assert.equal(publish(3), true); // 5 -> 8 passes 5
    assert.equal(publish(0), false); // nothing new
  });
});

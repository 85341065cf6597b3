/**
 * Malformed chains written raw by the mock driver. After each broken chain the device completes it
 * with 0 bytes and a good chain still works (the queue goes on). Queue-fatal cases mark it broken.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtqueueError } from '../../src/virtqueue/chain.js';
import type { VirtqueueErrorKind } from '../../src/virtqueue/chain.js';
import type { DeviceQueue } from '../../src/virtqueue/device-queue.js';
import { F_INDIRECT, F_NEXT, F_WRITE, RawRing } from '../fixtures/raw-ring.js';

const SIZE = 8;
/** Descriptor 7 is reserved for the good chain. */
const GOOD = 7;

interface Case {
  name: string;
  kind: VirtqueueErrorKind;
  /** Writes the broken chain (heads 0..6) and returns its head. */
  build(r: RawRing): number;
  maxChainBytes?: number;
}

const END = 0x100000n + (1n << 20n); // end of the mock's single region

const cases: Case[] = [
  {
    name: 'loop 0 -> 1 -> 0',
    kind: 'chain-too-long',
    build(r) {
      const a = r.alloc(8);
      r.writeDesc(0, { addr: a, len: 8, flags: F_NEXT, next: 1 });
      r.writeDesc(1, { addr: a, len: 8, flags: F_NEXT, next: 0 });
      return 0;
    },
  },
  {
    name: 'self-loop inside an indirect table',
    kind: 'chain-too-long',
    build(r) {
      const t = r.indirectTable([
        { addr: r.alloc(4), len: 4, flags: F_NEXT, next: 1 },
        { addr: r.alloc(4), len: 4, flags: F_NEXT, next: 1 },
      ]);
      r.writeDesc(2, { addr: t, len: 32, flags: F_INDIRECT });
      return 2;
    },
  },
  {
    name: 'next out of range (= queue size)',
    kind: 'next-out-of-range',
    build(r) {
      r.writeDesc(3, { addr: r.alloc(4), len: 4, flags: F_NEXT, next: SIZE });
      return 3;
    },
  },
  {
    name: 'next out of range inside an indirect table',
    kind: 'next-out-of-range',
    build(r) {
      const t = r.indirectTable([
        { addr: r.alloc(4), len: 4, flags: F_NEXT },
        { addr: r.alloc(4), len: 4, flags: F_NEXT, next: 2 },
      ]);
      r.writeDesc(0, { addr: t, len: 32, flags: F_INDIRECT });
      return 0;
    },
  },
  {
    name: 'nested indirect table',
    kind: 'nested-indirect',
    build(r) {
      const inner = r.indirectTable([{ addr: r.alloc(4), len: 4, flags: 0 }]);
      const outer = r.indirectTable([{ addr: inner, len: 16, flags: F_INDIRECT }]);
      r.writeDesc(1, { addr: outer, len: 16, flags: F_INDIRECT });
      return 1;
    },
  },
  {
    name: 'INDIRECT together with NEXT',
    kind: 'indirect-with-next',
    build(r) {
      const t = r.indirectTable([{ addr: r.alloc(4), len: 4, flags: 0 }]);
      r.writeDesc(1, { addr: t, len: 16, flags: F_INDIRECT | F_NEXT, next: 2 });
      r.writeDesc(2, { addr: r.alloc(4), len: 4, flags: 0 });
      return 1;
    },
  },
  {
    name: 'indirect table length not a multiple of 16',
    kind: 'indirect-bad-length',
    build(r) {
      const t = r.indirectTable([{ addr: r.alloc(4), len: 4, flags: 0 }, { addr: r.alloc(4), len: 4, flags: 0 }]);
      r.writeDesc(4, { addr: t, len: 24, flags: F_INDIRECT });
      return 4;
    },
  },
  {
    name: 'indirect table of zero length',
    kind: 'indirect-bad-length',
    build(r) {
      r.writeDesc(4, { addr: r.alloc(16), len: 0, flags: F_INDIRECT });
      return 4;
    },
  },
  {
    name: 'indirect table over the entry cap (4097 entries)',
    kind: 'indirect-bad-length',
    build(r) {
      r.writeDesc(4, { addr: r.alloc(16 * 4097), len: 16 * 4097, flags: F_INDIRECT });
      return 4;
    },
  },
  {
    name: 'writable before readable (direct)',
    kind: 'readable-after-writable',
    build(r) {
      r.writeDesc(0, { addr: r.alloc(4), len: 4, flags: F_WRITE | F_NEXT, next: 5 });
      r.writeDesc(5, { addr: r.alloc(4), len: 4, flags: 0 });
      return 0;
    },
  },
  {
    name: 'writable before readable (direct writable, then an indirect table starting readable)',
    kind: 'readable-after-writable',
    build(r) {
      const t = r.indirectTable([{ addr: r.alloc(4), len: 4, flags: 0 }]);
      r.writeDesc(0, { addr: r.alloc(4), len: 4, flags: F_WRITE | F_NEXT, next: 5 });
      r.writeDesc(5, { addr: t, len: 16, flags: F_INDIRECT });
      return 0;
    },
  },
  {
    name: 'writable before readable (inside an indirect table)',
    kind: 'readable-after-writable',
    build(r) {
      const t = r.indirectTable([
        { addr: r.alloc(4), len: 4, flags: F_NEXT },
        { addr: r.alloc(4), len: 4, flags: F_WRITE | F_NEXT },
        { addr: r.alloc(4), len: 4, flags: 0 },
      ]);
      r.writeDesc(6, { addr: t, len: 48, flags: F_INDIRECT });
      return 6;
    },
  },
  {
    name: 'address past the end of memory',
    kind: 'address-out-of-bounds',
    build(r) {
      r.writeDesc(2, { addr: END - 4n, len: 8, flags: 0 });
      return 2;
    },
  },
  {
    name: 'address below memory',
    kind: 'address-out-of-bounds',
    build(r) {
      r.writeDesc(2, { addr: 0x1000n, len: 8, flags: F_WRITE });
      return 2;
    },
  },
  {
    name: 'address + len overflows u64',
    kind: 'address-out-of-bounds',
    build(r) {
      r.writeDesc(2, { addr: 0xffff_ffff_ffff_fff8n, len: 16, flags: 0 });
      return 2;
    },
  },
  {
    name: 'indirect table past the end of memory',
    kind: 'address-out-of-bounds',
    build(r) {
      r.writeDesc(3, { addr: END - 16n, len: 32, flags: F_INDIRECT });
      return 3;
    },
  },
  {
    name: 'lengths that overflow 32 bits (0xffffffff + 2)',
    kind: 'chain-too-large',
    build(r) {
      const a = r.alloc(4);
      r.writeDesc(0, { addr: a, len: 0xffff_ffff, flags: F_NEXT, next: 1 });
      r.writeDesc(1, { addr: a, len: 2, flags: 0 });
      return 0;
    },
  },
  {
    name: 'lengths whose u32 sum wraps to a small value (2 x 0x80000001), cap above 2^32',
    kind: 'address-out-of-bounds',
    maxChainBytes: 2 ** 40,
    build(r) {
      const a = r.alloc(4);
      r.writeDesc(0, { addr: a, len: 0x8000_0001, flags: F_NEXT, next: 1 });
      r.writeDesc(1, { addr: a, len: 0x8000_0001, flags: 0 });
      return 0;
    },
  },
  {
    name: 'total length over a small cap',
    kind: 'chain-too-large',
    maxChainBytes: 100,
    build(r) {
      const t = r.indirectTable(Array.from({ length: 3 }, () => ({ addr: r.alloc(40), len: 40, flags: F_NEXT })));
      r.writeDesc(5, { addr: t, len: 48, flags: F_INDIRECT });
      return 5;
    },
  },
];

function goodChainWorks(r: RawRing, q: DeviceQueue): void {
  const msg = r.buffer(Uint8Array.of(1, 2, 3, 4));
  const out = r.alloc(4);
  const t = r.indirectTable([
    { addr: msg, len: 4, flags: F_NEXT },
    { addr: out, len: 4, flags: F_WRITE },
  ]);
  r.writeDesc(GOOD, { addr: t, len: 32, flags: F_INDIRECT });
  r.pushAvail(GOOD);
  const p = q.popChain();
  assert.ok(p !== null && p.ok, 'good chain after a broken one');
  assert.deepEqual([...p.chain.readable[0]!], [1, 2, 3, 4]);
  p.chain.writable[0]!.set([9, 9, 9, 9]);
  q.addUsed(p.chain.head, 4);
  q.publishUsed();
  assert.deepEqual([...r.read(out, 4)], [9, 9, 9, 9]);
}

describe('DeviceQueue: malformed chains are typed errors and the queue goes on', () => {
  for (const c of cases) {
    it(c.name, () => {
      const r = new RawRing({ size: SIZE });
      const q = r.deviceQueue(c.maxChainBytes === undefined ? {} : { maxChainBytes: c.maxChainBytes });
      const head = c.build(r);
      r.pushAvail(head);
      const p = q.popChain();
      assert.ok(p !== null);
      assert.equal(p.ok, false, 'the chain must be refused');
      if (p.ok) return;
      assert.equal(p.head, head);
      assert.ok(p.error instanceof VirtqueueError);
      assert.equal(p.error.kind, c.kind, p.error.message);
      assert.equal(p.error.head, head);
      q.addUsed(p.head, 0);
      q.publishUsed();
      assert.deepEqual(r.usedElem(0), { id: head, len: 0 });
      assert.equal(q.broken, false);
      goodChainWorks(r, q);
      assert.equal(r.usedIdx(), 2);
    });
  }

  it('all cases back to back on one queue', () => {
    const r = new RawRing({ size: SIZE });
    const q = r.deviceQueue();
    for (const c of cases.filter((x) => x.maxChainBytes === undefined)) {
      r.pushAvail(c.build(r));
      const p = q.popChain();
      assert.ok(p !== null && !p.ok && p.error.kind === c.kind, c.name);
      q.addUsed(p.head, 0);
      q.publishUsed();
      goodChainWorks(r, q);
    }
  });
});

describe('DeviceQueue: queue-fatal errors set broken (NEEDS_RESET)', () => {
  it('head index out of range', () => {
    const r = new RawRing({ size: SIZE });
    const q = r.deviceQueue();
    r.pushAvail(SIZE);
    assert.throws(() => q.popChain(), (e: unknown) => e instanceof VirtqueueError && e.kind === 'head-out-of-range');
    assert.equal(q.broken, true);
    assert.equal(q.popChain(), null);
    assert.equal(q.hasAvailable(), false);
    // After a reset (a fresh queue state, driver rewrote the entry) the ring works again.
    r.setAvailRing(0, 0);
    r.writeDesc(0, { addr: r.alloc(4), len: 4, flags: 0 });
    const q2 = r.deviceQueue();
    const p = q2.popChain();
    assert.ok(p !== null && p.ok);
  });

  it('avail.idx more than queue size ahead of last_avail_idx', () => {
    const r = new RawRing({ size: SIZE });
    const q = r.deviceQueue();
    r.setAvailIdx(SIZE + 1);
    assert.throws(() => q.popChain(), (e: unknown) => e instanceof VirtqueueError && e.kind === 'avail-index-jump');
    assert.equal(q.broken, true);
    assert.equal(q.popChain(), null);
  });

  it('exactly queue size entries pending is legal', () => {
    const r = new RawRing({ size: SIZE });
    const a = r.alloc(4);
    for (let h = 0; h < SIZE; h++) {
      r.writeDesc(h, { addr: a, len: 4, flags: 0 });
      r.pushAvail(h);
    }
    const q = r.deviceQueue();
    let n = 0;
    for (let p = q.popChain(); p !== null; p = q.popChain()) {
      assert.ok(p.ok);
      n++;
    }
    assert.equal(n, SIZE);
  });
});

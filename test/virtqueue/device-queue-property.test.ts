/**
 * Property tests: random ring bytes never crash or hang the walker, every view it returns lies
 * inside guest memory; and random well-formed chains (direct, indirect, mixed) come back exactly.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { VirtqueueError } from '../../src/virtqueue/chain.js';
import { F_INDIRECT, F_NEXT, F_WRITE, RawRing } from '../fixtures/raw-ring.js';
import type { RawDesc } from '../fixtures/raw-ring.js';

const SIZE = 8;
const BASE = 0x100000n;
const REGION = 0x10000; // two adjacent 64 KiB regions
const MEM_END = BASE + 2n * BigInt(REGION);

/** A descriptor address biased towards guest memory (and its edges), sometimes anything. */
const arbAddr = fc.oneof(
  { weight: 6, arbitrary: fc.bigInt({ min: BASE, max: MEM_END }) },
  { weight: 2, arbitrary: fc.constantFrom(BASE + BigInt(REGION) - 8n, MEM_END - 16n, 0n, (1n << 64n) - 16n) },
  { weight: 1, arbitrary: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }) },
);
const arbLen = fc.oneof(
  { weight: 6, arbitrary: fc.nat({ max: 600 }) },
  { weight: 2, arbitrary: fc.constantFrom(0, 16, 32, 4096, 0xffff_fff0, 0xffff_ffff) },
  { weight: 1, arbitrary: fc.nat({ max: 0xffff_ffff }) },
);
const arbFlags = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(0, F_NEXT, F_WRITE, F_NEXT | F_WRITE) },
  { weight: 2, arbitrary: fc.nat({ max: 7 }) },
  { weight: 1, arbitrary: fc.nat({ max: 0xffff }) },
);
const arbNext = fc.oneof({ weight: 8, arbitrary: fc.nat({ max: SIZE }) }, { weight: 1, arbitrary: fc.nat({ max: 0xffff }) });
const arbHead = fc.oneof({ weight: 9, arbitrary: fc.nat({ max: SIZE - 1 }) }, { weight: 1, arbitrary: fc.nat({ max: 0xffff }) });
const arbPending = fc.oneof({ weight: 9, arbitrary: fc.nat({ max: SIZE }) }, { weight: 1, arbitrary: fc.nat({ max: 0xffff }) });
const arbDesc: fc.Arbitrary<RawDesc> = fc.record({ addr: arbAddr, len: arbLen, flags: arbFlags, next: arbNext });

function newRing(): RawRing {
  return new RawRing({ size: SIZE, regions: [{ gpa: BASE, size: REGION }, { gpa: BASE + BigInt(REGION), size: REGION }] });
}

describe('DeviceQueue properties', () => {
  it('random ring bytes: only typed errors, bounded work, views inside memory', () => {
    fc.assert(
      fc.property(
        fc.array(arbDesc, { minLength: SIZE, maxLength: SIZE }),
        fc.array(fc.array(arbDesc, { minLength: 1, maxLength: 6 }), { maxLength: 3 }),
        fc.array(arbHead, { minLength: SIZE, maxLength: SIZE }),
        arbPending,
        fc.nat({ max: 0xffff }),
        (main, tables, ring, availIdx, lastAvail) => {
          const r = newRing();
          // Random indirect tables placed in memory; some main descriptors may point at them.
          const tableAddrs = tables.map((t) => r.indirectTable(t));
          main.forEach((d, i) => {
            const t = tableAddrs[i % Math.max(1, tableAddrs.length)];
            const useTable = t !== undefined && d.len % 3 === 0;
            const entries = tables[i % Math.max(1, tables.length)]?.length ?? 0;
            r.writeDesc(i, useTable ? { ...d, addr: t, len: 16 * entries, flags: d.flags | F_INDIRECT } : d);
          });
          ring.forEach((h, slot) => r.setAvailRing(slot, h));
          r.setAvailIdx((lastAvail + availIdx) & 0xffff);
          const q = r.deviceQueue({ lastAvailIdx: lastAvail });
          const buffers = new Set(r.regions.map((x) => x.bytes.buffer));
          let pops = 0;
          for (;;) {
            let p;
            try {
              p = q.popChain();
            } catch (e) {
              assert.ok(e instanceof VirtqueueError, String(e));
              assert.ok(['avail-index-jump', 'head-out-of-range'].includes(e.kind), e.kind);
              assert.equal(q.broken, true);
              break;
            }
            if (p === null) break;
            pops++;
            assert.ok(pops <= SIZE, 'popped more entries than the driver can have made available');
            if (!p.ok) {
              assert.ok(p.error instanceof VirtqueueError);
              assert.ok(p.head < SIZE);
              q.addUsed(p.head, 0);
              continue;
            }
            const c = p.chain;
            for (const v of [...c.readable, ...c.writable]) {
              assert.ok(buffers.has(v.buffer), 'view outside guest memory');
              assert.ok(v.byteOffset + v.byteLength <= REGION && v.byteLength > 0);
            }
            assert.equal(c.readableLength, c.readable.reduce((n, v) => n + v.byteLength, 0));
            assert.equal(c.writableLength, c.writable.reduce((n, v) => n + v.byteLength, 0));
            assert.ok(c.readableLength + c.writableLength <= q.maxChainBytes);
            q.addUsed(c.head, c.writableLength);
          }
          q.publishUsed();
          q.enableNotifications();
        },
      ),
      { numRuns: 1500 },
    );
  });

  it('random well-formed chains (direct, indirect, direct-then-indirect) round-trip exactly', () => {
    const arbBuf = fc.record({ len: fc.nat({ max: 300 }), write: fc.boolean(), seed: fc.nat({ max: 255 }) });
    fc.assert(
      fc.property(
        fc.array(arbBuf, { minLength: 1, maxLength: 20 }),
        fc.constantFrom('direct', 'indirect', 'mixed'),
        fc.nat({ max: 0xffff }),
        fc.nat({ max: SIZE - 1 }),
        (bufs, shape, start, head) => {
          // Readable before writable (§2.7.4.2); a direct chain fits the table.
          const sorted = [...bufs.filter((b) => !b.write), ...bufs.filter((b) => b.write)];
          const items = shape === 'direct' ? sorted.slice(0, SIZE) : sorted;
          const r = newRing();
          // Place buffers to straddle the region boundary sometimes.
          let cursor = BASE + BigInt(REGION) - 700n;
          const descs: RawDesc[] = items.map((b) => {
            const addr = cursor;
            const data = Uint8Array.from({ length: b.len }, (_, i) => (i + b.seed) & 0xff);
            r.write(addr, data);
            cursor += BigInt(b.len) + 3n;
            return { addr, len: b.len, flags: b.write ? F_WRITE : 0 };
          });
          const chainOf = (list: RawDesc[], tableAddr?: bigint) => {
            const at = tableAddr ?? r.alloc(16 * list.length);
            list.forEach((d, i) => r.writeDesc(i, { ...d, flags: d.flags | (i < list.length - 1 ? F_NEXT : 0), next: i + 1 }, at));
            return at;
          };
          // Direct chains use table slots head, head+1, ... modulo SIZE.
          const direct = (list: RawDesc[], tail?: RawDesc) => {
            const all = tail === undefined ? list : [...list, tail];
            all.forEach((d, i) => {
              const idx = (head + i) % SIZE;
              const last = i === all.length - 1;
              r.writeDesc(idx, { ...d, flags: d.flags | (last ? 0 : F_NEXT), next: (idx + 1) % SIZE });
            });
          };
          if (shape === 'direct') direct(descs);
          else if (shape === 'indirect') direct([], { addr: chainOf(descs), len: 16 * descs.length, flags: F_INDIRECT });
          else {
            // Up to two readable descriptors direct in the main table, the rest in one indirect table.
            const k = Math.min(2, items.filter((b) => !b.write).length);
            const rest = descs.slice(k);
            const t = rest.length > 0 ? chainOf(rest) : undefined;
            direct(descs.slice(0, k), t === undefined ? undefined : { addr: t, len: 16 * rest.length, flags: F_INDIRECT });
          }
          r.setAvailIdx(start);
          r.pushAvail(head);
          const q = r.deviceQueue({ lastAvailIdx: start });
          const p = q.popChain();
          assert.ok(p !== null);
          if (!p.ok) assert.fail(p.error.message);
          const expect = (w: boolean) =>
            items.filter((b) => b.write === w).flatMap((b) => Array.from({ length: b.len }, (_, i) => (i + b.seed) & 0xff));
          assert.deepEqual(p.chain.readable.flatMap((v) => [...v]), expect(false));
          assert.deepEqual(p.chain.writable.flatMap((v) => [...v]), expect(true));
          assert.equal(q.popChain(), null);
        },
      ),
      { numRuns: 500 },
    );
  });
});

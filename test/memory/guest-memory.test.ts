import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { GuestMemory, GuestMemoryError } from '../../src/memory/guest-memory.js';

function region(gpa: bigint, size: number, userAddr?: bigint) {
  const bytes = new Uint8Array(size);
  return userAddr === undefined ? { guestPhysAddr: gpa, bytes } : { guestPhysAddr: gpa, bytes, userAddr };
}

describe('GuestMemory construction', () => {
  it('rejects overlapping regions (in either order)', () => {
    assert.throws(() => new GuestMemory([region(0x1000n, 0x1000), region(0x1fffn, 0x10)]), GuestMemoryError);
    assert.throws(() => new GuestMemory([region(0x1fffn, 0x10), region(0x1000n, 0x1000)]), GuestMemoryError);
  });

  it('accepts adjacent regions', () => {
    const m = new GuestMemory([region(0x2000n, 0x1000), region(0x1000n, 0x1000)]);
    assert.equal(m.regionCount, 2);
    assert.equal(m.totalBytes, 0x2000);
  });

  it('rejects regions whose end overflows u64, negative addresses and empty regions', () => {
    assert.throws(() => new GuestMemory([region(0xffff_ffff_ffff_fff0n, 0x20)]), GuestMemoryError);
    assert.throws(() => new GuestMemory([region(-1n, 0x20)]), GuestMemoryError);
    assert.throws(() => new GuestMemory([region(0n, 0)]), GuestMemoryError);
    assert.throws(() => new GuestMemory([region(0n, 0x20, 0xffff_ffff_ffff_fff0n)]), GuestMemoryError);
  });

  it('rejects regions overlapping in user address space', () => {
    assert.throws(
      () => new GuestMemory([region(0n, 0x1000, 0x7f00_0000_0000n), region(0x10000n, 0x1000, 0x7f00_0000_0800n)]),
      GuestMemoryError,
    );
  });
});

describe('GuestMemory translation', () => {
  const low = region(0n, 0xa0000); // "RAM below 640 KiB"
  const high = region(0xc0000n, 0x40000);
  const adj = region(0x100000n, 0x1000);
  const m = new GuestMemory([low, high, adj]);
  low.bytes[0x1234] = 0xab;
  high.bytes[0x10] = 0xcd;

  it('view() returns a live view of the right bytes', () => {
    const v = m.view(0x1234n, 4);
    assert.equal(v.byteLength, 4);
    assert.equal(v[0], 0xab);
    v[1] = 0x77;
    assert.equal(low.bytes[0x1235], 0x77);
    assert.equal(m.view(0xc0010n, 1)[0], 0xcd);
  });

  it('view() throws for ranges in a hole, past the end, or crossing regions', () => {
    assert.throws(() => m.view(0xa0000n, 1), GuestMemoryError); // hole starts right at the end of low
    assert.throws(() => m.view(0x9ffffn, 2), GuestMemoryError); // last byte of low + first of hole
    assert.throws(() => m.view(0xfffffn, 2), GuestMemoryError); // crosses high -> adj (two regions)
    assert.throws(() => m.view(0x101000n, 1), GuestMemoryError);
    assert.throws(() => m.view(0xffff_ffff_ffff_ffffn, 1), GuestMemoryError);
    assert.throws(() => m.view(-1n, 1), GuestMemoryError);
    assert.throws(() => m.view(0n, -1), GuestMemoryError);
    assert.throws(() => m.view(0n, 1.5), GuestMemoryError);
    assert.throws(() => m.view(0n, 2 ** 32 + 1), GuestMemoryError);
  });

  it('zero-length ranges are valid inside or at the end of a region only', () => {
    assert.equal(m.view(0x10n, 0).byteLength, 0);
    assert.equal(m.view(0xa0000n, 0).byteLength, 0);
    assert.throws(() => m.view(0xb0000n, 0), GuestMemoryError);
    assert.deepEqual(m.slices(0x101000n, 0), []);
  });

  it('slices() translates piecewise across adjacent regions', () => {
    high.bytes[0x3ffff] = 1;
    adj.bytes[0] = 2;
    adj.bytes[1] = 3;
    const s = m.slices(0xfffffn, 3);
    assert.equal(s.length, 2);
    assert.deepEqual([...s[0]!], [1]);
    assert.deepEqual([...s[1]!], [2, 3]);
    assert.equal(m.slices(0x1234n, 4).length, 1);
  });

  it('slices() refuses ranges running into a hole or past the last region', () => {
    assert.throws(() => m.slices(0x9fff0n, 0x20), GuestMemoryError);
    assert.throws(() => m.slices(0x100ff0n, 0x20), GuestMemoryError);
    assert.throws(() => m.slices(0xffff_ffff_ffff_fff0n, 0x20), GuestMemoryError);
  });

  it('viewUser() translates through userAddr, within one region only', () => {
    const a = region(0n, 0x1000, 0x7f12_3400_0000n);
    const b = region(0x1000n, 0x1000, 0x7f12_3400_1000n);
    const mu = new GuestMemory([a, b]);
    a.bytes[0x20] = 9;
    assert.equal(mu.viewUser(0x7f12_3400_0020n, 1)[0], 9);
    assert.equal(mu.userToGuest(0x7f12_3400_1010n), 0x1010n);
    assert.throws(() => mu.viewUser(0x7f12_3400_0ff0n, 0x20), GuestMemoryError); // separate mmaps: not contiguous
    assert.throws(() => mu.viewUser(0x10n, 1), GuestMemoryError);
    assert.throws(() => m.viewUser(0n, 1), GuestMemoryError); // regions without userAddr
  });

  it('property: random ranges translate to len bytes iff every byte is mapped, else GuestMemoryError', () => {
    // Model: a flat byte array over [0, 0x101000) with holes; mapped[] marks what exists.
    const span = 0x101000;
    fc.assert(
      fc.property(
        fc.oneof(fc.bigInt({ min: 0n, max: BigInt(span + 0x100) }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })),
        fc.nat({ max: 0x50000 }),
        (gpa, len) => {
          const mapped = (a: bigint) =>
            (a >= 0n && a < 0xa0000n) || (a >= 0xc0000n && a < 0x100000n) || (a >= 0x100000n && a < 0x101000n);
          let allMapped = true;
          // Checking the two ends and the hole boundaries is enough: holes are at fixed places.
          for (const probe of [gpa, gpa + BigInt(len) - 1n, 0xa0000n, 0xbffffn]) {
            if (len > 0 && probe >= gpa && probe < gpa + BigInt(len) && !mapped(probe)) allMapped = false;
          }
          if (len > 0 && !mapped(gpa)) allMapped = false;
          try {
            const parts = m.slices(gpa, len);
            assert.ok(allMapped || len === 0, `translated an unmapped range 0x${gpa.toString(16)}+${len}`);
            assert.equal(parts.reduce((n, p) => n + p.byteLength, 0), len);
          } catch (e) {
            assert.ok(e instanceof GuestMemoryError, String(e));
            assert.ok(!allMapped || len === 0, `refused a mapped range 0x${gpa.toString(16)}+${len}`);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });
});

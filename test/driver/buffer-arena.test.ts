/**
 * BufferArena: power-of-two blocks, 16-byte aligned, never overlapping while live; full -> -1
 * (the driver queues the request); resets when idle so any size can be served again.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { BufferArena } from '../../src/driver/buffer-arena.js';

describe('BufferArena', () => {
  it('hands out aligned, non-overlapping blocks inside the arena', () => {
    const a = new BufferArena(4096, 64 * 1024);
    const live: { off: number; len: number }[] = [];
    for (const len of [1, 72, 300, 4096, 100, 5000, 256, 257]) {
      const off = a.alloc(len);
      assert.ok(off >= 4096 && off + len <= 4096 + 64 * 1024, `block for ${len} inside the arena`);
      assert.equal(off % 16, 0);
      for (const b of live) assert.ok(off + len <= b.off || b.off + b.len <= off, 'no overlap');
      live.push({ off, len });
    }
    assert.equal(a.liveBlocks, live.length);
    assert.equal(a.usedEnd, Math.max(...live.map((b) => b.off + BufferArena.blockSize(b.len))));
  });

  it('returns -1 when full, reuses freed blocks of the same class, and resets when idle', () => {
    const a = new BufferArena(0, 4096);
    assert.equal(a.maxBlock, 4096);
    assert.equal(a.alloc(4097), -1, 'larger than the arena');
    const x = a.alloc(2048);
    const y = a.alloc(2000);
    assert.notEqual(x, -1);
    assert.notEqual(y, -1);
    assert.equal(a.alloc(16), -1, 'full');
    a.free(x, 2048);
    assert.equal(a.alloc(1500), x, 'same class comes back from the free list');
    assert.equal(a.alloc(100), -1, 'a smaller class cannot use it while it is live');
    a.free(x, 1500);
    a.free(y, 2000);
    assert.equal(a.liveBlocks, 0);
    // Idle: everything is carvable again, in any class.
    const blocks = Array.from({ length: 16 }, () => a.alloc(256));
    assert.ok(blocks.every((b) => b >= 0));
    assert.equal(new Set(blocks).size, 16);
  });

  it('large blocks (a whole-file digest) take their page-rounded size, not the next power of two', () => {
    const MiB = 1 << 20;
    const a = new BufferArena(8192, 300 * MiB);
    assert.equal(a.maxBlock, 300 * MiB, 'over LARGE_BLOCK the whole arena is one possible block');
    const len = 256 * MiB + 72 + 65; // a 256 MiB digest request: header, data, result, status
    assert.equal(BufferArena.blockSize(len), 256 * MiB + 4096);
    const small = a.alloc(300);
    const big = a.alloc(len);
    assert.notEqual(big, -1, 'a power-of-two class (512 MiB) would not fit a 300 MiB arena');
    assert.equal(big % 4096, 0);
    assert.ok(big >= small + 300 && big + len <= 8192 + 300 * MiB);
    assert.equal(a.alloc(60 * MiB), -1, 'no room for a second one while it is live');
    const after = a.alloc(1000);
    assert.ok(after >= big + len, 'small blocks carve after it');
    a.free(after, 1000);
    a.free(big, len);
    assert.equal(a.alloc(60 * MiB), -1, 'the large block is not the most recent: its space waits for the idle reset');
    a.free(small, 300);
    assert.equal(a.liveBlocks, 0);
    const again = a.alloc(len);
    assert.equal(again, 8192, 'idle: carved from the start again');
    a.free(again, len);
    // The most recent large block gives its space back at once.
    const keep = a.alloc(100);
    const x = a.alloc(200 * MiB);
    a.free(x, 200 * MiB);
    assert.equal(a.alloc(250 * MiB), x, 'the bump pointer retreated');
    assert.notEqual(keep, -1);
  });
});

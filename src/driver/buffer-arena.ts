/**
 * The driver's allocator for request buffers in guest memory: power-of-two size classes carved from a
 * bump pointer, one free list per class. Allocation and free are O(1); every block is 16-byte aligned
 * (blocks are at least MIN_BLOCK bytes and the arena base is aligned).
 *
 * Fragmentation across classes is bounded by resetting the bump pointer whenever no block is live.
 * Callers queue work when `alloc` returns -1 and retry after a `free` (backpressure, not failure):
 * since a completed request always frees its block and the arena resets when idle, any request that
 * fits `maxBlock` is eventually served.
 *
 * Large requests (over LARGE_BLOCK, e.g. a one-shot digest of a whole file) are not rounded up to a power
 * of two, which would double their footprint: they are carved at their size rounded to a page, and
 * their space comes back when the bump pointer retreats (the most recent block) or resets (idle). The
 * memory region may be much larger than what is ever used: pages are only committed by the OS when a
 * request is first written there (a SharedArrayBuffer or a memfd mapping is zero-filled on demand).
 */

/** Smallest block: a request header (72 bytes) plus a little data. */
const MIN_BLOCK_LOG2 = 8;
/** Blocks above this size are carved at their own size (page-rounded), not a power of two. */
export const LARGE_BLOCK = 1 << 20;
const PAGE = 4096;

export class BufferArena {
  /** Offset of the arena in the memory region (bytes). */
  readonly base: number;
  readonly size: number;
  readonly #free: number[][] = [];
  #bump = 0;
  #live = 0;
  #highWater = 0;

  constructor(base: number, size: number) {
    if (base % 16 !== 0) throw new RangeError('arena base must be 16-byte aligned');
    if (size < 1 << MIN_BLOCK_LOG2) throw new RangeError('arena too small');
    this.base = base;
    this.size = size;
  }

  /** Largest allocation that can ever succeed. */
  get maxBlock(): number {
    if (this.size > LARGE_BLOCK) return this.size - (this.size % PAGE);
    let c = 1 << MIN_BLOCK_LOG2;
    while (c * 2 <= this.size) c *= 2;
    return c;
  }

  get liveBlocks(): number {
    return this.#live;
  }

  /** End (offset in the memory region) of everything ever handed out: the bytes that may hold data. */
  get usedEnd(): number {
    return this.base + this.#highWater;
  }

  /** Size class (log2 of the block size) for `len` bytes. */
  static classOf(len: number): number {
    let c = MIN_BLOCK_LOG2;
    while (1 << c < len) c++;
    return c;
  }

  /** Bytes a block for `len` occupies. */
  static blockSize(len: number): number {
    if (len > LARGE_BLOCK) return Math.ceil(len / PAGE) * PAGE;
    return 1 << BufferArena.classOf(len);
  }

  /** Allocates at least `len` bytes; returns the offset (relative to the memory region) or -1 if full now. */
  alloc(len: number): number {
    if (len > this.maxBlock) return -1;
    if (len > LARGE_BLOCK) return this.#carve(BufferArena.blockSize(len));
    const cls = BufferArena.classOf(len);
    const list = this.#free[cls];
    if (list !== undefined && list.length > 0) {
      this.#live++;
      return list.pop()!;
    }
    const block = 1 << cls;
    if (this.#bump + block > this.size) return -1;
    // Keep power-of-two blocks aligned to 16 at least: the bump pointer only ever moves by blocks >= 256.
    const off = this.base + this.#bump;
    this.#bump += block;
    if (this.#bump > this.#highWater) this.#highWater = this.#bump;
    this.#live++;
    return off;
  }

  /** A large block from the bump pointer (page-aligned: the bump pointer only moves by 256-byte multiples). */
  #carve(block: number): number {
    const start = Math.ceil(this.#bump / PAGE) * PAGE;
    if (start + block > this.size) return -1;
    this.#bump = start + block;
    if (this.#bump > this.#highWater) this.#highWater = this.#bump;
    this.#live++;
    return this.base + start;
  }

  /** Frees a block returned by `alloc(len)` (same `len`). */
  free(offset: number, len: number): void {
    if (len > LARGE_BLOCK) {
      // The most recent block gives its space back at once; any other waits for the idle reset.
      if (offset + BufferArena.blockSize(len) === this.base + this.#bump) this.#bump = offset - this.base;
    } else {
      (this.#free[BufferArena.classOf(len)] ??= []).push(offset);
    }
    if (--this.#live === 0) {
      // Nothing live: start over, so blocks carved for one size can serve any other.
      this.#bump = 0;
      this.#free.length = 0;
    }
  }
}

/**
 * Guest memory: a set of non-overlapping regions of guest-physical address space, each backed by
 * host bytes (a SharedArrayBuffer, or an mmap'ed memfd received over vhost-user SET_MEM_TABLE).
 *
 * Every address handed to us by the other side (descriptor `addr`, indirect tables, vhost-user ring
 * addresses) is untrusted: it stays a u64 (bigint, or two checked u32 halves on the hot path) until
 * it has been checked against a region, and every [addr, addr + len) range must lie entirely inside
 * mapped memory (DPDK CVE-2018-1059: "check all range is mapped when translating GPAs"). A range may
 * straddle two regions that are adjacent in guest-physical space; `slices()` translates it piecewise.
 *
 * DEVIATION: guest-physical regions must end at or below 2^53. x86-64 physical addresses have at
 * most 52 bits, and keeping them exact JS numbers lets the data path avoid bigint arithmetic. An
 * address above 2^53 is simply "not mapped". User (front-end virtual) addresses stay bigint.
 */

export class GuestMemoryError extends Error {
  override readonly name = 'GuestMemoryError';
}

export interface MemoryRegionInit {
  /** Guest-physical address of bytes[0]. */
  guestPhysAddr: bigint;
  /** The region's bytes in this process. */
  bytes: Uint8Array;
  /** vhost-user `userspace_addr`: the front-end's virtual address of bytes[0] (ring addresses use it). */
  userAddr?: bigint;
}

interface Region {
  readonly start: number; // guest-physical, exact (<= 2^53)
  readonly end: number; // exclusive
  readonly bytes: Uint8Array;
  readonly userStart: bigint | undefined;
  readonly userEnd: bigint | undefined;
}

const U64_LIMIT = 1n << 64n;
const SAFE_LIMIT = 2 ** 53;
const MAX_LEN = 2 ** 32; // lengths are u32 on the wire; a view of 4 GiB or more is never asked for

function checkLen(len: number): void {
  if (!Number.isSafeInteger(len) || len < 0 || len > MAX_LEN) {
    throw new GuestMemoryError(`length ${len} is not a valid u32 length`);
  }
}

export class GuestMemory {
  /** Sorted by guest-physical start. */
  readonly #regions: Region[];

  constructor(regions: readonly MemoryRegionInit[]) {
    const list: Region[] = [];
    for (const r of regions) {
      const len = r.bytes.byteLength;
      if (len === 0) throw new GuestMemoryError('empty memory region');
      if (r.guestPhysAddr < 0n || r.guestPhysAddr + BigInt(len) > U64_LIMIT) {
        throw new GuestMemoryError(`region at 0x${r.guestPhysAddr.toString(16)} + ${len} overflows u64`);
      }
      if (r.guestPhysAddr + BigInt(len) > BigInt(SAFE_LIMIT)) {
        throw new GuestMemoryError(`region at 0x${r.guestPhysAddr.toString(16)} ends above 2^53 (unsupported)`);
      }
      let userStart: bigint | undefined;
      let userEnd: bigint | undefined;
      if (r.userAddr !== undefined) {
        userStart = r.userAddr;
        userEnd = r.userAddr + BigInt(len);
        if (userStart < 0n || userEnd > U64_LIMIT) {
          throw new GuestMemoryError(`user address 0x${r.userAddr.toString(16)} + ${len} overflows u64`);
        }
      }
      const start = Number(r.guestPhysAddr);
      list.push({ start, end: start + len, bytes: r.bytes, userStart, userEnd });
    }
    list.sort((a, b) => a.start - b.start);
    for (let i = 1; i < list.length; i++) {
      const prev = list[i - 1]!;
      const cur = list[i]!;
      if (cur.start < prev.end) {
        throw new GuestMemoryError(`regions at 0x${prev.start.toString(16)} and 0x${cur.start.toString(16)} overlap`);
      }
    }
    for (let i = 0; i < list.length; i++) {
      const a = list[i]!;
      if (a.userStart === undefined || a.userEnd === undefined) continue;
      for (let j = i + 1; j < list.length; j++) {
        const b = list[j]!;
        if (b.userStart === undefined || b.userEnd === undefined) continue;
        if (a.userStart < b.userEnd && b.userStart < a.userEnd) {
          throw new GuestMemoryError('regions overlap in user address space');
        }
      }
    }
    this.#regions = list;
  }

  /** Number of regions. */
  get regionCount(): number {
    return this.#regions.length;
  }

  /** Total mapped bytes. */
  get totalBytes(): number {
    let n = 0;
    for (const r of this.#regions) n += r.end - r.start;
    return n;
  }

  /** The region containing guest-physical `gpa` (a non-negative exact integer), or undefined. */
  #find(gpa: number): Region | undefined {
    const regions = this.#regions;
    for (let i = 0; i < regions.length; i++) {
      const r = regions[i]!;
      if (gpa < r.start) return undefined; // sorted: no later region can contain it
      if (gpa < r.end) return r;
    }
    return undefined;
  }

  /** [gpa, gpa + len) inside ONE region, as a live view; throws GuestMemoryError otherwise. */
  view(gpa: bigint, len: number): Uint8Array {
    checkLen(len);
    if (gpa < 0n || gpa >= BigInt(SAFE_LIMIT)) throw new GuestMemoryError(`address 0x${gpa.toString(16)} not mapped`);
    const v = this.viewAt(Number(gpa), len);
    if (v === null) throw new GuestMemoryError(`range 0x${gpa.toString(16)} + ${len} is not inside one memory region`);
    return v;
  }

  /**
   * Hot-path variant of `view()`: `gpa` must already be an exact non-negative integer (for example
   * the two u32 halves of a descriptor address, high half checked). Returns null if not mapped.
   */
  viewAt(gpa: number, len: number): Uint8Array | null {
    const r = this.#find(gpa);
    if (r === undefined) {
      // A zero-length range at the very end of a region is still "inside" it.
      if (len === 0) {
        for (const q of this.#regions) if (q.end === gpa) return q.bytes.subarray(q.end - q.start);
      }
      return null;
    }
    // gpa < 2^53 and len <= 2^32: the sum is exact.
    if (gpa + len > r.end) return null;
    const off = gpa - r.start;
    return r.bytes.subarray(off, off + len);
  }

  /** [gpa, gpa + len) as one view per region crossed (regions must be adjacent); throws otherwise. */
  slices(gpa: bigint, len: number): Uint8Array[] {
    checkLen(len);
    const out: Uint8Array[] = [];
    if (gpa < 0n || gpa >= BigInt(SAFE_LIMIT) || !this.pushSlicesAt(Number(gpa), len, out)) {
      throw new GuestMemoryError(`range 0x${gpa.toString(16)} + ${len} is not inside guest memory`);
    }
    return out;
  }

  /**
   * Hot-path variant of `slices()`: appends the views to `out` and returns true, or returns false
   * (leaving `out` possibly extended: callers discard it) when any byte of the range is unmapped.
   * A zero-length range appends nothing and is valid wherever `viewAt` accepts it.
   */
  pushSlicesAt(gpa: number, len: number, out: Uint8Array[]): boolean {
    let r = this.#find(gpa);
    if (r === undefined) return len === 0 && this.viewAt(gpa, 0) !== null;
    // Exact arithmetic: gpa, r.end <= 2^53 and len <= 2^32.
    if (gpa + len <= r.end) {
      // The common case: the whole range inside one region.
      const off = gpa - r.start;
      out.push(r.bytes.subarray(off, off + len));
      return true;
    }
    let cur = gpa;
    let left = len;
    const regions = this.#regions;
    let idx = regions.indexOf(r);
    while (left > 0) {
      const off = cur - r.start;
      const take = Math.min(left, r.end - cur);
      out.push(r.bytes.subarray(off, off + take));
      left -= take;
      cur += take;
      if (left === 0) break;
      idx++;
      const next = regions[idx];
      if (next === undefined || next.start !== cur) return false; // hole after this region
      r = next;
    }
    return true;
  }

  /**
   * [uaddr, uaddr + len) in front-end virtual address space (vhost-user SET_VRING_ADDR without
   * IOMMU: "a ring address is ... a user address"), inside ONE region's `userAddr` range.
   */
  viewUser(uaddr: bigint, len: number): Uint8Array {
    checkLen(len);
    const end = uaddr + BigInt(len);
    for (const r of this.#regions) {
      if (r.userStart === undefined || r.userEnd === undefined) continue;
      if (uaddr >= r.userStart && end <= r.userEnd) {
        const off = Number(uaddr - r.userStart); // < region length: exact
        return r.bytes.subarray(off, off + len);
      }
    }
    throw new GuestMemoryError(`user range 0x${uaddr.toString(16)} + ${len} is not inside one memory region`);
  }

  /** Translate a front-end virtual address to guest-physical (for logging and ring checks). */
  userToGuest(uaddr: bigint): bigint {
    for (const r of this.#regions) {
      if (r.userStart === undefined || r.userEnd === undefined) continue;
      if (uaddr >= r.userStart && uaddr < r.userEnd) return BigInt(r.start) + (uaddr - r.userStart);
    }
    throw new GuestMemoryError(`user address 0x${uaddr.toString(16)} is not mapped`);
  }
}

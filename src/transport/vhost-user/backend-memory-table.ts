/**
 * The back-end's memory table (SET_MEM_TABLE): maps the front-end's memory regions (memfds) and
 * checks them before anything can touch them, and owns the mappings until they are replaced or the
 * connection closes.
 *
 * Checks per region (any failure throws VhostUserProtocolError and maps nothing): size > 0; size +
 * mmap_offset and address + size fit in u64 (DPDK CVE-2020-10722 was this bug for the log region);
 * the mapping fits MAX_MAPPING_BYTES; the fd is a memfd sealed against shrinking (F_SEAL_SHRINK)
 * and long enough now — touching a mapping beyond the end of its file is SIGBUS, which would kill
 * every connection of this process.
 */
import { fstatSync } from 'node:fs';
import { decodeMemoryTable } from '../../wire/vhost-user.js';
import { GuestMemory } from '../../memory/guest-memory.js';
import { mapShared, getSeals, F_SEAL, MAX_MAPPING_BYTES, type Mapping } from '../../sys/memfd.js';
import { closeFds } from '../../sys/fd.js';
import { VhostUserProtocolError } from './message-table.js';

/** mmap offsets must be multiples of this (x86-64 and the usual aarch64 kernels: 4 KiB). */
const PAGE_SIZE = 4096;

interface MappedRegion {
  readonly mapping: Mapping;
  readonly guestPhysAddr: bigint;
  readonly userspaceAddr: bigint;
  readonly bytes: Uint8Array;
}

export class BackendMemoryTable {
  #regions: MappedRegion[] = [];
  #memory: GuestMemory | null = null;

  /** The current table, or null before the first SET_MEM_TABLE. */
  get memory(): GuestMemory | null {
    return this.#memory;
  }

  /** Bytes mapped (for statistics and memory accounting). */
  get mappedBytes(): number {
    return this.#regions.reduce((n, r) => n + r.mapping.length, 0);
  }

  /**
   * Maps a SET_MEM_TABLE payload's regions (`fds`: one per region, always closed here: the mappings
   * stay valid without them, vhost-user.rst). `adopt(memory)` is called with the new table before
   * it becomes current (the running rings move to it; it may throw, and then nothing changes);
   * the previous mappings are unmapped after it.
   */
  replace(payload: Uint8Array, fds: number[], adopt: (memory: GuestMemory) => void): void {
    const regions: MappedRegion[] = [];
    try {
      const table = decodeMemoryTable(payload);
      table.forEach((r, i) => regions.push(mapRegion(r, i, fds[i]!)));
      let memory: GuestMemory;
      try {
        memory = new GuestMemory(regions.map((r) => ({ guestPhysAddr: r.guestPhysAddr, bytes: r.bytes, userAddr: r.userspaceAddr })));
      } catch (err) {
        throw new VhostUserProtocolError(`SET_MEM_TABLE: ${(err as Error).message}`);
      }
      adopt(memory);
      const old = this.#regions;
      this.#regions = regions;
      this.#memory = memory;
      for (const r of old) r.mapping.unmap();
    } catch (err) {
      for (const r of regions) r.mapping.unmap();
      throw err;
    } finally {
      closeFds(fds);
      fds.length = 0;
    }
  }

  /** Unmaps everything. Idempotent. */
  close(): void {
    this.#memory = null;
    for (const r of this.#regions) r.mapping.unmap();
    this.#regions = [];
  }
}

function mapRegion(r: ReturnType<typeof decodeMemoryTable>[number], i: number, fd: number): MappedRegion {
  const end = r.memorySize + r.mmapOffset; // bigint: no overflow possible here
  if (r.memorySize === 0n) throw new VhostUserProtocolError(`SET_MEM_TABLE: region ${i} has size 0`);
  if (end >= 1n << 64n) {
    throw new VhostUserProtocolError(`SET_MEM_TABLE: region ${i} size 0x${r.memorySize.toString(16)} + offset 0x${r.mmapOffset.toString(16)} overflows u64`);
  }
  // A page-aligned offset is mapped directly; otherwise the file is mapped from 0.
  const direct = r.mmapOffset % BigInt(PAGE_SIZE) === 0n;
  const mapLength = direct ? r.memorySize : end;
  if (mapLength > BigInt(MAX_MAPPING_BYTES)) {
    throw new VhostUserProtocolError(`SET_MEM_TABLE: region ${i} needs a ${mapLength}-byte mapping (max ${MAX_MAPPING_BYTES})`);
  }
  if (r.guestPhysAddr + r.memorySize > 1n << 64n || r.userspaceAddr + r.memorySize > 1n << 64n) {
    throw new VhostUserProtocolError(`SET_MEM_TABLE: region ${i} address + size overflows u64`);
  }
  let fileSize: number;
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw new Error('not a regular file or memfd');
    fileSize = st.size;
  } catch (err) {
    throw new VhostUserProtocolError(`SET_MEM_TABLE: region ${i} fd: ${(err as Error).message}`);
  }
  // QEMU's memory-backend-memfd is sealed (seal=on by default), and so is our front-end's memory.
  const seals = getSeals(fd);
  if (seals === null || (seals & F_SEAL.SHRINK) === 0) {
    throw new VhostUserProtocolError(
      `SET_MEM_TABLE: region ${i} fd is not a memfd sealed against shrinking (F_SEAL_SHRINK); use QEMU's memory-backend-memfd with seal=on (the default)`,
    );
  }
  if (BigInt(fileSize) < end) {
    throw new VhostUserProtocolError(`SET_MEM_TABLE: region ${i} ends at 0x${end.toString(16)} beyond its file (${fileSize} bytes)`);
  }
  const mapping = direct ? mapShared(fd, Number(mapLength), Number(r.mmapOffset)) : mapShared(fd, Number(mapLength));
  const offset = direct ? 0 : Number(r.mmapOffset);
  return { mapping, guestPhysAddr: r.guestPhysAddr, userspaceAddr: r.userspaceAddr, bytes: new Uint8Array(mapping.buffer, offset, Number(r.memorySize)) };
}

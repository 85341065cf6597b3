/**
 * Shared memory: memfd_create + mmap(MAP_SHARED), and mapping fds received from a peer.
 *
 * Ownership: a `Mapping` owns its address range until `unmap()`; after that every view obtained from
 * it is invalid and must not be touched (the caller drops them first). `createMemfd` returns an fd
 * owned by the caller. `mapShared` borrows the fd (the mapping stays valid after the fd is closed).
 */
import { native, check, addressOf, viewOf, SysError, lastErrno, type NativePointer } from './libc.js';

const MFD_CLOEXEC = 0x0001;
const MFD_ALLOW_SEALING = 0x0002;
const F_ADD_SEALS = 1033;
const F_GET_SEALS = 1034;
/** fcntl seals (memfd_create(2)). */
export const F_SEAL = { SEAL: 0x1, SHRINK: 0x2, GROW: 0x4, WRITE: 0x8 } as const;
const PROT_READ = 0x1;
const PROT_WRITE = 0x2;
const MAP_SHARED = 0x01;
const MAP_FAILED = 0xffffffffffffffffn;
/** koffi views (ArrayBuffers over native memory) abort the process beyond 4 GiB: never ask for more. */
export const MAX_MAPPING_BYTES = 2 ** 32;

export class Mapping {
  private pointer: NativePointer | undefined;
  /** The mapping's start in this process's address space. */
  readonly address: bigint;
  readonly length: number;
  /** An ArrayBuffer over the whole mapping (valid until unmap()). */
  readonly buffer: ArrayBuffer;

  constructor(pointer: NativePointer, length: number) {
    this.pointer = pointer;
    this.address = addressOf(pointer);
    this.length = length;
    this.buffer = viewOf(pointer, length);
  }

  get mapped(): boolean {
    return this.pointer !== undefined;
  }

  /** Releases the address range. Idempotent. */
  unmap(): void {
    if (this.pointer === undefined) return;
    native.munmap(this.pointer, this.length);
    this.pointer = undefined;
  }
}

/**
 * A new anonymous shared-memory file of `size` bytes. The caller owns the fd. Sealed by default
 * against shrinking and growing (as QEMU's memory-backend-memfd does): whoever maps it can never
 * be made to touch pages past the end of the file (SIGBUS).
 */
export function createMemfd(name: string, size: number, { seal = true }: { seal?: boolean } = {}): number {
  const fd = check('memfd_create', native.memfdCreate(name, MFD_CLOEXEC | (seal ? MFD_ALLOW_SEALING : 0)) as number);
  const fail = (call: string): never => {
    const errno = lastErrno();
    native.close(fd);
    throw new SysError(call, errno);
  };
  if ((native.ftruncate(fd, size) as number) < 0) fail('ftruncate');
  if (seal && (native.fcntl(fd, F_ADD_SEALS, 'int', F_SEAL.SHRINK | F_SEAL.GROW | F_SEAL.SEAL) as number) < 0) fail('fcntl(F_ADD_SEALS)');
  return fd;
}

/** The seals of a borrowed fd (F_SEAL bits), or null when it cannot carry seals (not a memfd/shmem file). */
export function getSeals(fd: number): number | null {
  const seals = native.fcntl(fd, F_GET_SEALS) as number;
  return seals < 0 ? null : seals;
}

/**
 * mmap(NULL, length, RW, MAP_SHARED, fd, offset). Borrows `fd`. `length` must be a positive safe
 * integer ≤ MAX_MAPPING_BYTES and `offset` a multiple of the page size (callers validate
 * peer-supplied values before calling).
 */
export function mapShared(fd: number, length: number, offset = 0): Mapping {
  if (!Number.isSafeInteger(length) || length <= 0 || length > MAX_MAPPING_BYTES) {
    throw new RangeError(`mapping length ${length} out of range`);
  }
  if (!Number.isSafeInteger(offset) || offset < 0) throw new RangeError(`mapping offset ${offset} out of range`);
  const pointer = native.mmap(null, length, PROT_READ | PROT_WRITE, MAP_SHARED, fd, offset);
  if (pointer === null || addressOf(pointer) === MAP_FAILED) throw new SysError('mmap', lastErrno());
  return new Mapping(pointer, length);
}

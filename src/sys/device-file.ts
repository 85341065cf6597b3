/**
 * Device files: open(2), exact pread/pwrite (PCI config space, VFIO regions), flock(2), and
 * anonymous DMA-able memory (shared, locked, optionally on hugetlb pages) with its physical address
 * from /proc/self/pagemap.
 *
 * Ownership: `openFile` returns an fd the caller owns (close it with closeFd); every other function
 * borrows its fd. `allocDmaMemory` returns a Mapping the caller owns (unmap() releases it).
 */
import { closeSync, openSync, readSync } from 'node:fs';
import { native, check, lastErrno, errnoValues, SysError, addressOf } from './libc.js';
import { Mapping } from './memfd.js';

export const O_RDONLY = 0;
export const O_RDWR = 2;
const O_CLOEXEC = 0o2000000;
const LOCK_EX = 2;
const LOCK_NB = 4;
const PROT_READ = 0x1;
const PROT_WRITE = 0x2;
const MAP_SHARED = 0x01;
const MAP_ANONYMOUS = 0x20;
const MAP_POPULATE = 0x8000;
const MAP_HUGETLB = 0x40000;
const MADV_DONTFORK = 10;
const MAP_FAILED = 0xffffffffffffffffn;
/** x86-64 hugetlb default page size (2 MiB). */
export const HUGE_PAGE_BYTES = 2 * 1024 * 1024;
export const PAGE_BYTES = 4096;

/** open(path, flags | O_CLOEXEC). The caller owns the fd. Throws SysError (errno names ENOENT, EBUSY, EACCES...). */
export function openFile(path: string, flags: number): number {
  return check(`open(${path})`, native.open(path, flags | O_CLOEXEC) as number);
}

/** Reads exactly `length` bytes at `offset` (a short read is an error: device regions have fixed sizes). */
export function preadExact(fd: number, length: number, offset: number, what = 'pread'): Uint8Array {
  const buf = Buffer.alloc(length);
  const n = native.pread(fd, buf, length, offset) as number;
  if (n < 0) throw new SysError(what, lastErrno());
  if (n !== length) throw new SysError(`${what}: short read (${n} of ${length} bytes)`, errnoValues.EIO);
  return new Uint8Array(buf.buffer, buf.byteOffset, length);
}

/** Writes exactly `bytes` at `offset`. */
export function pwriteExact(fd: number, bytes: Uint8Array, offset: number, what = 'pwrite'): void {
  const n = native.pwrite(fd, bytes, bytes.length, offset) as number;
  if (n < 0) throw new SysError(what, lastErrno());
  if (n !== bytes.length) throw new SysError(`${what}: short write (${n} of ${bytes.length} bytes)`, errnoValues.EIO);
}

/**
 * flock(LOCK_EX | LOCK_NB) on a borrowed fd: true when this open file now holds the lock, false when
 * another open file (another process) holds it. The lock goes with the fd's last close.
 */
export function tryLockExclusive(fd: number): boolean {
  if ((native.flock(fd, LOCK_EX | LOCK_NB) as number) === 0) return true;
  const errno = lastErrno();
  if (errno === errnoValues.EAGAIN) return false;
  throw new SysError('flock', errno);
}

/**
 * `length` bytes of zeroed memory for a device to DMA into: MAP_SHARED | MAP_ANONYMOUS (a fork never
 * copies it on write, so the device and this process keep seeing the same pages), populated and
 * mlock()ed (never swapped or moved while mapped), MADV_DONTFORK (children do not inherit it).
 * `hugetlb`: on 2 MiB hugetlb pages (physically contiguous within each page; needs
 * /proc/sys/vm/nr_hugepages > 0). `length` must be a multiple of the page size used.
 */
export function allocDmaMemory(length: number, { hugetlb = false }: { hugetlb?: boolean } = {}): Mapping {
  const unit = hugetlb ? HUGE_PAGE_BYTES : PAGE_BYTES;
  if (!Number.isSafeInteger(length) || length <= 0 || length % unit !== 0 || length > 2 ** 31) {
    throw new RangeError(`DMA memory length ${length} must be a positive multiple of ${unit} bytes, at most 2 GiB`);
  }
  const flags = MAP_SHARED | MAP_ANONYMOUS | MAP_POPULATE | (hugetlb ? MAP_HUGETLB : 0);
  const pointer = native.mmap(null, length, PROT_READ | PROT_WRITE, flags, -1, 0);
  if (pointer === null || addressOf(pointer) === MAP_FAILED) {
    const errno = lastErrno();
    throw new SysError(hugetlb ? 'mmap(MAP_HUGETLB) (are hugepages reserved? /proc/sys/vm/nr_hugepages)' : 'mmap(anonymous)', errno);
  }
  const mapping = new Mapping(pointer, length);
  try {
    check('mlock', native.mlock(pointer, length) as number);
    check('madvise(MADV_DONTFORK)', native.madvise(pointer, length, MADV_DONTFORK) as number);
  } catch (err) {
    mapping.unmap();
    throw err;
  }
  return mapping;
}

/**
 * The physical address of this process's virtual address `address` (mapped and present), from
 * /proc/self/pagemap (needs CAP_SYS_ADMIN: unprivileged readers see PFN 0). Bits 0-54 of each
 * 8-byte entry are the page frame number, bit 63 "present" (Documentation/admin-guide/mm/pagemap.rst).
 */
export function physicalAddressOf(address: bigint): bigint {
  const page = BigInt(PAGE_BYTES);
  const fd = openSync('/proc/self/pagemap', 'r');
  try {
    const entry = Buffer.alloc(8);
    const n = readSync(fd, entry, 0, 8, (address / page) * 8n);
    if (n !== 8) throw new SysError('read(/proc/self/pagemap): short read', errnoValues.EIO);
    const value = entry.readBigUInt64LE(0);
    const present = (value >> 63n) & 1n;
    const pfn = value & ((1n << 55n) - 1n);
    if (present === 0n) throw new SysError(`pagemap: page at 0x${address.toString(16)} is not present`, errnoValues.EINVAL);
    if (pfn === 0n) throw new SysError('pagemap: PFN hidden (reading physical addresses needs root)', errnoValues.EPERM);
    return pfn * page + (address % page);
  } finally {
    closeSync(fd);
  }
}

/** read(2) of exactly `length` bytes (a device that returns records: /dev/uioN's 4-byte count). */
export function readRecord(fd: number, length: number, what = 'read'): Uint8Array {
  const buf = Buffer.alloc(length);
  const n = native.read(fd, buf, length) as number;
  if (n < 0) throw new SysError(what, lastErrno());
  if (n !== length) throw new SysError(`${what}: short read (${n} of ${length} bytes)`, errnoValues.EIO);
  return new Uint8Array(buf.buffer, buf.byteOffset, length);
}

/** write(2) of exactly `bytes`. */
export function writeRecord(fd: number, bytes: Uint8Array, what = 'write'): void {
  const n = native.write(fd, bytes, bytes.length) as number;
  if (n < 0) throw new SysError(what, lastErrno());
  if (n !== bytes.length) throw new SysError(`${what}: short write`, errnoValues.EIO);
}

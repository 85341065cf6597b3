/**
 * The libc functions this project calls through koffi, bound once per thread (koffi is safe to load
 * in worker threads; each thread gets its own bindings). This is the ONLY module that imports
 * koffi besides its siblings in src/sys/ (enforced by eslint.config.js).
 *
 * Conventions of every wrapper in src/sys/:
 *  - a failing call throws `SysError` (errno + the call's name); EAGAIN is returned as a value where a
 *    caller must handle it (non-blocking sockets and eventfds);
 *  - each function says who owns the file descriptor or mapping it returns or takes.
 */
import koffi from 'koffi';
import { getSystemErrorMap } from 'node:util';

const lib = koffi.load('libc.so.6');

export const native = {
  close: lib.func('int close(int fd)'),
  read: lib.func('long read(int fd, void *buf, unsigned long count)'),
  write: lib.func('long write(int fd, const void *buf, unsigned long count)'),
  poll: lib.func('int poll(void *fds, unsigned long nfds, int timeout)'),
  ppoll: lib.func('int ppoll(void *fds, unsigned long nfds, const void *tmo, const void *sigmask)'),
  fcntl: lib.func('int fcntl(int fd, int cmd, ...)'),
  eventfd: lib.func('int eventfd(unsigned int initval, int flags)'),
  memfdCreate: lib.func('int memfd_create(const char *name, unsigned int flags)'),
  ftruncate: lib.func('int ftruncate(int fd, int64_t length)'),
  mmap: lib.func('void *mmap(void *addr, size_t length, int prot, int flags, int fd, int64_t offset)'),
  munmap: lib.func('int munmap(void *addr, size_t length)'),
  socket: lib.func('int socket(int domain, int type, int protocol)'),
  bind: lib.func('int bind(int fd, const void *addr, uint32_t addrlen)'),
  listen: lib.func('int listen(int fd, int backlog)'),
  accept4: lib.func('int accept4(int fd, void *addr, void *addrlen, int flags)'),
  connect: lib.func('int connect(int fd, const void *addr, uint32_t addrlen)'),
  sendmsg: lib.func('long sendmsg(int fd, const void *msg, int flags)'),
  recvmsg: lib.func('long recvmsg(int fd, void *msg, int flags)'),
  shutdown: lib.func('int shutdown(int fd, int how)'),
  getsockopt: lib.func('int getsockopt(int fd, int level, int optname, void *optval, void *optlen)'),
  sched_yield: lib.func('int sched_yield(void)'),
  mallopt: lib.func('int mallopt(int param, int value)'),
  open: lib.func('int open(const char *path, int flags, ...)'),
  pread: lib.func('long pread(int fd, void *buf, unsigned long count, int64_t offset)'),
  pwrite: lib.func('long pwrite(int fd, const void *buf, unsigned long count, int64_t offset)'),
  ioctl: lib.func('int ioctl(int fd, unsigned long request, ...)'),
  flock: lib.func('int flock(int fd, int operation)'),
  madvise: lib.func('int madvise(void *addr, size_t length, int advice)'),
  mlock: lib.func('int mlock(const void *addr, size_t length)'),
};

/** Native memory (koffi.alloc / mmap results) as an opaque handle. */
export type NativePointer = unknown;

export const errnoValues = {
  EPERM: 1,
  ENOENT: 2,
  EINTR: 4,
  EIO: 5,
  EBADF: 9,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EBUSY: 16,
  ENODEV: 19,
  EINVAL: 22,
  ENOTTY: 25,
  EPIPE: 32,
  ECONNRESET: 104,
  ECONNREFUSED: 111,
} as const;

/** A failed system call (tier 3: a host failure, or the peer vanished). */
export class SysError extends Error {
  override readonly name = 'SysError';
  constructor(
    readonly call: string,
    readonly errno: number,
  ) {
    super(`${call} failed: errno ${errno}${errnoName(errno)}`);
  }
}

/** ' (EPIPE: broken pipe)' for errno 32: Node's own table (libuv names every errno). */
function errnoName(errno: number): string {
  const entry = getSystemErrorMap().get(-errno);
  if (entry !== undefined) return ` (${entry[0]}: ${entry[1]})`;
  for (const [name, value] of Object.entries(errnoValues)) if (value === errno) return ` (${name})`;
  return '';
}

export function lastErrno(): number {
  return koffi.errno();
}

/** Throws SysError when a call returned a negative value. */
export function check(call: string, result: number): number {
  if (result < 0) throw new SysError(call, koffi.errno());
  return result;
}

export function addressOf(pointer: NativePointer): bigint {
  return koffi.address(pointer);
}

/** An ArrayBuffer over native memory. Valid only until that memory is freed/unmapped. */
export function viewOf(pointer: NativePointer, length: number): ArrayBuffer {
  return koffi.view(pointer, length);
}

export function allocNative(length: number): NativePointer {
  return koffi.alloc('uint8_t', length);
}

export function freeNative(pointer: NativePointer): void {
  koffi.free(pointer);
}

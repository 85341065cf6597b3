/**
 * AF_UNIX stream sockets driven through libc, because node:net cannot pass file descriptors
 * (SCM_RIGHTS) on a plain Unix socket. All sockets are non-blocking; callers wait with poll.
 *
 * Layouts (LP64 Linux, x86-64 and aarch64): struct msghdr is 56 bytes {name@0, namelen@8, iov@16,
 * iovlen@24, control@32, controllen@40, flags@48}; struct iovec {base@0, len@8}; struct cmsghdr
 * {size_t len@0, int level@8, int type@12, data@16}; struct sockaddr_un {u16 family, char path[108]}.
 *
 * Ownership: `listenUnix`/`connectUnix`/`acceptUnix` return a `UnixSocket` that owns its fd until
 * `close()`. `recv` returns received fds that the CALLER now owns (close them on every error path).
 * `send` borrows the fds it passes (the kernel duplicates them into the peer).
 */
import { native, check, lastErrno, errnoValues, SysError, allocNative, freeNative, viewOf, addressOf, type NativePointer } from './libc.js';
import { closeFds } from './fd.js';

const AF_UNIX = 1;
const SOCK_STREAM = 1;
const SOCK_NONBLOCK = 0o4000;
const SOCK_CLOEXEC = 0o2000000;
const SOL_SOCKET = 1;
const SCM_RIGHTS = 1;
const MSG_CTRUNC = 0x8;
const MSG_DONTWAIT = 0x40;
const MSG_NOSIGNAL = 0x4000;
const MSG_CMSG_CLOEXEC = 0x40000000;
const SHUT_RDWR = 2;

/** Room for this many fds per recvmsg: more than any legal vhost-user message carries (8). */
export const MAX_RECEIVED_FDS = 32;
const CMSG_HEADER = 16;
/** sendmsg may attach up to this many (tests use it to exceed what a receiver accepts). */
export const MAX_SENT_FDS = 64;
const RECV_CONTROL_BYTES = CMSG_HEADER + 4 * MAX_RECEIVED_FDS;
const CONTROL_BYTES = CMSG_HEADER + 4 * MAX_SENT_FDS;
const MSGHDR_BYTES = 64;
const IOVEC_BYTES = 16;
const DATA_BYTES = 65536;
const SCRATCH_BYTES = MSGHDR_BYTES + IOVEC_BYTES + CONTROL_BYTES + DATA_BYTES;
const SUN_PATH_MAX = 107;

function sockaddrUn(path: string): Buffer {
  const encoded = Buffer.from(path, 'utf8');
  if (encoded.length === 0 || encoded.length > SUN_PATH_MAX) {
    throw new RangeError(`Unix socket path too long (${encoded.length} bytes, max ${SUN_PATH_MAX}): ${path}`);
  }
  const addr = Buffer.alloc(110);
  addr.writeUInt16LE(AF_UNIX, 0);
  encoded.copy(addr, 2);
  return addr;
}

export interface Received {
  /** Bytes read (length 0 = end of stream). */
  readonly data: Uint8Array;
  /** Received fds, owned by the caller. */
  readonly fds: number[];
  /** The peer sent more fds than fit (MSG_CTRUNC); the kernel dropped the excess. */
  readonly controlTruncated: boolean;
}

export class UnixSocket {
  private scratch: NativePointer | undefined;
  private scratchView: DataView;
  private scratchBytes: Uint8Array;
  private scratchAddress: bigint;
  private fdValue: number;

  constructor(fd: number) {
    this.fdValue = fd;
    this.scratch = allocNative(SCRATCH_BYTES);
    const buffer = viewOf(this.scratch, SCRATCH_BYTES);
    this.scratchView = new DataView(buffer);
    this.scratchBytes = new Uint8Array(buffer);
    this.scratchAddress = addressOf(this.scratch);
  }

  get fd(): number {
    return this.fdValue;
  }

  get closed(): boolean {
    return this.fdValue < 0;
  }

  private prepare(dataLength: number, controlLength: number): void {
    const v = this.scratchView;
    const iov = this.scratchAddress + BigInt(MSGHDR_BYTES);
    const control = iov + BigInt(IOVEC_BYTES);
    const data = control + BigInt(CONTROL_BYTES);
    this.scratchBytes.fill(0, 0, MSGHDR_BYTES + IOVEC_BYTES + CONTROL_BYTES);
    v.setBigUint64(16, iov, true); // msg_iov
    v.setBigUint64(24, 1n, true); // msg_iovlen
    v.setBigUint64(32, controlLength > 0 ? control : 0n, true); // msg_control
    v.setBigUint64(40, BigInt(controlLength), true); // msg_controllen
    v.setBigUint64(MSGHDR_BYTES, data, true); // iov_base
    v.setBigUint64(MSGHDR_BYTES + 8, BigInt(dataLength), true); // iov_len
  }

  /**
   * One non-blocking recvmsg of at most `maxBytes`. Returns null when nothing is available (EAGAIN).
   * Throws SysError on a socket error.
   */
  recv(maxBytes: number): Received | null {
    if (this.scratch === undefined) throw new SysError('recvmsg', errnoValues.EBADF);
    const want = Math.min(maxBytes, DATA_BYTES);
    this.prepare(want, RECV_CONTROL_BYTES);
    const n = native.recvmsg(this.fdValue, this.scratch, MSG_DONTWAIT | MSG_CMSG_CLOEXEC) as number;
    if (n < 0) {
      const errno = lastErrno();
      if (errno === errnoValues.EAGAIN || errno === errnoValues.EINTR) return null;
      throw new SysError('recvmsg', errno);
    }
    const v = this.scratchView;
    const controlStart = MSGHDR_BYTES + IOVEC_BYTES;
    const controlLength = Math.min(Number(v.getBigUint64(40, true)), RECV_CONTROL_BYTES);
    const flags = v.getInt32(48, true);
    const fds: number[] = [];
    // Walk the cmsg list (CMSG_FIRSTHDR/CMSG_NXTHDR): every SCM_RIGHTS fd is collected, whatever
    // else the peer sent, so that none leaks.
    let off = 0;
    while (off + CMSG_HEADER <= controlLength) {
      const len = Number(v.getBigUint64(controlStart + off, true));
      if (len < CMSG_HEADER || off + len > controlLength) break;
      const level = v.getInt32(controlStart + off + 8, true);
      const type = v.getInt32(controlStart + off + 12, true);
      if (level === SOL_SOCKET && type === SCM_RIGHTS) {
        for (let p = CMSG_HEADER; p + 4 <= len; p += 4) fds.push(v.getInt32(controlStart + off + p, true));
      }
      off += (len + 7) & ~7;
    }
    const dataStart = controlStart + CONTROL_BYTES;
    const data = this.scratchBytes.slice(dataStart, dataStart + n);
    return { data, fds, controlTruncated: (flags & MSG_CTRUNC) !== 0 };
  }

  /**
   * One non-blocking sendmsg of (a prefix of) `data`, with `fds` attached (borrowed). Returns the
   * number of bytes sent, 0 when the socket buffer is full (EAGAIN; the fds were not sent).
   */
  send(data: Uint8Array, fds: readonly number[] = []): number {
    if (this.scratch === undefined) throw new SysError('sendmsg', errnoValues.EBADF);
    if (fds.length > MAX_SENT_FDS) throw new RangeError(`too many fds (${fds.length} > ${MAX_SENT_FDS})`);
    const len = Math.min(data.length, DATA_BYTES);
    const controlLength = fds.length > 0 ? (CMSG_HEADER + 4 * fds.length + 7) & ~7 : 0;
    this.prepare(len, controlLength);
    const v = this.scratchView;
    const controlStart = MSGHDR_BYTES + IOVEC_BYTES;
    if (fds.length > 0) {
      v.setBigUint64(controlStart, BigInt(CMSG_HEADER + 4 * fds.length), true);
      v.setInt32(controlStart + 8, SOL_SOCKET, true);
      v.setInt32(controlStart + 12, SCM_RIGHTS, true);
      fds.forEach((fd, i) => v.setInt32(controlStart + CMSG_HEADER + 4 * i, fd, true));
    }
    this.scratchBytes.set(data.subarray(0, len), controlStart + CONTROL_BYTES);
    const n = native.sendmsg(this.fdValue, this.scratch, MSG_DONTWAIT | MSG_NOSIGNAL) as number;
    if (n < 0) {
      const errno = lastErrno();
      if (errno === errnoValues.EAGAIN || errno === errnoValues.EINTR) return 0;
      throw new SysError('sendmsg', errno);
    }
    return n;
  }

  /** Wakes anything polling this socket (both directions see EOF/HUP). The fd stays owned. */
  shutdown(): void {
    if (this.fdValue >= 0) native.shutdown(this.fdValue, SHUT_RDWR);
  }

  /** Gives up the fd without closing it (frees the scratch memory); the caller now owns the fd. */
  detach(): number {
    const fd = this.fdValue;
    this.fdValue = -1;
    this.close();
    return fd;
  }

  /** Releases the fd and the scratch memory. Idempotent. */
  close(): void {
    if (this.fdValue >= 0) native.close(this.fdValue);
    this.fdValue = -1;
    if (this.scratch !== undefined) freeNative(this.scratch);
    this.scratch = undefined;
  }
}

/** A listening socket bound to `path` (which must not exist). Owned by the caller. */
export function listenUnix(path: string, backlog = 16): UnixSocket {
  const addr = sockaddrUn(path);
  const fd = check('socket', native.socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0) as number);
  if ((native.bind(fd, addr, addr.length) as number) < 0 || (native.listen(fd, backlog) as number) < 0) {
    const errno = lastErrno();
    native.close(fd);
    throw new SysError(`bind/listen ${path}`, errno);
  }
  return new UnixSocket(fd);
}

/** Accepts one pending connection, or null (EAGAIN). The returned socket is owned by the caller. */
export function acceptUnix(listener: UnixSocket): UnixSocket | null {
  const fd = native.accept4(listener.fd, null, null, SOCK_NONBLOCK | SOCK_CLOEXEC) as number;
  if (fd < 0) {
    const errno = lastErrno();
    if (errno === errnoValues.EAGAIN || errno === errnoValues.EINTR || errno === 103 /* ECONNABORTED */) return null;
    throw new SysError('accept4', errno);
  }
  return new UnixSocket(fd);
}

/** Connects to the socket at `path` (non-blocking afterwards). Owned by the caller. */
export function connectUnix(path: string): UnixSocket {
  const addr = sockaddrUn(path);
  const fd = check('socket', native.socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0) as number);
  if ((native.connect(fd, addr, addr.length) as number) < 0) {
    const errno = lastErrno();
    native.close(fd);
    throw new SysError(`connect ${path}`, errno);
  }
  const sock = new UnixSocket(fd);
  try {
    setNonBlockingSocket(fd);
  } catch (err) {
    sock.close();
    throw err;
  }
  return sock;
}

/** The peer process of a connected Unix socket, as the kernel recorded it at connect(2) (SO_PEERCRED). */
export interface PeerCredentials {
  readonly pid: number;
  readonly uid: number;
  readonly gid: number;
}

const SO_PEERCRED = 17;

/** getsockopt(SO_PEERCRED): struct ucred { pid_t pid; uid_t uid; gid_t gid; } (socket(7)). Borrows `fd`. */
export function peerCredentials(fd: number): PeerCredentials {
  const cred = Buffer.alloc(12);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(12, 0);
  check('getsockopt(SO_PEERCRED)', native.getsockopt(fd, SOL_SOCKET, SO_PEERCRED, cred, len) as number);
  return { pid: cred.readInt32LE(0), uid: cred.readUInt32LE(4), gid: cred.readUInt32LE(8) };
}

function setNonBlockingSocket(fd: number): void {
  const flags = check('fcntl(F_GETFL)', native.fcntl(fd, 3) as number);
  check('fcntl(F_SETFL)', native.fcntl(fd, 4, 'int', flags | 0o4000) as number);
}

export { closeFds };

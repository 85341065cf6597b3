/**
 * A writer for the cpio "newc" format (SVR4 with no CRC, magic 070701), the format the Linux
 * kernel unpacks as an initramfs (Documentation/driver-api/early-userspace/buffer-format.rst).
 *
 * Written here rather than by running `cpio -o` so the image can hold device nodes
 * (/dev/console) without root and mknod, and so its bytes are deterministic (mtime 0, fixed
 * inode numbers): the same inputs give the same image.
 *
 * Entry header: the magic, then 13 fields of 8 ASCII hex digits each (ino, mode, uid, gid,
 * nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize, check), then the
 * NUL-terminated name padded to a multiple of 4 bytes, then the data padded to 4. The archive
 * ends with an entry named "TRAILER!!!".
 */

/** File type bits of `st_mode` (POSIX <sys/stat.h>). */
export const CPIO_MODE = {
  S_IFDIR: 0o040000,
  S_IFREG: 0o100000,
  S_IFLNK: 0o120000,
  S_IFCHR: 0o020000,
} as const;

export type CpioEntry =
  | { readonly type: 'dir'; readonly path: string; readonly perm?: number }
  | { readonly type: 'file'; readonly path: string; readonly data: Uint8Array; readonly perm?: number }
  | { readonly type: 'symlink'; readonly path: string; readonly target: string }
  | { readonly type: 'char'; readonly path: string; readonly major: number; readonly minor: number; readonly perm?: number };

const MAGIC = '070701';
const TRAILER = 'TRAILER!!!';
/** newc fields are 8 hex digits: every numeric field must fit in 32 bits. */
const U32_MAX = 0xffff_ffff;

function hex8(name: string, value: number): string {
  if (!Number.isInteger(value) || value < 0 || value > U32_MAX) {
    throw new RangeError(`cpio: ${name} ${value} does not fit the 8-hex-digit newc field`);
  }
  return value.toString(16).padStart(8, '0');
}

function pad4(length: number): number {
  return (4 - (length % 4)) % 4;
}

function header(ino: number, mode: number, nlink: number, fileSize: number, rdevMajor: number, rdevMinor: number, nameSize: number): string {
  return (
    MAGIC +
    hex8('ino', ino) +
    hex8('mode', mode) +
    hex8('uid', 0) +
    hex8('gid', 0) +
    hex8('nlink', nlink) +
    hex8('mtime', 0) +
    hex8('filesize', fileSize) +
    hex8('devmajor', 0) +
    hex8('devminor', 0) +
    hex8('rdevmajor', rdevMajor) +
    hex8('rdevminor', rdevMinor) +
    hex8('namesize', nameSize) +
    hex8('check', 0)
  );
}

/** Archive paths are relative ("bin/busybox"), with no "..", no empty segment and no NUL. */
function checkPath(path: string): void {
  if (path === '' || path.startsWith('/') || path.includes('\0') || path.split('/').some((s) => s === '' || s === '..')) {
    throw new RangeError(`cpio: invalid archive path '${path}'`);
  }
}

/** Builds a newc archive from `entries`, in order (parents must precede their children). */
export function buildCpioNewc(entries: readonly CpioEntry[]): Buffer {
  const parts: Buffer[] = [];
  const push = (hdr: string, name: string, data: Uint8Array) => {
    const nameBytes = Buffer.from(name + '\0', 'utf8');
    parts.push(Buffer.from(hdr, 'ascii'), nameBytes, Buffer.alloc(pad4(110 + nameBytes.length)));
    if (data.length > 0) parts.push(Buffer.from(data.buffer, data.byteOffset, data.byteLength), Buffer.alloc(pad4(data.length)));
  };
  let ino = 1;
  for (const e of entries) {
    checkPath(e.path);
    const nameSize = Buffer.byteLength(e.path, 'utf8') + 1;
    switch (e.type) {
      case 'dir':
        push(header(ino++, CPIO_MODE.S_IFDIR | (e.perm ?? 0o755), 2, 0, 0, 0, nameSize), e.path, new Uint8Array(0));
        break;
      case 'file':
        push(header(ino++, CPIO_MODE.S_IFREG | (e.perm ?? 0o644), 1, e.data.length, 0, 0, nameSize), e.path, e.data);
        break;
      case 'symlink': {
        const target = Buffer.from(e.target, 'utf8');
        push(header(ino++, CPIO_MODE.S_IFLNK | 0o777, 1, target.length, 0, 0, nameSize), e.path, target);
        break;
      }
      case 'char':
        push(header(ino++, CPIO_MODE.S_IFCHR | (e.perm ?? 0o600), 1, 0, e.major, e.minor, nameSize), e.path, new Uint8Array(0));
        break;
    }
  }
  push(header(0, 0, 1, 0, 0, 0, TRAILER.length + 1), TRAILER, new Uint8Array(0));
  return Buffer.concat(parts);
}

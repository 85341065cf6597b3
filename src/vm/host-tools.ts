/**
 * The host programs `vcrypto vm` needs, each with the Debian package that provides it, and one
 * way to run them: failures become a VmError naming the package to install (never a stack trace).
 */
import { execFile } from 'node:child_process';
import { open } from 'node:fs/promises';

/** A failure the CLI prints as one line; `hint` says what to install or do. */
export class VmError extends Error {
  override readonly name = 'VmError';
  constructor(message: string, readonly hint?: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** Program -> the Debian package that ships it. */
export const HOST_PACKAGES = {
  'qemu-system-x86_64': 'qemu-system-x86',
  'apt-get': 'apt',
  'apt-cache': 'apt',
  'dpkg-deb': 'dpkg',
  gcc: 'gcc',
  xz: 'xz-utils',
  ldd: 'libc-bin',
  busybox: 'busybox-static',
} as const;

export type HostProgram = keyof typeof HOST_PACKAGES;

export interface RunResult {
  readonly stdout: string;
  readonly stderr: string;
}

/** Runs `program args` to completion; rejects with a VmError (missing program, non-zero exit). */
export function runHost(program: HostProgram, args: readonly string[], options: { cwd?: string; timeoutMs?: number; maxBuffer?: number } = {}): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    execFile(
      program,
      [...args],
      { cwd: options.cwd, timeout: options.timeoutMs ?? 600_000, maxBuffer: options.maxBuffer ?? 16 * 1024 * 1024, env: { ...process.env, LC_ALL: 'C' } },
      (err, stdout, stderr) => {
        if (!err) {
          resolve({ stdout, stderr });
          return;
        }
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') {
          reject(new VmError(`'${program}' not found`, `install the Debian package ${HOST_PACKAGES[program]} (apt-get install ${HOST_PACKAGES[program]})`, { cause: err }));
          return;
        }
        const lastLines = String(stderr).trim().split('\n').slice(-3).join(' | ');
        reject(new VmError(`${program} ${args.join(' ')} failed: ${lastLines || err.message}`, undefined, { cause: err }));
      },
    );
  });
}

/**
 * True when `path` is an ELF executable without a PT_INTERP program header, i.e. statically
 * linked (ELF-64 little-endian: e_phoff @0x20 u64, e_phentsize @0x36 u16, e_phnum @0x38 u16;
 * p_type is the first u32 of each program header; PT_INTERP = 3).
 */
export async function isStaticElf(path: string): Promise<boolean> {
  let fh;
  try {
    fh = await open(path, 'r');
  } catch {
    return false;
  }
  try {
    const ehdr = Buffer.alloc(64);
    const { bytesRead } = await fh.read(ehdr, 0, 64, 0);
    if (bytesRead < 64 || ehdr.readUInt32BE(0) !== 0x7f454c46 || ehdr[4] !== 2 || ehdr[5] !== 1) return false;
    const phoff = ehdr.readBigUInt64LE(0x20);
    const phentsize = ehdr.readUInt16LE(0x36);
    const phnum = ehdr.readUInt16LE(0x38);
    if (phentsize < 4 || phnum === 0 || phoff > 1n << 32n) return false;
    const table = Buffer.alloc(phentsize * phnum);
    const read = await fh.read(table, 0, table.length, Number(phoff));
    if (read.bytesRead < table.length) return false;
    for (let i = 0; i < phnum; i++) {
      if (table.readUInt32LE(i * phentsize) === 3) return false;
    }
    return true;
  } finally {
    await fh.close();
  }
}

/**
 * Which QEMU runs the guest, and what that version needs on its command line.
 *
 * A QEMU is a binary plus what it needs to run from where it is: the system's
 * `qemu-system-x86_64` needs nothing more; QEMU 10.0 unpacked from bookworm-backports into the
 * cache (see qemu-backports.ts) needs `-L <prefix>/usr/share/qemu`, `-audio none` and
 * QEMU_MODULE_DIR pointing at its own modules (the paths built into it are the system 7.2's).
 */
import { execFile } from 'node:child_process';
import { VmError } from './host-tools.js';

export interface QemuVersion {
  readonly major: number;
  readonly minor: number;
  readonly micro: number;
  /** The first line of `--version`, e.g. "QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)". */
  readonly text: string;
}

export interface QemuRuntime {
  readonly binary: string;
  /** Options before the machine's own (data directory, audio). */
  readonly extraArgs: readonly string[];
  /** Environment added for QEMU only. */
  readonly env: Readonly<Record<string, string>>;
  readonly version: QemuVersion;
}

/** Parses the first line of `qemu-system-x86_64 --version`; undefined when it is not QEMU's. */
export function parseQemuVersion(output: string): QemuVersion | undefined {
  const line = output.split('\n').find((l) => l.trim() !== '')?.trim() ?? '';
  const m = /^QEMU emulator version (\d+)\.(\d+)(?:\.(\d+))?/.exec(line);
  if (m === null) return undefined;
  return { major: Number(m[1]), minor: Number(m[2]), micro: Number(m[3] ?? 0), text: line };
}

/** "7.2.22" */
export function formatQemuVersion(v: QemuVersion): string {
  return `${v.major}.${v.minor}.${v.micro}`;
}

/**
 * The first QEMU release whose virtio-pci has the guard that keeps a vhost-user device with MSI-X
 * from using an irqfd that was never set up: upstream commit a8e63ff289 ("virtio-pci: Fix the use
 * of an uninitialized irqfd", hw/virtio/virtio-pci.c), merged for 9.1.0-rc3 and so first released
 * in 9.1.0 (the stable 8.2.7 took it too; we keep every 8.x on vectors=0, untested there).
 * Observed: QEMU 7.2 under TCG segfaults at the guest's DRIVER_OK with a vhost-user crypto device
 * and MSI-X; QEMU 10.0 runs it with MSI-X. The releases between were not run (not bisected).
 */
export const VHOST_USER_MSIX_FIXED_IN = { major: 9, minor: 1 } as const;

/**
 * True when a vhost-user virtio-crypto-pci device must be given `vectors=0` (INTx) on this QEMU;
 * an unknown version gets vectors=0 (it works on every QEMU, only slower).
 */
export function vhostUserNeedsVectorsZero(version: QemuVersion | undefined): boolean {
  if (version === undefined) return true;
  const { major, minor } = VHOST_USER_MSIX_FIXED_IN;
  return version.major < major || (version.major === major && version.minor < minor);
}

/** Runs `binary --version` (with `env` added) and parses it; a VmError when that fails. */
export function probeQemuVersion(binary: string, env: Readonly<Record<string, string>> = {}): Promise<QemuVersion> {
  return new Promise((resolve, reject) => {
    execFile(binary, ['--version'], { timeout: 30_000, env: { ...process.env, ...env, LC_ALL: 'C' } }, (err, stdout, stderr) => {
      if (err) {
        const code = (err as NodeJS.ErrnoException).code;
        if (code === 'ENOENT') {
          reject(new VmError(`'${binary}' not found`, 'install the Debian package qemu-system-x86 (apt-get install qemu-system-x86), or name a QEMU with --qemu', { cause: err }));
          return;
        }
        const detail = String(stderr).trim().split('\n').slice(-2).join(' | ');
        reject(new VmError(`'${binary} --version' failed: ${detail || err.message}`, undefined, { cause: err }));
        return;
      }
      const version = parseQemuVersion(String(stdout));
      if (version === undefined) {
        reject(new VmError(`'${binary} --version' printed no QEMU version: ${JSON.stringify(String(stdout).slice(0, 80))}`));
        return;
      }
      resolve(version);
    });
  });
}

/** The system's QEMU (or `binary`), as it runs: no extra options. */
export async function systemQemu(binary = 'qemu-system-x86_64'): Promise<QemuRuntime> {
  return { binary, extraArgs: [], env: {}, version: await probeQemuVersion(binary) };
}

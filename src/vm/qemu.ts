/**
 * Boots the guest image on stock `qemu-system-x86_64` under TCG and reports the guest's result.
 *
 * Back-ends for the virtio-crypto-pci device:
 *   builtin     QEMU's own `cryptodev-backend-builtin` (with MSI-X as users run it, or vectors=0)
 *   vhost-user  our `vcrypto device` over a Unix socket: guest RAM must be a shared memfd, and
 *               `vectors=0` where the QEMU needs it — QEMU 7.2 segfaults at DRIVER_OK under TCG
 *               when the vhost-user crypto device uses MSI-X (docs/qemu-vhost-user-crypto.md §1);
 *               QEMU 10.0 does not (qemu-version.ts: vhostUserNeedsVectorsZero).
 * Always `-accel tcg`: KVM hangs guests on the target machines.
 */
import { spawn } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConsoleReader, type ConsoleEvent } from './console.js';
import { VmError } from './host-tools.js';
import type { QemuRuntime } from './qemu-version.js';

export const QEMU_BINARY = 'qemu-system-x86_64';

export type CryptoBackend =
  | { readonly kind: 'builtin'; readonly msix: boolean }
  /** msix: MSI-X interrupts (default false: vectors=0, which every QEMU runs; see the header). */
  | { readonly kind: 'vhost-user'; readonly socketPath: string; readonly msix?: boolean };

export interface GuestConfig {
  readonly kernel: string;
  readonly initrd: string;
  readonly backend: CryptoBackend;
  /** Shell command run by the guest's /init (default: /bin/probe). */
  readonly command?: string;
  readonly memoryMiB?: number;
  readonly cpus?: number;
  /** Kernel console log level (4 = warnings and worse; 7 for a verbose boot). */
  readonly logLevel?: number;
  /**
   * User-space driver mode: the guest hands the device to vfio-pci (behind a virtual Intel IOMMU:
   * q35, intel-iommu, iommu_platform=on) or uio_pci_generic (no IOMMU), and runs our driver.
   */
  readonly pci?: 'vfio' | 'uio';
  /** With `pci`: start `vcrypto driver` at boot (default true). */
  readonly driverService?: boolean;
  /** Share the host's root read-only (9p tag hostroot) so the guest runs this Node and package. */
  readonly hostRoot?: { readonly node: string; readonly packageRoot: string };
  /** A host folder shared read-write at /share in the guest. */
  readonly share?: string;
  /** TCP ports forwarded from the host's 127.0.0.1 to the guest (QEMU user networking). */
  readonly forwards?: readonly { readonly hostPort: number; readonly guestPort: number }[];
  /** The command's stderr on a second serial port (ttyS1), apart from stdout (see runGuest). */
  readonly separateStderr?: boolean;
  /**
   * Multi-threaded TCG: each vCPU on its own host thread, apart from QEMU's main loop. Needed when
   * guest code polls a device QEMU emulates in its main loop (the builtin back-end): under
   * single-threaded TCG a spinning vCPU starves the device it waits for.
   */
  readonly mttcg?: boolean;
  /** With `separateStderr`: the Unix socket ttyS1 connects to (runGuest listens on it). */
  readonly stderrSocket?: string;
}

/** x86 COMMAND_LINE_SIZE is 2048 bytes; the base64 command must fit beside the other options. */
export const MAX_GUEST_COMMAND_BYTES = 1200;

/** A host path safe to put on the kernel command line (no spaces, quotes or control characters). */
function cmdlinePath(what: string, path: string): string {
  if (!/^\/[\w@%+=:,./-]*$/.test(path)) throw new RangeError(`${what} path ${JSON.stringify(path)} cannot travel on the kernel command line`);
  return path;
}

export function kernelCommandLine(config: Omit<GuestConfig, 'kernel' | 'initrd' | 'backend'>): string {
  const parts = ['console=ttyS0', `loglevel=${config.logLevel ?? 4}`, 'panic=-1', 'rdinit=/init'];
  if (config.pci !== undefined) {
    parts.push(`vcrypto.pci=${config.pci}`);
    if (config.pci === 'vfio') parts.push('intel_iommu=on');
    if (config.driverService === false) parts.push('vcrypto.driver=0');
  }
  if (config.hostRoot !== undefined) {
    parts.push(`vcrypto.node=${cmdlinePath('node', config.hostRoot.node)}`, `vcrypto.pkg=${cmdlinePath('package', config.hostRoot.packageRoot.replace(/\/+$/, ''))}`);
  }
  if (config.share !== undefined) parts.push('vcrypto.share=1');
  if (config.forwards !== undefined && config.forwards.length > 0) parts.push('vcrypto.net=1');
  if (config.separateStderr) parts.push('vcrypto.stderr=1');
  if (config.command !== undefined) {
    const bytes = Buffer.from(config.command, 'utf8');
    if (bytes.length === 0 || bytes.length > MAX_GUEST_COMMAND_BYTES) {
      throw new RangeError(`guest command must be 1-${MAX_GUEST_COMMAND_BYTES} bytes (kernel command line limit)`);
    }
    // base64 keeps spaces and quotes out of the kernel's own parameter parsing; /init decodes it.
    parts.push(`vcrypto.cmd=${bytes.toString('base64')}`);
  }
  return parts.join(' ');
}

export function buildQemuArgs(config: GuestConfig): string[] {
  const mem = config.memoryMiB ?? 512;
  const args = [
    '-accel', config.mttcg ? 'tcg,thread=multi' : 'tcg',
    '-cpu', 'max',
    '-smp', String(config.cpus ?? 1),
    '-m', `${mem}M`,
    '-nodefaults',
    '-display', 'none',
    '-serial', 'stdio',
    '-monitor', 'none',
    '-no-reboot',
    '-kernel', config.kernel,
    '-initrd', config.initrd,
    '-append', kernelCommandLine(config),
  ];
  const b = config.backend;
  const iommu = config.pci === 'vfio';
  if (iommu) {
    // VFIO needs an IOMMU in the guest: q35 + a virtual Intel IOMMU, created before the devices it
    // translates for; intremap=off keeps TCG simple (vfio_iommu_type1 allow_unsafe_interrupts=1).
    args.push('-machine', 'q35', '-device', 'intel-iommu,intremap=off');
  }
  const platform = iommu ? ',iommu_platform=on' : '';
  if (config.hostRoot !== undefined) {
    args.push('-virtfs', 'local,path=/,mount_tag=hostroot,security_model=none,readonly=on');
  }
  if (config.share !== undefined) {
    if (config.share.includes(',')) throw new RangeError(`share path must not contain ',' (QEMU option syntax): ${config.share}`);
    args.push('-virtfs', `local,path=${config.share},mount_tag=share,security_model=none`);
  }
  if (config.forwards !== undefined && config.forwards.length > 0) {
    const fwd = config.forwards.map((f) => `,hostfwd=tcp:127.0.0.1:${f.hostPort}-:${f.guestPort}`).join('');
    args.push('-netdev', `user,id=n0${fwd}`, '-device', 'virtio-net-pci,netdev=n0');
  }
  if (config.separateStderr) {
    // ttyS1 -> a Unix socket runGuest listens on: the command's stderr, apart from stdout.
    if (config.stderrSocket === undefined || config.stderrSocket.includes(',')) throw new RangeError('separateStderr needs a stderrSocket path without commas');
    args.push('-chardev', `socket,id=gerr,path=${config.stderrSocket}`, '-device', 'isa-serial,chardev=gerr');
  }
  if (b.kind === 'builtin') {
    args.push('-object', 'cryptodev-backend-builtin,id=cd0');
    args.push('-device', `virtio-crypto-pci,id=crypto0,cryptodev=cd0${b.msix ? '' : ',vectors=0'}${platform}`);
  } else {
    const vu = vhostUserQemuArgs({ socketPath: b.socketPath, memory: `${mem}M`, msix: b.msix ?? false });
    vu[vu.length - 1] += platform; // the -device value
    args.push(...vu);
  }
  return args;
}

/**
 * The flags that attach a virtio-crypto-pci device served by a vhost-user back-end at `socketPath`
 * (`vcrypto device --print-qemu-args` prints them with `-m`): guest RAM as a shareable memfd of
 * `memory` (QEMU size syntax, e.g. 512M; the back-end maps it), the chardev, the cryptodev, and the
 * device with `vectors=0` unless `msix` (see the header comment).
 */
export function vhostUserQemuArgs(o: { readonly socketPath: string; readonly memory: string; readonly msix: boolean; readonly queues?: number }): string[] {
  if (/[,\s]/.test(o.socketPath)) throw new RangeError(`socket path must not contain ',' or spaces (QEMU option syntax): ${o.socketPath}`);
  const queues = o.queues ?? 1;
  return [
    '-object', `memory-backend-memfd,id=mem,size=${o.memory},share=on`,
    '-machine', 'memory-backend=mem',
    '-chardev', `socket,id=c0,path=${o.socketPath}`,
    '-object', `cryptodev-vhost-user,id=cd0,chardev=c0${queues > 1 ? `,queues=${queues}` : ''}`,
    '-device', `virtio-crypto-pci,id=crypto0,cryptodev=cd0${o.msix ? '' : ',vectors=0'}`,
  ];
}

export interface GuestResult {
  /** The guest command's exit status, or undefined when the guest never reported one. */
  readonly exitCode: number | undefined;
  /** Lines the command printed (between the markers). */
  readonly output: readonly string[];
  /** The last console lines (boot log included), for diagnostics. */
  readonly consoleTail: readonly string[];
  readonly qemuExit: { readonly code: number | null; readonly signal: NodeJS.Signals | null };
  readonly qemuStderr: string;
  readonly timedOut: boolean;
  readonly seconds: number;
}

export interface RunOptions {
  readonly timeoutMs: number;
  readonly onEvent?: (event: ConsoleEvent) => void;
  /** Aborting kills QEMU (e.g. our device process died). */
  readonly signal?: AbortSignal;
  /** The guest command's stderr (with `separateStderr`), as it arrives. */
  readonly onStderr?: (text: string) => void;
  /** The QEMU to run (default: qemu-system-x86_64 on PATH, no extra options). */
  readonly qemu?: Pick<QemuRuntime, 'binary' | 'extraArgs' | 'env'>;
}

const TAIL_LINES = 60;

/** Boots QEMU with `config`; resolves when QEMU has exited (killed on timeout or abort). */
export async function runGuest(config: GuestConfig, options: RunOptions): Promise<GuestResult> {
  if (!config.separateStderr) return runQemu(config, options);
  // The guest's stderr arrives on a Unix socket QEMU connects to (ttyS1).
  const dir = await mkdtemp(join(tmpdir(), 'vcrypto-qemu-'));
  const path = join(dir, 'stderr.sock');
  const server = createServer((socket) => {
    socket.setEncoding('utf8');
    socket.on('data', (text: string) => options.onStderr?.(text));
    socket.on('error', () => undefined);
  });
  try {
    await new Promise<void>((resolveListen, rejectListen) => {
      server.once('error', rejectListen);
      server.listen(path, () => resolveListen());
    });
    return await runQemu({ ...config, stderrSocket: path }, options);
  } finally {
    server.close();
    await rm(dir, { recursive: true, force: true });
  }
}

function runQemu(config: GuestConfig, options: RunOptions): Promise<GuestResult> {
  const args = [...(options.qemu?.extraArgs ?? []), ...buildQemuArgs(config)];
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const binary = options.qemu?.binary ?? QEMU_BINARY;
    const env = options.qemu?.env !== undefined && Object.keys(options.qemu.env).length > 0 ? { ...process.env, ...options.qemu.env } : process.env;
    const child = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'], env });
    const reader = new ConsoleReader();
    const output: string[] = [];
    const tail: string[] = [];
    let exitCode: number | undefined;
    let stderr = '';
    let timedOut = false;
    let spawnError: Error | undefined;

    const handle = (events: ConsoleEvent[]) => {
      for (const e of events) {
        if (e.kind === 'output') output.push(e.line);
        if (e.kind === 'exit') exitCode = e.code;
        if (e.kind === 'boot' || e.kind === 'output') {
          tail.push(e.line);
          if (tail.length > TAIL_LINES) tail.shift();
        }
        options.onEvent?.(e);
      }
    };
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => handle(reader.push(chunk)));
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (chunk: string) => {
      if (stderr.length < 64 * 1024) stderr += chunk;
    });

    const kill = () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    };
    const timer = setTimeout(() => {
      timedOut = true;
      kill();
    }, options.timeoutMs);
    const onAbort = () => kill();
    options.signal?.addEventListener('abort', onAbort, { once: true });

    child.on('error', (err: NodeJS.ErrnoException) => {
      spawnError = err.code === 'ENOENT'
        ? new VmError(`'${binary}' not found`, 'install the Debian package qemu-system-x86 (apt-get install qemu-system-x86)', { cause: err })
        : new VmError(`cannot start ${binary}: ${err.message}`, undefined, { cause: err });
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      if (spawnError) {
        reject(spawnError);
        return;
      }
      handle(reader.end());
      resolve({
        exitCode,
        output,
        consoleTail: tail,
        qemuExit: { code, signal },
        qemuStderr: stderr,
        timedOut,
        seconds: Number(process.hrtime.bigint() - started) / 1e9,
      });
    });
  });
}

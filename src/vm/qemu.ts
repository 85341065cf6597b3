/**
 * Boots the guest image on stock `qemu-system-x86_64` under TCG and reports the guest's result.
 *
 * Back-ends for the virtio-crypto-pci device:
 *   builtin     QEMU's own `cryptodev-backend-builtin` (with MSI-X as users run it, or vectors=0)
 *   vhost-user  our `vcrypto device` over a Unix socket: guest RAM must be a shared memfd, and
 *               `vectors=0` is required — QEMU 7.2 segfaults at DRIVER_OK under TCG when the
 *               vhost-user crypto device uses MSI-X (docs/qemu-vhost-user-crypto.md §1).
 * Always `-accel tcg`: KVM hangs guests on the target machines.
 */
import { spawn } from 'node:child_process';
import { ConsoleReader, type ConsoleEvent } from './console.js';
import { VmError } from './host-tools.js';

export const QEMU_BINARY = 'qemu-system-x86_64';

export type CryptoBackend =
  | { readonly kind: 'builtin'; readonly msix: boolean }
  | { readonly kind: 'vhost-user'; readonly socketPath: string };

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
}

/** x86 COMMAND_LINE_SIZE is 2048 bytes; the base64 command must fit beside the other options. */
export const MAX_GUEST_COMMAND_BYTES = 1200;

export function kernelCommandLine(config: Pick<GuestConfig, 'command' | 'logLevel'>): string {
  const parts = ['console=ttyS0', `loglevel=${config.logLevel ?? 4}`, 'panic=-1', 'rdinit=/init'];
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
    '-accel', 'tcg',
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
  if (b.kind === 'builtin') {
    args.push('-object', 'cryptodev-backend-builtin,id=cd0');
    args.push('-device', `virtio-crypto-pci,id=crypto0,cryptodev=cd0${b.msix ? '' : ',vectors=0'}`);
  } else {
    if (b.socketPath.includes(',')) throw new RangeError(`socket path must not contain ',' (QEMU option syntax): ${b.socketPath}`);
    // vhost-user: the back-end maps guest RAM, so it must be a shareable memfd.
    args.push('-object', `memory-backend-memfd,id=mem,size=${mem}M,share=on`, '-machine', 'memory-backend=mem');
    args.push('-chardev', `socket,id=c0,path=${b.socketPath}`);
    args.push('-object', 'cryptodev-vhost-user,id=cd0,chardev=c0');
    // vectors=0: see the header comment (QEMU 7.2 TCG + MSI-X + vhost-user segfault).
    args.push('-device', 'virtio-crypto-pci,id=crypto0,cryptodev=cd0,vectors=0');
  }
  return args;
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
}

const TAIL_LINES = 60;

/** Boots QEMU with `config`; resolves when QEMU has exited (killed on timeout or abort). */
export function runGuest(config: GuestConfig, options: RunOptions): Promise<GuestResult> {
  const args = buildQemuArgs(config);
  const started = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const child = spawn(QEMU_BINARY, args, { stdio: ['ignore', 'pipe', 'pipe'] });
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
        ? new VmError(`'${QEMU_BINARY}' not found`, 'install the Debian package qemu-system-x86 (apt-get install qemu-system-x86)', { cause: err })
        : new VmError(`cannot start ${QEMU_BINARY}: ${err.message}`, undefined, { cause: err });
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

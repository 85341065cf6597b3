/**
 * One guest run end to end: the cached image, our device process when the back-end is ours and
 * no socket was given (started in a private temporary directory, stopped afterwards), and QEMU.
 * Everything started here is stopped here, on success and on failure.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { ConsoleEvent } from './console.js';
import { startDevice, type DeviceProcess } from './device-process.js';
import type { GuestImage } from './guest-image.js';
import { runGuest, type CryptoBackend, type GuestConfig, type GuestResult } from './qemu.js';
import { vhostUserNeedsVectorsZero, type QemuRuntime } from './qemu-version.js';

export type BackendChoice =
  | { readonly kind: 'builtin'; readonly msix: boolean }
  /**
   * Ours: `socketPath` names a running `vcrypto device`; absent -> we start one, with `deviceArgs`
   * added to its command line.
   */
  | { readonly kind: 'ours'; readonly socketPath?: string; readonly deviceArgs?: readonly string[] };

export interface SessionOptions {
  readonly image: GuestImage;
  readonly backend: BackendChoice;
  readonly command?: string;
  readonly timeoutMs: number;
  readonly logLevel?: number;
  /** Guest vCPUs (default 1). */
  readonly cpus?: number;
  readonly onEvent?: (event: ConsoleEvent) => void;
  readonly onDeviceOutput?: (text: string) => void;
  readonly log?: (line: string) => void;
  /** Aborting kills QEMU (and then our device): for SIGINT/SIGTERM of the CLI. */
  readonly signal?: AbortSignal;
  /** The guest-side options of qemu.ts (user-space driver mode, host tree, share, forwards, stderr). */
  readonly guest?: Pick<GuestConfig, 'pci' | 'driverService' | 'hostRoot' | 'share' | 'forwards' | 'separateStderr' | 'memoryMiB' | 'mttcg'>;
  readonly onStderr?: (text: string) => void;
  /**
   * The QEMU to run (default: qemu-system-x86_64 on PATH, version unknown). Its version decides
   * whether our vhost-user device gets MSI-X or vectors=0 (qemu-version.ts).
   */
  readonly qemu?: QemuRuntime;
}

export interface SessionResult extends GuestResult {
  /** Output of the device process we started (empty for builtin or --socket). */
  readonly deviceLog: string;
  /** Set when our device process exited while the guest was running. */
  readonly deviceExit?: { readonly code: number | null; readonly signal: NodeJS.Signals | null };
  /** CPU seconds our device process used while the guest command ran (between the markers). */
  readonly deviceCpuSeconds?: number;
  /**
   * Our device's CPU seconds since the command began, sampled when each output line arrived
   * (aligned with `output`; empty without our device process).
   */
  readonly outputDeviceCpu: readonly number[];
}

export async function runGuestSession(options: SessionOptions): Promise<SessionResult> {
  const { image, backend } = options;
  let device: DeviceProcess | undefined;
  let tempDir: string | undefined;
  try {
    let qemuBackend: CryptoBackend;
    const vhostUserMsix = !vhostUserNeedsVectorsZero(options.qemu?.version);
    if (backend.kind === 'builtin') {
      qemuBackend = { kind: 'builtin', msix: backend.msix };
    } else if (backend.socketPath !== undefined) {
      qemuBackend = { kind: 'vhost-user', socketPath: backend.socketPath, msix: vhostUserMsix };
    } else {
      tempDir = await mkdtemp(join(tmpdir(), 'vcrypto-vm-'));
      const socketPath = join(tempDir, 'vc.sock');
      options.log?.(`vm: starting 'vcrypto device --socket ${socketPath}'`);
      device = await startDevice(socketPath, { onOutput: options.onDeviceOutput, extraArgs: backend.deviceArgs ?? [] });
      qemuBackend = { kind: 'vhost-user', socketPath, msix: vhostUserMsix };
    }
    const abort = new AbortController();
    if (options.signal?.aborted) abort.abort();
    options.signal?.addEventListener('abort', () => abort.abort(), { once: true });
    let deviceExit: SessionResult['deviceExit'];
    void device?.exited.then((exit) => {
      if (!abort.signal.aborted) {
        // Our device died mid-run: the guest would hang on its requests, so stop QEMU now.
        deviceExit = exit;
        abort.abort();
      }
    });
    let cpuAtBegin: number | undefined;
    let cpuAtExit: number | undefined;
    const outputDeviceCpu: number[] = [];
    const onEvent = (event: ConsoleEvent) => {
      if (event.kind === 'begin') cpuAtBegin = device?.cpuSeconds();
      if (event.kind === 'exit') cpuAtExit = device?.cpuSeconds();
      if (event.kind === 'output' && cpuAtBegin !== undefined) {
        const now = device?.cpuSeconds();
        if (now !== undefined) outputDeviceCpu.push(now - cpuAtBegin);
      }
      options.onEvent?.(event);
    };
    const result = await runGuest(
      { kernel: image.kernel, initrd: image.initrd, backend: qemuBackend, command: options.command, logLevel: options.logLevel, cpus: options.cpus, ...options.guest },
      { timeoutMs: options.timeoutMs, onEvent, signal: abort.signal, onStderr: options.onStderr, qemu: options.qemu },
    );
    // QEMU is gone: our device exiting now is expected, not a failure.
    const exitDuringRun = deviceExit;
    abort.abort();
    return { ...result, deviceLog: device?.log() ?? '', deviceExit: exitDuringRun, deviceCpuSeconds: cpuAtBegin !== undefined && cpuAtExit !== undefined ? cpuAtExit - cpuAtBegin : undefined, outputDeviceCpu };
  } finally {
    await device?.stop();
    if (tempDir !== undefined) await rm(tempDir, { recursive: true, force: true });
  }
}

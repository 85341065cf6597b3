/**
 * Starts our back-end, `vcrypto device --socket PATH`, as a child process for `vcrypto vm`, and
 * waits until its socket exists (QEMU is the vhost-user client: it refuses to start when nothing
 * listens). We watch the directory rather than connecting: a probe connection would be taken by
 * the device as its front-end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, watch } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { VmError } from './host-tools.js';
import { PACKAGE_ROOT } from './guest-image.js';

/** The built CLI entry: beside this file in dist/, or the package's dist/ when run from source. */
export function cliEntryPath(): string {
  const beside = fileURLToPath(new URL('../cli/main.js', import.meta.url));
  return existsSync(beside) ? beside : join(PACKAGE_ROOT, 'dist', 'cli', 'main.js');
}

export interface DeviceProcess {
  readonly pid: number | undefined;
  /** Everything the device printed (stdout and stderr), capped. */
  log(): string;
  /** Resolves when the process exits (by itself or after stop()). */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

const LOG_CAP = 256 * 1024;

export async function startDevice(socketPath: string, options: { readyTimeoutMs?: number; extraArgs?: readonly string[]; onOutput?: (text: string) => void } = {}): Promise<DeviceProcess> {
  const entry = cliEntryPath();
  if (!existsSync(entry)) throw new VmError(`cannot start 'vcrypto device': ${entry} does not exist`, 'run `npm run build` first');
  const child: ChildProcess = spawn(process.execPath, [entry, 'device', '--socket', socketPath, ...(options.extraArgs ?? [])], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let log = '';
  const collect = (chunk: Buffer) => {
    const text = chunk.toString('utf8');
    if (log.length < LOG_CAP) log += text;
    options.onOutput?.(text);
  };
  child.stdout?.on('data', collect);
  child.stderr?.on('data', collect);
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal }));
    child.on('error', () => resolve({ code: null, signal: null }));
  });
  const stop = async (graceMs = 3000): Promise<void> => {
    if (child.exitCode !== null || child.signalCode !== null) {
      await exited;
      return;
    }
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };
  const handle: DeviceProcess = { pid: child.pid, log: () => log, exited, stop };

  // Wait for the socket to appear, the process to exit, or the deadline.
  const dir = dirname(socketPath);
  const name = basename(socketPath);
  const watcher = watch(dir);
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new VmError(`'vcrypto device' did not create ${socketPath} within ${(options.readyTimeoutMs ?? 15000) / 1000} s`)), options.readyTimeoutMs ?? 15000);
      const done = (err?: Error) => {
        clearTimeout(timer);
        if (err) reject(err);
        else resolve();
      };
      watcher.on('change', (_event, file) => {
        if (String(file) === name && existsSync(socketPath)) done();
      });
      watcher.on('error', (err) => done(err));
      void exited.then(({ code, signal }) => done(new VmError(`'vcrypto device' exited (${signal ?? `code ${code}`}) before listening: ${log.trim().split('\n').slice(-3).join(' | ')}`)));
      if (existsSync(socketPath)) done();
    });
  } catch (err) {
    watcher.close();
    await stop(500);
    throw err;
  } finally {
    watcher.close();
  }
  return handle;
}

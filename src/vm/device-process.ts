/**
 * Starts our back-end, `vcrypto device --socket PATH`, as a child process for `vcrypto vm`, and
 * waits until its socket exists (QEMU is the vhost-user client: it refuses to start when nothing
 * listens). We watch the directory rather than connecting: a probe connection would be taken by
 * the device as its front-end.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, watch, type FSWatcher } from 'node:fs';
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
  /** CPU seconds (user + system, all threads) used so far; undefined once it has exited. */
  cpuSeconds(): number | undefined;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves once the process is gone. */
  stop(graceMs?: number): Promise<void>;
}

const LOG_CAP = 256 * 1024;

export async function startDevice(socketPath: string, options: { readyTimeoutMs?: number; extraArgs?: readonly string[]; onOutput?: (text: string) => void } = {}): Promise<DeviceProcess> {
  const entry = cliEntryPath();
  if (!existsSync(entry)) throw new VmError(`cannot start 'vcrypto device': ${entry} does not exist`, 'run `npm run build` first');
  // Watch before spawning, so the socket's creation cannot be missed (and a bad directory fails here).
  const dir = dirname(socketPath);
  const name = basename(socketPath);
  let watcher: FSWatcher;
  try {
    watcher = watch(dir);
  } catch (err) {
    throw new VmError(`cannot watch ${dir} for the device socket: ${(err as Error).message}`, undefined, { cause: err });
  }
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
  const handle: DeviceProcess = { pid: child.pid, log: () => log, exited, stop, cpuSeconds: () => (child.pid === undefined ? undefined : processCpuSeconds(child.pid)) };

  // Wait for the socket to appear, the process to exit, or the deadline.
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
    await stop(500);
    throw err;
  } finally {
    watcher.close();
  }
  return handle;
}

/** USER_HZ: /proc reports times in units of 1/100 s on Linux (proc(5)). */
const USER_HZ = 100;

/**
 * utime + stime of process `pid` from /proc/<pid>/stat (fields 14 and 15, counted after the
 * parenthesised command name, which may itself contain spaces and parentheses).
 */
export function processCpuSeconds(pid: number): number | undefined {
  let stat: string;
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  return parseProcStatCpuSeconds(stat);
}

export function parseProcStatCpuSeconds(stat: string): number | undefined {
  const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  // rest[0] is field 3 (state): utime is field 14 -> rest[11], stime field 15 -> rest[12].
  const utime = Number(rest[11]);
  const stime = Number(rest[12]);
  if (!Number.isFinite(utime) || !Number.isFinite(stime)) return undefined;
  return (utime + stime) / USER_HZ;
}

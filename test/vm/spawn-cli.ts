/**
 * Runs the built CLI (`node dist/cli/main.js ...`) for the vm tests, collecting its output.
 * On the deadline the CLI gets SIGTERM (so `vcrypto vm` stops its QEMU and device), then SIGKILL.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

export const REPO_ROOT = fileURLToPath(new URL('../../', import.meta.url));
export const CLI_MAIN = fileURLToPath(new URL('../../dist/cli/main.js', import.meta.url));

export interface CliRun {
  readonly child: ChildProcess;
  /** Resolves when the process has exited and its output is fully read. */
  readonly done: Promise<{ code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string; timedOut: boolean }>;
  /** SIGTERM, then SIGKILL after `graceMs` if still running; resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
}

export function runVcrypto(args: readonly string[], { timeoutMs, env }: { timeoutMs: number; env?: NodeJS.ProcessEnv }): CliRun {
  const child = spawn(process.execPath, [CLI_MAIN, ...args], { cwd: REPO_ROOT, env: env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let timedOut = false;
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => {
    child.on('close', (code, signal) => resolve({ code, signal }));
  });
  const stop = async (graceMs = 20_000) => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    await exited;
    clearTimeout(timer);
  };
  const timer = setTimeout(() => {
    timedOut = true;
    void stop();
  }, timeoutMs);
  const done = exited.then((exit) => {
    clearTimeout(timer);
    return { ...exit, stdout, stderr, timedOut };
  });
  return { child, done, stop };
}

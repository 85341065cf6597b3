/**
 * Is there a CPU to spare for polling? Polling (the driver spinning on its used rings, a device
 * thread on its avail rings) only pays while the thread it waits for has a CPU of its own: on a
 * busy machine the poller takes the CPU from the very thread that would produce the work. Linux
 * says how many threads are runnable right now (the 4th field of /proc/loadavg, "running/total",
 * counting the caller); polling is allowed while that is at most the number of CPUs. The file is
 * read at most every RECHECK_MS, and only when a poller asks (an idle process reads nothing).
 * Elsewhere (no /proc/loadavg) the 1-minute load average stands in.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism, loadavg } from 'node:os';

/** The answer is re-read at most this often. */
export const RECHECK_MS = 10;

export interface SpareCpuSource {
  /** Milliseconds, monotonic. */
  readonly now: () => number;
  /** Threads runnable now (or NaN if unknown). */
  readonly runnable: () => number;
  readonly cpus: number;
}

/** The number of runnable threads from /proc/loadavg ("0.52 0.58 0.59 3/512 12345"), NaN if absent. */
export function runnableFromLoadavg(text: string): number {
  const m = /^\S+ \S+ \S+ (\d+)\/\d+ /.exec(text);
  return m ? Number(m[1]) : NaN;
}

function readRunnable(): number {
  try {
    return runnableFromLoadavg(readFileSync('/proc/loadavg', 'latin1'));
  } catch {
    return loadavg()[0]!;
  }
}

/**
 * When pollers may spend a CPU: `auto` (default) while one is spare (SpareCpu), `always` (a
 * machine whose CPUs are reserved for this), `never` (sleep and wake only). Env VCRYPTO_POLL.
 */
export const POLL_MODE = { AUTO: 'auto', ALWAYS: 'always', NEVER: 'never' } as const;
export type PollMode = (typeof POLL_MODE)[keyof typeof POLL_MODE];
export const POLL_MODE_ENV = 'VCRYPTO_POLL';

/** VCRYPTO_POLL's mode, undefined if unset; a RangeError naming the accepted values if malformed. */
export function pollModeFromEnv(env: NodeJS.ProcessEnv = process.env): PollMode | undefined {
  const raw = env[POLL_MODE_ENV];
  if (raw === undefined || raw === '') return undefined;
  const modes: readonly string[] = Object.values(POLL_MODE);
  if (!modes.includes(raw)) throw new RangeError(`${POLL_MODE_ENV}=${JSON.stringify(raw.slice(0, 20))}: expected ${modes.join(', ')}`);
  return raw as PollMode;
}

/** The `cpuSpare` test for a mode (never: polling is turned off by its caller, this says no too). */
export function cpuSpareFor(mode: PollMode): () => boolean {
  if (mode === POLL_MODE.ALWAYS) return () => true;
  if (mode === POLL_MODE.NEVER) return () => false;
  return new SpareCpu().spare;
}

/**
 * A transport's `completionSpin` (VirtioTransport): the driver's spin window bounded by `boundMicros`,
 * none under `never`, gated by the mode's `cpuSpare` test. The mode defaults to VCRYPTO_POLL, else auto.
 */
export function completionSpinFor(
  boundMicros: number,
  mode: PollMode = pollModeFromEnv() ?? POLL_MODE.AUTO,
): { readonly boundMicros: number; readonly cpuSpare: () => boolean } {
  return { boundMicros: mode === POLL_MODE.NEVER ? 0 : boundMicros, cpuSpare: cpuSpareFor(mode) };
}

export class SpareCpu {
  readonly #source: SpareCpuSource;
  #checkedAt = -Infinity;
  #spare = true;

  constructor(source: SpareCpuSource = { now: () => performance.now(), runnable: readRunnable, cpus: availableParallelism() }) {
    this.#source = source;
  }

  /** True while the runnable threads (this one included) do not outnumber the CPUs. */
  readonly spare = (): boolean => {
    const now = this.#source.now();
    if (now - this.#checkedAt >= RECHECK_MS) {
      this.#checkedAt = now;
      const n = this.#source.runnable();
      this.#spare = !(n > this.#source.cpus);
    }
    return this.#spare;
  };
}

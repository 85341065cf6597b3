/**
 * `npm run bench:guest` (`vcrypto vm --bench-guest`): AES-128-CBC ops/s inside a TCG guest, our
 * user-space PCI driver (depth 1 and depth 32, `vcrypto bench --device pci`) against the Linux kernel
 * driver through AF_ALG (the guest probe's bench: one process, one request at a time), on QEMU's
 * builtin device and on ours (`vcrypto device`, vhost-user), in one run. Boots are interleaved per
 * round (builtin-kernel, builtin-ours, ours-kernel, ours-ours) so host load hits all alike; every boot
 * uses the same QEMU acceleration (multi-threaded TCG) and the kernel runs in its best case (no
 * IOMMU, MSI-X for builtin). The table shows medians over rounds.
 *
 * Our driver is measured twice in one boot: cold (a fresh Node process's first seconds, what a short
 * program like test-crypto sees) and warm (after `warmupSeconds` of the same requests, not counted:
 * what a long-running process such as the driver service or the chat server sees). Under TCG a fresh
 * Node process spends seconds compiling its request path: measured 679-900 ops/s cold against
 * 4975-6399 after 3-6 s of warm-up, in one boot. The kernel driver is C and needs no warm-up.
 */
import { parseProbeOutput } from './probe-report.js';
import type { GuestImage } from './guest-image.js';
import { runGuestSession, type BackendChoice } from './session.js';
import type { QemuRuntime } from './qemu-version.js';
import { PACKAGE_ROOT } from './guest-image.js';

export interface GuestBenchOptions {
  readonly image: GuestImage;
  readonly seconds: number;
  /** Seconds of uncounted requests before each warm measurement of our driver. */
  readonly warmupSeconds: number;
  readonly rounds: number;
  readonly size: number;
  readonly timeoutMs: number;
  readonly signal: AbortSignal;
  readonly log: (line: string) => void;
  readonly qemu?: QemuRuntime;
}

export interface GuestBenchRow {
  readonly backend: 'builtin' | 'ours';
  /** Medians of ops/s; undefined when every round failed. */
  readonly kernel?: number;
  /** Depth 1 in a fresh process (no warm-up). */
  readonly oursDepth1Cold?: number;
  readonly oursDepth1?: number;
  readonly oursDepth32?: number;
  readonly errors: readonly string[];
}

const median = (values: number[]): number | undefined => {
  if (values.length === 0) return undefined;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor((sorted.length - 1) / 2)];
};

function backendChoice(backend: 'builtin' | 'ours'): BackendChoice {
  return backend === 'builtin' ? { kind: 'builtin', msix: true } : { kind: 'ours' };
}

export async function runGuestBench(o: GuestBenchOptions): Promise<GuestBenchRow[]> {
  const samples = {
    builtin: { kernel: [] as number[], d1cold: [] as number[], d1: [] as number[], d32: [] as number[], errors: [] as string[] },
    ours: { kernel: [] as number[], d1cold: [] as number[], d1: [] as number[], d32: [] as number[], errors: [] as string[] },
  };
  for (let round = 1; round <= o.rounds; round++) {
    for (const backend of ['builtin', 'ours'] as const) {
      const s = samples[backend];
      if (o.signal.aborted) return [];
      // The kernel driver (AF_ALG), as `npm run bench:vm` measures it.
      o.log(`vm: bench-guest round ${round}/${o.rounds}: ${backend} device, Linux driver (AF_ALG)`);
      const kernel = await runGuestSession({
        image: o.image,
        backend: backendChoice(backend),
        command: `/bin/probe bench --seconds ${o.seconds} --sizes ${o.size}`,
        timeoutMs: o.timeoutMs,
        signal: o.signal,
        qemu: o.qemu,
        guest: { mttcg: true },
      });
      const report = parseProbeOutput(kernel.output);
      const k = report.bench.find((b) => b.size === o.size);
      if (kernel.exitCode === 0 && k !== undefined) s.kernel.push(k.opsPerSecond);
      else s.errors.push(`kernel run: guest exit ${kernel.exitCode ?? 'none'}${kernel.timedOut ? ' (timed out)' : ''}`);

      // Our driver in the guest, directly on the device (no service in between).
      o.log(`vm: bench-guest round ${round}/${o.rounds}: ${backend} device, our PCI driver (depth 1, 32)`);
      const ours = await runGuestSession({
        image: o.image,
        backend: backendChoice(backend),
        // Two processes: depth 1 cold, then depth 1 and 32 each after a warm-up.
        command:
          `vcrypto bench --device pci --sizes ${o.size} --depth 1 --seconds ${o.seconds} --json && ` +
          `vcrypto bench --device pci --sizes ${o.size} --depth 1,32 --seconds ${o.seconds} --warmup ${o.warmupSeconds} --json`,
        timeoutMs: o.timeoutMs,
        signal: o.signal,
        qemu: o.qemu,
        guest: {
          pci: backend === 'builtin' ? 'vfio' : 'uio',
          driverService: false,
          separateStderr: true,
          hostRoot: { node: process.execPath, packageRoot: PACKAGE_ROOT },
          memoryMiB: 1024,
          mttcg: true,
        },
      });
      const json = ours.output.filter((line) => line.startsWith('{"results"'));
      try {
        if (ours.exitCode !== 0 || json.length !== 2) throw new Error(`guest exit ${ours.exitCode ?? 'none'}${ours.timedOut ? ' (timed out)' : ''}`);
        type Results = { results: { device: string; size: number; depth: number; opsPerSec: number }[] };
        const [cold, warm] = json.map((line) => (JSON.parse(line) as Results).results);
        const at = (results: Results['results'], depth: number) => results.find((r) => r.device === 'pci' && r.size === o.size && r.depth === depth)?.opsPerSec;
        const d1cold = at(cold!, 1);
        const d1 = at(warm!, 1);
        const d32 = at(warm!, 32);
        if (d1cold === undefined || d1 === undefined || d32 === undefined) throw new Error('no pci rows in the bench output');
        s.d1cold.push(d1cold);
        s.d1.push(d1);
        s.d32.push(d32);
      } catch (err) {
        s.errors.push(`our-driver run: ${(err as Error).message}`);
      }
    }
  }
  return (['builtin', 'ours'] as const).map((backend) => {
    const s = samples[backend];
    return { backend, kernel: median(s.kernel), oursDepth1Cold: median(s.d1cold), oursDepth1: median(s.d1), oursDepth32: median(s.d32), errors: s.errors };
  });
}

export function formatGuestBench(rows: readonly GuestBenchRow[], size: number): string {
  const fmt = (v: number | undefined) => (v === undefined ? '-' : v.toFixed(0));
  const ratio = (a: number | undefined, b: number | undefined) => (a === undefined || b === undefined || b === 0 ? '-' : `${(a / b).toFixed(2)}x`);
  const header = ['device', 'size', 'kernel AF_ALG ops/s', 'ours d1 cold', 'ours d1 ops/s', 'ours d32 ops/s', 'd1 cold/kernel', 'd1/kernel', 'd32/kernel'];
  const body = rows.map((r) => [
    r.backend === 'ours' ? 'ours (vhost-user)' : 'builtin',
    `${size}`,
    fmt(r.kernel),
    fmt(r.oursDepth1Cold),
    fmt(r.oursDepth1),
    fmt(r.oursDepth32),
    ratio(r.oursDepth1Cold, r.kernel),
    ratio(r.oursDepth1, r.kernel),
    ratio(r.oursDepth32, r.kernel),
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [line(header), ...body.map(line)].join('\n');
}

/**
 * `vcrypto vm --bench` (npm run bench:vm): the same guest measures AF_ALG AES-128-CBC through
 * `virtio_crypto_aes_cbc` with QEMU's builtin back-end (with MSI-X, as users run it; and with
 * vectors=0, the interrupt mode our vhost-user device must use under TCG before QEMU 9.1) and then
 * with ours (MSI-X on QEMU 9.1+, `--qemu 10`),
 * and prints ops/s, MB/s and the ratio ours / builtin per request size.
 */
import type { BenchSample } from './probe-report.js';

export interface BenchColumn {
  readonly label: string;
  /** Samples by request size; empty when the run failed. */
  readonly samples: readonly BenchSample[];
  /** Why the run produced no numbers. */
  readonly error?: string;
}

function fmt(n: number, digits: number): string {
  return n.toFixed(digits);
}

/**
 * A plain-text table: one row per size, "ops/s  MB/s" per column, then for the last column
 * (ours) its ratio (ops/s) to each earlier column.
 */
export function formatBenchTable(columns: readonly BenchColumn[]): string {
  const sizes = [...new Set(columns.flatMap((c) => c.samples.map((s) => s.size)))].sort((a, b) => a - b);
  const ours = columns[columns.length - 1];
  const others = columns.slice(0, -1);
  const header = ['size', ...columns.map((c) => `${c.label} ops/s`), ...columns.map((c) => `${c.label} MB/s`), ...others.map((c) => `${ours?.label ?? ''}/${c.label}`)];
  const rows: string[][] = [header];
  for (const size of sizes) {
    const get = (c: BenchColumn) => c.samples.find((s) => s.size === size);
    const row = [size >= 1024 ? `${size / 1024} KiB` : `${size} B`];
    for (const c of columns) row.push(get(c) ? fmt(get(c)!.opsPerSecond, 0) : '-');
    for (const c of columns) row.push(get(c) ? fmt(get(c)!.megabytesPerSecond, 2) : '-');
    for (const c of others) {
      const a = ours ? get(ours) : undefined;
      const b = get(c);
      row.push(a && b && b.opsPerSecond > 0 ? `${fmt(a.opsPerSecond / b.opsPerSecond, 2)}x` : '-');
    }
    rows.push(row);
  }
  const widths = header.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length)));
  const lines = rows.map((r) => r.map((cell, i) => (i === 0 ? cell.padEnd(widths[i] ?? 0) : cell.padStart(widths[i] ?? 0))).join('  '));
  for (const c of columns) if (c.error) lines.push(`${c.label}: ${c.error}`);
  return lines.join('\n');
}

/** Per size, the sample with the median ops/s across runs (the lower middle for an even count). */
export function medianSamples(runs: readonly (readonly BenchSample[])[]): BenchSample[] {
  const sizes = [...new Set(runs.flatMap((r) => r.map((s) => s.size)))].sort((a, b) => a - b);
  return sizes.map((size) => {
    const all = runs.flatMap((r) => r.filter((s) => s.size === size)).sort((a, b) => a.opsPerSecond - b.opsPerSecond);
    return all[Math.floor((all.length - 1) / 2)] as BenchSample;
  });
}

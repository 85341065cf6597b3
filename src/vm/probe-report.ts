/**
 * Parses what guest/probe.c prints (one result per line):
 *   ok <name> [details]
 *   not ok <name> <reason>
 *   bench size=<B> ops=<n> seconds=<s> ops_per_s=<x> mb_per_s=<y>
 *   probe: PASS | probe: FAIL (<n> failed)
 * Other lines (kernel messages on the same console) are ignored.
 */

export interface ProbeCheck {
  readonly ok: boolean;
  /** The whole text after "ok "/"not ok " (name and details). */
  readonly text: string;
}

export interface BenchSample {
  /** Index of the line this sample came from, in the lines given to parseProbeOutput. */
  readonly line?: number;
  readonly size: number;
  readonly ops: number;
  readonly seconds: number;
  readonly opsPerSecond: number;
  readonly megabytesPerSecond: number;
}

export interface ProbeReport {
  readonly checks: readonly ProbeCheck[];
  readonly bench: readonly BenchSample[];
  /** "PASS", "FAIL", or undefined when the summary line is missing (probe crashed or cut off). */
  readonly verdict: 'PASS' | 'FAIL' | undefined;
}

const BENCH_RE = /^bench size=(\d+) ops=(\d+) seconds=([\d.]+) ops_per_s=([\d.]+) mb_per_s=([\d.]+)$/;

export function parseProbeOutput(lines: readonly string[]): ProbeReport {
  const checks: ProbeCheck[] = [];
  const bench: BenchSample[] = [];
  let verdict: ProbeReport['verdict'];
  for (const [index, raw] of lines.entries()) {
    const line = raw.trim();
    if (line.startsWith('ok ')) checks.push({ ok: true, text: line.slice(3) });
    else if (line.startsWith('not ok ')) checks.push({ ok: false, text: line.slice(7) });
    else if (line === 'probe: PASS') verdict = 'PASS';
    else if (line.startsWith('probe: FAIL')) verdict = 'FAIL';
    else {
      const m = BENCH_RE.exec(line);
      if (m) {
        bench.push({ line: index, size: Number(m[1]), ops: Number(m[2]), seconds: Number(m[3]), opsPerSecond: Number(m[4]), megabytesPerSecond: Number(m[5]) });
      }
    }
  }
  return { checks, bench, verdict };
}

/**
 * `vcrypto bench`: AES-128-CBC encryption throughput per device, request size and queue depth.
 *  - raw: a plain node:crypto loop, createCipheriv/update/final per operation (the baseline; depth 1,
 *    it is synchronous);
 *  - any device spec (host, virtio, vhost-user:PATH): through the session API with `depth` requests
 *    in flight on one handle and session.
 * Fairness: with raw listed, every device cell alternates raw and device slices of the same size, and
 * its ratio is taken against that interleaved raw rate (side by side, whatever the machine does
 * meanwhile). The raw rows report all raw slices of a size together.
 * Prints a table with the ratio to raw, or with --json exactly one JSON object. With --latency, every
 * operation is timed on its own (submission to result, performance.now()) and each row gains the
 * p50, p99 and max of those latencies, as dpdk-test-crypto-perf's latency test reports them.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { CryptoError, type CryptoDevice } from '../../driver/api.js';
import { DEVICE_OPTION_HELP, openDevice } from '../../transport/open-device.js';
import { type Command, CliError, formatHelp, parseCommandArgs, parsePositiveInt, UsageError } from '../command.js';
import { asCliError, checkDeviceSpec } from './crypto-common.js';
import { keepFreedMemory } from '../../sys/malloc.js';

export const BENCH_OP = 'aes-128-cbc-encrypt';

export interface BenchResult {
  device: string;
  op: typeof BENCH_OP;
  size: number;
  depth: number;
  opsPerSec: number;
  mbPerSec: number;
}

/** Latency percentiles of one row in microseconds (nearest rank), over `samples` operations. */
export interface LatencySummary {
  p50: number;
  p99: number;
  max: number;
  samples: number;
}

/**
 * One row of `--json`: the result, the raw rate measured in slices interleaved with it and the
 * ratios to that rate (a raw row: its own pooled rate, ratios 1; without raw in the run: null), and
 * with --latency its latency percentiles.
 */
export interface BenchJsonRow extends BenchResult {
  rawOpsPerSec: number | null;
  rawMbPerSec: number | null;
  vsRawOps: number | null;
  vsRawMb: number | null;
  latencyUs?: LatencySummary;
}

function result(device: string, size: number, depth: number, ops: number, seconds: number): BenchResult {
  const opsPerSec = ops / seconds;
  return { device, op: BENCH_OP, size, depth, opsPerSec: Math.round(opsPerSec * 10) / 10, mbPerSec: Math.round(((opsPerSec * size) / 1e6) * 100) / 100 };
}

/** Operations counted over measured seconds; slices add up. */
interface Tally {
  ops: number;
  seconds: number;
}

/** Per-operation latencies (ms, as performance.now() gives them), in a growing Float64Array. */
export class LatencyRecorder {
  #samples = new Float64Array(4096);
  #count = 0;

  add(ms: number): void {
    if (this.#count === this.#samples.length) {
      const grown = new Float64Array(this.#samples.length * 2);
      grown.set(this.#samples);
      this.#samples = grown;
    }
    this.#samples[this.#count++] = ms;
  }

  get count(): number {
    return this.#count;
  }

  /** p50, p99 and max in µs (nearest-rank percentiles: the ceil(p/100 * n)-th smallest); null when empty. */
  summary(): LatencySummary | null {
    const n = this.#count;
    if (n === 0) return null;
    const sorted = this.#samples.slice(0, n).sort();
    const rank = (p: number): number => sorted[Math.max(0, Math.ceil((p / 100) * n) - 1)]!;
    const us = (ms: number): number => Math.round(ms * 1000 * 10) / 10;
    return { p50: us(rank(50)), p99: us(rank(99)), max: us(sorted[n - 1]!), samples: n };
  }
}

/**
 * The --json row of `r`, measured side by side with `raw` (null: `r` is a raw row, or raw was not
 * in the run; `withRaw` tells which).
 */
export function jsonRow(r: BenchResult, raw: BenchResult | null, withRaw: boolean, latency: LatencySummary | null): BenchJsonRow {
  const base = r.device === 'raw' ? r : withRaw ? raw : null;
  const ratio = (a: number, b: number): number => Math.round((a / b) * 1000) / 1000;
  const row: BenchJsonRow = {
    ...r,
    rawOpsPerSec: base ? base.opsPerSec : null,
    rawMbPerSec: base ? base.mbPerSec : null,
    vsRawOps: base && base.opsPerSec > 0 ? ratio(r.opsPerSec, base.opsPerSec) : null,
    vsRawMb: base && base.mbPerSec > 0 ? ratio(r.mbPerSec, base.mbPerSec) : null,
  };
  if (latency) row.latencyUs = latency;
  return row;
}

/**
 * Measurements alternate short raw and device slices (SLICES of each per cell), so each ratio compares
 * raw and device under the same machine conditions (turbo, other load) instead of against a raw
 * baseline taken once at the start.
 */
const SLICES = 10;

/** The raw baseline for one size: a plain node:crypto loop, one operation at a time. */
class RawLoop {
  readonly #key = randomBytes(16);
  readonly #iv = randomBytes(16);
  readonly #data: Buffer;

  constructor(size: number) {
    this.#data = randomBytes(size);
  }

  /** Runs for `ms` milliseconds and adds to `t`; with `latency`, times every operation into it. */
  run(ms: number, t: Tally, latency: LatencyRecorder | null = null): void {
    let ops = 0;
    const start = performance.now();
    const deadline = start + ms;
    let now = start;
    if (latency) {
      do {
        const c = createCipheriv('aes-128-cbc', this.#key, this.#iv);
        c.setAutoPadding(false);
        c.update(this.#data);
        c.final();
        ops++;
        const done = performance.now();
        latency.add(done - now);
        now = done;
      } while (now < deadline);
      t.ops += ops;
      t.seconds += (now - start) / 1000;
      return;
    }
    do {
      // Check the clock every few ops only: the clock costs as much as a 64-byte encryption.
      for (let i = 0; i < 16; i++) {
        const c = createCipheriv('aes-128-cbc', this.#key, this.#iv);
        c.setAutoPadding(false); // sizes are whole blocks, as the session API requires for CBC
        c.update(this.#data);
        c.final();
      }
      ops += 16;
      now = performance.now();
    } while (now < deadline);
    t.ops += ops;
    t.seconds += (now - start) / 1000;
  }

  dispose(): void {
    this.#key.fill(0);
  }
}

/**
 * One device cell (size, depth) through the session API, `depth` requests in flight on one handle and
 * session; with `raw`, each device slice is preceded by a raw slice of the same length.
 */
async function benchDevice(
  device: CryptoDevice,
  size: number,
  depth: number,
  seconds: number,
  raw: RawLoop | null,
  latency: { dev: LatencyRecorder; raw: LatencyRecorder } | null,
  warmupSeconds = 0,
): Promise<{ dev: Tally; raw: Tally }> {
  const handle = await device.open();
  try {
    const key = randomBytes(16);
    const session = await handle.createSession({ kind: 'cipher', cipher: 'aes-cbc', key });
    key.fill(0);
    const iv = randomBytes(16);
    const data = new Uint8Array(randomBytes(size));
    const dev: Tally = { ops: 0, seconds: 0 };
    const rawTally: Tally = { ops: 0, seconds: 0 };
    const slices = raw ? SLICES : 1;
    const sliceMs = (seconds * 1000) / slices;
    // `depth` independent request loops until `until`: each submits its next request as soon as its
    // last completes, its result written into the loop's own array (cryptodev's crypt_op.dst), as a C
    // program would. One clock read per request either way; with --latency it also times the request.
    const rec = latency?.dev ?? null;
    const loops = (until: number, counted: boolean): Promise<void[]> =>
      Promise.all(
        Array.from({ length: depth }, async () => {
          const dst = new Uint8Array(size);
          let t0 = performance.now();
          while (t0 < until) {
            await handle.crypt(session, { op: 'encrypt', src: data, iv, dst });
            const t1 = performance.now();
            if (counted) {
              dev.ops++;
              rec?.add(t1 - t0);
            }
            t0 = t1;
          }
        }),
      );
    if (warmupSeconds > 0) {
      // Not counted: the JIT compiles the request path, the adaptive windows settle, guest memory
      // pages are touched. Under TCG a fresh Node process takes seconds to reach its steady rate.
      await loops(performance.now() + warmupSeconds * 1000, false);
      raw?.run(Math.min(warmupSeconds * 1000, 200), { ops: 0, seconds: 0 });
    }
    for (let k = 0; k < slices; k++) {
      raw?.run(sliceMs, rawTally, latency?.raw ?? null);
      const start = performance.now();
      await loops(start + sliceMs, true);
      dev.seconds += (performance.now() - start) / 1000;
    }
    await handle.closeSession(session);
    return { dev, raw: rawTally };
  } finally {
    await handle.close();
  }
}

function parseList(name: string, text: string, max: number): number[] {
  const items = text.split(',').map((s) => parsePositiveInt(name, s.trim(), max));
  return [...new Set(items)];
}

/** A result and the raw rate measured side by side with it (none for raw rows, or without raw). */
interface Row {
  result: BenchResult;
  raw: BenchResult | null;
  /** With --latency: the row's latency percentiles. */
  latency: LatencySummary | null;
}

const HEADER = ['device', 'size', 'depth', 'ops/s', 'MB/s', 'vs raw MB/s', 'vs raw ops/s'] as const;
const LATENCY_HEADER = ['p50 us', 'p99 us', 'max us'] as const;

/**
 * The table, printed a row at a time as each is measured: column widths are fixed up front from the
 * specs and sizes (the numbers get room for realistic rates). The raw rows, which pool every raw
 * slice of a size, come last.
 */
class StreamingTable {
  readonly #widths: number[];
  constructor(
    devices: readonly string[],
    sizes: readonly number[],
    depths: readonly number[],
    readonly withRaw: boolean,
    readonly withLatency: boolean,
    readonly write: (line: string) => void,
  ) {
    const longest = (xs: readonly (string | number)[]): number => Math.max(...xs.map((x) => String(x).length));
    this.#widths = [Math.max(HEADER[0].length, longest(devices)), Math.max(4, longest(sizes)), Math.max(5, longest(depths)), 9, 8, HEADER[5].length, HEADER[6].length];
    if (withLatency) this.#widths.push(9, 9, 9);
  }

  #line(cells: readonly string[]): string {
    return cells.map((x, i) => (i === 0 ? x.padEnd(this.#widths[i]!) : x.padStart(this.#widths[i]!))).join('  ');
  }

  header(): void {
    this.write(`AES-128-CBC encryption (${BENCH_OP})`);
    if (this.withRaw) this.write('(each ratio: against raw measured in slices interleaved with that device row; raw rows last)');
    this.write(this.#line(this.withLatency ? [...HEADER, ...LATENCY_HEADER] : HEADER));
  }

  row({ result: r, raw, latency }: Row): void {
    const base = r.device === 'raw' ? r : raw;
    const ratio = (a: number, b: number | undefined): string => (b ? `${(a / b).toFixed(2)}x` : '-');
    const cells = [r.device, String(r.size), String(r.depth), r.opsPerSec.toFixed(0), r.mbPerSec.toFixed(1), ratio(r.mbPerSec, base?.mbPerSec), ratio(r.opsPerSec, base?.opsPerSec)];
    if (this.withLatency) cells.push(...(latency ? [latency.p50, latency.p99, latency.max].map((x) => x.toFixed(1)) : ['-', '-', '-']));
    this.write(this.#line(cells));
  }
}

export const benchCommand: Command = {
  name: 'bench',
  summary: 'AES-128-CBC throughput: raw node:crypto vs the devices',
  help: formatHelp({
    usage: ['vcrypto bench [--device raw,host,virtio] [--sizes 64,1024,16384,65536] [--depth 1,64] [--seconds S] [--warmup S] [--latency] [--json]'],
    description: [
      'Measures AES-128-CBC encryption throughput. "raw" is a plain node:crypto loop (createCipheriv/',
      'update/final per op), the baseline; every other entry is a device spec used through the session',
      'API with DEPTH requests in flight, each loop writing its results into its own array (dst, as',
      'cryptodev\'s crypt_op.dst). The table shows the ratio to raw for the same size, raw being',
      'measured in slices interleaved with each device row (so the ratio is side by side). Each row is',
      'printed as soon as it is measured. --latency times every operation (submission to result) and',
      'adds its p50, p99 and max in microseconds to each row. Like vcrypto device, the process keeps freed',
      'memory mapped (glibc M_TRIM_THRESHOLD), for raw and the devices alike.',
    ],
    options: [
      '  --device LIST      comma-separated: raw and/or device specs (default raw,host,virtio);',
      '                     a device that cannot be opened is skipped with a warning on stderr',
      DEVICE_OPTION_HELP.split('\n').slice(1).join('\n'),
      '  --sizes LIST       request sizes in bytes, multiples of 16 (default 64,1024,16384,65536)',
      '  --depth LIST       requests in flight (default 1,64)',
      '  --seconds S        seconds per measurement (default 1; fractions allowed)',
      '  --warmup S         before each device row, run its requests for S seconds, not counted (default 0):',
      '                     lets the JIT compile the request path (a Node process in a TCG guest needs',
      '                     seconds to reach its steady rate)',
      '  --latency          time each operation: p50, p99 and max latency (us) per row',
      '  --json             print {"results":[{device,op,size,depth,opsPerSec,mbPerSec,rawOpsPerSec,rawMbPerSec,',
      '                     vsRawOps,vsRawMb[,latencyUs:{p50,p99,max,samples}]}],"deviceStats":{...}} only, at',
      '                     the end: raw* is the raw rate interleaved with that row, vsRaw* the ratios (null',
      "                     without raw); deviceStats: the embedded device's counters, see vcrypto stats",
    ],
    exitCodes: [[1, 'no device could be opened, or a measurement failed']],
    examples: ['vcrypto bench', 'vcrypto bench --device raw,virtio,vhost-user:./vc.sock --sizes 4096,65536 --depth 64', 'vcrypto bench --device raw,virtio --sizes 64 --depth 1 --latency'],
  }),

  async run(argv) {
    const { values } = parseCommandArgs(argv, {
      device: { type: 'string' },
      sizes: { type: 'string' },
      depth: { type: 'string' },
      seconds: { type: 'string' },
      warmup: { type: 'string' },
      json: { type: 'boolean' },
      latency: { type: 'boolean' },
    });
    const devices = [...new Set((values.device ?? 'raw,host,virtio').split(',').map((s) => s.trim()))];
    for (const d of devices) if (d !== 'raw') checkDeviceSpec(d);
    const sizes = parseList('--sizes', values.sizes ?? '64,1024,16384,65536', 1 << 24);
    for (const s of sizes) if (s % 16 !== 0) throw new UsageError(`invalid --sizes entry ${s}: AES-CBC needs a multiple of 16`);
    const depths = parseList('--depth', values.depth ?? '1,64', 4096);
    const secondsText = values.seconds ?? '1';
    const seconds = Number(secondsText);
    if (!/^\d*\.?\d+$/.test(secondsText) || !(seconds > 0) || seconds > 3600) throw new UsageError(`invalid --seconds '${secondsText}': expected a number of seconds > 0`);
    const warmupText = values.warmup ?? '0';
    const warmup = Number(warmupText);
    if (!/^\d*\.?\d+$/.test(warmupText) || !(warmup >= 0) || warmup > 3600) throw new UsageError(`invalid --warmup '${warmupText}': expected a number of seconds >= 0`);

    // A data path, as `vcrypto device` is: freed 64 KiB result buffers stay mapped instead of being
    // faulted in again for the next request (src/sys/malloc.ts). Process-wide: raw gains as much.
    keepFreedMemory();
    const withRaw = devices.includes('raw');
    const rawLoops = new Map(withRaw ? sizes.map((size) => [size, new RawLoop(size)] as const) : []);
    const rawTotals = new Map(sizes.map((size) => [size, { ops: 0, seconds: 0 } as Tally]));
    const withLatency = values.latency === true;
    /** With --latency: every raw operation of a size, pooled like rawTotals. */
    const rawLatency = new Map(withLatency ? sizes.map((size) => [size, new LatencyRecorder()] as const) : []);
    const rows = new Map<string, Row[]>();
    const table = values.json ? null : new StreamingTable(devices, sizes, depths, withRaw, withLatency, (line) => void process.stdout.write(`${line}\n`));
    table?.header();
    let skipped = 0;
    /** The embedded device's statistics after its rows (device-stats.ts names), for --json. */
    const deviceStats: Record<string, unknown> = {};
    try {
      for (const spec of devices) {
        if (spec === 'raw') continue;
        let device: CryptoDevice;
        try {
          device = await openDevice(spec);
        } catch (err) {
          if (!(err instanceof CryptoError)) throw err;
          process.stderr.write(`vcrypto bench: warning: skipping device '${spec}': ${err.message}\n`);
          skipped++;
          continue;
        }
        const list: Row[] = [];
        rows.set(spec, list);
        try {
          for (const size of sizes) {
            for (const depth of depths) {
              const latency = withLatency ? { dev: new LatencyRecorder(), raw: rawLatency.get(size)! } : null;
              const m = await benchDevice(device, size, depth, seconds, rawLoops.get(size) ?? null, latency, warmup);
              const total = rawTotals.get(size)!;
              total.ops += m.raw.ops;
              total.seconds += m.raw.seconds;
              const row: Row = {
                result: result(spec, size, depth, m.dev.ops, m.dev.seconds),
                raw: withRaw ? result('raw', size, 1, m.raw.ops, m.raw.seconds) : null,
                latency: latency?.dev.summary() ?? null,
              };
              list.push(row);
              table?.row(row);
            }
          }
        } catch (err) {
          throw asCliError(err);
        } finally {
          if (spec === 'virtio') deviceStats[spec] = (await import('../../transport/in-process/create-in-process-device.js')).embeddedDeviceStatistics(device);
          await device.close();
        }
      }
      if (withRaw) {
        // The raw rows: every raw slice of that size together (measured alone when no device ran).
        rows.set(
          'raw',
          sizes.map((size) => {
            const total = rawTotals.get(size)!;
            const latency = rawLatency.get(size) ?? null;
            if (total.ops === 0) rawLoops.get(size)!.run(seconds * 1000, total, latency);
            return { result: result('raw', size, 1, total.ops, total.seconds), raw: null, latency: latency?.summary() ?? null };
          }),
        );
      }
    } finally {
      for (const loop of rawLoops.values()) loop.dispose();
    }
    for (const r of rows.get('raw') ?? []) table?.row(r);
    if (values.json) {
      const ordered = devices.flatMap((spec) => rows.get(spec) ?? []);
      process.stdout.write(JSON.stringify({ results: ordered.map((r) => jsonRow(r.result, r.raw, withRaw, r.latency)), deviceStats }) + '\n');
    }
    const measured = devices.filter((d) => d !== 'raw').length - skipped;
    if (measured === 0 && !withRaw) throw new CliError('no device could be opened');
    return skipped > 0 && measured === 0 ? 1 : 0;
  },
};

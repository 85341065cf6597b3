/**
 * `vcrypto stats --metrics URL [--watch]`: the statistics of a running `vcrypto device
 * --metrics-listen ...` as a table (one row per statistic; columns: the device since start, then
 * each live connection with its front-end's pid), read from its Prometheus endpoint; `--watch`
 * redraws it every interval with per-second rates of the device totals.
 */
import { type Command, UsageError, CliError, formatHelp, parseCommandArgs } from '../command.js';
import { STAT_DEFINITIONS } from '../../device/device-stats.js';
import { metricName } from '../../transport/vhost-user/backend-metrics.js';

const help = formatHelp({
  usage: ['vcrypto stats --metrics URL [--watch] [--interval S]'],
  description: [
    "Show the statistics of a running 'vcrypto device --metrics-listen HOST:PORT': requests and bytes per",
    'operation (sym-encrypt-ops, sym-encrypt-bytes, ... as QEMU 8.0 names them; hash, mac, aead), errors',
    'per virtio-crypto status, sessions, malformed chains, kicks, interrupts, requests found by polling,',
    'throttle waits. Columns: the device since it started (closed connections included), then each live',
    "connection (its front-end's pid from SO_PEERCRED).",
  ],
  options: [
    "  --metrics URL      the device's metrics endpoint, e.g. http://127.0.0.1:9464/metrics",
    '  --watch            redraw every interval until interrupted, with per-second rates of the totals',
    '  --interval S       seconds between redraws with --watch (default 2; fractions allowed)',
  ],
  exitCodes: [[1, 'the metrics endpoint could not be read or parsed']],
  examples: [
    'vcrypto device --socket ./vc.sock --metrics-listen 127.0.0.1:9464 &',
    'vcrypto stats --metrics http://127.0.0.1:9464/metrics --watch',
  ],
});

/** One sample of Prometheus text exposition: name, labels, value. */
export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

/** Parses Prometheus text format 0.0.4 samples (comments and timestamps ignored). */
export function parsePrometheusText(text: string): Sample[] {
  const out: Sample[] = [];
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)(?:\s+-?\d+)?$/.exec(line);
    if (m === null) continue;
    const labels: Record<string, string> = {};
    const re = /([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)",?/g;
    for (let l = re.exec(m[2] ?? ''); l !== null; l = re.exec(m[2] ?? '')) {
      labels[l[1]!] = l[2]!.replace(/\\n/g, '\n').replace(/\\(.)/g, '$1');
    }
    const v = m[3]!;
    out.push({ name: m[1]!, labels, value: v === '+Inf' ? Infinity : v === '-Inf' ? -Infinity : Number(v) });
  }
  return out;
}

/** The table's data: per statistic, the device total and each connection's value. */
export interface StatsTable {
  readonly connections: readonly { readonly id: string; readonly pid: string }[];
  readonly rows: readonly { readonly stat: string; readonly device: number; readonly perConnection: readonly number[] }[];
}

export function statsTable(samples: readonly Sample[]): StatsTable {
  const connIds = new Map<string, string>();
  for (const s of samples) if (s.labels.connection !== undefined) connIds.set(s.labels.connection, s.labels.pid ?? '');
  const connections = [...connIds.entries()].sort((a, b) => Number(a[0]) - Number(b[0])).map(([id, pid]) => ({ id, pid }));
  const byName = new Map<string, Sample[]>();
  for (const s of samples) byName.set(s.name, [...(byName.get(s.name) ?? []), s]);
  const rows = STAT_DEFINITIONS.map((d) => {
    const device = byName.get(metricName(d.name, false, d.type))?.[0]?.value ?? NaN;
    const per = byName.get(metricName(d.name, true, d.type)) ?? [];
    return { stat: d.name, device, perConnection: connections.map((c) => per.find((s) => s.labels.connection === c.id)?.value ?? 0) };
  });
  return { connections, rows };
}

function fmt(v: number): string {
  if (Number.isNaN(v)) return '-';
  return Number.isInteger(v) ? String(v) : v.toFixed(3);
}

/** Renders the table; `rates` (per second, per row) adds a column. */
export function renderTable(t: StatsTable, rates?: readonly number[]): string {
  const header = ['statistic', 'device', ...(rates ? ['device/s'] : []), ...t.connections.map((c) => `conn ${c.id}${c.pid ? ` pid ${c.pid}` : ''}`)];
  const body = t.rows.map((r, i) => [r.stat, fmt(r.device), ...(rates ? [Number.isNaN(rates[i]!) ? '-' : rates[i]!.toFixed(1)] : []), ...r.perConnection.map(fmt)]);
  const widths = header.map((h, c) => Math.max(h.length, ...body.map((row) => row[c]!.length)));
  const line = (cells: string[]) => cells.map((cell, c) => (c === 0 ? cell.padEnd(widths[c]!) : cell.padStart(widths[c]!))).join('  ');
  return [line(header), ...body.map(line)].join('\n') + '\n';
}

async function scrape(url: string): Promise<StatsTable> {
  let text: string;
  try {
    const res = await fetch(url, { signal: AbortSignal.timeout(5000) });
    if (res.status !== 200) throw new Error(`HTTP ${res.status}`);
    text = await res.text();
  } catch (err) {
    throw new CliError(`cannot read ${url}: ${(err as Error).message}`);
  }
  const table = statsTable(parsePrometheusText(text));
  if (table.rows.every((r) => Number.isNaN(r.device))) throw new CliError(`${url} has no vcrypto device metrics (is it 'vcrypto device --metrics-listen'?)`);
  return table;
}

export const statsCommand: Command = {
  name: 'stats',
  summary: "show a running device's statistics (from vcrypto device --metrics-listen)",
  help,
  async run(argv) {
    const { values } = parseCommandArgs(argv, {
      metrics: { type: 'string' },
      watch: { type: 'boolean' },
      interval: { type: 'string' },
    });
    if (values.metrics === undefined) throw new UsageError('--metrics URL is required');
    let url: URL;
    try {
      url = new URL(values.metrics);
    } catch {
      throw new UsageError(`invalid --metrics '${values.metrics}': expected a URL such as http://127.0.0.1:9464/metrics`);
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`invalid --metrics '${values.metrics}': expected an http(s) URL`);
    const interval = values.interval === undefined ? 2 : Number(values.interval);
    if (!/^\d+(\.\d+)?$/.test(values.interval ?? '2') || !(interval > 0)) throw new UsageError(`invalid --interval '${values.interval}': expected seconds > 0`);
    if (values.interval !== undefined && !values.watch) throw new UsageError('--interval only applies to --watch');
    if (!values.watch) {
      process.stdout.write(renderTable(await scrape(url.href)));
      return 0;
    }
    let stop = false;
    let wake: () => void = () => undefined;
    const onSignal = () => {
      stop = true;
      wake();
    };
    process.once('SIGINT', onSignal);
    process.once('SIGTERM', onSignal);
    try {
      let previous: { at: number; table: StatsTable } | undefined;
      while (!stop) {
        const table = await scrape(url.href);
        const at = performance.now();
        // Rates of counters only (a gauge's change per second means little).
        const rates = table.rows.map((r, i) =>
          STAT_DEFINITIONS[i]!.type === 'gauge' ? NaN : previous === undefined ? 0 : (r.device - previous.table.rows[i]!.device) / ((at - previous.at) / 1000),
        );
        previous = { at, table };
        // Clear the screen and home the cursor, then the table (a plain redraw when not a TTY).
        const clear = process.stdout.isTTY ? '\x1b[H\x1b[2J' : '';
        process.stdout.write(`${clear}${new Date().toISOString()}  ${url.href}  (every ${interval} s; Ctrl-C to stop)\n${renderTable(table, rates)}`);
        await new Promise<void>((resolve) => {
          const timer = setTimeout(resolve, interval * 1000);
          wake = () => {
            clearTimeout(timer);
            resolve();
          };
        });
      }
    } finally {
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    }
    return 0;
  },
};

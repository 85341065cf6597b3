/**
 * `vcrypto bench`: AES-128-CBC encryption throughput per device, request size and queue depth.
 *  - raw: a plain node:crypto loop, createCipheriv/update/final per operation (the baseline; depth 1,
 *    it is synchronous);
 *  - any device spec (host, virtio, vhost-user:PATH): through the session API with `depth` requests
 *    in flight on one handle and session.
 * Prints a table with the ratio to raw, or with --json exactly one JSON object.
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { CryptoError, type CryptoDevice } from '../../driver/api.js';
import { DEVICE_OPTION_HELP, openDevice } from '../../transport/open-device.js';
import { type Command, parseCommandArgs, parsePositiveInt, UsageError } from '../command.js';
import { asCliError, checkDeviceSpec } from './crypto-common.js';

export const BENCH_OP = 'aes-128-cbc-encrypt';

export interface BenchResult {
  device: string;
  op: typeof BENCH_OP;
  size: number;
  depth: number;
  opsPerSec: number;
  mbPerSec: number;
}

function result(device: string, size: number, depth: number, ops: number, seconds: number): BenchResult {
  const opsPerSec = ops / seconds;
  return { device, op: BENCH_OP, size, depth, opsPerSec: Math.round(opsPerSec * 10) / 10, mbPerSec: Math.round(((opsPerSec * size) / 1e6) * 100) / 100 };
}

function benchRaw(size: number, seconds: number): BenchResult {
  const key = randomBytes(16);
  const iv = randomBytes(16);
  const data = randomBytes(size);
  let ops = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  let now = start;
  do {
    // Check the clock every few ops only: the clock costs as much as a 64-byte encryption.
    for (let i = 0; i < 16; i++) {
      const c = createCipheriv('aes-128-cbc', key, iv);
      c.setAutoPadding(false); // sizes are whole blocks, as the session API requires for CBC
      c.update(data);
      c.final();
    }
    ops += 16;
    now = performance.now();
  } while (now < deadline);
  key.fill(0);
  return result('raw', size, 1, ops, (now - start) / 1000);
}

async function benchDevice(spec: string, device: CryptoDevice, size: number, depth: number, seconds: number): Promise<BenchResult> {
  const handle = await device.open();
  try {
    const key = randomBytes(16);
    const session = await handle.createSession({ kind: 'cipher', cipher: 'aes-cbc', key });
    key.fill(0);
    const iv = randomBytes(16);
    const data = new Uint8Array(randomBytes(size));
    let ops = 0;
    const start = performance.now();
    const deadline = start + seconds * 1000;
    // `depth` independent request loops: each submits its next request as soon as its last completes.
    const loop = async (): Promise<void> => {
      while (performance.now() < deadline) {
        await handle.crypt(session, { op: 'encrypt', src: data, iv });
        ops++;
      }
    };
    await Promise.all(Array.from({ length: depth }, loop));
    const elapsed = (performance.now() - start) / 1000;
    await handle.closeSession(session);
    return result(spec, size, depth, ops, elapsed);
  } finally {
    await handle.close();
  }
}

function parseList(name: string, text: string, max: number): number[] {
  const items = text.split(',').map((s) => parsePositiveInt(name, s.trim(), max));
  return [...new Set(items)];
}

function formatTable(results: readonly BenchResult[]): string {
  const raw = new Map(results.filter((r) => r.device === 'raw').map((r) => [r.size, r]));
  const header = ['device', 'size', 'depth', 'ops/s', 'MB/s', 'vs raw MB/s', 'vs raw ops/s'];
  const rows = results.map((r) => {
    const base = raw.get(r.size);
    const ratio = (a: number, b: number | undefined): string => (b ? `${(a / b).toFixed(2)}x` : '-');
    return [r.device, String(r.size), String(r.depth), r.opsPerSec.toFixed(0), r.mbPerSec.toFixed(1), ratio(r.mbPerSec, base?.mbPerSec), ratio(r.opsPerSec, base?.opsPerSec)];
  });
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i]!.length)));
  const line = (cells: string[]): string => cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [`AES-128-CBC encryption (${BENCH_OP})`, line(header), ...rows.map(line)].join('\n');
}

export const benchCommand: Command = {
  name: 'bench',
  summary: 'AES-128-CBC throughput: raw node:crypto vs the devices',
  help: [
    'Usage: vcrypto bench [--device raw,host,virtio] [--sizes 64,1024,16384,65536] [--depth 1,64] [--seconds S] [--json]',
    '',
    'Measures AES-128-CBC encryption throughput. "raw" is a plain node:crypto loop (createCipheriv/',
    'update/final per op), the baseline; every other entry is a device spec used through the session',
    'API with DEPTH requests in flight. The table shows the ratio to raw for the same size.',
    '',
    'Options:',
    '  --device LIST    comma-separated: raw and/or device specs (default raw,host,virtio);',
    '                   a device this build cannot open is skipped with a warning',
    DEVICE_OPTION_HELP.split('\n').slice(1).join('\n'),
    '  --sizes LIST     request sizes in bytes, multiples of 16 (default 64,1024,16384,65536)',
    '  --depth LIST     requests in flight (default 1,64)',
    '  --seconds S      seconds per measurement (default 1; fractions allowed)',
    '  --json           print {"results":[{device,op,size,depth,opsPerSec,mbPerSec}]} only',
  ].join('\n'),
  async run(argv) {
    const { values } = parseCommandArgs(argv, {
      device: { type: 'string' },
      sizes: { type: 'string' },
      depth: { type: 'string' },
      seconds: { type: 'string' },
      json: { type: 'boolean' },
    });
    const devices = [...new Set((values.device ?? 'raw,host,virtio').split(',').map((s) => s.trim()))];
    for (const d of devices) if (d !== 'raw') checkDeviceSpec(d);
    const sizes = parseList('--sizes', values.sizes ?? '64,1024,16384,65536', 1 << 24);
    for (const s of sizes) if (s % 16 !== 0) throw new UsageError(`invalid --sizes entry ${s}: AES-CBC needs a multiple of 16`);
    const depths = parseList('--depth', values.depth ?? '1,64', 4096);
    const secondsText = values.seconds ?? '1';
    const seconds = Number(secondsText);
    if (!/^\d*\.?\d+$/.test(secondsText) || !(seconds > 0) || seconds > 3600) throw new UsageError(`invalid --seconds '${secondsText}': expected a number of seconds > 0`);

    const results: BenchResult[] = [];
    for (const spec of devices) {
      if (spec === 'raw') {
        for (const size of sizes) results.push(benchRaw(size, seconds));
        continue;
      }
      let device: CryptoDevice;
      try {
        device = await openDevice(spec);
      } catch (err) {
        if (err instanceof CryptoError && err.code === 'ENOTSUP') {
          process.stderr.write(`warning: skipping device '${spec}': ${err.message}\n`);
          continue;
        }
        throw asCliError(err);
      }
      try {
        for (const size of sizes) {
          for (const depth of depths) results.push(await benchDevice(spec, device, size, depth, seconds));
        }
      } catch (err) {
        throw asCliError(err);
      } finally {
        await device.close();
      }
    }
    process.stdout.write(values.json ? JSON.stringify({ results }) + '\n' : formatTable(results) + '\n');
    return 0;
  },
};

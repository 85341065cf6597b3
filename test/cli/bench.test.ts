/**
 * `vcrypto bench --latency` and the --json rows' interleaved raw figures and ratios: the
 * percentile arithmetic against values worked out by hand, and the command's output against its
 * own rates (a row's mean latency at depth 1 is 1/ops-rate, so its max cannot be below it).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { LatencyRecorder, jsonRow, type BenchResult, type BenchJsonRow } from '../../src/cli/commands/bench.js';
import { runCli } from '../fixtures/cli.js';

test('LatencyRecorder: nearest-rank p50/p99/max in microseconds', () => {
  const empty = new LatencyRecorder();
  assert.equal(empty.summary(), null);

  // 1..100 ms, added out of order: the ceil(0.5*100)=50th and ceil(0.99*100)=99th smallest.
  const r = new LatencyRecorder();
  for (let i = 100; i >= 1; i--) r.add(i);
  assert.deepEqual(r.summary(), { p50: 50_000, p99: 99_000, max: 100_000, samples: 100 });

  // Three samples: p50 = the 2nd smallest (ceil 1.5), p99 = the 3rd (ceil 2.97).
  const small = new LatencyRecorder();
  for (const ms of [0.003, 0.001, 0.002]) small.add(ms);
  assert.deepEqual(small.summary(), { p50: 2, p99: 3, max: 3, samples: 3 });

  // Past the first buffer (4096 samples): 10,000 samples, 9,900 of 0.01 ms and 100 of 1 ms;
  // p99 = the 9,900th smallest (0.01 ms = 10 us), the max 1 ms.
  const grown = new LatencyRecorder();
  for (let i = 0; i < 10_000; i++) grown.add(i % 100 === 0 ? 1 : 0.01);
  assert.deepEqual(grown.summary(), { p50: 10, p99: 10, max: 1000, samples: 10_000 });
});

test('jsonRow: the interleaved raw rate and the ratios; raw rows are their own base; null without raw', () => {
  const dev: BenchResult = { device: 'virtio', op: 'aes-128-cbc-encrypt', size: 64, depth: 1, opsPerSec: 50_000, mbPerSec: 3.2 };
  const raw: BenchResult = { device: 'raw', op: 'aes-128-cbc-encrypt', size: 64, depth: 1, opsPerSec: 200_000, mbPerSec: 12.8 };
  assert.deepEqual(jsonRow(dev, raw, true, null), { ...dev, rawOpsPerSec: 200_000, rawMbPerSec: 12.8, vsRawOps: 0.25, vsRawMb: 0.25 });
  assert.deepEqual(jsonRow(raw, null, true, null), { ...raw, rawOpsPerSec: 200_000, rawMbPerSec: 12.8, vsRawOps: 1, vsRawMb: 1 });
  assert.deepEqual(jsonRow(dev, null, false, { p50: 1, p99: 2, max: 3, samples: 4 }), {
    ...dev,
    rawOpsPerSec: null,
    rawMbPerSec: null,
    vsRawOps: null,
    vsRawMb: null,
    latencyUs: { p50: 1, p99: 2, max: 3, samples: 4 },
  });
});

test('bench --latency --json: every row carries its raw rate, ratios and latency percentiles', async () => {
  const r = await runCli(['bench', '--device', 'raw,virtio', '--sizes', '64,1024', '--depth', '1,4', '--seconds', '0.1', '--latency', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const { results } = JSON.parse(r.stdout.toString()) as { results: BenchJsonRow[] };
  assert.deepEqual(
    results.map(({ device, size, depth }) => `${device}/${size}/${depth}`),
    ['raw/64/1', 'raw/1024/1', 'virtio/64/1', 'virtio/64/4', 'virtio/1024/1', 'virtio/1024/4'],
  );
  for (const row of results) {
    assert.deepEqual(Object.keys(row).sort(), ['depth', 'device', 'latencyUs', 'mbPerSec', 'op', 'opsPerSec', 'rawMbPerSec', 'rawOpsPerSec', 'size', 'vsRawMb', 'vsRawOps']);
    assert.ok(row.rawOpsPerSec !== null && row.rawOpsPerSec > 0 && row.vsRawOps !== null && row.vsRawMb !== null);
    assert.ok(Math.abs(row.vsRawOps - row.opsPerSec / row.rawOpsPerSec) < 0.001 + row.vsRawOps * 1e-3, JSON.stringify(row));
    assert.ok(Math.abs(row.vsRawMb - row.mbPerSec / row.rawMbPerSec!) < 0.002 + row.vsRawMb * 1e-2, JSON.stringify(row));
    const lat = row.latencyUs!;
    assert.ok(lat.samples > 0 && lat.p50 > 0 && lat.p50 <= lat.p99 && lat.p99 <= lat.max, JSON.stringify(lat));
    // One operation at a time: latencies add up to the measured time, so their mean is 1/rate and
    // the largest cannot be below it (rounding: 0.1 us).
    if (row.depth === 1) assert.ok(lat.max + 0.1 >= 1e6 / row.opsPerSec, JSON.stringify(row));
  }
  const raw64 = results.find((x) => x.device === 'raw' && x.size === 64)!;
  assert.equal(raw64.vsRawOps, 1);
});

test('bench --latency table: three latency columns; without raw, --json ratios are null', async () => {
  const table = await runCli(['bench', '--device', 'raw,host', '--sizes', '64', '--depth', '2', '--seconds', '0.05', '--latency']);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout.toString(), /^device\s+size\s+depth\s+ops\/s\s+MB\/s\s+vs raw MB\/s\s+vs raw ops\/s\s+p50 us\s+p99 us\s+max us$/m);
  assert.match(table.stdout.toString(), /^host\s+64\s+2\s+\d+\s+[\d.]+\s+[\d.]+x\s+[\d.]+x\s+[\d.]+\s+[\d.]+\s+[\d.]+$/m);
  assert.match(table.stdout.toString(), /^raw\s+64\s+1\s+\d+\s+[\d.]+\s+1\.00x\s+1\.00x\s+[\d.]+\s+[\d.]+\s+[\d.]+$/m);
  const json = await runCli(['bench', '--device', 'host', '--sizes', '64', '--depth', '1', '--seconds', '0.05', '--json']);
  assert.equal(json.code, 0, json.stderr);
  const { results } = JSON.parse(json.stdout.toString()) as { results: BenchJsonRow[] };
  assert.equal(results.length, 1);
  assert.deepEqual([results[0]!.rawOpsPerSec, results[0]!.rawMbPerSec, results[0]!.vsRawOps, results[0]!.vsRawMb], [null, null, null, null]);
  assert.equal(results[0]!.latencyUs, undefined);
});

test('bench --warmup: the warm-up requests reach the device but are not counted; a bad value exits 2', async () => {
  // The embedded device counts every encryption it does (deviceStats), the bench only the timed ones:
  // ops counted = opsPerSec x the measured seconds (about --seconds).
  const run = async (warmup: string): Promise<{ counted: number; done: number }> => {
    const { code, stdout, stderr } = await runCli(['bench', '--device', 'virtio', '--sizes', '64', '--depth', '1', '--seconds', '0.2', '--warmup', warmup, '--json']);
    assert.equal(code, 0, stderr);
    const out = JSON.parse(stdout.toString()) as { results: BenchJsonRow[]; deviceStats: { virtio: Record<string, number> } };
    return { counted: out.results[0]!.opsPerSec * 0.2, done: out.deviceStats.virtio['sym-encrypt-ops']! };
  };
  const cold = await run('0');
  assert.ok(cold.done <= cold.counted * 1.05 + 2, `without warm-up the device did ${cold.done} encryptions for ${cold.counted} counted`);
  const warm = await run('0.3');
  assert.ok(warm.done > warm.counted * 1.3, `with 0.3 s of warm-up the device did only ${warm.done} encryptions for ${warm.counted} counted`);

  const bad = await runCli(['bench', '--warmup', '-1']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /invalid --warmup '-1'/);
});

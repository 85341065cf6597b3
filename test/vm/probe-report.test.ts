/** Parsing the probe's output and formatting the bench table (ratios computed by hand). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parseProbeOutput } from '../../src/vm/probe-report.js';
import { formatBenchTable, medianSamples } from '../../src/vm/bench.js';

test('checks, verdict and bench samples; kernel noise ignored', () => {
  const r = parseProbeOutput([
    'ok selftest driver=virtio_crypto_aes_cbc name=cbc(aes) selftest=passed',
    '[    3.1] virtio_crypto: something',
    'not ok forks 1 of 4 processes failed',
    'bench size=4096 ops=5368 seconds=1.005 ops_per_s=5342.2 mb_per_s=21.882',
    'probe: FAIL (1 failed)',
  ]);
  assert.deepEqual(r.checks, [
    { ok: true, text: 'selftest driver=virtio_crypto_aes_cbc name=cbc(aes) selftest=passed' },
    { ok: false, text: 'forks 1 of 4 processes failed' },
  ]);
  assert.deepEqual(r.bench, [{ line: 3, size: 4096, ops: 5368, seconds: 1.005, opsPerSecond: 5342.2, megabytesPerSecond: 21.882 }]);
  assert.equal(r.verdict, 'FAIL');
  assert.equal(parseProbeOutput(['ok x']).verdict, undefined);
});

test('bench table: one row per size, ours/builtin ratio of ops/s, errors listed', () => {
  const s = (size: number, ops: number) => ({ size, ops, seconds: 1, opsPerSecond: ops, megabytesPerSecond: (ops * size) / 1e6 });
  const table = formatBenchTable([
    { label: 'builtin', samples: [s(16, 4000), s(4096, 2000)] },
    { label: 'ours', samples: [s(16, 5000), s(4096, 3000)] },
  ]);
  const lines = table.split('\n');
  assert.equal(lines.length, 3);
  assert.match(lines[0]!, /^size +builtin ops\/s +ours ops\/s +builtin MB\/s +ours MB\/s +ours\/builtin$/);
  assert.match(lines[1]!, /^16 B +4000 +5000 +0\.06 +0\.08 +1\.25x$/);
  assert.match(lines[2]!, /^4 KiB +2000 +3000 +8\.19 +12\.29 +1\.50x$/);
  const failed = formatBenchTable([{ label: 'builtin', samples: [s(16, 10)] }, { label: 'ours', samples: [], error: 'device exited' }]);
  assert.match(failed, /^16 B +10 +- +0\.00 +- +-$/m);
  assert.match(failed, /^ours: device exited$/m);
});

test('medianSamples: per size, the run with the median ops/s (lower middle when even)', () => {
  const s = (size: number, ops: number) => ({ size, ops, seconds: 1, opsPerSecond: ops, megabytesPerSecond: (ops * size) / 1e6 });
  const runs = [[s(16, 300), s(4096, 10)], [s(16, 100), s(4096, 30)], [s(16, 200)]];
  assert.deepEqual(medianSamples(runs), [s(16, 200), s(4096, 10)]);
  assert.deepEqual(medianSamples([]), []);
});

test('bench-guest table: cold and warm depth-1 columns, ratios to AF_ALG by hand, "-" for a failed cell', async () => {
  const { formatGuestBench } = await import('../../src/vm/guest-bench.js');
  const table = formatGuestBench(
    [
      { backend: 'builtin', kernel: 5000, oursDepth1Cold: 1000, oursDepth1: 4500, oursDepth32: 15000, errors: [] },
      { backend: 'ours', kernel: 4000, errors: ['our-driver run: guest exit 1'] },
    ],
    4096,
  );
  const lines = table.split('\n');
  assert.equal(lines.length, 3);
  assert.match(lines[0]!, /kernel AF_ALG ops\/s\s+ours d1 cold\s+ours d1 ops\/s\s+ours d32 ops\/s\s+d1 cold\/kernel\s+d1\/kernel\s+d32\/kernel/);
  // 1000/5000 = 0.20x, 4500/5000 = 0.90x, 15000/5000 = 3.00x.
  assert.deepEqual(lines[1]!.trim().split(/\s+/), ['builtin', '4096', '5000', '1000', '4500', '15000', '0.20x', '0.90x', '3.00x']);
  assert.deepEqual(lines[2]!.trim().split(/\s+/), ['ours', '(vhost-user)', '4096', '4000', '-', '-', '-', '-', '-', '-']);
});

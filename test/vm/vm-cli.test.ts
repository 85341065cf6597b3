/**
 * `vcrypto vm` without booting: usage errors (exit 2) and a clear one-line error naming the
 * Debian package when a host program is missing (never a stack trace).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runVcrypto } from './spawn-cli.js';
import { VmError } from '../../src/vm/host-tools.js';
import { runGuest } from '../../src/vm/qemu.js';

test('bad options are usage errors (exit 2) before anything is built or booted', async () => {
  const cases: [string[], RegExp][] = [
    [['--backend', 'kvm'], /invalid --backend 'kvm'/],
    [['--backend', 'builtin', '--socket', '/tmp/x.sock'], /--socket needs --backend ours/],
    [['--msix', 'on'], /--msix on is only for --backend builtin/],
    [['--msix', 'maybe', '--backend', 'builtin'], /invalid --msix/],
    [['--cmd', 'true', '--probe-args=--forks 2'], /exclude each other/],
    [['--timeout', '0'], /invalid --timeout/],
    [['--cmd', 'x'.repeat(5000)], /guest command must be 1-\d+ bytes/],
    [['--bench', '--backend', 'ours'], /--bench runs builtin and ours itself/],
    [['--bench', '--sizes', '16,17'], /invalid --sizes entry '17'/],
    [['--seconds', '2'], /--bench options/],
  ];
  const results = await Promise.all(cases.map(([args]) => runVcrypto(['vm', ...args], { timeoutMs: 30_000 }).done));
  results.forEach((r, i) => {
    const [args, re] = cases[i]!;
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr.split('\n')[0]!, re);
  });
});

test('--socket naming nothing: one line saying to start vcrypto device, exit 1', async () => {
  const r = await runVcrypto(['vm', '--socket', join(tmpdir(), `vcrypto-none-${process.pid}.sock`)], { timeoutMs: 30_000 }).done;
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /^vcrypto vm: no socket at .*: start 'vcrypto device --socket /);
});

test('no apt on PATH: one line naming the package, exit 1, no stack trace', async (t) => {
  const empty = mkdtempSync(join(tmpdir(), 'vcrypto-nopath-'));
  t.after(() => rmSync(empty, { recursive: true, force: true }));
  const r = await runVcrypto(['vm', '--backend', 'builtin'], { timeoutMs: 30_000, env: { ...process.env, PATH: empty } }).done;
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /^vcrypto vm: 'apt-cache' not found: install the Debian package apt/);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
});

test('no QEMU on PATH: runGuest rejects with a VmError naming qemu-system-x86', async (t) => {
  const saved = process.env.PATH;
  const empty = mkdtempSync(join(tmpdir(), 'vcrypto-nopath-'));
  t.after(() => {
    process.env.PATH = saved;
    rmSync(empty, { recursive: true, force: true });
  });
  process.env.PATH = empty;
  await assert.rejects(
    runGuest({ kernel: 'k', initrd: 'i', backend: { kind: 'builtin', msix: true } }, { timeoutMs: 10_000 }),
    (e: unknown) => e instanceof VmError && /qemu-system-x86_64' not found/.test(e.message) && /apt-get install qemu-system-x86/.test(e.hint ?? ''),
  );
});

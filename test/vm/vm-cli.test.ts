/**
 * `vcrypto vm` without booting: usage errors (exit 2) and a clear one-line error naming the
 * Debian package when a host program is missing (never a stack trace).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
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
    [['--qemu', '/nonexistent/qemu'], /--qemu \/nonexistent\/qemu: no such file/],
    [['--qemu', '10', '--kernel', '5.10'], /invalid --kernel '5\.10': expected system or backports/],
    [['--bench-guest', '--kernel', 'x'], /invalid --kernel 'x'/],
    [['--bench', '--qemu', '9'], /--qemu 9: no such file/],
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

/** A stand-in QEMU that only answers --version, as the real Debian binaries do (first line copied). */
function fakeQemu(dir: string, versionLine: string): string {
  const path = join(dir, `qemu-${versionLine.split(' ')[3]}`);
  writeFileSync(path, `#!/bin/sh\n[ "$1" = --version ] || exit 3\necho '${versionLine}'\necho 'Copyright (c) 2003-2025 Fabrice Bellard and the QEMU Project developers'\n`);
  chmodSync(path, 0o755);
  return path;
}

test('vcrypto device --print-qemu-args: -m, vectors=0 only for a QEMU before 9.1 (asked with --version), --memory needs a unit', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcrypto-fakeqemu-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const q72 = fakeQemu(dir, 'QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)');
  const q100 = fakeQemu(dir, 'QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)');
  const print = (...args: string[]) => runVcrypto(['device', '--socket', '/run/vc.sock', '--print-qemu-args', ...args], { timeoutMs: 30_000 }).done;
  const tail = '-machine memory-backend=mem -chardev socket,id=c0,path=/run/vc.sock -object cryptodev-vhost-user,id=cd0,chardev=c0 -device virtio-crypto-pci,id=crypto0,cryptodev=cd0';

  const old = await print('--qemu', q72);
  assert.equal(old.code, 0, old.stderr);
  assert.equal(old.stdout, `-m 512M -object memory-backend-memfd,id=mem,size=512M,share=on ${tail},vectors=0\n`);
  const v10 = await print('--qemu', q100, '--memory', '2G');
  assert.equal(v10.code, 0, v10.stderr);
  assert.equal(v10.stdout, `-m 2G -object memory-backend-memfd,id=mem,size=2G,share=on ${tail}\n`);
  // No QEMU to ask: vectors=0 (every QEMU runs it), said on stderr.
  const none = await runVcrypto(['device', '--socket', '/run/vc.sock', '--print-qemu-args', '--memory', '1024M'], { timeoutMs: 30_000, env: { ...process.env, PATH: dir } }).done;
  assert.equal(none.code, 0, none.stderr);
  assert.equal(none.stdout, `-m 1024M -object memory-backend-memfd,id=mem,size=1024M,share=on ${tail},vectors=0\n`);
  assert.match(none.stderr, /no QEMU version .*printing vectors=0/);

  for (const bad of ['512', '0M', '512K', '1.5G', 'lots', '-1G']) {
    const r = await print('--qemu', q100, `--memory=${bad}`);
    assert.equal(r.code, 2, `--memory ${bad}: ${r.stderr}`);
    assert.match(r.stderr.split('\n')[0]!, new RegExp(`invalid --memory '${bad.replace('.', '\\.')}': give the size with its unit, e\\.g\\. 512M or 2G`));
  }
  assert.match((await print('--memory', '512')).stderr, /a bare number is ambiguous/);
  const missing = await print('--qemu', join(dir, 'nope'));
  assert.equal(missing.code, 1, missing.stderr);
  assert.match(missing.stderr, /--qemu .*nope: '.*nope' not found/);
  const outside = await runVcrypto(['device', '--socket', '/run/vc.sock', '--memory', '512M'], { timeoutMs: 30_000 }).done;
  assert.equal(outside.code, 2, outside.stderr);
  assert.match(outside.stderr, /--memory and --qemu only apply to --print-qemu-args/);
});

test('vcrypto vm --qemu 10 with the mirror unreachable: one line naming the mirror and what to do, exit 1; the system apt untouched', async (t) => {
  const cache = mkdtempSync(join(tmpdir(), 'vcrypto-cache-'));
  t.after(() => rmSync(cache, { recursive: true, force: true }));
  const r = await runVcrypto(['vm', '--qemu', '10'], {
    timeoutMs: 120_000,
    env: { ...process.env, VCRYPTO_CACHE_DIR: cache, VCRYPTO_DEBIAN_MIRROR: 'http://127.0.0.1:1/debian' },
  }).done;
  assert.equal(r.code, 1, r.stderr);
  const last = r.stderr.trim().split('\n').at(-1) ?? '';
  assert.match(last, /^vcrypto vm: cannot fetch the bookworm-backports package lists from http:\/\/127\.0\.0\.1:1\/debian \(.*\): the host needs access to a Debian mirror/);
  assert.match(last, /VCRYPTO_DEBIAN_MIRROR/);
  assert.doesNotMatch(r.stderr, /\n\s+at /);
  // The private configuration lives in the cache, naming only the backports source.
  const { readFileSync } = await import('node:fs');
  assert.match(readFileSync(join(cache, 'apt-backports', 'sources.list'), 'utf8'), /^deb (\[signed-by=[^\]]+\] )?http:\/\/127\.0\.0\.1:1\/debian bookworm-backports main\n$/);
});

/**
 * `vcrypto driver` run built (`npm run build` first): the embedded virtio device served on a socket to
 * other `vcrypto` processes — test-crypto, test-fork-crypto (4 child processes, 4 connections), enc/dec
 * byte-identical to `openssl enc` — the ready line, SIGTERM, the socket file's mode, a live service
 * refused, a stale socket file (its service was SIGKILLed) replaced, and usage errors.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, lstatSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { killLeftovers, runCli, runProcess, spawnCli, type TestLike } from '../fixtures/cli.js';

const TIMEOUT_MS = 60_000;
const dir = mkdtempSync(join(tmpdir(), 'vcrypto-driver-cli-'));
after(async () => {
  await killLeftovers();
  rmSync(dir, { recursive: true, force: true });
});
let n = 0;
const socketPath = () => join(dir, `d${++n}.sock`);

/** Starts `vcrypto driver --device virtio --socket S ...extra` and waits for its ready line. */
async function startDriver(t: TestLike, extra: readonly string[] = []) {
  const path = socketPath();
  const driver = spawnCli(['driver', '--device', 'virtio', '--socket', path, ...extra], { t, stdin: 'ignore' });
  const [line] = await driver.waitForStderr(/vcrypto driver: serving .* on .*\n/, TIMEOUT_MS);
  return { path, driver, line };
}

test('driver --device virtio: test-crypto, test-fork-crypto (4 processes) and enc/dec (= openssl enc) over --device socket:S; SIGTERM exits 0', async (t) => {
  const { path, driver, line } = await startDriver(t, ['--verbose']);
  assert.ok(line.startsWith('vcrypto driver: serving virtio-crypto (') && line.endsWith(`) on ${path}\n`), line);
  assert.equal(lstatSync(path).mode & 0o777, 0o600);

  const single = await runCli(['test-crypto', '--device', `socket:${path}`], { timeoutMs: TIMEOUT_MS });
  assert.equal(single.code, 0, single.stderr);
  assert.match(single.stdout.toString(), /Doing Verification of data\.\.\. Success/);

  const before = (driver.stderr().match(/client \d+ connected/g) ?? []).length;
  const fork = await runCli(['test-fork-crypto', '--children', '4', '--device', `socket:${path}`], { timeoutMs: TIMEOUT_MS });
  assert.equal(fork.code, 0, fork.stderr + fork.stdout.toString());
  const out = fork.stdout.toString();
  assert.match(out, /4\/4 children succeeded/);
  for (let i = 1; i <= 4; i++) assert.match(out, new RegExp(`\\[child ${i}\\] Doing Verification of data\\.\\.\\. Success`));
  // Each child is a process with its own connection.
  assert.equal((driver.stderr().match(/client \d+ connected/g) ?? []).length - before, 4, driver.stderr());

  const key = '000102030405060708090a0b0c0d0e0f';
  const iv = '0f0e0d0c0b0a09080706050403020100';
  const plain = randomBytes(200_003);
  for (const cipher of ['aes-128-cbc', 'aes-128-ctr']) {
    const enc = await runCli(['enc', '--cipher', cipher, '--key', key, '--iv', iv, '--device', `socket:${path}`], { input: plain, timeoutMs: TIMEOUT_MS });
    assert.equal(enc.code, 0, enc.stderr);
    const ref = await runProcess('openssl', ['enc', `-${cipher}`, '-K', key, '-iv', iv], { input: plain, timeoutMs: TIMEOUT_MS });
    assert.equal(ref.code, 0, ref.stderr);
    assert.ok(enc.stdout.equals(ref.stdout), `${cipher}: byte-identical to openssl enc`);
    const dec = await runCli(['dec', '--cipher', cipher, '--key', key, '--iv', iv, '--device', `socket:${path}`], { input: ref.stdout, timeoutMs: TIMEOUT_MS });
    assert.equal(dec.code, 0, dec.stderr);
    assert.ok(dec.stdout.equals(plain), `${cipher}: dec of openssl's output is the plaintext`);
  }

  driver.child.kill('SIGTERM');
  const exit = await driver.waitForExit(TIMEOUT_MS);
  assert.equal(exit.code, 0, driver.stderr());
  assert.match(driver.stderr(), /vcrypto driver: SIGTERM: disconnected 0 client\(s\), closed the device, removed /);
  assert.equal(existsSync(path), false, 'socket file removed');
});

test('a live service is refused (exit 1); a stale socket file (its driver was SIGKILLed) is replaced; --mode 0660', async (t) => {
  const first = await startDriver(t);
  const second = await runCli(['driver', '--device', 'host', '--socket', first.path], { timeoutMs: TIMEOUT_MS });
  assert.equal(second.code, 1);
  assert.match(second.stderr, new RegExp(`^vcrypto driver: cannot serve on ${first.path}: a service is already listening on ${first.path}\\n$`));
  // The first one still serves.
  const ok = await runCli(['test-crypto', '--device', `socket:${first.path}`], { timeoutMs: TIMEOUT_MS });
  assert.equal(ok.code, 0, ok.stderr);

  await first.driver.kill();
  assert.ok(lstatSync(first.path).isSocket(), 'SIGKILL left the socket file behind');
  const again = spawnCli(['driver', '--device', 'host', '--socket', first.path, '--mode', '0660'], { t, stdin: 'ignore' });
  await again.waitForStderr(/vcrypto driver: serving host \(node:crypto, no virtualization\) on /, TIMEOUT_MS);
  assert.equal(lstatSync(first.path).mode & 0o777, 0o660);
  const r = await runCli(['test-crypto', '--device', `socket:${first.path}`], { timeoutMs: TIMEOUT_MS });
  assert.equal(r.code, 0, r.stderr);
  again.child.kill('SIGINT');
  assert.equal((await again.waitForExit(TIMEOUT_MS)).code, 0);
  assert.match(again.stderr(), /SIGINT: disconnected/);
});

test('usage errors exit 2; a device that cannot be opened exits 1 with one line; socket: with nobody there exits 1', async () => {
  for (const args of [
    ['driver'],
    ['driver', '--socket', join(dir, 'u.sock'), '--mode', '999'],
    ['driver', '--socket', join(dir, 'u.sock'), '--pci', '00:04.0', '--device', 'virtio'],
    ['driver', '--socket', join(dir, 'u.sock'), '--pci', '00:44.0'],
    ['driver', '--socket', join(dir, 'u.sock'), '--device', 'nonsense'],
  ]) {
    const r = await runCli(args, { timeoutMs: TIMEOUT_MS });
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, /^vcrypto driver: .*\nUsage: vcrypto driver /);
  }
  const pci = await runCli(['driver', '--pci', '--socket', join(dir, 'p.sock')], { timeoutMs: TIMEOUT_MS });
  assert.equal(pci.code, 1);
  assert.match(pci.stderr, /^vcrypto driver: cannot open the device pci: [^\n]+\n$/);
  assert.equal(existsSync(join(dir, 'p.sock')), false, 'no socket without a device');
  const nobody = await runCli(['test-crypto', '--device', `socket:${join(dir, 'nobody.sock')}`], { timeoutMs: TIMEOUT_MS });
  assert.equal(nobody.code, 1);
  assert.match(nobody.stderr, /cannot connect \(ENOENT\); is `vcrypto driver --socket .*nobody\.sock` running\?/);
});

/**
 * Starting our back-end for `vcrypto vm`: wait for its socket (event-driven), stop it cleanly,
 * report a device that dies before listening; CPU accounting from /proc/<pid>/stat.
 * Runs the built CLI (`npm run build` first).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseProcStatCpuSeconds, startDevice } from '../../src/vm/device-process.js';
import { VmError } from '../../src/vm/host-tools.js';

test('/proc/<pid>/stat: utime + stime in 1/100 s, after a command name with spaces and parentheses', () => {
  const stat = '4242 (node (worker) x) S 1 4242 4242 0 -1 4194560 2000 0 0 0 1234 56 0 0 20 0 11 0 135136 3133440 389';
  assert.equal(parseProcStatCpuSeconds(stat), 12.9);
  assert.equal(parseProcStatCpuSeconds('1 (x) S 1'), undefined);
});

test('startDevice resolves once the socket exists; stop() ends the process', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcrypto-dev-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const socketPath = join(dir, 'vc.sock');
  const device = await startDevice(socketPath, { readyTimeoutMs: 20_000 });
  t.after(() => device.stop(500));
  assert.ok(existsSync(socketPath));
  const cpu = device.cpuSeconds();
  assert.ok(cpu !== undefined && cpu >= 0, `cpu ${cpu}`);
  await device.stop();
  const exit = await device.exited;
  assert.ok(exit.code === 0 || exit.signal === 'SIGTERM', `exit ${JSON.stringify(exit)}`);
});

test('a device that cannot listen (no such directory) is a VmError, not a hang', async () => {
  const socketPath = join(tmpdir(), `vcrypto-missing-${process.pid}`, 'sub', 'vc.sock');
  await assert.rejects(startDevice(socketPath, { readyTimeoutMs: 20_000 }), (e: unknown) => e instanceof VmError);
});

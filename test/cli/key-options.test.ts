/**
 * Key and IV sources of enc/dec/dgst (src/cli/commands/key-options.ts), in-process: a key from an
 * environment variable is removed from the environment once read (no child process inherits it),
 * malformed values are usage errors that never echo the value, and an HMAC key file loses one
 * trailing newline (so `echo KEY > f` means the same key as `--hmac KEY`, as openssl's -hmac).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCipherKey, loadHmacKey, loadIv } from '../../src/cli/commands/key-options.js';
import { CliError, UsageError } from '../../src/cli/command.js';

const tmp = mkdtempSync(join(tmpdir(), 'vcrypto-keyopts-'));
after(() => rmSync(tmp, { recursive: true, force: true }));
const noWarn = (): void => assert.fail('unexpected warning');

test('--key-env: the key is read, then the variable is gone from this process and from its children', async () => {
  process.env.VC_KEYOPT_TEST = '000102030405060708090a0b0c0d0e0f';
  const key = await loadCipherKey({ 'key-env': 'VC_KEYOPT_TEST' }, 16, noWarn);
  assert.deepEqual([...key], Array.from({ length: 16 }, (_, i) => i));
  assert.equal(process.env.VC_KEYOPT_TEST, undefined);
  const childEnv = execFileSync('env', { encoding: 'utf8' });
  assert.doesNotMatch(childEnv, /VC_KEYOPT_TEST/);
  await assert.rejects(loadCipherKey({ 'key-env': 'VC_KEYOPT_TEST' }, 16, noWarn), (e: unknown) => e instanceof CliError && /is not set/.test(e.message));
});

test('--key-file: hex with a trailing newline; a group/world-readable file is used with a warning', async () => {
  const file = join(tmp, 'k.hex');
  writeFileSync(file, 'ff'.repeat(24) + '\n', { mode: 0o644 });
  const warnings: string[] = [];
  const key = await loadCipherKey({ 'key-file': file }, 24, (l) => warnings.push(l));
  assert.deepEqual([...key], new Array(24).fill(0xff));
  assert.equal(warnings.length, 1);
  assert.match(warnings[0]!, /accessible by other users \(chmod 600 /);
});

test('malformed keys and IVs are UsageErrors that do not echo the value', async () => {
  const secret = 'a1b2c3d4e5f6a7b8c9d0a1b2c3d4e5f';
  for (const [values, bytes] of [
    [{ key: secret }, 16],
    [{ key: secret + 'x' }, 16],
    [{ key: 'a1'.repeat(16) }, 32],
  ] as const) {
    await assert.rejects(loadCipherKey(values, bytes, noWarn), (e: unknown) => e instanceof UsageError && !e.message.includes('a1b2'));
  }
  await assert.rejects(loadIv({ iv: '00'.repeat(15) }), (e: unknown) => e instanceof UsageError && /expected 32 hex digits/.test(e.message));
  await assert.rejects(loadCipherKey({}, 16, noWarn), UsageError);
  await assert.rejects(loadCipherKey({ key: '00'.repeat(16), 'key-file': 'f' }, 16, noWarn), /give only one of --key-file, --key/);
});

test('HMAC key: --hmac-key-file drops exactly one trailing newline; --key-env is the string', async () => {
  const file = join(tmp, 'hmac.key');
  writeFileSync(file, 'Jefe\n\n', { mode: 0o600 });
  assert.equal(Buffer.from((await loadHmacKey({ 'hmac-key-file': file }, noWarn))!).toString(), 'Jefe\n');
  process.env.VC_HMAC_TEST = 'Jefe';
  assert.equal(Buffer.from((await loadHmacKey({ 'key-env': 'VC_HMAC_TEST' }, noWarn))!).toString(), 'Jefe');
  assert.equal(process.env.VC_HMAC_TEST, undefined);
  assert.equal(await loadHmacKey({}, noWarn), undefined);
});

/**
 * The chat key: key file parsing (hex / raw / refused shapes), permissions warning, and the
 * passphrase stretching checked against `openssl kdf ... SCRYPT` with the documented parameters.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync, chmodSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  PASSPHRASE_SALT, SCRYPT_PARAMS, SecureKeyError, formatKey, generateKey, keyFromPassphrase, keyFromPassphraseEnv, parseKey, readKeyFile,
} from '../../src/chat/secure-key.js';

const HEX = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
const bytes = (s: string) => new TextEncoder().encode(s);

test('parseKey: 64 hex digits with comments and whitespace, or 32 raw bytes', () => {
  assert.equal(Buffer.from(parseKey(bytes(`${HEX}\n`))).toString('hex'), HEX);
  assert.equal(Buffer.from(parseKey(bytes(`# my chat key\n${HEX.slice(0, 32)}\n  ${HEX.slice(32).toUpperCase()}  \n`))).toString('hex'), HEX);
  const raw = Uint8Array.from(Buffer.from('ff'.repeat(16) + '00'.repeat(16), 'hex'));
  assert.deepEqual(parseKey(raw), raw);
});

test('parseKey refuses short/long hex, printable 32-byte text, an all-zero key and garbage', () => {
  assert.throws(() => parseKey(bytes(HEX.slice(0, 32))), /32 hex digits; expected 64/);
  assert.throws(() => parseKey(bytes(HEX + 'ab')), /66 hex digits/);
  assert.throws(() => parseKey(bytes('this is a 32-byte password text!')), SecureKeyError);
  assert.throws(() => parseKey(bytes('00'.repeat(32))), /all zeros/);
  assert.throws(() => parseKey(new Uint8Array(32)), /all zeros/);
  assert.throws(() => parseKey(bytes('hello')), /not a key file/);
  assert.throws(() => parseKey(new Uint8Array(0)), /not a key file/);
});

test('generateKey/formatKey: fresh 32-byte keys that round-trip through parseKey', () => {
  const a = generateKey();
  const b = generateKey();
  assert.equal(a.length, 32);
  assert.notDeepEqual(a, b);
  assert.match(formatKey(a), /^[0-9a-f]{64}\n$/);
  assert.deepEqual(parseKey(bytes(formatKey(a))), a);
});

test('readKeyFile: reads, warns about loose permissions, reports a missing file in one line', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'vcrypto-key-'));
  try {
    const file = join(dir, 'chat.key');
    writeFileSync(file, `${HEX}\n`, { mode: 0o600 });
    chmodSync(file, 0o600);
    const warnings: string[] = [];
    assert.equal(Buffer.from(await readKeyFile(file, (l) => warnings.push(l))).toString('hex'), HEX);
    assert.equal(warnings.length, 0);
    chmodSync(file, 0o644);
    await readKeyFile(file, (l) => warnings.push(l));
    assert.match(warnings[0] ?? '', /accessible by other users/);
    await assert.rejects(readKeyFile(join(dir, 'nope')), /cannot read key file .*nope: no such file/);
    await assert.rejects(readKeyFile(dir), /not a regular file/);
    writeFileSync(file, 'abc');
    await assert.rejects(readKeyFile(file), /key file .*chat.key: .*hex digits/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('passphrase: scrypt N=2^15 r=8 p=1 with the documented salt, as openssl computes it', async () => {
  const pass = 'correct horse battery staple';
  const expected = execFileSync('openssl', [
    'kdf', '-keylen', '32', '-kdfopt', `pass:${pass}`, '-kdfopt', `salt:${PASSPHRASE_SALT}`,
    '-kdfopt', `n:${SCRYPT_PARAMS.N}`, '-kdfopt', `r:${SCRYPT_PARAMS.r}`, '-kdfopt', `p:${SCRYPT_PARAMS.p}`, 'SCRYPT',
  ], { encoding: 'utf8' }).trim().replace(/:/g, '').toLowerCase();
  assert.equal(expected.length, 64);
  const warnings: string[] = [];
  assert.equal(Buffer.from(await keyFromPassphrase(pass, (l) => warnings.push(l))).toString('hex'), expected);
  assert.equal(warnings.length, 0);
  const env: NodeJS.ProcessEnv = { CHAT_PASS: pass, OTHER: 'x' };
  assert.equal(Buffer.from(await keyFromPassphraseEnv('CHAT_PASS', env)).toString('hex'), expected);
  assert.deepEqual(env, { OTHER: 'x' }, 'the passphrase is removed from the environment (children do not inherit it)');
});

test('passphrase: empty refused, unset variable refused, short one warned about', async () => {
  await assert.rejects(keyFromPassphrase(''), /empty/);
  await assert.rejects(keyFromPassphraseEnv('NOPE_NOT_SET', {}), /NOPE_NOT_SET is not set/);
  const warnings: string[] = [];
  const k = await keyFromPassphrase('short', (l) => warnings.push(l));
  assert.equal(k.length, 32);
  assert.match(warnings[0] ?? '', /shorter than 12/);
});

/**
 * keepFreedMemory binds mallopt(3) through koffi: glibc (Debian's libc.so.6) accepts
 * M_TRIM_THRESHOLD and returns 1. Its effect (minor page faults per 64 KiB request in
 * `vcrypto device`) is a performance property, measured with a real guest and reported in the
 * README's benchmark section, not asserted here. Run in a child process so that the setting does
 * not change the malloc behaviour of the test runner.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';

test('keepFreedMemory: glibc accepts the trim threshold', () => {
  const code = "import { keepFreedMemory } from './src/sys/malloc.ts'; process.stdout.write(String(keepFreedMemory()));";
  const r = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  assert.equal(r.stdout, 'true');
});

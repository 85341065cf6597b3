/**
 * The newc writer, checked against hand-written header bytes (the format in the kernel's
 * early-userspace buffer-format.rst) and against GNU cpio, an independent reader.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildCpioNewc } from '../../src/vm/cpio.js';

test('one regular file: header fields, name and data padding, trailer, by hand', () => {
  const archive = buildCpioNewc([{ type: 'file', path: 'init', data: Buffer.from('abc'), perm: 0o755 }]);
  const expectedHeader =
    '070701' + // magic
    '00000001' + // ino
    '000081ed' + // mode: S_IFREG | 0755
    '00000000' + '00000000' + // uid, gid
    '00000001' + // nlink
    '00000000' + // mtime
    '00000003' + // filesize
    '00000000' + '00000000' + '00000000' + '00000000' + // devmajor, devminor, rdevmajor, rdevminor
    '00000005' + // namesize: "init\0"
    '00000000'; // check
  assert.equal(archive.subarray(0, 110).toString('ascii'), expectedHeader);
  // 110 + 5 = 115 -> name padded to 116; data "abc" padded to 4.
  assert.deepEqual([...archive.subarray(110, 116)], [...Buffer.from('init\0\0')]);
  assert.equal(archive.subarray(116, 120).toString('latin1'), 'abc\0');
  const trailer = archive.subarray(120);
  assert.equal(trailer.subarray(0, 6).toString('ascii'), '070701');
  assert.equal(trailer.subarray(94, 102).toString('ascii'), '0000000b'); // namesize of "TRAILER!!!\0"
  assert.equal(trailer.subarray(110, 121).toString('latin1'), 'TRAILER!!!\0');
  assert.equal(archive.length % 4, 0);
});

test('GNU cpio lists and extracts what we write (dirs, files of every padding, symlink, char device)', () => {
  const entries = [
    { type: 'dir' as const, path: 'bin' },
    { type: 'dir' as const, path: 'dev' },
    { type: 'char' as const, path: 'dev/console', major: 5, minor: 1 },
    { type: 'file' as const, path: 'bin/a', data: Buffer.from('') },
    { type: 'file' as const, path: 'bin/bb', data: Buffer.from('1') },
    { type: 'file' as const, path: 'bin/ccc', data: Buffer.from('12'), perm: 0o700 },
    { type: 'file' as const, path: 'bin/dddd', data: Buffer.from('123') },
    { type: 'file' as const, path: 'bin/big', data: Buffer.alloc(70001, 0x5a) },
    { type: 'symlink' as const, path: 'bin/sh', target: 'busybox' },
  ];
  const archive = buildCpioNewc(entries);
  const listing = execFileSync('cpio', ['-t', '-v', '--quiet', '--numeric-uid-gid'], { input: archive }).toString();
  const lines = listing.trim().split('\n');
  assert.equal(lines.length, entries.length);
  assert.match(lines[2]!, /^crw------- +1 0 +0 +5, +1 .* dev\/console$/);
  assert.match(lines[5]!, /^-rwx------ .* 2 .* bin\/ccc$/);
  assert.match(lines[7]!, /^-rw-r--r-- .* 70001 .* bin\/big$/);
  assert.match(lines[8]!, /^lrwxrwxrwx .* bin\/sh -> busybox$/);

  const dir = mkdtempSync(join(tmpdir(), 'vcrypto-cpio-'));
  try {
    // Extract all but the device node (mknod needs privileges the test should not assume).
    execFileSync('cpio', ['-i', '-d', '--quiet', '--no-absolute-filenames', '-f', 'dev/console'], { input: archive, cwd: dir });
    for (const e of entries) {
      if (e.type === 'file') assert.deepEqual(readFileSync(join(dir, e.path)), Buffer.from(e.data), e.path);
    }
    assert.equal(statSync(join(dir, 'bin/ccc')).mode & 0o777, 0o700);
    assert.equal(readlinkSync(join(dir, 'bin/sh')), 'busybox');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('unsafe archive paths are rejected', () => {
  for (const path of ['', '/init', '../x', 'a//b', 'a/../b', 'a\0b']) {
    assert.throws(() => buildCpioNewc([{ type: 'dir', path }]), RangeError, JSON.stringify(path));
  }
});

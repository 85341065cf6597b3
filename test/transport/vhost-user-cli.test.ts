/**
 * `vcrypto device` as a real process (built CLI: run `npm run build` first), served to other real
 * processes through `--device vhost-user:PATH`; outputs checked against `openssl` and FIPS 180-2.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnCli, runCli, spawnProcess, killLeftovers } from '../fixtures/cli.js';
import { RawFrontEnd } from './vhost-user-fixture.js';

after(killLeftovers);

const KEY = '2b7e151628aed2a6abf7158809cf4f3c';
const IV = '000102030405060708090a0b0c0d0e0f';

test('vcrypto device --print-qemu-args prints the QEMU 7.2 flags for the socket; bad usage exits 2', async () => {
  const r = await runCli(['device', '--socket', '/run/vc.sock', '--print-qemu-args']);
  assert.equal(r.code, 0);
  assert.equal(
    r.stdout.toString(),
    '-object memory-backend-memfd,id=mem,size=512M,share=on -machine memory-backend=mem ' +
      '-chardev socket,id=c0,path=/run/vc.sock -object cryptodev-vhost-user,id=cd0,chardev=c0 ' +
      '-device virtio-crypto-pci,id=crypto0,cryptodev=cd0,vectors=0\n',
  );
  assert.equal((await runCli(['device'])).code, 2);
  assert.equal((await runCli(['device', '--socket', 'x', '--queues', '0'])).code, 2);
  for (const bad of ['-1', '2001', '1.5', 'fast']) {
    const r = await runCli(['device', '--socket', 'x', `--poll-us=${bad}`]);
    assert.equal(r.code, 2, `--poll-us ${bad}`);
    assert.match(r.stderr.toString(), new RegExp(`invalid --poll-us '${bad.replace('.', '\\.')}': expected an integer 0-2000`));
  }
  // vcrypto vm passes --poll-us only to a device it starts itself.
  assert.equal((await runCli(['vm', '--backend', 'builtin', '--poll-us', '0'])).code, 2);
  assert.equal((await runCli(['vm', '--socket', 'x', '--poll-us', '0'])).code, 2);
});

test('vcrypto device serves other processes (enc = openssl, dgst = FIPS 180-2, test-fork-crypto); SIGTERM exits 0 and removes the socket', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'vcrypto-dev-'));
  const sock = join(dir, 'vc.sock');
  try {
    const device = spawnCli(['device', '--socket', sock, '--verbose'], { t, stdin: 'ignore' });
    await device.waitForStdout('listening on');
    const spec = `vhost-user:${sock}`;

    const plain = Buffer.alloc(100_000).map((_, i) => (i * 31 + 7) & 0xff);
    const ours = await runCli(['enc', '--cipher', 'aes-128-cbc', '--key', KEY, '--iv', IV, '--device', spec], { input: plain });
    assert.equal(ours.code, 0, ours.stderr);
    const openssl = spawnProcess('openssl', ['enc', '-aes-128-cbc', '-K', KEY, '-iv', IV]);
    openssl.stdin.end(plain);
    assert.equal((await openssl.waitForExit()).code, 0);
    assert.ok(Buffer.compare(ours.stdout, openssl.stdout()) === 0, 'ciphertext differs from openssl enc');

    // Our front-end's DRIVER_OK sequence, every message asking for REPLY_ACK (memory table: one memfd).
    assert.match(
      device.stderr(),
      /\[conn 1 pid \d+\] <- SET_FEATURES flags 0x9 size 8 fds 0\n.*\[conn 1 pid \d+\] <- SET_MEM_TABLE flags 0x9 size 40 fds 1\n.*\[conn 1 pid \d+\] <- SET_VRING_NUM flags 0x9 size 8 fds 0 vring 0\n/,
    );
    const dgst = await runCli(['dgst', '--digest', 'sha256', '--device', spec], { input: Buffer.from('abc') });
    assert.equal(dgst.code, 0, dgst.stderr);
    assert.match(dgst.stdout.toString(), /^ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad {2}-\n$/);

    const fork = await runCli(['test-fork-crypto', '--device', spec, '--children', '3']);
    assert.equal(fork.code, 0, fork.stdout.toString() + fork.stderr);
    await device.waitForStderr(/\[conn 5 pid \d+\] front-end disconnected/);

    // A front-end still connected when SIGTERM arrives: its connection is stopped and closed.
    const idle = RawFrontEnd.connect(sock);
    t.after(() => idle.close());
    assert.deepEqual(await idle.call(1), new Uint8Array([0, 0, 0, 0x70, 1, 0, 0, 0])); // GET_FEATURES
    device.child.kill('SIGTERM');
    assert.ok(await idle.closedByPeer());
    await device.waitForStderr(/SIGTERM: stopping 1 connection/);
    const exit = await device.waitForExit();
    assert.equal(exit.code, 0, device.stderr());
    assert.match(device.stderr(), /stopped; socket removed/);
    assert.equal(existsSync(sock), false);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * `vcrypto device` as a real process (built CLI: run `npm run build` first), served to other real
 * processes through `--device vhost-user:PATH`; outputs checked against `openssl` and FIPS 180-2.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, existsSync, closeSync, openSync, truncateSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnCli, runCli, spawnProcess, killLeftovers } from '../fixtures/cli.js';
import { RawFrontEnd } from './vhost-user-fixture.js';

after(killLeftovers);

const KEY = '2b7e151628aed2a6abf7158809cf4f3c';

/** SHA-256 of `mib` MiB of zeros, by node:crypto in 1 MiB updates (the oracle for a sparse file). */
function sha256OfZeros(mib: number): string {
  const h = createHash('sha256');
  const zeros = Buffer.alloc(1 << 20);
  for (let i = 0; i < mib; i++) h.update(zeros);
  return h.digest('hex');
}
const IV = '000102030405060708090a0b0c0d0e0f';

/** `vcrypto enc --device spec` of `plain` exits 0 and gives the bytes `openssl enc` gives. */
async function assertEncEqualsOpenssl(spec: string, plain: Uint8Array): Promise<void> {
  const ours = await runCli(['enc', '--cipher', 'aes-128-cbc', '--key', KEY, '--iv', IV, '--device', spec], { input: plain });
  assert.equal(ours.code, 0, ours.stderr);
  const openssl = spawnProcess('openssl', ['enc', '-aes-128-cbc', '-K', KEY, '-iv', IV]);
  openssl.stdin.end(plain);
  assert.equal((await openssl.waitForExit()).code, 0);
  assert.ok(Buffer.compare(ours.stdout, openssl.stdout()) === 0, 'ciphertext differs from openssl enc');
}

test('vcrypto device --print-qemu-args prints the QEMU 7.2 flags for the socket; bad usage exits 2', async () => {
  // The system's QEMU 7.2 (or none) gets vectors=0; test/vm/vm-cli.test.ts covers QEMU 10.
  const r = await runCli(['device', '--socket', '/run/vc.sock', '--print-qemu-args']);
  assert.equal(r.code, 0);
  assert.equal(
    r.stdout.toString(),
    '-m 512M -object memory-backend-memfd,id=mem,size=512M,share=on -machine memory-backend=mem ' +
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
    await assertEncEqualsOpenssl(spec, plain);

    // Our front-end's DRIVER_OK sequence, every message asking for REPLY_ACK (memory table: one memfd).
    assert.match(
      device.stderr(),
      /\[conn 1 pid \d+\] <- SET_FEATURES flags 0x9 size 8 fds 0\n.*\[conn 1 pid \d+\] <- SET_MEM_TABLE flags 0x9 size 40 fds 1\n.*\[conn 1 pid \d+\] <- SET_VRING_NUM flags 0x9 size 8 fds 0 vring 0\n/,
    );
    // Sessions went as QEMU sends them (messages 26/27, QEMU 7.2's 632-byte layout), not on a control queue.
    assert.match(device.stderr(), /\[conn 1 pid \d+\] <- CREATE_CRYPTO_SESSION flags 0x1 size 632 fds 0 session layout QEMU 7\.1-8\.0 \(632 bytes\)\n/);
    assert.match(device.stderr(), /\[conn 1 pid \d+\] <- CLOSE_CRYPTO_SESSION flags 0x1 size 8 fds 0\n/);
    // ... and only the data queues are vrings of the back-end (QEMU never sends it the control queue).
    const dataQueues = Number(/\((\d+) data queues?/.exec(device.stdout().toString())?.[1]);
    assert.equal(device.stderr().match(/\[conn 1 pid \d+\] <- SET_VRING_KICK /g)?.length, dataQueues);
    // Hash sessions do not exist in QEMU's session messages: a clear error, unless the controlq extension is asked for.
    const plainDgst = await runCli(['dgst', '--digest', 'sha256', '--device', spec], { input: Buffer.from('abc') });
    assert.equal(plainDgst.code, 1, plainDgst.stderr);
    assert.match(plainDgst.stderr, /ENOTSUP: create sha256 session: not supported by the device/);
    const dgst = await runCli(['dgst', '--digest', 'sha256', '--device', spec], { input: Buffer.from('abc'), env: { ...process.env, VCRYPTO_VHOST_USER_SESSIONS: 'controlq' } });
    assert.equal(dgst.code, 0, dgst.stderr);
    assert.match(dgst.stdout.toString(), /^ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad {2}-\n$/);

    const fork = await runCli(['test-fork-crypto', '--device', spec, '--children', '3']);
    assert.equal(fork.code, 0, fork.stdout.toString() + fork.stderr);
    await device.waitForStderr(/\[conn 6 pid \d+\] front-end disconnected/);

    // dgst hashes a 256 MiB file in one request (sparse: all zeros, read without touching the disk).
    const big = join(dir, 'big.bin');
    closeSync(openSync(big, 'w'));
    truncateSync(big, 256 * 1024 * 1024);
    const bigDgst = await runCli(['dgst', '--device', spec, big], { env: { ...process.env, VCRYPTO_VHOST_USER_SESSIONS: 'controlq' } });
    assert.equal(bigDgst.code, 0, bigDgst.stderr);
    assert.equal(bigDgst.stdout.toString(), `${sha256OfZeros(256)}  ${big}\n`);

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

test('vcrypto device --max-size bounds a request: a larger one fails with the device error status (no crash, the device keeps serving), smaller ones work (= openssl, FIPS 180-2); a bad size exits 2', async (t) => {
  for (const bad of ['0', '12Q', '5G', '-1', '1.5M']) {
    const r = await runCli(['device', '--socket', '/nonexistent/vc.sock', '--max-size', bad]);
    assert.equal(r.code, 2, `--max-size ${bad}: ${r.stderr}`);
    assert.match(r.stderr, /invalid --max-size/);
  }
  const dir = mkdtempSync(join(tmpdir(), 'vcrypto-dev-'));
  const sock = join(dir, 'vc.sock');
  try {
    const device = spawnCli(['device', '--socket', sock, '--max-size', '64K'], { t, stdin: 'ignore' });
    await device.waitForStdout('listening on');
    const spec = `vhost-user:${sock}`;
    const env = { ...process.env, VCRYPTO_VHOST_USER_SESSIONS: 'controlq' };
    // Over vhost-user the front-end cannot read the limit (QEMU's vhost-user crypto has no config
    // query), so the device answers VIRTIO_CRYPTO_ERR, as it does for a QEMU guest.
    const big = await runCli(['dgst', '--digest', 'sha256', '--device', spec], { input: Buffer.alloc(200_000, 7), env });
    assert.equal(big.code, 1, big.stderr);
    assert.match(big.stderr, /EIO: sha256: device error \(VIRTIO_CRYPTO_ERR\)/);
    const small = await runCli(['dgst', '--digest', 'sha256', '--device', spec], { input: Buffer.from('abc'), env });
    assert.equal(small.code, 0, small.stderr);
    assert.match(small.stdout.toString(), /^ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad {2}-\n$/);
    const plain = Buffer.alloc(30_000).map((_, i) => (i * 13 + 1) & 0xff); // iv + src + dst under 64 KiB
    await assertEncEqualsOpenssl(spec, plain);
    device.child.kill('SIGTERM');
    assert.equal((await device.waitForExit()).code, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

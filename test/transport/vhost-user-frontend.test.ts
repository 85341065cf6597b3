/**
 * Our driver as a vhost-user front-end against our back-end over a real Unix socket (the back-end
 * runs in this process, on its connection worker threads; nothing is shared but the socket, the
 * memfd and the eventfds). Every service works across the connection, checked on NIST SP 800-38A,
 * FIPS 180-2, RFC 4231 and the GCM specification's vectors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv } from 'node:crypto';
import { openDevice } from '../../src/transport/open-device.js';
import { connectVhostUserDevice } from '../../src/transport/vhost-user/connect.js';
import { CryptoError } from '../../src/driver/api.js';
import { startServer } from './vhost-user-fixture.js';
import { hex } from '../fixtures/bytes.js';

const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const PLAIN = hex('6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51 30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710');

test('vhost-user with the controlq extension: cipher, hash, HMAC, AEAD across processes, on published vectors', async () => {
  const srv = startServer();
  const device = await connectVhostUserDevice(srv.path, { sessions: 'controlq' });
  try {
    assert.equal(device.info.spec, `vhost-user:${srv.path}`);
    assert.match(device.info.description, /vhost-user/);
    const h = await device.open();
    // NIST SP 800-38A F.2.1 CBC-AES128.Encrypt / F.2.2 Decrypt
    const cbc = await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: hex('2b7e151628aed2a6abf7158809cf4f3c') });
    const iv = hex('000102030405060708090a0b0c0d0e0f');
    const ct = '7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b273bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7';
    assert.equal(toHex((await h.crypt(cbc, { op: 'encrypt', src: PLAIN, iv })).dst), ct);
    assert.equal(toHex((await h.crypt(cbc, { op: 'decrypt', src: hex(ct), iv })).dst), toHex(PLAIN));
    // FIPS 180-2 SHA-256("abc")
    const sha = await h.createSession({ kind: 'hash', hash: 'sha256' });
    assert.equal(toHex(await h.digest(sha, Buffer.from('abc'))), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    // RFC 4231 test case 2: HMAC-SHA-256, key "Jefe"
    const mac = await h.createSession({ kind: 'mac', hash: 'sha256', key: Buffer.from('Jefe') });
    assert.equal(
      toHex(await h.digest(mac, Buffer.from('what do ya want for nothing?'))),
      '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    );
    // GCM specification test case 2: zero key, zero IV, one zero block.
    const gcm = await h.createSession({ kind: 'aead', aead: 'aes-gcm', key: new Uint8Array(16) });
    const sealed = await h.aead(gcm, { op: 'encrypt', src: new Uint8Array(16), iv: new Uint8Array(12) });
    assert.equal(toHex(sealed.dst), '0388dace60b6a392f328c2b971b2fe78');
    assert.equal(toHex(sealed.tag!), 'ab6e47d42cec13bdf53a67b21257bddf');
    await assert.rejects(
      h.aead(gcm, { op: 'decrypt', src: sealed.dst, iv: new Uint8Array(12), tag: new Uint8Array(16) }),
      (err: unknown) => err instanceof CryptoError && err.code === 'EBADMSG',
    );
    await h.closeSession(cbc);
    await assert.rejects(h.crypt(cbc, { op: 'encrypt', src: PLAIN, iv }), CryptoError);
    await h.close();
  } finally {
    await device.close();
  }
  await srv.waitForLog(/connection 1: front-end disconnected/);
  await srv.stop();
});

test('64 requests in flight on two connections at once, each checked against OpenSSL (node:crypto)', async () => {
  const srv = startServer({ dataQueues: 2 });
  const a = await connectVhostUserDevice(srv.path);
  const b = await connectVhostUserDevice(srv.path);
  try {
    const key = hex('603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4');
    const run = async (dev: typeof a, seed: number) => {
      const h = await dev.open();
      const s = await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key });
      const jobs = Array.from({ length: 64 }, async (_, i) => {
        const src = new Uint8Array(16 * (1 + ((i * 7 + seed) % 256))).map((_, j) => (i + j + seed) & 0xff);
        const iv = new Uint8Array(16).fill(i);
        const expect = createCipheriv('aes-256-cbc', key, iv).setAutoPadding(false).update(src);
        const got = await h.crypt(s, { op: 'encrypt', src, iv });
        assert.equal(toHex(got.dst), toHex(expect), `request ${i}`);
      });
      await Promise.all(jobs);
      await h.close();
    };
    await Promise.all([run(a, 1), run(b, 2)]);
  } finally {
    await a.close();
    await b.close();
    await srv.stop();
  }
});

test('the back-end going away fails pending and later requests instead of hanging', async () => {
  const srv = startServer();
  const device = await connectVhostUserDevice(srv.path);
  try {
    const h = await device.open();
    const s = await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: new Uint8Array(16) });
    await srv.server.close();
    await assert.rejects(h.crypt(s, { op: 'encrypt', src: new Uint8Array(1 << 16), iv: new Uint8Array(16) }), CryptoError);
  } finally {
    await device.close();
    await srv.stop();
  }
});

test('connecting to a path nobody serves is an EIO CryptoError naming the path', async () => {
  await assert.rejects(connectVhostUserDevice('/nonexistent/vc.sock'), (err: unknown) => err instanceof CryptoError && err.code === 'EIO' && /\/nonexistent\/vc\.sock/.test(err.message));
});

test('the same CryptoError codes as the host device for the same bad requests', async () => {
  const srv = startServer();
  const devices = { host: await openDevice('host'), vhost: await connectVhostUserDevice(srv.path, { sessions: 'controlq' }) };
  const code = async (p: Promise<unknown>): Promise<string> => {
    try {
      await p;
      return 'ok';
    } catch (err) {
      assert.ok(err instanceof CryptoError, String(err));
      return err.code;
    }
  };
  try {
    const outcomes: Record<string, string[]> = {};
    for (const [name, device] of Object.entries(devices)) {
      const a = await device.open();
      const b = await device.open();
      const cbc = await a.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: new Uint8Array(16) });
      const gcm = await a.createSession({ kind: 'aead', aead: 'aes-gcm', key: new Uint8Array(32) });
      const sealed = await a.aead(gcm, { op: 'encrypt', src: Buffer.from('attack at dawn'), iv: new Uint8Array(12) });
      outcomes[name] = [
        await code(a.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: new Uint8Array(20) })),
        await code(a.createSession({ kind: 'cipher', cipher: 'aes-xts', key: new Uint8Array(24) })),
        await code(a.crypt(cbc, { op: 'encrypt', src: new Uint8Array(20), iv: new Uint8Array(16) })),
        await code(a.crypt(cbc, { op: 'encrypt', src: new Uint8Array(16) })),
        await code(b.crypt(cbc, { op: 'encrypt', src: new Uint8Array(16), iv: new Uint8Array(16) })),
        await code(a.aead(gcm, { op: 'decrypt', src: sealed.dst, iv: new Uint8Array(12), tag: new Uint8Array(16) })),
        await code(a.closeSession(cbc).then(() => a.crypt(cbc, { op: 'encrypt', src: new Uint8Array(16), iv: new Uint8Array(16) }))),
        await code(a.close().then(() => a.createSession({ kind: 'hash', hash: 'sha256' }))),
      ];
      await b.close();
    }
    assert.deepEqual(outcomes.vhost, outcomes.host);
    assert.deepEqual(outcomes.host, ['EINVAL', 'EINVAL', 'EINVAL', 'EINVAL', 'ENOENT', 'EBADMSG', 'ENOENT', 'EBADF']);
  } finally {
    await devices.host.close();
    await devices.vhost.close();
    await srv.stop();
  }
});

test("QEMU's session messages (both layouts) carry AES-CBC + HMAC-SHA256 chaining sessions: NIST SP 800-38A F.2.1 and the MAC the host device computes", async () => {
  const macKey = hex('000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f');
  const key = hex('2b7e151628aed2a6abf7158809cf4f3c');
  const iv = hex('000102030405060708090a0b0c0d0e0f');
  const host = await openDevice('host');
  const hh = await host.open();
  const reference = await hh.chain(await hh.createSession({ kind: 'chain', cipher: 'aes-cbc', key, hash: 'sha256', macKey, order: 'cipher-then-hash', op: 'encrypt' }), { src: PLAIN, iv });
  await host.close();
  for (const sessions of ['qemu-7.1', 'qemu-8.1'] as const) {
    const srv = startServer();
    const device = await connectVhostUserDevice(srv.path, { sessions });
    try {
      const h = await device.open();
      const enc = await h.createSession({ kind: 'chain', cipher: 'aes-cbc', key, hash: 'sha256', macKey, order: 'cipher-then-hash', op: 'encrypt' });
      const r = await h.chain(enc, { src: PLAIN, iv });
      assert.equal(toHex(r.dst), '7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b273bed6b8e3c1743b7116e69e222295163ff1caa1681fac09120eca307586e1a7');
      assert.equal(toHex(r.mac!), toHex(reference.mac!));
      const dec = await h.createSession({ kind: 'chain', cipher: 'aes-cbc', key, hash: 'sha256', macKey, order: 'hash-then-cipher', op: 'decrypt' });
      assert.equal(toHex((await h.chain(dec, { src: r.dst, iv, mac: r.mac! })).dst), toHex(PLAIN));
      await h.close();
    } finally {
      await device.close();
      await srv.stop();
    }
  }
});

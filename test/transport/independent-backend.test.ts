/**
 * Our vhost-user front-end against a back-end that is not ours (independent-backend/: Python standard
 * library, written from the vhost-user and VIRTIO specifications, no code shared with src/), which
 * follows QEMU's contract like DPDK's vhost_crypto: sessions only through CREATE/CLOSE_CRYPTO_SESSION
 * (messages 26/27) in one layout, no control queue, AES-CBC data requests. Oracles: NIST SP 800-38A
 * F.2.1-F.2.6 and `openssl enc`. `test-fork-crypto` and `enc` run as the built CLI (`npm run build`).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { connectVhostUserDevice } from '../../src/transport/vhost-user/connect.js';
import { CryptoError } from '../../src/driver/api.js';
import { runCli, spawnProcess, killLeftovers } from '../fixtures/cli.js';
import { CBC_IV, KEYS, NIST, PLAIN_HEX } from '../fixtures/nist-sp800-38a.js';
import { startIndependentBackend } from './independent-backend/start.js';

after(killLeftovers);

const hex = (h: string) => Uint8Array.from(Buffer.from(h.replace(/\s+/g, ''), 'hex'));
const toHex = (b: Uint8Array) => Buffer.from(b).toString('hex');

for (const [layout, sessions] of [[632, 'qemu-7.1'], [1072, 'qemu-8.1']] as const) {
  test(`${layout}-byte back-end, front-end sessions '${sessions}': NIST SP 800-38A F.2.1-F.2.6, 16 requests in flight, sessions closed`, async () => {
    const backend = await startIndependentBackend(layout);
    try {
      const device = await connectVhostUserDevice(backend.path, { sessions });
      try {
        const h = await device.open();
        for (const bits of [128, 192, 256] as const) {
          const s = await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: hex(KEYS[bits]) });
          const enc = await h.crypt(s, { op: 'encrypt', src: hex(PLAIN_HEX), iv: hex(CBC_IV) });
          assert.equal(toHex(enc.dst), toHex(hex(NIST['aes-cbc'][bits])), `F.2 CBC-AES${bits}.Encrypt`);
          const dec = await h.crypt(s, { op: 'decrypt', src: hex(NIST['aes-cbc'][bits]), iv: hex(CBC_IV) });
          assert.equal(toHex(dec.dst), toHex(hex(PLAIN_HEX)), `F.2 CBC-AES${bits}.Decrypt`);
          await h.closeSession(s);
        }
        const s = await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: hex(KEYS[128]) });
        const inputs = Array.from({ length: 16 }, (_, i) => Uint8Array.from({ length: 4096 }, (_, k) => (k * 7 + i) & 0xff));
        const outs = await Promise.all(inputs.map((src) => h.crypt(s, { op: 'encrypt', src, iv: hex(CBC_IV) })));
        const back = await Promise.all(outs.map((o) => h.crypt(s, { op: 'decrypt', src: o.dst, iv: hex(CBC_IV) })));
        back.forEach((b, i) => assert.deepEqual(b.dst, inputs[i]));
        await h.close();
      } finally {
        await device.close();
      }
      const log = backend.process.stderr();
      // Every session came through a CREATE_CRYPTO_SESSION of the back-end's layout (two per key: one per direction).
      assert.equal(log.match(new RegExp(`AES-\\d+-CBC \\(${layout}-byte CREATE_CRYPTO_SESSION\\)`, 'g'))?.length, 8, log);
      assert.doesNotMatch(log, /unsupported request|connection closed/, log);
    } finally {
      await backend.stop();
    }
  });
}

test('a front-end that sends the other layout gets a session error, never a mis-parsed key', async () => {
  const backend = await startIndependentBackend(632);
  try {
    const device = await connectVhostUserDevice(backend.path, { sessions: 'qemu-8.1' });
    try {
      const h = await device.open();
      await assert.rejects(h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: hex(KEYS[128]) }), (err: unknown) => err instanceof CryptoError);
      await h.close();
    } finally {
      await device.close();
    }
    assert.match(backend.process.stderr(), /CREATE_CRYPTO_SESSION of 1072 bytes, but this back-end speaks the 632-byte layout/);
  } finally {
    await backend.stop();
  }
});

test('vcrypto test-fork-crypto and vcrypto enc (= openssl enc) through the independent back-end', async () => {
  const backend = await startIndependentBackend(632);
  try {
    const spec = `vhost-user:${backend.path}`;
    const fork = await runCli(['test-fork-crypto', '--device', spec, '--children', '3']);
    assert.equal(fork.code, 0, fork.stdout.toString() + fork.stderr);
    assert.match(fork.stdout.toString(), /3\/3 children succeeded/);
    const plain = Buffer.alloc(20_000).map((_, i) => (i * 31 + 7) & 0xff);
    const ours = await runCli(['enc', '--cipher', 'aes-128-cbc', '--key', KEYS[128], '--iv', CBC_IV, '--device', spec], { input: plain });
    assert.equal(ours.code, 0, ours.stderr);
    const openssl = spawnProcess('openssl', ['enc', '-aes-128-cbc', '-K', KEYS[128], '-iv', CBC_IV]);
    openssl.stdin.end(plain);
    assert.equal((await openssl.waitForExit()).code, 0);
    assert.ok(Buffer.compare(ours.stdout, openssl.stdout()) === 0, 'ciphertext differs from openssl enc');
  } finally {
    await backend.stop();
  }
});

test('a back-end that does not offer VHOST_USER_PROTOCOL_F_CRYPTO_SESSION: a one-line EIO at connect, naming the feature and the controlq extension', async () => {
  const backend = await startIndependentBackend(632, { offerSessions: false });
  try {
    await assert.rejects(connectVhostUserDevice(backend.path), (err: unknown) => {
      assert.ok(err instanceof CryptoError);
      assert.equal(err.code, 'EIO');
      assert.match(err.message, /does not offer VHOST_USER_PROTOCOL_F_CRYPTO_SESSION.*VCRYPTO_VHOST_USER_SESSIONS=controlq/);
      return true;
    });
  } finally {
    await backend.stop();
  }
});

/**
 * The secure chat's CBC_HMAC suite (cbc-hmac-cipher.ts): the sealed bytes checked against `openssl enc`
 * and node:crypto's HMAC computed here from the construction's definition; every tampering fails
 * before decryption; and two peers chatting through a device that, like QEMU's virtio-crypto device,
 * offers AES-CBC and nothing else (the device sees only AES-CBC requests).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHmac, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import type { Socket } from 'node:net';
import { socketPair } from '../fixtures/socket-pair.js';
import {
  CBC_HMAC_ENC_LABEL,
  CBC_HMAC_MAC_LABEL,
  CbcHmacCipher,
  cbcHmacMaxPlaintext,
  cbcHmacSealedLength,
} from '../../src/chat/cbc-hmac-cipher.js';
import { NoiseError, NoiseErrorCode } from '../../src/chat/noise/noise-error.js';
import { secureChannel } from '../../src/chat/secure-channel.js';
import { ChannelError, type ChatChannel } from '../../src/chat/chat-channel.js';
import { hello } from '../../src/chat/secure-framing.js';
import { createHostDevice } from '../../src/driver/host-device.js';
import { createInProcessDevice } from '../../src/transport/in-process/create-in-process-device.js';
import { CryptoError, type CryptoDevice, type CryptoHandle, type SessionOptions } from '../../src/driver/api.js';

const hmac = (key: Uint8Array, ...parts: (Uint8Array | string)[]) => {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return h.digest();
};

/** openssl's AES-256-CBC decryption (with PKCS#7 unpadding) of `ct`: the independent oracle. */
function opensslDecrypt(key: Uint8Array, iv: Uint8Array, ct: Uint8Array): Buffer {
  return execFileSync('openssl', ['enc', '-d', '-aes-256-cbc', '-K', Buffer.from(key).toString('hex'), '-iv', Buffer.from(iv).toString('hex')], { input: ct });
}

const isDecryptFailed = (err: unknown) => err instanceof NoiseError && err.code === NoiseErrorCode.DECRYPT_FAILED;

test('cbc-hmac: the sealed message is iv || AES-256-CBC(PKCS#7) || HMAC-SHA256(n || len(ad) || ad || iv || ct), checked with openssl', async () => {
  const device = await createInProcessDevice();
  const handle = await device.open();
  try {
    const k = randomBytes(32);
    const sender = await CbcHmacCipher.create(handle, Uint8Array.from(k));
    const receiver = await CbcHmacCipher.create(handle, Uint8Array.from(k));
    const encKey = hmac(k, CBC_HMAC_ENC_LABEL);
    const macKey = hmac(k, CBC_HMAC_MAC_LABEL);
    const ivs = new Set<string>();
    for (const [n, text] of ['', 'hello', 'x'.repeat(16), 'y'.repeat(1000)].entries()) {
      const ad = n % 2 === 0 ? new Uint8Array(0) : Uint8Array.of(1, 2, 3);
      const msg = await sender.encryptWithAd(ad, new TextEncoder().encode(text));
      assert.equal(msg.length, cbcHmacSealedLength(text.length));
      const iv = msg.subarray(0, 16);
      const ct = msg.subarray(16, msg.length - 32);
      const tag = msg.subarray(msg.length - 32);
      ivs.add(Buffer.from(iv).toString('hex'));
      assert.equal(opensslDecrypt(encKey, iv, ct).toString(), text);
      const header = Buffer.alloc(12);
      header.writeBigUInt64BE(BigInt(n), 0);
      header.writeUInt32BE(ad.length, 8);
      assert.deepEqual(Buffer.from(tag), hmac(macKey, header, ad, iv, ct));
      assert.equal(new TextDecoder().decode(await receiver.decryptWithAd(ad, msg)), text);
    }
    assert.equal(ivs.size, 4, 'a fresh IV per message');
    await sender.destroy();
    await receiver.destroy();
  } finally {
    await handle.close();
    await device.close();
  }
});

test('cbc-hmac: a changed, replayed, reordered, truncated or mis-sized message fails as DECRYPT_FAILED and leaves the counter alone', async () => {
  const device = createHostDevice();
  const handle = await device.open();
  try {
    const k = randomBytes(32);
    const sender = await CbcHmacCipher.create(handle, Uint8Array.from(k));
    const receiver = await CbcHmacCipher.create(handle, Uint8Array.from(k));
    const none = new Uint8Array(0);
    const m0 = await sender.encryptWithAd(none, new TextEncoder().encode('first message'));
    const m1 = await sender.encryptWithAd(none, new TextEncoder().encode('second message'));
    const bad: Uint8Array[] = [
      m1, // reordered: m1 before m0
      m0.subarray(0, m0.length - 1),
      m0.subarray(0, 16 + 32), // no ciphertext block
      new Uint8Array(0),
      Uint8Array.from([...m0, 0]),
    ];
    for (const at of [0, 15, 16, m0.length - 33, m0.length - 32, m0.length - 1]) {
      const flipped = Uint8Array.from(m0);
      flipped[at]! ^= 0x01;
      bad.push(flipped);
    }
    for (const m of bad) {
      await assert.rejects(receiver.decryptWithAd(none, m), isDecryptFailed, `length ${m.length}`);
      assert.equal(receiver.nonce, 0n);
    }
    await assert.rejects(receiver.decryptWithAd(Uint8Array.of(9), m0), isDecryptFailed, 'other associated data');
    assert.equal(new TextDecoder().decode(await receiver.decryptWithAd(none, m0)), 'first message');
    await assert.rejects(receiver.decryptWithAd(none, m0), isDecryptFailed, 'replayed');
    assert.equal(new TextDecoder().decode(await receiver.decryptWithAd(none, m1)), 'second message');
    await sender.destroy();
    await receiver.destroy();
    await assert.rejects(sender.encryptWithAd(none, none), (e: unknown) => e instanceof NoiseError && e.code === NoiseErrorCode.INVALID_STATE);
  } finally {
    await handle.close();
    await device.close();
  }
});

test('cbc-hmac: the largest plaintext fills one 65535-byte frame at most, one byte more does not fit', () => {
  const max = cbcHmacMaxPlaintext(65535);
  assert.ok(cbcHmacSealedLength(max) <= 65535);
  assert.ok(cbcHmacSealedLength(max + 1) > 65535);
});

/**
 * A device like QEMU's virtio-crypto device seen from a guest: AES-CBC cipher sessions only; anything
 * else is ENOTSUP, as our driver answers for what the device config does not offer. Counts requests.
 */
function aesCbcOnly(inner: CryptoDevice): CryptoDevice & { readonly seen: string[] } {
  const seen: string[] = [];
  const wrap = (h: CryptoHandle): CryptoHandle => ({
    device: h.device,
    async createSession(opts: SessionOptions) {
      seen.push(opts.kind === 'cipher' ? `session ${opts.cipher}` : `session ${opts.kind}`);
      if (opts.kind !== 'cipher' || opts.cipher !== 'aes-cbc') throw new CryptoError('ENOTSUP', `the device does not offer ${opts.kind}`);
      return h.createSession(opts);
    },
    closeSession: (s) => h.closeSession(s),
    crypt: (s, r) => {
      seen.push(`crypt ${r.op}`);
      return h.crypt(s, r);
    },
    aead: async () => {
      throw new CryptoError('ENOTSUP', 'no aead');
    },
    digest: async () => {
      throw new CryptoError('ENOTSUP', 'no hash');
    },
    chain: async () => {
      throw new CryptoError('ENOTSUP', 'no chain');
    },
    close: () => h.close(),
  });
  return { info: inner.info, seen, open: async () => wrap(await inner.open()), close: () => inner.close() };
}

/** Feeds what `from` writes into `to`, until `n` whole messages came out. */
async function deliver(from: Socket, to: ChatChannel, n: number): Promise<Uint8Array[]> {
  const out: Uint8Array[] = [];
  for await (const chunk of from as AsyncIterable<Buffer>) {
    const got = await to.open(chunk);
    if (got.length > 0) out.push(got);
    if (out.length >= n) break;
  }
  return out;
}

test('cbc-hmac chat through an AES-CBC-only device: messages both ways, only AES-CBC reaches the device; aes-gcm there says to use --suite cbc-hmac', async () => {
  const inner = await createInProcessDevice();
  const device = aesCbcOnly(inner);
  const psk = randomBytes(32);
  try {
    const [c, s, cleanup] = await socketPair();
    try {
      const [client, server] = await Promise.all([
        secureChannel({ device, psk, suite: 'cbc-hmac' })(c, 'client'),
        secureChannel({ device, psk, suite: 'cbc-hmac' })(s, 'server'),
      ]);
      assert.match(client.status, /CBC_HMAC.*AES-256-CBC by .*virtio/);
      const big = randomBytes(200_000); // several fragments
      c.write(await client.seal(new TextEncoder().encode('hello from the client')));
      s.write(await server.seal(big));
      // The server's socket reads what the client's socket wrote (the pair is connected).
      const [toServer] = await deliver(s, server, 1);
      assert.equal(new TextDecoder().decode(toServer), 'hello from the client');
      const [toClient] = await deliver(c, client, 1);
      assert.deepEqual(Buffer.from(toClient!), big);
      client.close();
      server.close();
    } finally {
      await cleanup();
    }
    assert.ok(device.seen.includes('crypt encrypt') && device.seen.includes('crypt decrypt'), device.seen.join(','));
    assert.deepEqual([...new Set(device.seen)].sort(), ['crypt decrypt', 'crypt encrypt', 'session aes-cbc']);

    const [c2, s2, cleanup2] = await socketPair();
    try {
      const results = await Promise.allSettled([
        secureChannel({ device, psk, handshakeTimeoutMs: 3000 })(c2, 'client'),
        secureChannel({ device, psk, handshakeTimeoutMs: 3000 })(s2, 'server'),
      ]);
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        assert.ok(r.reason instanceof ChannelError);
      }
      const messages = results.map((r) => (r as PromiseRejectedResult).reason as Error).map((e) => e.message).join(' | ');
      assert.match(messages, /ENOTSUP.*--suite cbc-hmac/);
    } finally {
      await cleanup2();
    }
  } finally {
    await inner.close();
  }
});

test('cbc-hmac vs aes-gcm peers: each side names the other suite (no handshake is tried)', async () => {
  const device = createHostDevice();
  const psk = randomBytes(32);
  const [c, s, cleanup] = await socketPair();
  try {
    const results = await Promise.allSettled([
      secureChannel({ device, psk, suite: 'cbc-hmac', handshakeTimeoutMs: 3000 })(c, 'client'),
      secureChannel({ device, psk, suite: 'aes-gcm', handshakeTimeoutMs: 3000 })(s, 'server'),
    ]);
    const [rc, rs] = results as [PromiseRejectedResult, PromiseRejectedResult];
    assert.equal(rc.status, 'rejected');
    assert.equal(rs.status, 'rejected');
    assert.match((rc.reason as Error).message, /the server uses the suite aes-gcm; this side was started with --suite cbc-hmac/);
    assert.match((rs.reason as Error).message, /the client uses the suite cbc-hmac; this side was started with --suite aes-gcm/);
    assert.deepEqual([...hello(4, 'cbc-hmac')], [0x56, 0x43, 0x4e, 4, 2]);
  } finally {
    await cleanup();
    await device.close();
  }
});

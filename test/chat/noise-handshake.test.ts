/**
 * Noise handshake and transport failure behaviour (NNpsk0 through the session API): a wrong PSK, a
 * different prologue, a flipped bit, a replayed / reordered / dropped message, a low-order ephemeral and
 * malformed lengths all end in a NoiseError; every device session is closed afterwards.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { HandshakeState, type TransportKeys } from '../../src/chat/noise/handshake-state.js';
import { NoiseError, NoiseErrorCode } from '../../src/chat/noise/noise-error.js';
import { aesGcmNonce } from '../../src/chat/noise/cipher-state.js';
import { createHostDevice } from '../../src/driver/host-device.js';
import type { CryptoHandle, SessionOptions } from '../../src/driver/api.js';

/** Wraps a handle and counts what crosses the session API. */
function counting(inner: CryptoHandle) {
  const counts = { created: 0, closed: 0, digest: 0, aead: 0, kinds: new Set<SessionOptions['kind']>() };
  const handle: CryptoHandle = {
    device: inner.device,
    createSession: async (o) => {
      counts.created++;
      counts.kinds.add(o.kind);
      return inner.createSession(o);
    },
    closeSession: async (s) => {
      counts.closed++;
      return inner.closeSession(s);
    },
    digest: async (s, d) => {
      counts.digest++;
      return inner.digest(s, d);
    },
    aead: async (s, r) => {
      counts.aead++;
      return inner.aead(s, r);
    },
    crypt: (s, r) => inner.crypt(s, r),
    chain: (s, r) => inner.chain(s, r),
    close: () => inner.close(),
  };
  return { handle, counts };
}

const PROLOGUE = new TextEncoder().encode('test prologue');

async function withHandle(fn: (h: ReturnType<typeof counting>) => Promise<void>): Promise<void> {
  const device = createHostDevice();
  const inner = await device.open();
  try {
    await fn(counting(inner));
  } finally {
    await inner.close();
    await device.close();
  }
}

async function handshake(handle: CryptoHandle, pskI: Uint8Array, pskR = pskI, prologueR = PROLOGUE): Promise<[TransportKeys, TransportKeys]> {
  const i = await HandshakeState.initialize(handle, { pattern: 'NNpsk0', initiator: true, prologue: PROLOGUE, psk: pskI });
  const r = await HandshakeState.initialize(handle, { pattern: 'NNpsk0', initiator: false, prologue: prologueR, psk: pskR });
  try {
    await r.readMessage(await i.writeMessage(new Uint8Array(0)));
    await i.readMessage(await r.writeMessage(new Uint8Array(0)));
    return [await i.split(), await r.split()];
  } finally {
    await i.destroy();
    await r.destroy();
  }
}

async function destroyAll(...keys: TransportKeys[]): Promise<void> {
  for (const k of keys) {
    await k.send.destroy();
    await k.receive.destroy();
  }
}

const rejects = (p: Promise<unknown>, code: NoiseErrorCode) =>
  assert.rejects(p, (e: unknown) => e instanceof NoiseError && e.code === code);

test('aesGcmNonce: 4 zero bytes then the 64-bit counter big-endian (Noise §12.3)', () => {
  assert.deepEqual([...aesGcmNonce(0x0102030405060708n)], [0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8]);
  assert.deepEqual([...aesGcmNonce(0n)], new Array(12).fill(0));
});

test('a fresh NNpsk0 handshake gives matching keys; all crypto goes through the device; sessions are closed', async () => {
  await withHandle(async ({ handle, counts }) => {
    const psk = randomBytes(32);
    const [a, b] = await handshake(handle, psk);
    assert.deepEqual(a.handshakeHash, b.handshakeHash);
    const msg = new TextEncoder().encode('hello over noise');
    const ct = await a.send.encryptWithAd(new Uint8Array(0), msg);
    assert.equal(ct.length, msg.length + 16);
    assert.notDeepEqual(ct.subarray(0, msg.length), msg);
    assert.deepEqual(await b.receive.decryptWithAd(new Uint8Array(0), ct), msg);
    assert.deepEqual(await a.receive.decryptWithAd(new Uint8Array(0), await b.send.encryptWithAd(new Uint8Array(0), msg)), msg);
    await destroyAll(a, b);
    assert.deepEqual([...counts.kinds].sort(), ['aead', 'hash', 'mac']);
    assert.ok(counts.digest > 10 && counts.aead >= 6);
    assert.equal(counts.closed, counts.created, 'every device session closed');
    // The caller's PSK buffer is not touched (the handshake works on its own copy).
    assert.ok(psk.some((x) => x !== 0));
  });
});

test('wrong PSK: the responder fails to authenticate the first message', async () => {
  await withHandle(async ({ handle, counts }) => {
    await rejects(handshake(handle, randomBytes(32), randomBytes(32)), NoiseErrorCode.DECRYPT_FAILED);
    assert.equal(counts.closed, counts.created);
  });
});

test('a different prologue (protocol version) fails the handshake', async () => {
  await withHandle(async ({ handle }) => {
    const psk = randomBytes(32);
    await rejects(handshake(handle, psk, psk, new TextEncoder().encode('test prologue2')), NoiseErrorCode.DECRYPT_FAILED);
  });
});

test('handshake message tampering: a flipped bit in e, a truncated message, an oversize message', async () => {
  await withHandle(async ({ handle, counts }) => {
    const psk = randomBytes(32);
    for (const mutate of [
      (m: Uint8Array) => (m[3]! ^= 0x01, m),
      (m: Uint8Array) => (m[m.length - 1]! ^= 0x80, m),
      (m: Uint8Array) => m.subarray(0, 40),
    ]) {
      const i = await HandshakeState.initialize(handle, { pattern: 'NNpsk0', initiator: true, prologue: PROLOGUE, psk });
      const r = await HandshakeState.initialize(handle, { pattern: 'NNpsk0', initiator: false, prologue: PROLOGUE, psk });
      await rejects(r.readMessage(mutate(await i.writeMessage(new Uint8Array(0)))), NoiseErrorCode.DECRYPT_FAILED);
      await i.destroy();
      await r.destroy();
    }
    const r = await HandshakeState.initialize(handle, { pattern: 'NNpsk0', initiator: false, prologue: PROLOGUE, psk });
    await rejects(r.readMessage(new Uint8Array(31)), NoiseErrorCode.BAD_MESSAGE);
    await r.destroy();
    const r2 = await HandshakeState.initialize(handle, { pattern: 'NNpsk0', initiator: false, prologue: PROLOGUE, psk });
    await rejects(r2.readMessage(new Uint8Array(65536)), NoiseErrorCode.BAD_MESSAGE);
    await r2.destroy();
    assert.equal(counts.closed, counts.created);
  });
});

test('a low-order ephemeral (all-zero point) is refused, not used', async () => {
  await withHandle(async ({ handle }) => {
    const i = await HandshakeState.initialize(handle, { pattern: 'NN', initiator: true, prologue: PROLOGUE });
    await i.writeMessage(new Uint8Array(0));
    // RFC 7748 §6.1: u = 0 gives an all-zero shared secret.
    await rejects(i.readMessage(new Uint8Array(48)), NoiseErrorCode.BAD_KEY);
    await i.destroy();
  });
});

test('out-of-turn calls and a PSK of the wrong size are refused', async () => {
  await withHandle(async ({ handle }) => {
    const i = await HandshakeState.initialize(handle, { pattern: 'NN', initiator: true, prologue: PROLOGUE });
    await rejects(i.readMessage(new Uint8Array(48)), NoiseErrorCode.INVALID_STATE);
    await rejects(i.split(), NoiseErrorCode.INVALID_STATE);
    await i.destroy();
    await rejects(HandshakeState.initialize(handle, { pattern: 'NNpsk0', initiator: true, prologue: PROLOGUE, psk: new Uint8Array(31) }), NoiseErrorCode.BAD_KEY);
  });
});

test('transport: a flipped bit, a replayed, a reordered and a dropped message are all rejected', async () => {
  await withHandle(async ({ handle }) => {
    const ad = new Uint8Array(0);
    const enc = (s: string) => new TextEncoder().encode(s);
    const psk = randomBytes(32);

    let [a, b] = await handshake(handle, psk);
    const c0 = await a.send.encryptWithAd(ad, enc('zero'));
    const flipped = c0.slice();
    flipped[1]! ^= 0x04;
    await rejects(b.receive.decryptWithAd(ad, flipped), NoiseErrorCode.DECRYPT_FAILED);
    // §5.1: a failed decrypt does not advance n, so the genuine message still decrypts.
    assert.equal(new TextDecoder().decode(await b.receive.decryptWithAd(ad, c0)), 'zero');
    await rejects(b.receive.decryptWithAd(ad, c0), NoiseErrorCode.DECRYPT_FAILED); // replay
    await destroyAll(a, b);

    [a, b] = await handshake(handle, psk);
    const m0 = await a.send.encryptWithAd(ad, enc('first'));
    const m1 = await a.send.encryptWithAd(ad, enc('second'));
    await rejects(b.receive.decryptWithAd(ad, m1), NoiseErrorCode.DECRYPT_FAILED); // reordered / m0 dropped
    assert.equal(new TextDecoder().decode(await b.receive.decryptWithAd(ad, m0)), 'first');
    await rejects(b.receive.decryptWithAd(ad, m1.subarray(0, m1.length - 1)), NoiseErrorCode.DECRYPT_FAILED); // truncated
    await rejects(b.receive.decryptWithAd(ad, new Uint8Array(15)), NoiseErrorCode.DECRYPT_FAILED);
    // A message from another session (same PSK, fresh ephemerals) never decrypts.
    const [x, y] = await handshake(handle, psk);
    await rejects(b.receive.decryptWithAd(ad, await x.send.encryptWithAd(ad, enc('second'))), NoiseErrorCode.DECRYPT_FAILED);
    await destroyAll(a, b, x, y);
  });
});

test('CipherState: concurrent first uses share one lazily created session (never the no-key passthrough)', async () => {
  await withHandle(async ({ handle, counts }) => {
    const { CipherState } = await import('../../src/chat/noise/cipher-state.js');
    const c = new CipherState(handle);
    const d = new CipherState(handle);
    const key = randomBytes(32);
    await c.initializeKey(Uint8Array.from(key));
    await d.initializeKey(Uint8Array.from(key));
    assert.ok(c.hasKey());
    const msg = new TextEncoder().encode('same plaintext');
    const [x, y] = await Promise.all([c.encryptWithAd(new Uint8Array(0), msg), c.encryptWithAd(new Uint8Array(0), msg)]);
    assert.equal(x.length, msg.length + 16);
    assert.equal(y.length, msg.length + 16);
    assert.notDeepEqual(x, y, 'distinct nonces');
    assert.deepEqual(await d.decryptWithAd(new Uint8Array(0), x), msg);
    assert.deepEqual(await d.decryptWithAd(new Uint8Array(0), y), msg);
    // Independent oracle: AES-256-GCM with nonce 0 from node:crypto.
    const { createCipheriv } = await import('node:crypto');
    const g = createCipheriv('aes-256-gcm', key, aesGcmNonce(0n));
    const expected = Buffer.concat([g.update(msg), g.final(), g.getAuthTag()]);
    assert.deepEqual(Buffer.from(x), expected);
    await c.destroy();
    await d.destroy();
    assert.equal(counts.created, 2);
    assert.equal(counts.closed, 2);
  });
});

test('a destroyed handshake refuses every further call and does not look complete', async () => {
  await withHandle(async ({ handle }) => {
    const i = await HandshakeState.initialize(handle, { pattern: 'NN', initiator: true, prologue: PROLOGUE });
    await i.destroy();
    assert.equal(i.isComplete, false);
    await rejects(i.writeMessage(new Uint8Array(0)), NoiseErrorCode.INVALID_STATE);
    await rejects(i.split(), NoiseErrorCode.INVALID_STATE);
    await i.destroy(); // idempotent
  });
});

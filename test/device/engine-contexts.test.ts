/**
 * The engine keeps one OpenSSL context per session and direction for AES-ECB/CBC and applies each
 * request's IV by a first-block fix-up (engine.ts, runCipherPieces). Oracle: a fresh node:crypto
 * context per request (createCipheriv/createDecipheriv with the request's own IV), which is what
 * CBC means; and the NIST SP 800-38A CBC vectors, split over consecutive requests.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv } from 'node:crypto';
import fc from 'fast-check';
import { EngineSession, newChainSession, newCipherSession, runCipher, runCipherPieces } from '../../src/device/engine.js';
import { VIRTIO_CRYPTO_CIPHER, VIRTIO_CRYPTO_OP } from '../../src/spec/virtio-crypto.js';
import { hex as bytes } from '../fixtures/bytes.js';
import { CBC_IV, KEYS, NIST, PLAIN_HEX } from '../fixtures/nist-sp800-38a.js';

const hex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

const ECB = VIRTIO_CRYPTO_CIPHER.VIRTIO_CRYPTO_CIPHER_AES_ECB;
const CBC = VIRTIO_CRYPTO_CIPHER.VIRTIO_CRYPTO_CIPHER_AES_CBC;
const CTR = VIRTIO_CRYPTO_CIPHER.VIRTIO_CRYPTO_CIPHER_AES_CTR;
const ENCRYPT = VIRTIO_CRYPTO_OP.VIRTIO_CRYPTO_OP_ENCRYPT;

function fresh(alg: number, key: Uint8Array, encrypt: boolean, iv: Uint8Array, src: Uint8Array): Buffer {
  const mode = alg === ECB ? 'ecb' : alg === CBC ? 'cbc' : 'ctr';
  const name = `aes-${key.length * 8}-${mode}`;
  const c = encrypt ? createCipheriv(name, key, mode === 'ecb' ? null : iv) : createDecipheriv(name, key, mode === 'ecb' ? null : iv);
  c.setAutoPadding(false);
  return Buffer.concat([c.update(src), c.final()]);
}

function session(alg: number, key: Uint8Array): EngineSession {
  const s = newCipherSession(alg, key, ENCRYPT);
  assert.ok(s instanceof EngineSession);
  return s;
}

const request = fc.record({
  encrypt: fc.boolean(),
  iv: fc.uint8Array({ minLength: 16, maxLength: 16 }),
  blocks: fc.integer({ min: 0, max: 12 }),
  seed: fc.integer({ min: 0, max: 255 }),
});

test('AES-CBC/ECB/CTR: any sequence of encrypt and decrypt requests on one session equals a fresh context per request', () => {
  fc.assert(
    fc.property(
      fc.constantFrom(ECB, CBC, CTR),
      fc.constantFrom(16, 24, 32),
      fc.uint8Array({ minLength: 32, maxLength: 32 }),
      fc.array(request, { minLength: 1, maxLength: 12 }),
      (alg, keyLen, keyBytes, requests) => {
        const key = keyBytes.subarray(0, keyLen);
        const s = session(alg, key);
        for (const r of requests) {
          const src = Uint8Array.from({ length: r.blocks * 16 }, (_, i) => (i * 31 + r.seed) & 0xff);
          const want = fresh(alg, key, r.encrypt, r.iv, src);
          const iv = alg === ECB ? null : r.iv;
          // Both entry points advance the same contexts: alternate them.
          let got: Buffer;
          if (r.seed % 2 === 0) {
            got = runCipher(s, r.encrypt, iv, src);
          } else {
            const p = runCipherPieces(s, r.encrypt, iv, src);
            assert.equal(p.head.length + p.body.length, src.length);
            got = Buffer.concat([p.head, p.body]);
          }
          assert.equal(hex(got), hex(want));
        }
      },
    ),
    { numRuns: 300 },
  );
});

test('NIST SP 800-38A F.2.1/F.2.2 (CBC-AES128): the four blocks as four requests, each with the previous ciphertext block as IV, on one session', () => {
  const v = { key: bytes(KEYS[128]), iv: bytes(CBC_IV), plaintext: bytes(PLAIN_HEX), ciphertext: bytes(NIST['aes-cbc'][128]) };
  const enc = session(CBC, v.key);
  const dec = session(CBC, v.key);
  let iv = v.iv;
  for (let i = 0; i < 4; i++) {
    const p = v.plaintext.subarray(i * 16, i * 16 + 16);
    const c = v.ciphertext.subarray(i * 16, i * 16 + 16);
    assert.equal(hex(runCipher(enc, true, iv, p)), hex(c), `encrypt block ${i + 1}`);
    assert.equal(hex(runCipher(dec, false, iv, c)), hex(p), `decrypt block ${i + 1}`);
    iv = c;
  }
  // And the same vector whole, on the same (now long-used) contexts, with the vector's own IV.
  assert.equal(hex(runCipher(enc, true, v.iv, v.plaintext)), hex(v.ciphertext));
  assert.equal(hex(runCipher(dec, false, v.iv, v.ciphertext)), hex(v.plaintext));
});

test('CBC decrypt in place: the source may be overwritten by the result right after the call (the next request still decrypts right)', () => {
  const key = Uint8Array.from({ length: 16 }, (_, i) => i);
  const iv1 = new Uint8Array(16).fill(1);
  const iv2 = new Uint8Array(16).fill(2);
  const p = Uint8Array.from({ length: 64 }, (_, i) => i * 7);
  const s = session(CBC, key);
  const buf = new Uint8Array(fresh(CBC, key, true, iv1, p));
  const { head, body } = runCipherPieces(s, false, iv1, buf);
  buf.set(head, 0); // the device writes dst over src (aliasing)
  buf.set(body, head.length);
  assert.equal(hex(buf), hex(p));
  const c2 = fresh(CBC, key, true, iv2, p);
  assert.equal(hex(runCipher(s, false, iv2, c2)), hex(p));
});

test('chaining sessions (cipher + hash) share the CBC contexts and stay exact; wipe drops the contexts', () => {
  const key = new Uint8Array(16).fill(5);
  const s = newChainSession({ cipherAlg: CBC, key, op: ENCRYPT, algChainOrder: 1, hashMode: 1, hashAlg: 4, hashResultLen: 32, authKey: new Uint8Array(0), aadLen: 0 });
  assert.ok(s instanceof EngineSession);
  for (let n = 1; n <= 3; n++) {
    const iv = new Uint8Array(16).fill(n);
    const src = new Uint8Array(32 * n).fill(n);
    assert.equal(hex(runCipher(s, true, iv, src)), hex(fresh(CBC, key, true, iv, src)));
  }
  assert.ok(s.encCtx !== null);
  s.wipe();
  assert.equal(s.encCtx, null);
  assert.equal(s.decCtx, null);
  assert.throws(() => runCipher(s, true, new Uint8Array(16), new Uint8Array(16)), /wiped/);
});

test('a CBC stream chained over requests (each IV = the last ciphertext block before it), several blocks each, equals one CBC pass', () => {
  const key = Uint8Array.from({ length: 32 }, (_, i) => 255 - i);
  const iv0 = Uint8Array.from({ length: 16 }, (_, i) => i * 3);
  const p = Uint8Array.from({ length: 16 * 40 }, (_, i) => (i * 13) & 0xff);
  const whole = fresh(CBC, key, true, iv0, p);
  const enc = session(CBC, key);
  const dec = session(CBC, key);
  const cuts = [0, 48, 64, 160, 176, 400, 640];
  let iv: Uint8Array = iv0;
  for (let k = 0; k + 1 < cuts.length; k++) {
    const c = runCipher(enc, true, iv, p.subarray(cuts[k], cuts[k + 1]));
    assert.equal(hex(c), hex(whole.subarray(cuts[k], cuts[k + 1])), `encrypt piece ${k}`);
    assert.equal(hex(runCipher(dec, false, iv, c)), hex(p.subarray(cuts[k], cuts[k + 1])), `decrypt piece ${k}`);
    iv = c.subarray(c.length - 16);
  }
  // Then a request with an unrelated IV on the same contexts.
  const iv2 = new Uint8Array(16).fill(0xee);
  assert.equal(hex(runCipher(enc, true, iv2, p)), hex(fresh(CBC, key, true, iv2, p)));
});

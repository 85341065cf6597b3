/**
 * The `host` device against independent oracles: NIST SP 800-38A (AES ECB/CBC/CTR, Appendix F),
 * IEEE 1619 (XTS), the GCM specification's test cases (McGrew & Viega, = NIST GCM vectors), RFC 4231
 * (HMAC-SHA2), FIPS 180 "abc" examples; plus the cryptodev semantics (errors, writeIv, ownership).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createHostDevice } from '../../src/driver/host-device.js';
import { CryptoError, type CryptoHandle } from '../../src/driver/api.js';
import { ctrAdd, nextIv } from '../../src/driver/cryptodev-semantics.js';
import { CBC_IV, CTR_IV, KEYS, NIST, PLAIN_HEX } from '../fixtures/nist-sp800-38a.js';
import { hex } from '../fixtures/bytes.js';
import { FIPS180_ABC } from '../fixtures/fips180.js';

const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

// NIST SP 800-38A Appendix F.
const PLAIN = hex(PLAIN_HEX);

async function withHandle(fn: (h: CryptoHandle) => Promise<void>): Promise<void> {
  const dev = createHostDevice();
  const h = await dev.open();
  try {
    await fn(h);
  } finally {
    await dev.close();
  }
}

function rejectsWith(p: Promise<unknown>, code: CryptoError['code']): Promise<void> {
  return assert.rejects(p, (err: unknown) => err instanceof CryptoError && err.code === code);
}

for (const cipher of ['aes-ecb', 'aes-cbc', 'aes-ctr'] as const) {
  for (const bits of [128, 192, 256] as const) {
    test(`NIST SP 800-38A ${cipher} AES-${bits}: encrypt and decrypt`, () =>
      withHandle(async (h) => {
        const s = await h.createSession({ kind: 'cipher', cipher, key: hex(KEYS[bits]) });
        const iv = cipher === 'aes-ecb' ? undefined : hex(cipher === 'aes-ctr' ? CTR_IV : CBC_IV);
        const expected = hex(NIST[cipher][bits]);
        const enc = await h.crypt(s, { op: 'encrypt', src: PLAIN, iv });
        assert.equal(toHex(enc.dst), toHex(expected));
        const dec = await h.crypt(s, { op: 'decrypt', src: expected, iv });
        assert.equal(toHex(dec.dst), toHex(PLAIN));
        await h.closeSession(s);
      }));

    test(`NIST SP 800-38A ${cipher} AES-${bits}: block by block with writeIv equals one shot`, () =>
      withHandle(async (h) => {
        const s = await h.createSession({ kind: 'cipher', cipher, key: hex(KEYS[bits]) });
        const expected = hex(NIST[cipher][bits]);
        for (const op of ['encrypt', 'decrypt'] as const) {
          let iv: Uint8Array | undefined = cipher === 'aes-ecb' ? undefined : hex(cipher === 'aes-ctr' ? CTR_IV : CBC_IV);
          const input = op === 'encrypt' ? PLAIN : expected;
          const parts: Uint8Array[] = [];
          for (let off = 0; off < input.length; off += 16) {
            const r = await h.crypt(s, { op, src: input.subarray(off, off + 16), iv, writeIv: true });
            assert.ok(r.iv, 'writeIv returns an IV');
            parts.push(r.dst);
            iv = r.iv.length === 0 ? undefined : r.iv;
          }
          assert.equal(Buffer.concat(parts).toString('hex'), toHex(op === 'encrypt' ? expected : PLAIN));
        }
      }));
  }
}

test('writeIv values by hand: CBC returns the last ciphertext block, CTR the counter + ceil(len/16), ECB none', () =>
  withHandle(async (h) => {
    const cbc = await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: hex(KEYS[128]) });
    const ct = hex(NIST['aes-cbc'][128]);
    const e = await h.crypt(cbc, { op: 'encrypt', src: PLAIN, iv: hex(CBC_IV), writeIv: true });
    assert.equal(toHex(e.iv!), '3ff1caa1681fac09120eca307586e1a7');
    const d = await h.crypt(cbc, { op: 'decrypt', src: ct, iv: hex(CBC_IV), writeIv: true });
    assert.equal(toHex(d.iv!), '3ff1caa1681fac09120eca307586e1a7');
    const ctr = await h.createSession({ kind: 'cipher', cipher: 'aes-ctr', key: hex(KEYS[128]) });
    const c = await h.crypt(ctr, { op: 'encrypt', src: new Uint8Array(33), iv: hex(CTR_IV), writeIv: true });
    assert.equal(toHex(c.iv!), 'f0f1f2f3f4f5f6f7f8f9fafbfcfdff02'); // +3 blocks, carry into byte 14
    const ecb = await h.createSession({ kind: 'cipher', cipher: 'aes-ecb', key: hex(KEYS[128]) });
    const b = await h.crypt(ecb, { op: 'encrypt', src: PLAIN, writeIv: true });
    assert.equal(b.iv!.length, 0);
  }));

test('ctrAdd: 128-bit big-endian with carry and wrap-around', () => {
  assert.equal(toHex(ctrAdd(hex('000000000000000000000000000000ff'), 1)), '00000000000000000000000000000100');
  assert.equal(toHex(ctrAdd(hex('ffffffffffffffffffffffffffffffff'), 1)), '00000000000000000000000000000000');
  assert.equal(toHex(ctrAdd(hex('fffffffffffffffffffffffffffffffe'), 3)), '00000000000000000000000000000001');
  assert.equal(toHex(ctrAdd(hex('00000000000000000000000000000000'), 0x1_0000_0001)), '00000000000000000000000100000001');
  assert.equal(toHex(nextIv('aes-cbc', 'encrypt', hex(CBC_IV), new Uint8Array(0), new Uint8Array(0))), CBC_IV);
});

test('CTR across the 2^128 wrap: two requests chained by writeIv equal one request', () =>
  withHandle(async (h) => {
    const s = await h.createSession({ kind: 'cipher', cipher: 'aes-ctr', key: hex(KEYS[256]) });
    const iv = hex('ffffffffffffffffffffffffffffffff');
    const data = new Uint8Array(48).map((_, i) => i);
    const whole = await h.crypt(s, { op: 'encrypt', src: data, iv });
    const a = await h.crypt(s, { op: 'encrypt', src: data.subarray(0, 16), iv, writeIv: true });
    assert.equal(toHex(a.iv!), '00000000000000000000000000000000');
    const b = await h.crypt(s, { op: 'encrypt', src: data.subarray(16), iv: a.iv });
    assert.equal(toHex(Buffer.concat([a.dst, b.dst])), toHex(whole.dst));
  }));

test('IEEE 1619 XTS-AES-128 vector 2', () =>
  withHandle(async (h) => {
    const key = hex('1111111111111111111111111111111122222222222222222222222222222222');
    const s = await h.createSession({ kind: 'cipher', cipher: 'aes-xts', key });
    const tweak = hex('33333333330000000000000000000000');
    const pt = new Uint8Array(32).fill(0x44);
    const r = await h.crypt(s, { op: 'encrypt', src: pt, iv: tweak });
    assert.equal(toHex(r.dst), 'c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0');
    assert.equal(toHex((await h.crypt(s, { op: 'decrypt', src: r.dst, iv: tweak })).dst), toHex(pt));
    await rejectsWith(h.crypt(s, { op: 'encrypt', src: new Uint8Array(15), iv: tweak }), 'EINVAL');
    await rejectsWith(h.crypt(s, { op: 'encrypt', src: pt, iv: tweak, writeIv: true }), 'ENOTSUP');
  }));

// RFC 4231 §4.2 (test case 1) and §4.3 (test case 2).
const RFC4231 = [
  {
    key: '0b'.repeat(20),
    data: Buffer.from('Hi There'),
    sha224: '896fb1128abbdf196832107cd49df33f47b4b1169912ba4f53684b22',
    sha256: 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
    sha384: 'afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6',
    sha512: '87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854',
  },
  {
    key: Buffer.from('Jefe').toString('hex'),
    data: Buffer.from('what do ya want for nothing?'),
    sha224: 'a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44',
    sha256: '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    sha384: 'af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649',
    sha512: '164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737',
  },
] as const;

for (const [i, tc] of RFC4231.entries()) {
  for (const hash of ['sha224', 'sha256', 'sha384', 'sha512'] as const) {
    test(`RFC 4231 test case ${i + 1} HMAC-${hash}`, () =>
      withHandle(async (h) => {
        const s = await h.createSession({ kind: 'mac', hash, key: hex(tc.key) });
        assert.equal(toHex(await h.digest(s, tc.data)), tc[hash]);
      }));
  }
}

test('FIPS 180 "abc" digests', () =>
  withHandle(async (h) => {
    for (const [hash, digest] of Object.entries(FIPS180_ABC) as [keyof typeof FIPS180_ABC, string][]) {
      const s = await h.createSession({ kind: 'hash', hash });
      assert.equal(toHex(await h.digest(s, Buffer.from('abc'))), digest);
    }
  }));

// The GCM specification (McGrew & Viega) test cases 3 and 4 (AES-128).
const GCM_KEY = 'feffe9928665731c6d6a8f9467308308';
const GCM_IV = 'cafebabefacedbaddecaf888';
const GCM_P = 'd9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255';
const GCM_C = '42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985';

test('AES-GCM test cases 3 and 4: encrypt, decrypt, tag mismatch → EBADMSG', () =>
  withHandle(async (h) => {
    const s = await h.createSession({ kind: 'aead', aead: 'aes-gcm', key: hex(GCM_KEY) });
    const r3 = await h.aead(s, { op: 'encrypt', src: hex(GCM_P), iv: hex(GCM_IV) });
    assert.equal(toHex(r3.dst), GCM_C);
    assert.equal(toHex(r3.tag!), '4d5c2af327cd64a62cf35abd2ba6fab4');
    const aad = hex('feedfacedeadbeeffeedfacedeadbeefabaddad2');
    const p4 = hex(GCM_P).subarray(0, 60);
    const r4 = await h.aead(s, { op: 'encrypt', src: p4, iv: hex(GCM_IV), aad });
    assert.equal(toHex(r4.dst), GCM_C.slice(0, 120));
    assert.equal(toHex(r4.tag!), '5bc94fbc3221a5db94fae95ae7121a47');
    const back = await h.aead(s, { op: 'decrypt', src: r4.dst, iv: hex(GCM_IV), aad, tag: r4.tag! });
    assert.equal(toHex(back.dst), toHex(p4));
    const badTag = r4.tag!.slice();
    badTag[0]! ^= 1;
    await rejectsWith(h.aead(s, { op: 'decrypt', src: r4.dst, iv: hex(GCM_IV), aad, tag: badTag }), 'EBADMSG');
    await rejectsWith(h.aead(s, { op: 'decrypt', src: r4.dst, iv: hex(GCM_IV), tag: r4.tag! }), 'EBADMSG'); // AAD dropped
    await rejectsWith(h.aead(s, { op: 'decrypt', src: r4.dst, iv: hex(GCM_IV), aad }), 'EINVAL'); // no tag
    await rejectsWith(h.aead(s, { op: 'encrypt', src: p4, iv: new Uint8Array(16) }), 'EINVAL');
  }));

test('chaining AES-CBC + HMAC-SHA256: encrypt-then-MAC is CBC (NIST) then HMAC over the ciphertext', () =>
  withHandle(async (h) => {
    const macKey = hex('0b'.repeat(20));
    const enc = await h.createSession({ kind: 'chain', cipher: 'aes-cbc', key: hex(KEYS[128]), hash: 'sha256', macKey, order: 'cipher-then-hash', op: 'encrypt' });
    const r = await h.chain(enc, { src: PLAIN, iv: hex(CBC_IV) });
    assert.equal(toHex(r.dst), NIST['aes-cbc'][128].replace(/ /g, ''));
    const macSession = await h.createSession({ kind: 'mac', hash: 'sha256', key: macKey });
    assert.equal(toHex(r.mac!), toHex(await h.digest(macSession, r.dst)));
    const dec = await h.createSession({ kind: 'chain', cipher: 'aes-cbc', key: hex(KEYS[128]), hash: 'sha256', macKey, order: 'hash-then-cipher', op: 'decrypt' });
    assert.equal(toHex((await h.chain(dec, { src: r.dst, iv: hex(CBC_IV), mac: r.mac! })).dst), toHex(PLAIN));
    const bad = r.mac!.slice();
    bad[31]! ^= 0x80;
    await rejectsWith(h.chain(dec, { src: r.dst, iv: hex(CBC_IV), mac: bad }), 'EBADMSG');
    await rejectsWith(h.chain(dec, { src: r.dst, iv: hex(CBC_IV) }), 'EINVAL');
  }));

test('errors: bad key length, CBC/ECB length, missing IV, wrong session kind, unsupported → typed codes', () =>
  withHandle(async (h) => {
    await rejectsWith(h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: new Uint8Array(15) }), 'EINVAL');
    await rejectsWith(h.createSession({ kind: 'cipher', cipher: 'aes-xts', key: new Uint8Array(16) }), 'EINVAL');
    await rejectsWith(h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: new Uint8Array(128) }), 'ENOSPC');
    await rejectsWith(h.createSession({ kind: 'aead', aead: 'aes-gcm', key: new Uint8Array(16), tagLength: 3 }), 'EINVAL');
    await rejectsWith(h.createSession(JSON.parse('{"kind":"cipher","cipher":"des-cbc","key":{}}')), 'ENOTSUP');
    await rejectsWith(h.createSession(JSON.parse('{"kind":"hash","hash":"md5"}')), 'ENOTSUP');
    await rejectsWith(h.createSession(JSON.parse('{"kind":"rsa"}')), 'ENOTSUP');
    const cbc = await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: hex(KEYS[128]) });
    await rejectsWith(h.crypt(cbc, { op: 'encrypt', src: new Uint8Array(17), iv: hex(CBC_IV) }), 'EINVAL');
    await rejectsWith(h.crypt(cbc, { op: 'encrypt', src: new Uint8Array(16) }), 'EINVAL');
    await rejectsWith(h.crypt(cbc, { op: 'encrypt', src: new Uint8Array(16), iv: new Uint8Array(8) }), 'EINVAL');
    await rejectsWith(h.digest(cbc, new Uint8Array(1)), 'EINVAL');
    const ecb = await h.createSession({ kind: 'cipher', cipher: 'aes-ecb', key: hex(KEYS[128]) });
    await rejectsWith(h.crypt(ecb, { op: 'decrypt', src: new Uint8Array(31) }), 'EINVAL');
    const ctr = await h.createSession({ kind: 'cipher', cipher: 'aes-ctr', key: hex(KEYS[128]) });
    assert.equal((await h.crypt(ctr, { op: 'encrypt', src: new Uint8Array(5), iv: hex(CTR_IV) })).dst.length, 5);
    const sha = await h.createSession({ kind: 'hash', hash: 'sha256' });
    await rejectsWith(h.crypt(sha, { op: 'encrypt', src: new Uint8Array(16), iv: hex(CBC_IV) }), 'EINVAL');
  }));

test('sessions belong to their handle: another handle gets ENOENT; closing frees them; closed handle → EBADF', async () => {
  const dev = createHostDevice();
  const a = await dev.open();
  const b = await dev.open();
  const key = hex(KEYS[128]);
  const s = await a.createSession({ kind: 'cipher', cipher: 'aes-cbc', key });
  key.fill(0); // the device keeps its own copy
  const r = await a.crypt(s, { op: 'encrypt', src: PLAIN, iv: hex(CBC_IV) });
  assert.equal(toHex(r.dst), NIST['aes-cbc'][128].replace(/ /g, ''));
  await rejectsWith(b.crypt(s, { op: 'encrypt', src: PLAIN, iv: hex(CBC_IV) }), 'ENOENT');
  await rejectsWith(b.closeSession(s), 'ENOENT');
  await a.closeSession(s);
  await rejectsWith(a.crypt(s, { op: 'encrypt', src: PLAIN, iv: hex(CBC_IV) }), 'ENOENT');
  await rejectsWith(a.closeSession(s), 'ENOENT');
  const s2 = await a.createSession({ kind: 'hash', hash: 'sha1' });
  await a.close();
  await a.close(); // idempotent
  await rejectsWith(a.digest(s2, new Uint8Array(1)), 'EBADF');
  await rejectsWith(a.createSession({ kind: 'hash', hash: 'sha1' }), 'EBADF');
  // b is unaffected by a's close
  const s3 = await b.createSession({ kind: 'hash', hash: 'sha1' });
  assert.equal(toHex(await b.digest(s3, Buffer.from('abc'))), FIPS180_ABC.sha1);
  await dev.close();
  await rejectsWith(b.digest(s3, new Uint8Array(1)), 'EBADF');
  await rejectsWith(dev.open(), 'EBADF');
});

test('property: ctrAdd equals BigInt arithmetic modulo 2^128', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), fc.nat({ max: Number.MAX_SAFE_INTEGER }), (counter, blocks) => {
      const expected = (BigInt('0x' + toHex(counter)) + BigInt(blocks)) % (1n << 128n);
      assert.equal(toHex(ctrAdd(counter, blocks)), expected.toString(16).padStart(32, '0'));
    }),
    { numRuns: 500 },
  );
});

test('property: a message cut anywhere (on block boundaries) and chained with writeIv equals the one-shot result', async () => {
  const dev = createHostDevice();
  const h = await dev.open();
  try {
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom('aes-cbc' as const, 'aes-ctr' as const, 'aes-ecb' as const),
        fc.constantFrom('encrypt' as const, 'decrypt' as const),
        fc.uint8Array({ minLength: 16, maxLength: 16 }),
        fc.integer({ min: 0, max: 40 }),
        fc.array(fc.integer({ min: 0, max: 40 }), { maxLength: 6 }),
        async (cipher, op, iv0, blocks, cuts) => {
          const s = await h.createSession({ kind: 'cipher', cipher, key: hex(KEYS[192]) });
          const data = new Uint8Array(blocks * 16).map((_, i) => (i * 31 + blocks) & 0xff);
          const iv = cipher === 'aes-ecb' ? undefined : iv0;
          const whole = await h.crypt(s, { op, src: data, iv });
          const points = [...new Set([0, ...cuts.map((c) => Math.min(c, blocks) * 16), data.length])].sort((a, b) => a - b);
          let next: Uint8Array | undefined = iv;
          const parts: Uint8Array[] = [];
          for (let i = 0; i + 1 < points.length; i++) {
            const r = await h.crypt(s, { op, src: data.subarray(points[i], points[i + 1]), iv: next, writeIv: true });
            parts.push(r.dst);
            next = cipher === 'aes-ecb' ? undefined : r.iv;
          }
          assert.equal(toHex(Buffer.concat(parts)), toHex(whole.dst));
          await h.closeSession(s);
        },
      ),
      { numRuns: 200 },
    );
  } finally {
    await dev.close();
  }
});

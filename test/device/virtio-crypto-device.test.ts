/**
 * The device model against independent oracles, through its virtio interface (controlq + dataq
 * byte layouts): NIST SP 800-38A (AES ECB/CBC/CTR), IEEE 1619 (XTS), the GCM spec test cases
 * (McGrew & Viega = NIST GCM), RFC 4231 / RFC 2202 (HMAC), FIPS 180 (SHA), `openssl dgst` for
 * chaining; the config space against bytes written by hand from §5.9.5.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { VirtioCryptoDevice } from '../../src/device/virtio-crypto-device.js';
import {
  encodeAeadCreateSessionReq,
  encodeAlgChainCreateSessionReq,
  encodeAlgChainDataReq,
  encodeCipherCreateSessionReq,
  encodeHashCreateSessionReq,
  encodeMacCreateSessionReq,
} from '../../src/wire/virtio-crypto.js';
import { aeadReq, cipherReq, concat, ctrlCreate, ctrlCreateOk, hashReq, hex, makeChain, toHex } from './helpers.js';
import { CBC_IV as CBC_IV_HEX, CTR_IV as CTR_IV_HEX, KEYS, NIST as NIST_38A, PLAIN_HEX } from '../fixtures/nist-sp800-38a.js';
import { FIPS180_ABC } from '../fixtures/fips180.js';

const ENCRYPT = 0x000;
const DECRYPT = 0x001;
const HASH = 0x100;
const MAC = 0x200;
const AEAD_ENCRYPT = 0x300;
const AEAD_DECRYPT = 0x301;
const ALG = { ECB: 2, CBC: 3, CTR: 4, XTS: 13 } as const;

const dev = (): VirtioCryptoDevice => new VirtioCryptoDevice({ maxDataQueues: 2 });

test('config space: exactly the advertised services, algorithms, limits (bytes by hand, §5.9.5)', () => {
  const d = new VirtioCryptoDevice({ maxDataQueues: 3, maxSize: 65536 });
  assert.equal(
    toHex(d.configSpace()),
    [
      '01000000', // status = VIRTIO_CRYPTO_S_HW_READY
      '03000000', // max_dataqueues
      '0f000000', // crypto_services: CIPHER(0) HASH(1) MAC(2) AEAD(3)
      '1c200000', // cipher_algo_l: AES_ECB(2) AES_CBC(3) AES_CTR(4) AES_XTS(13)
      '00000000', // cipher_algo_h
      '7c000000', // hash_algo: SHA1(2) SHA_224(3) SHA_256(4) SHA_384(5) SHA_512(6)
      '7c000000', // mac_algo_l: HMAC_SHA1(2) .. HMAC_SHA_512(6)
      '00000000', // mac_algo_h
      '02000000', // aead_algo: GCM(1)
      '40000000', // max_cipher_key_len 64 (AES-256-XTS)
      '00020000', // max_auth_key_len 512
      '00000000', // reserved
      '0000010000000000', // max_size 65536
    ].join(''),
  );
  assert.throws(() => new VirtioCryptoDevice({ maxDataQueues: 0 }), RangeError);
  assert.throws(() => new VirtioCryptoDevice({ maxDataQueues: 65536 }), RangeError);
});

// NIST SP 800-38A Appendix F.
const PLAIN = hex(PLAIN_HEX);
const CBC_IV = hex(CBC_IV_HEX);
const CTR_IV = hex(CTR_IV_HEX);
const NIST = { ECB: NIST_38A['aes-ecb'], CBC: NIST_38A['aes-cbc'], CTR: NIST_38A['aes-ctr'] } as const;

for (const mode of ['ECB', 'CBC', 'CTR'] as const) {
  for (const bits of [128, 192, 256] as const) {
    test(`NIST SP 800-38A AES-${bits}-${mode} through the dataq (contiguous, split, duplicated)`, () => {
      const d = dev();
      const key = hex(KEYS[bits]);
      const id = ctrlCreateOk(d, encodeCipherCreateSessionReq({ algo: ALG[mode], keyLen: key.length, op: 1 }), key);
      const iv = mode === 'ECB' ? new Uint8Array(0) : mode === 'CTR' ? CTR_IV : CBC_IV;
      const ct = hex(NIST[mode][bits]);
      const shapes = [
        {},
        { hdrCut: 5, srcCuts: [7, 33], dstCuts: [1, 50] }, // byte-granular, splitting AES blocks
        { srcCuts: [12, 33], dstCuts: [21], dup: true }, // Linux's duplicated sg entries
      ];
      for (const shape of shapes) {
        const e = cipherReq(d, ENCRYPT, id, iv, PLAIN, shape);
        assert.equal(e.status, 0, JSON.stringify(shape));
        assert.equal(toHex(e.out), toHex(ct), JSON.stringify(shape));
        const dd = cipherReq(d, DECRYPT, id, iv, ct, shape);
        assert.equal(dd.status, 0);
        assert.equal(toHex(dd.out), toHex(PLAIN), JSON.stringify(shape));
      }
    });
  }
}

test('in place (src and dst are the same guest memory): CBC encrypt then decrypt', () => {
  const d = dev();
  const key = hex(KEYS[128]);
  const id = ctrlCreateOk(d, encodeCipherCreateSessionReq({ algo: ALG.CBC, keyLen: 16, op: 1 }), key);
  const page = new Uint8Array(PLAIN);
  const hdr = cipherHeader(ENCRYPT, id, 16, page.length);
  const status = new Uint8Array(1).fill(0xff);
  // Linux in-place with a 2-entry sg list: src [A,B] -> A,B,B ; dst [A,B] -> A,B,B ; then status.
  const a = page.subarray(0, 24);
  const b = page.subarray(24);
  const written = d.processData(makeChain([hdr, CBC_IV, a, b, b], [a, b, b, status]));
  assert.equal(status[0], 0);
  assert.equal(toHex(page), toHex(hex(NIST.CBC[128])));
  assert.equal(written, 24 + 40 + 40 + 1);
  d.processData(makeChain([cipherHeader(DECRYPT, id, 16, page.length), CBC_IV, page], [page, status]));
  assert.equal(status[0], 0);
  assert.equal(toHex(page), toHex(PLAIN));
});

function cipherHeader(opcode: number, id: bigint, ivLen: number, len: number): Uint8Array {
  const h = new Uint8Array(72);
  const dv = new DataView(h.buffer);
  dv.setUint32(0, opcode, true);
  dv.setBigUint64(8, id, true);
  dv.setUint32(24, ivLen, true);
  dv.setUint32(28, len, true);
  dv.setUint32(32, len, true);
  dv.setUint32(64, 1, true); // VIRTIO_CRYPTO_SYM_OP_CIPHER
  return h;
}

test('IEEE 1619 XTS: vector 2 (AES-128), vector 10 (AES-256, first 2 blocks), vector 18 (20 bytes, ciphertext stealing)', () => {
  const d = dev();
  const cases = [
    {
      key: '11111111111111111111111111111111' + '22222222222222222222222222222222',
      tweak: '33333333330000000000000000000000',
      pt: '44'.repeat(32),
      ct: 'c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0',
    },
    {
      key: '2718281828459045235360287471352662497757247093699959574966967627' + '3141592653589793238462643383279502884197169399375105820974944592',
      tweak: 'ff000000000000000000000000000000',
      pt: '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f',
      ct: '1c3b3a102f770386e4836c99e370cf9bea00803f5e482357a4ae12d414a3e63b',
    },
    {
      key: 'fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0' + 'bfbebdbcbbbab9b8b7b6b5b4b3b2b1b0',
      tweak: '9a785634120000000000000000000000',
      pt: '000102030405060708090a0b0c0d0e0f10111213',
      ct: '9d84c813f719aa2c7be3f66171c7c5c2edbf9dac',
    },
  ];
  for (const c of cases) {
    const key = hex(c.key);
    const id = ctrlCreateOk(d, encodeCipherCreateSessionReq({ algo: ALG.XTS, keyLen: key.length, op: 1 }), key);
    const e = cipherReq(d, ENCRYPT, id, hex(c.tweak), hex(c.pt), { srcCuts: [3], dstCuts: [17] });
    assert.equal(e.status, 0);
    assert.equal(toHex(e.out), c.ct);
    const back = cipherReq(d, DECRYPT, id, hex(c.tweak), hex(c.ct));
    assert.equal(toHex(back.out), c.pt);
  }
  // XTS needs a full block: 15 bytes -> ERR (and dst untouched)
  const key = hex(cases[0]!.key);
  const id = ctrlCreateOk(d, encodeCipherCreateSessionReq({ algo: ALG.XTS, keyLen: 32, op: 1 }), key);
  const short = cipherReq(d, ENCRYPT, id, new Uint8Array(16), new Uint8Array(15));
  assert.equal(short.status, 1);
  assert.equal(toHex(short.out), 'aa'.repeat(15));
  // IEEE 1619 requires Key1 != Key2: identical halves are rejected at session creation.
  const dup = ctrlCreate(d, encodeCipherCreateSessionReq({ algo: ALG.XTS, keyLen: 32, op: 1 }), new Uint8Array(32).fill(7));
  assert.equal(dup.status, 6); // VIRTIO_CRYPTO_KEY_REJECTED
});

test('FIPS 180 "abc" through HASH sessions (full and truncated hash_result_len)', () => {
  const d = dev();
  const expected = [
    [2, FIPS180_ABC.sha1],
    [3, FIPS180_ABC.sha224],
    [4, FIPS180_ABC.sha256],
    [5, FIPS180_ABC.sha384],
    [6, FIPS180_ABC.sha512],
  ] as const;
  for (const [algo, digest] of expected) {
    const id = ctrlCreateOk(d, encodeHashCreateSessionReq({ algo, hashResultLen: digest.length / 2 }));
    const r = hashReq(d, HASH, id, Buffer.from('abc'), digest.length / 2);
    assert.equal(r.status, 0);
    assert.equal(toHex(r.out), digest);
    const t = hashReq(d, HASH, id, Buffer.from('abc'), 12);
    assert.equal(toHex(t.out), digest.slice(0, 24));
  }
  // FIPS 180 two-block message, SHA-256
  const id = ctrlCreateOk(d, encodeHashCreateSessionReq({ algo: 4, hashResultLen: 32 }));
  const msg = Buffer.from('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq');
  assert.equal(toHex(hashReq(d, HASH, id, msg, 32).out), '248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1');
  // MD5 and SHA3 exist in the spec but not in this device
  assert.equal(ctrlCreate(d, encodeHashCreateSessionReq({ algo: 1, hashResultLen: 16 })).status, 3);
  assert.equal(ctrlCreate(d, encodeHashCreateSessionReq({ algo: 8, hashResultLen: 32 })).status, 3);
});

// RFC 4231 §4.2/§4.3 (HMAC-SHA2) and RFC 2202 §3 (HMAC-SHA1) test cases 1 and 2.
const HMAC_CASES = [
  {
    key: '0b'.repeat(20),
    data: Buffer.from('Hi There'),
    2: 'b617318655057264e28bc0b6fb378c8ef146be00',
    3: '896fb1128abbdf196832107cd49df33f47b4b1169912ba4f53684b22',
    4: 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7',
    5: 'afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6',
    6: '87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854',
  },
  {
    key: Buffer.from('Jefe').toString('hex'),
    data: Buffer.from('what do ya want for nothing?'),
    2: 'effcdf6ae5eb2fa2d27416d5f184df9c259a7c79',
    3: 'a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44',
    4: '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
    5: 'af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649',
    6: '164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737',
  },
] as const;

test('RFC 2202 / RFC 4231 HMAC-SHA1..SHA512 through MAC sessions', () => {
  const d = dev();
  for (const tc of HMAC_CASES) {
    for (const algo of [2, 3, 4, 5, 6] as const) {
      const key = hex(tc.key);
      const len = tc[algo].length / 2;
      const id = ctrlCreateOk(d, encodeMacCreateSessionReq({ algo, hashResultLen: len, authKeyLen: key.length }), key);
      const r = hashReq(d, MAC, id, tc.data, len);
      assert.equal(r.status, 0);
      assert.equal(toHex(r.out), tc[algo], `algo ${algo}`);
    }
  }
  // RFC 4231 test case 6: a 131-byte key (longer than the block size), sent in two descriptors
  const key = new Uint8Array(131).fill(0xaa);
  const id = ctrlCreateOk(d, encodeMacCreateSessionReq({ algo: 4, hashResultLen: 32, authKeyLen: 131 }), key.subarray(0, 50), key.subarray(50));
  const r = hashReq(d, MAC, id, Buffer.from('Test Using Larger Than Block-Size Key - Hash Key First'), 32);
  assert.equal(toHex(r.out), '60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54');
});

// The GCM specification test cases 3 and 4 (AES-128).
const GCM_KEY = hex('feffe9928665731c6d6a8f9467308308');
const GCM_IV = hex('cafebabefacedbaddecaf888');
const GCM_P = hex('d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255');
const GCM_C = '42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985';
const GCM_AAD = hex('feedfacedeadbeeffeedfacedeadbeefabaddad2');

test('AES-GCM test cases 3, 4 (and 1 with an empty message); tag mismatch -> BADMSG with dst untouched', () => {
  const d = dev();
  const id = ctrlCreateOk(d, encodeAeadCreateSessionReq({ algo: 1, keyLen: 16, tagLen: 16, aadLen: 0, op: 1 }), GCM_KEY);
  const r3 = aeadReq(d, AEAD_ENCRYPT, id, GCM_IV, GCM_P, new Uint8Array(0), 64 + 16);
  assert.equal(r3.status, 0);
  assert.equal(toHex(r3.out), GCM_C + '4d5c2af327cd64a62cf35abd2ba6fab4');
  const p4 = GCM_P.subarray(0, 60);
  const r4 = aeadReq(d, AEAD_ENCRYPT, id, GCM_IV, p4, GCM_AAD, 60 + 16);
  assert.equal(toHex(r4.out), GCM_C.slice(0, 120) + '5bc94fbc3221a5db94fae95ae7121a47');
  const back = aeadReq(d, AEAD_DECRYPT, id, GCM_IV, r4.out, GCM_AAD, 60);
  assert.equal(back.status, 0);
  assert.equal(toHex(back.out), toHex(p4));
  const tampered = new Uint8Array(r4.out);
  tampered[70]! ^= 1;
  const bad = aeadReq(d, AEAD_DECRYPT, id, GCM_IV, tampered, GCM_AAD, 60);
  assert.equal(bad.status, 2); // VIRTIO_CRYPTO_BADMSG
  assert.equal(toHex(bad.out), 'aa'.repeat(60));
  const noAad = aeadReq(d, AEAD_DECRYPT, id, GCM_IV, r4.out, new Uint8Array(0), 60);
  assert.equal(noAad.status, 2);
  // test case 1: K = 0^128, IV = 0^96, empty P -> T = 58e2fccefa7e3061367f1d57a4e7455a
  const id0 = ctrlCreateOk(d, encodeAeadCreateSessionReq({ algo: 1, keyLen: 16, tagLen: 16, aadLen: 0, op: 1 }), new Uint8Array(16));
  const r1 = aeadReq(d, AEAD_ENCRYPT, id0, new Uint8Array(12), new Uint8Array(0), new Uint8Array(0), 16);
  assert.equal(toHex(r1.out), '58e2fccefa7e3061367f1d57a4e7455a');
  // 16-byte IVs and 12-byte tags are not what this device offers
  assert.equal(aeadReq(d, AEAD_ENCRYPT, id, new Uint8Array(16), p4, GCM_AAD, 76).status, 1);
  assert.equal(ctrlCreate(d, encodeAeadCreateSessionReq({ algo: 1, keyLen: 16, tagLen: 12, aadLen: 0, op: 1 }), GCM_KEY).status, 3);
  assert.equal(ctrlCreate(d, encodeAeadCreateSessionReq({ algo: 3, keyLen: 32, tagLen: 16, aadLen: 0, op: 1 }), new Uint8Array(32)).status, 3);
});

function opensslHmac(hash: string, key: Uint8Array, data: Uint8Array): string {
  const out = execFileSync('openssl', ['dgst', `-${hash}`, '-mac', 'HMAC', '-macopt', `hexkey:${toHex(key)}`, '-hex'], { input: data });
  return out.toString().trim().split(/\s+/).pop()!;
}

for (const [hashAlgo, hashName, len] of [
  [2, 'sha1', 20],
  [4, 'sha256', 32],
] as const) {
  test(`chaining AES-128-CBC + HMAC-${hashName}: cipher-then-hash (encrypt) and hash-then-cipher (decrypt), vs NIST + openssl dgst`, () => {
    const d = dev();
    const key = hex(KEYS[128]);
    const macKey = hex('0b'.repeat(20));
    const mk = (order: number, op: number): bigint =>
      ctrlCreateOk(
        d,
        encodeAlgChainCreateSessionReq({ algChainOrder: order, hashMode: 2, cipher: { algo: ALG.CBC, keyLen: 16, op }, hashAlgo, hashResultLen: len, authKeyLen: 20, aadLen: 0 }),
        key,
        macKey,
      );
    const enc = mk(2, 1);
    const dec = mk(1, 2);
    const aad = hex('0102030405060708');
    const ctHex = NIST.CBC[128].replace(/ /g, '');
    const run = (opcode: number, id: bigint, src: Uint8Array): { status: number; dst: Uint8Array; mac: Uint8Array } => {
      const hdr = encodeAlgChainDataReq(opcode, id, {
        ivLen: 16,
        srcDataLen: src.length,
        dstDataLen: src.length,
        cipherStartSrcOffset: 0,
        lenToCipher: src.length,
        hashStartSrcOffset: 0,
        lenToHash: src.length,
        aadLen: aad.length,
        hashResultLen: len,
      });
      const dst = new Uint8Array(src.length);
      const mac = new Uint8Array(len);
      const st = new Uint8Array(1).fill(0xff);
      // spec order (§5.9.7.5 alg_chain_data_vlf): iv, src, aad | dst, hash_result, status
      d.processData(makeChain([hdr, CBC_IV, src.subarray(0, 5), src.subarray(5), aad], [dst, mac, st]));
      return { status: st[0]!, dst, mac };
    };
    const e = run(ENCRYPT, enc, PLAIN);
    assert.equal(e.status, 0);
    assert.equal(toHex(e.dst), ctHex);
    assert.equal(toHex(e.mac), opensslHmac(hashName, macKey, concat(aad, hex(ctHex)))); // MAC over aad || ciphertext
    const p = run(DECRYPT, dec, hex(ctHex));
    assert.equal(p.status, 0);
    assert.equal(toHex(p.dst), toHex(PLAIN));
    assert.equal(toHex(p.mac), toHex(e.mac)); // hash-then-cipher: MAC over the ciphertext input
  });
}

test('chaining with offsets (ESP-like: cipher a region, authenticate header + ciphertext) and hash_mode PLAIN, vs NIST + openssl dgst', () => {
  const d = dev();
  const key = hex(KEYS[128]);
  const macKey = hex('4a656665'); // "Jefe"
  const header = hex('0000cafe00000001');
  const src = concat(header, PLAIN.subarray(0, 32));
  const ctHex = NIST.CBC[128].replace(/ /g, '').slice(0, 64);
  for (const [hashMode, hashName] of [
    [2, 'sha256'],
    [1, 'sha256'],
  ] as const) {
    const id = ctrlCreateOk(
      d,
      encodeAlgChainCreateSessionReq({ algChainOrder: 2, hashMode, cipher: { algo: ALG.CBC, keyLen: 16, op: 1 }, hashAlgo: 4, hashResultLen: 32, authKeyLen: hashMode === 2 ? 4 : 0, aadLen: 0 }),
      key,
      ...(hashMode === 2 ? [macKey] : []),
    );
    const hdr = encodeAlgChainDataReq(ENCRYPT, id, {
      ivLen: 16,
      srcDataLen: 40,
      dstDataLen: 40,
      cipherStartSrcOffset: 8,
      lenToCipher: 32,
      hashStartSrcOffset: 0,
      lenToHash: 40,
      aadLen: 0,
      hashResultLen: 16, // truncated, as ESP does
    });
    const out = new Uint8Array(40 + 16 + 1).fill(0xff);
    const written = d.processData(makeChain([hdr, CBC_IV, src], [out.subarray(0, 13), out.subarray(13)]));
    assert.equal(written, 57);
    assert.equal(out[56], 0);
    assert.equal(toHex(out.subarray(0, 40)), toHex(header) + ctHex); // header copied, region ciphered
    const expected =
      hashMode === 2
        ? opensslHmac(hashName, macKey, out.subarray(0, 40))
        : execFileSync('openssl', ['dgst', `-${hashName}`, '-hex'], { input: out.subarray(0, 40) }).toString().trim().split(/\s+/).pop()!;
    assert.equal(toHex(out.subarray(40, 56)), expected.slice(0, 32));
  }
});

test('AES-GCM test case 4 with every part split across descriptors (header, iv, src, aad, dst)', () => {
  const d = dev();
  const id = ctrlCreateOk(d, encodeAeadCreateSessionReq({ algo: 1, keyLen: 16, tagLen: 16, aadLen: 20, op: 1 }), GCM_KEY);
  const p4 = GCM_P.subarray(0, 60);
  const hdr = new Uint8Array(72);
  const dv = new DataView(hdr.buffer);
  dv.setUint32(0, AEAD_ENCRYPT, true);
  dv.setBigUint64(8, id, true);
  dv.setUint32(24, 12, true); // iv_len
  dv.setUint32(28, 20, true); // aad_len
  dv.setUint32(32, 60, true); // src_data_len
  dv.setUint32(36, 76, true); // dst_data_len
  dv.setUint32(40, 16, true); // tag_len (1.2)
  // one contiguous readable stream cut at odd places: header|iv|src|aad
  const stream = concat(hdr, GCM_IV, p4, GCM_AAD);
  const cuts = [3, 71, 80, 85, 150, 151];
  const readable = cuts.map((c, i) => stream.subarray(i === 0 ? 0 : cuts[i - 1]!, c)).concat([stream.subarray(cuts[cuts.length - 1]!)]);
  const out = new Uint8Array(77);
  d.processData(makeChain(readable, [out.subarray(0, 1), out.subarray(1, 61), out.subarray(61)]));
  assert.equal(out[76], 0);
  assert.equal(toHex(out.subarray(0, 76)), GCM_C.slice(0, 120) + '5bc94fbc3221a5db94fae95ae7121a47');
  dv.setUint32(40, 12, true); // a tag_len other than the session's
  const st = new Uint8Array(77);
  d.processData(makeChain([concat(hdr, GCM_IV, p4, GCM_AAD)], [st]));
  assert.equal(st[76], 1);
});

/**
 * Malformed and hostile requests: after each one the device answers with the right status (in
 * the last writable byte), writes nothing it should not, and a good request still succeeds.
 * Property tests: random request bytes never make the device throw or report more than it has.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { VirtioCryptoDevice } from '../../src/device/virtio-crypto-device.js';
import {
  encodeAeadCreateSessionReq,
  encodeAlgChainCreateSessionReq,
  encodeAeadDataReq,
  encodeAlgChainDataReq,
  encodeCipherCreateSessionReq,
  encodeCipherDataReq,
  encodeDestroySessionReq,
  encodeHashCreateSessionReq,
  encodeHashDataReq,
  encodeMacCreateSessionReq,
} from '../../src/wire/virtio-crypto.js';
import { cipherReq, ctrlCreate, ctrlCreateOk, hashReq, hex, makeChain, statusOf, toHex } from './helpers.js';

const OK = 0;
const ERR = 1;
const NOTSUPP = 3;
const INVSESS = 4;
const NOSPC = 5;

const KEY = hex('2b7e151628aed2a6abf7158809cf4f3c');
const IV = hex('000102030405060708090a0b0c0d0e0f');
const PT = hex('6bc1bee22e409f96e93d7e117393172a');
const CT = '7649abac8119b246cee98e9b12e9197d'; // NIST SP 800-38A F.2.1 block 1

function setup(opts: { maxSessions?: number; maxSize?: number } = {}): { d: VirtioCryptoDevice; id: bigint; good: () => void } {
  const d = new VirtioCryptoDevice({ maxDataQueues: 1, ...opts });
  const id = ctrlCreateOk(d, encodeCipherCreateSessionReq({ algo: 3, keyLen: 16, op: 1 }), KEY);
  const good = (): void => {
    const r = cipherReq(d, 0, id, IV, PT);
    assert.equal(r.status, OK, 'a good request still succeeds');
    assert.equal(toHex(r.out), CT);
  };
  return { d, id, good };
}

/** Sends a raw dataq request; returns the status byte, the dst bytes and the used length. */
function raw(d: VirtioCryptoDevice, readable: Uint8Array[], dstLen: number): { status: number; dst: Uint8Array; written: number } {
  const dst = new Uint8Array(dstLen).fill(0xaa);
  const st = new Uint8Array(1).fill(0xff);
  const written = d.processData(makeChain(readable, [dst, st]));
  return { status: st[0]!, dst, written };
}

test('cipher: dst_data_len != src_data_len -> ERR, nothing written past or into dst (CVE-2023-3180)', () => {
  const { d, id, good } = setup();
  for (const [src, dst] of [
    [16, 8],
    [16, 32],
    [32, 16],
  ] as const) {
    const hdr = encodeCipherDataReq(0, id, { ivLen: 16, srcDataLen: src, dstDataLen: dst });
    const r = raw(d, [hdr, IV, new Uint8Array(src)], dst);
    assert.equal(r.status, ERR);
    assert.equal(toHex(r.dst), 'aa'.repeat(dst));
    good();
  }
});

test('unknown / destroyed / wrong-service session ids -> INVSESS', () => {
  const { d, id, good } = setup();
  assert.equal(cipherReq(d, 0, 999n, IV, PT).status, INVSESS);
  assert.equal(cipherReq(d, 0, (1n << 64n) - 1n, IV, PT).status, INVSESS);
  const h = ctrlCreateOk(d, encodeHashCreateSessionReq({ algo: 4, hashResultLen: 32 }));
  assert.equal(cipherReq(d, 0, h, IV, PT).status, INVSESS); // a hash session cannot encrypt
  assert.equal(hashReq(d, 0x200, h, PT, 32).status, INVSESS); // nor MAC
  assert.equal(hashReq(d, 0x100, id, PT, 32).status, INVSESS); // a cipher session cannot hash
  good();
  const other = ctrlCreateOk(d, encodeCipherCreateSessionReq({ algo: 3, keyLen: 16, op: 1 }), KEY);
  const st = new Uint8Array(1).fill(0xff);
  assert.equal(d.processControl(makeChain([encodeDestroySessionReq(0x003, other)], [st])), 1);
  assert.equal(st[0], OK);
  assert.equal(cipherReq(d, 0, other, IV, PT).status, INVSESS);
  // §5.9.7.2.1: destroying an unknown session is ERR on the controlq ...
  d.processControl(makeChain([encodeDestroySessionReq(0x003, other)], [st]));
  assert.equal(st[0], ERR);
  // ... and INVSESS through the direct API (vhost-user CLOSE path)
  assert.equal(d.destroySession(other), INVSESS);
  good();
});

test('lengths that overflow 32 bits when summed, or exceed max_size -> ERR', () => {
  const { d, id, good } = setup({ maxSize: 4096 });
  const cases = [
    { ivLen: 16, srcDataLen: 0xfffffff0, dstDataLen: 0xfffffff0 }, // iv + src wraps a u32
    { ivLen: 0xffffffff, srcDataLen: 16, dstDataLen: 16 },
    { ivLen: 16, srcDataLen: 4096, dstDataLen: 4096 }, // > max_size
  ];
  for (const c of cases) {
    const r = raw(d, [encodeCipherDataReq(0, id, c), IV, new Uint8Array(64)], 16);
    assert.equal(r.status, ERR, JSON.stringify(c));
    assert.equal(toHex(r.dst), 'aa'.repeat(16));
    good();
  }
  const h = ctrlCreateOk(d, encodeHashCreateSessionReq({ algo: 4, hashResultLen: 32 }));
  const hr = raw(d, [encodeHashDataReq(0x100, h, { srcDataLen: 0xffffffff, hashResultLen: 32 }), new Uint8Array(100)], 32);
  assert.equal(hr.status, ERR);
  // chaining: offsets whose sum wraps
  const chain = ctrlCreateOk(
    d,
    encodeAlgChainCreateSessionReq({ algChainOrder: 2, hashMode: 2, cipher: { algo: 3, keyLen: 16, op: 1 }, hashAlgo: 4, hashResultLen: 32, authKeyLen: 4, aadLen: 0 }),
    KEY,
    hex('01020304'),
  );
  const ch = encodeAlgChainDataReq(0, chain, {
    ivLen: 16,
    srcDataLen: 16,
    dstDataLen: 16,
    cipherStartSrcOffset: 0xfffffff8,
    lenToCipher: 16,
    hashStartSrcOffset: 0,
    lenToHash: 16,
    aadLen: 0,
    hashResultLen: 32,
  });
  assert.equal(raw(d, [ch, IV, PT], 48).status, ERR);
  good();
});

test('short buffers: header, iv/src, writable space; no writable byte at all', () => {
  const { d, id, good } = setup();
  const hdr = encodeCipherDataReq(0, id, { ivLen: 16, srcDataLen: 16, dstDataLen: 16 });
  assert.equal(raw(d, [hdr.subarray(0, 71)], 16).status, ERR); // header short by one byte
  assert.equal(raw(d, [hdr, IV, PT.subarray(0, 15)], 16).status, ERR); // src short by one byte
  // writable: dst 16 needs 17 bytes with the status
  const dst = new Uint8Array(16).fill(0xaa);
  assert.equal(d.processData(makeChain([hdr, IV, PT], [dst])), 16);
  assert.equal(dst[15], ERR); // status in the last writable byte
  assert.equal(toHex(dst.subarray(0, 15)), 'aa'.repeat(15));
  assert.equal(d.processData(makeChain([hdr, IV, PT], [])), 0);
  assert.equal(d.processData(makeChain([], [])), 0);
  const one = new Uint8Array(1).fill(0xff);
  assert.equal(d.processData(makeChain([], [one])), 1);
  assert.equal(one[0], ERR);
  // zero-length descriptors are skipped when finding the last writable byte
  const tail = new Uint8Array(1).fill(0xff);
  d.processData(makeChain([hdr, IV, PT], [new Uint8Array(16), tail, new Uint8Array(0)]));
  assert.equal(tail[0], OK);
  good();
});

test('bad cipher lengths: CBC/ECB not a multiple of 16, wrong iv_len, op_type mismatch -> ERR', () => {
  const { d, id, good } = setup();
  assert.equal(cipherReq(d, 0, id, IV, new Uint8Array(17)).status, ERR);
  assert.equal(cipherReq(d, 1, id, IV, new Uint8Array(31)).status, ERR);
  assert.equal(cipherReq(d, 0, id, IV.subarray(0, 8), PT).status, ERR);
  const ecb = ctrlCreateOk(d, encodeCipherCreateSessionReq({ algo: 2, keyLen: 16, op: 1 }), KEY);
  assert.equal(cipherReq(d, 0, ecb, new Uint8Array(0), new Uint8Array(20)).status, ERR);
  const hdr = encodeCipherDataReq(0, id, { ivLen: 16, srcDataLen: 16, dstDataLen: 16 });
  hdr[64] = 2; // op_type ALGORITHM_CHAINING on a plain cipher session
  assert.equal(raw(d, [hdr, IV, PT], 16).status, ERR);
  hdr[64] = 0; // op_type NONE
  assert.equal(raw(d, [hdr, IV, PT], 16).status, ERR);
  good();
});

test('unknown and akcipher opcodes -> NOTSUPP (dataq and controlq)', () => {
  const { d, id, good } = setup();
  for (const opcode of [0x002, 0x101, 0x400, 0x403, 0xffffffff]) {
    const hdr = encodeCipherDataReq(opcode, id, { ivLen: 16, srcDataLen: 16, dstDataLen: 16 });
    assert.equal(raw(d, [hdr, IV, PT], 16).status, NOTSUPP, `opcode ${opcode}`);
  }
  for (const opcode of [0x0404, 0x0405, 0x0000, 0xdead]) {
    const input = new Uint8Array(16).fill(0xee);
    assert.equal(d.processControl(makeChain([encodeDestroySessionReq(opcode, 1n)], [input])), 16);
    assert.equal(input[8], NOTSUPP);
    const one = new Uint8Array(1);
    assert.equal(d.processControl(makeChain([encodeDestroySessionReq(opcode, 1n)], [one])), 1);
    assert.equal(one[0], NOTSUPP);
  }
  good();
});

test('controlq create errors: unsupported algorithms, bad key lengths, short key, short outcome, op_type', () => {
  const { d, good } = setup();
  const before = d.sessionCount;
  const st = (req: Uint8Array, ...keys: Uint8Array[]): number => ctrlCreate(d, req, ...keys).status;
  assert.equal(st(encodeCipherCreateSessionReq({ algo: 6, keyLen: 8, op: 1 }), new Uint8Array(8)), NOTSUPP); // DES-CBC
  assert.equal(st(encodeCipherCreateSessionReq({ algo: 3, keyLen: 15, op: 1 }), new Uint8Array(15)), ERR);
  assert.equal(st(encodeCipherCreateSessionReq({ algo: 13, keyLen: 16, op: 1 }), new Uint8Array(16)), ERR); // XTS needs 32/64
  assert.equal(st(encodeCipherCreateSessionReq({ algo: 3, keyLen: 65, op: 1 }), new Uint8Array(65)), ERR); // > max_cipher_key_len
  assert.equal(st(encodeCipherCreateSessionReq({ algo: 3, keyLen: 0xffffffff, op: 1 }), new Uint8Array(16)), ERR);
  assert.equal(st(encodeCipherCreateSessionReq({ algo: 3, keyLen: 32, op: 1 }), new Uint8Array(31)), ERR); // short vlf
  assert.equal(st(encodeCipherCreateSessionReq({ algo: 3, keyLen: 16, op: 3 }), KEY), ERR); // bad direction
  assert.equal(st(encodeMacCreateSessionReq({ algo: 4, hashResultLen: 32, authKeyLen: 513 }), new Uint8Array(513)), ERR);
  assert.equal(st(encodeMacCreateSessionReq({ algo: 26, hashResultLen: 16, authKeyLen: 16 }), KEY), NOTSUPP); // CMAC-AES
  assert.equal(st(encodeHashCreateSessionReq({ algo: 4, hashResultLen: 33 })), ERR); // longer than SHA-256
  assert.equal(st(encodeAeadCreateSessionReq({ algo: 1, keyLen: 20, tagLen: 16, aadLen: 0, op: 1 }), new Uint8Array(20)), ERR);
  const none = encodeCipherCreateSessionReq({ algo: 3, keyLen: 16, op: 1 });
  none[64] = 0; // VIRTIO_CRYPTO_SYM_OP_NONE
  assert.equal(st(none, KEY), NOTSUPP);
  const nested = encodeAlgChainCreateSessionReq({ algChainOrder: 1, hashMode: 3, cipher: { algo: 3, keyLen: 16, op: 1 }, hashAlgo: 4, hashResultLen: 32, authKeyLen: 0, aadLen: 0 });
  assert.equal(st(nested, KEY), NOTSUPP);
  // header shorter than 72 bytes: ERR in a session_input
  assert.equal(st(none.subarray(0, 40)), ERR);
  // outcome buffer too small for a session_input: nothing written, no session created
  const small = new Uint8Array(15).fill(0xee);
  assert.equal(d.processControl(makeChain([encodeCipherCreateSessionReq({ algo: 3, keyLen: 16, op: 1 }), KEY], [small])), 0);
  assert.equal(toHex(small), 'ee'.repeat(15));
  assert.equal(d.processControl(makeChain([encodeDestroySessionReq(3, 1n)], [])), 0);
  assert.equal(d.sessionCount, before);
  good();
});

test('bounded session table: NOSPC when full; destroy frees a slot; reset destroys all; ids are never reused', () => {
  const { d, id, good } = setup({ maxSessions: 3 });
  const a = ctrlCreateOk(d, encodeHashCreateSessionReq({ algo: 2, hashResultLen: 20 }));
  const b = ctrlCreateOk(d, encodeHashCreateSessionReq({ algo: 2, hashResultLen: 20 }));
  assert.equal(d.sessionCount, 3);
  const full = ctrlCreate(d, encodeCipherCreateSessionReq({ algo: 3, keyLen: 16, op: 1 }), KEY);
  assert.equal(full.status, NOSPC);
  assert.equal(full.sessionId, 0n);
  assert.equal(d.createSymSession({ cipherAlg: 3, key: KEY, direction: 1, opType: 1, hashAlg: 0, hashMode: 0, algChainOrder: 0, hashResultLen: 0, authKey: new Uint8Array(0), aadLen: 0 }), -5n);
  good();
  assert.equal(d.destroySession(a), OK);
  const c = ctrlCreateOk(d, encodeHashCreateSessionReq({ algo: 2, hashResultLen: 20 }));
  assert.ok(c !== a && c !== b && c !== id);
  d.reset();
  assert.equal(d.sessionCount, 0);
  assert.equal(cipherReq(d, 0, id, IV, PT).status, INVSESS);
  const fresh = ctrlCreateOk(d, encodeCipherCreateSessionReq({ algo: 3, keyLen: 16, op: 1 }), KEY);
  assert.ok(![id, a, b, c].includes(fresh));
  assert.equal(toHex(cipherReq(d, 0, fresh, IV, PT).out), CT);
});

test('createSymSession (vhost-user path): cipher and chaining sessions, -(status) on failure', () => {
  const d = new VirtioCryptoDevice({ maxDataQueues: 1 });
  const base = { hashAlg: 0, hashMode: 0, algChainOrder: 0, hashResultLen: 0, authKey: new Uint8Array(0), aadLen: 0 };
  const enc = d.createSymSession({ ...base, cipherAlg: 3, key: KEY, direction: 1, opType: 1 });
  assert.ok(enc >= 0n);
  assert.equal(toHex(cipherReq(d, 0, enc, IV, PT).out), CT);
  assert.equal(d.createSymSession({ ...base, cipherAlg: 3, key: new Uint8Array(17), direction: 1, opType: 1 }), -1n);
  assert.equal(d.createSymSession({ ...base, cipherAlg: 10, key: KEY, direction: 1, opType: 1 }), -3n);
  assert.equal(d.createSymSession({ ...base, cipherAlg: 3, key: KEY, direction: 1, opType: 0 }), -3n);
  const chain = d.createSymSession({ ...base, cipherAlg: 3, key: KEY, direction: 1, opType: 2, hashAlg: 4, hashMode: 2, algChainOrder: 2, hashResultLen: 32, authKey: hex('0b0b') });
  assert.ok(chain > 0n);
  assert.equal(d.destroySession(chain), OK);
  assert.equal(d.destroySession(chain), INVSESS);
});

/** A header-shaped random request: a plausible opcode and session id, random other fields. */
const arbRequest = fc.record({
  opcode: fc.constantFrom(0x000, 0x001, 0x100, 0x200, 0x300, 0x301, 0x002, 0x400),
  session: fc.constantFrom(0n, 1n, 2n, 3n, 4n, 5n, 6n, 99n),
  body: fc.uint8Array({ minLength: 48, maxLength: 48 }),
  small: fc.array(fc.integer({ min: 0, max: 96 }), { minLength: 6, maxLength: 6 }),
  tail: fc.uint8Array({ maxLength: 200 }),
  readCuts: fc.array(fc.integer({ min: 0, max: 300 }), { maxLength: 4 }),
  writeSizes: fc.array(fc.integer({ min: 0, max: 120 }), { maxLength: 4 }),
});

test('property: random request bytes never throw, report at most the writable length, and leave the device working', () => {
  const { d, good } = setup();
  // sessions of every kind, ids 1.. (1 = the AES-CBC session from setup)
  ctrlCreateOk(d, encodeHashCreateSessionReq({ algo: 4, hashResultLen: 32 }));
  ctrlCreateOk(d, encodeMacCreateSessionReq({ algo: 2, hashResultLen: 20, authKeyLen: 4 }), hex('01020304'));
  ctrlCreateOk(d, encodeAeadCreateSessionReq({ algo: 1, keyLen: 16, tagLen: 16, aadLen: 0, op: 1 }), KEY);
  ctrlCreateOk(
    d,
    encodeAlgChainCreateSessionReq({ algChainOrder: 2, hashMode: 2, cipher: { algo: 4, keyLen: 16, op: 1 }, hashAlgo: 4, hashResultLen: 32, authKeyLen: 4, aadLen: 0 }),
    KEY,
    hex('01020304'),
  );
  ctrlCreateOk(d, encodeCipherCreateSessionReq({ algo: 13, keyLen: 32, op: 1 }), hex('11'.repeat(16) + '22'.repeat(16)));
  fc.assert(
    fc.property(arbRequest, (a) => {
      const hdr = new Uint8Array(72);
      const dv = new DataView(hdr.buffer);
      dv.setUint32(0, a.opcode, true);
      dv.setBigUint64(8, a.session, true);
      hdr.set(a.body, 24);
      // make the length fields small often enough to reach the engine
      for (let i = 0; i < 6; i++) if (a.small[i]! < 80) dv.setUint32(24 + 4 * i, a.small[i]!, true);
      const stream = new Uint8Array([...hdr, ...a.tail]);
      const cuts = [...new Set(a.readCuts.filter((c) => c < stream.length))].sort((x, y) => x - y);
      const writable = a.writeSizes.map((n) => new Uint8Array(n));
      const wlen = a.writeSizes.reduce((x, y) => x + y, 0);
      const written = d.processData(makeChain(splitAt(stream, cuts), writable));
      assert.ok(written === (wlen === 0 ? 0 : wlen));
      if (wlen > 0) assert.ok(statusOf(writable) <= 6);
    }),
    { numRuns: 3000 },
  );
  good();
});

test('property: random controlq bytes never throw and never leak a session without reporting it', () => {
  const { d, id: goodId, good } = setup({ maxSessions: 50 });
  fc.assert(
    fc.property(
      fc.constantFrom(0x002, 0x003, 0x102, 0x103, 0x202, 0x203, 0x302, 0x303, 0x404, 7),
      fc.uint8Array({ minLength: 56, maxLength: 56 }),
      fc.array(fc.integer({ min: 0, max: 80 }), { minLength: 8, maxLength: 8 }),
      fc.uint8Array({ maxLength: 120 }),
      fc.integer({ min: 0, max: 20 }),
      (opcode, body, small, keys, outLen) => {
        const req = new Uint8Array(72);
        const dv = new DataView(req.buffer);
        dv.setUint32(0, opcode, true);
        req.set(body, 16);
        for (let i = 0; i < 8; i++) if (small[i]! < 70) dv.setUint32(16 + 4 * i, small[i]!, true);
        // random destroys may hit any id except the one the final good request uses
        if (dv.getBigUint64(16, true) === goodId) dv.setBigUint64(16, goodId + 1000n, true);
        const before = d.sessionCount;
        const out = new Uint8Array(outLen).fill(0xee);
        const written = d.processControl(makeChain([req, keys], [out]));
        assert.ok(written <= outLen);
        if (d.sessionCount > before) {
          // a new session must have been reported with status OK and its id
          assert.equal(written, 16);
          assert.equal(out[8], OK);
          const id = new DataView(out.buffer).getBigUint64(0, true);
          assert.equal(d.destroySession(id), OK);
        }
      },
    ),
    { numRuns: 3000 },
  );
  good();
});

test('property: valid requests of every kind with random byte mutations, cuts and writable sizes never throw', () => {
  const { d, id: cbc, good } = setup();
  const mk = ctrlCreateOk(d, encodeMacCreateSessionReq({ algo: 2, hashResultLen: 20, authKeyLen: 4 }), hex('01020304'));
  const hs = ctrlCreateOk(d, encodeHashCreateSessionReq({ algo: 4, hashResultLen: 32 }));
  const gcm = ctrlCreateOk(d, encodeAeadCreateSessionReq({ algo: 1, keyLen: 16, tagLen: 16, aadLen: 0, op: 1 }), KEY);
  const ch = ctrlCreateOk(
    d,
    encodeAlgChainCreateSessionReq({ algChainOrder: 1, hashMode: 2, cipher: { algo: 3, keyLen: 16, op: 2 }, hashAlgo: 2, hashResultLen: 20, authKeyLen: 4, aadLen: 0 }),
    KEY,
    hex('01020304'),
  );
  const xts = ctrlCreateOk(d, encodeCipherCreateSessionReq({ algo: 13, keyLen: 32, op: 1 }), hex('11'.repeat(16) + '22'.repeat(16)));
  const data = new Uint8Array(64).map((_, i) => i);
  // [readable stream, writable length] of a valid request per kind
  const valid: [Uint8Array, number][] = [
    [new Uint8Array([...encodeCipherDataReq(0, cbc, { ivLen: 16, srcDataLen: 64, dstDataLen: 64 }), ...IV, ...data]), 65],
    [new Uint8Array([...encodeCipherDataReq(1, xts, { ivLen: 16, srcDataLen: 40, dstDataLen: 40 }), ...IV, ...data.subarray(0, 40)]), 41],
    [new Uint8Array([...encodeHashDataReq(0x100, hs, { srcDataLen: 64, hashResultLen: 32 }), ...data]), 33],
    [new Uint8Array([...encodeHashDataReq(0x200, mk, { srcDataLen: 64, hashResultLen: 20 }), ...data]), 21],
    [new Uint8Array([...encodeAeadDataReq(0x300, gcm, { ivLen: 12, aadLen: 8, srcDataLen: 40, dstDataLen: 56, tagLen: 16 }), ...IV.subarray(0, 12), ...data.subarray(0, 48)]), 57],
    [new Uint8Array([...encodeAeadDataReq(0x301, gcm, { ivLen: 12, aadLen: 8, srcDataLen: 40, dstDataLen: 24, tagLen: 16 }), ...IV.subarray(0, 12), ...data.subarray(0, 48)]), 25],
    [
      new Uint8Array([
        ...encodeAlgChainDataReq(1, ch, { ivLen: 16, srcDataLen: 32, dstDataLen: 32, cipherStartSrcOffset: 0, lenToCipher: 32, hashStartSrcOffset: 0, lenToHash: 32, aadLen: 4, hashResultLen: 20 }),
        ...IV,
        ...data.subarray(0, 36),
      ]),
      53,
    ],
  ];
  const seen = new Set<number>();
  fc.assert(
    fc.property(
      fc.integer({ min: 0, max: valid.length - 1 }),
      fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
      fc.array(fc.nat(), { maxLength: 3 }),
      fc.integer({ min: -3, max: 3 }),
      fc.integer({ min: -2, max: 2 }),
      (k, flips, cuts, dr, dw) => {
        const [base, wlen0] = valid[k]!;
        const stream = base.slice(0, Math.max(0, base.length + Math.min(dr, 0)));
        for (const [pos, v] of flips) stream[pos % stream.length] = v;
        const cs = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((x, y) => x - y);
        const wlen = Math.max(0, wlen0 + dw);
        const w = new Uint8Array(wlen);
        const written = d.processData(makeChain(splitAt(stream, cs), [w.subarray(0, wlen >> 1), w.subarray(wlen >> 1)]));
        assert.equal(written, wlen);
        if (wlen > 0) {
          assert.ok(w[wlen - 1]! <= 6);
          seen.add(w[wlen - 1]!);
        }
      },
    ),
    { numRuns: 4000 },
  );
  // the mutations reach the engine (OK), the length checks (ERR), tag checks (BADMSG) and the session table (INVSESS)
  for (const st of [OK, ERR, 2, INVSESS]) assert.ok(seen.has(st), `status ${st} reached`);
  good();
});

test('property: any split of a good CBC request (bytes, duplicates) gives the NIST result', () => {
  const { d, id } = setup();
  fc.assert(
    fc.property(fc.array(fc.integer({ min: 1, max: 15 }), { maxLength: 3 }), fc.array(fc.integer({ min: 1, max: 15 }), { maxLength: 3 }), fc.boolean(), (sc, dc, dup) => {
      const srcCuts = [...new Set(sc)].sort((x, y) => x - y);
      const dstCuts = [...new Set(dc)].sort((x, y) => x - y);
      const r = cipherReq(d, 0, id, IV, PT, { srcCuts, dstCuts, dup, hdrCut: 1 + (srcCuts[0] ?? 0) });
      assert.equal(r.status, OK);
      assert.equal(toHex(r.out), CT);
    }),
    { numRuns: 300 },
  );
});

function splitAt(buf: Uint8Array, cuts: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of cuts) {
    out.push(buf.subarray(prev, c));
    prev = c;
  }
  out.push(buf.subarray(prev));
  return out;
}

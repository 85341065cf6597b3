/**
 * virtio-crypto struct layouts checked against bytes written by hand from VIRTIO 1.2 cs01 §5.9
 * (each `hex` below is the struct field by field, little-endian, in spec order).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  CREATE_SESSION_INPUT_SIZE,
  CTRL_HEADER_SIZE,
  OP_CTRL_REQ_SIZE,
  OP_DATA_REQ_SIZE,
  OP_HEADER_SIZE,
  VIRTIO_CRYPTO_CONFIG_SIZE,
  WireError,
  decodeAeadCreateSessionFlf,
  decodeAeadDataFlf,
  decodeAlgChainDataFlf,
  decodeAlgChainSessionFlf,
  decodeCipherDataFlf,
  decodeCipherSessionFlf,
  decodeConfig,
  decodeCreateSessionInput,
  decodeCtrlHeader,
  decodeDestroySessionInput,
  decodeInhdr,
  decodeDestroySessionFlf,
  decodeHashCreateSessionFlf,
  decodeHashDataFlf,
  decodeMacCreateSessionFlf,
  decodeOpHeader,
  decodeSymCreateSessionOpType,
  decodeSymDataOpType,
  encodeAeadCreateSessionReq,
  encodeAeadDataReq,
  encodeAlgChainCreateSessionReq,
  encodeAlgChainDataReq,
  encodeCipherCreateSessionReq,
  encodeCipherDataReq,
  encodeConfig,
  encodeCreateSessionInput,
  encodeDestroySessionInput,
  encodeDestroySessionReq,
  encodeInhdr,
  encodeHashCreateSessionReq,
  encodeHashDataReq,
  encodeMacCreateSessionReq,
} from '../../src/wire/virtio-crypto.js';

/** Hex with whitespace and `|` separators allowed (one group per field). */
function hex(s: string): Uint8Array {
  return Uint8Array.from(Buffer.from(s.replace(/[\s|]/g, ''), 'hex'));
}
const zeros = (n: number): string => '00'.repeat(n);

test('struct sizes match the spec (legacy, non-REVISION_1 layouts)', () => {
  assert.equal(VIRTIO_CRYPTO_CONFIG_SIZE, 56); // 12 × le32 + le64
  assert.equal(CTRL_HEADER_SIZE, 16); // opcode, algo, flag, reserved
  assert.equal(OP_CTRL_REQ_SIZE, 16 + 56); // + VIRTIO_CRYPTO_CTRLQ_OP_SPEC_HDR_LEGACY
  assert.equal(OP_HEADER_SIZE, 24); // opcode, algo, le64 session_id, flag, padding
  assert.equal(OP_DATA_REQ_SIZE, 24 + 48); // + VIRTIO_CRYPTO_DATAQ_OP_SPEC_HDR_LEGACY
  assert.equal(CREATE_SESSION_INPUT_SIZE, 16); // le64 session_id, le32 status, le32 padding
});

test('virtio_crypto_config: encode/decode against hand-written bytes', () => {
  const bytes = hex(`
    01000000 | 02000000 | 0f000000   # status=HW_READY, max_dataqueues=2, crypto_services=0xf
    1c200000 | 00000000              # cipher_algo_l = bits 2,3,4,13 = 0x201c, cipher_algo_h
    7c000000 | 7c000000 | 00000000   # hash_algo bits 2..6, mac_algo_l bits 2..6, mac_algo_h
    02000000                         # aead_algo = bit 1 (GCM)
    40000000 | 00020000 | 00000000   # max_cipher_key_len 64, max_auth_key_len 512, reserved
    0000100000000000                 # max_size = 1 MiB (le64)
  `.replace(/#[^\n]*/g, ''));
  assert.equal(bytes.length, 56);
  const cfg = {
    status: 1,
    maxDataqueues: 2,
    cryptoServices: 0xf,
    cipherAlgoL: 0x201c,
    cipherAlgoH: 0,
    hashAlgo: 0x7c,
    macAlgoL: 0x7c,
    macAlgoH: 0,
    aeadAlgo: 2,
    maxCipherKeyLen: 64,
    maxAuthKeyLen: 512,
    reserved: 0,
    maxSize: 1n << 20n,
  };
  assert.deepEqual(encodeConfig(cfg), bytes);
  assert.deepEqual(decodeConfig(bytes), cfg);
  assert.throws(() => decodeConfig(bytes.subarray(0, 55)), WireError);
});

test('CIPHER_CREATE_SESSION (cipher): header + virtio_crypto_cipher_session_flf + op_type', () => {
  const bytes = hex(
    '02000000 03000000 00000000 00000000' + // ctrl_header: opcode 0x002, algo AES_CBC, flag, queue_id
      '03000000 20000000 02000000 00000000' + // cipher_session_flf: algo 3, key_len 32, op DECRYPT, padding
      zeros(32) + // rest of op_flf[48]
      '01000000 00000000', // op_type SYM_OP_CIPHER, padding
  );
  assert.equal(bytes.length, 72);
  assert.deepEqual(encodeCipherCreateSessionReq({ algo: 3, keyLen: 32, op: 2 }), bytes);
  assert.deepEqual(decodeCtrlHeader(bytes), { opcode: 2, algo: 3, flag: 0, queueId: 0 });
  assert.equal(decodeSymCreateSessionOpType(bytes), 1);
  assert.deepEqual(decodeCipherSessionFlf(bytes), { algo: 3, keyLen: 32, op: 2 });
});

test('CIPHER_CREATE_SESSION (chaining): virtio_crypto_alg_chain_session_flf with a mac flf', () => {
  const bytes = hex(
    '02000000 03000000 00000000 00000000' + // ctrl_header
      '02000000 02000000' + // alg_chain_order CIPHER_THEN_HASH, hash_mode AUTH
      '03000000 10000000 01000000 00000000' + // cipher_hdr: AES_CBC, key_len 16, ENCRYPT, padding
      '04000000 20000000 40000000 00000000' + // algo_flf = mac flf: HMAC_SHA_256, result 32, auth_key_len 64, pad
      '08000000 00000000' + // aad_len 8, padding
      '02000000 00000000', // op_type ALGORITHM_CHAINING, padding
  );
  assert.equal(bytes.length, 72);
  const flf = {
    algChainOrder: 2,
    hashMode: 2,
    cipher: { algo: 3, keyLen: 16, op: 1 },
    hashAlgo: 4,
    hashResultLen: 32,
    authKeyLen: 64,
    aadLen: 8,
  };
  assert.deepEqual(encodeAlgChainCreateSessionReq(flf), bytes);
  assert.equal(decodeSymCreateSessionOpType(bytes), 2);
  assert.deepEqual(decodeAlgChainSessionFlf(bytes), flf);
});

test('HASH / MAC / AEAD CREATE_SESSION and DESTROY_SESSION layouts', () => {
  const hash = hex('02010000 06000000 00000000 00000000' + '06000000 40000000' + zeros(48));
  assert.deepEqual(encodeHashCreateSessionReq({ algo: 6, hashResultLen: 64 }), hash);
  assert.deepEqual(decodeHashCreateSessionFlf(hash), { algo: 6, hashResultLen: 64 });

  const mac = hex('02020000 02000000 00000000 00000000' + '02000000 14000000 83000000 00000000' + zeros(40));
  assert.deepEqual(encodeMacCreateSessionReq({ algo: 2, hashResultLen: 20, authKeyLen: 131 }), mac);
  assert.deepEqual(decodeMacCreateSessionFlf(mac), { algo: 2, hashResultLen: 20, authKeyLen: 131 });

  // aead_create_session_flf: algo, key_len, tag_len, aad_len, op, padding
  const aead = hex('02030000 01000000 00000000 00000000' + '01000000 10000000 10000000 0d000000 01000000 00000000' + zeros(32));
  const aeadFlf = { algo: 1, keyLen: 16, tagLen: 16, aadLen: 13, op: 1 };
  assert.deepEqual(encodeAeadCreateSessionReq(aeadFlf), aead);
  assert.deepEqual(decodeAeadCreateSessionFlf(aead), aeadFlf);

  // destroy_session_flf: le64 session_id; queue_id set to show the header field position
  const destroy = hex('03000000 00000000 00000000 07000000' + 'efcdab8967452301' + zeros(48));
  assert.deepEqual(encodeDestroySessionReq(3, 0x0123456789abcdefn, { queueId: 7 }), destroy);
  assert.deepEqual(decodeDestroySessionFlf(destroy), { sessionId: 0x0123456789abcdefn });
  assert.equal(decodeCtrlHeader(destroy).queueId, 7);
});

test('virtio_crypto_create_session_input', () => {
  const bytes = hex('2a00000000000080 05000000 00000000');
  assert.deepEqual(encodeCreateSessionInput({ sessionId: 0x800000000000002an, status: 5 }), bytes);
  assert.deepEqual(decodeCreateSessionInput(bytes), { sessionId: 0x800000000000002an, status: 5 });
  const out = new Uint8Array(20).fill(0xff);
  encodeCreateSessionInput({ sessionId: 1n, status: 0 }, out, 2);
  assert.deepEqual(out, hex('ffff 0100000000000000 00000000 00000000 ffff'));
});

test('dataq cipher request: op_header + cipher_data_flf + op_type', () => {
  const bytes = hex(
    '01000000 00000000 0200000000000000 00000000 00000000' + // opcode DECRYPT, algo, session 2, flag, padding
      '10000000 00100000 00100000 00000000' + // iv_len 16, src 4096, dst 4096, padding
      zeros(24) + // rest of op_type_flf[40]
      '01000000 00000000', // op_type CIPHER, padding
  );
  assert.equal(bytes.length, 72);
  assert.deepEqual(encodeCipherDataReq(1, 2n, { ivLen: 16, srcDataLen: 4096, dstDataLen: 4096 }), bytes);
  assert.deepEqual(decodeOpHeader(bytes), { opcode: 1, algo: 0, sessionId: 2n, flag: 0 });
  assert.deepEqual(decodeCipherDataFlf(bytes), { ivLen: 16, srcDataLen: 4096, dstDataLen: 4096 });
  assert.equal(decodeSymDataOpType(bytes), 1);
});

test('dataq chaining request: alg_chain_data_flf (40 bytes) + op_type', () => {
  const bytes = hex(
    '00000000 00000000 ffffffffffffff7f 00000000 00000000' +
      '10000000 20000000 20000000 00000000 20000000 00000000 20000000 05000000 14000000 00000000' +
      '02000000 00000000',
  );
  const flf = {
    ivLen: 16,
    srcDataLen: 32,
    dstDataLen: 32,
    cipherStartSrcOffset: 0,
    lenToCipher: 32,
    hashStartSrcOffset: 0,
    lenToHash: 32,
    aadLen: 5,
    hashResultLen: 20,
  };
  assert.deepEqual(encodeAlgChainDataReq(0, 0x7fffffffffffffffn, flf), bytes);
  assert.deepEqual(decodeAlgChainDataFlf(bytes), flf);
  assert.equal(decodeSymDataOpType(bytes), 2);
});

test('dataq HASH / MAC / AEAD requests', () => {
  const hash = hex('00010000 00000000 0900000000000000 00000000 00000000' + '03000000 20000000' + zeros(40));
  assert.deepEqual(encodeHashDataReq(0x100, 9n, { srcDataLen: 3, hashResultLen: 32 }), hash);
  assert.deepEqual(decodeHashDataFlf(hash), { srcDataLen: 3, hashResultLen: 32 });
  const mac = encodeHashDataReq(0x200, 9n, { srcDataLen: 3, hashResultLen: 32 });
  assert.deepEqual(mac.subarray(4), hash.subarray(4));
  assert.deepEqual(mac.subarray(0, 4), hex('00020000'));

  // aead_data_flf: iv_len, aad_len, src_data_len, dst_data_len, tag_len, reserved
  const aead = hex('01030000 00000000 0100000000000000 00000000 00000000' + '0c000000 14000000 3c000000 2c000000 10000000 00000000' + zeros(24));
  const flf = { ivLen: 12, aadLen: 20, srcDataLen: 60, dstDataLen: 44, tagLen: 16 };
  assert.deepEqual(encodeAeadDataReq(0x301, 1n, flf), aead);
  assert.deepEqual(decodeAeadDataFlf(aead), flf);
});

test('encoders write in place: at an offset of a caller buffer (a view into a larger one), the 72 bytes zeroed first, nothing else touched', () => {
  // The same hand-written requests as above.
  const cipher = hex('01000000 00000000 0200000000000000 00000000 00000000' + '10000000 00100000 00100000 00000000' + zeros(24) + '01000000 00000000');
  const aead = hex('01030000 00000000 0100000000000000 00000000 00000000' + '0c000000 14000000 3c000000 2c000000 10000000 00000000' + zeros(24));
  const create = hex('02000000 03000000 00000000 00000000' + '03000000 20000000 02000000 00000000' + zeros(32) + '01000000 00000000');
  const cases: [Uint8Array, (out: Uint8Array, offset: number) => Uint8Array][] = [
    [cipher, (out, o) => encodeCipherDataReq(1, 2n, { ivLen: 16, srcDataLen: 4096, dstDataLen: 4096 }, undefined, out, o)],
    [aead, (out, o) => encodeAeadDataReq(0x301, 1n, { ivLen: 12, aadLen: 20, srcDataLen: 60, dstDataLen: 44, tagLen: 16 }, undefined, out, o)],
    [create, (out, o) => encodeCipherCreateSessionReq({ algo: 3, keyLen: 32, op: 2 }, undefined, out, o)],
  ];
  for (const [expected, encode] of cases) {
    const backing = new Uint8Array(200).fill(0xee); // stale bytes: padding must come out zero
    const view = backing.subarray(16, 120);
    assert.equal(encode(view, 8), view, 'returns the caller buffer');
    assert.deepEqual(backing.subarray(24, 96), expected);
    assert.ok(backing.subarray(0, 24).every((b) => b === 0xee) && backing.subarray(96).every((b) => b === 0xee), 'bytes around the request untouched');
    assert.throws(() => encode(view, view.length - 71), WireError, 'a request that does not fit is refused');
    assert.throws(() => encode(view, -1), WireError);
  }
});

test('decoders read at an offset of a view, into a caller object when given', () => {
  const req = hex('00030000 00000000 0900000000000000 00000000 00000000' + '0c000000 14000000 3c000000 2c000000 10000000 00000000' + zeros(24));
  const backing = new Uint8Array(160).fill(0xee);
  backing.set(req, 40);
  const view = backing.subarray(30, 130);
  const into = { ivLen: 0, aadLen: 0, srcDataLen: 0, dstDataLen: 0, tagLen: 0 };
  assert.equal(decodeAeadDataFlf(view, 10, into), into, 'fills and returns the caller object');
  assert.deepEqual(into, { ivLen: 12, aadLen: 20, srcDataLen: 60, dstDataLen: 44, tagLen: 16 });
  const header = { opcode: 1, algo: 1, sessionId: 1n, flag: 1 };
  assert.equal(decodeOpHeader(view, 10, header), header);
  assert.deepEqual(header, { opcode: 0x300, algo: 0, sessionId: 9n, flag: 0 });
  assert.throws(() => decodeAeadDataFlf(view, 29, into), WireError, 'the request must lie inside the view, not just the backing buffer');
});

test('virtio_crypto_inhdr and virtio_crypto_destroy_session_input: one u8 status (the inhdr is the last writable byte)', () => {
  const w = new Uint8Array(12).fill(0xee);
  encodeInhdr(2, w, 4, 8); // writable part of 8 bytes at 4: status at 11
  assert.deepEqual(w, hex('eeeeeeee eeeeeeee eeeeee02'));
  assert.equal(decodeInhdr(w, 4, 8), 2);
  assert.throws(() => encodeInhdr(1, w, 4, 9), WireError);
  assert.throws(() => decodeInhdr(w, 4, 0), WireError, 'no writable byte: no status');
  assert.throws(() => encodeInhdr(256, w, 4, 8), WireError);
  encodeDestroySessionInput(1, w, 3);
  assert.equal(w[3], 1);
  assert.equal(decodeDestroySessionInput(w, 3), 1);
  assert.throws(() => decodeDestroySessionInput(w, 12), WireError);
});

test('encoders reject fields that do not fit the wire type', () => {
  assert.throws(() => encodeCipherDataReq(0, -1n, { ivLen: 0, srcDataLen: 0, dstDataLen: 0 }), WireError);
  assert.throws(() => encodeCipherDataReq(0, 1n << 64n, { ivLen: 0, srcDataLen: 0, dstDataLen: 0 }), WireError);
  assert.throws(() => encodeCipherDataReq(0, 1n, { ivLen: 2 ** 32, srcDataLen: 0, dstDataLen: 0 }), WireError);
  assert.throws(() => encodeCipherCreateSessionReq({ algo: 3, keyLen: 1.5, op: 1 }), WireError);
  assert.throws(() => encodeHashCreateSessionReq({ algo: -1, hashResultLen: 0 }), WireError);
});

test('decoders never read out of bounds: any buffer is either decoded or a WireError', () => {
  const decoders = [
    decodeConfig,
    decodeCtrlHeader,
    decodeCipherSessionFlf,
    decodeAlgChainSessionFlf,
    decodeHashCreateSessionFlf,
    decodeMacCreateSessionFlf,
    decodeAeadCreateSessionFlf,
    decodeDestroySessionFlf,
    decodeCreateSessionInput,
    decodeOpHeader,
    decodeCipherDataFlf,
    decodeAlgChainDataFlf,
    decodeHashDataFlf,
    decodeAeadDataFlf,
  ];
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 100 }), fc.integer({ min: -2, max: 100 }), (buf, off) => {
      for (const d of decoders) {
        try {
          d(buf, off);
        } catch (e) {
          assert.ok(e instanceof WireError, String(e));
        }
      }
    }),
  );
});

/**
 * vhost-user codecs against bytes written by hand from vhost-user.rst and the gcc-measured layouts
 * of QEMU's structs (docs/qemu-vhost-user-crypto.md §3, §4). Both CREATE_CRYPTO_SESSION payload layouts
 * are byte-checked.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  decodeHeader,
  encodeMessage,
  encodeU64,
  decodeU64,
  decodeVringState,
  encodeVringState,
  decodeVringFile,
  encodeVringFile,
  decodeVringAddr,
  encodeVringAddr,
  decodeMemoryTable,
  encodeMemoryTable,
  decodeCryptoSession,
  encodeCryptoSession,
  encodeCryptoSessionReply,
  decodeCryptoSessionReply,
  CryptoSessionParamError,
  VhostUserWireError,
} from '../../src/wire/vhost-user.js';
import { hex } from '../fixtures/bytes.js';


test('header: request, flags, size as three little-endian u32', () => {
  // GET_FEATURES (1), flags 0x1, size 0
  assert.deepEqual(decodeHeader(hex('01000000 01000000 00000000')), { request: 1, flags: 1, size: 0 });
  // a reply to GET_FEATURES with 0x170000000: flags exactly 0x5, size 8
  assert.deepEqual(encodeMessage(1, 0x5, encodeU64(0x170000000n)), hex('01000000 05000000 08000000 00000070 01000000'));
  assert.throws(() => decodeHeader(new Uint8Array(11)), VhostUserWireError);
});

test('u64, vring state and vring file payloads', () => {
  assert.equal(decodeU64(hex('8800000000000000')), 0x88n);
  assert.throws(() => decodeU64(new Uint8Array(4)), /payload is 4 bytes, expected 8/);
  assert.deepEqual(decodeVringState(hex('00000000 00040000')), { index: 0, num: 1024 });
  assert.deepEqual(encodeVringState({ index: 1, num: 7 }), hex('01000000 07000000'));
  // SET_VRING_CALL index 2 with NOFD: 0x102
  assert.deepEqual(decodeVringFile(hex('0201000000000000')), { index: 2, noFd: true, reservedBits: 0n });
  assert.deepEqual(decodeVringFile(hex('0102000000000000')), { index: 1, noFd: false, reservedBits: 0x200n });
  assert.deepEqual(encodeVringFile(3, false), hex('0300000000000000'));
});

test('vring addr: index, flags, desc, USED, avail, log (40 bytes)', () => {
  const bytes = hex(`
    00000000 00000000
    0010000000000000
    4018000000000000
    0014000000000000
    00200000 00000000`);
  const a = decodeVringAddr(bytes);
  assert.deepEqual(a, { index: 0, flags: 0, descUserAddr: 0x1000n, usedUserAddr: 0x1840n, availUserAddr: 0x1400n, logGuestAddr: 0x2000n });
  assert.deepEqual(encodeVringAddr(a), bytes);
  assert.throws(() => decodeVringAddr(new Uint8Array(39)), VhostUserWireError);
});

test('memory table: the two regions QEMU 7.2 sent for a 512 MiB guest (docs/qemu-vhost-user-crypto.md §7)', () => {
  const bytes = hex(`
    02000000 00000000
    0000000000000000 00000a0000000000 0000c0a5bd7f0000 0000000000000000
    00000c0000000000 0000f41f00000000 0000c0a5bd7f0000 00000c0000000000`);
  // userspace_addr of region 1 was written as the same base; the codec does not interpret it.
  const regions = decodeMemoryTable(bytes);
  assert.equal(regions.length, 2);
  assert.deepEqual(regions[0], { guestPhysAddr: 0n, memorySize: 0xa0000n, userspaceAddr: 0x7fbda5c00000n, mmapOffset: 0n });
  assert.deepEqual(regions[1], { guestPhysAddr: 0xc0000n, memorySize: 0x1ff40000n, userspaceAddr: 0x7fbda5c00000n, mmapOffset: 0xc0000n });
  assert.deepEqual(encodeMemoryTable(regions), bytes);
  assert.throws(() => decodeMemoryTable(bytes.subarray(0, 70)), /72/);
  assert.throws(() => decodeMemoryTable(hex('09000000 00000000')), /9 regions/);
  assert.throws(() => decodeMemoryTable(hex('00000000 00000000')), /0 regions/);
});

/** A QEMU 7.2 CREATE_CRYPTO_SESSION for Linux's cbc(aes) setkey, byte by byte (docs/qemu-vhost-user-crypto.md §4). */
function qemu72Session(key: Uint8Array, direction: number): Uint8Array {
  const p = new Uint8Array(632);
  p.set(hex('03000000'), 8); // cipher_alg = VIRTIO_CRYPTO_CIPHER_AES_CBC
  p.set([key.length, 0, 0, 0], 12); // key_len
  p[32] = 1; // op_type = VIRTIO_CRYPTO_SYM_OP_CIPHER
  p[33] = direction;
  p.set(hex('deadbeefdeadbeef'), 40); // QEMU heap pointer: garbage to the back-end
  p.set(key, 56);
  return p;
}

test('CREATE_CRYPTO_SESSION, QEMU 7.1-8.0 layout (632 bytes): offsets 8, 12, 32, 33, 56', () => {
  const key = hex('2b7e151628aed2a6abf7158809cf4f3c');
  const req = decodeCryptoSession(qemu72Session(key, 2));
  assert.equal(req.layout, 'qemu-7.1');
  assert.equal(req.kind, 'sym');
  if (req.kind !== 'sym') return;
  assert.equal(req.sym.cipherAlg, 3);
  assert.equal(req.sym.keyLen, 16);
  assert.equal(req.sym.opType, 1);
  assert.equal(req.sym.direction, 2);
  assert.equal(req.sym.hashAlg, 0);
  assert.deepEqual(req.sym.key, key);
  assert.equal(req.sym.authKey.length, 0);
  // Our encoder writes the same bytes (minus QEMU's pointer garbage).
  const mine = encodeCryptoSession('qemu-7.1', { ...req.sym });
  const expected = qemu72Session(key, 2);
  expected.fill(0, 40, 48);
  assert.deepEqual(mine, expected);
  // Reply: session_id @0, everything else zero (no key echoed).
  const reply = encodeCryptoSessionReply('qemu-7.1', 5n);
  assert.equal(reply.length, 632);
  assert.deepEqual(reply.subarray(0, 8), hex('0500000000000000'));
  assert.ok(reply.subarray(8).every((b) => b === 0));
  assert.deepEqual(encodeCryptoSessionReply('qemu-7.1', -1n).subarray(0, 8), hex('ffffffffffffffff'));
  assert.equal(decodeCryptoSessionReply(reply), 5n);
});

test('CREATE_CRYPTO_SESSION, QEMU 8.1+ layout (1072 bytes): op_code @0, session_id @1064', () => {
  const p = new Uint8Array(1072);
  p.set(hex('0200000000000000'), 0); // op_code = VIRTIO_CRYPTO_CIPHER_CREATE_SESSION (0x002)
  p.set(hex('03000000 20000000 04000000 20000000 08000000 00000000'), 8); // aes-cbc, key 32, sha256, 32, auth 8, aad 0
  p.set([2, 1, 2, 2], 32); // chaining, encrypt, hash_mode AUTH, CIPHER_THEN_HASH
  const key = Uint8Array.from({ length: 32 }, (_, i) => i);
  const authKey = hex('0102030405060708');
  p.set(key, 56);
  p.set(authKey, 120);
  const req = decodeCryptoSession(p);
  assert.equal(req.layout, 'qemu-8.1');
  assert.ok(req.kind === 'sym' && req.layout === 'qemu-8.1');
  if (req.kind !== 'sym' || req.layout !== 'qemu-8.1') return;
  assert.equal(req.opCode, 2);
  assert.deepEqual(
    { ...req.sym, key: [...req.sym.key], authKey: [...req.sym.authKey] },
    { cipherAlg: 3, keyLen: 32, hashAlg: 4, hashResultLen: 32, authKeyLen: 8, aadLen: 0, opType: 2, direction: 1, hashMode: 2, algChainOrder: 2, key: [...key], authKey: [...authKey] },
  );
  assert.deepEqual(encodeCryptoSession('qemu-8.1', req.sym, 2), p);
  const reply = encodeCryptoSessionReply('qemu-8.1', 0x1234n, 2);
  assert.equal(reply.length, 1072);
  assert.deepEqual(reply.subarray(0, 8), hex('0200000000000000'));
  assert.deepEqual(reply.subarray(1064), hex('3412000000000000'));
  assert.ok(reply.subarray(8, 1064).every((b) => b === 0));
  assert.equal(decodeCryptoSessionReply(reply), 0x1234n);
  // An asymmetric (akcipher, 0x404) request is recognised, not parsed as symmetric.
  const asym = new Uint8Array(1072);
  asym.set(hex('0404000000000000 01000000 00000000 10000000'), 0);
  assert.deepEqual(decodeCryptoSession(asym), { layout: 'qemu-8.1', opCode: 0x404, kind: 'asym', algo: 1, keyLen: 16 });
});

test('CREATE_CRYPTO_SESSION: key lengths beyond the buffers are refused (DPDK CVE-2020-10724)', () => {
  const p = qemu72Session(new Uint8Array(16), 1);
  p.set([65, 0, 0, 0], 12);
  assert.throws(() => decodeCryptoSession(p), CryptoSessionParamError);
  const q = qemu72Session(new Uint8Array(16), 1);
  q.set([1, 2, 0, 0], 24); // auth_key_len 513
  assert.throws(() => decodeCryptoSession(q), /auth_key_len 513/);
  assert.throws(() => decodeCryptoSession(new Uint8Array(633)), /633 bytes, expected 632 .* or 1072/);
});

test('random payloads only ever produce typed errors', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 1200 }), (bytes) => {
      for (const decode of [decodeU64, decodeVringState, decodeVringFile, decodeVringAddr, decodeMemoryTable, decodeCryptoSession, decodeHeader]) {
        try {
          decode(bytes);
        } catch (err) {
          assert.ok(err instanceof VhostUserWireError, String(err));
        }
      }
    }),
  );
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 632, maxLength: 632 }), (bytes) => {
      try {
        decodeCryptoSession(bytes);
      } catch (err) {
        assert.ok(err instanceof CryptoSessionParamError);
      }
    }),
  );
});

/**
 * The front-end's control-queue-to-session-message mapping (frontend-sessions.ts) on requests built by
 * hand from VIRTIO 1.2 §5.9.7.2 (72-byte virtio_crypto_op_ctrl_req, then the keys): what QEMU forwards
 * (cipher, chaining PLAIN/AUTH, destroys), what it answers itself (NOTSUPP), and that short, lying or
 * random requests only ever produce an answer, never an exception.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { sessionActionFor, statusForSessionReply } from '../../src/transport/vhost-user/frontend-sessions.js';

/** A 72-byte control request with the given u32 fields (offset -> value), then `tail`. */
function ctrl(fields: Record<number, number>, tail: number[] = []): Uint8Array {
  const b = new Uint8Array(72 + tail.length);
  const v = new DataView(b.buffer);
  for (const [off, val] of Object.entries(fields)) v.setUint32(Number(off), val, true);
  b.set(tail, 72);
  return b;
}

test('CIPHER_CREATE_SESSION with op_type CIPHER: AES-CBC, its key, the direction', () => {
  // opcode 0x02 @0, cipher algo 3 (AES_CBC) @16, keylen 16 @20, op 2 (DECRYPT) @24, op_type 1 @64
  const key = Array.from({ length: 16 }, (_, i) => i + 1);
  const a = sessionActionFor(ctrl({ 0: 0x02, 16: 3, 20: 16, 24: 2, 64: 1 }, key));
  assert.equal(a.kind, 'create');
  if (a.kind !== 'create') return;
  assert.equal(a.sym.cipherAlg, 3);
  assert.equal(a.sym.direction, 2);
  assert.equal(a.sym.opType, 1);
  assert.deepEqual([...a.sym.key], key);
  assert.equal(a.sym.authKey.length, 0);
});

test('chaining AUTH: cipher key then auth key; NESTED is NOTSUPP', () => {
  // order 2 @16, hash_mode 2 (AUTH) @20, cipher algo 3 @24, keylen 16 @28, op 1 @32, mac algo 4 @40, result 32 @44, auth_key_len 8 @48, op_type 2 @64
  const a = sessionActionFor(ctrl({ 0: 0x02, 16: 2, 20: 2, 24: 3, 28: 16, 32: 1, 40: 4, 44: 32, 48: 8, 64: 2 }, [...new Array(16).fill(0xaa), ...new Array(8).fill(0xbb)]));
  assert.equal(a.kind, 'create');
  if (a.kind !== 'create') return;
  assert.deepEqual([a.sym.algChainOrder, a.sym.hashMode, a.sym.hashAlg, a.sym.hashResultLen], [2, 2, 4, 32]);
  assert.deepEqual([...a.sym.key], new Array(16).fill(0xaa));
  assert.deepEqual([...a.sym.authKey], new Array(8).fill(0xbb));
  assert.deepEqual(sessionActionFor(ctrl({ 0: 0x02, 20: 3, 64: 2 })), { kind: 'answer', create: true, status: 3 });
});

test('hash, MAC and AEAD sessions are answered NOTSUPP (as QEMU does); destroys become CLOSE_CRYPTO_SESSION', () => {
  for (const opcode of [0x102, 0x202, 0x302]) assert.deepEqual(sessionActionFor(ctrl({ 0: opcode })), { kind: 'answer', create: true, status: 3 });
  for (const opcode of [0x03, 0x103, 0x203, 0x303]) {
    const b = ctrl({ 0: opcode, 16: 0x1234 });
    assert.deepEqual(sessionActionFor(b), { kind: 'close', sessionId: 0x1234n });
  }
});

test('a key length past the request or past the message buffer is ERR, not a read out of bounds', () => {
  assert.deepEqual(sessionActionFor(ctrl({ 0: 0x02, 16: 3, 20: 32, 64: 1 }, new Array(16).fill(1))), { kind: 'answer', create: true, status: 1 });
  assert.deepEqual(sessionActionFor(ctrl({ 0: 0x02, 16: 3, 20: 65, 64: 1 }, new Array(65).fill(1))), { kind: 'answer', create: true, status: 1 });
  assert.deepEqual(sessionActionFor(new Uint8Array(71)), { kind: 'answer', create: true, status: 1 });
});

test('random requests only ever map to an action', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 700 }), (bytes) => {
      const a = sessionActionFor(bytes);
      assert.ok(['create', 'close', 'answer'].includes(a.kind));
    }),
    { numRuns: 2000 },
  );
});

test('reply session ids: >= 0 OK, -status kept when it is a virtio-crypto status, anything else ERR', () => {
  assert.equal(statusForSessionReply(0n), 0);
  assert.equal(statusForSessionReply(7n), 0);
  assert.equal(statusForSessionReply(-3n), 3);
  assert.equal(statusForSessionReply(-1n), 1);
  assert.equal(statusForSessionReply(-22n), 1);
});

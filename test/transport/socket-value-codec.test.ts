/**
 * The driver service's payload codec (transport/socket/value-codec.ts): round trips of every RPC
 * message shape and of random values, bytes built by hand for each tag, and the bounds that keep one
 * payload from costing the service more than its own size (values, depth, keys, strings, trailing
 * bytes, '__proto__'), each a ValueCodecError.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import {
  decodeValue,
  encodeValue,
  MAX_DEPTH,
  MAX_KEYS,
  MAX_STRING_BYTES,
  MAX_VALUES,
  ValueCodecError,
  ValueTooLargeError,
} from '../../src/transport/socket/value-codec.js';

const h = (s: string) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const isCodecError = (re: RegExp) => (e: unknown) => e instanceof ValueCodecError && re.test(e.message);

test('each tag, bytes written by hand', () => {
  const cases: [unknown, string][] = [
    [undefined, '00'],
    [null, '01'],
    [false, '02'],
    [true, '03'],
    [-2.5, '04 c004000000000000'],
    [0n, '05 0000000000000000'],
    [(1n << 64n) - 1n, '05 ffffffffffffffff'],
    [-1n, '06 0000000000000001'],
    ['abc', '07 00000003 616263'],
    [new Uint8Array([1, 2]), '08 00000002 0102'],
    [{}, '09 0000'],
    [{ a: { b: null } }, '09 0001 01 61 09 0001 01 62 01'],
  ];
  for (const [value, hex] of cases) {
    assert.equal(encodeValue(value).toString('hex'), h(hex).toString('hex'), String(hex));
    assert.deepEqual(decodeValue(h(hex)), value, hex);
  }
  // The prefix leaves room for a frame header.
  assert.equal(encodeValue(true, { prefix: 4 }).subarray(4).toString('hex'), '03');
});

test('every RPC message shape survives (bigint session ids, Uint8Array fields, undefined fields, error objects)', () => {
  const msgs = [
    { id: 1, method: 'open' },
    { id: 2, method: 'createSession', handle: 3, opts: { kind: 'chain', cipher: 'aes-cbc', key: new Uint8Array(16).fill(1), hash: 'sha256', macKey: new Uint8Array(32), order: 'cipher-then-hash', op: 'encrypt' } },
    { id: 3, method: 'aead', handle: 3, session: 0xffff_ffff_ffff_fff0n, req: { op: 'decrypt', src: new Uint8Array(33), iv: new Uint8Array(12), aad: undefined, tag: new Uint8Array(16) } },
    { id: 4, ok: true, value: { id: 5n, kind: 'aead' } },
    { id: 5, ok: true, value: { dst: new Uint8Array(4096).fill(7), iv: new Uint8Array(16) } },
    { id: 6, ok: false, error: { code: 'EBADMSG', message: 'tag mismatch — ✓ UTF-8' } },
    { id: 7, ok: true, value: undefined },
    { type: 'vcrypto-driver-service', version: 1, info: { spec: 'pci:0000:00:04.0', description: 'virtio-crypto', maxDataQueues: 2, maxSize: 1n << 20n, maxCipherKeyLen: 64, maxAuthKeyLen: 512 } },
  ];
  for (const m of msgs) assert.deepEqual(decodeValue(encodeValue(m)), m);
});

test('property: random values of the codec\'s types round-trip; the decoded byte arrays are views of the payload', () => {
  const { value } = fc.letrec((tie) => ({
    value: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.constant(undefined),
      fc.constant(null),
      fc.boolean(),
      fc.double(),
      fc.bigInt({ min: -((1n << 64n) - 1n), max: (1n << 64n) - 1n }),
      fc.string({ maxLength: 20 }),
      fc.uint8Array({ maxLength: 40 }),
      tie('object'),
    ),
    object: fc.dictionary(fc.string({ minLength: 1, maxLength: 10 }).filter((k) => k !== '__proto__'), tie('value'), { maxKeys: 5, noNullPrototype: true }),
  }));
  fc.assert(
    fc.property(value, (v) => {
      let encoded: Buffer;
      try {
        encoded = encodeValue(v);
      } catch (err) {
        // Only the bounds may refuse a random value (e.g. nested deeper than MAX_DEPTH).
        assert.ok(err instanceof ValueCodecError, String(err));
        return;
      }
      const back = decodeValue(encoded);
      assert.deepEqual(back, v);
    }),
    { numRuns: 500 },
  );
  const payload = encodeValue({ d: new Uint8Array([9, 9]) });
  const d = (decodeValue(payload) as { d: Uint8Array }).d;
  assert.equal(d.buffer, payload.buffer, 'no copy');
  assert.equal(Object.getPrototypeOf(d), Uint8Array.prototype);
});

test('property: random bytes decode or throw ValueCodecError, nothing else', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 80 }), fc.constantFrom('', '09', '0900', '090001'), (bytes, prefix) => {
      try {
        decodeValue(Buffer.concat([h(prefix), bytes]));
      } catch (err) {
        assert.ok(err instanceof ValueCodecError, String(err));
      }
    }),
    { numRuns: 3000 },
  );
});

test('bounds: one payload cannot describe more than MAX_VALUES values, nest deeper than MAX_DEPTH, or carry long strings/keys', () => {
  // An object of MAX_KEYS keys, each an object of MAX_KEYS nulls: 1 + 32 + 32*32 values > MAX_VALUES.
  const wide = Object.fromEntries(Array.from({ length: MAX_KEYS }, (_, i) => [`k${i}`, Object.fromEntries(Array.from({ length: MAX_KEYS }, (_, j) => [`n${j}`, null]))]));
  assert.throws(() => encodeValue(wide), isCodecError(new RegExp(`more than ${MAX_VALUES} values`)));
  // The same bytes built without the encoder are refused by the decoder.
  const inner = Buffer.concat([h('090020'), ...Array.from({ length: MAX_KEYS }, (_, j) => Buffer.concat([Buffer.from([Buffer.byteLength(`n${j}`)]), Buffer.from(`n${j}`), h('01')]))]);
  const outer = Buffer.concat([h('090020'), ...Array.from({ length: MAX_KEYS }, (_, i) => Buffer.concat([Buffer.from([Buffer.byteLength(`k${i}`)]), Buffer.from(`k${i}`), inner]))]);
  assert.throws(() => decodeValue(outer), isCodecError(new RegExp(`more than ${MAX_VALUES} values`)));

  let deep: unknown = null;
  for (let i = 0; i <= MAX_DEPTH; i++) deep = { a: deep };
  assert.throws(() => encodeValue(deep), isCodecError(/nested more than/));
  assert.throws(() => decodeValue(Buffer.concat([...Array.from({ length: MAX_DEPTH + 1 }, () => h('0900010161')), h('01')])), isCodecError(/nested more than/));

  assert.throws(() => encodeValue('x'.repeat(MAX_STRING_BYTES + 1)), isCodecError(/string of/));
  const longString = Buffer.alloc(5);
  longString[0] = 0x07;
  longString.writeUInt32BE(MAX_STRING_BYTES + 1, 1);
  assert.throws(() => decodeValue(Buffer.concat([longString, Buffer.alloc(MAX_STRING_BYTES + 1)])), isCodecError(/string of \d+ bytes \(at most/));
  assert.throws(() => decodeValue(h('090021')), isCodecError(/33 keys/));
  assert.throws(() => decodeValue(h('0900010001')), isCodecError(/key of 0 bytes/));
  assert.throws(() => encodeValue({ ['k'.repeat(65)]: 1 }), isCodecError(/key of 65 bytes/));
});

test('malformed encodings: truncated lengths, trailing bytes, unknown tags, __proto__, repeated keys, -0n', () => {
  const bad: [string, RegExp][] = [
    ['', /tag of 1 bytes runs past the end/],
    ['04 0000', /number of 8 bytes runs past the end/],
    ['08 00000010 00', /byte array of 16 bytes runs past the end/],
    ['08 ffffffff', /byte array of 4294967295 bytes runs past the end/],
    ['07 000000', /string length of 4 bytes runs past the end/],
    ['03 03', /1 trailing bytes after the value/],
    ['0a', /unknown tag 0x0a at offset 0/],
    ['090001 09 5f5f70726f746f5f5f 0900 00', /key "__proto__" not allowed or repeated/],
    ['090002 0161 01 0161 02', /key "a" not allowed or repeated/],
    ['06 0000000000000000', /negative zero bigint/],
  ];
  for (const [hex, re] of bad) assert.throws(() => decodeValue(h(hex)), isCodecError(re), hex);
  // '__proto__' as a key is never a prototype change, even through the encoder.
  assert.throws(() => encodeValue(JSON.parse('{"__proto__": {"x": 1}}')), isCodecError(/not __proto__/));
});

test('what the codec cannot carry is a ValueCodecError; over maxBytes a ValueTooLargeError before allocating', () => {
  for (const v of [[1, 2], new Map(), new Uint16Array(2), () => 1, Symbol('s'), 1n << 64n, -(1n << 64n), new Date(0)]) {
    assert.throws(() => encodeValue(v), ValueCodecError, String(typeof v));
  }
  assert.throws(() => encodeValue(new Uint8Array(1000), { maxBytes: 1004 }), (e: unknown) => e instanceof ValueTooLargeError && /1005 bytes exceeds the 1004-byte/.test(e.message));
  assert.equal(encodeValue(new Uint8Array(1000), { maxBytes: 1005 }).length, 1005);
});

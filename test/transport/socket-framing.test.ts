/**
 * The driver service's framing (transport/socket/socket-wire.ts): a frame built by hand from the format
 * in value-codec.ts, the stream parser cut at every byte (start, middle, end, across two frames) and in
 * random pieces, lengths rejected before their payload is buffered, undecodable payloads, the hello.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { serialize } from 'node:v8';
import fc from 'fast-check';
import {
  decodePayload,
  encodeFrame,
  FrameDecoder,
  FrameError,
  isServiceHello,
  MAX_FRAME_PAYLOAD,
  MAX_SERVICE_DATA,
  serviceHello,
} from '../../src/transport/socket/socket-wire.js';
import { HOST_DEVICE_INFO } from '../../src/driver/host-device.js';
import { ValueTooLargeError } from '../../src/transport/socket/value-codec.js';

const frame = (message: unknown): Uint8Array => encodeFrame(message);

const A = { id: 7, method: 'crypt', handle: 1, session: 0x1_0000_0001n, req: { op: 'encrypt', src: new Uint8Array([1, 2, 3]), iv: new Uint8Array(16).fill(9) } };
const B = { id: 8, ok: true, value: { dst: new Uint8Array(300).map((_, i) => i & 0xff) } };

test('a frame is a big-endian u32 payload length, then the value (bytes written by hand from value-codec.ts)', () => {
  const bytes = frame({ id: 7, ok: true, session: 0x1_0000_0001n, dst: new Uint8Array([0xaa, 0xbb]), why: 'é' });
  const expected = Buffer.from(
    [
      '0000003a', // payload length 58
      '09 0005', // object, 5 keys
      '02 6964 04 401c000000000000', // "id": number 7 (f64)
      '02 6f6b 03', // "ok": true
      '07 73657373696f6e 05 0000000100000001', // "session": bigint 2^32+1
      '03 647374 08 00000002 aabb', // "dst": Uint8Array [aa bb]
      '03 776879 07 00000002 c3a9', // "why": string "é" (UTF-8)
    ].join('').replace(/\s+/g, ''),
    'hex',
  );
  assert.equal(Buffer.from(bytes).toString('hex'), expected.toString('hex'));
  const [p] = new FrameDecoder().push(Buffer.from(bytes));
  const back = decodePayload(p!) as { session: bigint; dst: Uint8Array };
  assert.equal(back.session, 0x1_0000_0001n);
  assert.ok(back.dst instanceof Uint8Array);
  assert.deepEqual(back, { id: 7, ok: true, session: 0x1_0000_0001n, dst: new Uint8Array([0xaa, 0xbb]), why: 'é' });
  assert.deepEqual(decodePayload(encodeFrame(A).subarray(4)), A);
});

test('split anywhere: every cut of two frames (start, middle, end, across both) yields both, in order', () => {
  const both = Buffer.concat([frame(A), frame(B)]);
  for (let cut = 0; cut <= both.length; cut++) {
    const d = new FrameDecoder();
    // Copies: the decoder owns what it is given (and wipes what it copies out of it).
    const out = [...d.push(Buffer.from(both.subarray(0, cut))), ...d.push(Buffer.from(both.subarray(cut)))];
    assert.equal(out.length, 2, `cut at ${cut}`);
    assert.deepEqual(decodePayload(out[0]!), A, `cut at ${cut}`);
    assert.deepEqual(decodePayload(out[1]!), B, `cut at ${cut}`);
    assert.equal(d.buffered, 0);
  }
  // Three pieces around the boundary between the frames, and one byte at a time.
  const d = new FrameDecoder();
  const out: Uint8Array[] = [];
  for (const byte of both) out.push(...d.push(Uint8Array.of(byte)));
  assert.deepEqual(out.map(decodePayload), [A, B]);
});

test('property: any partition of any sequence of frames yields the messages in order', () => {
  const message = fc.record({ id: fc.nat(), session: fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), data: fc.uint8Array({ maxLength: 200 }), text: fc.string() }, { noNullPrototype: true });
  fc.assert(
    fc.property(fc.array(message, { minLength: 1, maxLength: 6 }), fc.array(fc.nat(), { maxLength: 12 }), (messages, cuts) => {
      const stream = Buffer.concat(messages.map(frame));
      const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((x, y) => x - y);
      const d = new FrameDecoder();
      const out: unknown[] = [];
      let from = 0;
      for (const p of [...points, stream.length]) {
        out.push(...d.push(Buffer.from(stream.subarray(from, p))).map(decodePayload));
        from = p;
      }
      assert.deepEqual(out, messages);
    }),
    { numRuns: 300 },
  );
});

test('a length over the limit is rejected from its header alone, before any payload is buffered', () => {
  const d = new FrameDecoder();
  const header = Buffer.alloc(4);
  header.writeUInt32BE(MAX_FRAME_PAYLOAD + 1);
  assert.throws(() => d.push(header), (e: unknown) => e instanceof FrameError && /exceeds the \d+-byte limit/.test(e.message));
  assert.equal(d.buffered, 0);
  // The decoder stays failed: the connection cannot be resynchronised.
  assert.throws(() => d.push(frame(A)), FrameError);
  const all = new FrameDecoder();
  assert.throws(() => all.push(Buffer.from('ffffffff', 'hex')), FrameError);
  // Exactly the limit is fine (the header alone completes nothing yet).
  const ok = new FrameDecoder(16);
  assert.deepEqual(ok.push(Buffer.from('00000010', 'hex')), []);
  assert.equal(ok.push(new Uint8Array(16)).length, 1);
});

test('bytes copied out of a chunk (a frame that arrived in pieces) are wiped from it', () => {
  const bytes = Buffer.from(frame({ key: new Uint8Array(16).fill(0xaa) }));
  const first = bytes.subarray(0, 10);
  const rest = bytes.subarray(10);
  const d = new FrameDecoder();
  d.push(first);
  const [payload] = d.push(rest);
  assert.ok(bytes.subarray(4).every((b) => b === 0), 'the payload bytes copied out of both chunks are zero');
  assert.deepEqual(decodePayload(payload!), { key: new Uint8Array(16).fill(0xaa) });
});

test('a zero length is a framing error; so is a header split before it', () => {
  const d = new FrameDecoder();
  assert.deepEqual(d.push(Buffer.from('0000', 'hex')), []);
  assert.throws(() => d.push(Buffer.from('0000', 'hex')), (e: unknown) => e instanceof FrameError && /length 0/.test(e.message));
});

test('undecodable payloads are FrameErrors (a v8 serialization too); property: random bytes decode or throw FrameError, nothing else', () => {
  for (const bad of ['', 'ff', '0000', '04', '09', '090001', 'hello world', '0700000005616263'].map((h) => Buffer.from(h, /^[0-9a-f]*$/.test(h) ? 'hex' : 'utf8'))) {
    assert.throws(() => decodePayload(bad), FrameError, bad.toString('hex'));
  }
  assert.throws(() => decodePayload(serialize({ id: 1, method: 'open' })), /undecodable payload .*unknown tag 0xff/);
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 64 }), fc.boolean(), (bytes, withHeader) => {
      const input = withHeader ? Buffer.concat([Buffer.from([0x09, 0x00, 0x02]), bytes]) : bytes;
      try {
        decodePayload(input);
      } catch (err) {
        assert.ok(err instanceof FrameError, String(err));
      }
    }),
    { numRuns: 2000 },
  );
});

test('encodeFrame refuses a message over the limit', () => {
  assert.throws(() => encodeFrame({ data: new Uint8Array(100) }, 64), (e: unknown) => e instanceof ValueTooLargeError && /message of 113 bytes exceeds the 64-byte frame limit/.test(e.message));
});

test('the hello: capped maxSize, and every field type-checked', () => {
  const h = serviceHello(HOST_DEVICE_INFO);
  assert.equal(h.info.maxSize, BigInt(MAX_SERVICE_DATA), 'host allows 4 GiB; one frame carries 64 MiB');
  assert.equal(h.info.description, HOST_DEVICE_INFO.description);
  assert.ok(isServiceHello(h));
  assert.ok(isServiceHello(decodePayload(new FrameDecoder().push(frame(h))[0]!)));
  const bad = [
    { ...h, version: 2 },
    { ...h, type: 'x' },
    { ...h, info: { ...h.info, maxSize: 5 } },
    { ...h, info: { ...h.info, maxSize: BigInt(MAX_SERVICE_DATA) + 1n } },
    { ...h, info: { ...h.info, description: 'x'.repeat(2000) } },
    { ...h, info: { ...h.info, maxCipherKeyLen: -1 } },
    { ...h, info: null },
    'hello',
  ];
  for (const b of bad) assert.equal(isServiceHello(b), false, JSON.stringify(b, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v)));
});

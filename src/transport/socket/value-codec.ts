/**
 * The driver service's payload codec: the few value types the RPC uses (transport/message-port/
 * protocol.ts), each a tag byte and a bounded body. Integers are big-endian.
 *
 *   0x00 undefined   0x01 null   0x02 false   0x03 true
 *   0x04 number      f64
 *   0x05 bigint      u64 (0 .. 2^64-1)
 *   0x06 bigint      u64 magnitude of a negative value (-(2^64-1) .. -1)
 *   0x07 string      u32 byte length (<= MAX_STRING_BYTES) || UTF-8
 *   0x08 Uint8Array  u32 byte length || bytes (decoded as a view of the payload: no copy)
 *   0x09 object      u16 count (<= MAX_KEYS) || count x (u8 key length (1..MAX_KEY_BYTES) || UTF-8 key || value)
 *
 * DEVIATION from the obvious node:v8 serialize/deserialize: a v8 payload may describe millions of tiny
 * objects (measured: an 11.4 MiB payload of empty objects became 314 MiB of heap), so one client could
 * exhaust the service's memory with a single frame inside the size limit. Here a message holds at most
 * MAX_VALUES values nested at most MAX_DEPTH deep, so decoding costs the payload plus a few KiB; bulk
 * data only ever arrives as Uint8Array views. Decoding checks every length against the bytes left,
 * rejects trailing bytes, duplicate keys and '__proto__', and throws only ValueCodecError.
 */

export const VALUE_TAG = {
  UNDEFINED: 0x00,
  NULL: 0x01,
  FALSE: 0x02,
  TRUE: 0x03,
  NUMBER: 0x04,
  BIGINT: 0x05,
  NEGATIVE_BIGINT: 0x06,
  STRING: 0x07,
  BYTES: 0x08,
  OBJECT: 0x09,
} as const;

/** Values in one message (the largest RPC message has about 20). */
export const MAX_VALUES = 256;
/** Object nesting (the RPC nests 3 deep: response > value > field). */
export const MAX_DEPTH = 8;
export const MAX_KEYS = 32;
export const MAX_KEY_BYTES = 64;
export const MAX_STRING_BYTES = 64 * 1024;

const U64_MAX = (1n << 64n) - 1n;

/** A value this codec cannot carry (encoding) or bytes that are not a valid encoding (decoding). */
export class ValueCodecError extends Error {
  override readonly name = 'ValueCodecError';
}

interface Budget {
  values: number;
}

/** Bytes `value` encodes to; throws ValueCodecError for what the codec cannot carry. */
function sizeOf(value: unknown, depth: number, budget: Budget): number {
  if (++budget.values > MAX_VALUES) throw new ValueCodecError(`more than ${MAX_VALUES} values in one message`);
  switch (typeof value) {
    case 'undefined':
    case 'boolean':
      return 1;
    case 'number':
      return 9;
    case 'bigint':
      if (value > U64_MAX || value < -U64_MAX) throw new ValueCodecError('bigint outside ±(2^64-1)');
      return 9;
    case 'string': {
      const n = Buffer.byteLength(value, 'utf8');
      if (n > MAX_STRING_BYTES) throw new ValueCodecError(`string of ${n} bytes (at most ${MAX_STRING_BYTES})`);
      return 5 + n;
    }
    case 'object': {
      if (value === null) return 1;
      if (value instanceof Uint8Array) return 5 + value.byteLength;
      const proto = Object.getPrototypeOf(value) as unknown;
      if (proto !== Object.prototype && proto !== null) throw new ValueCodecError(`cannot carry a ${(value as object).constructor?.name ?? 'non-plain object'}`);
      if (depth >= MAX_DEPTH) throw new ValueCodecError(`objects nested more than ${MAX_DEPTH} deep`);
      const keys = Object.keys(value);
      if (keys.length > MAX_KEYS) throw new ValueCodecError(`object with ${keys.length} keys (at most ${MAX_KEYS})`);
      let n = 3;
      for (const k of keys) {
        const kn = Buffer.byteLength(k, 'utf8');
        if (kn === 0 || kn > MAX_KEY_BYTES || k === '__proto__') throw new ValueCodecError(`key of ${kn} bytes (1-${MAX_KEY_BYTES}, not __proto__)`);
        n += 1 + kn + sizeOf((value as Record<string, unknown>)[k], depth + 1, budget);
      }
      return n;
    }
    default:
      throw new ValueCodecError(`cannot carry a ${typeof value}`);
  }
}

function write(value: unknown, out: Buffer, at: number): number {
  switch (typeof value) {
    case 'undefined':
      out[at] = VALUE_TAG.UNDEFINED;
      return at + 1;
    case 'boolean':
      out[at] = value ? VALUE_TAG.TRUE : VALUE_TAG.FALSE;
      return at + 1;
    case 'number':
      out[at] = VALUE_TAG.NUMBER;
      out.writeDoubleBE(value, at + 1);
      return at + 9;
    case 'bigint':
      out[at] = value < 0n ? VALUE_TAG.NEGATIVE_BIGINT : VALUE_TAG.BIGINT;
      out.writeBigUInt64BE(value < 0n ? -value : value, at + 1);
      return at + 9;
    case 'string': {
      out[at] = VALUE_TAG.STRING;
      const n = out.write(value, at + 5, 'utf8');
      out.writeUInt32BE(n, at + 1);
      return at + 5 + n;
    }
    default: {
      if (value === null) {
        out[at] = VALUE_TAG.NULL;
        return at + 1;
      }
      if (value instanceof Uint8Array) {
        out[at] = VALUE_TAG.BYTES;
        out.writeUInt32BE(value.byteLength, at + 1);
        out.set(value, at + 5);
        return at + 5 + value.byteLength;
      }
      const keys = Object.keys(value as object);
      out[at] = VALUE_TAG.OBJECT;
      out.writeUInt16BE(keys.length, at + 1);
      let p = at + 3;
      for (const k of keys) {
        const kn = out.write(k, p + 1, 'utf8');
        out[p] = kn;
        p = write((value as Record<string, unknown>)[k], out, p + 1 + kn);
      }
      return p;
    }
  }
}

/**
 * Encodes `value` after `prefix` free bytes (room for a frame header) into one new Buffer.
 * Throws ValueCodecError for what cannot be carried, or when the encoding would exceed `maxBytes`
 * (checked before anything is allocated).
 */
export function encodeValue(value: unknown, { prefix = 0, maxBytes = Number.MAX_SAFE_INTEGER } = {}): Buffer {
  const size = sizeOf(value, 0, { values: 0 });
  if (size > maxBytes) throw new ValueTooLargeError(`message of ${size} bytes exceeds the ${maxBytes}-byte frame limit`);
  const out = Buffer.allocUnsafe(prefix + size);
  const end = write(value, out, prefix);
  // Invariant: sizeOf and write agree (a mismatch would be a bug here, not bad input).
  if (end !== out.length) throw new Error(`value codec: wrote ${end - prefix} of ${size} bytes`);
  return out;
}

/** The encoding would exceed the byte limit. */
export class ValueTooLargeError extends ValueCodecError {}

/** Decodes one value that fills `bytes` exactly. Uint8Arrays in it are views of `bytes`. */
export function decodeValue(bytes: Uint8Array): unknown {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const text = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const budget: Budget = { values: 0 };
  let at = 0;
  const need = (n: number, what: string) => {
    if (n > bytes.length - at) throw new ValueCodecError(`${what} of ${n} bytes runs past the end (offset ${at}, ${bytes.length - at} left)`);
  };
  const read = (depth: number): unknown => {
    if (++budget.values > MAX_VALUES) throw new ValueCodecError(`more than ${MAX_VALUES} values`);
    need(1, 'tag');
    const tag = bytes[at++]!;
    switch (tag) {
      case VALUE_TAG.UNDEFINED:
        return undefined;
      case VALUE_TAG.NULL:
        return null;
      case VALUE_TAG.FALSE:
        return false;
      case VALUE_TAG.TRUE:
        return true;
      case VALUE_TAG.NUMBER: {
        need(8, 'number');
        const v = view.getFloat64(at);
        at += 8;
        return v;
      }
      case VALUE_TAG.BIGINT:
      case VALUE_TAG.NEGATIVE_BIGINT: {
        need(8, 'bigint');
        const v = view.getBigUint64(at);
        at += 8;
        if (tag === VALUE_TAG.NEGATIVE_BIGINT && v === 0n) throw new ValueCodecError('negative zero bigint');
        return tag === VALUE_TAG.NEGATIVE_BIGINT ? -v : v;
      }
      case VALUE_TAG.STRING: {
        need(4, 'string length');
        const n = view.getUint32(at);
        at += 4;
        if (n > MAX_STRING_BYTES) throw new ValueCodecError(`string of ${n} bytes (at most ${MAX_STRING_BYTES})`);
        need(n, 'string');
        const s = text.toString('utf8', at, at + n);
        at += n;
        return s;
      }
      case VALUE_TAG.BYTES: {
        need(4, 'byte-array length');
        const n = view.getUint32(at);
        at += 4;
        need(n, 'byte array');
        // A plain Uint8Array view (even when the payload is a Buffer), as structured clone gives.
        const v = new Uint8Array(bytes.buffer, bytes.byteOffset + at, n);
        at += n;
        return v;
      }
      case VALUE_TAG.OBJECT: {
        if (depth >= MAX_DEPTH) throw new ValueCodecError(`objects nested more than ${MAX_DEPTH} deep`);
        need(2, 'key count');
        const count = view.getUint16(at);
        at += 2;
        if (count > MAX_KEYS) throw new ValueCodecError(`object with ${count} keys (at most ${MAX_KEYS})`);
        const obj: Record<string, unknown> = {};
        for (let i = 0; i < count; i++) {
          need(1, 'key length');
          const kn = bytes[at++]!;
          if (kn === 0 || kn > MAX_KEY_BYTES) throw new ValueCodecError(`key of ${kn} bytes (1-${MAX_KEY_BYTES})`);
          need(kn, 'key');
          const key = text.toString('utf8', at, at + kn);
          at += kn;
          if (key === '__proto__' || Object.prototype.hasOwnProperty.call(obj, key)) throw new ValueCodecError(`key ${JSON.stringify(key)} not allowed or repeated`);
          obj[key] = read(depth + 1);
        }
        return obj;
      }
      default:
        throw new ValueCodecError(`unknown tag 0x${tag.toString(16).padStart(2, '0')} at offset ${at - 1}`);
    }
  };
  const value = read(0);
  if (at !== bytes.length) throw new ValueCodecError(`${bytes.length - at} trailing bytes after the value`);
  return value;
}

/**
 * The driver service's wire format on a Unix stream socket (transport/socket/):
 *
 *   frame   = length (u32, big-endian, 1..MAX_FRAME_PAYLOAD) || payload (length bytes)
 *   payload = one value of value-codec.ts (the RPC's objects, numbers, bigints, strings, Uint8Arrays)
 *
 * The first frame of a connection goes from the service to the client: a `ServiceHello` naming the
 * device behind the service and its limits. After it, the client sends RPC requests and the service
 * answers them (transport/message-port/protocol.ts), in any order, many in flight.
 *
 * `FrameDecoder` is the stream parser: it survives a frame split anywhere, checks each length BEFORE
 * buffering the payload, and copies only frames that arrive in pieces.
 */
import type { DeviceInfo } from '../../driver/api.js';
import { decodeValue, encodeValue, ValueCodecError } from './value-codec.js';

/** Bytes of the length prefix. */
export const FRAME_HEADER_SIZE = 4;

/** The longest data a request may carry through the service (DeviceInfo.maxSize is capped to it). */
export const MAX_SERVICE_DATA = 64 * 1024 * 1024;

/** The longest payload accepted: MAX_SERVICE_DATA plus room for the other fields of a request. */
export const MAX_FRAME_PAYLOAD = MAX_SERVICE_DATA + 64 * 1024;

/** A framing violation by the peer: the connection cannot go on (tier 1). */
export class FrameError extends Error {
  override readonly name = 'FrameError';
}

/**
 * Encodes one message as a whole frame (header and payload in one Buffer).
 * Throws ValueCodecError (ValueTooLargeError: over `maxPayload`, checked before allocating).
 */
export function encodeFrame(message: unknown, maxPayload = MAX_FRAME_PAYLOAD): Buffer {
  const frame = encodeValue(message, { prefix: FRAME_HEADER_SIZE, maxBytes: maxPayload });
  frame.writeUInt32BE(frame.length - FRAME_HEADER_SIZE, 0);
  return frame;
}

/** Decodes one payload; a FrameError when it is not a valid encoding. Uint8Arrays are views of it. */
export function decodePayload(payload: Uint8Array): unknown {
  try {
    return decodeValue(payload);
  } catch (err) {
    if (!(err instanceof ValueCodecError)) throw err;
    throw new FrameError(`undecodable payload of ${payload.length} bytes (${err.message})`);
  }
}

/** Splits a byte stream into frame payloads. After it has thrown a FrameError it only throws. */
export class FrameDecoder {
  #chunks: Uint8Array[] = [];
  #buffered = 0;
  /** Payload length of the frame being read, once its header is complete; -1 before. */
  #need = -1;
  #failed: FrameError | undefined;

  constructor(readonly maxPayload = MAX_FRAME_PAYLOAD) {}

  /** Bytes held for an incomplete frame. */
  get buffered(): number {
    return this.#buffered;
  }

  /**
   * Appends `chunk`; returns the payloads of the frames it completes, in order (views of the chunks
   * when a frame arrived in one piece). Takes ownership of `chunk`: bytes copied out of it are wiped.
   */
  push(chunk: Uint8Array): Uint8Array[] {
    if (this.#failed) throw this.#failed;
    if (chunk.length > 0) {
      this.#chunks.push(chunk);
      this.#buffered += chunk.length;
    }
    const out: Uint8Array[] = [];
    for (;;) {
      if (this.#need < 0) {
        if (this.#buffered < FRAME_HEADER_SIZE) break;
        const header = this.#take(FRAME_HEADER_SIZE);
        const length = ((header[0]! << 24) >>> 0) + (header[1]! << 16) + (header[2]! << 8) + header[3]!;
        if (length === 0) return this.#fail(new FrameError('empty frame (length 0)'));
        if (length > this.maxPayload) return this.#fail(new FrameError(`frame of ${length} bytes exceeds the ${this.maxPayload}-byte limit`));
        this.#need = length;
      }
      if (this.#buffered < this.#need) break;
      out.push(this.#take(this.#need));
      this.#need = -1;
    }
    return out;
  }

  #fail(err: FrameError): never {
    this.#failed = err;
    this.#chunks = [];
    this.#buffered = 0;
    throw err;
  }

  /** The next `n` buffered bytes (n <= #buffered): a view when one chunk holds them, else a copy. */
  #take(n: number): Uint8Array {
    const first = this.#chunks[0]!;
    this.#buffered -= n;
    if (first.length >= n) {
      if (first.length === n) this.#chunks.shift();
      else this.#chunks[0] = first.subarray(n);
      return first.subarray(0, n);
    }
    const out = new Uint8Array(n);
    let filled = 0;
    while (filled < n) {
      const c = this.#chunks[0]!;
      const k = Math.min(c.length, n - filled);
      out.set(c.subarray(0, k), filled);
      // The copied bytes may be key material: the socket's chunk is ours, wipe what was copied out of it.
      c.fill(0, 0, k);
      filled += k;
      if (k === c.length) this.#chunks.shift();
      else this.#chunks[0] = c.subarray(k);
    }
    return out;
  }
}

/** The service's first frame on every connection. */
export interface ServiceHello {
  readonly type: 'vcrypto-driver-service';
  readonly version: typeof SERVICE_PROTOCOL_VERSION;
  /** The device behind the service, its limits capped to what a frame can carry. */
  readonly info: DeviceInfo;
}

export const SERVICE_PROTOCOL_VERSION = 1;

/** The longest description/spec string accepted in a hello. */
const MAX_HELLO_TEXT = 1024;

/** The hello for a device: its info, maxSize capped to MAX_SERVICE_DATA. */
export function serviceHello(info: DeviceInfo): ServiceHello {
  const cap = BigInt(MAX_SERVICE_DATA);
  return {
    type: 'vcrypto-driver-service',
    version: SERVICE_PROTOCOL_VERSION,
    info: {
      spec: info.spec,
      description: info.description,
      maxDataQueues: info.maxDataQueues,
      maxSize: info.maxSize < cap ? info.maxSize : cap,
      maxCipherKeyLen: info.maxCipherKeyLen,
      maxAuthKeyLen: info.maxAuthKeyLen,
    },
  };
}

/** Checks a decoded hello field by field (the client does not take the service's word for types). */
export function isServiceHello(msg: unknown): msg is ServiceHello {
  if (typeof msg !== 'object' || msg === null) return false;
  const m = msg as Record<string, unknown>;
  if (m.type !== 'vcrypto-driver-service' || m.version !== SERVICE_PROTOCOL_VERSION) return false;
  if (typeof m.info !== 'object' || m.info === null) return false;
  const i = m.info as Record<string, unknown>;
  const text = (v: unknown) => typeof v === 'string' && v.length <= MAX_HELLO_TEXT;
  const count = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  return (
    text(i.spec) &&
    text(i.description) &&
    count(i.maxDataQueues) &&
    typeof i.maxSize === 'bigint' &&
    i.maxSize >= 0n &&
    i.maxSize <= BigInt(MAX_SERVICE_DATA) &&
    count(i.maxCipherKeyLen) &&
    count(i.maxAuthKeyLen)
  );
}

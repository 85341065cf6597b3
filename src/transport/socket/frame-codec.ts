/**
 * Frames of the driver service's stream socket: a 4-byte big-endian length, then that many bytes
 * of a structured-clone message (node:v8 serialize: bigint and Uint8Array survive). Pure.
 *
 * The peer is not trusted: a length over the bound is refused before anything is buffered, and a
 * payload that does not deserialize is a FrameError; the decoder survives a frame cut anywhere
 * (chunks may end inside the length or the payload, or hold several frames).
 */
import { deserialize, serialize } from 'node:v8';

/** Largest payload: a 64 MiB request (data + key material) with room for its fields. */
export const MAX_FRAME_BYTES = 64 * 1024 * 1024 + 64 * 1024;
const HEADER_BYTES = 4;

export class FrameError extends Error {
  override readonly name = 'FrameError';
}

export function encodeFrame(message: unknown): Buffer {
  const body = serialize(message);
  if (body.length > MAX_FRAME_BYTES) throw new FrameError(`message of ${body.length} bytes exceeds the frame limit (${MAX_FRAME_BYTES})`);
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt32BE(body.length, 0);
  return Buffer.concat([header, body]);
}

export class FrameDecoder {
  #chunks: Buffer[] = [];
  #buffered = 0;
  /** Payload length of the frame being read, once its header is complete. */
  #need: number | undefined;

  /** Adds bytes; returns every message completed by them. Throws FrameError on bad input. */
  push(chunk: Buffer): unknown[] {
    this.#chunks.push(chunk);
    this.#buffered += chunk.length;
    const out: unknown[] = [];
    for (;;) {
      if (this.#need === undefined) {
        if (this.#buffered < HEADER_BYTES) break;
        const length = this.#take(HEADER_BYTES).readUInt32BE(0);
        if (length > MAX_FRAME_BYTES) throw new FrameError(`frame of ${length} bytes exceeds the limit (${MAX_FRAME_BYTES})`);
        this.#need = length;
      }
      if (this.#buffered < this.#need) break;
      const body = this.#take(this.#need);
      this.#need = undefined;
      try {
        out.push(deserialize(body));
      } catch (err) {
        throw new FrameError(`undecodable message: ${(err as Error).message}`);
      }
    }
    return out;
  }

  /** Bytes of an incomplete frame still buffered (0 at a frame boundary). */
  get pending(): number {
    return this.#buffered + (this.#need !== undefined ? HEADER_BYTES : 0);
  }

  #take(n: number): Buffer {
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#buffered);
    const head = all.subarray(0, n);
    const rest = all.subarray(n);
    this.#chunks = rest.length > 0 ? [rest] : [];
    this.#buffered = rest.length;
    return Buffer.from(head); // a copy: deserialize may keep views of it
  }
}

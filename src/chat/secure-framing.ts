/**
 * The secure chat's wire format (pure, no sockets):
 *
 *   connection = hello(4) frame*            (each side sends its hello first)
 *   hello      = "VCN" version(u8)          version = SECURE_CHAT_VERSION
 *   frame      = length(u16 big-endian) noise-message[length]
 *
 * Frame 1 (client -> server) and frame 2 (server -> client) are the Noise_NNpsk0 handshake messages;
 * every later frame is a Noise transport message whose plaintext is
 *
 *   payload    = type(u8) data             type: DATA_FINAL | DATA_MORE
 *              | END(u8)                   exactly one byte, the last frame of a direction
 *              | CONFIRM(u8)               exactly one byte, the client's first transport message
 *              | BUSY(u8) notice           server -> client only: its last frame, instead of a chat
 *
 * Key confirmation (version 3): the client sends CONFIRM right after the handshake, without waiting.
 * In NNpsk0 the server's side of the handshake ends after it reads frame 1, which anybody who recorded
 * a real client's frame 1 can replay; only a CONFIRM sealed with the transport keys proves the peer
 * holds the key and is live. The server treats a peer as authenticated (it may take the one chat
 * slot, or be told BUSY) only after it, so a peer without the key never holds the chat.
 *
 * A chat message longer than one Noise message (65535 bytes, Noise §3) travels as DATA_MORE fragments
 * followed by one DATA_FINAL; the receiver prints it only once the DATA_FINAL has authenticated.
 * Each side ends its direction with an END frame and only then its TCP FIN. A FIN (or a reset) without
 * an authenticated END before it means frames were cut off in transit: "connection truncated". A RST
 * after the END is a normal end (the peer had nothing more to say). Nothing may follow the END.
 * A frame of length 0 is never a valid Noise message: it is the ALERT "I rejected your handshake/frame",
 * so the peer can say "authentication failed" too instead of "connection closed".
 *
 * The version byte is also the last byte of the Noise prologue, so a peer (or a man in the middle) that
 * lies about it fails the handshake; a peer that honestly speaks another version is refused by name.
 */
import { NOISE_MAX_MESSAGE } from './noise/handshake-state.js';
import { TAGLEN } from './noise/cipher-state.js';
import { concat } from './noise/symmetric-state.js';

/**
 * Version 2 added the END frame (a version-1 peer never sends one: refused by version, not as truncated).
 * Version 3 added the client's CONFIRM and the server's BUSY (a version-2 client never confirms).
 */
export const SECURE_CHAT_VERSION = 3;
export const HELLO_MAGIC = Uint8Array.from([0x56, 0x43, 0x4e]); // "VCN"
export const HELLO_LENGTH = HELLO_MAGIC.length + 1;
/** The Noise prologue: a fixed label then the protocol version byte (Noise §6: both sides must agree). */
export const PROLOGUE_LABEL = 'vcrypto secure chat v';

export const PayloadType = {
  /** The last (or only) fragment of a chat message. */
  DATA_FINAL: 0x00,
  /** More fragments of this chat message follow. */
  DATA_MORE: 0x01,
  /** The authenticated end of this direction (no data byte): the sender's input ended cleanly. */
  END: 0x02,
  /** The client's first transport message (no data byte): key confirmation, see above. */
  CONFIRM: 0x03,
  /** Server to client, after CONFIRM, instead of a chat: the busy notice (ASCII); nothing follows. */
  BUSY: 0x04,
} as const;

/** Length prefix size. */
export const FRAME_HEADER = 2;
/** Largest chat-data fragment: a Noise message minus the AES-GCM tag and the type byte. */
export const MAX_FRAGMENT = NOISE_MAX_MESSAGE - TAGLEN - 1;
/** Largest reassembled chat message we accept (memory bound against a misbehaving peer). */
export const MAX_MESSAGE = 16 * 1024 * 1024;

export function hello(version = SECURE_CHAT_VERSION): Uint8Array {
  return Uint8Array.from([...HELLO_MAGIC, version]);
}

export function prologue(version = SECURE_CHAT_VERSION): Uint8Array {
  const label = new TextEncoder().encode(PROLOGUE_LABEL);
  return Uint8Array.from([...label, version]);
}

export type HelloCheck =
  | { ok: true }
  | { ok: false; reason: 'version'; version: number }
  | { ok: false; reason: 'not-vcrypto' };

/** Checks the peer's hello bytes (Noise §6: the version must also match inside the prologue). */
export function checkHello(bytes: Uint8Array): HelloCheck {
  const magicOk = HELLO_MAGIC.every((b, i) => bytes[i] === b);
  if (magicOk && bytes.length >= HELLO_LENGTH) {
    const version = bytes[HELLO_MAGIC.length] ?? -1;
    return version === SECURE_CHAT_VERSION ? { ok: true } : { ok: false, reason: 'version', version };
  }
  return { ok: false, reason: 'not-vcrypto' };
}

/** The first line of `bytes` if it is printable ASCII (e.g. the plain server's busy notice), else undefined. */
export function printableLine(bytes: Uint8Array): string | undefined {
  const line = Buffer.from(bytes).toString('latin1').split('\n')[0] ?? '';
  return line.length > 0 && /^[\x20-\x7e\t\r]*$/.test(line) ? line.trim().slice(0, 200) : undefined;
}

/** One frame: the length prefix then the message (0..65535 bytes). */
export function encodeFrame(message: Uint8Array): Uint8Array {
  if (message.length > NOISE_MAX_MESSAGE) throw new RangeError(`frame of ${message.length} bytes exceeds ${NOISE_MAX_MESSAGE}`);
  const out = new Uint8Array(FRAME_HEADER + message.length);
  out[0] = message.length >>> 8;
  out[1] = message.length & 0xff;
  out.set(message, FRAME_HEADER);
  return out;
}

/**
 * Stream decoder: bytes split anywhere in, whole frames out. A u16 length cannot exceed the Noise
 * maximum, so no frame is ever too large; the buffer holds at most one partial frame.
 */
export class FrameDecoder {
  #buffer: Uint8Array = new Uint8Array(0);

  /** Appends bytes and returns every frame they complete, in order. */
  push(bytes: Uint8Array): Uint8Array[] {
    this.#buffer = this.#buffer.length === 0 ? Uint8Array.from(bytes) : concat(this.#buffer, bytes);
    const frames: Uint8Array[] = [];
    let at = 0;
    for (;;) {
      if (this.#buffer.length - at < FRAME_HEADER) break;
      const len = (this.#buffer[at]! << 8) | this.#buffer[at + 1]!;
      if (this.#buffer.length - at - FRAME_HEADER < len) break;
      frames.push(this.#buffer.slice(at + FRAME_HEADER, at + FRAME_HEADER + len));
      at += FRAME_HEADER + len;
    }
    this.#buffer = this.#buffer.slice(at);
    return frames;
  }

  /** Bytes of an incomplete frame still held (non-zero at EOF means truncation). */
  get pending(): number {
    return this.#buffer.length;
  }

  /** Takes the undecoded bytes out (e.g. to hand them back to the socket). */
  takeRest(): Uint8Array {
    const rest = this.#buffer;
    this.#buffer = new Uint8Array(0);
    return rest;
  }
}

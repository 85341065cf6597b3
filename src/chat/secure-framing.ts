/**
 * The secure chat's wire format (pure, no sockets):
 *
 *   connection = hello(5) frame*            (each side sends its hello first)
 *   hello      = "VCN" version(u8) suite(u8)   version = SECURE_CHAT_VERSION, suite = ChatSuite
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
 * The version and suite bytes also end the Noise prologue, so a peer (or a man in the middle) that
 * lies about them fails the handshake; a peer that honestly speaks another version or suite is refused
 * by name.
 *
 * Suites (version 4): the handshake is always Noise_NNpsk0_25519_AESGCM_SHA256. The transport messages
 * after it are either Noise transport messages (AESGCM: AES-256-GCM, the default), or, for a crypto
 * device that offers AES-CBC only (QEMU's virtio-crypto device), CBC_HMAC messages:
 * iv(16) || AES-256-CBC(PKCS#7(payload)) || HMAC-SHA256(n || iv || ciphertext), see cbc-hmac-cipher.ts.
 */
import { NOISE_MAX_MESSAGE } from './noise/handshake-state.js';
import { TAGLEN } from './noise/cipher-state.js';
import { concat } from './noise/symmetric-state.js';

/**
 * Version 2 added the END frame (a version-1 peer never sends one: refused by version, not as truncated).
 * Version 3 added the client's CONFIRM and the server's BUSY (a version-2 client never confirms).
 * Version 4 added the suite byte to the hello and to the prologue.
 */
export const SECURE_CHAT_VERSION = 4;
export const HELLO_MAGIC = Uint8Array.from([0x56, 0x43, 0x4e]); // "VCN"
/** Magic, version and (since version 4) suite. */
export const HELLO_LENGTH = HELLO_MAGIC.length + 2;
/** The Noise prologue: a fixed label then the protocol version and suite bytes (Noise §6: both sides must agree). */
export const PROLOGUE_LABEL = 'vcrypto secure chat v';

/** How transport messages are sealed (the hello's last byte). */
export const ChatSuite = {
  /** Noise transport messages: AES-256-GCM (Noise §12.3). Everything runs on the crypto device. */
  'aes-gcm': 0x01,
  /** AES-256-CBC on the crypto device + HMAC-SHA256 (encrypt-then-MAC), for AES-CBC-only devices. */
  'cbc-hmac': 0x02,
} as const;
export type ChatSuiteName = keyof typeof ChatSuite;
export const CHAT_SUITES = Object.keys(ChatSuite) as ChatSuiteName[];
export const DEFAULT_CHAT_SUITE: ChatSuiteName = 'aes-gcm';

export function suiteName(byte: number): ChatSuiteName | undefined {
  return CHAT_SUITES.find((name) => ChatSuite[name] === byte);
}

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

export function hello(version = SECURE_CHAT_VERSION, suite: ChatSuiteName = DEFAULT_CHAT_SUITE): Uint8Array {
  return Uint8Array.from([...HELLO_MAGIC, version, ChatSuite[suite]]);
}

export function prologue(suite: ChatSuiteName = DEFAULT_CHAT_SUITE, version = SECURE_CHAT_VERSION): Uint8Array {
  const label = new TextEncoder().encode(PROLOGUE_LABEL);
  return Uint8Array.from([...label, version, ChatSuite[suite]]);
}

export type HelloCheck =
  | { ok: true }
  | { ok: false; reason: 'version'; version: number }
  | { ok: false; reason: 'suite'; suite: ChatSuiteName | undefined; byte: number }
  | { ok: false; reason: 'not-vcrypto' };

/**
 * Checks the peer's hello bytes against our suite (Noise §6: version and suite must also match inside
 * the prologue). A hello of another version may be one byte shorter (versions 1-3 had no suite byte).
 */
export function checkHello(bytes: Uint8Array, suite: ChatSuiteName = DEFAULT_CHAT_SUITE): HelloCheck {
  const magicOk = HELLO_MAGIC.every((b, i) => bytes[i] === b);
  if (!magicOk || bytes.length < HELLO_MAGIC.length + 1) return { ok: false, reason: 'not-vcrypto' };
  const version = bytes[HELLO_MAGIC.length]!;
  if (version !== SECURE_CHAT_VERSION) return { ok: false, reason: 'version', version };
  if (bytes.length < HELLO_LENGTH) return { ok: false, reason: 'not-vcrypto' };
  const byte = bytes[HELLO_MAGIC.length + 1]!;
  return byte === ChatSuite[suite] ? { ok: true } : { ok: false, reason: 'suite', suite: suiteName(byte), byte };
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

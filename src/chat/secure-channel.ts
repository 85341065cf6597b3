/**
 * The encrypted chat's ChatChannel: Noise_NNpsk0_25519_AESGCM_SHA256 (see secure-framing.ts for the
 * bytes on the wire), in one of two suites:
 *  - `aes-gcm` (default): every SHA-256 / HMAC-SHA256 / AES-GCM computed by the selected crypto device
 *    through the cryptodev session API;
 *  - `cbc-hmac`: for a device that offers AES-CBC only (QEMU's virtio-crypto device): every chat
 *    message is AES-256-CBC on the device, authenticated with HMAC-SHA256 on node:crypto
 *    (cbc-hmac-cipher.ts); the handshake runs on node:crypto.
 * One device handle per connection, closed (with its sessions) when the connection ends. Never falls
 * back to plaintext or to another device: any failure rejects or throws ChannelError.
 */
import type { Socket } from 'node:net';
import { CryptoError, type CryptoDevice, type CryptoHandle } from '../driver/api.js';
import { createHostDevice } from '../driver/host-device.js';
import { CbcHmacCipher, cbcHmacMaxPlaintext } from './cbc-hmac-cipher.js';
import { ChannelError, type ChatChannel, type ChatChannelFactory, type ChatRole } from './chat-channel.js';
import { TAGLEN } from './noise/cipher-state.js';
import { HandshakeState, NOISE_MAX_MESSAGE, PSKLEN, protocolName } from './noise/handshake-state.js';
import { NoiseError, NoiseErrorCode } from './noise/noise-error.js';
import { zeroize } from '../driver/cryptodev-semantics.js';
import { concat } from './noise/symmetric-state.js';

import {
  FrameDecoder,
  DEFAULT_CHAT_SUITE,
  HELLO_LENGTH,
  HELLO_MAGIC,
  MAX_MESSAGE,
  PayloadType,
  SECURE_CHAT_VERSION,
  checkHello,
  type ChatSuiteName,
  encodeFrame,
  hello,
  printableLine,
  prologue,
} from './secure-framing.js';

export const SECURE_PROTOCOL = protocolName('NNpsk0');
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;
/** What both sides say when the PSKs differ or the handshake was tampered with. */
export const AUTH_FAILED = 'authentication failed';

export interface SecureChannelOptions {
  /** Does the symmetric crypto (a handle is opened per connection). */
  readonly device: CryptoDevice;
  /** The 32-byte pre-shared key. Copied per connection; the caller wipes its own buffer when done. */
  readonly psk: Uint8Array;
  /** A peer that has not finished the handshake by then is dropped (default 10 s). */
  readonly handshakeTimeoutMs?: number;
  /** How chat messages are sealed (secure-framing.ts); both peers must use the same. Default aes-gcm. */
  readonly suite?: ChatSuiteName;
}

/** One direction's sealing: Noise's CipherState (AES-GCM) or CbcHmacCipher. */
interface TransportCipher {
  encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array>;
  decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Promise<Uint8Array>;
  destroy(): Promise<void>;
}

interface Transport {
  readonly send: TransportCipher;
  readonly receive: TransportCipher;
  /** Largest plaintext one sealed message (one frame, at most 65535 bytes) carries. */
  readonly maxPlaintext: number;
}

/** The channel's status line: the protocol and which device does what. */
function describe(suite: ChatSuiteName, device: string): string {
  return suite === 'aes-gcm'
    ? `${SECURE_PROTOCOL} (secure chat v${SECURE_CHAT_VERSION}); crypto by ${device}`
    : `${SECURE_PROTOCOL} + CBC_HMAC (secure chat v${SECURE_CHAT_VERSION}); AES-256-CBC by ${device}; handshake and HMAC-SHA256 on node:crypto`;
}

/** A ChatChannelFactory that runs the Noise handshake on each new connection. */
export function secureChannel(options: SecureChannelOptions): ChatChannelFactory {
  if (options.psk.length !== PSKLEN) throw new RangeError(`the chat key must be ${PSKLEN} bytes`);
  const suite = options.suite ?? DEFAULT_CHAT_SUITE;
  // cbc-hmac: the handshake's SHA-256, HKDF and AES-GCM run on node:crypto (the device has no hash).
  const cpu = suite === 'cbc-hmac' ? createHostDevice() : undefined;
  return (socket, role) => establish(socket, role, options, suite, cpu);
}

async function establish(socket: Socket, role: ChatRole, options: SecureChannelOptions, suite: ChatSuiteName, cpu: CryptoDevice | undefined): Promise<ChatChannel> {
  const reader = new HandshakeReader(socket, options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS);
  let handle: CryptoHandle | undefined;
  let handshakeHandle: CryptoHandle | undefined;
  let hs: HandshakeState | undefined;
  let keys: Transport | undefined;
  const psk = Uint8Array.from(options.psk);
  const start = async () => {
    handle = await options.device.open();
    handshakeHandle = cpu === undefined ? handle : await cpu.open();
    hs = await HandshakeState.initialize(handshakeHandle, {
      pattern: 'NNpsk0',
      initiator: role === 'client',
      prologue: prologue(suite),
      psk,
    });
    zeroize(psk);
    return hs;
  };
  try {
    if (role === 'client') {
      const state = await start();
      // -> psk, e   (sent together with our hello: one round trip for the whole handshake)
      socket.write(concat(hello(SECURE_CHAT_VERSION, suite), encodeFrame(await state.writeMessage(new Uint8Array(0)))));
      await expectHello(reader, role, suite);
      // <- e, ee
      await readHandshakeMessage(reader, state, socket);
      keys = await split(state, suite, handle!);
      // -> CONFIRM: key confirmation, sent without waiting (secure-framing.ts).
      socket.write(encodeFrame(await keys.send.encryptWithAd(new Uint8Array(0), Uint8Array.of(PayloadType.CONFIRM))));
    } else {
      socket.write(hello(SECURE_CHAT_VERSION, suite));
      // A connection that has not even sent its hello costs no device handle or session.
      await expectHello(reader, role, suite);
      const state = await start();
      await readHandshakeMessage(reader, state, socket);
      socket.write(encodeFrame(await state.writeMessage(new Uint8Array(0))));
      keys = await split(state, suite, handle!);
      await readConfirm(reader, keys, socket);
    }
    reader.detach();
    if (handshakeHandle !== handle) await handshakeHandle?.close();
    return new SecureChannel(handle!, keys, describe(suite, options.device.info.description), socket);
  } catch (err) {
    reader.detach();
    zeroize(psk);
    await hs?.destroy().catch(() => {});
    await keys?.send.destroy().catch(() => {});
    await keys?.receive.destroy().catch(() => {});
    if (handshakeHandle !== handle) await handshakeHandle?.close().catch(() => {});
    await handle?.close().catch(() => {});
    throw toChannelError(err, suite);
  }
}

/** §5.2 Split() into the suite's transport: Noise CipherStates, or CBC_HMAC ciphers on `handle`. */
async function split(state: HandshakeState, suite: ChatSuiteName, handle: CryptoHandle): Promise<Transport> {
  if (suite === 'aes-gcm') {
    const { send, receive } = await state.split();
    return { send, receive, maxPlaintext: NOISE_MAX_MESSAGE - TAGLEN };
  }
  const keys = await state.splitKeys();
  let send: CbcHmacCipher | undefined;
  try {
    send = await CbcHmacCipher.create(handle, keys.send);
    const receive = await CbcHmacCipher.create(handle, keys.receive);
    return { send, receive, maxPlaintext: cbcHmacMaxPlaintext(NOISE_MAX_MESSAGE) };
  } catch (err) {
    zeroize(keys.send, keys.receive);
    await send?.destroy().catch(() => {});
    throw err;
  }
}

/** The server's last handshake step: the client's CONFIRM, sealed with the transport keys (secure-framing.ts). */
async function readConfirm(reader: HandshakeReader, keys: Transport, socket: Socket): Promise<void> {
  const frame = await reader.readFrame();
  if (frame.length === 0) throw new ChannelError(`${AUTH_FAILED}: the peer rejected the handshake (different key?)`);
  let payload: Uint8Array;
  try {
    payload = await keys.receive.decryptWithAd(new Uint8Array(0), frame);
  } catch (err) {
    if (err instanceof NoiseError && err.code === NoiseErrorCode.DECRYPT_FAILED) {
      socket.write(encodeFrame(new Uint8Array(0))); // ALERT
      throw new ChannelError(`${AUTH_FAILED}: the client could not confirm the handshake keys (a replayed handshake?)`, { cause: err });
    }
    throw err;
  }
  if (payload.length !== 1 || payload[0] !== PayloadType.CONFIRM) {
    throw new ChannelError('secure channel: the client did not confirm the handshake');
  }
}

async function expectHello(reader: HandshakeReader, role: ChatRole, suite: ChatSuiteName): Promise<void> {
  const peer = role === 'client' ? 'server' : 'client';
  const bytes = await reader.readHello();
  const check = checkHello(bytes, suite);
  if (check.ok) return;
  if (check.reason === 'version') {
    throw new ChannelError(`the ${peer} speaks secure chat protocol version ${check.version}; this vcrypto speaks version ${SECURE_CHAT_VERSION}`);
  }
  if (check.reason === 'suite') {
    throw new ChannelError(`the ${peer} uses the suite ${check.suite ?? `#${check.byte}`}; this side was started with --suite ${suite} (both peers must use the same)`);
  }
  const text = printableLine(await reader.readLine(bytes));
  throw new ChannelError(
    text === undefined
      ? `the ${peer} does not speak the vcrypto secure chat protocol`
      : `the ${peer} did not start a secure chat; it said: ${text}`,
  );
}

async function readHandshakeMessage(reader: HandshakeReader, hs: HandshakeState, socket: Socket): Promise<void> {
  const message = await reader.readFrame();
  if (message.length === 0) throw new ChannelError(`${AUTH_FAILED}: the peer rejected the handshake (different key?)`);
  try {
    await hs.readMessage(message);
  } catch (err) {
    if (err instanceof NoiseError && (err.code === NoiseErrorCode.DECRYPT_FAILED || err.code === NoiseErrorCode.BAD_MESSAGE || err.code === NoiseErrorCode.BAD_KEY)) {
      socket.write(encodeFrame(new Uint8Array(0))); // ALERT, so the peer reports the same thing
      throw new ChannelError(`${AUTH_FAILED}: the peer does not have the same key, or the handshake was tampered with`, { cause: err });
    }
    throw err;
  }
}

function toChannelError(err: unknown, suite: ChatSuiteName): ChannelError {
  if (err instanceof ChannelError) return err;
  if (err instanceof NoiseError) return new ChannelError(`secure channel: ${err.message}`, { cause: err });
  let message = err instanceof Error ? err.message : String(err);
  if (err instanceof CryptoError && err.code === 'ENOTSUP' && suite === 'aes-gcm') {
    message += " (a device that offers only AES-CBC, such as QEMU's virtio-crypto device, needs --suite cbc-hmac on both peers)";
  }
  return new ChannelError(`secure channel setup failed: ${message}`, { cause: err });
}

/**
 * Reads the handshake from the socket with a deadline. It takes from the socket's buffer exactly the
 * bytes the handshake needs (`socket.read(n)` in paused mode), so what the peer sent after it (its
 * first messages, its END, even its FIN) stays in the socket for the chat session: nothing has to be
 * given back, and an early FIN is not consumed (an `unshift` after the 'end' event would fail).
 * Leaves the socket paused, as the ChatChannelFactory contract asks.
 */
class HandshakeReader {
  #waiter: (() => void) | undefined;
  #failure: Error | undefined;
  readonly #timer: NodeJS.Timeout;
  readonly #onReadable = () => this.#wake();
  readonly #onEnd = () => this.#fail(new ChannelError('the peer closed the connection during the handshake'));
  readonly #onError = (err: Error) => this.#fail(new ChannelError(`connection failed during the handshake: ${err.message}`));

  constructor(private readonly socket: Socket, timeoutMs: number) {
    socket.on('readable', this.#onReadable);
    socket.on('end', this.#onEnd);
    socket.on('close', this.#onEnd);
    socket.on('error', this.#onError);
    this.#timer = setTimeout(() => this.#fail(new ChannelError(`handshake timed out after ${timeoutMs} ms`)), timeoutMs);
  }

  #fail(err: Error): void {
    this.#failure ??= err;
    this.#wake();
  }

  #wake(): void {
    const w = this.#waiter;
    this.#waiter = undefined;
    w?.();
  }

  /** Exactly `n` (> 0) bytes, or (with `upTo`) whatever is buffered, at most `n`. */
  async #read(n: number, upTo = false): Promise<Uint8Array> {
    for (;;) {
      if (this.#failure) throw this.#failure;
      const want = upTo ? Math.min(n, this.socket.readableLength) : n;
      // read(0) with nothing buffered lets a stream that got its FIN emit 'end' (which wakes us).
      const chunk = this.socket.read(want) as Buffer | null;
      if (chunk !== null) {
        // At the end of the stream read(n) returns what is left, possibly less than n.
        if (chunk.length < want || chunk.length === 0) throw new ChannelError('the peer closed the connection during the handshake');
        return chunk;
      }
      if (this.socket.readableEnded || this.socket.destroyed) throw new ChannelError('the peer closed the connection during the handshake');
      await new Promise<void>((resolve) => (this.#waiter = resolve));
    }
  }

  async readHello(): Promise<Uint8Array> {
    const first = await this.#read(1);
    // A peer that is not us (e.g. a plain chat server's busy notice) already differs in its first byte.
    if (first[0] !== HELLO_MAGIC[0]) return first;
    const versioned = concat(first, await this.#read(HELLO_MAGIC.length));
    // Only our version's hello has the suite byte (versions 1-3 end at the version byte).
    if (versioned[HELLO_MAGIC.length] !== SECURE_CHAT_VERSION) return versioned;
    return concat(versioned, await this.#read(HELLO_LENGTH - versioned.length));
  }

  /**
   * For a peer that is not us: `first` plus what follows up to a newline (at most 200 bytes), or until
   * it closes or the deadline passes, so its one-line notice can be shown in the error.
   */
  async readLine(first: Uint8Array): Promise<Uint8Array> {
    let bytes = first;
    try {
      while (!bytes.includes(0x0a) && bytes.length < 200) {
        bytes = concat(bytes, await this.#read(200 - bytes.length, true));
      }
    } catch {
      // closed or timed out: show what arrived
    }
    return bytes;
  }

  async readFrame(): Promise<Uint8Array> {
    const header = await this.#read(2);
    const len = (header[0]! << 8) | header[1]!;
    return len === 0 ? new Uint8Array(0) : await this.#read(len);
  }

  detach(): void {
    clearTimeout(this.#timer);
    this.socket.off('readable', this.#onReadable);
    this.socket.off('end', this.#onEnd);
    this.socket.off('close', this.#onEnd);
    this.socket.off('error', this.#onError);
    this.socket.pause();
  }
}

/** After the handshake: AEAD frames both ways, fragments reassembled, any bad frame fatal. */
class SecureChannel implements ChatChannel {
  readonly status: string;
  readonly #decoder = new FrameDecoder();
  readonly #send: TransportCipher;
  readonly #receive: TransportCipher;
  readonly #maxFragment: number;
  #fragments: Uint8Array[] = [];
  #fragmentBytes = 0;
  #closed = false;
  /** The peer's END frame has authenticated: nothing may follow, and its FIN or RST is a normal end. */
  #peerEnded = false;
  /** We sealed our END: no further seal() (the plumbing guarantees it; checked anyway). */
  #ended = false;

  /** A frame failed after others in the same read had authenticated: reported on the next call. */
  #deferred: ChannelError | undefined;

  constructor(
    private readonly handle: CryptoHandle,
    keys: Transport,
    status: string,
    private readonly socket: Socket,
  ) {
    this.#send = keys.send;
    this.#receive = keys.receive;
    this.#maxFragment = keys.maxPlaintext - 1; // one byte of each sealed payload is its type
    this.status = status;
  }

  async seal(plaintext: Uint8Array): Promise<Uint8Array> {
    if (this.#ended) throw new ChannelError('secure channel: a message after our end of chat');
    const frames: Uint8Array[] = [];
    for (let at = 0; at < plaintext.length; at += this.#maxFragment) {
      const data = plaintext.subarray(at, at + this.#maxFragment);
      const last = at + this.#maxFragment >= plaintext.length;
      const payload = new Uint8Array(1 + data.length);
      payload[0] = last ? PayloadType.DATA_FINAL : PayloadType.DATA_MORE;
      payload.set(data, 1);
      frames.push(encodeFrame(await this.#send.encryptWithAd(new Uint8Array(0), payload)));
      zeroize(payload);
    }
    return frames.length === 1 ? frames[0]! : concat(...frames);
  }

  /** Our authenticated end of chat: one END frame, the last we send (see secure-framing.ts). */
  async end(): Promise<Uint8Array> {
    if (this.#ended) throw new ChannelError('secure channel: the end of chat was already sent');
    this.#ended = true;
    return encodeFrame(await this.#send.encryptWithAd(new Uint8Array(0), Uint8Array.of(PayloadType.END)));
  }

  peerEnded(): boolean {
    return this.#peerEnded;
  }

  /** The server turns this authenticated peer away: one BUSY frame with `notice`, the last we send. */
  async refuse(notice: string): Promise<Uint8Array> {
    if (this.#ended) throw new ChannelError('secure channel: a refusal after our end of chat');
    this.#ended = true;
    const text = new TextEncoder().encode(notice).subarray(0, this.#maxFragment);
    return encodeFrame(await this.#send.encryptWithAd(new Uint8Array(0), concat(Uint8Array.of(PayloadType.BUSY), text)));
  }

  async open(wire: Uint8Array): Promise<Uint8Array> {
    if (this.#deferred) throw this.#deferred;
    const complete: Uint8Array[] = [];
    const frames = this.#decoder.push(wire);
    for (const [i, frame] of frames.entries()) {
      try {
        const message = await this.#openFrame(frame);
        if (message !== undefined) complete.push(message);
      } catch (err) {
        if (!(err instanceof ChannelError) || complete.length === 0) throw err;
        // Authentic messages came before the bad frame in this read: deliver them, and report the
        // error right after. The bad bytes go back to the socket so the next read fails at once
        // (a failed decrypt does not advance the nonce, Noise §5.1, so it fails the same way).
        this.#deferred = err;
        const rest = concat(...frames.slice(i).map(encodeFrame), this.#decoder.takeRest());
        // After the 'end' event an unshift would fail the socket with its own error (and hide this
        // one): the stream has ended, so finish() reports the deferred error instead.
        if (!this.socket.readableEnded && !this.socket.destroyed) this.socket.unshift(Buffer.from(rest));
        break;
      }
    }
    return complete.length === 1 ? complete[0]! : concat(...complete);
  }

  /** Decrypts one frame; returns a whole chat message once its DATA_FINAL fragment is in. */
  async #openFrame(frame: Uint8Array): Promise<Uint8Array | undefined> {
    if (frame.length === 0) throw new ChannelError(`${AUTH_FAILED}: the peer rejected a message from us`);
    // Nothing may follow the END (secure-framing.ts): not even a frame that would fail to decrypt.
    if (this.#peerEnded) throw new ChannelError('secure channel: the peer sent data after its end of chat');
    let payload: Uint8Array;
    try {
      payload = await this.#receive.decryptWithAd(new Uint8Array(0), frame);
    } catch (err) {
      if (err instanceof NoiseError && err.code === NoiseErrorCode.DECRYPT_FAILED) {
        throw new ChannelError(`${AUTH_FAILED}: a message was altered, replayed, reordered or dropped in transit`, { cause: err });
      }
      throw new ChannelError(`secure channel: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
    }
    const type = payload[0];
    if (type === PayloadType.END) {
      // END is exactly one byte and never interrupts a fragmented message.
      if (payload.length !== 1) throw new ChannelError('secure channel: a malformed end of chat');
      if (this.#fragments.length > 0) throw new ChannelError('the peer ended the chat in the middle of a message');
      this.#peerEnded = true;
      return undefined;
    }
    if (type === PayloadType.BUSY) {
      throw new ChannelError(`the peer turned us away: ${printableLine(payload.subarray(1)) ?? 'busy'}`);
    }
    if (type !== PayloadType.DATA_FINAL && type !== PayloadType.DATA_MORE) {
      throw new ChannelError(`secure channel: unknown message type ${String(type)}`);
    }
    this.#fragmentBytes += payload.length - 1;
    if (this.#fragmentBytes > MAX_MESSAGE) throw new ChannelError(`secure channel: a chat message exceeds ${MAX_MESSAGE} bytes`);
    this.#fragments.push(payload.subarray(1));
    if (type !== PayloadType.DATA_FINAL) return undefined;
    const message = this.#fragments.length === 1 ? this.#fragments[0]! : concat(...this.#fragments);
    this.#fragments = [];
    this.#fragmentBytes = 0;
    return message;
  }

  finish(): void {
    if (this.#deferred) throw this.#deferred;
    if (this.#decoder.pending > 0 || this.#fragments.length > 0) {
      throw new ChannelError('the connection ended in the middle of a message (truncated in transit)');
    }
    if (!this.#peerEnded) {
      throw new ChannelError("connection truncated: it was closed before the peer's authenticated end of chat (messages may have been dropped in transit)");
    }
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#fragments = [];
    this.#decoder.takeRest();
    // close() must not throw: release the device sessions (their keys are zeroed device-side) in the background.
    void (async () => {
      await this.#send.destroy();
      await this.#receive.destroy();
      await this.handle.close();
    })().catch(() => {});
  }
}

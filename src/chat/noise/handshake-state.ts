/**
 * Noise §5.3 HandshakeState for the two patterns this project speaks (§7.4 NN, §9 NNpsk0):
 *
 *   NN:                 NNpsk0:
 *     -> e                -> psk, e
 *     <- e, ee            <- e, ee
 *
 * Ephemeral keys may be injected (the test vectors fix them); otherwise they are generated.
 * After the last message, split() yields the transport CipherStates and the handshake hash.
 */
import type { CryptoHandle } from '../../driver/api.js';
import type { CipherState } from './cipher-state.js';
import { DHLEN, dh, generateKeyPair, keyPairFromPrivate, type KeyPair } from './dh25519.js';
import { NoiseError, NoiseErrorCode } from './noise-error.js';
import { zeroize } from '../../driver/cryptodev-semantics.js';

import { concat, SymmetricState } from './symmetric-state.js';

/** §3: every Noise message is at most 65535 bytes. */
export const NOISE_MAX_MESSAGE = 65535;
/** §9: a PSK is 32 bytes. */
export const PSKLEN = 32;

type Token = 'e' | 'ee' | 'psk';
export const NoisePattern = {
  NN: [['e'], ['e', 'ee']],
  NNpsk0: [['psk', 'e'], ['e', 'ee']],
} as const satisfies Record<string, readonly (readonly Token[])[]>;
export type NoisePatternName = keyof typeof NoisePattern;

export interface HandshakeOptions {
  pattern: NoisePatternName;
  initiator: boolean;
  prologue: Uint8Array;
  /** Required for NNpsk0 (32 bytes). Copied; the caller keeps (and wipes) its own buffer. */
  psk?: Uint8Array;
  /** A fixed raw X25519 ephemeral private key (tests only); generated when absent. */
  ephemeralPrivateKey?: Uint8Array;
}

export interface TransportKeys {
  /** Encrypts what this side sends. */
  readonly send: CipherState;
  /** Decrypts what the peer sends. */
  readonly receive: CipherState;
  /** §5.3: the final h, a channel binding value (the vectors' handshake_hash). */
  readonly handshakeHash: Uint8Array;
}

export class HandshakeState {
  readonly #ss: SymmetricState;
  readonly #tokens: readonly (readonly Token[])[];
  readonly #initiator: boolean;
  readonly #psk: Uint8Array | undefined;
  readonly #pskMode: boolean;
  #e: KeyPair | undefined;
  #injectedE: Uint8Array | undefined;
  #re: Uint8Array | undefined;
  #index = 0;
  #destroyed = false;

  private constructor(ss: SymmetricState, opts: HandshakeOptions) {
    this.#ss = ss;
    this.#tokens = NoisePattern[opts.pattern];
    this.#initiator = opts.initiator;
    this.#pskMode = opts.pattern.includes('psk');
    this.#psk = copy(opts.psk);
    this.#injectedE = copy(opts.ephemeralPrivateKey);
  }

  /** §5.3 Initialize(handshake_pattern, initiator, prologue, s, e, rs, re, psks). */
  static async initialize(handle: CryptoHandle, opts: HandshakeOptions): Promise<HandshakeState> {
    const pattern = NoisePattern[opts.pattern];
    if (pattern === undefined) throw new NoiseError(NoiseErrorCode.INVALID_STATE, `unknown pattern ${String(opts.pattern)}`);
    if (opts.pattern.includes('psk') && opts.psk?.length !== PSKLEN) {
      throw new NoiseError(NoiseErrorCode.BAD_KEY, `${opts.pattern} needs a ${PSKLEN}-byte PSK`);
    }
    const ss = await SymmetricState.initialize(handle, protocolName(opts.pattern));
    const hs = new HandshakeState(ss, opts);
    try {
      await ss.mixHash(opts.prologue);
      // NN has no pre-messages (§7.4), so nothing else is hashed here.
    } catch (err) {
      await hs.destroy();
      throw err;
    }
    return hs;
  }

  /** True when it is this side's turn to WriteMessage. */
  get isMyTurn(): boolean {
    return this.#index % 2 === (this.#initiator ? 0 : 1);
  }

  /** True once every message of the pattern has been written or read (false after destroy()). */
  get isComplete(): boolean {
    return !this.#destroyed && this.#index >= this.#tokens.length;
  }

  /** §5.3 WriteMessage(payload, message_buffer). */
  async writeMessage(payload: Uint8Array): Promise<Uint8Array> {
    this.#checkTurn(true);
    const tokens = this.#tokens[this.#index++] ?? [];
    const parts: Uint8Array[] = [];
    for (const token of tokens) {
      switch (token) {
        case 'e': {
          this.#e = this.#injectedE ? keyPairFromPrivate(this.#injectedE) : generateKeyPair();
          zeroize(this.#injectedE);
          this.#injectedE = undefined;
          parts.push(this.#e.publicKey);
          await this.#ss.mixHash(this.#e.publicKey);
          // §9.2: in a PSK handshake, "e" is also mixed into the key.
          if (this.#pskMode) await this.#ss.mixKey(this.#e.publicKey);
          break;
        }
        case 'ee':
          await this.#mixDh();
          break;
        case 'psk':
          await this.#ss.mixKeyAndHash(this.#psk ?? new Uint8Array(0));
          break;
      }
    }
    parts.push(await this.#ss.encryptAndHash(payload));
    const message = concat(...parts);
    if (message.length > NOISE_MAX_MESSAGE) throw new NoiseError(NoiseErrorCode.BAD_MESSAGE, 'handshake message exceeds 65535 bytes');
    return message;
  }

  /** §5.3 ReadMessage(message, payload_buffer): returns the payload. */
  async readMessage(message: Uint8Array): Promise<Uint8Array> {
    this.#checkTurn(false);
    // §3: a Noise message is at most 65535 bytes.
    if (message.length > NOISE_MAX_MESSAGE) throw new NoiseError(NoiseErrorCode.BAD_MESSAGE, 'handshake message exceeds 65535 bytes');
    const tokens = this.#tokens[this.#index++] ?? [];
    let at = 0;
    for (const token of tokens) {
      switch (token) {
        case 'e': {
          if (message.length - at < DHLEN) throw new NoiseError(NoiseErrorCode.BAD_MESSAGE, 'handshake message too short for an ephemeral key');
          this.#re = Uint8Array.from(message.subarray(at, at + DHLEN));
          at += DHLEN;
          await this.#ss.mixHash(this.#re);
          if (this.#pskMode) await this.#ss.mixKey(this.#re);
          break;
        }
        case 'ee':
          await this.#mixDh();
          break;
        case 'psk':
          await this.#ss.mixKeyAndHash(this.#psk ?? new Uint8Array(0));
          break;
      }
    }
    return this.#ss.decryptAndHash(message.subarray(at));
  }

  /** After the last message: §5.2 Split() into transport keys; the handshake state is wiped. */
  async split(): Promise<TransportKeys> {
    return this.#split(() => this.#ss.split());
  }

  /**
   * After the last message: §5.2 Split() up to the raw keys, for a transport that is not Noise's
   * CipherState: [send, receive] from this side's point of view (the caller wipes them) and the handshake hash.
   */
  async splitKeys(): Promise<{ send: Uint8Array; receive: Uint8Array; handshakeHash: Uint8Array }> {
    return this.#split(() => this.#ss.splitKeys());
  }

  /** Split() with `take` (initiator->responder, responder->initiator), oriented for this side; wipes the state. */
  async #split<T>(take: () => Promise<[T, T]>): Promise<{ send: T; receive: T; handshakeHash: Uint8Array }> {
    if (this.#destroyed) throw new NoiseError(NoiseErrorCode.INVALID_STATE, 'split() after destroy()');
    if (!this.isComplete) throw new NoiseError(NoiseErrorCode.INVALID_STATE, 'split() before the handshake is complete');
    const handshakeHash = this.#ss.handshakeHash;
    const [first, second] = await take();
    await this.destroy();
    return this.#initiator ? { send: first, receive: second, handshakeHash } : { send: second, receive: first, handshakeHash };
  }

  /** Wipes the PSK and ephemeral secrets and closes the handshake's device sessions. Idempotent. */
  async destroy(): Promise<void> {
    zeroize(this.#psk, this.#injectedE);
    this.#e = undefined; // the KeyObject cannot be overwritten; dropping it is the best node:crypto allows
    this.#destroyed = true;
    await this.#ss.destroy();
  }

  async #mixDh(): Promise<void> {
    if (this.#e === undefined || this.#re === undefined) throw new NoiseError(NoiseErrorCode.INVALID_STATE, 'ee before both ephemerals are known');
    const shared = dh(this.#e, this.#re);
    try {
      await this.#ss.mixKey(shared);
    } finally {
      zeroize(shared);
    }
  }

  #checkTurn(writing: boolean): void {
    if (this.#destroyed) throw new NoiseError(NoiseErrorCode.INVALID_STATE, 'handshake state used after destroy()');
    if (this.isComplete) throw new NoiseError(NoiseErrorCode.INVALID_STATE, 'handshake already complete');
    if (this.isMyTurn !== writing) throw new NoiseError(NoiseErrorCode.INVALID_STATE, writing ? 'not our turn to write' : 'not our turn to read');
  }
}

/** §8: Noise_<pattern>_25519_AESGCM_SHA256. */
export function protocolName(pattern: NoisePatternName): string {
  return `Noise_${pattern}_25519_AESGCM_SHA256`;
}

/** A real copy (Buffer#slice would alias the caller's memory, and we wipe ours). */
function copy(b: Uint8Array | undefined): Uint8Array | undefined {
  return b === undefined ? undefined : Uint8Array.from(b);
}

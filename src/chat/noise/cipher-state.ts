/**
 * Noise §5.1 CipherState with the AESGCM cipher functions (§12.3), computed by the crypto device:
 * the key lives in one AEAD session on the device, created at its first use and closed by the next
 * InitializeKey or by destroy(). Our copy of the key is wiped as soon as the session exists (or when it
 * is replaced unused: during a handshake, MixKey often replaces a key before anything is encrypted
 * with it, so creating the session lazily saves device round trips).
 */
import { CryptoError, type CryptoHandle, type Session } from '../../driver/api.js';
import { NoiseError, NoiseErrorCode } from './noise-error.js';
import { zeroize } from '../../driver/cryptodev-semantics.js';


/** Noise §4.2: cipher keys are 32 bytes. */
export const KEYLEN = 32;
/** AES-GCM tag length (§12.3: a 16-byte authentication tag is appended). */
export const TAGLEN = 16;
/** §5.1: 2^64-1 is reserved for rekey; a nonce may never reach it. */
export const MAX_NONCE = 0xffff_ffff_ffff_ffffn;

/** §12.3: the 96-bit AES-GCM nonce is 32 bits of zeros followed by the big-endian 64-bit n. */
export function aesGcmNonce(n: bigint): Uint8Array {
  const iv = new Uint8Array(12);
  new DataView(iv.buffer).setBigUint64(4, n, false);
  return iv;
}

export class CipherState {
  #session: Session | undefined;
  /** A key set by InitializeKey whose device session is not created yet. */
  #pendingKey: Uint8Array | undefined;
  #opening: Promise<Session> | undefined;
  #n = 0n;
  #destroyed = false;

  constructor(private readonly handle: CryptoHandle) {}

  /** §5.1 HasKey(). */
  hasKey(): boolean {
    return this.#session !== undefined || this.#pendingKey !== undefined || this.#opening !== undefined;
  }

  /** The nonce the next EncryptWithAd/DecryptWithAd will use. */
  get nonce(): bigint {
    return this.#n;
  }

  /** §5.1 InitializeKey(key): takes ownership of `key` and wipes it once the device holds it. */
  async initializeKey(key: Uint8Array): Promise<void> {
    try {
      this.#checkAlive();
      await this.#closeSession();
      this.#pendingKey = Uint8Array.from(key);
      this.#n = 0n;
    } finally {
      zeroize(key);
    }
  }

  /**
   * The device session for the current key (created on first use), or undefined if there is no key.
   * Concurrent callers share one creation: none of them may ever see "no key" while it is under way.
   */
  async #sessionForKey(): Promise<Session | undefined> {
    const key = this.#pendingKey;
    if (key !== undefined) {
      this.#pendingKey = undefined;
      this.#opening = this.handle.createSession({ kind: 'aead', aead: 'aes-gcm', key, tagLength: TAGLEN }).finally(() => zeroize(key));
      try {
        this.#session = await this.#opening;
      } finally {
        this.#opening = undefined;
      }
      return this.#session;
    }
    if (this.#opening !== undefined) return this.#opening;
    return this.#session;
  }

  /** Creates the device session for the current key now (transport keys: no key copy lingers in memory). */
  async prepare(): Promise<void> {
    this.#checkAlive();
    await this.#sessionForKey();
  }

  /** §5.1 EncryptWithAd(ad, plaintext): ciphertext || tag, or the plaintext itself while there is no key. */
  async encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array> {
    this.#checkAlive();
    const session = await this.#sessionForKey();
    if (session === undefined) return Uint8Array.from(plaintext);
    const n = this.#takeNonce();
    const { dst, tag } = await this.handle.aead(session, { op: 'encrypt', src: plaintext, iv: aesGcmNonce(n), aad: ad });
    if (tag === undefined || tag.length !== TAGLEN || dst.length !== plaintext.length) {
      throw new NoiseError(NoiseErrorCode.INVALID_STATE, 'crypto device returned a malformed AES-GCM result');
    }
    const out = new Uint8Array(dst.length + TAGLEN);
    out.set(dst);
    out.set(tag, dst.length);
    return out;
  }

  /**
   * §5.1 DecryptWithAd(ad, ciphertext). An authentication failure is NoiseError DECRYPT_FAILED and,
   * as §5.1 says, leaves n unchanged (the caller tears the connection down anyway).
   */
  async decryptWithAd(ad: Uint8Array, ciphertext: Uint8Array): Promise<Uint8Array> {
    this.#checkAlive();
    const session = await this.#sessionForKey();
    if (session === undefined) return Uint8Array.from(ciphertext);
    if (ciphertext.length < TAGLEN) throw new NoiseError(NoiseErrorCode.DECRYPT_FAILED, 'ciphertext shorter than the AES-GCM tag');
    if (this.#n >= MAX_NONCE) throw new NoiseError(NoiseErrorCode.NONCE_EXHAUSTED, 'nonce space exhausted');
    const split = ciphertext.length - TAGLEN;
    let dst: Uint8Array;
    try {
      ({ dst } = await this.handle.aead(session, {
        op: 'decrypt',
        src: ciphertext.subarray(0, split),
        tag: ciphertext.subarray(split),
        iv: aesGcmNonce(this.#n),
        aad: ad,
      }));
    } catch (err) {
      if (err instanceof CryptoError && err.code === 'EBADMSG') {
        throw new NoiseError(NoiseErrorCode.DECRYPT_FAILED, 'authentication failed', { cause: err });
      }
      throw err;
    }
    this.#n += 1n;
    return dst;
  }

  /** Closes the device session; the state cannot be used afterwards. Idempotent. */
  async destroy(): Promise<void> {
    this.#destroyed = true;
    await this.#closeSession();
  }

  #takeNonce(): bigint {
    if (this.#n >= MAX_NONCE) throw new NoiseError(NoiseErrorCode.NONCE_EXHAUSTED, 'nonce space exhausted');
    const n = this.#n;
    this.#n += 1n;
    return n;
  }

  async #closeSession(): Promise<void> {
    zeroize(this.#pendingKey);
    this.#pendingKey = undefined;
    if (this.#opening !== undefined) await this.#opening.catch(() => undefined);
    const s = this.#session;
    this.#session = undefined;
    if (s !== undefined) await this.handle.closeSession(s);
  }

  #checkAlive(): void {
    if (this.#destroyed) throw new NoiseError(NoiseErrorCode.INVALID_STATE, 'CipherState used after destroy()');
  }
}

/**
 * Noise §5.1 CipherState with the AESGCM cipher functions (§12.3), computed by the crypto device:
 * the key lives in one AEAD session on the device, created by InitializeKey and closed by the next
 * InitializeKey or by destroy(). Our copy of the key is wiped as soon as the session exists.
 */
import { CryptoError, type CryptoHandle, type Session } from '../../driver/api.js';
import { NoiseError, NoiseErrorCode, wipe } from './noise-error.js';

/** Noise §4.2: cipher keys are 32 bytes. */
export const KEYLEN = 32;
/** AES-GCM tag length (§12.3: a 16-byte authentication tag is appended). */
export const TAGLEN = 16;
/** §5.1: 2^64-1 is reserved for rekey; a nonce may never reach it. */
const MAX_NONCE = 0xffff_ffff_ffff_ffffn;

/** §12.3: the 96-bit AES-GCM nonce is 32 bits of zeros followed by the big-endian 64-bit n. */
export function aesGcmNonce(n: bigint): Uint8Array {
  const iv = new Uint8Array(12);
  new DataView(iv.buffer).setBigUint64(4, n, false);
  return iv;
}

export class CipherState {
  #session: Session | undefined;
  #n = 0n;
  #destroyed = false;

  constructor(private readonly handle: CryptoHandle) {}

  /** §5.1 HasKey(). */
  hasKey(): boolean {
    return this.#session !== undefined;
  }

  /** The nonce the next EncryptWithAd/DecryptWithAd will use. */
  get nonce(): bigint {
    return this.#n;
  }

  /** §5.1 InitializeKey(key): takes ownership of `key` and wipes it once the device holds it. */
  async initializeKey(key: Uint8Array): Promise<void> {
    this.#checkAlive();
    try {
      await this.#closeSession();
      this.#session = await this.handle.createSession({ kind: 'aead', aead: 'aes-gcm', key, tagLength: TAGLEN });
      this.#n = 0n;
    } finally {
      wipe(key);
    }
  }

  /** §5.1 EncryptWithAd(ad, plaintext): ciphertext || tag, or the plaintext itself while there is no key. */
  async encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array> {
    this.#checkAlive();
    if (this.#session === undefined) return Uint8Array.from(plaintext);
    const n = this.#takeNonce();
    const { dst, tag } = await this.handle.aead(this.#session, { op: 'encrypt', src: plaintext, iv: aesGcmNonce(n), aad: ad });
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
    if (this.#session === undefined) return Uint8Array.from(ciphertext);
    if (ciphertext.length < TAGLEN) throw new NoiseError(NoiseErrorCode.DECRYPT_FAILED, 'ciphertext shorter than the AES-GCM tag');
    if (this.#n >= MAX_NONCE) throw new NoiseError(NoiseErrorCode.NONCE_EXHAUSTED, 'nonce space exhausted');
    const split = ciphertext.length - TAGLEN;
    let dst: Uint8Array;
    try {
      ({ dst } = await this.handle.aead(this.#session, {
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
    const s = this.#session;
    this.#session = undefined;
    if (s !== undefined) await this.handle.closeSession(s);
  }

  #checkAlive(): void {
    if (this.#destroyed) throw new NoiseError(NoiseErrorCode.INVALID_STATE, 'CipherState used after destroy()');
  }
}

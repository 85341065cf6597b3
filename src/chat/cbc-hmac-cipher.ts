/**
 * The secure chat's CBC_HMAC transport (secure-framing.ts, suite `cbc-hmac`): for a crypto device that
 * offers AES-CBC and nothing else (QEMU's virtio-crypto device offers only AES-CBC among ciphers, and
 * no hash a guest can use), the bulk encryption still runs on the device, authenticated by HMAC-SHA256
 * on the CPU (encrypt-then-MAC, the construction of RFC 7366 / ISO 19772 "EtM").
 *
 * From one 32-byte Noise transport key k (one per direction, Noise §5.2 Split()):
 *   enc_key = HMAC-SHA256(k, "vcrypto chat cbc-hmac enc")      (an AES-256-CBC session on the device)
 *   mac_key = HMAC-SHA256(k, "vcrypto chat cbc-hmac mac")
 * and each message with the 64-bit counter n (0, 1, ...; per direction, as Noise's nonce):
 *   iv      = 16 random bytes
 *   ct      = AES-256-CBC(enc_key, iv, PKCS#7(plaintext))
 *   tag     = HMAC-SHA256(mac_key, n(u64 BE) || len(ad)(u32 BE) || ad || iv || ct)
 *   message = iv || ct || tag
 * The receiver checks the length and the tag (constant-time) before anything is decrypted, so a
 * changed, replayed, reordered or dropped message fails as DECRYPT_FAILED, like a Noise AEAD message;
 * a failure leaves n unchanged (Noise §5.1).
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { CryptoError, type CryptoHandle, type Session } from '../driver/api.js';
import { AES_BLOCK_SIZE, zeroize } from '../driver/cryptodev-semantics.js';
import { MAX_NONCE } from './noise/cipher-state.js';
import { NoiseError, NoiseErrorCode } from './noise/noise-error.js';

export const CBC_HMAC_KEYLEN = 32;
export const CBC_HMAC_TAGLEN = 32;
export const CBC_HMAC_IVLEN = AES_BLOCK_SIZE;
export const CBC_HMAC_ENC_LABEL = 'vcrypto chat cbc-hmac enc';
export const CBC_HMAC_MAC_LABEL = 'vcrypto chat cbc-hmac mac';

/** The largest plaintext whose sealed message fits in `limit` bytes (iv, padding of 1..16 bytes, tag). */
export function cbcHmacMaxPlaintext(limit: number): number {
  const padded = Math.floor((limit - CBC_HMAC_IVLEN - CBC_HMAC_TAGLEN) / AES_BLOCK_SIZE) * AES_BLOCK_SIZE;
  return padded - 1;
}

/** The sealed size of a plaintext of `n` bytes. */
export function cbcHmacSealedLength(n: number): number {
  return CBC_HMAC_IVLEN + (Math.floor(n / AES_BLOCK_SIZE) + 1) * AES_BLOCK_SIZE + CBC_HMAC_TAGLEN;
}

function hmac(key: Uint8Array, ...parts: Uint8Array[]): Uint8Array {
  const h = createHmac('sha256', key);
  for (const p of parts) h.update(p);
  return new Uint8Array(h.digest());
}

function macHeader(n: bigint, adLength: number): Uint8Array {
  const header = new Uint8Array(12);
  const view = new DataView(header.buffer);
  view.setBigUint64(0, n, false);
  view.setUint32(8, adLength, false);
  return header;
}

export class CbcHmacCipher {
  #n = 0n;
  #destroyed = false;

  private constructor(
    private readonly handle: CryptoHandle,
    private readonly session: Session,
    private readonly macKey: Uint8Array,
  ) {}

  /** Derives both keys from `key` (wiped here) and creates the device's AES-256-CBC session. */
  static async create(handle: CryptoHandle, key: Uint8Array): Promise<CbcHmacCipher> {
    if (key.length !== CBC_HMAC_KEYLEN) {
      zeroize(key);
      throw new RangeError(`a CBC_HMAC transport key is ${CBC_HMAC_KEYLEN} bytes`);
    }
    const encKey = hmac(key, new TextEncoder().encode(CBC_HMAC_ENC_LABEL));
    const macKey = hmac(key, new TextEncoder().encode(CBC_HMAC_MAC_LABEL));
    zeroize(key);
    try {
      const session = await handle.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: encKey });
      return new CbcHmacCipher(handle, session, macKey);
    } catch (err) {
      zeroize(macKey);
      throw err;
    } finally {
      zeroize(encKey);
    }
  }

  /** The counter the next message will use. */
  get nonce(): bigint {
    return this.#n;
  }

  async encryptWithAd(ad: Uint8Array, plaintext: Uint8Array): Promise<Uint8Array> {
    this.#checkAlive();
    if (this.#n >= MAX_NONCE) throw new NoiseError(NoiseErrorCode.NONCE_EXHAUSTED, 'nonce space exhausted');
    const n = this.#n;
    this.#n += 1n;
    const pad = AES_BLOCK_SIZE - (plaintext.length % AES_BLOCK_SIZE);
    const padded = new Uint8Array(plaintext.length + pad);
    padded.set(plaintext);
    padded.fill(pad, plaintext.length);
    const iv = new Uint8Array(randomBytes(CBC_HMAC_IVLEN));
    let ct: Uint8Array;
    try {
      ({ dst: ct } = await this.handle.crypt(this.session, { op: 'encrypt', src: padded, iv }));
    } finally {
      zeroize(padded);
    }
    if (ct.length !== padded.length) throw new NoiseError(NoiseErrorCode.INVALID_STATE, 'crypto device returned a malformed AES-CBC result');
    const tag = hmac(this.macKey, macHeader(n, ad.length), ad, iv, ct);
    const out = new Uint8Array(CBC_HMAC_IVLEN + ct.length + CBC_HMAC_TAGLEN);
    out.set(iv);
    out.set(ct, CBC_HMAC_IVLEN);
    out.set(tag, CBC_HMAC_IVLEN + ct.length);
    return out;
  }

  async decryptWithAd(ad: Uint8Array, message: Uint8Array): Promise<Uint8Array> {
    this.#checkAlive();
    const ctLength = message.length - CBC_HMAC_IVLEN - CBC_HMAC_TAGLEN;
    if (ctLength < AES_BLOCK_SIZE || ctLength % AES_BLOCK_SIZE !== 0) {
      throw new NoiseError(NoiseErrorCode.DECRYPT_FAILED, `a CBC_HMAC message of ${message.length} bytes is malformed`);
    }
    if (this.#n >= MAX_NONCE) throw new NoiseError(NoiseErrorCode.NONCE_EXHAUSTED, 'nonce space exhausted');
    const iv = message.subarray(0, CBC_HMAC_IVLEN);
    const ct = message.subarray(CBC_HMAC_IVLEN, CBC_HMAC_IVLEN + ctLength);
    const tag = message.subarray(CBC_HMAC_IVLEN + ctLength);
    const expected = hmac(this.macKey, macHeader(this.#n, ad.length), ad, iv, ct);
    if (!timingSafeEqual(expected, tag)) throw new NoiseError(NoiseErrorCode.DECRYPT_FAILED, 'authentication failed');
    let dst: Uint8Array;
    try {
      ({ dst } = await this.handle.crypt(this.session, { op: 'decrypt', src: ct, iv }));
    } catch (err) {
      if (err instanceof CryptoError) throw new NoiseError(NoiseErrorCode.INVALID_STATE, `AES-CBC decryption failed: ${err.message}`, { cause: err });
      throw err;
    }
    // The tag was valid, so the padding was made by the peer's encryptWithAd: a bad one means the
    // device returned wrong bytes, not an attack (no padding oracle: nothing unauthenticated is decrypted).
    const pad = dst[dst.length - 1] ?? 0;
    if (dst.length !== ctLength || pad < 1 || pad > AES_BLOCK_SIZE || !dst.subarray(dst.length - pad).every((b) => b === pad)) {
      zeroize(dst);
      throw new NoiseError(NoiseErrorCode.INVALID_STATE, 'crypto device returned a malformed AES-CBC result (bad padding under a valid tag)');
    }
    this.#n += 1n;
    const plaintext = dst.slice(0, dst.length - pad);
    zeroize(dst);
    return plaintext;
  }

  /** Wipes the MAC key and closes the device session. Idempotent. */
  async destroy(): Promise<void> {
    if (this.#destroyed) return;
    this.#destroyed = true;
    zeroize(this.macKey);
    await this.handle.closeSession(this.session);
  }

  #checkAlive(): void {
    if (this.#destroyed) throw new NoiseError(NoiseErrorCode.INVALID_STATE, 'CBC_HMAC cipher used after destroy()');
  }
}

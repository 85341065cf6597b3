/**
 * Noise §5.2 SymmetricState with HASH = SHA-256 (§12.5, HASHLEN 32, BLOCKLEN 64), computed by the crypto
 * device: SHA-256 on one hash session, HMAC-SHA256 (inside HKDF, §4.3) on a mac session per key
 * (create, use, close), AES-GCM through the CipherState.
 */
import type { CryptoHandle, Session } from '../../driver/api.js';
import { CipherState, KEYLEN } from './cipher-state.js';
import { NoiseError, NoiseErrorCode } from './noise-error.js';
import { zeroize } from '../../driver/cryptodev-semantics.js';


/** §12.5 HASHLEN for SHA256. */
export const HASHLEN = 32;

export class SymmetricState {
  /** §5.2 ck: the chaining key (secret). */
  #ck: Uint8Array = new Uint8Array(HASHLEN);
  /** §5.2 h: the handshake hash. */
  #h: Uint8Array = new Uint8Array(HASHLEN);
  readonly cipherState: CipherState;
  #hashSession: Session | undefined;
  #destroyed = false;

  private constructor(private readonly handle: CryptoHandle) {
    this.cipherState = new CipherState(handle);
  }

  /** §5.2 InitializeSymmetric(protocol_name). */
  static async initialize(handle: CryptoHandle, protocolName: string): Promise<SymmetricState> {
    const s = new SymmetricState(handle);
    const name = new TextEncoder().encode(protocolName);
    // §5.2: if protocol_name is at most HASHLEN bytes, pad it with zeros to HASHLEN; otherwise hash it.
    if (name.length <= HASHLEN) s.#h.set(name);
    else s.#h = await s.hash(name);
    s.#ck = Uint8Array.from(s.#h);
    return s;
  }

  get handshakeHash(): Uint8Array {
    return Uint8Array.from(this.#h);
  }

  /** §4.3 HASH(data) on the device (one hash session for the whole handshake). */
  async hash(...parts: Uint8Array[]): Promise<Uint8Array> {
    this.#hashSession ??= await this.handle.createSession({ kind: 'hash', hash: 'sha256' });
    return this.handle.digest(this.#hashSession, concat(...parts));
  }

  /** HMAC-HASH(key, data) on a device mac session made for this key (create, use, close). */
  async #withMac<T>(key: Uint8Array, use: (mac: (data: Uint8Array) => Promise<Uint8Array>) => Promise<T>): Promise<T> {
    const session = await this.handle.createSession({ kind: 'mac', hash: 'sha256', key });
    try {
      return await use((data) => this.handle.digest(session, data));
    } finally {
      // Not awaited: the close (which zeroes the key device-side) overlaps the next request instead of
      // costing a round trip; a failure only means the handle's own close() will close it.
      this.handle.closeSession(session).catch(() => undefined);
    }
  }

  /**
   * §4.3 HKDF(chaining_key, input_key_material, num_outputs), num_outputs 2 or 3.
   * The caller owns (and must wipe) every output.
   */
  async hkdf(chainingKey: Uint8Array, ikm: Uint8Array, numOutputs: 2 | 3): Promise<Uint8Array[]> {
    const tempKey = await this.#withMac(chainingKey, (mac) => mac(ikm));
    try {
      return await this.#withMac(tempKey, async (mac) => {
        const outputs: Uint8Array[] = [];
        let prev: Uint8Array = new Uint8Array(0);
        for (let i = 1; i <= numOutputs; i++) {
          const input = concat(prev, Uint8Array.of(i));
          prev = await mac(input);
          zeroize(input);
          outputs.push(prev);
        }
        return outputs;
      });
    } finally {
      zeroize(tempKey);
    }
  }

  /** §5.2 MixKey(input_key_material). */
  async mixKey(ikm: Uint8Array): Promise<void> {
    const [ck, tempK] = (await this.hkdf(this.#ck, ikm, 2)) as [Uint8Array, Uint8Array];
    zeroize(this.#ck);
    this.#ck = ck;
    // §5.2: if HASHLEN is 64, truncate temp_k to 32 bytes (SHA-256: HASHLEN = KEYLEN = 32, nothing to cut).
    await this.cipherState.initializeKey(tempK.subarray(0, KEYLEN));
  }

  /** §5.2 MixHash(data). */
  async mixHash(data: Uint8Array): Promise<void> {
    this.#h = await this.hash(this.#h, data);
  }

  /** §5.2 MixKeyAndHash(input_key_material), used for the psk token. */
  async mixKeyAndHash(ikm: Uint8Array): Promise<void> {
    const [ck, tempH, tempK] = (await this.hkdf(this.#ck, ikm, 3)) as [Uint8Array, Uint8Array, Uint8Array];
    zeroize(this.#ck);
    this.#ck = ck;
    await this.mixHash(tempH);
    zeroize(tempH);
    await this.cipherState.initializeKey(tempK.subarray(0, KEYLEN));
  }

  /** §5.2 EncryptAndHash(plaintext). */
  async encryptAndHash(plaintext: Uint8Array): Promise<Uint8Array> {
    const ciphertext = await this.cipherState.encryptWithAd(this.#h, plaintext);
    await this.mixHash(ciphertext);
    return ciphertext;
  }

  /** §5.2 DecryptAndHash(ciphertext). */
  async decryptAndHash(ciphertext: Uint8Array): Promise<Uint8Array> {
    const plaintext = await this.cipherState.decryptWithAd(this.#h, ciphertext);
    await this.mixHash(ciphertext);
    return plaintext;
  }

  /**
   * §5.2 Split(): two CipherStates (initiator->responder, responder->initiator). Wipes ck and releases
   * the handshake's device sessions; this SymmetricState is done afterwards.
   */
  async split(): Promise<[CipherState, CipherState]> {
    const [k1, k2] = await this.splitKeys();
    const c1 = new CipherState(this.handle);
    const c2 = new CipherState(this.handle);
    try {
      await c1.initializeKey(k1.subarray(0, KEYLEN));
      await c2.initializeKey(k2.subarray(0, KEYLEN));
      await Promise.all([c1.prepare(), c2.prepare()]);
    } catch (err) {
      zeroize(k1, k2);
      await c1.destroy();
      await c2.destroy();
      throw err;
    }
    return [c1, c2];
  }

  /**
   * §5.2 Split() up to the two 32-byte keys (initiator->responder, responder->initiator), for a
   * transport that does not use Noise's CipherState (the chat's CBC_HMAC suite). The caller owns and
   * wipes them. Wipes ck and releases the handshake's device sessions.
   */
  async splitKeys(): Promise<[Uint8Array, Uint8Array]> {
    if (this.#destroyed) throw new NoiseError(NoiseErrorCode.INVALID_STATE, 'Split() after destroy()');
    const [k1, k2] = (await this.hkdf(this.#ck, new Uint8Array(0), 2)) as [Uint8Array, Uint8Array];
    await this.destroy();
    return [k1.subarray(0, KEYLEN), k2.subarray(0, KEYLEN)];
  }

  /** Wipes ck and closes the device sessions (hash session, handshake cipher). Idempotent. */
  async destroy(): Promise<void> {
    this.#destroyed = true;
    zeroize(this.#ck);
    const hs = this.#hashSession;
    this.#hashSession = undefined;
    await this.cipherState.destroy();
    if (hs !== undefined) await this.handle.closeSession(hs);
  }
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/**
 * The cryptodev-style semantics every `CryptoDevice` back-end shares: which arguments are valid, which
 * `CryptoError` code a failure carries, and what `writeIv` (COP_FLAG_WRITE_IV) returns. Pure functions,
 * no node:crypto: the `host` device (host-device.ts) and the virtio driver both call these, so the two
 * back-ends agree byte for byte and error for error.
 *
 * Error codes (one choice, used everywhere):
 *  - EINVAL   bad argument: key length, IV length, data length (CBC/ECB not a multiple of 16, XTS < 16),
 *             missing tag/MAC, a request that does not fit the session's kind.
 *  - ENOENT   the session is not open on THIS handle (closed, never existed, or belongs to another handle:
 *             sessions are per handle, like cryptodev's per-fd session list).
 *  - EBADMSG  authentication failed (AEAD tag or chained MAC mismatch).
 *  - ENOSPC   the request exceeds the device's limits (max_size, max_cipher_key_len, max_auth_key_len).
 *  - ENOTSUP  algorithm or feature the device does not offer.
 *  - EBADF    the handle (or device) is closed.
 *  - EIO      the device failed (transport lost, NEEDS_RESET).
 */
import {
  CryptoError,
  type CipherAlgorithm,
  type CryptRequest,
  type CryptResult,
  type DeviceInfo,
  type HashAlgorithm,
  type SessionOptions,
} from './api.js';

/** AES block size in bytes (FIPS 197). */
export const AES_BLOCK_SIZE = 16;
/** AES-GCM: the IV length this API supports (NIST SP 800-38D recommends 96 bits). */
export const GCM_IV_LENGTH = 12;
export const GCM_DEFAULT_TAG_LENGTH = 16;

/** Digest lengths in bytes (FIPS 180-4). */
export const DIGEST_LENGTH = {
  sha1: 20,
  sha224: 28,
  sha256: 32,
  sha384: 48,
  sha512: 64,
} as const satisfies Record<HashAlgorithm, number>;

export const HASH_ALGORITHMS = Object.keys(DIGEST_LENGTH) as readonly HashAlgorithm[];
export const CIPHER_ALGORITHMS = ['aes-ecb', 'aes-cbc', 'aes-ctr', 'aes-xts'] as const satisfies readonly CipherAlgorithm[];

export function isHashAlgorithm(name: string): name is HashAlgorithm {
  return Object.hasOwn(DIGEST_LENGTH, name);
}

/** Valid key lengths per cipher: AES-128/192/256; XTS takes two AES keys (AES-128 or AES-256 each). */
export function validCipherKeyLengths(cipher: CipherAlgorithm): readonly number[] {
  return cipher === 'aes-xts' ? [32, 64] : [16, 24, 32];
}

/** The IV length a cipher request needs (0: none, ECB). XTS: the 16-byte tweak. */
export function cipherIvLength(cipher: CipherAlgorithm): number {
  return cipher === 'aes-ecb' ? 0 : AES_BLOCK_SIZE;
}

function equalHalves(key: Uint8Array): boolean {
  const half = key.length / 2;
  let diff = 0;
  for (let i = 0; i < half; i++) diff |= key[i]! ^ key[half + i]!;
  return diff === 0;
}

/** GCM tag lengths allowed by NIST SP 800-38D §5.2.1.2 (bytes). */
export function isValidGcmTagLength(n: number): boolean {
  return Number.isInteger(n) && (n === 4 || n === 8 || (n >= 12 && n <= 16));
}

/**
 * Validates session options against the algorithm rules and the device limits; throws CryptoError.
 * Call BEFORE anything is sent to a device or a key is copied.
 */
export function validateSessionOptions(opts: SessionOptions, limits: Pick<DeviceInfo, 'maxCipherKeyLen' | 'maxAuthKeyLen'>): void {
  const checkCipherKey = (cipher: CipherAlgorithm, key: Uint8Array): void => {
    if (!(key instanceof Uint8Array)) throw new CryptoError('EINVAL', 'key must be a Uint8Array');
    if (key.length > limits.maxCipherKeyLen) {
      throw new CryptoError('ENOSPC', `cipher key of ${key.length} bytes exceeds the device's max_cipher_key_len ${limits.maxCipherKeyLen}`);
    }
    if (!validCipherKeyLengths(cipher).includes(key.length)) {
      throw new CryptoError('EINVAL', `bad key length ${key.length} for ${cipher} (expected ${validCipherKeyLengths(cipher).join('/')} bytes)`);
    }
    // XTS with identical key halves has no security (the tweak key equals the data key); OpenSSL 3
    // refuses it ("xts duplicated keys") and our device answers VIRTIO_CRYPTO_KEY_REJECTED.
    if (cipher === 'aes-xts' && equalHalves(key)) throw new CryptoError('EINVAL', 'aes-xts key rejected: the two key halves must differ');
  };
  const checkAuthKey = (key: Uint8Array): void => {
    if (!(key instanceof Uint8Array)) throw new CryptoError('EINVAL', 'MAC key must be a Uint8Array');
    if (key.length > limits.maxAuthKeyLen) {
      throw new CryptoError('ENOSPC', `MAC key of ${key.length} bytes exceeds the device's max_auth_key_len ${limits.maxAuthKeyLen}`);
    }
  };
  const checkHash = (hash: string): void => {
    if (!isHashAlgorithm(hash)) throw new CryptoError('ENOTSUP', `unsupported hash '${hash}'`);
  };
  switch (opts.kind) {
    case 'cipher':
      if (!(CIPHER_ALGORITHMS as readonly string[]).includes(opts.cipher)) throw new CryptoError('ENOTSUP', `unsupported cipher '${opts.cipher}'`);
      checkCipherKey(opts.cipher, opts.key);
      return;
    case 'hash':
      checkHash(opts.hash);
      return;
    case 'mac':
      checkHash(opts.hash);
      checkAuthKey(opts.key);
      return;
    case 'aead':
      if (opts.aead !== 'aes-gcm') throw new CryptoError('ENOTSUP', `unsupported AEAD '${String(opts.aead)}'`);
      checkCipherKey('aes-cbc', opts.key); // AES key: 16/24/32
      if (opts.tagLength !== undefined && !isValidGcmTagLength(opts.tagLength)) {
        throw new CryptoError('EINVAL', `bad GCM tag length ${opts.tagLength} (4, 8 or 12-16 bytes)`);
      }
      return;
    case 'chain':
      if (opts.cipher !== 'aes-cbc') throw new CryptoError('ENOTSUP', `unsupported chained cipher '${String((opts as { cipher: unknown }).cipher)}'`);
      if (opts.hash !== 'sha1' && opts.hash !== 'sha256') throw new CryptoError('ENOTSUP', `unsupported chained hash '${String(opts.hash)}'`);
      if (opts.order !== 'cipher-then-hash' && opts.order !== 'hash-then-cipher') throw new CryptoError('EINVAL', `bad chain order '${String(opts.order)}'`);
      if (opts.op !== 'encrypt' && opts.op !== 'decrypt') throw new CryptoError('EINVAL', `bad chain op '${String(opts.op)}'`);
      checkCipherKey('aes-cbc', opts.key);
      checkAuthKey(opts.macKey);
      return;
    default:
      throw new CryptoError('ENOTSUP', `unsupported session kind '${String((opts as { kind: unknown }).kind)}'`);
  }
}

/** Checks a data length against the device's max_size (virtio-crypto config, §5.9.4). */
export function checkDataLength(len: number, limits: Pick<DeviceInfo, 'maxSize'>): void {
  if (BigInt(len) > limits.maxSize) {
    throw new CryptoError('ENOSPC', `request of ${len} bytes exceeds the device's max_size ${limits.maxSize}`);
  }
}

/** Validates a CIOCCRYPT request for a cipher session (lengths, IV, op) before it reaches a device. */
export function validateCryptRequest(cipher: CipherAlgorithm, req: CryptRequest, limits: Pick<DeviceInfo, 'maxSize'>): void {
  if (req.op !== 'encrypt' && req.op !== 'decrypt') throw new CryptoError('EINVAL', `bad op '${String(req.op)}'`);
  if (!(req.src instanceof Uint8Array)) throw new CryptoError('EINVAL', 'src must be a Uint8Array');
  checkDataLength(req.src.length, limits);
  if ((cipher === 'aes-cbc' || cipher === 'aes-ecb') && req.src.length % AES_BLOCK_SIZE !== 0) {
    throw new CryptoError('EINVAL', `${cipher} data length ${req.src.length} is not a multiple of ${AES_BLOCK_SIZE}`);
  }
  if (cipher === 'aes-xts' && req.src.length < AES_BLOCK_SIZE) {
    throw new CryptoError('EINVAL', `aes-xts needs at least ${AES_BLOCK_SIZE} bytes of data (IEEE 1619)`);
  }
  const ivLen = cipherIvLength(cipher);
  if (ivLen > 0) {
    if (!(req.iv instanceof Uint8Array) || req.iv.length !== ivLen) {
      throw new CryptoError('EINVAL', `${cipher} needs a ${ivLen}-byte IV (got ${req.iv instanceof Uint8Array ? req.iv.length : 'none'})`);
    }
  }
  if (req.writeIv && cipher === 'aes-xts') {
    // The XTS tweak is a sector number chosen by the caller; there is no "next IV".
    throw new CryptoError('ENOTSUP', 'writeIv is not defined for aes-xts');
  }
  checkCryptDst(req);
}

/** A request's `dst`, when given: a Uint8Array of exactly src.length bytes (it may be src itself). */
export function checkCryptDst(req: Pick<CryptRequest, 'src' | 'dst'>): void {
  if (req.dst === undefined) return;
  if (!(req.dst instanceof Uint8Array)) throw new CryptoError('EINVAL', 'dst must be a Uint8Array');
  if (req.dst.length !== req.src.length) throw new CryptoError('EINVAL', `dst has ${req.dst.length} bytes, src ${req.src.length}: they must be the same length`);
}

/**
 * The result of a cipher request whose output is `out` (an array of its own, or a view of the
 * device's memory still valid): the next IV first (with `dst` = `src`, writing the result destroys
 * the ciphertext a CBC decryption's next IV comes from), then the result in `req.dst` if given (a
 * copy of `out`), else `copy(out)`, default `out` itself.
 */
export function deliverCrypt(
  cipher: CipherAlgorithm,
  req: CryptRequest,
  out: Uint8Array,
  copy: (out: Uint8Array) => Uint8Array = (o) => o,
): CryptResult {
  const iv = req.writeIv ? nextIv(cipher, req.op, req.iv, req.src, out) : undefined;
  let dst: Uint8Array;
  if (req.dst !== undefined) {
    req.dst.set(out);
    dst = req.dst;
  } else {
    dst = copy(out);
  }
  return iv === undefined ? { dst } : { dst, iv };
}

/**
 * Adds `blocks` to a 128-bit big-endian counter block, wrapping modulo 2^128 (NIST SP 800-38A
 * Appendix B.1 "standard incrementing function" over the whole block, as OpenSSL's CTR mode does).
 */
export function ctrAdd(counter: Uint8Array, blocks: number): Uint8Array {
  if (counter.length !== AES_BLOCK_SIZE) throw new CryptoError('EINVAL', 'CTR counter block must be 16 bytes');
  if (!Number.isSafeInteger(blocks) || blocks < 0) throw new CryptoError('EINVAL', 'bad block count');
  const out = new Uint8Array(AES_BLOCK_SIZE);
  let carry = blocks;
  for (let i = AES_BLOCK_SIZE - 1; i >= 0; i--) {
    const sum = (counter[i] ?? 0) + (carry % 256);
    out[i] = sum & 0xff;
    carry = Math.floor(carry / 256) + (sum > 0xff ? 1 : 0);
  }
  return out;
}

/**
 * The IV for the request that follows this one (COP_FLAG_WRITE_IV), so a long message can be cut into
 * requests: CBC → the last ciphertext block (dst when encrypting, src when decrypting; the IV itself when
 * the data is empty); CTR → the counter advanced by ceil(len/16) blocks (a partial last block consumes a
 * whole counter value); ECB → an empty IV.
 */
export function nextIv(cipher: CipherAlgorithm, op: 'encrypt' | 'decrypt', iv: Uint8Array | undefined, src: Uint8Array, dst: Uint8Array): Uint8Array {
  switch (cipher) {
    case 'aes-ecb':
      return new Uint8Array(0);
    case 'aes-cbc': {
      if (!iv) throw new CryptoError('EINVAL', 'aes-cbc needs an IV');
      const ciphertext = op === 'encrypt' ? dst : src;
      if (ciphertext.length < AES_BLOCK_SIZE) return iv.slice();
      return ciphertext.slice(ciphertext.length - AES_BLOCK_SIZE);
    }
    case 'aes-ctr':
      if (!iv) throw new CryptoError('EINVAL', 'aes-ctr needs an IV');
      return ctrAdd(iv, Math.ceil(src.length / AES_BLOCK_SIZE));
    case 'aes-xts':
      throw new CryptoError('ENOTSUP', 'writeIv is not defined for aes-xts');
  }
}

/**
 * Algorithm chaining (virtio-crypto §5.9.7.2.1.2, VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING): which side the
 * HMAC covers. `cipher-then-hash` hashes the cipher's OUTPUT, `hash-then-cipher` its INPUT; so the MAC is
 * over the ciphertext for encrypt/cipher-then-hash and decrypt/hash-then-cipher (encrypt-then-MAC).
 */
export function chainHashCoversSource(order: 'cipher-then-hash' | 'hash-then-cipher'): boolean {
  return order === 'hash-then-cipher';
}

/** Zeroes a secret buffer in place (keys, when a session or handle closes). */
export function zeroize(...buffers: (Uint8Array | undefined)[]): void {
  for (const b of buffers) b?.fill(0);
}

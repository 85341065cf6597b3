/**
 * Where the session API meets virtio-crypto's numbers (VIRTIO 1.2 §5.9): algorithm identifiers, the
 * device-config checks made before anything is sent (§5.9.4, §5.9.5), and the one mapping of device
 * status codes to `CryptoError` (§5.9.7.1), as Linux's virtio_crypto driver keeps it in one switch.
 */
import { CryptoError, type CipherAlgorithm, type HashAlgorithm, type SessionOptions } from './api.js';
import {
  VIRTIO_CRYPTO_AEAD,
  VIRTIO_CRYPTO_CIPHER,
  VIRTIO_CRYPTO_HASH,
  VIRTIO_CRYPTO_MAC,
  VIRTIO_CRYPTO_SERVICE,
  VIRTIO_CRYPTO_STATUS,
} from '../spec/virtio-crypto.js';
import type { VirtioCryptoConfig } from '../wire/virtio-crypto.js';

const STATUS_NAME: Record<number, string> = Object.fromEntries(Object.entries(VIRTIO_CRYPTO_STATUS).map(([k, v]) => [v, k]));

/** Maps a virtio-crypto status (§5.9.7.1) to a CryptoError, or null for VIRTIO_CRYPTO_OK. */
export function errorFromStatus(status: number, what: string): CryptoError | null {
  const name = STATUS_NAME[status] ?? `status ${status}`;
  switch (status) {
    case VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_OK:
      return null;
    case VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_BADMSG:
      return new CryptoError('EBADMSG', `${what}: authentication failed (${name})`);
    case VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_NOTSUPP:
      return new CryptoError('ENOTSUP', `${what}: not supported by the device (${name})`);
    case VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_INVSESS:
      return new CryptoError('ENOENT', `${what}: the device does not know this session (${name})`);
    case VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_NOSPC:
      return new CryptoError('ENOSPC', `${what}: no free session on the device (${name})`);
    case VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_KEY_REJECTED:
      return new CryptoError('EINVAL', `${what}: key rejected (${name})`);
    default:
      // VIRTIO_CRYPTO_ERR and anything unknown: arguments were checked before sending, so the device failed.
      return new CryptoError('EIO', `${what}: device error (${name})`);
  }
}

/**
 * DeviceInfo.maxSize: the longest data (src, or src + aad) that EVERY operation accepts. The config's
 * max_size (§5.9.5) bounds a request's whole variable part (iv, src, aad, dst, hash_result), and a
 * cipher request carries its data twice (src and dst): so (max_size - 128) / 2, in whole AES blocks
 * (128 covers the largest IV + tag/MAC overhead).
 */
export function dataLengthLimit(maxSize: bigint): bigint {
  if (maxSize <= 128n) return 0n;
  const n = (maxSize - 128n) / 2n;
  return n - (n % 16n);
}

// ------------------------------------------------------------------------------------------------
// Algorithm numbers (§5.9.4)

export const CIPHER_ALGO: Record<CipherAlgorithm, number> = {
  'aes-ecb': VIRTIO_CRYPTO_CIPHER.VIRTIO_CRYPTO_CIPHER_AES_ECB,
  'aes-cbc': VIRTIO_CRYPTO_CIPHER.VIRTIO_CRYPTO_CIPHER_AES_CBC,
  'aes-ctr': VIRTIO_CRYPTO_CIPHER.VIRTIO_CRYPTO_CIPHER_AES_CTR,
  'aes-xts': VIRTIO_CRYPTO_CIPHER.VIRTIO_CRYPTO_CIPHER_AES_XTS,
};
export const HASH_ALGO: Record<HashAlgorithm, number> = {
  sha1: VIRTIO_CRYPTO_HASH.VIRTIO_CRYPTO_HASH_SHA1,
  sha224: VIRTIO_CRYPTO_HASH.VIRTIO_CRYPTO_HASH_SHA_224,
  sha256: VIRTIO_CRYPTO_HASH.VIRTIO_CRYPTO_HASH_SHA_256,
  sha384: VIRTIO_CRYPTO_HASH.VIRTIO_CRYPTO_HASH_SHA_384,
  sha512: VIRTIO_CRYPTO_HASH.VIRTIO_CRYPTO_HASH_SHA_512,
};
export const MAC_ALGO: Record<HashAlgorithm, number> = {
  sha1: VIRTIO_CRYPTO_MAC.VIRTIO_CRYPTO_MAC_HMAC_SHA1,
  sha224: VIRTIO_CRYPTO_MAC.VIRTIO_CRYPTO_MAC_HMAC_SHA_224,
  sha256: VIRTIO_CRYPTO_MAC.VIRTIO_CRYPTO_MAC_HMAC_SHA_256,
  sha384: VIRTIO_CRYPTO_MAC.VIRTIO_CRYPTO_MAC_HMAC_SHA_384,
  sha512: VIRTIO_CRYPTO_MAC.VIRTIO_CRYPTO_MAC_HMAC_SHA_512,
};

function bitSet(lo: number, hi: number, bit: number): boolean {
  return bit < 32 ? ((lo >>> bit) & 1) === 1 : ((hi >>> (bit - 32)) & 1) === 1;
}

/** §5.9.4 / §5.9.5: does the device's config offer what this session needs? Throws ENOTSUP. */
export function checkOffered(cfg: VirtioCryptoConfig, opts: SessionOptions): void {
  const service = (s: number, name: string): void => {
    if (((cfg.cryptoServices >>> s) & 1) === 0) throw new CryptoError('ENOTSUP', `the device does not offer the ${name} service`);
  };
  const cipher = (c: CipherAlgorithm): void => {
    service(VIRTIO_CRYPTO_SERVICE.CIPHER, 'cipher');
    if (!bitSet(cfg.cipherAlgoL, cfg.cipherAlgoH, CIPHER_ALGO[c])) throw new CryptoError('ENOTSUP', `the device does not offer ${c}`);
  };
  const mac = (h: HashAlgorithm): void => {
    service(VIRTIO_CRYPTO_SERVICE.MAC, 'mac');
    if (!bitSet(cfg.macAlgoL, cfg.macAlgoH, MAC_ALGO[h])) throw new CryptoError('ENOTSUP', `the device does not offer hmac-${h}`);
  };
  switch (opts.kind) {
    case 'cipher':
      return cipher(opts.cipher);
    case 'hash':
      service(VIRTIO_CRYPTO_SERVICE.HASH, 'hash');
      if (!bitSet(cfg.hashAlgo, 0, HASH_ALGO[opts.hash])) throw new CryptoError('ENOTSUP', `the device does not offer ${opts.hash}`);
      return;
    case 'mac':
      return mac(opts.hash);
    case 'aead':
      service(VIRTIO_CRYPTO_SERVICE.AEAD, 'aead');
      if (!bitSet(cfg.aeadAlgo, 0, VIRTIO_CRYPTO_AEAD.VIRTIO_CRYPTO_AEAD_GCM)) throw new CryptoError('ENOTSUP', 'the device does not offer aes-gcm');
      return;
    case 'chain':
      cipher('aes-cbc');
      return mac(opts.hash);
  }
}

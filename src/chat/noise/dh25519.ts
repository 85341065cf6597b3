/**
 * Noise §4.1 DH functions for 25519 (X25519, RFC 7748), on node:crypto.
 * The DH function is the only Noise primitive that does NOT go through the crypto device
 * (virtio-crypto has no key-agreement service).
 */
import { createPrivateKey, createPublicKey, diffieHellman, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { NoiseError, NoiseErrorCode } from './noise-error.js';
import { zeroize } from '../../driver/cryptodev-semantics.js';


/** Noise §4.1 DHLEN for 25519. */
export const DHLEN = 32;

// RFC 8410 §7: PKCS#8 PrivateKeyInfo / SubjectPublicKeyInfo for id-X25519 (1.3.101.110), ASN.1 prefixes
// of the fixed-length DER encodings: what follows each prefix is the raw 32-byte key.
const PKCS8_X25519_PREFIX = Uint8Array.from([0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x04, 0x22, 0x04, 0x20]);
const SPKI_X25519_PREFIX = Uint8Array.from([0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x6e, 0x03, 0x21, 0x00]);

export interface KeyPair {
  readonly privateKey: KeyObject;
  /** The raw 32-byte public key as it travels in handshake messages. */
  readonly publicKey: Uint8Array;
}

/** Builds a key pair from a raw 32-byte X25519 private key (test vectors inject fixed ephemerals). */
export function keyPairFromPrivate(raw: Uint8Array): KeyPair {
  if (raw.length !== DHLEN) throw new NoiseError(NoiseErrorCode.BAD_KEY, `X25519 private key must be ${DHLEN} bytes`);
  const der = new Uint8Array(PKCS8_X25519_PREFIX.length + DHLEN);
  der.set(PKCS8_X25519_PREFIX);
  der.set(raw, PKCS8_X25519_PREFIX.length);
  try {
    const privateKey = createPrivateKey({ key: Buffer.from(der.buffer, der.byteOffset, der.length), format: 'der', type: 'pkcs8' });
    return { privateKey, publicKey: rawPublicKey(createPublicKey(privateKey)) };
  } finally {
    zeroize(der);
  }
}

/** Noise §4.1 GENERATE_KEYPAIR(). */
export function generateKeyPair(): KeyPair {
  const { privateKey, publicKey } = generateKeyPairSync('x25519');
  return { privateKey, publicKey: rawPublicKey(publicKey) };
}

function rawPublicKey(key: KeyObject): Uint8Array {
  const spki = key.export({ format: 'der', type: 'spki' });
  return new Uint8Array(spki.subarray(spki.length - DHLEN));
}

/**
 * Noise §4.1 DH(key_pair, public_key). OpenSSL refuses an all-zero result (a low-order peer point);
 * that becomes NoiseError BAD_KEY (§12.1 allows either behaviour; refusing is the careful one).
 * The caller owns (and must wipe) the returned 32 bytes.
 */
export function dh(keyPair: KeyPair, peerPublic: Uint8Array): Uint8Array {
  if (peerPublic.length !== DHLEN) throw new NoiseError(NoiseErrorCode.BAD_MESSAGE, `X25519 public key must be ${DHLEN} bytes`);
  const spki = new Uint8Array(SPKI_X25519_PREFIX.length + DHLEN);
  spki.set(SPKI_X25519_PREFIX);
  spki.set(peerPublic, SPKI_X25519_PREFIX.length);
  let shared: Buffer;
  try {
    const publicKey = createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
    shared = diffieHellman({ privateKey: keyPair.privateKey, publicKey });
  } catch (err) {
    throw new NoiseError(NoiseErrorCode.BAD_KEY, 'X25519 with the peer public key failed', { cause: err });
  }
  const out = new Uint8Array(shared);
  zeroize(shared);
  if (out.every((b) => b === 0)) throw new NoiseError(NoiseErrorCode.BAD_KEY, 'X25519 shared secret is all zero');
  return out;
}

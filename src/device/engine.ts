/**
 * The host crypto engine of the virtio-crypto device: node:crypto (OpenSSL, with AES-NI/VAES/
 * SHA-NI where the CPU has them) is our "accelerator".
 *
 * A session is parsed and validated once (algorithm, key length, direction) into an
 * `EngineSession` holding node:crypto `KeyObject`s; the per-request functions below only run
 * the primitive. Key bytes copied out of guest memory are zeroed as soon as the KeyObject
 * holds them; `wipe()` drops the KeyObjects (their native copy is released when the GC collects
 * them: KeyObject offers no way to zero it on demand).
 *
 * Per-request functions may throw (OpenSSL errors); the device catches and answers ERR.
 */

import {
  type Cipher,
  type Decipher,
  createCipheriv,
  createDecipheriv,
  createHash,
  createHmac,
  createSecretKey,
  type KeyObject,
} from 'node:crypto';
import {
  VIRTIO_CRYPTO_AEAD,
  VIRTIO_CRYPTO_CIPHER,
  VIRTIO_CRYPTO_HASH,
  VIRTIO_CRYPTO_OP,
  VIRTIO_CRYPTO_STATUS,
  VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER,
  VIRTIO_CRYPTO_SYM_HASH_MODE,
} from '../spec/virtio-crypto.js';

const S = VIRTIO_CRYPTO_STATUS;

/** Largest cipher key we accept (AES-256-XTS: two 32-byte keys). Advertised as max_cipher_key_len. */
export const MAX_CIPHER_KEY_LEN = 64;
/** Largest HMAC key we accept (QEMU's vhost-user session message carries 512). Advertised as max_auth_key_len. */
export const MAX_AUTH_KEY_LEN = 512;
/** AES-GCM: the only IV length and tag length this device supports. */
export const GCM_IV_LEN = 12;
export const GCM_TAG_LEN = 16;

export const SessionKind = {
  CIPHER: 0,
  HASH: 1,
  MAC: 2,
  AEAD: 3,
  CHAIN: 4,
} as const;
export type SessionKind = (typeof SessionKind)[keyof typeof SessionKind];

/** Bit masks for the config space: exactly what this engine implements. */
export const SUPPORTED_CIPHERS = [
  VIRTIO_CRYPTO_CIPHER.VIRTIO_CRYPTO_CIPHER_AES_ECB,
  VIRTIO_CRYPTO_CIPHER.VIRTIO_CRYPTO_CIPHER_AES_CBC,
  VIRTIO_CRYPTO_CIPHER.VIRTIO_CRYPTO_CIPHER_AES_CTR,
  VIRTIO_CRYPTO_CIPHER.VIRTIO_CRYPTO_CIPHER_AES_XTS,
] as const;
export const SUPPORTED_HASHES = [2, 3, 4, 5, 6] as const; // VIRTIO_CRYPTO_HASH_SHA1 .. _SHA_512
export const SUPPORTED_MACS = [2, 3, 4, 5, 6] as const; // VIRTIO_CRYPTO_MAC_HMAC_SHA1 .. _SHA_512
export const SUPPORTED_AEADS = [VIRTIO_CRYPTO_AEAD.VIRTIO_CRYPTO_AEAD_GCM] as const;

/** node:crypto digest name and length for VIRTIO_CRYPTO_HASH_* / VIRTIO_CRYPTO_MAC_HMAC_* (same numbering). */
function digestInfo(alg: number): { name: string; len: number } | null {
  switch (alg) {
    case VIRTIO_CRYPTO_HASH.VIRTIO_CRYPTO_HASH_SHA1:
      return { name: 'sha1', len: 20 };
    case VIRTIO_CRYPTO_HASH.VIRTIO_CRYPTO_HASH_SHA_224:
      return { name: 'sha224', len: 28 };
    case VIRTIO_CRYPTO_HASH.VIRTIO_CRYPTO_HASH_SHA_256:
      return { name: 'sha256', len: 32 };
    case VIRTIO_CRYPTO_HASH.VIRTIO_CRYPTO_HASH_SHA_384:
      return { name: 'sha384', len: 48 };
    case VIRTIO_CRYPTO_HASH.VIRTIO_CRYPTO_HASH_SHA_512:
      return { name: 'sha512', len: 64 };
    default:
      return null;
  }
}
// NOTE: VIRTIO_CRYPTO_MAC_HMAC_SHA1.._SHA_512 (2..6, §5.9.4.3) use the same numbers as
// VIRTIO_CRYPTO_HASH_SHA1.._SHA_512 (2..6, §5.9.4.2), so digestInfo() serves both.

/** One validated session. Fields are fixed at creation (one hidden class: fast property access). */
export class EngineSession {
  /** node:crypto cipher name, e.g. 'aes-128-cbc' ('' if no cipher). */
  cipherName = '';
  cipherAlg = 0;
  cipherKey: KeyObject | null = null;
  /** Required IV length (16; 0 for ECB; 12 for GCM). */
  ivLen = 0;
  /** Data length must be a multiple of this (16 for ECB/CBC, 1 otherwise). */
  lenMultiple = 1;
  /** Minimum data length (16 for XTS). */
  minLen = 0;
  /** Session direction from the create request (VIRTIO_CRYPTO_OP_*; 0 for hash/mac). */
  direction = 0;
  /** node:crypto digest name ('' if none). */
  hashName = '';
  hashAlg = 0;
  digestLen = 0;
  /** hash_result_len from the create request (0 = not given). */
  hashResultLen = 0;
  /** HMAC key (MAC sessions; chaining with hash_mode AUTH). */
  authKey: KeyObject | null = null;
  hashMode = 0;
  algChainOrder = 0;
  tagLen = 0;
  aadLen = 0;
  /**
   * AES-ECB/CBC only: OpenSSL contexts kept for the whole session, one per direction, created on
   * first use (see runCipherPieces). The key schedule is computed once per session, as a
   * hardware session does, instead of once per request.
   */
  encCtx: Cipher | null = null;
  decCtx: Decipher | null = null;
  /** CBC: the chaining block each context holds now (the last ciphertext block it saw). */
  readonly encChain = new Uint8Array(16);
  readonly decChain = new Uint8Array(16);

  constructor(readonly kind: SessionKind) {}

  /** Forget the long-lived contexts (they are rebuilt from the key on next use). */
  dropContexts(): void {
    this.encCtx = null;
    this.decCtx = null;
    this.encChain.fill(0);
    this.decChain.fill(0);
  }

  /** Drop the key material (released with the KeyObjects and contexts at the next GC). Idempotent. */
  wipe(): void {
    this.cipherKey = null;
    this.authKey = null;
    this.dropContexts();
  }
}

/**
 * A session as structured-clone data, to copy it to another thread with postMessage: the fields,
 * with the keys as node:crypto KeyObjects (which postMessage copies natively; no key bytes pass
 * through JavaScript). OpenSSL contexts are not copied: each copy builds its own.
 */
export interface SessionCopy {
  readonly kind: SessionKind;
  readonly fields: Readonly<Record<string, number | string>>;
  readonly cipherKey: KeyObject | null;
  readonly authKey: KeyObject | null;
}

const COPIED_FIELDS = [
  'cipherName', 'cipherAlg', 'ivLen', 'lenMultiple', 'minLen', 'direction', 'hashName', 'hashAlg',
  'digestLen', 'hashResultLen', 'hashMode', 'algChainOrder', 'tagLen', 'aadLen',
] as const;

export function copySession(s: EngineSession): SessionCopy {
  const fields: Record<string, number | string> = {};
  for (const f of COPIED_FIELDS) fields[f] = s[f];
  return { kind: s.kind, fields, cipherKey: s.cipherKey, authKey: s.authKey };
}

/** Rebuilds a session from copySession() output (received from another thread: checked). */
export function sessionFromCopy(c: SessionCopy): EngineSession {
  const s = new EngineSession(c.kind);
  const target = s as unknown as Record<string, number | string>;
  for (const f of COPIED_FIELDS) {
    const v = c.fields[f];
    if (typeof v !== typeof target[f]) throw new TypeError(`session copy: bad field ${f}`);
    target[f] = v as number | string;
  }
  s.cipherKey = c.cipherKey;
  s.authKey = c.authKey;
  return s;
}

/** Import key bytes into a KeyObject and zero our copy. */
function importKey(key: Uint8Array): KeyObject {
  const copy = Buffer.alloc(key.length); // not from the shared pool: we zero it below
  copy.set(key);
  try {
    return createSecretKey(copy);
  } finally {
    copy.fill(0);
  }
}

/** Validates a cipher algorithm + key; fills `s`. Returns a status (OK on success). */
function setCipher(s: EngineSession, alg: number, key: Uint8Array, op: number): number {
  if (key.length > MAX_CIPHER_KEY_LEN) return S.VIRTIO_CRYPTO_ERR; // §5.9.5 max_cipher_key_len
  if (op !== VIRTIO_CRYPTO_OP.VIRTIO_CRYPTO_OP_ENCRYPT && op !== VIRTIO_CRYPTO_OP.VIRTIO_CRYPTO_OP_DECRYPT) {
    return S.VIRTIO_CRYPTO_ERR;
  }
  const bits = key.length * 8;
  switch (alg) {
    case VIRTIO_CRYPTO_CIPHER.VIRTIO_CRYPTO_CIPHER_AES_ECB:
    case VIRTIO_CRYPTO_CIPHER.VIRTIO_CRYPTO_CIPHER_AES_CBC:
    case VIRTIO_CRYPTO_CIPHER.VIRTIO_CRYPTO_CIPHER_AES_CTR: {
      if (key.length !== 16 && key.length !== 24 && key.length !== 32) return S.VIRTIO_CRYPTO_ERR;
      const mode = alg === 2 ? 'ecb' : alg === 3 ? 'cbc' : 'ctr';
      s.cipherName = `aes-${bits}-${mode}`;
      s.ivLen = mode === 'ecb' ? 0 : 16;
      s.lenMultiple = mode === 'ctr' ? 1 : 16;
      break;
    }
    case VIRTIO_CRYPTO_CIPHER.VIRTIO_CRYPTO_CIPHER_AES_XTS: {
      if (key.length !== 32 && key.length !== 64) return S.VIRTIO_CRYPTO_ERR;
      // IEEE 1619-2007 §5.1: Key1 and Key2 must differ; OpenSSL refuses identical halves.
      const half = key.length / 2;
      let same = true;
      for (let i = 0; i < half; i++) if (key[i] !== key[half + i]) same = false;
      if (same) return S.VIRTIO_CRYPTO_KEY_REJECTED;
      s.cipherName = `aes-${bits / 2}-xts`;
      s.ivLen = 16; // §5.9.7.5: for AES-XTS the IV is the 128-bit tweak
      s.minLen = 16; // XTS needs at least one full block
      break;
    }
    default:
      return S.VIRTIO_CRYPTO_NOTSUPP;
  }
  s.cipherAlg = alg;
  s.direction = op;
  s.cipherKey = importKey(key);
  return S.VIRTIO_CRYPTO_OK;
}

function setDigest(s: EngineSession, alg: number, hashResultLen: number): number {
  const d = digestInfo(alg);
  if (d === null) return S.VIRTIO_CRYPTO_NOTSUPP;
  if (hashResultLen > d.len) return S.VIRTIO_CRYPTO_ERR;
  s.hashName = d.name;
  s.hashAlg = alg;
  s.digestLen = d.len;
  s.hashResultLen = hashResultLen;
  return S.VIRTIO_CRYPTO_OK;
}

function setAuthKey(s: EngineSession, authKey: Uint8Array): number {
  if (authKey.length > MAX_AUTH_KEY_LEN) return S.VIRTIO_CRYPTO_ERR; // §5.9.5 max_auth_key_len
  s.authKey = importKey(authKey);
  return S.VIRTIO_CRYPTO_OK;
}

export type SessionOrStatus = EngineSession | number;

/** §5.9.7.2.1.3 CIPHER session (op_type VIRTIO_CRYPTO_SYM_OP_CIPHER). */
export function newCipherSession(alg: number, key: Uint8Array, op: number): SessionOrStatus {
  const s = new EngineSession(SessionKind.CIPHER);
  const st = setCipher(s, alg, key, op);
  return st === S.VIRTIO_CRYPTO_OK ? s : st;
}

/** §5.9.7.2.1.1 HASH session. */
export function newHashSession(alg: number, hashResultLen: number): SessionOrStatus {
  const s = new EngineSession(SessionKind.HASH);
  const st = setDigest(s, alg, hashResultLen);
  return st === S.VIRTIO_CRYPTO_OK ? s : st;
}

/** §5.9.7.2.1.2 MAC session (HMAC-SHA*). */
export function newMacSession(alg: number, hashResultLen: number, authKey: Uint8Array): SessionOrStatus {
  const s = new EngineSession(SessionKind.MAC);
  let st = setDigest(s, alg, hashResultLen);
  if (st === S.VIRTIO_CRYPTO_OK) st = setAuthKey(s, authKey);
  return st === S.VIRTIO_CRYPTO_OK ? s : st;
}

/** §5.9.7.2.1.4 AEAD session: AES-GCM, 16/24/32-byte key, 16-byte tag (12-byte IV per request). */
export function newAeadSession(alg: number, key: Uint8Array, tagLen: number, aadLen: number, op: number): SessionOrStatus {
  if (alg !== VIRTIO_CRYPTO_AEAD.VIRTIO_CRYPTO_AEAD_GCM) return S.VIRTIO_CRYPTO_NOTSUPP;
  if (key.length > MAX_CIPHER_KEY_LEN) return S.VIRTIO_CRYPTO_ERR; // §5.9.5: key_len (AEAD) within max_cipher_key_len
  if (key.length !== 16 && key.length !== 24 && key.length !== 32) return S.VIRTIO_CRYPTO_ERR;
  if (tagLen !== GCM_TAG_LEN) return S.VIRTIO_CRYPTO_NOTSUPP;
  if (op !== VIRTIO_CRYPTO_OP.VIRTIO_CRYPTO_OP_ENCRYPT && op !== VIRTIO_CRYPTO_OP.VIRTIO_CRYPTO_OP_DECRYPT) {
    return S.VIRTIO_CRYPTO_ERR;
  }
  const s = new EngineSession(SessionKind.AEAD);
  s.cipherName = `aes-${key.length * 8}-gcm`;
  s.cipherAlg = alg;
  s.ivLen = GCM_IV_LEN;
  s.tagLen = tagLen;
  s.aadLen = aadLen;
  s.direction = op;
  s.cipherKey = importKey(key);
  return s;
}

export interface ChainSessionParams {
  cipherAlg: number;
  key: Uint8Array;
  op: number;
  algChainOrder: number;
  hashMode: number;
  /** VIRTIO_CRYPTO_HASH_* for hash_mode PLAIN, VIRTIO_CRYPTO_MAC_HMAC_* for AUTH. */
  hashAlg: number;
  hashResultLen: number;
  authKey: Uint8Array;
  aadLen: number;
}

/** §5.9.7.2.1.3 algorithm chaining session (op_type VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING). */
export function newChainSession(p: ChainSessionParams): SessionOrStatus {
  const order = p.algChainOrder;
  if (
    order !== VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER.VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER_HASH_THEN_CIPHER &&
    order !== VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER.VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER_CIPHER_THEN_HASH
  ) {
    return S.VIRTIO_CRYPTO_ERR;
  }
  const mode = p.hashMode;
  if (mode === VIRTIO_CRYPTO_SYM_HASH_MODE.VIRTIO_CRYPTO_SYM_HASH_MODE_NESTED) return S.VIRTIO_CRYPTO_NOTSUPP;
  if (mode !== VIRTIO_CRYPTO_SYM_HASH_MODE.VIRTIO_CRYPTO_SYM_HASH_MODE_PLAIN && mode !== VIRTIO_CRYPTO_SYM_HASH_MODE.VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH) {
    return S.VIRTIO_CRYPTO_ERR;
  }
  const s = new EngineSession(SessionKind.CHAIN);
  let st = setCipher(s, p.cipherAlg, p.key, p.op);
  if (st === S.VIRTIO_CRYPTO_OK) st = setDigest(s, p.hashAlg, p.hashResultLen);
  if (st === S.VIRTIO_CRYPTO_OK && mode === VIRTIO_CRYPTO_SYM_HASH_MODE.VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH) st = setAuthKey(s, p.authKey);
  if (st !== S.VIRTIO_CRYPTO_OK) {
    s.wipe();
    return st;
  }
  s.hashMode = mode;
  s.algChainOrder = order;
  s.aadLen = p.aadLen;
  return s;
}

// ---------------------------------------------------------------------------------------------
// Per-request primitives (hot path: no closures, one call per primitive)

/**
 * Status of a cipher request's lengths for this session, before any work: IV length, block
 * multiple (ECB/CBC), XTS minimum. §5.9.7.5 device normative: anything else is ERR.
 */
export function cipherLengthStatus(s: EngineSession, ivLen: number, dataLen: number): number {
  if (s.ivLen === 0 ? ivLen > 16 : ivLen !== s.ivLen) return S.VIRTIO_CRYPTO_ERR;
  if (dataLen < s.minLen) return S.VIRTIO_CRYPTO_ERR;
  if (s.lenMultiple !== 1 && dataLen % s.lenMultiple !== 0) return S.VIRTIO_CRYPTO_ERR;
  return S.VIRTIO_CRYPTO_OK;
}

/** A cipher result in two pieces, `head` then `body` (head is often empty). */
export interface CipherPieces {
  readonly head: Buffer;
  readonly body: Buffer;
}

const NO_BYTES: Buffer = Buffer.alloc(0);
const ZERO_IV = Buffer.alloc(16);

/**
 * AES-{ECB,CBC,CTR,XTS} over `src` (no padding: output length = input length), as `head` then
 * `body` (so that no extra copy is needed to join them).
 *
 * ECB and CBC use one OpenSSL context per session and direction for all requests, instead of a
 * new context (and key schedule) per request: about 1.5 us less per request, whatever the size.
 * ECB has no state between blocks. A CBC context carries its chaining block C (the last
 * ciphertext block it processed) from one request to the next, and the request's IV is applied
 * by a fix-up of the first block, C being known:
 *  - encrypt: the context computes E(X1 ^ C); feeding X1 = P1 ^ IV ^ C yields E(P1 ^ IV), the
 *    first block of CBC(IV, P); the later blocks chain on the output as usual;
 *  - decrypt: the context computes D(C1) ^ C for the first block; XORing C ^ IV into it gives
 *    D(C1) ^ IV; the later blocks chain on the input as usual.
 * After the request C is the last ciphertext block (output for encrypt, input for decrypt).
 * Any exception drops the contexts, so that a failed request cannot leave C unknown.
 */
export function runCipherPieces(s: EngineSession, encrypt: boolean, iv: Uint8Array | null, src: Uint8Array): CipherPieces {
  const key = s.cipherKey;
  if (key === null) throw new Error('session wiped');
  const alg = s.cipherAlg;
  if (s.kind === SessionKind.CIPHER || s.kind === SessionKind.CHAIN) {
    if (alg === VIRTIO_CRYPTO_CIPHER.VIRTIO_CRYPTO_CIPHER_AES_CBC || alg === VIRTIO_CRYPTO_CIPHER.VIRTIO_CRYPTO_CIPHER_AES_ECB) {
      if (src.length === 0) return { head: NO_BYTES, body: NO_BYTES };
      try {
        return alg === VIRTIO_CRYPTO_CIPHER.VIRTIO_CRYPTO_CIPHER_AES_ECB ? ecb(s, key, encrypt, src) : encrypt ? cbcEncrypt(s, key, iv!, src) : cbcDecrypt(s, key, iv!, src);
      } catch (err) {
        s.dropContexts();
        throw err;
      }
    }
  }
  const c = encrypt ? createCipheriv(s.cipherName, key, s.ivLen === 0 ? null : iv) : createDecipheriv(s.cipherName, key, s.ivLen === 0 ? null : iv);
  c.setAutoPadding(false);
  const out = c.update(src);
  const fin = c.final();
  return { head: NO_BYTES, body: fin.length === 0 ? out : Buffer.concat([out, fin]) };
}

function encContext(s: EngineSession, key: KeyObject): Cipher {
  let c = s.encCtx;
  if (c === null) {
    c = createCipheriv(s.cipherName, key, s.ivLen === 0 ? null : ZERO_IV);
    c.setAutoPadding(false);
    s.encCtx = c;
    s.encChain.fill(0); // the context's chaining block: its IV
  }
  return c;
}

function decContext(s: EngineSession, key: KeyObject): Decipher {
  let d = s.decCtx;
  if (d === null) {
    d = createDecipheriv(s.cipherName, key, s.ivLen === 0 ? null : ZERO_IV);
    d.setAutoPadding(false);
    s.decCtx = d;
    s.decChain.fill(0);
  }
  return d;
}

function sameBlock(a: Uint8Array, b: Uint8Array): boolean {
  for (let i = 0; i < 16; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Checks that a long-lived context returned exactly what it was given (whole blocks, no padding). */
function expectLength(out: Buffer, n: number): Buffer {
  if (out.length !== n) throw new Error(`cipher context returned ${out.length} bytes for ${n}`);
  return out;
}

function ecb(s: EngineSession, key: KeyObject, encrypt: boolean, src: Uint8Array): CipherPieces {
  const out = encrypt ? encContext(s, key).update(src) : decContext(s, key).update(src);
  return { head: NO_BYTES, body: expectLength(out, src.length) };
}

function cbcEncrypt(s: EngineSession, key: KeyObject, iv: Uint8Array, src: Uint8Array): CipherPieces {
  const c = encContext(s, key);
  const chain = s.encChain;
  if (sameBlock(iv, chain)) {
    // The IV is the context's chaining block already (a stream chained over requests, as
    // `vcrypto enc` and CBC chunking do): no fix-up, one call.
    const out = expectLength(c.update(src), src.length);
    chain.set(out.subarray(out.length - 16));
    return { head: NO_BYTES, body: out };
  }
  const first = Buffer.allocUnsafe(16);
  for (let i = 0; i < 16; i++) first[i] = src[i]! ^ iv[i]! ^ chain[i]!;
  const head = expectLength(c.update(first), 16);
  first.fill(0);
  const body = src.length === 16 ? NO_BYTES : expectLength(c.update(src.subarray(16)), src.length - 16);
  chain.set(body.length === 0 ? head : body.subarray(body.length - 16));
  return { head, body };
}

function cbcDecrypt(s: EngineSession, key: KeyObject, iv: Uint8Array, src: Uint8Array): CipherPieces {
  const d = decContext(s, key);
  const chain = s.decChain;
  // The last block is copied first and fed separately: the next chaining block is then exactly the
  // input the context consumed, even if the driver rewrites its source meanwhile (guest memory).
  const n = src.length;
  const last = Buffer.from(src.subarray(n - 16, n));
  let head: Buffer = NO_BYTES;
  if (n > 16) {
    head = expectLength(d.update(src.subarray(0, n - 16)), n - 16);
    for (let i = 0; i < 16; i++) head[i] = head[i]! ^ chain[i]! ^ iv[i]!;
  }
  const body = expectLength(d.update(last), 16);
  if (n === 16) for (let i = 0; i < 16; i++) body[i] = body[i]! ^ chain[i]! ^ iv[i]!;
  chain.set(last);
  return { head, body };
}

/** runCipherPieces joined into one buffer. */
export function runCipher(s: EngineSession, encrypt: boolean, iv: Uint8Array | null, src: Uint8Array): Buffer {
  const { head, body } = runCipherPieces(s, encrypt, iv, src);
  return head.length === 0 ? body : body.length === 0 ? head : Buffer.concat([head, body]);
}

/** Hash (HASH session, chaining PLAIN) or HMAC (MAC session, chaining AUTH) of a || b. */
export function runDigest(s: EngineSession, a: Uint8Array, b: Uint8Array | null): Buffer {
  if (s.authKey !== null) {
    const h = createHmac(s.hashName, s.authKey);
    h.update(a);
    if (b !== null) h.update(b);
    return h.digest();
  }
  if (s.kind === SessionKind.MAC || (s.kind === SessionKind.CHAIN && s.hashMode === VIRTIO_CRYPTO_SYM_HASH_MODE.VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH)) {
    throw new Error('session wiped');
  }
  const h = createHash(s.hashName);
  h.update(a);
  if (b !== null) h.update(b);
  return h.digest();
}

/** AES-GCM encrypt: returns ciphertext || tag (§5.9.7.6: the tag follows the cipher result in dst). */
export function runAeadEncrypt(s: EngineSession, iv: Uint8Array, aad: Uint8Array, src: Uint8Array): Buffer {
  const key = s.cipherKey;
  if (key === null) throw new Error('session wiped');
  const c = createCipheriv(s.cipherName as 'aes-128-gcm', key, iv, { authTagLength: s.tagLen });
  if (aad.length > 0) c.setAAD(aad);
  const out = c.update(src);
  const fin = c.final();
  return Buffer.concat([out, fin, c.getAuthTag()]);
}

/** AES-GCM decrypt of ct (tag separate); null when the tag does not verify (→ BADMSG). */
export function runAeadDecrypt(s: EngineSession, iv: Uint8Array, aad: Uint8Array, ct: Uint8Array, tag: Uint8Array): Buffer | null {
  const key = s.cipherKey;
  if (key === null) throw new Error('session wiped');
  const d = createDecipheriv(s.cipherName as 'aes-128-gcm', key, iv, { authTagLength: s.tagLen });
  d.setAuthTag(tag);
  if (aad.length > 0) d.setAAD(aad);
  const out = d.update(ct);
  try {
    const fin = d.final();
    return fin.length === 0 ? out : Buffer.concat([out, fin]);
  } catch {
    out.fill(0); // unauthenticated plaintext never leaves
    return null;
  }
}

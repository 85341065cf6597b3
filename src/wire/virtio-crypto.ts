/**
 * Byte codecs for the virtio-crypto structures (VIRTIO 1.2 cs01 §5.9), fixed-size layouts used
 * when VIRTIO_CRYPTO_F_REVISION_1 is not negotiated (Linux 6.1, QEMU 7.2): every controlq and
 * dataq request starts with a 72-byte header (16/24-byte general header + 56/48-byte op-specific
 * fixed part, zero padded). All fields little-endian; u64 fields are bigint.
 *
 * Pure and bounds-checked: decoders throw `WireError` on a short buffer, encoders throw
 * `WireError` on a field that does not fit its wire type. Unused/padding bytes encode as zero and
 * are ignored on decode (§5.9.7.2.1.3 "The data of unused part (if has) ... will be ignored").
 *
 * These are THE codecs of both sides: the driver encodes its requests with them straight into guest
 * memory, the device decodes the private copy of each request header with them (and the vhost-user
 * front-end its control requests). Hot path: an encoder given `out` writes into it at `offset` and
 * allocates nothing; a decoder given `into` fills that object and allocates nothing (a bigint field
 * excepted); the DataView over a buffer is made once per ArrayBuffer and cached (weakly).
 */

import {
  VIRTIO_CRYPTO_CONFIG_OFFSET as CFG,
  VIRTIO_CRYPTO_CONFIG_SIZE,
  VIRTIO_CRYPTO_CTRL_OPCODE as CTRL,
  VIRTIO_CRYPTO_CTRLQ_OP_SPEC_HDR_LEGACY,
  VIRTIO_CRYPTO_DATAQ_OP_SPEC_HDR_LEGACY,
  VIRTIO_CRYPTO_SYM_HASH_MODE,
  VIRTIO_CRYPTO_SYM_OP,
} from '../spec/virtio-crypto.js';

export type WireErrorKind = 'short-buffer' | 'field-out-of-range';

export class WireError extends Error {
  override readonly name = 'WireError';
  constructor(
    readonly kind: WireErrorKind,
    message: string,
  ) {
    super(`${kind}: ${message}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Sizes (each checked by test/wire/virtio-crypto.test.ts against bytes written from the spec)

/** sizeof(struct virtio_crypto_config), §5.9.5 (re-exported from spec/). */
export { VIRTIO_CRYPTO_CONFIG_SIZE };
/** sizeof(struct virtio_crypto_ctrl_header), §5.9.7.2. */
export const CTRL_HEADER_SIZE = 16;
/** sizeof(struct virtio_crypto_op_ctrl_req) without REVISION_1: header + op_flf padded to 56. */
export const OP_CTRL_REQ_SIZE = CTRL_HEADER_SIZE + VIRTIO_CRYPTO_CTRLQ_OP_SPEC_HDR_LEGACY;
/** sizeof(struct virtio_crypto_create_session_input), §5.9.7.2.1. */
export const CREATE_SESSION_INPUT_SIZE = 16;
/** sizeof(struct virtio_crypto_destroy_session_input), §5.9.7.2.1. */
export const DESTROY_SESSION_INPUT_SIZE = 1;
/** sizeof(struct virtio_crypto_op_header), §5.9.7.3. */
export const OP_HEADER_SIZE = 24;
/** sizeof(struct virtio_crypto_op_data_req) without REVISION_1: header + op_flf padded to 48. */
export const OP_DATA_REQ_SIZE = OP_HEADER_SIZE + VIRTIO_CRYPTO_DATAQ_OP_SPEC_HDR_LEGACY;
/** sizeof(struct virtio_crypto_inhdr), §5.9.7.3. */
export const INHDR_SIZE = 1;

/** Byte offsets inside the 72-byte controlq request (header at 0, op_flf at 16). */
const CTRL_REQ_OFFSET = {
  opcode: 0,
  algo: 4,
  flag: 8,
  /** `reserved` in the 1.2 spec; Linux/QEMU call it queue_id. */
  queueId: 12,
  opFlf: 16,
  // struct virtio_crypto_sym_create_session_flf at 16: op_flf[48], op_type @64, padding @68
  symOpType: 64,
  // struct virtio_crypto_cipher_session_flf at 16
  cipherAlgo: 16,
  cipherKeyLen: 20,
  cipherOp: 24,
  // struct virtio_crypto_alg_chain_session_flf at 16
  chainAlgChainOrder: 16,
  chainHashMode: 20,
  chainCipherAlgo: 24,
  chainCipherKeyLen: 28,
  chainCipherOp: 32,
  /** algo_flf[16] at 40: hash or mac create_session_flf */
  chainHashAlgo: 40,
  chainHashResultLen: 44,
  chainAuthKeyLen: 48,
  chainAadLen: 56,
  // struct virtio_crypto_hash_create_session_flf / mac_create_session_flf at 16
  hashAlgo: 16,
  hashResultLen: 20,
  macAuthKeyLen: 24,
  // struct virtio_crypto_aead_create_session_flf at 16
  aeadAlgo: 16,
  aeadKeyLen: 20,
  aeadTagLen: 24,
  aeadAadLen: 28,
  aeadOp: 32,
  // struct virtio_crypto_destroy_session_flf at 16
  destroySessionId: 16,
} as const;

/** Byte offsets inside the 72-byte dataq request (header at 0, op_flf at 24). */
const DATA_REQ_OFFSET = {
  opcode: 0,
  algo: 4,
  sessionId: 8,
  flag: 16,
  padding: 20,
  opFlf: 24,
  // struct virtio_crypto_sym_data_flf at 24: op_type_flf[40], op_type @64, padding @68
  symOpType: 64,
  // struct virtio_crypto_cipher_data_flf / alg_chain_data_flf at 24
  ivLen: 24,
  srcDataLen: 28,
  dstDataLen: 32,
  cipherStartSrcOffset: 36,
  lenToCipher: 40,
  hashStartSrcOffset: 44,
  lenToHash: 48,
  chainAadLen: 52,
  chainHashResultLen: 56,
  // struct virtio_crypto_hash_data_flf / mac_data_flf at 24
  hashSrcDataLen: 24,
  hashResultLen: 28,
  // struct virtio_crypto_aead_data_flf at 24
  aeadIvLen: 24,
  aeadAadLen: 28,
  aeadSrcDataLen: 32,
  aeadDstDataLen: 36,
  /** 1.2 cs01 adds tag_len; Linux's legacy virtio_crypto_aead_para stops before it (reads 0). */
  aeadTagLen: 40,
} as const;


/** Byte offsets inside struct virtio_crypto_create_session_input (§5.9.7.2.1). */
const SESSION_INPUT_OFFSET = {
  sessionId: 0,
  status: 8,
  padding: 12,
} as const;

// ---------------------------------------------------------------------------------------------
// Helpers

const U32_MAX = 0xffff_ffff;
const U64_MAX = (1n << 64n) - 1n;

// Little-endian fields read and written byte by byte on the Uint8Array itself: no DataView per call
// (nor a lookup of one), nothing allocated; V8 compiles these to plain loads and stores. A u64 goes
// through one module-level 8-byte scratch (DataView for the bigint conversion).

function getU32(b: Uint8Array, o: number): number {
  return (b[o]! | (b[o + 1]! << 8) | (b[o + 2]! << 16) | (b[o + 3]! << 24)) >>> 0;
}

function putU32(b: Uint8Array, o: number, v: number): void {
  b[o] = v;
  b[o + 1] = v >>> 8;
  b[o + 2] = v >>> 16;
  b[o + 3] = v >>> 24;
}

const U64_SCRATCH = new Uint8Array(8);
const U64_VIEW = new DataView(U64_SCRATCH.buffer);

function getU64(b: Uint8Array, o: number): bigint {
  for (let i = 0; i < 8; i++) U64_SCRATCH[i] = b[o + i]!;
  return U64_VIEW.getBigUint64(0, true);
}

function putU64(b: Uint8Array, o: number, v: bigint): void {
  U64_VIEW.setBigUint64(0, v, true);
  for (let i = 0; i < 8; i++) b[o + i] = U64_SCRATCH[i]!;
}

/** Checks that `size` bytes at `offset` lie in `bytes`; returns `offset`. */
function at(bytes: Uint8Array, offset: number, size: number, what: string): number {
  if (!Number.isInteger(offset) || offset < 0 || bytes.length - offset < size) {
    throw new WireError('short-buffer', `${what} needs ${size} bytes at offset ${offset}, buffer has ${bytes.length}`);
  }
  return offset;
}

/** The buffer to encode into: `out` (checked, its `size` bytes at `offset` zeroed) or a new one. */
function target(out: Uint8Array | undefined, offset: number, size: number, what: string): Uint8Array {
  if (out === undefined) return new Uint8Array(size);
  at(out, offset, size, what);
  out.fill(0, offset, offset + size);
  return out;
}

function u32(v: number | undefined, field: string): number {
  const x = v ?? 0;
  if (!Number.isInteger(x) || x < 0 || x > U32_MAX) {
    throw new WireError('field-out-of-range', `${field}=${String(v)} is not a u32`);
  }
  return x;
}

function u64(v: bigint, field: string): bigint {
  if (v < 0n || v > U64_MAX) throw new WireError('field-out-of-range', `${field}=${v} is not a u64`);
  return v;
}

function u8(v: number, field: string): number {
  if (!Number.isInteger(v) || v < 0 || v > 0xff) throw new WireError('field-out-of-range', `${field}=${String(v)} is not a u8`);
  return v;
}

// ---------------------------------------------------------------------------------------------
// §5.9.5 struct virtio_crypto_config

export interface VirtioCryptoConfig {
  status: number;
  maxDataqueues: number;
  cryptoServices: number;
  cipherAlgoL: number;
  cipherAlgoH: number;
  hashAlgo: number;
  macAlgoL: number;
  macAlgoH: number;
  aeadAlgo: number;
  maxCipherKeyLen: number;
  maxAuthKeyLen: number;
  /** `reserved` (1.2 cs01) / akcipher_algo (Linux, QEMU). */
  reserved: number;
  maxSize: bigint;
}

export function encodeConfig(c: VirtioCryptoConfig): Uint8Array {
  const out = new Uint8Array(VIRTIO_CRYPTO_CONFIG_SIZE);
  putU32(out, CFG.status, u32(c.status, 'status'));
  putU32(out, CFG.max_dataqueues, u32(c.maxDataqueues, 'maxDataqueues'));
  putU32(out, CFG.crypto_services, u32(c.cryptoServices, 'cryptoServices'));
  putU32(out, CFG.cipher_algo_l, u32(c.cipherAlgoL, 'cipherAlgoL'));
  putU32(out, CFG.cipher_algo_h, u32(c.cipherAlgoH, 'cipherAlgoH'));
  putU32(out, CFG.hash_algo, u32(c.hashAlgo, 'hashAlgo'));
  putU32(out, CFG.mac_algo_l, u32(c.macAlgoL, 'macAlgoL'));
  putU32(out, CFG.mac_algo_h, u32(c.macAlgoH, 'macAlgoH'));
  putU32(out, CFG.aead_algo, u32(c.aeadAlgo, 'aeadAlgo'));
  putU32(out, CFG.max_cipher_key_len, u32(c.maxCipherKeyLen, 'maxCipherKeyLen'));
  putU32(out, CFG.max_auth_key_len, u32(c.maxAuthKeyLen, 'maxAuthKeyLen'));
  putU32(out, CFG.reserved, u32(c.reserved, 'reserved'));
  putU64(out, CFG.max_size, u64(c.maxSize, 'maxSize'));
  return out;
}

export function decodeConfig(bytes: Uint8Array, offset = 0): VirtioCryptoConfig {
  const o = at(bytes, offset, VIRTIO_CRYPTO_CONFIG_SIZE, 'virtio_crypto_config');
  return {
    status: getU32(bytes, o + CFG.status),
    maxDataqueues: getU32(bytes, o + CFG.max_dataqueues),
    cryptoServices: getU32(bytes, o + CFG.crypto_services),
    cipherAlgoL: getU32(bytes, o + CFG.cipher_algo_l),
    cipherAlgoH: getU32(bytes, o + CFG.cipher_algo_h),
    hashAlgo: getU32(bytes, o + CFG.hash_algo),
    macAlgoL: getU32(bytes, o + CFG.mac_algo_l),
    macAlgoH: getU32(bytes, o + CFG.mac_algo_h),
    aeadAlgo: getU32(bytes, o + CFG.aead_algo),
    maxCipherKeyLen: getU32(bytes, o + CFG.max_cipher_key_len),
    maxAuthKeyLen: getU32(bytes, o + CFG.max_auth_key_len),
    reserved: getU32(bytes, o + CFG.reserved),
    maxSize: getU64(bytes, o + CFG.max_size),
  };
}

// ---------------------------------------------------------------------------------------------
// §5.9.7.2 controlq: struct virtio_crypto_ctrl_header + op_flf (padded to 56)

export interface CtrlHeader {
  opcode: number;
  algo: number;
  flag: number;
  /** `reserved` in 1.2; Linux writes the data queue id (always 0). */
  queueId: number;
}

/** §5.9.7.2.1.3 struct virtio_crypto_cipher_session_flf. */
export interface CipherSessionFlf {
  algo: number;
  keyLen: number;
  /** VIRTIO_CRYPTO_OP_ENCRYPT / _DECRYPT */
  op: number;
}

/** §5.9.7.2.1.3 struct virtio_crypto_alg_chain_session_flf (algo_flf = hash or mac flf). */
export interface AlgChainSessionFlf {
  algChainOrder: number;
  hashMode: number;
  cipher: CipherSessionFlf;
  /** HASH algorithm (hash_mode PLAIN) or MAC algorithm (hash_mode AUTH). */
  hashAlgo: number;
  hashResultLen: number;
  /** Only meaningful for hash_mode AUTH (mac_create_session_flf). */
  authKeyLen: number;
  aadLen: number;
}

/** §5.9.7.2.1.1 struct virtio_crypto_hash_create_session_flf. */
export interface HashCreateSessionFlf {
  algo: number;
  hashResultLen: number;
}

/** §5.9.7.2.1.2 struct virtio_crypto_mac_create_session_flf. */
export interface MacCreateSessionFlf {
  algo: number;
  hashResultLen: number;
  authKeyLen: number;
}

/** §5.9.7.2.1.4 struct virtio_crypto_aead_create_session_flf. */
export interface AeadCreateSessionFlf {
  algo: number;
  keyLen: number;
  tagLen: number;
  aadLen: number;
  op: number;
}

/** Header fields other than the opcode are optional (0 by default; `algo` is informational). */
export type CtrlHeaderExtra = Partial<Omit<CtrlHeader, 'opcode'>>;

/** Zeroes the 72-byte request at `offset` of `out` (or a new buffer) and writes its ctrl_header. */
function ctrlReq(opcode: number, algo: number, h: CtrlHeaderExtra | undefined, out: Uint8Array | undefined, offset: number): Uint8Array {
  const buf = target(out, offset, OP_CTRL_REQ_SIZE, 'virtio_crypto_op_ctrl_req');
  const o = out === undefined ? 0 : offset;
  putU32(buf, o + CTRL_REQ_OFFSET.opcode, u32(opcode, 'opcode'));
  putU32(buf, o + CTRL_REQ_OFFSET.algo, u32(h?.algo ?? algo, 'algo'));
  putU32(buf, o + CTRL_REQ_OFFSET.flag, u32(h?.flag, 'flag'));
  putU32(buf, o + CTRL_REQ_OFFSET.queueId, u32(h?.queueId, 'queueId'));
  return buf;
}

/**
 * VIRTIO_CRYPTO_CIPHER_CREATE_SESSION with op_type VIRTIO_CRYPTO_SYM_OP_CIPHER. Key follows (vlf).
 * Every encoder: into `out` at `offset` (the 72 bytes zeroed first) when given, else a new buffer.
 */
export function encodeCipherCreateSessionReq(p: CipherSessionFlf, h?: CtrlHeaderExtra, out?: Uint8Array, offset = 0): Uint8Array {
  const buf = ctrlReq(CTRL.VIRTIO_CRYPTO_CIPHER_CREATE_SESSION, p.algo, h, out, offset);
  const o = out === undefined ? 0 : offset;
  putU32(buf, o + CTRL_REQ_OFFSET.cipherAlgo, u32(p.algo, 'algo'));
  putU32(buf, o + CTRL_REQ_OFFSET.cipherKeyLen, u32(p.keyLen, 'keyLen'));
  putU32(buf, o + CTRL_REQ_OFFSET.cipherOp, u32(p.op, 'op'));
  putU32(buf, o + CTRL_REQ_OFFSET.symOpType, VIRTIO_CRYPTO_SYM_OP.VIRTIO_CRYPTO_SYM_OP_CIPHER);
  return buf;
}

/** VIRTIO_CRYPTO_CIPHER_CREATE_SESSION with op_type ALGORITHM_CHAINING. cipher key, then auth key follow. */
export function encodeAlgChainCreateSessionReq(p: AlgChainSessionFlf, h?: CtrlHeaderExtra, out?: Uint8Array, offset = 0): Uint8Array {
  const buf = ctrlReq(CTRL.VIRTIO_CRYPTO_CIPHER_CREATE_SESSION, p.cipher.algo, h, out, offset);
  const o = out === undefined ? 0 : offset;
  putU32(buf, o + CTRL_REQ_OFFSET.chainAlgChainOrder, u32(p.algChainOrder, 'algChainOrder'));
  putU32(buf, o + CTRL_REQ_OFFSET.chainHashMode, u32(p.hashMode, 'hashMode'));
  putU32(buf, o + CTRL_REQ_OFFSET.chainCipherAlgo, u32(p.cipher.algo, 'cipher.algo'));
  putU32(buf, o + CTRL_REQ_OFFSET.chainCipherKeyLen, u32(p.cipher.keyLen, 'cipher.keyLen'));
  putU32(buf, o + CTRL_REQ_OFFSET.chainCipherOp, u32(p.cipher.op, 'cipher.op'));
  putU32(buf, o + CTRL_REQ_OFFSET.chainHashAlgo, u32(p.hashAlgo, 'hashAlgo'));
  putU32(buf, o + CTRL_REQ_OFFSET.chainHashResultLen, u32(p.hashResultLen, 'hashResultLen'));
  putU32(buf, o + CTRL_REQ_OFFSET.chainAuthKeyLen, u32(p.authKeyLen, 'authKeyLen'));
  putU32(buf, o + CTRL_REQ_OFFSET.chainAadLen, u32(p.aadLen, 'aadLen'));
  putU32(buf, o + CTRL_REQ_OFFSET.symOpType, VIRTIO_CRYPTO_SYM_OP.VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING);
  return buf;
}

/** VIRTIO_CRYPTO_HASH_CREATE_SESSION (no vlf). */
export function encodeHashCreateSessionReq(p: HashCreateSessionFlf, h?: CtrlHeaderExtra, out?: Uint8Array, offset = 0): Uint8Array {
  const buf = ctrlReq(CTRL.VIRTIO_CRYPTO_HASH_CREATE_SESSION, p.algo, h, out, offset);
  const o = out === undefined ? 0 : offset;
  putU32(buf, o + CTRL_REQ_OFFSET.hashAlgo, u32(p.algo, 'algo'));
  putU32(buf, o + CTRL_REQ_OFFSET.hashResultLen, u32(p.hashResultLen, 'hashResultLen'));
  return buf;
}

/** VIRTIO_CRYPTO_MAC_CREATE_SESSION. Auth key follows (vlf). */
export function encodeMacCreateSessionReq(p: MacCreateSessionFlf, h?: CtrlHeaderExtra, out?: Uint8Array, offset = 0): Uint8Array {
  const buf = ctrlReq(CTRL.VIRTIO_CRYPTO_MAC_CREATE_SESSION, p.algo, h, out, offset);
  const o = out === undefined ? 0 : offset;
  putU32(buf, o + CTRL_REQ_OFFSET.hashAlgo, u32(p.algo, 'algo'));
  putU32(buf, o + CTRL_REQ_OFFSET.hashResultLen, u32(p.hashResultLen, 'hashResultLen'));
  putU32(buf, o + CTRL_REQ_OFFSET.macAuthKeyLen, u32(p.authKeyLen, 'authKeyLen'));
  return buf;
}

/** VIRTIO_CRYPTO_AEAD_CREATE_SESSION. Key follows (vlf). */
export function encodeAeadCreateSessionReq(p: AeadCreateSessionFlf, h?: CtrlHeaderExtra, out?: Uint8Array, offset = 0): Uint8Array {
  const buf = ctrlReq(CTRL.VIRTIO_CRYPTO_AEAD_CREATE_SESSION, p.algo, h, out, offset);
  const o = out === undefined ? 0 : offset;
  putU32(buf, o + CTRL_REQ_OFFSET.aeadAlgo, u32(p.algo, 'algo'));
  putU32(buf, o + CTRL_REQ_OFFSET.aeadKeyLen, u32(p.keyLen, 'keyLen'));
  putU32(buf, o + CTRL_REQ_OFFSET.aeadTagLen, u32(p.tagLen, 'tagLen'));
  putU32(buf, o + CTRL_REQ_OFFSET.aeadAadLen, u32(p.aadLen, 'aadLen'));
  putU32(buf, o + CTRL_REQ_OFFSET.aeadOp, u32(p.op, 'op'));
  return buf;
}

/** Any *_DESTROY_SESSION opcode with struct virtio_crypto_destroy_session_flf. */
export function encodeDestroySessionReq(opcode: number, sessionId: bigint, h?: CtrlHeaderExtra, out?: Uint8Array, offset = 0): Uint8Array {
  const buf = ctrlReq(opcode, 0, h, out, offset);
  const o = out === undefined ? 0 : offset;
  putU64(buf, o + CTRL_REQ_OFFSET.destroySessionId, u64(sessionId, 'sessionId'));
  return buf;
}

/**
 * Every decoder: reads the struct at `offset` (for a flf decoder: the start of the whole 72-byte
 * request), into `into` when given (no allocation), else into a new object.
 */
export function decodeCtrlHeader(bytes: Uint8Array, offset = 0, into?: CtrlHeader): CtrlHeader {
  const o = at(bytes, offset, CTRL_HEADER_SIZE, 'virtio_crypto_ctrl_header');
  const h = into ?? { opcode: 0, algo: 0, flag: 0, queueId: 0 };
  h.opcode = getU32(bytes, o + CTRL_REQ_OFFSET.opcode);
  h.algo = getU32(bytes, o + CTRL_REQ_OFFSET.algo);
  h.flag = getU32(bytes, o + CTRL_REQ_OFFSET.flag);
  h.queueId = getU32(bytes, o + CTRL_REQ_OFFSET.queueId);
  return h;
}

/** op_type of a CIPHER_CREATE_SESSION request (struct virtio_crypto_sym_create_session_flf). */
export function decodeSymCreateSessionOpType(req: Uint8Array, offset = 0): number {
  const o = at(req, offset, OP_CTRL_REQ_SIZE, 'virtio_crypto_op_ctrl_req');
  return getU32(req, o + CTRL_REQ_OFFSET.symOpType);
}

export function decodeCipherSessionFlf(req: Uint8Array, offset = 0, into?: CipherSessionFlf): CipherSessionFlf {
  const o = at(req, offset, OP_CTRL_REQ_SIZE, 'virtio_crypto_op_ctrl_req');
  const f = into ?? { algo: 0, keyLen: 0, op: 0 };
  f.algo = getU32(req, o + CTRL_REQ_OFFSET.cipherAlgo);
  f.keyLen = getU32(req, o + CTRL_REQ_OFFSET.cipherKeyLen);
  f.op = getU32(req, o + CTRL_REQ_OFFSET.cipherOp);
  return f;
}

export function decodeAlgChainSessionFlf(req: Uint8Array, offset = 0, into?: AlgChainSessionFlf): AlgChainSessionFlf {
  const o = at(req, offset, OP_CTRL_REQ_SIZE, 'virtio_crypto_op_ctrl_req');
  const f = into ?? { algChainOrder: 0, hashMode: 0, cipher: { algo: 0, keyLen: 0, op: 0 }, hashAlgo: 0, hashResultLen: 0, authKeyLen: 0, aadLen: 0 };
  f.algChainOrder = getU32(req, o + CTRL_REQ_OFFSET.chainAlgChainOrder);
  f.hashMode = getU32(req, o + CTRL_REQ_OFFSET.chainHashMode);
  f.cipher.algo = getU32(req, o + CTRL_REQ_OFFSET.chainCipherAlgo);
  f.cipher.keyLen = getU32(req, o + CTRL_REQ_OFFSET.chainCipherKeyLen);
  f.cipher.op = getU32(req, o + CTRL_REQ_OFFSET.chainCipherOp);
  f.hashAlgo = getU32(req, o + CTRL_REQ_OFFSET.chainHashAlgo);
  f.hashResultLen = getU32(req, o + CTRL_REQ_OFFSET.chainHashResultLen);
  // §5.9.7.2.1.3: algo_flf is a hash flf for PLAIN (8 bytes; the rest "will be ignored")
  // and a mac flf (with auth_key_len) for AUTH.
  f.authKeyLen = f.hashMode === VIRTIO_CRYPTO_SYM_HASH_MODE.VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH ? getU32(req, o + CTRL_REQ_OFFSET.chainAuthKeyLen) : 0;
  f.aadLen = getU32(req, o + CTRL_REQ_OFFSET.chainAadLen);
  return f;
}

export function decodeHashCreateSessionFlf(req: Uint8Array, offset = 0, into?: HashCreateSessionFlf): HashCreateSessionFlf {
  const o = at(req, offset, OP_CTRL_REQ_SIZE, 'virtio_crypto_op_ctrl_req');
  const f = into ?? { algo: 0, hashResultLen: 0 };
  f.algo = getU32(req, o + CTRL_REQ_OFFSET.hashAlgo);
  f.hashResultLen = getU32(req, o + CTRL_REQ_OFFSET.hashResultLen);
  return f;
}

export function decodeMacCreateSessionFlf(req: Uint8Array, offset = 0, into?: MacCreateSessionFlf): MacCreateSessionFlf {
  const o = at(req, offset, OP_CTRL_REQ_SIZE, 'virtio_crypto_op_ctrl_req');
  const f = into ?? { algo: 0, hashResultLen: 0, authKeyLen: 0 };
  f.algo = getU32(req, o + CTRL_REQ_OFFSET.hashAlgo);
  f.hashResultLen = getU32(req, o + CTRL_REQ_OFFSET.hashResultLen);
  f.authKeyLen = getU32(req, o + CTRL_REQ_OFFSET.macAuthKeyLen);
  return f;
}

export function decodeAeadCreateSessionFlf(req: Uint8Array, offset = 0, into?: AeadCreateSessionFlf): AeadCreateSessionFlf {
  const o = at(req, offset, OP_CTRL_REQ_SIZE, 'virtio_crypto_op_ctrl_req');
  const f = into ?? { algo: 0, keyLen: 0, tagLen: 0, aadLen: 0, op: 0 };
  f.algo = getU32(req, o + CTRL_REQ_OFFSET.aeadAlgo);
  f.keyLen = getU32(req, o + CTRL_REQ_OFFSET.aeadKeyLen);
  f.tagLen = getU32(req, o + CTRL_REQ_OFFSET.aeadTagLen);
  f.aadLen = getU32(req, o + CTRL_REQ_OFFSET.aeadAadLen);
  f.op = getU32(req, o + CTRL_REQ_OFFSET.aeadOp);
  return f;
}

export function decodeDestroySessionFlf(req: Uint8Array, offset = 0): { sessionId: bigint } {
  const o = at(req, offset, OP_CTRL_REQ_SIZE, 'virtio_crypto_op_ctrl_req');
  return { sessionId: getU64(req, o + CTRL_REQ_OFFSET.destroySessionId) };
}

/** §5.9.7.2.1 struct virtio_crypto_create_session_input (device-writable, 16 bytes). */
export interface CreateSessionInput {
  sessionId: bigint;
  status: number;
}

/** Writes the session_input into `out` at `offset`, or returns a new buffer. */
export function encodeCreateSessionInput(v: CreateSessionInput, out?: Uint8Array, offset = 0): Uint8Array {
  const buf = out ?? new Uint8Array(CREATE_SESSION_INPUT_SIZE);
  const o = at(buf, offset, CREATE_SESSION_INPUT_SIZE, 'virtio_crypto_create_session_input');
  putU64(buf, o + SESSION_INPUT_OFFSET.sessionId, u64(v.sessionId, 'sessionId'));
  putU32(buf, o + SESSION_INPUT_OFFSET.status, u32(v.status, 'status'));
  putU32(buf, o + SESSION_INPUT_OFFSET.padding, 0);
  return buf;
}

export function decodeCreateSessionInput(bytes: Uint8Array, offset = 0): CreateSessionInput {
  const o = at(bytes, offset, CREATE_SESSION_INPUT_SIZE, 'virtio_crypto_create_session_input');
  return { sessionId: getU64(bytes, o + SESSION_INPUT_OFFSET.sessionId), status: getU32(bytes, o + SESSION_INPUT_OFFSET.status) };
}

/** §5.9.7.2.1 struct virtio_crypto_destroy_session_input { u8 status } into `out` at `offset`. */
export function encodeDestroySessionInput(status: number, out: Uint8Array, offset = 0): void {
  out[at(out, offset, DESTROY_SESSION_INPUT_SIZE, 'virtio_crypto_destroy_session_input') ] = u8(status, 'status');
}

export function decodeDestroySessionInput(bytes: Uint8Array, offset = 0): number {
  return bytes[at(bytes, offset, DESTROY_SESSION_INPUT_SIZE, 'virtio_crypto_destroy_session_input') ]!;
}

// ---------------------------------------------------------------------------------------------
// §5.9.7.3 dataq: struct virtio_crypto_op_header + op_flf (padded to 48)

export interface OpHeader {
  opcode: number;
  algo: number;
  sessionId: bigint;
  /** Ignored without REVISION_1 (§5.9.7.3 note). */
  flag: number;
}

/** §5.9.7.5 struct virtio_crypto_cipher_data_flf. */
export interface CipherDataFlf {
  ivLen: number;
  srcDataLen: number;
  dstDataLen: number;
}

/** §5.9.7.5 struct virtio_crypto_alg_chain_data_flf. */
export interface AlgChainDataFlf extends CipherDataFlf {
  cipherStartSrcOffset: number;
  lenToCipher: number;
  hashStartSrcOffset: number;
  lenToHash: number;
  aadLen: number;
  hashResultLen: number;
}

/** §5.9.7.4 struct virtio_crypto_hash_data_flf (MAC: virtio_crypto_mac_data_flf, same bytes). */
export interface HashDataFlf {
  srcDataLen: number;
  hashResultLen: number;
}

/** §5.9.7.6 struct virtio_crypto_aead_data_flf. */
export interface AeadDataFlf {
  ivLen: number;
  aadLen: number;
  srcDataLen: number;
  dstDataLen: number;
  /** 1.2 addition; 0 from legacy drivers (the session's tag length applies). */
  tagLen: number;
}

export type OpHeaderExtra = Partial<Pick<OpHeader, 'algo' | 'flag'>>;

/** Zeroes the 72-byte request at `offset` of `out` (or a new buffer) and writes its op_header. */
function dataReq(opcode: number, sessionId: bigint, h: OpHeaderExtra | undefined, out: Uint8Array | undefined, offset: number): Uint8Array {
  const buf = target(out, offset, OP_DATA_REQ_SIZE, 'virtio_crypto_op_data_req');
  const o = out === undefined ? 0 : offset;
  putU32(buf, o + DATA_REQ_OFFSET.opcode, u32(opcode, 'opcode'));
  putU32(buf, o + DATA_REQ_OFFSET.algo, u32(h?.algo, 'algo'));
  putU64(buf, o + DATA_REQ_OFFSET.sessionId, u64(sessionId, 'sessionId'));
  putU32(buf, o + DATA_REQ_OFFSET.flag, u32(h?.flag, 'flag'));
  return buf;
}

/** CIPHER_ENCRYPT/DECRYPT with op_type SYM_OP_CIPHER. Readable iv, src follow; writable dst, status. */
export function encodeCipherDataReq(opcode: number, sessionId: bigint, p: CipherDataFlf, h?: OpHeaderExtra, out?: Uint8Array, offset = 0): Uint8Array {
  const buf = dataReq(opcode, sessionId, h, out, offset);
  const o = out === undefined ? 0 : offset;
  putU32(buf, o + DATA_REQ_OFFSET.ivLen, u32(p.ivLen, 'ivLen'));
  putU32(buf, o + DATA_REQ_OFFSET.srcDataLen, u32(p.srcDataLen, 'srcDataLen'));
  putU32(buf, o + DATA_REQ_OFFSET.dstDataLen, u32(p.dstDataLen, 'dstDataLen'));
  putU32(buf, o + DATA_REQ_OFFSET.symOpType, VIRTIO_CRYPTO_SYM_OP.VIRTIO_CRYPTO_SYM_OP_CIPHER);
  return buf;
}

/**
 * CIPHER_ENCRYPT/DECRYPT with op_type ALGORITHM_CHAINING. Readable iv, src, aad follow (spec
 * order); writable dst, hash_result, status.
 */
export function encodeAlgChainDataReq(opcode: number, sessionId: bigint, p: AlgChainDataFlf, h?: OpHeaderExtra, out?: Uint8Array, offset = 0): Uint8Array {
  const buf = dataReq(opcode, sessionId, h, out, offset);
  const o = out === undefined ? 0 : offset;
  putU32(buf, o + DATA_REQ_OFFSET.ivLen, u32(p.ivLen, 'ivLen'));
  putU32(buf, o + DATA_REQ_OFFSET.srcDataLen, u32(p.srcDataLen, 'srcDataLen'));
  putU32(buf, o + DATA_REQ_OFFSET.dstDataLen, u32(p.dstDataLen, 'dstDataLen'));
  putU32(buf, o + DATA_REQ_OFFSET.cipherStartSrcOffset, u32(p.cipherStartSrcOffset, 'cipherStartSrcOffset'));
  putU32(buf, o + DATA_REQ_OFFSET.lenToCipher, u32(p.lenToCipher, 'lenToCipher'));
  putU32(buf, o + DATA_REQ_OFFSET.hashStartSrcOffset, u32(p.hashStartSrcOffset, 'hashStartSrcOffset'));
  putU32(buf, o + DATA_REQ_OFFSET.lenToHash, u32(p.lenToHash, 'lenToHash'));
  putU32(buf, o + DATA_REQ_OFFSET.chainAadLen, u32(p.aadLen, 'aadLen'));
  putU32(buf, o + DATA_REQ_OFFSET.chainHashResultLen, u32(p.hashResultLen, 'hashResultLen'));
  putU32(buf, o + DATA_REQ_OFFSET.symOpType, VIRTIO_CRYPTO_SYM_OP.VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING);
  return buf;
}

/** VIRTIO_CRYPTO_HASH or VIRTIO_CRYPTO_MAC. Readable src follows; writable hash_result, status. */
export function encodeHashDataReq(opcode: number, sessionId: bigint, p: HashDataFlf, h?: OpHeaderExtra, out?: Uint8Array, offset = 0): Uint8Array {
  const buf = dataReq(opcode, sessionId, h, out, offset);
  const o = out === undefined ? 0 : offset;
  putU32(buf, o + DATA_REQ_OFFSET.hashSrcDataLen, u32(p.srcDataLen, 'srcDataLen'));
  putU32(buf, o + DATA_REQ_OFFSET.hashResultLen, u32(p.hashResultLen, 'hashResultLen'));
  return buf;
}

/**
 * AEAD_ENCRYPT/DECRYPT. Readable iv, src, aad follow; writable dst, status.
 * Encrypt: src = plaintext, dst = ciphertext || tag (dst_data_len >= src_data_len + tag_len).
 * Decrypt: src = ciphertext || tag, dst = plaintext (dst_data_len >= src_data_len - tag_len).
 */
export function encodeAeadDataReq(opcode: number, sessionId: bigint, p: AeadDataFlf, h?: OpHeaderExtra, out?: Uint8Array, offset = 0): Uint8Array {
  const buf = dataReq(opcode, sessionId, h, out, offset);
  const o = out === undefined ? 0 : offset;
  putU32(buf, o + DATA_REQ_OFFSET.aeadIvLen, u32(p.ivLen, 'ivLen'));
  putU32(buf, o + DATA_REQ_OFFSET.aeadAadLen, u32(p.aadLen, 'aadLen'));
  putU32(buf, o + DATA_REQ_OFFSET.aeadSrcDataLen, u32(p.srcDataLen, 'srcDataLen'));
  putU32(buf, o + DATA_REQ_OFFSET.aeadDstDataLen, u32(p.dstDataLen, 'dstDataLen'));
  putU32(buf, o + DATA_REQ_OFFSET.aeadTagLen, u32(p.tagLen, 'tagLen'));
  return buf;
}

export function decodeOpHeader(bytes: Uint8Array, offset = 0, into?: OpHeader): OpHeader {
  const o = at(bytes, offset, OP_HEADER_SIZE, 'virtio_crypto_op_header');
  const h = into ?? { opcode: 0, algo: 0, sessionId: 0n, flag: 0 };
  h.opcode = getU32(bytes, o + DATA_REQ_OFFSET.opcode);
  h.algo = getU32(bytes, o + DATA_REQ_OFFSET.algo);
  h.sessionId = getU64(bytes, o + DATA_REQ_OFFSET.sessionId);
  h.flag = getU32(bytes, o + DATA_REQ_OFFSET.flag);
  return h;
}

/** op_type of a sym (cipher/chain) data request (struct virtio_crypto_sym_data_flf). */
export function decodeSymDataOpType(req: Uint8Array, offset = 0): number {
  const o = at(req, offset, OP_DATA_REQ_SIZE, 'virtio_crypto_op_data_req');
  return getU32(req, o + DATA_REQ_OFFSET.symOpType);
}

export function decodeCipherDataFlf(req: Uint8Array, offset = 0, into?: CipherDataFlf): CipherDataFlf {
  const o = at(req, offset, OP_DATA_REQ_SIZE, 'virtio_crypto_op_data_req');
  const f = into ?? { ivLen: 0, srcDataLen: 0, dstDataLen: 0 };
  f.ivLen = getU32(req, o + DATA_REQ_OFFSET.ivLen);
  f.srcDataLen = getU32(req, o + DATA_REQ_OFFSET.srcDataLen);
  f.dstDataLen = getU32(req, o + DATA_REQ_OFFSET.dstDataLen);
  return f;
}

export function decodeAlgChainDataFlf(req: Uint8Array, offset = 0, into?: AlgChainDataFlf): AlgChainDataFlf {
  const o = at(req, offset, OP_DATA_REQ_SIZE, 'virtio_crypto_op_data_req');
  const f = into ?? { ivLen: 0, srcDataLen: 0, dstDataLen: 0, cipherStartSrcOffset: 0, lenToCipher: 0, hashStartSrcOffset: 0, lenToHash: 0, aadLen: 0, hashResultLen: 0 };
  f.ivLen = getU32(req, o + DATA_REQ_OFFSET.ivLen);
  f.srcDataLen = getU32(req, o + DATA_REQ_OFFSET.srcDataLen);
  f.dstDataLen = getU32(req, o + DATA_REQ_OFFSET.dstDataLen);
  f.cipherStartSrcOffset = getU32(req, o + DATA_REQ_OFFSET.cipherStartSrcOffset);
  f.lenToCipher = getU32(req, o + DATA_REQ_OFFSET.lenToCipher);
  f.hashStartSrcOffset = getU32(req, o + DATA_REQ_OFFSET.hashStartSrcOffset);
  f.lenToHash = getU32(req, o + DATA_REQ_OFFSET.lenToHash);
  f.aadLen = getU32(req, o + DATA_REQ_OFFSET.chainAadLen);
  f.hashResultLen = getU32(req, o + DATA_REQ_OFFSET.chainHashResultLen);
  return f;
}

export function decodeHashDataFlf(req: Uint8Array, offset = 0, into?: HashDataFlf): HashDataFlf {
  const o = at(req, offset, OP_DATA_REQ_SIZE, 'virtio_crypto_op_data_req');
  const f = into ?? { srcDataLen: 0, hashResultLen: 0 };
  f.srcDataLen = getU32(req, o + DATA_REQ_OFFSET.hashSrcDataLen);
  f.hashResultLen = getU32(req, o + DATA_REQ_OFFSET.hashResultLen);
  return f;
}

export function decodeAeadDataFlf(req: Uint8Array, offset = 0, into?: AeadDataFlf): AeadDataFlf {
  const o = at(req, offset, OP_DATA_REQ_SIZE, 'virtio_crypto_op_data_req');
  const f = into ?? { ivLen: 0, aadLen: 0, srcDataLen: 0, dstDataLen: 0, tagLen: 0 };
  f.ivLen = getU32(req, o + DATA_REQ_OFFSET.aeadIvLen);
  f.aadLen = getU32(req, o + DATA_REQ_OFFSET.aeadAadLen);
  f.srcDataLen = getU32(req, o + DATA_REQ_OFFSET.aeadSrcDataLen);
  f.dstDataLen = getU32(req, o + DATA_REQ_OFFSET.aeadDstDataLen);
  f.tagLen = getU32(req, o + DATA_REQ_OFFSET.aeadTagLen);
  return f;
}

/**
 * §5.9.7.3 struct virtio_crypto_inhdr { u8 status }: the last INHDR_SIZE bytes of a data request's
 * writable part of `writableLen` bytes starting at `offset`.
 */
export function encodeInhdr(status: number, out: Uint8Array, offset: number, writableLen: number): void {
  out[inhdrAt(out, offset, writableLen) ] = u8(status, 'status');
}

export function decodeInhdr(bytes: Uint8Array, offset: number, writableLen: number): number {
  return bytes[inhdrAt(bytes, offset, writableLen) ]!;
}

function inhdrAt(bytes: Uint8Array, offset: number, writableLen: number): number {
  if (!Number.isInteger(writableLen) || writableLen < INHDR_SIZE) {
    throw new WireError('short-buffer', `virtio_crypto_inhdr needs ${INHDR_SIZE} writable byte, the writable part has ${writableLen}`);
  }
  return at(bytes, offset + writableLen - INHDR_SIZE, INHDR_SIZE, 'virtio_crypto_inhdr');
}

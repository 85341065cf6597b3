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

/**
 * One DataView per ArrayBuffer (guest memory, the device's header copy, ...), made on first use:
 * the codecs below allocate no view per call. Weak: a buffer dropped by its owner is not kept.
 */
const VIEWS = new WeakMap<ArrayBufferLike, DataView>();

function viewOf(bytes: Uint8Array): DataView {
  const buffer = bytes.buffer;
  let dv = VIEWS.get(buffer);
  if (dv === undefined) {
    dv = new DataView(buffer);
    VIEWS.set(buffer, dv);
  }
  return dv;
}

/** Checks that `size` bytes at `offset` lie in `bytes`; returns their offset in `bytes.buffer`. */
function at(bytes: Uint8Array, offset: number, size: number, what: string): number {
  if (!Number.isInteger(offset) || offset < 0 || bytes.length - offset < size) {
    throw new WireError('short-buffer', `${what} needs ${size} bytes at offset ${offset}, buffer has ${bytes.length}`);
  }
  return bytes.byteOffset + offset;
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
  const dv = viewOf(out);
  dv.setUint32(CFG.status, u32(c.status, 'status'), true);
  dv.setUint32(CFG.max_dataqueues, u32(c.maxDataqueues, 'maxDataqueues'), true);
  dv.setUint32(CFG.crypto_services, u32(c.cryptoServices, 'cryptoServices'), true);
  dv.setUint32(CFG.cipher_algo_l, u32(c.cipherAlgoL, 'cipherAlgoL'), true);
  dv.setUint32(CFG.cipher_algo_h, u32(c.cipherAlgoH, 'cipherAlgoH'), true);
  dv.setUint32(CFG.hash_algo, u32(c.hashAlgo, 'hashAlgo'), true);
  dv.setUint32(CFG.mac_algo_l, u32(c.macAlgoL, 'macAlgoL'), true);
  dv.setUint32(CFG.mac_algo_h, u32(c.macAlgoH, 'macAlgoH'), true);
  dv.setUint32(CFG.aead_algo, u32(c.aeadAlgo, 'aeadAlgo'), true);
  dv.setUint32(CFG.max_cipher_key_len, u32(c.maxCipherKeyLen, 'maxCipherKeyLen'), true);
  dv.setUint32(CFG.max_auth_key_len, u32(c.maxAuthKeyLen, 'maxAuthKeyLen'), true);
  dv.setUint32(CFG.reserved, u32(c.reserved, 'reserved'), true);
  dv.setBigUint64(CFG.max_size, u64(c.maxSize, 'maxSize'), true);
  return out;
}

export function decodeConfig(bytes: Uint8Array, offset = 0): VirtioCryptoConfig {
  const o = at(bytes, offset, VIRTIO_CRYPTO_CONFIG_SIZE, 'virtio_crypto_config');
  const dv = viewOf(bytes);
  return {
    status: dv.getUint32(o + CFG.status, true),
    maxDataqueues: dv.getUint32(o + CFG.max_dataqueues, true),
    cryptoServices: dv.getUint32(o + CFG.crypto_services, true),
    cipherAlgoL: dv.getUint32(o + CFG.cipher_algo_l, true),
    cipherAlgoH: dv.getUint32(o + CFG.cipher_algo_h, true),
    hashAlgo: dv.getUint32(o + CFG.hash_algo, true),
    macAlgoL: dv.getUint32(o + CFG.mac_algo_l, true),
    macAlgoH: dv.getUint32(o + CFG.mac_algo_h, true),
    aeadAlgo: dv.getUint32(o + CFG.aead_algo, true),
    maxCipherKeyLen: dv.getUint32(o + CFG.max_cipher_key_len, true),
    maxAuthKeyLen: dv.getUint32(o + CFG.max_auth_key_len, true),
    reserved: dv.getUint32(o + CFG.reserved, true),
    maxSize: dv.getBigUint64(o + CFG.max_size, true),
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
  const dv = viewOf(buf);
  const o = buf.byteOffset + (out === undefined ? 0 : offset);
  dv.setUint32(o + CTRL_REQ_OFFSET.opcode, u32(opcode, 'opcode'), true);
  dv.setUint32(o + CTRL_REQ_OFFSET.algo, u32(h?.algo ?? algo, 'algo'), true);
  dv.setUint32(o + CTRL_REQ_OFFSET.flag, u32(h?.flag, 'flag'), true);
  dv.setUint32(o + CTRL_REQ_OFFSET.queueId, u32(h?.queueId, 'queueId'), true);
  return buf;
}

/**
 * VIRTIO_CRYPTO_CIPHER_CREATE_SESSION with op_type VIRTIO_CRYPTO_SYM_OP_CIPHER. Key follows (vlf).
 * Every encoder: into `out` at `offset` (the 72 bytes zeroed first) when given, else a new buffer.
 */
export function encodeCipherCreateSessionReq(p: CipherSessionFlf, h?: CtrlHeaderExtra, out?: Uint8Array, offset = 0): Uint8Array {
  const buf = ctrlReq(CTRL.VIRTIO_CRYPTO_CIPHER_CREATE_SESSION, p.algo, h, out, offset);
  const dv = viewOf(buf);
  const o = buf.byteOffset + (out === undefined ? 0 : offset);
  dv.setUint32(o + CTRL_REQ_OFFSET.cipherAlgo, u32(p.algo, 'algo'), true);
  dv.setUint32(o + CTRL_REQ_OFFSET.cipherKeyLen, u32(p.keyLen, 'keyLen'), true);
  dv.setUint32(o + CTRL_REQ_OFFSET.cipherOp, u32(p.op, 'op'), true);
  dv.setUint32(o + CTRL_REQ_OFFSET.symOpType, VIRTIO_CRYPTO_SYM_OP.VIRTIO_CRYPTO_SYM_OP_CIPHER, true);
  return buf;
}

/** VIRTIO_CRYPTO_CIPHER_CREATE_SESSION with op_type ALGORITHM_CHAINING. cipher key, then auth key follow. */
export function encodeAlgChainCreateSessionReq(p: AlgChainSessionFlf, h?: CtrlHeaderExtra, out?: Uint8Array, offset = 0): Uint8Array {
  const buf = ctrlReq(CTRL.VIRTIO_CRYPTO_CIPHER_CREATE_SESSION, p.cipher.algo, h, out, offset);
  const dv = viewOf(buf);
  const o = buf.byteOffset + (out === undefined ? 0 : offset);
  dv.setUint32(o + CTRL_REQ_OFFSET.chainAlgChainOrder, u32(p.algChainOrder, 'algChainOrder'), true);
  dv.setUint32(o + CTRL_REQ_OFFSET.chainHashMode, u32(p.hashMode, 'hashMode'), true);
  dv.setUint32(o + CTRL_REQ_OFFSET.chainCipherAlgo, u32(p.cipher.algo, 'cipher.algo'), true);
  dv.setUint32(o + CTRL_REQ_OFFSET.chainCipherKeyLen, u32(p.cipher.keyLen, 'cipher.keyLen'), true);
  dv.setUint32(o + CTRL_REQ_OFFSET.chainCipherOp, u32(p.cipher.op, 'cipher.op'), true);
  dv.setUint32(o + CTRL_REQ_OFFSET.chainHashAlgo, u32(p.hashAlgo, 'hashAlgo'), true);
  dv.setUint32(o + CTRL_REQ_OFFSET.chainHashResultLen, u32(p.hashResultLen, 'hashResultLen'), true);
  dv.setUint32(o + CTRL_REQ_OFFSET.chainAuthKeyLen, u32(p.authKeyLen, 'authKeyLen'), true);
  dv.setUint32(o + CTRL_REQ_OFFSET.chainAadLen, u32(p.aadLen, 'aadLen'), true);
  dv.setUint32(o + CTRL_REQ_OFFSET.symOpType, VIRTIO_CRYPTO_SYM_OP.VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING, true);
  return buf;
}

/** VIRTIO_CRYPTO_HASH_CREATE_SESSION (no vlf). */
export function encodeHashCreateSessionReq(p: HashCreateSessionFlf, h?: CtrlHeaderExtra, out?: Uint8Array, offset = 0): Uint8Array {
  const buf = ctrlReq(CTRL.VIRTIO_CRYPTO_HASH_CREATE_SESSION, p.algo, h, out, offset);
  const dv = viewOf(buf);
  const o = buf.byteOffset + (out === undefined ? 0 : offset);
  dv.setUint32(o + CTRL_REQ_OFFSET.hashAlgo, u32(p.algo, 'algo'), true);
  dv.setUint32(o + CTRL_REQ_OFFSET.hashResultLen, u32(p.hashResultLen, 'hashResultLen'), true);
  return buf;
}

/** VIRTIO_CRYPTO_MAC_CREATE_SESSION. Auth key follows (vlf). */
export function encodeMacCreateSessionReq(p: MacCreateSessionFlf, h?: CtrlHeaderExtra, out?: Uint8Array, offset = 0): Uint8Array {
  const buf = ctrlReq(CTRL.VIRTIO_CRYPTO_MAC_CREATE_SESSION, p.algo, h, out, offset);
  const dv = viewOf(buf);
  const o = buf.byteOffset + (out === undefined ? 0 : offset);
  dv.setUint32(o + CTRL_REQ_OFFSET.hashAlgo, u32(p.algo, 'algo'), true);
  dv.setUint32(o + CTRL_REQ_OFFSET.hashResultLen, u32(p.hashResultLen, 'hashResultLen'), true);
  dv.setUint32(o + CTRL_REQ_OFFSET.macAuthKeyLen, u32(p.authKeyLen, 'authKeyLen'), true);
  return buf;
}

/** VIRTIO_CRYPTO_AEAD_CREATE_SESSION. Key follows (vlf). */
export function encodeAeadCreateSessionReq(p: AeadCreateSessionFlf, h?: CtrlHeaderExtra, out?: Uint8Array, offset = 0): Uint8Array {
  const buf = ctrlReq(CTRL.VIRTIO_CRYPTO_AEAD_CREATE_SESSION, p.algo, h, out, offset);
  const dv = viewOf(buf);
  const o = buf.byteOffset + (out === undefined ? 0 : offset);
  dv.setUint32(o + CTRL_REQ_OFFSET.aeadAlgo, u32(p.algo, 'algo'), true);
  dv.setUint32(o + CTRL_REQ_OFFSET.aeadKeyLen, u32(p.keyLen, 'keyLen'), true);
  dv.setUint32(o + CTRL_REQ_OFFSET.aeadTagLen, u32(p.tagLen, 'tagLen'), true);
  dv.setUint32(o + CTRL_REQ_OFFSET.aeadAadLen, u32(p.aadLen, 'aadLen'), true);
  dv.setUint32(o + CTRL_REQ_OFFSET.aeadOp, u32(p.op, 'op'), true);
  return buf;
}

/** Any *_DESTROY_SESSION opcode with struct virtio_crypto_destroy_session_flf. */
export function encodeDestroySessionReq(opcode: number, sessionId: bigint, h?: CtrlHeaderExtra, out?: Uint8Array, offset = 0): Uint8Array {
  const buf = ctrlReq(opcode, 0, h, out, offset);
  const o = buf.byteOffset + (out === undefined ? 0 : offset);
  viewOf(buf).setBigUint64(o + CTRL_REQ_OFFSET.destroySessionId, u64(sessionId, 'sessionId'), true);
  return buf;
}

/**
 * Every decoder: reads the struct at `offset` (for a flf decoder: the start of the whole 72-byte
 * request), into `into` when given (no allocation), else into a new object.
 */
export function decodeCtrlHeader(bytes: Uint8Array, offset = 0, into?: CtrlHeader): CtrlHeader {
  const o = at(bytes, offset, CTRL_HEADER_SIZE, 'virtio_crypto_ctrl_header');
  const dv = viewOf(bytes);
  const h = into ?? { opcode: 0, algo: 0, flag: 0, queueId: 0 };
  h.opcode = dv.getUint32(o + CTRL_REQ_OFFSET.opcode, true);
  h.algo = dv.getUint32(o + CTRL_REQ_OFFSET.algo, true);
  h.flag = dv.getUint32(o + CTRL_REQ_OFFSET.flag, true);
  h.queueId = dv.getUint32(o + CTRL_REQ_OFFSET.queueId, true);
  return h;
}

/** op_type of a CIPHER_CREATE_SESSION request (struct virtio_crypto_sym_create_session_flf). */
export function decodeSymCreateSessionOpType(req: Uint8Array, offset = 0): number {
  const o = at(req, offset, OP_CTRL_REQ_SIZE, 'virtio_crypto_op_ctrl_req');
  return viewOf(req).getUint32(o + CTRL_REQ_OFFSET.symOpType, true);
}

export function decodeCipherSessionFlf(req: Uint8Array, offset = 0, into?: CipherSessionFlf): CipherSessionFlf {
  const o = at(req, offset, OP_CTRL_REQ_SIZE, 'virtio_crypto_op_ctrl_req');
  const dv = viewOf(req);
  const f = into ?? { algo: 0, keyLen: 0, op: 0 };
  f.algo = dv.getUint32(o + CTRL_REQ_OFFSET.cipherAlgo, true);
  f.keyLen = dv.getUint32(o + CTRL_REQ_OFFSET.cipherKeyLen, true);
  f.op = dv.getUint32(o + CTRL_REQ_OFFSET.cipherOp, true);
  return f;
}

export function decodeAlgChainSessionFlf(req: Uint8Array, offset = 0, into?: AlgChainSessionFlf): AlgChainSessionFlf {
  const o = at(req, offset, OP_CTRL_REQ_SIZE, 'virtio_crypto_op_ctrl_req');
  const dv = viewOf(req);
  const f = into ?? { algChainOrder: 0, hashMode: 0, cipher: { algo: 0, keyLen: 0, op: 0 }, hashAlgo: 0, hashResultLen: 0, authKeyLen: 0, aadLen: 0 };
  f.algChainOrder = dv.getUint32(o + CTRL_REQ_OFFSET.chainAlgChainOrder, true);
  f.hashMode = dv.getUint32(o + CTRL_REQ_OFFSET.chainHashMode, true);
  f.cipher.algo = dv.getUint32(o + CTRL_REQ_OFFSET.chainCipherAlgo, true);
  f.cipher.keyLen = dv.getUint32(o + CTRL_REQ_OFFSET.chainCipherKeyLen, true);
  f.cipher.op = dv.getUint32(o + CTRL_REQ_OFFSET.chainCipherOp, true);
  f.hashAlgo = dv.getUint32(o + CTRL_REQ_OFFSET.chainHashAlgo, true);
  f.hashResultLen = dv.getUint32(o + CTRL_REQ_OFFSET.chainHashResultLen, true);
  // §5.9.7.2.1.3: algo_flf is a hash flf for PLAIN (8 bytes; the rest "will be ignored")
  // and a mac flf (with auth_key_len) for AUTH.
  f.authKeyLen = f.hashMode === VIRTIO_CRYPTO_SYM_HASH_MODE.VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH ? dv.getUint32(o + CTRL_REQ_OFFSET.chainAuthKeyLen, true) : 0;
  f.aadLen = dv.getUint32(o + CTRL_REQ_OFFSET.chainAadLen, true);
  return f;
}

export function decodeHashCreateSessionFlf(req: Uint8Array, offset = 0, into?: HashCreateSessionFlf): HashCreateSessionFlf {
  const o = at(req, offset, OP_CTRL_REQ_SIZE, 'virtio_crypto_op_ctrl_req');
  const dv = viewOf(req);
  const f = into ?? { algo: 0, hashResultLen: 0 };
  f.algo = dv.getUint32(o + CTRL_REQ_OFFSET.hashAlgo, true);
  f.hashResultLen = dv.getUint32(o + CTRL_REQ_OFFSET.hashResultLen, true);
  return f;
}

export function decodeMacCreateSessionFlf(req: Uint8Array, offset = 0, into?: MacCreateSessionFlf): MacCreateSessionFlf {
  const o = at(req, offset, OP_CTRL_REQ_SIZE, 'virtio_crypto_op_ctrl_req');
  const dv = viewOf(req);
  const f = into ?? { algo: 0, hashResultLen: 0, authKeyLen: 0 };
  f.algo = dv.getUint32(o + CTRL_REQ_OFFSET.hashAlgo, true);
  f.hashResultLen = dv.getUint32(o + CTRL_REQ_OFFSET.hashResultLen, true);
  f.authKeyLen = dv.getUint32(o + CTRL_REQ_OFFSET.macAuthKeyLen, true);
  return f;
}

export function decodeAeadCreateSessionFlf(req: Uint8Array, offset = 0, into?: AeadCreateSessionFlf): AeadCreateSessionFlf {
  const o = at(req, offset, OP_CTRL_REQ_SIZE, 'virtio_crypto_op_ctrl_req');
  const dv = viewOf(req);
  const f = into ?? { algo: 0, keyLen: 0, tagLen: 0, aadLen: 0, op: 0 };
  f.algo = dv.getUint32(o + CTRL_REQ_OFFSET.aeadAlgo, true);
  f.keyLen = dv.getUint32(o + CTRL_REQ_OFFSET.aeadKeyLen, true);
  f.tagLen = dv.getUint32(o + CTRL_REQ_OFFSET.aeadTagLen, true);
  f.aadLen = dv.getUint32(o + CTRL_REQ_OFFSET.aeadAadLen, true);
  f.op = dv.getUint32(o + CTRL_REQ_OFFSET.aeadOp, true);
  return f;
}

export function decodeDestroySessionFlf(req: Uint8Array, offset = 0): { sessionId: bigint } {
  const o = at(req, offset, OP_CTRL_REQ_SIZE, 'virtio_crypto_op_ctrl_req');
  return { sessionId: viewOf(req).getBigUint64(o + CTRL_REQ_OFFSET.destroySessionId, true) };
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
  const dv = viewOf(buf);
  dv.setBigUint64(o + SESSION_INPUT_OFFSET.sessionId, u64(v.sessionId, 'sessionId'), true);
  dv.setUint32(o + SESSION_INPUT_OFFSET.status, u32(v.status, 'status'), true);
  dv.setUint32(o + SESSION_INPUT_OFFSET.padding, 0, true);
  return buf;
}

export function decodeCreateSessionInput(bytes: Uint8Array, offset = 0): CreateSessionInput {
  const o = at(bytes, offset, CREATE_SESSION_INPUT_SIZE, 'virtio_crypto_create_session_input');
  const dv = viewOf(bytes);
  return { sessionId: dv.getBigUint64(o + SESSION_INPUT_OFFSET.sessionId, true), status: dv.getUint32(o + SESSION_INPUT_OFFSET.status, true) };
}

/** §5.9.7.2.1 struct virtio_crypto_destroy_session_input { u8 status } into `out` at `offset`. */
export function encodeDestroySessionInput(status: number, out: Uint8Array, offset = 0): void {
  out[at(out, offset, DESTROY_SESSION_INPUT_SIZE, 'virtio_crypto_destroy_session_input') - out.byteOffset] = u8(status, 'status');
}

export function decodeDestroySessionInput(bytes: Uint8Array, offset = 0): number {
  return bytes[at(bytes, offset, DESTROY_SESSION_INPUT_SIZE, 'virtio_crypto_destroy_session_input') - bytes.byteOffset]!;
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
  const dv = viewOf(buf);
  const o = buf.byteOffset + (out === undefined ? 0 : offset);
  dv.setUint32(o + DATA_REQ_OFFSET.opcode, u32(opcode, 'opcode'), true);
  dv.setUint32(o + DATA_REQ_OFFSET.algo, u32(h?.algo, 'algo'), true);
  dv.setBigUint64(o + DATA_REQ_OFFSET.sessionId, u64(sessionId, 'sessionId'), true);
  dv.setUint32(o + DATA_REQ_OFFSET.flag, u32(h?.flag, 'flag'), true);
  return buf;
}

/** CIPHER_ENCRYPT/DECRYPT with op_type SYM_OP_CIPHER. Readable iv, src follow; writable dst, status. */
export function encodeCipherDataReq(opcode: number, sessionId: bigint, p: CipherDataFlf, h?: OpHeaderExtra, out?: Uint8Array, offset = 0): Uint8Array {
  const buf = dataReq(opcode, sessionId, h, out, offset);
  const dv = viewOf(buf);
  const o = buf.byteOffset + (out === undefined ? 0 : offset);
  dv.setUint32(o + DATA_REQ_OFFSET.ivLen, u32(p.ivLen, 'ivLen'), true);
  dv.setUint32(o + DATA_REQ_OFFSET.srcDataLen, u32(p.srcDataLen, 'srcDataLen'), true);
  dv.setUint32(o + DATA_REQ_OFFSET.dstDataLen, u32(p.dstDataLen, 'dstDataLen'), true);
  dv.setUint32(o + DATA_REQ_OFFSET.symOpType, VIRTIO_CRYPTO_SYM_OP.VIRTIO_CRYPTO_SYM_OP_CIPHER, true);
  return buf;
}

/**
 * CIPHER_ENCRYPT/DECRYPT with op_type ALGORITHM_CHAINING. Readable iv, src, aad follow (spec
 * order); writable dst, hash_result, status.
 */
export function encodeAlgChainDataReq(opcode: number, sessionId: bigint, p: AlgChainDataFlf, h?: OpHeaderExtra, out?: Uint8Array, offset = 0): Uint8Array {
  const buf = dataReq(opcode, sessionId, h, out, offset);
  const dv = viewOf(buf);
  const o = buf.byteOffset + (out === undefined ? 0 : offset);
  dv.setUint32(o + DATA_REQ_OFFSET.ivLen, u32(p.ivLen, 'ivLen'), true);
  dv.setUint32(o + DATA_REQ_OFFSET.srcDataLen, u32(p.srcDataLen, 'srcDataLen'), true);
  dv.setUint32(o + DATA_REQ_OFFSET.dstDataLen, u32(p.dstDataLen, 'dstDataLen'), true);
  dv.setUint32(o + DATA_REQ_OFFSET.cipherStartSrcOffset, u32(p.cipherStartSrcOffset, 'cipherStartSrcOffset'), true);
  dv.setUint32(o + DATA_REQ_OFFSET.lenToCipher, u32(p.lenToCipher, 'lenToCipher'), true);
  dv.setUint32(o + DATA_REQ_OFFSET.hashStartSrcOffset, u32(p.hashStartSrcOffset, 'hashStartSrcOffset'), true);
  dv.setUint32(o + DATA_REQ_OFFSET.lenToHash, u32(p.lenToHash, 'lenToHash'), true);
  dv.setUint32(o + DATA_REQ_OFFSET.chainAadLen, u32(p.aadLen, 'aadLen'), true);
  dv.setUint32(o + DATA_REQ_OFFSET.chainHashResultLen, u32(p.hashResultLen, 'hashResultLen'), true);
  dv.setUint32(o + DATA_REQ_OFFSET.symOpType, VIRTIO_CRYPTO_SYM_OP.VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING, true);
  return buf;
}

/** VIRTIO_CRYPTO_HASH or VIRTIO_CRYPTO_MAC. Readable src follows; writable hash_result, status. */
export function encodeHashDataReq(opcode: number, sessionId: bigint, p: HashDataFlf, h?: OpHeaderExtra, out?: Uint8Array, offset = 0): Uint8Array {
  const buf = dataReq(opcode, sessionId, h, out, offset);
  const dv = viewOf(buf);
  const o = buf.byteOffset + (out === undefined ? 0 : offset);
  dv.setUint32(o + DATA_REQ_OFFSET.hashSrcDataLen, u32(p.srcDataLen, 'srcDataLen'), true);
  dv.setUint32(o + DATA_REQ_OFFSET.hashResultLen, u32(p.hashResultLen, 'hashResultLen'), true);
  return buf;
}

/**
 * AEAD_ENCRYPT/DECRYPT. Readable iv, src, aad follow; writable dst, status.
 * Encrypt: src = plaintext, dst = ciphertext || tag (dst_data_len >= src_data_len + tag_len).
 * Decrypt: src = ciphertext || tag, dst = plaintext (dst_data_len >= src_data_len - tag_len).
 */
export function encodeAeadDataReq(opcode: number, sessionId: bigint, p: AeadDataFlf, h?: OpHeaderExtra, out?: Uint8Array, offset = 0): Uint8Array {
  const buf = dataReq(opcode, sessionId, h, out, offset);
  const dv = viewOf(buf);
  const o = buf.byteOffset + (out === undefined ? 0 : offset);
  dv.setUint32(o + DATA_REQ_OFFSET.aeadIvLen, u32(p.ivLen, 'ivLen'), true);
  dv.setUint32(o + DATA_REQ_OFFSET.aeadAadLen, u32(p.aadLen, 'aadLen'), true);
  dv.setUint32(o + DATA_REQ_OFFSET.aeadSrcDataLen, u32(p.srcDataLen, 'srcDataLen'), true);
  dv.setUint32(o + DATA_REQ_OFFSET.aeadDstDataLen, u32(p.dstDataLen, 'dstDataLen'), true);
  dv.setUint32(o + DATA_REQ_OFFSET.aeadTagLen, u32(p.tagLen, 'tagLen'), true);
  return buf;
}

export function decodeOpHeader(bytes: Uint8Array, offset = 0, into?: OpHeader): OpHeader {
  const o = at(bytes, offset, OP_HEADER_SIZE, 'virtio_crypto_op_header');
  const dv = viewOf(bytes);
  const h = into ?? { opcode: 0, algo: 0, sessionId: 0n, flag: 0 };
  h.opcode = dv.getUint32(o + DATA_REQ_OFFSET.opcode, true);
  h.algo = dv.getUint32(o + DATA_REQ_OFFSET.algo, true);
  h.sessionId = dv.getBigUint64(o + DATA_REQ_OFFSET.sessionId, true);
  h.flag = dv.getUint32(o + DATA_REQ_OFFSET.flag, true);
  return h;
}

/** op_type of a sym (cipher/chain) data request (struct virtio_crypto_sym_data_flf). */
export function decodeSymDataOpType(req: Uint8Array, offset = 0): number {
  const o = at(req, offset, OP_DATA_REQ_SIZE, 'virtio_crypto_op_data_req');
  return viewOf(req).getUint32(o + DATA_REQ_OFFSET.symOpType, true);
}

export function decodeCipherDataFlf(req: Uint8Array, offset = 0, into?: CipherDataFlf): CipherDataFlf {
  const o = at(req, offset, OP_DATA_REQ_SIZE, 'virtio_crypto_op_data_req');
  const dv = viewOf(req);
  const f = into ?? { ivLen: 0, srcDataLen: 0, dstDataLen: 0 };
  f.ivLen = dv.getUint32(o + DATA_REQ_OFFSET.ivLen, true);
  f.srcDataLen = dv.getUint32(o + DATA_REQ_OFFSET.srcDataLen, true);
  f.dstDataLen = dv.getUint32(o + DATA_REQ_OFFSET.dstDataLen, true);
  return f;
}

export function decodeAlgChainDataFlf(req: Uint8Array, offset = 0, into?: AlgChainDataFlf): AlgChainDataFlf {
  const o = at(req, offset, OP_DATA_REQ_SIZE, 'virtio_crypto_op_data_req');
  const dv = viewOf(req);
  const f = into ?? { ivLen: 0, srcDataLen: 0, dstDataLen: 0, cipherStartSrcOffset: 0, lenToCipher: 0, hashStartSrcOffset: 0, lenToHash: 0, aadLen: 0, hashResultLen: 0 };
  f.ivLen = dv.getUint32(o + DATA_REQ_OFFSET.ivLen, true);
  f.srcDataLen = dv.getUint32(o + DATA_REQ_OFFSET.srcDataLen, true);
  f.dstDataLen = dv.getUint32(o + DATA_REQ_OFFSET.dstDataLen, true);
  f.cipherStartSrcOffset = dv.getUint32(o + DATA_REQ_OFFSET.cipherStartSrcOffset, true);
  f.lenToCipher = dv.getUint32(o + DATA_REQ_OFFSET.lenToCipher, true);
  f.hashStartSrcOffset = dv.getUint32(o + DATA_REQ_OFFSET.hashStartSrcOffset, true);
  f.lenToHash = dv.getUint32(o + DATA_REQ_OFFSET.lenToHash, true);
  f.aadLen = dv.getUint32(o + DATA_REQ_OFFSET.chainAadLen, true);
  f.hashResultLen = dv.getUint32(o + DATA_REQ_OFFSET.chainHashResultLen, true);
  return f;
}

export function decodeHashDataFlf(req: Uint8Array, offset = 0, into?: HashDataFlf): HashDataFlf {
  const o = at(req, offset, OP_DATA_REQ_SIZE, 'virtio_crypto_op_data_req');
  const dv = viewOf(req);
  const f = into ?? { srcDataLen: 0, hashResultLen: 0 };
  f.srcDataLen = dv.getUint32(o + DATA_REQ_OFFSET.hashSrcDataLen, true);
  f.hashResultLen = dv.getUint32(o + DATA_REQ_OFFSET.hashResultLen, true);
  return f;
}

export function decodeAeadDataFlf(req: Uint8Array, offset = 0, into?: AeadDataFlf): AeadDataFlf {
  const o = at(req, offset, OP_DATA_REQ_SIZE, 'virtio_crypto_op_data_req');
  const dv = viewOf(req);
  const f = into ?? { ivLen: 0, aadLen: 0, srcDataLen: 0, dstDataLen: 0, tagLen: 0 };
  f.ivLen = dv.getUint32(o + DATA_REQ_OFFSET.aeadIvLen, true);
  f.aadLen = dv.getUint32(o + DATA_REQ_OFFSET.aeadAadLen, true);
  f.srcDataLen = dv.getUint32(o + DATA_REQ_OFFSET.aeadSrcDataLen, true);
  f.dstDataLen = dv.getUint32(o + DATA_REQ_OFFSET.aeadDstDataLen, true);
  f.tagLen = dv.getUint32(o + DATA_REQ_OFFSET.aeadTagLen, true);
  return f;
}

/**
 * §5.9.7.3 struct virtio_crypto_inhdr { u8 status }: the last INHDR_SIZE bytes of a data request's
 * writable part of `writableLen` bytes starting at `offset`.
 */
export function encodeInhdr(status: number, out: Uint8Array, offset: number, writableLen: number): void {
  out[at(out, offset + writableLen - INHDR_SIZE, INHDR_SIZE, 'virtio_crypto_inhdr') - out.byteOffset] = u8(status, 'status');
}

export function decodeInhdr(bytes: Uint8Array, offset: number, writableLen: number): number {
  return bytes[at(bytes, offset + writableLen - INHDR_SIZE, INHDR_SIZE, 'virtio_crypto_inhdr') - bytes.byteOffset]!;
}

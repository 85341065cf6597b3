/**
 * Byte codecs for the virtio-crypto structures (VIRTIO 1.2 cs01 §5.9), fixed-size layouts used
 * when VIRTIO_CRYPTO_F_REVISION_1 is not negotiated (Linux 6.1, QEMU 7.2): every controlq and
 * dataq request starts with a 72-byte header (16/24-byte general header + 56/48-byte op-specific
 * fixed part, zero padded). All fields little-endian; u64 fields are bigint.
 *
 * Pure and bounds-checked: decoders throw `WireError` on a short buffer, encoders throw
 * `WireError` on a field that does not fit its wire type. Unused/padding bytes encode as zero and
 * are ignored on decode (§5.9.7.2.1.3 "The data of unused part (if has) ... will be ignored").
 */

import { VIRTIO_CRYPTO_CONFIG_OFFSET as CFG, VIRTIO_CRYPTO_CONFIG_SIZE } from '../spec/virtio-crypto.js';

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
export const OP_CTRL_REQ_SIZE = 72;
/** sizeof(struct virtio_crypto_create_session_input), §5.9.7.2.1. */
export const CREATE_SESSION_INPUT_SIZE = 16;
/** sizeof(struct virtio_crypto_destroy_session_input), §5.9.7.2.1. */
export const DESTROY_SESSION_INPUT_SIZE = 1;
/** sizeof(struct virtio_crypto_op_header), §5.9.7.3. */
export const OP_HEADER_SIZE = 24;
/** sizeof(struct virtio_crypto_op_data_req) without REVISION_1: header + op_flf padded to 48. */
export const OP_DATA_REQ_SIZE = 72;
/** sizeof(struct virtio_crypto_inhdr), §5.9.7.3. */
export const INHDR_SIZE = 1;

/** Byte offsets inside the 72-byte controlq request (header at 0, op_flf at 16). */
export const CTRL_REQ_OFFSET = {
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
export const DATA_REQ_OFFSET = {
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

// ---------------------------------------------------------------------------------------------
// Helpers

const U32_MAX = 0xffff_ffff;
const U64_MAX = (1n << 64n) - 1n;

function need(bytes: Uint8Array, offset: number, size: number, what: string): DataView {
  if (!Number.isInteger(offset) || offset < 0 || bytes.length - offset < size) {
    throw new WireError('short-buffer', `${what} needs ${size} bytes at offset ${offset}, buffer has ${bytes.length}`);
  }
  return new DataView(bytes.buffer, bytes.byteOffset + offset, size);
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
  const dv = new DataView(out.buffer);
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
  const dv = need(bytes, offset, VIRTIO_CRYPTO_CONFIG_SIZE, 'virtio_crypto_config');
  return {
    status: dv.getUint32(CFG.status, true),
    maxDataqueues: dv.getUint32(CFG.max_dataqueues, true),
    cryptoServices: dv.getUint32(CFG.crypto_services, true),
    cipherAlgoL: dv.getUint32(CFG.cipher_algo_l, true),
    cipherAlgoH: dv.getUint32(CFG.cipher_algo_h, true),
    hashAlgo: dv.getUint32(CFG.hash_algo, true),
    macAlgoL: dv.getUint32(CFG.mac_algo_l, true),
    macAlgoH: dv.getUint32(CFG.mac_algo_h, true),
    aeadAlgo: dv.getUint32(CFG.aead_algo, true),
    maxCipherKeyLen: dv.getUint32(CFG.max_cipher_key_len, true),
    maxAuthKeyLen: dv.getUint32(CFG.max_auth_key_len, true),
    reserved: dv.getUint32(CFG.reserved, true),
    maxSize: dv.getBigUint64(CFG.max_size, true),
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

function ctrlReq(opcode: number, h: Partial<Omit<CtrlHeader, 'opcode'>> | undefined): { out: Uint8Array; dv: DataView } {
  const out = new Uint8Array(OP_CTRL_REQ_SIZE);
  const dv = new DataView(out.buffer);
  dv.setUint32(CTRL_REQ_OFFSET.opcode, u32(opcode, 'opcode'), true);
  dv.setUint32(CTRL_REQ_OFFSET.algo, u32(h?.algo, 'algo'), true);
  dv.setUint32(CTRL_REQ_OFFSET.flag, u32(h?.flag, 'flag'), true);
  dv.setUint32(CTRL_REQ_OFFSET.queueId, u32(h?.queueId, 'queueId'), true);
  return { out, dv };
}

/** Header fields other than the opcode are optional (0 by default; `algo` is informational). */
export type CtrlHeaderExtra = Partial<Omit<CtrlHeader, 'opcode'>>;

/** VIRTIO_CRYPTO_CIPHER_CREATE_SESSION with op_type VIRTIO_CRYPTO_SYM_OP_CIPHER. Key follows (vlf). */
export function encodeCipherCreateSessionReq(p: CipherSessionFlf, h?: CtrlHeaderExtra): Uint8Array {
  const { out, dv } = ctrlReq(0x0002, { algo: p.algo, ...h });
  dv.setUint32(CTRL_REQ_OFFSET.cipherAlgo, u32(p.algo, 'algo'), true);
  dv.setUint32(CTRL_REQ_OFFSET.cipherKeyLen, u32(p.keyLen, 'keyLen'), true);
  dv.setUint32(CTRL_REQ_OFFSET.cipherOp, u32(p.op, 'op'), true);
  dv.setUint32(CTRL_REQ_OFFSET.symOpType, 1, true);
  return out;
}

/** VIRTIO_CRYPTO_CIPHER_CREATE_SESSION with op_type ALGORITHM_CHAINING. cipher key, then auth key follow. */
export function encodeAlgChainCreateSessionReq(p: AlgChainSessionFlf, h?: CtrlHeaderExtra): Uint8Array {
  const { out, dv } = ctrlReq(0x0002, { algo: p.cipher.algo, ...h });
  dv.setUint32(CTRL_REQ_OFFSET.chainAlgChainOrder, u32(p.algChainOrder, 'algChainOrder'), true);
  dv.setUint32(CTRL_REQ_OFFSET.chainHashMode, u32(p.hashMode, 'hashMode'), true);
  dv.setUint32(CTRL_REQ_OFFSET.chainCipherAlgo, u32(p.cipher.algo, 'cipher.algo'), true);
  dv.setUint32(CTRL_REQ_OFFSET.chainCipherKeyLen, u32(p.cipher.keyLen, 'cipher.keyLen'), true);
  dv.setUint32(CTRL_REQ_OFFSET.chainCipherOp, u32(p.cipher.op, 'cipher.op'), true);
  dv.setUint32(CTRL_REQ_OFFSET.chainHashAlgo, u32(p.hashAlgo, 'hashAlgo'), true);
  dv.setUint32(CTRL_REQ_OFFSET.chainHashResultLen, u32(p.hashResultLen, 'hashResultLen'), true);
  dv.setUint32(CTRL_REQ_OFFSET.chainAuthKeyLen, u32(p.authKeyLen, 'authKeyLen'), true);
  dv.setUint32(CTRL_REQ_OFFSET.chainAadLen, u32(p.aadLen, 'aadLen'), true);
  dv.setUint32(CTRL_REQ_OFFSET.symOpType, 2, true);
  return out;
}

/** VIRTIO_CRYPTO_HASH_CREATE_SESSION (no vlf). */
export function encodeHashCreateSessionReq(p: HashCreateSessionFlf, h?: CtrlHeaderExtra): Uint8Array {
  const { out, dv } = ctrlReq(0x0102, { algo: p.algo, ...h });
  dv.setUint32(CTRL_REQ_OFFSET.hashAlgo, u32(p.algo, 'algo'), true);
  dv.setUint32(CTRL_REQ_OFFSET.hashResultLen, u32(p.hashResultLen, 'hashResultLen'), true);
  return out;
}

/** VIRTIO_CRYPTO_MAC_CREATE_SESSION. Auth key follows (vlf). */
export function encodeMacCreateSessionReq(p: MacCreateSessionFlf, h?: CtrlHeaderExtra): Uint8Array {
  const { out, dv } = ctrlReq(0x0202, { algo: p.algo, ...h });
  dv.setUint32(CTRL_REQ_OFFSET.hashAlgo, u32(p.algo, 'algo'), true);
  dv.setUint32(CTRL_REQ_OFFSET.hashResultLen, u32(p.hashResultLen, 'hashResultLen'), true);
  dv.setUint32(CTRL_REQ_OFFSET.macAuthKeyLen, u32(p.authKeyLen, 'authKeyLen'), true);
  return out;
}

/** VIRTIO_CRYPTO_AEAD_CREATE_SESSION. Key follows (vlf). */
export function encodeAeadCreateSessionReq(p: AeadCreateSessionFlf, h?: CtrlHeaderExtra): Uint8Array {
  const { out, dv } = ctrlReq(0x0302, { algo: p.algo, ...h });
  dv.setUint32(CTRL_REQ_OFFSET.aeadAlgo, u32(p.algo, 'algo'), true);
  dv.setUint32(CTRL_REQ_OFFSET.aeadKeyLen, u32(p.keyLen, 'keyLen'), true);
  dv.setUint32(CTRL_REQ_OFFSET.aeadTagLen, u32(p.tagLen, 'tagLen'), true);
  dv.setUint32(CTRL_REQ_OFFSET.aeadAadLen, u32(p.aadLen, 'aadLen'), true);
  dv.setUint32(CTRL_REQ_OFFSET.aeadOp, u32(p.op, 'op'), true);
  return out;
}

/** Any *_DESTROY_SESSION opcode with struct virtio_crypto_destroy_session_flf. */
export function encodeDestroySessionReq(opcode: number, sessionId: bigint, h?: CtrlHeaderExtra): Uint8Array {
  const { out, dv } = ctrlReq(opcode, h);
  dv.setBigUint64(CTRL_REQ_OFFSET.destroySessionId, u64(sessionId, 'sessionId'), true);
  return out;
}

export function decodeCtrlHeader(bytes: Uint8Array, offset = 0): CtrlHeader {
  const dv = need(bytes, offset, CTRL_HEADER_SIZE, 'virtio_crypto_ctrl_header');
  return {
    opcode: dv.getUint32(CTRL_REQ_OFFSET.opcode, true),
    algo: dv.getUint32(CTRL_REQ_OFFSET.algo, true),
    flag: dv.getUint32(CTRL_REQ_OFFSET.flag, true),
    queueId: dv.getUint32(CTRL_REQ_OFFSET.queueId, true),
  };
}

/** op_type of a CIPHER_CREATE_SESSION request (offset 64 of the 72-byte request). */
export function decodeSymCreateSessionOpType(req: Uint8Array, offset = 0): number {
  return need(req, offset, OP_CTRL_REQ_SIZE, 'virtio_crypto_op_ctrl_req').getUint32(CTRL_REQ_OFFSET.symOpType, true);
}

/** All decoders below take the whole 72-byte request (offset = start of the request). */
export function decodeCipherSessionFlf(req: Uint8Array, offset = 0): CipherSessionFlf {
  const dv = need(req, offset, OP_CTRL_REQ_SIZE, 'virtio_crypto_op_ctrl_req');
  return {
    algo: dv.getUint32(CTRL_REQ_OFFSET.cipherAlgo, true),
    keyLen: dv.getUint32(CTRL_REQ_OFFSET.cipherKeyLen, true),
    op: dv.getUint32(CTRL_REQ_OFFSET.cipherOp, true),
  };
}

export function decodeAlgChainSessionFlf(req: Uint8Array, offset = 0): AlgChainSessionFlf {
  const dv = need(req, offset, OP_CTRL_REQ_SIZE, 'virtio_crypto_op_ctrl_req');
  const hashMode = dv.getUint32(CTRL_REQ_OFFSET.chainHashMode, true);
  return {
    algChainOrder: dv.getUint32(CTRL_REQ_OFFSET.chainAlgChainOrder, true),
    hashMode,
    cipher: {
      algo: dv.getUint32(CTRL_REQ_OFFSET.chainCipherAlgo, true),
      keyLen: dv.getUint32(CTRL_REQ_OFFSET.chainCipherKeyLen, true),
      op: dv.getUint32(CTRL_REQ_OFFSET.chainCipherOp, true),
    },
    hashAlgo: dv.getUint32(CTRL_REQ_OFFSET.chainHashAlgo, true),
    hashResultLen: dv.getUint32(CTRL_REQ_OFFSET.chainHashResultLen, true),
    // §5.9.7.2.1.3: algo_flf is a hash flf for PLAIN (8 bytes; the rest "will be ignored")
    // and a mac flf (with auth_key_len) for AUTH.
    authKeyLen: hashMode === 2 ? dv.getUint32(CTRL_REQ_OFFSET.chainAuthKeyLen, true) : 0,
    aadLen: dv.getUint32(CTRL_REQ_OFFSET.chainAadLen, true),
  };
}

export function decodeHashCreateSessionFlf(req: Uint8Array, offset = 0): HashCreateSessionFlf {
  const dv = need(req, offset, OP_CTRL_REQ_SIZE, 'virtio_crypto_op_ctrl_req');
  return { algo: dv.getUint32(CTRL_REQ_OFFSET.hashAlgo, true), hashResultLen: dv.getUint32(CTRL_REQ_OFFSET.hashResultLen, true) };
}

export function decodeMacCreateSessionFlf(req: Uint8Array, offset = 0): MacCreateSessionFlf {
  const dv = need(req, offset, OP_CTRL_REQ_SIZE, 'virtio_crypto_op_ctrl_req');
  return {
    algo: dv.getUint32(CTRL_REQ_OFFSET.hashAlgo, true),
    hashResultLen: dv.getUint32(CTRL_REQ_OFFSET.hashResultLen, true),
    authKeyLen: dv.getUint32(CTRL_REQ_OFFSET.macAuthKeyLen, true),
  };
}

export function decodeAeadCreateSessionFlf(req: Uint8Array, offset = 0): AeadCreateSessionFlf {
  const dv = need(req, offset, OP_CTRL_REQ_SIZE, 'virtio_crypto_op_ctrl_req');
  return {
    algo: dv.getUint32(CTRL_REQ_OFFSET.aeadAlgo, true),
    keyLen: dv.getUint32(CTRL_REQ_OFFSET.aeadKeyLen, true),
    tagLen: dv.getUint32(CTRL_REQ_OFFSET.aeadTagLen, true),
    aadLen: dv.getUint32(CTRL_REQ_OFFSET.aeadAadLen, true),
    op: dv.getUint32(CTRL_REQ_OFFSET.aeadOp, true),
  };
}

export function decodeDestroySessionFlf(req: Uint8Array, offset = 0): { sessionId: bigint } {
  const dv = need(req, offset, OP_CTRL_REQ_SIZE, 'virtio_crypto_op_ctrl_req');
  return { sessionId: dv.getBigUint64(CTRL_REQ_OFFSET.destroySessionId, true) };
}

/** §5.9.7.2.1 struct virtio_crypto_create_session_input (device-writable, 16 bytes). */
export interface CreateSessionInput {
  sessionId: bigint;
  status: number;
}

/** Writes the session_input into `out` at `offset` (the device side), or returns a new buffer. */
export function encodeCreateSessionInput(v: CreateSessionInput, out?: Uint8Array, offset = 0): Uint8Array {
  const buf = out ?? new Uint8Array(CREATE_SESSION_INPUT_SIZE);
  const dv = need(buf, offset, CREATE_SESSION_INPUT_SIZE, 'virtio_crypto_create_session_input');
  dv.setBigUint64(0, u64(v.sessionId, 'sessionId'), true);
  dv.setUint32(8, u32(v.status, 'status'), true);
  dv.setUint32(12, 0, true);
  return buf;
}

export function decodeCreateSessionInput(bytes: Uint8Array, offset = 0): CreateSessionInput {
  const dv = need(bytes, offset, CREATE_SESSION_INPUT_SIZE, 'virtio_crypto_create_session_input');
  return { sessionId: dv.getBigUint64(0, true), status: dv.getUint32(8, true) };
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

function dataReq(opcode: number, sessionId: bigint, h: OpHeaderExtra | undefined): { out: Uint8Array; dv: DataView } {
  const out = new Uint8Array(OP_DATA_REQ_SIZE);
  const dv = new DataView(out.buffer);
  dv.setUint32(DATA_REQ_OFFSET.opcode, u32(opcode, 'opcode'), true);
  dv.setUint32(DATA_REQ_OFFSET.algo, u32(h?.algo, 'algo'), true);
  dv.setBigUint64(DATA_REQ_OFFSET.sessionId, u64(sessionId, 'sessionId'), true);
  dv.setUint32(DATA_REQ_OFFSET.flag, u32(h?.flag, 'flag'), true);
  return { out, dv };
}

/** CIPHER_ENCRYPT/DECRYPT with op_type SYM_OP_CIPHER. Readable iv, src follow; writable dst, status. */
export function encodeCipherDataReq(opcode: number, sessionId: bigint, p: CipherDataFlf, h?: OpHeaderExtra): Uint8Array {
  const { out, dv } = dataReq(opcode, sessionId, h);
  dv.setUint32(DATA_REQ_OFFSET.ivLen, u32(p.ivLen, 'ivLen'), true);
  dv.setUint32(DATA_REQ_OFFSET.srcDataLen, u32(p.srcDataLen, 'srcDataLen'), true);
  dv.setUint32(DATA_REQ_OFFSET.dstDataLen, u32(p.dstDataLen, 'dstDataLen'), true);
  dv.setUint32(DATA_REQ_OFFSET.symOpType, 1, true);
  return out;
}

/**
 * CIPHER_ENCRYPT/DECRYPT with op_type ALGORITHM_CHAINING. Readable iv, src, aad follow (spec
 * order); writable dst, hash_result, status.
 */
export function encodeAlgChainDataReq(opcode: number, sessionId: bigint, p: AlgChainDataFlf, h?: OpHeaderExtra): Uint8Array {
  const { out, dv } = dataReq(opcode, sessionId, h);
  dv.setUint32(DATA_REQ_OFFSET.ivLen, u32(p.ivLen, 'ivLen'), true);
  dv.setUint32(DATA_REQ_OFFSET.srcDataLen, u32(p.srcDataLen, 'srcDataLen'), true);
  dv.setUint32(DATA_REQ_OFFSET.dstDataLen, u32(p.dstDataLen, 'dstDataLen'), true);
  dv.setUint32(DATA_REQ_OFFSET.cipherStartSrcOffset, u32(p.cipherStartSrcOffset, 'cipherStartSrcOffset'), true);
  dv.setUint32(DATA_REQ_OFFSET.lenToCipher, u32(p.lenToCipher, 'lenToCipher'), true);
  dv.setUint32(DATA_REQ_OFFSET.hashStartSrcOffset, u32(p.hashStartSrcOffset, 'hashStartSrcOffset'), true);
  dv.setUint32(DATA_REQ_OFFSET.lenToHash, u32(p.lenToHash, 'lenToHash'), true);
  dv.setUint32(DATA_REQ_OFFSET.chainAadLen, u32(p.aadLen, 'aadLen'), true);
  dv.setUint32(DATA_REQ_OFFSET.chainHashResultLen, u32(p.hashResultLen, 'hashResultLen'), true);
  dv.setUint32(DATA_REQ_OFFSET.symOpType, 2, true);
  return out;
}

/** VIRTIO_CRYPTO_HASH or VIRTIO_CRYPTO_MAC. Readable src follows; writable hash_result, status. */
export function encodeHashDataReq(opcode: number, sessionId: bigint, p: HashDataFlf, h?: OpHeaderExtra): Uint8Array {
  const { out, dv } = dataReq(opcode, sessionId, h);
  dv.setUint32(DATA_REQ_OFFSET.hashSrcDataLen, u32(p.srcDataLen, 'srcDataLen'), true);
  dv.setUint32(DATA_REQ_OFFSET.hashResultLen, u32(p.hashResultLen, 'hashResultLen'), true);
  return out;
}

/**
 * AEAD_ENCRYPT/DECRYPT. Readable iv, src, aad follow; writable dst, status.
 * Encrypt: src = plaintext, dst = ciphertext || tag (dst_data_len >= src_data_len + tag_len).
 * Decrypt: src = ciphertext || tag, dst = plaintext (dst_data_len >= src_data_len - tag_len).
 */
export function encodeAeadDataReq(opcode: number, sessionId: bigint, p: AeadDataFlf, h?: OpHeaderExtra): Uint8Array {
  const { out, dv } = dataReq(opcode, sessionId, h);
  dv.setUint32(DATA_REQ_OFFSET.aeadIvLen, u32(p.ivLen, 'ivLen'), true);
  dv.setUint32(DATA_REQ_OFFSET.aeadAadLen, u32(p.aadLen, 'aadLen'), true);
  dv.setUint32(DATA_REQ_OFFSET.aeadSrcDataLen, u32(p.srcDataLen, 'srcDataLen'), true);
  dv.setUint32(DATA_REQ_OFFSET.aeadDstDataLen, u32(p.dstDataLen, 'dstDataLen'), true);
  dv.setUint32(DATA_REQ_OFFSET.aeadTagLen, u32(p.tagLen, 'tagLen'), true);
  return out;
}

export function decodeOpHeader(bytes: Uint8Array, offset = 0): OpHeader {
  const dv = need(bytes, offset, OP_HEADER_SIZE, 'virtio_crypto_op_header');
  return {
    opcode: dv.getUint32(DATA_REQ_OFFSET.opcode, true),
    algo: dv.getUint32(DATA_REQ_OFFSET.algo, true),
    sessionId: dv.getBigUint64(DATA_REQ_OFFSET.sessionId, true),
    flag: dv.getUint32(DATA_REQ_OFFSET.flag, true),
  };
}

/** op_type of a sym (cipher/chain) data request (offset 64 of the 72-byte request). */
export function decodeSymDataOpType(req: Uint8Array, offset = 0): number {
  return need(req, offset, OP_DATA_REQ_SIZE, 'virtio_crypto_op_data_req').getUint32(DATA_REQ_OFFSET.symOpType, true);
}

export function decodeCipherDataFlf(req: Uint8Array, offset = 0): CipherDataFlf {
  const dv = need(req, offset, OP_DATA_REQ_SIZE, 'virtio_crypto_op_data_req');
  return {
    ivLen: dv.getUint32(DATA_REQ_OFFSET.ivLen, true),
    srcDataLen: dv.getUint32(DATA_REQ_OFFSET.srcDataLen, true),
    dstDataLen: dv.getUint32(DATA_REQ_OFFSET.dstDataLen, true),
  };
}

export function decodeAlgChainDataFlf(req: Uint8Array, offset = 0): AlgChainDataFlf {
  const dv = need(req, offset, OP_DATA_REQ_SIZE, 'virtio_crypto_op_data_req');
  return {
    ivLen: dv.getUint32(DATA_REQ_OFFSET.ivLen, true),
    srcDataLen: dv.getUint32(DATA_REQ_OFFSET.srcDataLen, true),
    dstDataLen: dv.getUint32(DATA_REQ_OFFSET.dstDataLen, true),
    cipherStartSrcOffset: dv.getUint32(DATA_REQ_OFFSET.cipherStartSrcOffset, true),
    lenToCipher: dv.getUint32(DATA_REQ_OFFSET.lenToCipher, true),
    hashStartSrcOffset: dv.getUint32(DATA_REQ_OFFSET.hashStartSrcOffset, true),
    lenToHash: dv.getUint32(DATA_REQ_OFFSET.lenToHash, true),
    aadLen: dv.getUint32(DATA_REQ_OFFSET.chainAadLen, true),
    hashResultLen: dv.getUint32(DATA_REQ_OFFSET.chainHashResultLen, true),
  };
}

export function decodeHashDataFlf(req: Uint8Array, offset = 0): HashDataFlf {
  const dv = need(req, offset, OP_DATA_REQ_SIZE, 'virtio_crypto_op_data_req');
  return { srcDataLen: dv.getUint32(DATA_REQ_OFFSET.hashSrcDataLen, true), hashResultLen: dv.getUint32(DATA_REQ_OFFSET.hashResultLen, true) };
}

export function decodeAeadDataFlf(req: Uint8Array, offset = 0): AeadDataFlf {
  const dv = need(req, offset, OP_DATA_REQ_SIZE, 'virtio_crypto_op_data_req');
  return {
    ivLen: dv.getUint32(DATA_REQ_OFFSET.aeadIvLen, true),
    aadLen: dv.getUint32(DATA_REQ_OFFSET.aeadAadLen, true),
    srcDataLen: dv.getUint32(DATA_REQ_OFFSET.aeadSrcDataLen, true),
    dstDataLen: dv.getUint32(DATA_REQ_OFFSET.aeadDstDataLen, true),
    tagLen: dv.getUint32(DATA_REQ_OFFSET.aeadTagLen, true),
  };
}

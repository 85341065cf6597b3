/**
 * vhost-user message codecs (vhost-user.rst "Message Specification"; layouts measured with gcc on
 * x86-64, docs/qemu-vhost-user-crypto.md §4). Pure and bounds-checked: every decoder checks the
 * payload size first and throws `VhostUserWireError` naming the violation. Native byte order on the
 * socket = little-endian on every platform we run on.
 */
import {
  VHOST_USER_HEADER_SIZE,
  VHOST_USER_VRING_IDX_MASK,
  VHOST_USER_VRING_NOFD_MASK,
  VHOST_MEMORY_BASELINE_NREGIONS,
  VHOST_USER_CRYPTO_SESSION_SIZE_V71,
  VHOST_USER_CRYPTO_SESSION_SIZE_V81,
  VHOST_CRYPTO_SYM_CIPHER_MAX_KEY_LEN,
  VHOST_CRYPTO_SYM_HMAC_MAX_KEY_LEN,
  VHOST_CRYPTO_ASYM_MAX_KEY_LEN,
} from '../spec/vhost-user.js';
import { VIRTIO_CRYPTO_CTRL_OPCODE } from '../spec/virtio-crypto.js';

export class VhostUserWireError extends Error {
  override readonly name = 'VhostUserWireError';
}

function dv(bytes: Uint8Array): DataView {
  return new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

function expectSize(what: string, payload: Uint8Array, size: number): DataView {
  if (payload.length !== size) throw new VhostUserWireError(`${what}: payload is ${payload.length} bytes, expected ${size}`);
  return dv(payload);
}

// ---- header ------------------------------------------------------------------------------------

export interface VhostUserHeader {
  readonly request: number;
  readonly flags: number;
  readonly size: number;
}

export function decodeHeader(bytes: Uint8Array): VhostUserHeader {
  const v = expectSize('header', bytes, VHOST_USER_HEADER_SIZE);
  return { request: v.getUint32(0, true), flags: v.getUint32(4, true), size: v.getUint32(8, true) };
}

/** One whole message: header + payload. */
export function encodeMessage(request: number, flags: number, payload: Uint8Array = new Uint8Array(0)): Uint8Array {
  const out = new Uint8Array(VHOST_USER_HEADER_SIZE + payload.length);
  const v = dv(out);
  v.setUint32(0, request, true);
  v.setUint32(4, flags, true);
  v.setUint32(8, payload.length, true);
  out.set(payload, VHOST_USER_HEADER_SIZE);
  return out;
}

// ---- u64 (features, protocol features, queue num, REPLY_ACK, CLOSE_CRYPTO_SESSION) --------------

export const U64_PAYLOAD_SIZE = 8;

export function encodeU64(value: bigint): Uint8Array {
  const out = new Uint8Array(8);
  dv(out).setBigUint64(0, BigInt.asUintN(64, value), true);
  return out;
}

export function decodeU64(payload: Uint8Array): bigint {
  return expectSize('u64', payload, 8).getBigUint64(0, true);
}

// ---- struct vhost_vring_state { unsigned int index; unsigned int num; } -------------------------

export const VRING_STATE_SIZE = 8;

export interface VringState {
  readonly index: number;
  readonly num: number;
}

export function encodeVringState(s: VringState): Uint8Array {
  const out = new Uint8Array(8);
  const v = dv(out);
  v.setUint32(0, s.index, true);
  v.setUint32(4, s.num, true);
  return out;
}

export function decodeVringState(payload: Uint8Array): VringState {
  const v = expectSize('vring state', payload, 8);
  return { index: v.getUint32(0, true), num: v.getUint32(4, true) };
}

// ---- vring file (SET_VRING_KICK/CALL/ERR): u64, index bits 0-7, NOFD bit 8 -----------------------

export interface VringFile {
  readonly index: number;
  /** VHOST_USER_VRING_NOFD_MASK: no fd attached (the front-end asks the back-end to poll / not signal). */
  readonly noFd: boolean;
  /** Bits other than index and NOFD (must be 0). */
  readonly reservedBits: bigint;
}

export function encodeVringFile(index: number, noFd: boolean): Uint8Array {
  return encodeU64(BigInt(index & VHOST_USER_VRING_IDX_MASK) | (noFd ? BigInt(VHOST_USER_VRING_NOFD_MASK) : 0n));
}

export function decodeVringFile(payload: Uint8Array): VringFile {
  const raw = decodeU64(payload);
  return {
    index: Number(raw & BigInt(VHOST_USER_VRING_IDX_MASK)),
    noFd: (raw & BigInt(VHOST_USER_VRING_NOFD_MASK)) !== 0n,
    reservedBits: raw & ~BigInt(VHOST_USER_VRING_IDX_MASK | VHOST_USER_VRING_NOFD_MASK),
  };
}

// ---- struct vhost_vring_addr (40 bytes): note the order desc, USED, avail -----------------------

export const VRING_ADDR_SIZE = 40;

export interface VringAddr {
  readonly index: number;
  readonly flags: number;
  /** Front-end virtual (user) addresses, not guest-physical (vhost-user.rst "ring addresses"). */
  readonly descUserAddr: bigint;
  readonly usedUserAddr: bigint;
  readonly availUserAddr: bigint;
  readonly logGuestAddr: bigint;
}

export function encodeVringAddr(a: VringAddr): Uint8Array {
  const out = new Uint8Array(VRING_ADDR_SIZE);
  const v = dv(out);
  v.setUint32(0, a.index, true);
  v.setUint32(4, a.flags, true);
  v.setBigUint64(8, a.descUserAddr, true);
  v.setBigUint64(16, a.usedUserAddr, true);
  v.setBigUint64(24, a.availUserAddr, true);
  v.setBigUint64(32, a.logGuestAddr, true);
  return out;
}

export function decodeVringAddr(payload: Uint8Array): VringAddr {
  const v = expectSize('vring address', payload, VRING_ADDR_SIZE);
  return {
    index: v.getUint32(0, true),
    flags: v.getUint32(4, true),
    descUserAddr: v.getBigUint64(8, true),
    usedUserAddr: v.getBigUint64(16, true),
    availUserAddr: v.getBigUint64(24, true),
    logGuestAddr: v.getBigUint64(32, true),
  };
}

// ---- memory table: u32 nregions, u32 padding, nregions × {gpa, size, uaddr, mmap_offset} ----------

export const MEMORY_REGION_SIZE = 32;

export interface MemoryRegionDesc {
  readonly guestPhysAddr: bigint;
  readonly memorySize: bigint;
  readonly userspaceAddr: bigint;
  readonly mmapOffset: bigint;
}

export function encodeMemoryTable(regions: readonly MemoryRegionDesc[]): Uint8Array {
  const out = new Uint8Array(8 + MEMORY_REGION_SIZE * regions.length);
  const v = dv(out);
  v.setUint32(0, regions.length, true);
  regions.forEach((r, i) => {
    const o = 8 + MEMORY_REGION_SIZE * i;
    v.setBigUint64(o, r.guestPhysAddr, true);
    v.setBigUint64(o + 8, r.memorySize, true);
    v.setBigUint64(o + 16, r.userspaceAddr, true);
    v.setBigUint64(o + 24, r.mmapOffset, true);
  });
  return out;
}

/** Decodes a table; QEMU sends exactly the used regions (size = 8 + 32·n), 1 ≤ n ≤ 8. */
export function decodeMemoryTable(payload: Uint8Array): MemoryRegionDesc[] {
  if (payload.length < 8) throw new VhostUserWireError(`memory table: payload is ${payload.length} bytes, expected at least 8`);
  const v = dv(payload);
  const n = v.getUint32(0, true);
  if (n === 0 || n > VHOST_MEMORY_BASELINE_NREGIONS) {
    throw new VhostUserWireError(`memory table: ${n} regions (1-${VHOST_MEMORY_BASELINE_NREGIONS} allowed)`);
  }
  if (payload.length !== 8 + MEMORY_REGION_SIZE * n) {
    throw new VhostUserWireError(`memory table: payload is ${payload.length} bytes for ${n} regions, expected ${8 + MEMORY_REGION_SIZE * n}`);
  }
  const regions: MemoryRegionDesc[] = [];
  for (let i = 0; i < n; i++) {
    const o = 8 + MEMORY_REGION_SIZE * i;
    regions.push({
      guestPhysAddr: v.getBigUint64(o, true),
      memorySize: v.getBigUint64(o + 8, true),
      userspaceAddr: v.getBigUint64(o + 16, true),
      mmapOffset: v.getBigUint64(o + 24, true),
    });
  }
  return regions;
}

// ---- CREATE_CRYPTO_SESSION ---------------------------------------------------------------------
//
// QEMU 7.1-8.0 (632 bytes, VhostUserCryptoSession): int64 session_id @0, then
// CryptoDevBackendSymSessionInfo @8 { u32 cipher_alg @8, key_len @12, hash_alg @16,
// hash_result_len @20, auth_key_len @24, add_len @28; u8 op_type @32, direction @33, hash_mode @34,
// alg_chain_order @35; pad; two host pointers @40/@48 (garbage to us) }, u8 key[64] @56,
// u8 auth_key[512] @120.
// QEMU 8.1+ (1072 bytes): u64 op_code @0; union @8 { sym: the same SymSessionInfo, key @56,
// auth_key @120 | asym: u32 algo @8, keytype @12, keylen @16, pad, ptr @24, rsa {padding_algo @32,
// hash_algo @36}, u8 key[1024] @40 }; int64 session_id @1064.
// The two layouts are told apart by size (the only way: both start with a u64).

export type CryptoSessionLayout = 'qemu-7.1' | 'qemu-8.1';

/** Byte offsets in the CREATE_CRYPTO_SESSION payload (both layouts; see above). */
const SESSION_OFFSET = {
  /** 7.1-8.0: int64 session_id (request: ignored; reply: the id or -status). */
  sessionIdV71: 0,
  /** 8.1+: u64 op_code (a VIRTIO_CRYPTO_*_CREATE_SESSION opcode). */
  opCode: 0,
  // CryptoDevBackendSymSessionInfo
  cipherAlg: 8,
  keyLen: 12,
  hashAlg: 16,
  hashResultLen: 20,
  authKeyLen: 24,
  aadLen: 28,
  opType: 32,
  direction: 33,
  hashMode: 34,
  algChainOrder: 35,
  key: 56,
  authKey: 120,
  // 8.1+ CryptoDevBackendAsymSessionInfo
  asymAlgo: 8,
  asymKeyLen: 16,
  /** 8.1+: int64 session_id after the union. */
  sessionIdV81: 1064,
} as const;

export interface SymSessionParams {
  readonly cipherAlg: number;
  readonly keyLen: number;
  readonly hashAlg: number;
  readonly hashResultLen: number;
  readonly authKeyLen: number;
  readonly aadLen: number;
  readonly opType: number;
  readonly direction: number;
  readonly hashMode: number;
  readonly algChainOrder: number;
  /** Copies of the first keyLen / authKeyLen bytes (lengths already checked against the buffers). */
  readonly key: Uint8Array;
  readonly authKey: Uint8Array;
}

export type CryptoSessionRequest =
  | { readonly layout: 'qemu-7.1'; readonly kind: 'sym'; readonly sym: SymSessionParams }
  | { readonly layout: 'qemu-8.1'; readonly opCode: number; readonly kind: 'sym'; readonly sym: SymSessionParams }
  | { readonly layout: 'qemu-8.1'; readonly opCode: number; readonly kind: 'asym'; readonly algo: number; readonly keyLen: number };

/** Thrown when the session parameters cannot even be parsed (key length beyond the buffer). */
export class CryptoSessionParamError extends VhostUserWireError {}

export function cryptoSessionLayout(size: number): CryptoSessionLayout | undefined {
  if (size === VHOST_USER_CRYPTO_SESSION_SIZE_V71) return 'qemu-7.1';
  if (size === VHOST_USER_CRYPTO_SESSION_SIZE_V81) return 'qemu-8.1';
  return undefined;
}

function decodeSym(v: DataView, payload: Uint8Array): SymSessionParams {
  const O = SESSION_OFFSET;
  const keyLen = v.getUint32(O.keyLen, true);
  const authKeyLen = v.getUint32(O.authKeyLen, true);
  // DPDK CVE-2020-10724: never trust key lengths beyond the fixed buffers.
  if (keyLen > VHOST_CRYPTO_SYM_CIPHER_MAX_KEY_LEN) {
    throw new CryptoSessionParamError(`cipher key_len ${keyLen} > ${VHOST_CRYPTO_SYM_CIPHER_MAX_KEY_LEN}`);
  }
  if (authKeyLen > VHOST_CRYPTO_SYM_HMAC_MAX_KEY_LEN) {
    throw new CryptoSessionParamError(`auth_key_len ${authKeyLen} > ${VHOST_CRYPTO_SYM_HMAC_MAX_KEY_LEN}`);
  }
  return {
    cipherAlg: v.getUint32(O.cipherAlg, true),
    keyLen,
    hashAlg: v.getUint32(O.hashAlg, true),
    hashResultLen: v.getUint32(O.hashResultLen, true),
    authKeyLen,
    aadLen: v.getUint32(O.aadLen, true),
    opType: v.getUint8(O.opType),
    direction: v.getUint8(O.direction),
    hashMode: v.getUint8(O.hashMode),
    algChainOrder: v.getUint8(O.algChainOrder),
    key: payload.slice(O.key, O.key + keyLen),
    authKey: payload.slice(O.authKey, O.authKey + authKeyLen),
  };
}

/**
 * The 8.1+ payload's op_code (its low 32 bits: a virtio-crypto opcode), or undefined for a payload
 * of another size (the 7.1-8.0 layout has none). Reads nothing else (no key material).
 */
export function cryptoSessionOpCode(payload: Uint8Array): number | undefined {
  if (cryptoSessionLayout(payload.length) !== 'qemu-8.1') return undefined;
  return dv(payload).getUint32(SESSION_OFFSET.opCode, true);
}

export function decodeCryptoSession(payload: Uint8Array): CryptoSessionRequest {
  const layout = cryptoSessionLayout(payload.length);
  if (layout === undefined) {
    throw new VhostUserWireError(
      `crypto session: payload is ${payload.length} bytes, expected ${VHOST_USER_CRYPTO_SESSION_SIZE_V71} (QEMU 7.1-8.0) or ${VHOST_USER_CRYPTO_SESSION_SIZE_V81} (QEMU 8.1+)`,
    );
  }
  const v = dv(payload);
  if (layout === 'qemu-7.1') return { layout, kind: 'sym', sym: decodeSym(v, payload) };
  const opCode = cryptoSessionOpCode(payload)!;
  if (opCode === VIRTIO_CRYPTO_CTRL_OPCODE.VIRTIO_CRYPTO_AKCIPHER_CREATE_SESSION) {
    const keyLen = v.getUint32(SESSION_OFFSET.asymKeyLen, true);
    if (keyLen > VHOST_CRYPTO_ASYM_MAX_KEY_LEN) throw new CryptoSessionParamError(`asym keylen ${keyLen} > ${VHOST_CRYPTO_ASYM_MAX_KEY_LEN}`);
    return { layout, opCode, kind: 'asym', algo: v.getUint32(SESSION_OFFSET.asymAlgo, true), keyLen };
  }
  return { layout, opCode, kind: 'sym', sym: decodeSym(v, payload) };
}

/** Builds a CREATE_CRYPTO_SESSION request (used by tests and our own front-end). */
export function encodeCryptoSession(
  layout: CryptoSessionLayout,
  sym: Omit<SymSessionParams, 'keyLen' | 'authKeyLen'>,
  opCode: number = VIRTIO_CRYPTO_CTRL_OPCODE.VIRTIO_CRYPTO_CIPHER_CREATE_SESSION,
): Uint8Array {
  const size = layout === 'qemu-7.1' ? VHOST_USER_CRYPTO_SESSION_SIZE_V71 : VHOST_USER_CRYPTO_SESSION_SIZE_V81;
  if (sym.key.length > VHOST_CRYPTO_SYM_CIPHER_MAX_KEY_LEN || sym.authKey.length > VHOST_CRYPTO_SYM_HMAC_MAX_KEY_LEN) {
    throw new RangeError('key too long for the session payload');
  }
  const out = new Uint8Array(size);
  const v = dv(out);
  const O = SESSION_OFFSET;
  if (layout === 'qemu-8.1') v.setBigUint64(O.opCode, BigInt(opCode), true);
  v.setUint32(O.cipherAlg, sym.cipherAlg, true);
  v.setUint32(O.keyLen, sym.key.length, true);
  v.setUint32(O.hashAlg, sym.hashAlg, true);
  v.setUint32(O.hashResultLen, sym.hashResultLen, true);
  v.setUint32(O.authKeyLen, sym.authKey.length, true);
  v.setUint32(O.aadLen, sym.aadLen, true);
  v.setUint8(O.opType, sym.opType);
  v.setUint8(O.direction, sym.direction);
  v.setUint8(O.hashMode, sym.hashMode);
  v.setUint8(O.algChainOrder, sym.algChainOrder);
  out.set(sym.key, O.key);
  out.set(sym.authKey, O.authKey);
  return out;
}

/**
 * The reply payload: same size as the request, `session_id` (≥ 0 = id, < 0 = -status) at @0
 * (7.1 layout) or @1064 (8.1 layout; op_code kept). QEMU reads nothing else; every other byte is
 * zero, so key material is never echoed back.
 */
export function encodeCryptoSessionReply(layout: CryptoSessionLayout, sessionId: bigint, opCode = 0): Uint8Array {
  const size = layout === 'qemu-7.1' ? VHOST_USER_CRYPTO_SESSION_SIZE_V71 : VHOST_USER_CRYPTO_SESSION_SIZE_V81;
  const out = new Uint8Array(size);
  const v = dv(out);
  if (layout === 'qemu-7.1') v.setBigInt64(SESSION_OFFSET.sessionIdV71, sessionId, true);
  else {
    v.setBigUint64(SESSION_OFFSET.opCode, BigInt(opCode), true);
    v.setBigInt64(SESSION_OFFSET.sessionIdV81, sessionId, true);
  }
  return out;
}

export function decodeCryptoSessionReply(payload: Uint8Array): bigint {
  const layout = cryptoSessionLayout(payload.length);
  if (layout === undefined) throw new VhostUserWireError(`crypto session reply: ${payload.length} bytes`);
  return dv(payload).getBigInt64(layout === 'qemu-7.1' ? SESSION_OFFSET.sessionIdV71 : SESSION_OFFSET.sessionIdV81, true);
}

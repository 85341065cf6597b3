/**
 * The virtio-crypto device model (VIRTIO 1.2 cs01 §5.9), fixed-size request format (no
 * VIRTIO_CRYPTO_F_REVISION_1): controlq session requests, dataq cipher / hash / mac / aead /
 * algorithm-chaining requests, with node:crypto as the engine.
 *
 * The device sees a request as a DescriptorChain: device-readable buffers then device-writable
 * buffers, in chain order, with arbitrary (byte-granular) boundaries, possibly duplicated
 * entries (Linux's virtqueue_add_sgs walks each sg list to its end) and aliasing (in-place
 * src = dst). Rules followed here (docs/qemu-vhost-user-crypto.md §5, QEMU's behaviour):
 *  - the 72-byte header is copied into device memory before it is validated (TOCTOU);
 *  - the variable part is read as one stream after the header: exactly iv_len, then exactly
 *    src_data_len, then aad_len bytes; surplus readable bytes are ignored;
 *  - output is written from the first writable byte (exactly dst_data_len, then hash_result);
 *  - the status byte (struct virtio_crypto_inhdr) is the LAST byte of the writable stream, and is
 *    always written when there is at least one writable byte;
 *  - every result is computed before the first byte of dst is written (src may alias dst);
 *  - lengths are le32 read into JS numbers and summed as doubles (exact below 2^53), so no sum can
 *    wrap (QEMU CVE-2017-5931), and dst_data_len must equal src_data_len for ciphers (CVE-2023-3180).
 *
 * Nothing thrown inside a request escapes: processControl/processData catch everything and
 * answer ERR (or write nothing if they cannot), so a queue loop can call them blindly.
 */

import type { DescriptorChain } from '../virtqueue/chain.js';
import {
  VIRTIO_CRYPTO_CTRL_OPCODE as CTRL,
  VIRTIO_CRYPTO_DATA_OPCODE as DATA,
  VIRTIO_CRYPTO_S_HW_READY,
  VIRTIO_CRYPTO_SERVICE,
  VIRTIO_CRYPTO_STATUS,
  VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER,
  VIRTIO_CRYPTO_SYM_OP,
} from '../spec/virtio-crypto.js';
import {
  type AeadDataFlf,
  type AlgChainDataFlf,
  type CipherDataFlf,
  CREATE_SESSION_INPUT_SIZE,
  type CtrlHeader,
  DESTROY_SESSION_INPUT_SIZE,
  type HashDataFlf,
  INHDR_SIZE,
  OP_CTRL_REQ_SIZE,
  OP_DATA_REQ_SIZE,
  type OpHeader,
  decodeAeadCreateSessionFlf,
  decodeAeadDataFlf,
  decodeAlgChainDataFlf,
  decodeAlgChainSessionFlf,
  decodeCipherDataFlf,
  decodeCipherSessionFlf,
  decodeCtrlHeader,
  decodeDestroySessionFlf,
  decodeHashCreateSessionFlf,
  decodeHashDataFlf,
  decodeMacCreateSessionFlf,
  decodeOpHeader,
  decodeSymCreateSessionOpType,
  decodeSymDataOpType,
  encodeConfig,
  encodeCreateSessionInput,
} from '../wire/virtio-crypto.js';
import { DeviceStats, STAT, STAT_OP } from './device-stats.js';
import {
  type EngineSession,
  MAX_AUTH_KEY_LEN,
  MAX_CIPHER_KEY_LEN,
  SUPPORTED_AEADS,
  SUPPORTED_CIPHERS,
  SUPPORTED_HASHES,
  SUPPORTED_MACS,
  type SessionOrStatus,
  SessionKind,
  cipherLengthStatus,
  newAeadSession,
  newChainSession,
  newCipherSession,
  newHashSession,
  newMacSession,
  runAeadDecrypt,
  runAeadEncrypt,
  runCipher,
  runCipherPieces,
  runDigest,
} from './engine.js';
import { DEFAULT_MAX_SESSIONS, SessionTable } from './session-table.js';

const S = VIRTIO_CRYPTO_STATUS;
const OK = S.VIRTIO_CRYPTO_OK;
const ERR = S.VIRTIO_CRYPTO_ERR;

/**
 * Default bound on a request's variable-length part (config max_size): 512 MiB + 128 bytes, so that a
 * cipher request (src and dst) of 256 MiB fits, and a one-shot hash of a 256 MiB file. Nothing is
 * allocated up front; a request's bytes are only gathered when it arrives.
 */
export const DEFAULT_MAX_SIZE = 512 * 1024 * 1024 + 128;

export interface VirtioCryptoDeviceOptions {
  /** Number of data queues (config max_dataqueues, §5.9.5: 1..65535). */
  maxDataQueues: number;
  /** Session table bound (NOSPC beyond it). Default 1024. */
  maxSessions?: number;
  /** Bound on iv + src + aad + dst + hash_result of one request (config max_size). Default DEFAULT_MAX_SIZE. */
  maxSize?: number;
  /**
   * Told of every session created or destroyed, synchronously, before the request that did it
   * completes: a device whose data queues run on other threads copies its sessions there (see
   * transport/in-process/device-worker.ts). Not told of reset(): the owner resets its copies.
   */
  sessionObserver?: SessionObserver;
  /**
   * Where this device counts requests per operation, errors per status and sessions (see
   * device-stats.ts). The queue-serving routine counts chains, malformed chains and interrupts into
   * the same object. Default: a private one (see `stats`).
   */
  stats?: DeviceStats;
  /**
   * This instance only holds copies of another instance's sessions (adoptSession): it counts no
   * session statistics (the owner counts them once).
   */
  sessionCopies?: boolean;
  /**
   * The first session id handed out (default 1). A vhost-user back-end starts each connection at a
   * random id, so that a session id a guest kept from before a back-end restart (QEMU reconnects
   * and the guest driver still holds its ids) is INVSESS, never another, newer session.
   */
  firstSessionId?: bigint;
}

export interface SessionObserver {
  created(id: bigint, session: EngineSession): void;
  destroyed(id: bigint): void;
}

/** Parameters of a symmetric session as QEMU's vhost-user CREATE_CRYPTO_SESSION carries them. */
export interface SymSessionParams {
  cipherAlg: number;
  key: Uint8Array;
  /** VIRTIO_CRYPTO_OP_ENCRYPT / _DECRYPT */
  direction: number;
  /** VIRTIO_CRYPTO_SYM_OP_CIPHER / _ALGORITHM_CHAINING */
  opType: number;
  hashAlg: number;
  hashMode: number;
  algChainOrder: number;
  hashResultLen: number;
  authKey: Uint8Array;
  aadLen: number;
}

function mask(bits: readonly number[]): number {
  let m = 0;
  for (const b of bits) m |= 1 << b;
  return m >>> 0;
}

// ---------------------------------------------------------------------------------------------
// Scatter/gather over a chain's buffers, treated as one byte stream. All bounds-checked against
// the real buffer lengths: a short stream copies less, never past an end.

function streamLength(bufs: readonly Uint8Array[]): number {
  let n = 0;
  for (let i = 0; i < bufs.length; i++) n += bufs[i]!.length;
  return n;
}

/** Copies `len` bytes from stream offset `off` into `dst` at `dstOff`; returns bytes copied. */
function gather(bufs: readonly Uint8Array[], off: number, dst: Uint8Array, dstOff: number, len: number): number {
  let copied = 0;
  for (let i = 0; i < bufs.length && copied < len; i++) {
    const b = bufs[i]!;
    if (off >= b.length) {
      off -= b.length;
      continue;
    }
    const n = Math.min(b.length - off, len - copied);
    dst.set(off === 0 && n === b.length ? b : b.subarray(off, off + n), dstOff + copied);
    copied += n;
    off = 0;
  }
  return copied;
}

/**
 * `len` bytes at stream offset `off`: a view when they lie in one buffer (no copy on the hot
 * path), else a private copy. Caller has checked that the stream is long enough.
 */
function readBytes(bufs: readonly Uint8Array[], off: number, len: number): Uint8Array {
  let o = off;
  for (let i = 0; i < bufs.length; i++) {
    const b = bufs[i]!;
    if (o < b.length) {
      if (o === 0 && len === b.length) return b;
      if (b.length - o >= len) return b.subarray(o, o + len);
      break;
    }
    o -= b.length;
  }
  if (len === 0) return EMPTY;
  const out = Buffer.allocUnsafe(len);
  const n = gather(bufs, off, out, 0, len);
  if (n < len) out.fill(0, n); // defensive: callers check the stream length first
  return out;
}

const EMPTY = new Uint8Array(0);

/** Writes `len` bytes of `src` at stream offset `off`; returns bytes written. */
function scatter(bufs: readonly Uint8Array[], off: number, src: Uint8Array, len: number): number {
  let written = 0;
  for (let i = 0; i < bufs.length && written < len; i++) {
    const b = bufs[i]!;
    if (off >= b.length) {
      off -= b.length;
      continue;
    }
    const n = Math.min(b.length - off, len - written);
    b.set(written === 0 && n === src.length ? src : src.subarray(written, written + n), off);
    written += n;
    off = 0;
  }
  return written;
}

/** Writes one byte at stream offset `off` (the status: last writable byte). */
function writeByte(bufs: readonly Uint8Array[], off: number, v: number): void {
  for (let i = 0; i < bufs.length; i++) {
    const b = bufs[i]!;
    if (off < b.length) {
      b[off] = v;
      return;
    }
    off -= b.length;
  }
}

export class VirtioCryptoDevice {
  readonly maxDataQueues: number;
  readonly maxSize: number;
  readonly #sessions: SessionTable<EngineSession>;
  readonly #observer: SessionObserver | undefined;
  /** Private copy of the current request's 72-byte header (TOCTOU: parsed from here only). */
  readonly #hdr = new Uint8Array(Math.max(OP_DATA_REQ_SIZE, OP_CTRL_REQ_SIZE));
  // The current request's header, decoded from #hdr by the wire codecs into these (no allocation
  // per request): the driver encodes with the same codecs.
  readonly #ctrlHeader: CtrlHeader = { opcode: 0, algo: 0, flag: 0, queueId: 0 };
  readonly #opHeader: OpHeader = { opcode: 0, algo: 0, sessionId: 0n, flag: 0 };
  readonly #cipherFlf: CipherDataFlf = { ivLen: 0, srcDataLen: 0, dstDataLen: 0 };
  readonly #chainFlf: AlgChainDataFlf = { ivLen: 0, srcDataLen: 0, dstDataLen: 0, cipherStartSrcOffset: 0, lenToCipher: 0, hashStartSrcOffset: 0, lenToHash: 0, aadLen: 0, hashResultLen: 0 };
  readonly #hashFlf: HashDataFlf = { srcDataLen: 0, hashResultLen: 0 };
  readonly #aeadFlf: AeadDataFlf = { ivLen: 0, aadLen: 0, srcDataLen: 0, dstDataLen: 0, tagLen: 0 };
  readonly #sessionInput = new Uint8Array(CREATE_SESSION_INPUT_SIZE);
  /** Statistics (requests per operation, statuses, sessions). */
  readonly stats: DeviceStats;
  /** The current data request's operation (STAT_OP) and source bytes, for `stats`. */
  #statOp: number = STAT_OP.NONE;
  #statBytes = 0;
  readonly #sessionCopies: boolean;

  constructor(opts: VirtioCryptoDeviceOptions) {
    const q = opts.maxDataQueues;
    // §5.9.5 device normative: max_dataqueues between 1 and 65535 inclusive.
    if (!Number.isInteger(q) || q < 1 || q > 65535) throw new RangeError(`maxDataQueues must be 1..65535, got ${q}`);
    const maxSize = opts.maxSize ?? DEFAULT_MAX_SIZE;
    if (!Number.isSafeInteger(maxSize) || maxSize < 1) throw new RangeError(`maxSize must be a positive integer, got ${maxSize}`);
    this.maxDataQueues = q;
    this.maxSize = maxSize;
    this.#sessions = new SessionTable<EngineSession>(opts.maxSessions ?? DEFAULT_MAX_SESSIONS, opts.firstSessionId ?? 1n);
    this.#observer = opts.sessionObserver;
    this.#sessionCopies = opts.sessionCopies ?? false;
    this.stats = opts.stats ?? new DeviceStats(new ArrayBuffer(DeviceStats.byteLength()));
  }

  /**
   * Installs a copy of a session made by another instance of this device (same id), replacing
   * (and wiping) any session with that id. For the threads that serve a device's data queues.
   */
  adoptSession(id: bigint, session: EngineSession): void {
    this.#sessions.put(id, session);
  }

  /**
   * Drops a copy installed by adoptSession (keys wiped): the instance that made the session
   * counted its creation and destruction, so this one counts nothing.
   */
  dropSessionCopy(id: bigint): void {
    this.#sessions.destroy(id);
  }

  get sessionCount(): number {
    return this.#sessions.size;
  }

  get maxSessions(): number {
    return this.#sessions.maxSessions;
  }

  /** struct virtio_crypto_config (§5.9.5), little-endian, describing exactly what is implemented. */
  configSpace(): Uint8Array {
    return encodeConfig({
      status: VIRTIO_CRYPTO_S_HW_READY,
      maxDataqueues: this.maxDataQueues,
      cryptoServices: mask([VIRTIO_CRYPTO_SERVICE.CIPHER, VIRTIO_CRYPTO_SERVICE.HASH, VIRTIO_CRYPTO_SERVICE.MAC, VIRTIO_CRYPTO_SERVICE.AEAD]),
      cipherAlgoL: mask(SUPPORTED_CIPHERS), // all supported cipher numbers are < 32
      cipherAlgoH: 0,
      hashAlgo: mask(SUPPORTED_HASHES),
      macAlgoL: mask(SUPPORTED_MACS),
      macAlgoH: 0,
      aeadAlgo: mask(SUPPORTED_AEADS),
      maxCipherKeyLen: MAX_CIPHER_KEY_LEN,
      maxAuthKeyLen: MAX_AUTH_KEY_LEN,
      reserved: 0,
      maxSize: BigInt(this.maxSize),
    });
  }

  /** Destroys every session (keys wiped). Called on device reset. */
  reset(): void {
    const open = this.#sessions.size;
    this.#sessions.reset();
    this.#countSessions(0, open);
  }

  #countSessions(created: number, destroyed: number): void {
    if (this.#sessionCopies) return;
    const v = this.stats.values;
    v[STAT['sessions-created']]! += created;
    v[STAT['sessions-destroyed']]! += destroyed;
    v[STAT['sessions-open']] = this.#sessions.size;
  }

  /** Creates a symmetric session (vhost-user CREATE_CRYPTO_SESSION). Returns id >= 0 or -(status). */
  createSymSession(p: SymSessionParams): bigint {
    try {
      let r: SessionOrStatus;
      if (p.opType === VIRTIO_CRYPTO_SYM_OP.VIRTIO_CRYPTO_SYM_OP_CIPHER) {
        r = newCipherSession(p.cipherAlg, p.key, p.direction);
      } else if (p.opType === VIRTIO_CRYPTO_SYM_OP.VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING) {
        r = newChainSession({
          cipherAlg: p.cipherAlg,
          key: p.key,
          op: p.direction,
          algChainOrder: p.algChainOrder,
          hashMode: p.hashMode,
          hashAlg: p.hashAlg,
          hashResultLen: p.hashResultLen,
          authKey: p.authKey,
          aadLen: p.aadLen,
        });
      } else {
        r = S.VIRTIO_CRYPTO_NOTSUPP; // SYM_OP_NONE or unknown
      }
      const { id, status } = this.#install(r);
      return status === OK ? id : -BigInt(status);
    } catch {
      return -BigInt(ERR);
    }
  }

  /** Destroys a session: OK, or INVSESS for an unknown id. Never throws. */
  destroySession(id: bigint): number {
    return this.#destroy(id) ? OK : S.VIRTIO_CRYPTO_INVSESS;
  }

  #destroy(id: bigint): boolean {
    if (!this.#sessions.destroy(id)) return false;
    this.#countSessions(0, 1);
    this.#observer?.destroyed(id);
    return true;
  }

  #install(r: SessionOrStatus): { id: bigint; status: number } {
    if (typeof r === 'number') {
      this.stats.recordStatus(r);
      return { id: 0n, status: r };
    }
    const id = this.#sessions.add(r);
    if (id === null) {
      r.wipe();
      this.stats.recordStatus(S.VIRTIO_CRYPTO_NOSPC);
      // NOTE: §5.9.7.2.1 mentions NOSPC "only when VIRTIO_CRYPTO_F_REVISION_1" is negotiated; we
      // answer NOSPC for a full table regardless (drivers treat any non-OK create status as failure).
      return { id: 0n, status: S.VIRTIO_CRYPTO_NOSPC };
    }
    this.#countSessions(1, 0);
    this.#observer?.created(id, r);
    return { id, status: OK };
  }

  // -------------------------------------------------------------------------------------------
  // Control queue (§5.9.7.2)

  /** Serves one controlq request. Never throws. Returns the number of bytes written. */
  processControl(chain: DescriptorChain): number {
    try {
      return this.#control(chain);
    } catch {
      return 0; // unreachable by design; a queue loop must go on regardless
    }
  }

  #control(chain: DescriptorChain): number {
    const r = chain.readable;
    const w = chain.writable;
    const rlen = streamLength(r);
    const wlen = streamLength(w);
    if (rlen < OP_CTRL_REQ_SIZE) return this.#ctrlUnknownOutcome(w, wlen, ERR);
    const hdr = this.#hdr;
    gather(r, 0, hdr, 0, OP_CTRL_REQ_SIZE); // private copy before validation (TOCTOU)
    const opcode = decodeCtrlHeader(hdr, 0, this.#ctrlHeader).opcode;
    switch (opcode) {
      case CTRL.VIRTIO_CRYPTO_CIPHER_DESTROY_SESSION:
      case CTRL.VIRTIO_CRYPTO_HASH_DESTROY_SESSION:
      case CTRL.VIRTIO_CRYPTO_MAC_DESTROY_SESSION:
      case CTRL.VIRTIO_CRYPTO_AEAD_DESTROY_SESSION: {
        // §5.9.7.2.1 destroy: virtio_crypto_destroy_session_input { u8 status } at the first writable byte.
        if (wlen < DESTROY_SESSION_INPUT_SIZE) return 0;
        const id = decodeDestroySessionFlf(hdr).sessionId;
        // §5.9.7.2.1 device normative (destroy): OK on success, ERR "if any failure occurs".
        const destroyed = this.#destroy(id);
        if (!destroyed) this.stats.recordStatus(ERR);
        writeByte(w, 0, destroyed ? OK : ERR);
        return DESTROY_SESSION_INPUT_SIZE;
      }
      case CTRL.VIRTIO_CRYPTO_CIPHER_CREATE_SESSION:
      case CTRL.VIRTIO_CRYPTO_HASH_CREATE_SESSION:
      case CTRL.VIRTIO_CRYPTO_MAC_CREATE_SESSION:
      case CTRL.VIRTIO_CRYPTO_AEAD_CREATE_SESSION: {
        // §5.9.7.2.1 create: virtio_crypto_create_session_input (16 bytes) at the first writable
        // byte. Without room for it the driver could never learn the id: create nothing.
        if (wlen < CREATE_SESSION_INPUT_SIZE) return 0;
        const { id, status } = this.#install(this.#createFromCtrl(opcode, r, rlen));
        return this.#writeSessionInput(w, id, status);
      }
      default:
        // AKCIPHER and unknown opcodes: §5.9.7.2.1 NOTSUPP "if the requested algorithm or operation is unsupported".
        return this.#ctrlUnknownOutcome(w, wlen, S.VIRTIO_CRYPTO_NOTSUPP);
    }
  }

  /** Parses a create-session request (header already in #hdr) and its key(s). */
  #createFromCtrl(opcode: number, r: readonly Uint8Array[], rlen: number): SessionOrStatus {
    const hdr = this.#hdr;
    switch (opcode) {
      case CTRL.VIRTIO_CRYPTO_HASH_CREATE_SESSION: {
        const f = decodeHashCreateSessionFlf(hdr);
        return newHashSession(f.algo, f.hashResultLen);
      }
      case CTRL.VIRTIO_CRYPTO_MAC_CREATE_SESSION: {
        const f = decodeMacCreateSessionFlf(hdr);
        if (f.authKeyLen > MAX_AUTH_KEY_LEN) return ERR; // §5.9.5: within max_auth_key_len, else fail
        return this.#withKeys(r, rlen, 0, f.authKeyLen, (_k, a) => newMacSession(f.algo, f.hashResultLen, a));
      }
      case CTRL.VIRTIO_CRYPTO_AEAD_CREATE_SESSION: {
        const f = decodeAeadCreateSessionFlf(hdr);
        if (f.keyLen > MAX_CIPHER_KEY_LEN) return ERR; // §5.9.5: key_len (AEAD) within max_cipher_key_len
        return this.#withKeys(r, rlen, f.keyLen, 0, (k) => newAeadSession(f.algo, k, f.tagLen, f.aadLen, f.op));
      }
      default: {
        // VIRTIO_CRYPTO_CIPHER_CREATE_SESSION: op_type selects the op_flf / op_vlf structures.
        const opType = decodeSymCreateSessionOpType(hdr);
        if (opType === VIRTIO_CRYPTO_SYM_OP.VIRTIO_CRYPTO_SYM_OP_CIPHER) {
          const f = decodeCipherSessionFlf(hdr);
          if (f.keyLen > MAX_CIPHER_KEY_LEN) return ERR;
          return this.#withKeys(r, rlen, f.keyLen, 0, (k) => newCipherSession(f.algo, k, f.op));
        }
        if (opType === VIRTIO_CRYPTO_SYM_OP.VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING) {
          const f = decodeAlgChainSessionFlf(hdr);
          if (f.cipher.keyLen > MAX_CIPHER_KEY_LEN || f.authKeyLen > MAX_AUTH_KEY_LEN) return ERR;
          // §5.9.7.2.1.3 virtio_crypto_alg_chain_session_vlf: cipher_key then auth_key.
          return this.#withKeys(r, rlen, f.cipher.keyLen, f.authKeyLen, (k, a) =>
            newChainSession({
              cipherAlg: f.cipher.algo,
              key: k,
              op: f.cipher.op,
              algChainOrder: f.algChainOrder,
              hashMode: f.hashMode,
              hashAlg: f.hashAlgo,
              hashResultLen: f.hashResultLen,
              authKey: a,
              aadLen: f.aadLen,
            }),
          );
        }
        return S.VIRTIO_CRYPTO_NOTSUPP; // SYM_OP_NONE or unknown op_type
      }
    }
  }

  /** Gathers the key(s) following the header into private buffers, runs `make`, zeroes them. */
  #withKeys(
    r: readonly Uint8Array[],
    rlen: number,
    keyLen: number,
    authKeyLen: number,
    make: (key: Uint8Array, authKey: Uint8Array) => SessionOrStatus,
  ): SessionOrStatus {
    if (rlen < OP_CTRL_REQ_SIZE + keyLen + authKeyLen) return ERR; // short vlf
    const key = Buffer.alloc(keyLen);
    const authKey = Buffer.alloc(authKeyLen);
    try {
      gather(r, OP_CTRL_REQ_SIZE, key, 0, keyLen);
      gather(r, OP_CTRL_REQ_SIZE + keyLen, authKey, 0, authKeyLen);
      return make(key, authKey);
    } finally {
      key.fill(0);
      authKey.fill(0);
    }
  }

  #writeSessionInput(w: readonly Uint8Array[], id: bigint, status: number): number {
    // §5.9.7.2.1: session_id only meaningful when status is OK.
    const out = encodeCreateSessionInput({ sessionId: status === OK ? id : 0n, status }, this.#sessionInput);
    return scatter(w, 0, out, CREATE_SESSION_INPUT_SIZE);
  }

  /** Outcome for a request whose layout is unknown: a session_input if it fits, else one status byte. */
  #ctrlUnknownOutcome(w: readonly Uint8Array[], wlen: number, status: number): number {
    this.stats.recordStatus(status);
    if (wlen >= CREATE_SESSION_INPUT_SIZE) return this.#writeSessionInput(w, 0n, status);
    if (wlen >= 1) {
      writeByte(w, 0, status);
      return 1;
    }
    return 0;
  }

  // -------------------------------------------------------------------------------------------
  // Data queues (§5.9.7.3 - §5.9.7.6)

  /**
   * Serves one dataq request. Never throws. The status byte goes to the last writable byte;
   * returns the number of writable bytes covered (the whole writable stream, as QEMU reports),
   * or 0 when there is no writable byte at all.
   */
  processData(chain: DescriptorChain): number {
    const w = chain.writable;
    const wlen = streamLength(w);
    let status: number;
    this.#statOp = STAT_OP.NONE;
    try {
      status = this.#data(chain.readable, w, wlen);
    } catch {
      status = ERR; // an engine (OpenSSL) failure: ERR, §5.9.7.5 "any failure not mentioned above"
    }
    this.stats.recordData(this.#statOp, this.#statBytes, status);
    if (wlen === 0) return 0;
    writeByte(w, wlen - INHDR_SIZE, status); // struct virtio_crypto_inhdr (u8 status): the last writable byte
    return wlen;
  }

  #data(r: readonly Uint8Array[], w: readonly Uint8Array[], wlen: number): number {
    const rlen = streamLength(r);
    if (rlen < OP_DATA_REQ_SIZE) return ERR;
    const hdr = this.#hdr;
    gather(r, 0, hdr, 0, OP_DATA_REQ_SIZE); // private copy before validation (TOCTOU)
    const h = decodeOpHeader(hdr, 0, this.#opHeader);
    const opcode = h.opcode;
    let kind: number;
    // The op-specific fields are decoded here, once (src_data_len is also what the statistics count).
    switch (opcode) {
      case DATA.VIRTIO_CRYPTO_CIPHER_ENCRYPT:
      case DATA.VIRTIO_CRYPTO_CIPHER_DECRYPT:
        kind = SessionKind.CIPHER; // or CHAIN: alg_chain_data_flf starts with cipher_data_flf's fields
        this.#statOp = opcode === DATA.VIRTIO_CRYPTO_CIPHER_ENCRYPT ? STAT_OP.SYM_ENCRYPT : STAT_OP.SYM_DECRYPT;
        this.#statBytes = decodeCipherDataFlf(hdr, 0, this.#cipherFlf).srcDataLen;
        break;
      case DATA.VIRTIO_CRYPTO_HASH:
        kind = SessionKind.HASH;
        this.#statOp = STAT_OP.HASH;
        this.#statBytes = decodeHashDataFlf(hdr, 0, this.#hashFlf).srcDataLen;
        break;
      case DATA.VIRTIO_CRYPTO_MAC:
        kind = SessionKind.MAC;
        this.#statOp = STAT_OP.MAC;
        this.#statBytes = decodeHashDataFlf(hdr, 0, this.#hashFlf).srcDataLen; // virtio_crypto_mac_data_flf: same layout
        break;
      case DATA.VIRTIO_CRYPTO_AEAD_ENCRYPT:
      case DATA.VIRTIO_CRYPTO_AEAD_DECRYPT:
        kind = SessionKind.AEAD;
        this.#statOp = opcode === DATA.VIRTIO_CRYPTO_AEAD_ENCRYPT ? STAT_OP.AEAD_ENCRYPT : STAT_OP.AEAD_DECRYPT;
        this.#statBytes = decodeAeadDataFlf(hdr, 0, this.#aeadFlf).srcDataLen;
        break;
      default:
        return S.VIRTIO_CRYPTO_NOTSUPP; // akcipher, unknown opcodes
    }
    // NOTE: header.flag is ignored without VIRTIO_CRYPTO_F_REVISION_1 (§5.9.7.3); session mode only.
    const s = this.#sessions.get(h.sessionId);
    if (s === undefined) return S.VIRTIO_CRYPTO_INVSESS;
    // A session of another service cannot serve this opcode: treat its id as invalid here.
    if (kind === SessionKind.CIPHER) {
      if (s.kind !== SessionKind.CIPHER && s.kind !== SessionKind.CHAIN) return S.VIRTIO_CRYPTO_INVSESS;
    } else if (s.kind !== kind) {
      return S.VIRTIO_CRYPTO_INVSESS;
    }
    switch (s.kind) {
      case SessionKind.CIPHER:
        return this.#cipher(s, opcode === DATA.VIRTIO_CRYPTO_CIPHER_ENCRYPT, r, rlen, w, wlen);
      case SessionKind.CHAIN:
        return this.#chain(s, opcode === DATA.VIRTIO_CRYPTO_CIPHER_ENCRYPT, r, rlen, w, wlen);
      case SessionKind.AEAD:
        return this.#aead(s, opcode === DATA.VIRTIO_CRYPTO_AEAD_ENCRYPT, r, rlen, w, wlen);
      default:
        return this.#digest(s, r, rlen, w, wlen);
    }
  }

  /** §5.9.7.5 plain CIPHER: readable iv, src; writable dst, status. */
  #cipher(s: EngineSession, encrypt: boolean, r: readonly Uint8Array[], rlen: number, w: readonly Uint8Array[], wlen: number): number {
    // §5.9.7.5: virtio_crypto_sym_data_flf.op_type must describe this session's structures.
    if (decodeSymDataOpType(this.#hdr) !== VIRTIO_CRYPTO_SYM_OP.VIRTIO_CRYPTO_SYM_OP_CIPHER) return ERR;
    const { ivLen, srcDataLen: srcLen, dstDataLen: dstLen } = this.#cipherFlf; // decoded by #data
    // Output length == input length for these modes: a dst of any other size is malformed
    // (QEMU CVE-2023-3180 wrote src_len bytes into a dst_len buffer).
    if (dstLen !== srcLen) return ERR;
    // Sums of u32s in doubles: exact, cannot wrap (CVE-2017-5931). §5.9.5 max_size bound.
    if (ivLen + srcLen + dstLen > this.maxSize) return ERR;
    const st = cipherLengthStatus(s, ivLen, srcLen);
    if (st !== OK) return st;
    if (rlen < OP_DATA_REQ_SIZE + ivLen + srcLen) return ERR; // short readable part
    if (wlen < dstLen + 1) return ERR; // no room for dst + status
    const iv = s.ivLen === 0 ? null : readBytes(r, OP_DATA_REQ_SIZE, ivLen);
    const src = readBytes(r, OP_DATA_REQ_SIZE + ivLen, srcLen);
    // NOTE: the direction comes from the opcode (CIPHER_ENCRYPT / CIPHER_DECRYPT), so one session
    // serves both; QEMU's builtin back-end uses the session's `op`. Linux always sends matching
    // pairs (an encrypt session with CIPHER_ENCRYPT), where both rules agree.
    // Fully computed before dst is touched (src may alias dst).
    const { head, body } = runCipherPieces(s, encrypt, iv, src);
    if (head.length !== 0) scatter(w, 0, head, head.length);
    scatter(w, head.length, body, dstLen - head.length);
    return OK;
  }

  /**
   * §5.9.7.5 algorithm chaining: readable iv, src, aad; writable dst, hash_result, status.
   * dst = src with [cipher_start_src_offset, +len_to_cipher) ciphered; the hash covers
   * aad || src[hash_start_src_offset, +len_to_hash) taken from the input (HASH_THEN_CIPHER)
   * or from the output (CIPHER_THEN_HASH).
   */
  #chain(s: EngineSession, encrypt: boolean, r: readonly Uint8Array[], rlen: number, w: readonly Uint8Array[], wlen: number): number {
    const hdr = this.#hdr;
    if (decodeSymDataOpType(hdr) !== VIRTIO_CRYPTO_SYM_OP.VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING) return ERR;
    const {
      ivLen,
      srcDataLen: srcLen,
      dstDataLen: dstLen,
      cipherStartSrcOffset: cipherStart,
      lenToCipher,
      hashStartSrcOffset: hashStart,
      lenToHash,
      aadLen,
      hashResultLen,
    } = decodeAlgChainDataFlf(hdr, 0, this.#chainFlf);
    if (dstLen !== srcLen) return ERR; // as for plain cipher (CVE-2023-3180)
    if (cipherStart + lenToCipher > srcLen || hashStart + lenToHash > srcLen) return ERR; // doubles: no wrap
    if (hashResultLen === 0 || hashResultLen > s.digestLen) return ERR;
    if (ivLen + srcLen + aadLen + dstLen + hashResultLen > this.maxSize) return ERR;
    const st = cipherLengthStatus(s, ivLen, lenToCipher);
    if (st !== OK) return st;
    if (rlen < OP_DATA_REQ_SIZE + ivLen + srcLen + aadLen) return ERR;
    if (wlen < dstLen + hashResultLen + 1) return ERR;
    // DEVIATION: QEMU 7.2 (virtio_crypto_sym_op_helper) reads iv, aad, src; we follow the
    // spec's struct virtio_crypto_alg_chain_data_vlf order: iv, src, aad.
    const iv = s.ivLen === 0 ? null : readBytes(r, OP_DATA_REQ_SIZE, ivLen);
    const src = readBytes(r, OP_DATA_REQ_SIZE + ivLen, srcLen);
    // §5.9.7.5 device normative: check aad_len > 0 before parsing the AAD.
    const aad = aadLen > 0 ? readBytes(r, OP_DATA_REQ_SIZE + ivLen + srcLen, aadLen) : EMPTY;
    const out = Buffer.allocUnsafe(srcLen);
    out.set(src);
    const hashThenCipher = s.algChainOrder === VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER.VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER_HASH_THEN_CIPHER;
    const mac = hashThenCipher ? runDigest(s, aad, src.subarray(hashStart, hashStart + lenToHash)) : null;
    const ciphered = runCipher(s, encrypt, iv, src.subarray(cipherStart, cipherStart + lenToCipher));
    out.set(ciphered, cipherStart);
    const digest = mac ?? runDigest(s, aad, out.subarray(hashStart, hashStart + lenToHash));
    scatter(w, 0, out, dstLen);
    scatter(w, dstLen, digest.subarray(0, hashResultLen), hashResultLen);
    return OK;
  }

  /** §5.9.7.4 HASH / MAC: readable src; writable hash_result, status. */
  #digest(s: EngineSession, r: readonly Uint8Array[], rlen: number, w: readonly Uint8Array[], wlen: number): number {
    const { srcDataLen: srcLen, hashResultLen } = this.#hashFlf; // decoded by #data
    if (hashResultLen === 0 || hashResultLen > s.digestLen) return ERR; // a prefix of the digest at most
    if (srcLen + hashResultLen > this.maxSize) return ERR;
    if (rlen < OP_DATA_REQ_SIZE + srcLen) return ERR;
    if (wlen < hashResultLen + 1) return ERR;
    const d = runDigest(s, readBytes(r, OP_DATA_REQ_SIZE, srcLen), null);
    scatter(w, 0, d.subarray(0, hashResultLen), hashResultLen);
    return OK;
  }

  /**
   * §5.9.7.6 AEAD: readable iv, src, aad; writable dst, status.
   * Encrypt: dst = ciphertext || tag (dst_data_len >= src_data_len + tag_len).
   * Decrypt: src = ciphertext || tag, dst = plaintext (dst_data_len >= src_data_len - tag_len);
   * a tag that does not verify is BADMSG and nothing is written to dst.
   */
  #aead(s: EngineSession, encrypt: boolean, r: readonly Uint8Array[], rlen: number, w: readonly Uint8Array[], wlen: number): number {
    const { ivLen, aadLen, srcDataLen: srcLen, dstDataLen: dstLen, tagLen: tagLenReq } = this.#aeadFlf; // decoded by #data
    const tagLen = s.tagLen;
    // tag_len is a 1.2 addition; legacy drivers leave it 0 and the session's tag length applies.
    if (tagLenReq !== 0 && tagLenReq !== tagLen) return ERR;
    if (ivLen !== s.ivLen) return ERR;
    if (!encrypt && srcLen < tagLen) return ERR;
    const outLen = encrypt ? srcLen + tagLen : srcLen - tagLen;
    if (dstLen < outLen) return ERR; // §5.9.7.6: dst_data_len at least src_data_len + tag_len
    if (ivLen + srcLen + aadLen + dstLen > this.maxSize) return ERR;
    if (rlen < OP_DATA_REQ_SIZE + ivLen + srcLen + aadLen) return ERR;
    if (wlen < dstLen + 1) return ERR;
    const iv = readBytes(r, OP_DATA_REQ_SIZE, ivLen);
    const src = readBytes(r, OP_DATA_REQ_SIZE + ivLen, srcLen);
    const aad = readBytes(r, OP_DATA_REQ_SIZE + ivLen + srcLen, aadLen);
    let out: Buffer | null;
    if (encrypt) {
      out = runAeadEncrypt(s, iv, aad, src);
    } else {
      out = runAeadDecrypt(s, iv, aad, src.subarray(0, outLen), src.subarray(outLen));
      if (out === null) return S.VIRTIO_CRYPTO_BADMSG; // §5.9.7.6: verification failed
    }
    scatter(w, 0, out, outLen);
    return OK;
  }
}

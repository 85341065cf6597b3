/**
 * The virtio-crypto driver (VIRTIO 1.2 §5.9) with the cryptodev-style session API on top, written once
 * against `VirtioTransport`: it does not know whether the device is a worker thread or a vhost-user
 * back-end in another process.
 *
 *  - Initialization (§3.1.1): reset, ACKNOWLEDGE, DRIVER, features (VERSION_1 required; INDIRECT_DESC and
 *    EVENT_IDX taken when offered), FEATURES_OK re-read, config read and checked, queues (dataq 0..N-1,
 *    controlq N, §5.9.2), DRIVER_OK.
 *  - Requests: each one is ONE block of guest memory, device-readable part then device-writable part, so a
 *    chain is two descriptors (§2.6.4 message framing: the device must not assume a layout). Blocks come
 *    from `BufferArena`; when memory or descriptors run out, requests wait in FIFO order (backpressure)
 *    and are admitted as completions free space.
 *  - Batching: submissions made in the same tick are published together and each queue is kicked at
 *    most once per tick (and only when the device asks for it: EVENT_IDX / NO_NOTIFY). Completions are
 *    consumed in batches per interrupt.
 *  - Every status byte starts at VIRTIO_CRYPTO_ERR before submission (as Linux does), and device status
 *    is mapped to `CryptoError` in one function (`errorFromStatus`).
 *  - Handles own sessions; closing a handle rejects its pending requests (EBADF) and destroys its
 *    sessions; closing the device rejects everything pending and resets the device.
 */
import {
  CryptoError,
  type AeadRequest,
  type AeadResult,
  type ChainRequest,
  type ChainResult,
  type CipherAlgorithm,
  type CryptoDevice,
  type CryptoHandle,
  type CryptRequest,
  type CryptResult,
  type DeviceInfo,
  type HashAlgorithm,
  type Session,
  type SessionOptions,
} from './api.js';
import type { VirtioTransport } from './virtio-transport.js';
import {
  DIGEST_LENGTH,
  GCM_DEFAULT_TAG_LENGTH,
  GCM_IV_LENGTH,
  checkDataLength,
  cipherIvLength,
  nextIv,
  validateCryptRequest,
  validateSessionOptions,
} from './cryptodev-semantics.js';
import { BufferArena } from './buffer-arena.js';
import { SplitDriverQueue } from './split-driver-queue.js';
import {
  VIRTIO_CONFIG_S_ACKNOWLEDGE,
  VIRTIO_CONFIG_S_DRIVER,
  VIRTIO_CONFIG_S_DRIVER_OK,
  VIRTIO_CONFIG_S_FAILED,
  VIRTIO_CONFIG_S_FEATURES_OK,
  VIRTIO_F_VERSION_1,
  VIRTIO_RING_F_EVENT_IDX,
} from '../spec/virtio.js';
import {
  VIRTIO_CRYPTO_AEAD,
  VIRTIO_CRYPTO_CIPHER,
  VIRTIO_CRYPTO_CTRL_OPCODE,
  VIRTIO_CRYPTO_DATA_OPCODE,
  VIRTIO_CRYPTO_HASH,
  VIRTIO_CRYPTO_MAC,
  VIRTIO_CRYPTO_OP,
  VIRTIO_CRYPTO_SERVICE,
  VIRTIO_CRYPTO_STATUS,
  VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER,
  VIRTIO_CRYPTO_SYM_HASH_MODE,
  VIRTIO_CRYPTO_SYM_OP,
  VIRTIO_CRYPTO_S_HW_READY,
} from '../spec/virtio-crypto.js';
import {
  CREATE_SESSION_INPUT_SIZE,
  DATA_REQ_OFFSET as D,
  DESTROY_SESSION_INPUT_SIZE,
  OP_CTRL_REQ_SIZE,
  OP_DATA_REQ_SIZE,
  decodeConfig,
  decodeCreateSessionInput,
  encodeAeadCreateSessionReq,
  encodeAlgChainCreateSessionReq,
  encodeCipherCreateSessionReq,
  encodeDestroySessionReq,
  encodeHashCreateSessionReq,
  encodeMacCreateSessionReq,
  type VirtioCryptoConfig,
} from '../wire/virtio-crypto.js';

// ------------------------------------------------------------------------------------------------
// Status -> error: the one place (as Linux's virtio_crypto_skcipher_algs.c does in one switch).

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

const CIPHER_ALGO: Record<CipherAlgorithm, number> = {
  'aes-ecb': VIRTIO_CRYPTO_CIPHER.VIRTIO_CRYPTO_CIPHER_AES_ECB,
  'aes-cbc': VIRTIO_CRYPTO_CIPHER.VIRTIO_CRYPTO_CIPHER_AES_CBC,
  'aes-ctr': VIRTIO_CRYPTO_CIPHER.VIRTIO_CRYPTO_CIPHER_AES_CTR,
  'aes-xts': VIRTIO_CRYPTO_CIPHER.VIRTIO_CRYPTO_CIPHER_AES_XTS,
};
const HASH_ALGO: Record<HashAlgorithm, number> = {
  sha1: VIRTIO_CRYPTO_HASH.VIRTIO_CRYPTO_HASH_SHA1,
  sha224: VIRTIO_CRYPTO_HASH.VIRTIO_CRYPTO_HASH_SHA_224,
  sha256: VIRTIO_CRYPTO_HASH.VIRTIO_CRYPTO_HASH_SHA_256,
  sha384: VIRTIO_CRYPTO_HASH.VIRTIO_CRYPTO_HASH_SHA_384,
  sha512: VIRTIO_CRYPTO_HASH.VIRTIO_CRYPTO_HASH_SHA_512,
};
const MAC_ALGO: Record<HashAlgorithm, number> = {
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
function checkOffered(cfg: VirtioCryptoConfig, opts: SessionOptions): void {
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

// ------------------------------------------------------------------------------------------------
// Requests in guest memory

const enum State {
  Waiting,
  InFlight,
  /** Rejected while in flight (handle/device closed): free the block when the device completes it. */
  Abandoned,
  Done,
}

/** One request: a block of `readLen` device-readable bytes followed (16-aligned) by `writeLen` writable bytes. */
interface Request {
  readonly control: boolean;
  readonly readLen: number;
  readonly writeLen: number;
  /** The readable part holds key material: zero it when the request completes. */
  readonly secret: boolean;
  readonly owner: VirtioHandle | null;
  /** Writes the device-readable part at `off` and prepares the writable part at `woff`. */
  fill(mem: Uint8Array, off: number, woff: number, dv: DataView): void;
  /** While waiting: the request's bytes, captured at submission (zeroed once used or rejected). */
  staged: Uint8Array | null;
  /** Decodes the writable part; returns the result or throws a CryptoError. */
  finish(mem: Uint8Array, woff: number, usedLen: number): unknown;
  resolve(value: unknown): void;
  reject(error: unknown): void;
  state: State;
  block: number;
  blockLen: number;
}

/**
 * Writes the 72-byte dataq request header (§5.9.7.3 struct virtio_crypto_op_data_req, fixed-size
 * layout: op_header then op_flf padded to 48) straight into guest memory, fields at the offsets of
 * wire/virtio-crypto.ts. (The wire encoders return fresh buffers; this is the per-request hot path.)
 */
function writeDataHeader(mem: Uint8Array, dv: DataView, off: number, opcode: number, sessionId: bigint, fields: readonly (readonly [number, number])[]): void {
  mem.fill(0, off, off + OP_DATA_REQ_SIZE);
  dv.setUint32(off + D.opcode, opcode, true);
  dv.setBigUint64(off + D.sessionId, sessionId, true);
  for (const [at, v] of fields) dv.setUint32(off + at, v, true);
}

function align16(n: number): number {
  return (n + 15) & ~15;
}

/** Status byte of a data request: the last writable byte (struct virtio_crypto_inhdr, §5.9.7.3). */
function dataStatus(mem: Uint8Array, woff: number, writeLen: number): number {
  return mem[woff + writeLen - 1]!;
}

// ------------------------------------------------------------------------------------------------
// Sessions

type SessionState =
  | { kind: 'cipher'; cipher: CipherAlgorithm; enc: bigint; dec: bigint }
  | { kind: 'hash'; hash: HashAlgorithm; id: bigint }
  | { kind: 'mac'; hash: HashAlgorithm; id: bigint }
  | { kind: 'aead'; tagLength: number; enc: bigint; dec: bigint }
  | { kind: 'chain'; hash: 'sha1' | 'sha256'; op: 'encrypt' | 'decrypt'; id: bigint };

function destroyOpcode(kind: SessionState['kind']): number {
  switch (kind) {
    case 'cipher':
    case 'chain':
      return VIRTIO_CRYPTO_CTRL_OPCODE.VIRTIO_CRYPTO_CIPHER_DESTROY_SESSION;
    case 'hash':
      return VIRTIO_CRYPTO_CTRL_OPCODE.VIRTIO_CRYPTO_HASH_DESTROY_SESSION;
    case 'mac':
      return VIRTIO_CRYPTO_CTRL_OPCODE.VIRTIO_CRYPTO_MAC_DESTROY_SESSION;
    case 'aead':
      return VIRTIO_CRYPTO_CTRL_OPCODE.VIRTIO_CRYPTO_AEAD_DESTROY_SESSION;
  }
}

function deviceIds(s: SessionState): bigint[] {
  return 'id' in s ? [s.id] : [s.enc, s.dec];
}

// ------------------------------------------------------------------------------------------------

export interface VirtioCryptoDriverOptions {
  /** DeviceInfo.spec, e.g. 'virtio' or 'vhost-user:/run/vc.sock'. */
  spec: string;
  /** Queue size to ask for (capped by the device's maximum). Default 256. */
  queueSize?: number;
  /** Data queues to use (capped by max_dataqueues). Default: all the device offers, up to 31. */
  dataQueues?: number;
  /**
   * Called with true when the first request becomes outstanding and false when none is left: the
   * transport keeps the process alive meanwhile (an idle device must not).
   */
  onBusyChange?: (busy: boolean) => void;
}

const DEFAULT_QUEUE_SIZE = 256;
const RING_ALIGN = 4096;

export class VirtioCryptoDriver implements CryptoDevice {
  readonly info: DeviceInfo;
  readonly config: VirtioCryptoConfig;
  readonly negotiatedFeatures: bigint;
  readonly #transport: VirtioTransport;
  readonly #mem: Uint8Array;
  readonly #dv: DataView;
  /** Guest-physical address of memory byte 0, as an exact number (checked < 2^53 at init). */
  readonly #guestBase: number;
  readonly #queues: SplitDriverQueue<Request>[];
  readonly #dataQueues: number;
  readonly #arena: BufferArena;
  readonly #onBusy: ((busy: boolean) => void) | undefined;
  readonly #handles = new Set<VirtioHandle>();
  readonly #waiting: Request[] = [];
  #waitingHead = 0;
  #inFlight = 0;
  #busy = false;
  #nextQueue = 0;
  #dirty = 0;
  #flushScheduled = false;
  #failure: CryptoError | null = null;
  #closed = false;

  private constructor(init: {
    transport: VirtioTransport;
    info: DeviceInfo;
    config: VirtioCryptoConfig;
    features: bigint;
    queues: SplitDriverQueue<Request>[];
    dataQueues: number;
    arena: BufferArena;
    onBusy: ((busy: boolean) => void) | undefined;
  }) {
    this.#transport = init.transport;
    this.info = init.info;
    this.config = init.config;
    this.negotiatedFeatures = init.features;
    this.#mem = init.transport.memory.bytes;
    this.#dv = new DataView(this.#mem.buffer, this.#mem.byteOffset, this.#mem.byteLength);
    this.#guestBase = Number(init.transport.memory.guestPhysAddr);
    this.#queues = init.queues;
    this.#dataQueues = init.dataQueues;
    this.#arena = init.arena;
    this.#onBusy = init.onBusy;
  }

  /** Runs the VIRTIO 1.2 §3.1.1 initialization sequence over `transport`. */
  static async create(transport: VirtioTransport, opts: VirtioCryptoDriverOptions): Promise<VirtioCryptoDriver> {
    const t = transport;
    const failed = async (message: string, cause?: unknown): Promise<never> => {
      // §3.1.1 step 8 / §2.1.2: on an unrecoverable error the driver sets FAILED.
      await t.setStatus((await t.getStatus()) | VIRTIO_CONFIG_S_FAILED).catch(() => undefined);
      throw new CryptoError('EIO', `virtio-crypto init: ${message}`, { cause });
    };
    await t.setStatus(0); // 1. reset
    let status = VIRTIO_CONFIG_S_ACKNOWLEDGE; // 2. we noticed the device
    await t.setStatus(status);
    status |= VIRTIO_CONFIG_S_DRIVER; // 3. we know how to drive it
    await t.setStatus(status);
    // 4. features: VERSION_1 is mandatory (§6.1: a device without it is legacy, not supported here);
    // EVENT_IDX taken when offered. INDIRECT_DESC is not needed: every request is a 2-descriptor chain.
    const offered = await t.getDeviceFeatures();
    const bit = (n: number): bigint => 1n << BigInt(n);
    if ((offered & bit(VIRTIO_F_VERSION_1)) === 0n) return failed('the device does not offer VIRTIO_F_VERSION_1');
    const features = bit(VIRTIO_F_VERSION_1) | (offered & bit(VIRTIO_RING_F_EVENT_IDX));
    await t.setDriverFeatures(features);
    status |= VIRTIO_CONFIG_S_FEATURES_OK; // 5.
    await t.setStatus(status);
    // 6. re-read: the device clears FEATURES_OK if it does not accept our subset.
    if (((await t.getStatus()) & VIRTIO_CONFIG_S_FEATURES_OK) === 0) return failed('the device did not accept the features');
    // 7. device-specific setup: config (§5.9.5) and queues (§5.9.2).
    let config: VirtioCryptoConfig;
    try {
      config = decodeConfig(await t.readConfig());
    } catch (err) {
      return failed('unreadable config space', err);
    }
    // §5.9.5.2: the driver MUST NOT submit requests before VIRTIO_CRYPTO_S_HW_READY.
    if ((config.status & VIRTIO_CRYPTO_S_HW_READY) === 0) return failed('the device is not ready (VIRTIO_CRYPTO_S_HW_READY clear)');
    if (config.maxDataqueues < 1) return failed('max_dataqueues is 0');
    const dataQueues = Math.min(config.maxDataqueues, opts.dataQueues ?? 31, 31);
    const controlIndex = config.maxDataqueues; // §5.9.2: controlq is queue N
    const eventIdx = (features & bit(VIRTIO_RING_F_EVENT_IDX)) !== 0n;
    const mem = t.memory.bytes;
    if (t.memory.guestPhysAddr < 0n || t.memory.guestPhysAddr + BigInt(mem.byteLength) > BigInt(Number.MAX_SAFE_INTEGER)) {
      return failed('guest memory must lie below 2^53');
    }
    let offset = 0;
    const queues: SplitDriverQueue<Request>[] = [];
    for (let i = 0; i <= dataQueues; i++) {
      const index = i === dataQueues ? controlIndex : i;
      const max = await t.getQueueMaxSize(index);
      if (max === 0) return failed(`queue ${index} is not available`);
      let size = Math.min(opts.queueSize ?? DEFAULT_QUEUE_SIZE, max);
      size = 2 ** Math.floor(Math.log2(size)); // §2.7: a power of 2
      const layout = SplitDriverQueue.layout(size);
      offset = Math.ceil(offset / RING_ALIGN) * RING_ALIGN;
      if (offset + layout.totalBytes > mem.byteLength / 2) return failed('guest memory too small for the rings');
      const q = new SplitDriverQueue<Request>(mem, offset, size, eventIdx);
      const base = t.memory.guestPhysAddr + BigInt(offset);
      await t.setupQueue(index, {
        size,
        descAddr: base + BigInt(layout.descOffset),
        availAddr: base + BigInt(layout.availOffset),
        usedAddr: base + BigInt(layout.usedOffset),
      });
      queues[index === controlIndex ? dataQueues : i] = q;
      offset += layout.totalBytes;
    }
    const arenaBase = Math.ceil(offset / RING_ALIGN) * RING_ALIGN;
    const arena = new BufferArena(arenaBase, mem.byteLength - arenaBase);
    const info: DeviceInfo = Object.freeze({
      spec: opts.spec,
      description: `virtio-crypto (${t.description}, ${dataQueues} data queue${dataQueues === 1 ? '' : 's'})`,
      maxDataQueues: config.maxDataqueues,
      maxSize: dataLengthLimit(config.maxSize),
      maxCipherKeyLen: config.maxCipherKeyLen,
      maxAuthKeyLen: config.maxAuthKeyLen,
    });
    const driver = new VirtioCryptoDriver({ transport: t, info, config, features, queues, dataQueues, arena, onBusy: opts.onBusyChange });
    t.onInterrupt((index) => {
      if (index === controlIndex) driver.#onInterrupt(dataQueues);
      else if (index < dataQueues) driver.#onInterrupt(index); // a queue we did not set up has nothing for us
    });
    t.onFailure((err) => driver.#fail(new CryptoError('EIO', `device failed: ${err.message}`, { cause: err })));
    status |= VIRTIO_CONFIG_S_DRIVER_OK; // 8. live
    try {
      await t.setStatus(status);
    } catch (err) {
      return failed('DRIVER_OK refused', err);
    }
    return driver;
  }

  async open(): Promise<CryptoHandle> {
    this.#check();
    const h = new VirtioHandle(this);
    this.#handles.add(h);
    return h;
  }

  /** Rejects everything pending (EBADF), resets the device and releases the transport. Idempotent. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    for (const h of [...this.#handles]) h.markClosed();
    this.#handles.clear();
    this.#rejectAll(new CryptoError('EBADF', 'device is closed'));
    try {
      await this.#transport.setStatus(0); // §2.1: reset; the device stops using our memory
    } catch {
      // the device may already be gone; closing the transport below is what matters
    }
    this.#mem.fill(0); // request buffers held plaintext and keys
    this.#setBusy(false);
    await this.#transport.close();
  }

  // --- internal API used by handles -------------------------------------------------------------

  /** @internal */
  check(): void {
    this.#check();
  }

  #check(): void {
    if (this.#failure) throw this.#failure;
    if (this.#closed) throw new CryptoError('EBADF', 'device is closed');
  }

  /** @internal handle closed */
  forget(h: VirtioHandle): void {
    this.#handles.delete(h);
  }

  /** @internal Rejects the requests of `owner` (waiting ones are dropped; in-flight ones abandoned). */
  abandon(owner: VirtioHandle, error: CryptoError): void {
    for (let i = this.#waitingHead; i < this.#waiting.length; i++) {
      const r = this.#waiting[i]!;
      if (r.owner === owner && r.state === State.Waiting) {
        r.state = State.Done;
        r.staged?.fill(0);
        r.reject(error);
      }
    }
    for (const q of this.#queues) {
      q.forEachToken((r) => {
        if (r.owner === owner && r.state === State.InFlight) {
          r.state = State.Abandoned;
          r.reject(error);
        }
      });
    }
  }

  /** @internal Queues a request; the promise settles when the device completes it. */
  submit<T>(
    owner: VirtioHandle | null,
    control: boolean,
    readLen: number,
    writeLen: number,
    secret: boolean,
    fill: Request['fill'],
    finish: (mem: Uint8Array, woff: number, usedLen: number) => T,
  ): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.#failure) return reject(this.#failure);
      if (this.#closed) return reject(new CryptoError('EBADF', 'device is closed'));
      // §5.9.5: max_size bounds a data request's variable part (iv, src, aad, dst, hash_result);
      // reject what the device would refuse before sending it.
      if (!control && readLen - OP_DATA_REQ_SIZE + writeLen - 1 > this.config.maxSize) {
        return reject(new CryptoError('ENOSPC', `request of ${readLen - OP_DATA_REQ_SIZE + writeLen - 1} bytes exceeds the device's max_size ${this.config.maxSize}`));
      }
      const blockLen = align16(readLen) + writeLen;
      if (blockLen > this.#arena.maxBlock) {
        return reject(new CryptoError('ENOSPC', `request of ${blockLen} bytes does not fit the driver's guest memory (${this.#arena.maxBlock})`));
      }
      const r: Request = {
        control,
        readLen,
        writeLen,
        secret,
        owner,
        fill,
        finish,
        resolve: resolve as (v: unknown) => void,
        reject,
        state: State.Waiting,
        staged: null,
        block: -1,
        blockLen,
      };
      if (this.#waitingHead === this.#waiting.length) {
        if (!this.#start(r)) this.#wait(r);
      } else {
        // Others are waiting: keep FIFO order (and skip any of them rejected meanwhile).
        this.#wait(r);
        this.#admitWaiting();
      }
      this.#setBusy(true);
    });
  }

  // --- submission ---------------------------------------------------------------------------------

  /**
   * Queues `r` until memory and descriptors free up. Its bytes are captured now, as if it had been
   * submitted at once: the caller may reuse or zero its buffers as soon as the call returns.
   */
  #wait(r: Request): void {
    const staged = new Uint8Array(r.blockLen);
    const woff = align16(r.readLen);
    r.fill(staged, 0, woff, new DataView(staged.buffer));
    r.staged = staged;
    r.fill = (mem, off, w) => {
      mem.set(staged.subarray(0, r.readLen), off);
      mem.set(staged.subarray(woff, woff + r.writeLen), w);
      staged.fill(0); // may hold key material
      r.staged = null;
    };
    this.#waiting.push(r);
  }

  /** Places `r` in guest memory and on a queue; false if memory or descriptors are short (it waits). */
  #start(r: Request): boolean {
    let qi: number;
    if (r.control) {
      qi = this.#dataQueues;
      if (this.#queues[qi]!.freeCount < 2) return false;
    } else {
      // Spread over the data queues, round robin, skipping full ones.
      qi = -1;
      for (let n = 0; n < this.#dataQueues; n++) {
        const c = (this.#nextQueue + n) % this.#dataQueues;
        if (this.#queues[c]!.freeCount >= 2) {
          qi = c;
          break;
        }
      }
      if (qi < 0) return false;
      this.#nextQueue = (qi + 1) % this.#dataQueues;
    }
    const block = this.#arena.alloc(r.blockLen);
    if (block < 0) return false;
    const woff = block + align16(r.readLen);
    const mem = this.#mem;
    r.fill(mem, block, woff, this.#dv);
    r.block = block;
    r.state = State.InFlight;
    const addr = this.#guestBase + block;
    this.#queues[qi]!.addChain(addr, r.readLen, addr + (woff - block), r.writeLen, r);
    this.#inFlight++;
    this.#dirty |= 1 << qi;
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      queueMicrotask(this.#flush);
    }
    return true;
  }

  /** Publishes every queue touched this tick, and kicks those whose device asked for it (§2.7.13). */
  readonly #flush = (): void => {
    this.#flushScheduled = false;
    const dirty = this.#dirty;
    this.#dirty = 0;
    if (this.#closed || this.#failure) return;
    // The control queue first, so the device sees a new session before data that uses it.
    const order = [this.#dataQueues];
    for (let i = 0; i < this.#dataQueues; i++) order.push(i);
    const kicks: number[] = [];
    for (const i of order) {
      if ((dirty & (1 << i)) === 0) continue;
      if (this.#queues[i]!.publish()) kicks.push(i);
    }
    for (const i of kicks) this.#transport.notify(i === this.#dataQueues ? this.config.maxDataqueues : i);
  };

  #admitWaiting(): void {
    while (this.#waitingHead < this.#waiting.length) {
      const r = this.#waiting[this.#waitingHead]!;
      if (r.state !== State.Waiting) {
        this.#waitingHead++;
        continue;
      }
      if (!this.#start(r)) break;
      this.#waitingHead++;
    }
    if (this.#waitingHead === this.#waiting.length) {
      this.#waiting.length = 0;
      this.#waitingHead = 0;
    } else if (this.#waitingHead > 1024) {
      this.#waiting.splice(0, this.#waitingHead);
      this.#waitingHead = 0;
    }
  }

  #setBusy(busy: boolean): void {
    if (busy === this.#busy) return;
    this.#busy = busy;
    this.#onBusy?.(busy);
  }

  // --- completion ---------------------------------------------------------------------------------

  #onInterrupt(qi: number): void {
    const q = this.#queues[qi];
    if (!q || this.#closed) return;
    const mem = this.#mem;
    q.disableInterrupts();
    for (;;) {
      for (;;) {
        const used = q.getUsed();
        if (used === null) break;
        this.#complete(used.token, used.len, mem);
      }
      // §2.7.10: re-enable, then re-check, or a completion can slip by without an interrupt.
      if (!q.enableInterrupts()) break;
    }
    if (q.broken) {
      this.#fail(new CryptoError('EIO', `queue ${qi}: the device returned a used element that was not outstanding`));
      return;
    }
    this.#admitWaiting();
    if (this.#inFlight === 0 && this.#waitingHead === this.#waiting.length) this.#setBusy(false);
  }

  #complete(r: Request, usedLen: number, mem: Uint8Array): void {
    this.#inFlight--;
    const woff = r.block + align16(r.readLen);
    if (r.state === State.InFlight) {
      r.state = State.Done;
      try {
        r.resolve(r.finish(mem, woff, usedLen));
      } catch (err) {
        r.reject(err);
      }
    } else {
      r.state = State.Done;
    }
    if (r.secret) mem.fill(0, r.block, r.block + r.readLen);
    this.#arena.free(r.block, r.blockLen);
  }

  #rejectAll(error: CryptoError): void {
    for (let i = this.#waitingHead; i < this.#waiting.length; i++) {
      const r = this.#waiting[i]!;
      if (r.state === State.Waiting) {
        r.state = State.Done;
        r.staged?.fill(0);
        r.reject(error);
      }
    }
    this.#waiting.length = 0;
    this.#waitingHead = 0;
    for (const q of this.#queues) {
      q.forEachToken((r) => {
        if (r.state === State.InFlight) {
          r.state = State.Abandoned;
          r.reject(error);
        }
      });
    }
  }

  #fail(error: CryptoError): void {
    if (this.#failure || this.#closed) return;
    this.#failure = error;
    this.#rejectAll(error);
    this.#setBusy(false);
  }
}

// ------------------------------------------------------------------------------------------------
// The handle: cryptodev's open file

const REQ = OP_DATA_REQ_SIZE;

class VirtioHandle implements CryptoHandle {
  readonly device: DeviceInfo;
  readonly #driver: VirtioCryptoDriver;
  readonly #sessions = new Map<bigint, SessionState>();
  #closed = false;

  constructor(driver: VirtioCryptoDriver) {
    this.#driver = driver;
    this.device = driver.info;
  }

  /** The device closed under us. */
  markClosed(): void {
    this.#closed = true;
    this.#sessions.clear();
  }

  #live(): void {
    if (this.#closed) throw new CryptoError('EBADF', 'handle is closed');
    this.#driver.check();
  }

  #lookup(session: Session): SessionState {
    this.#live();
    const s = session && typeof session.id === 'bigint' ? this.#sessions.get(session.id) : undefined;
    if (!s) throw new CryptoError('ENOENT', `no session ${String(session?.id)} on this handle`);
    return s;
  }

  #kind<K extends SessionState['kind']>(session: Session, kind: K): Extract<SessionState, { kind: K }> {
    const s = this.#lookup(session);
    if (s.kind !== kind) throw new CryptoError('EINVAL', `session ${session.id} is a ${s.kind} session, not ${kind}`);
    return s as Extract<SessionState, { kind: K }>;
  }

  // --- control queue ------------------------------------------------------------------------------

  /** One CREATE_SESSION request: header + key material (vlf) readable, session_input writable. */
  #create(header: Uint8Array, keys: readonly Uint8Array[], what: string): Promise<bigint> {
    const keyLen = keys.reduce((n, k) => n + k.length, 0);
    return this.#driver.submit(
      this,
      true,
      OP_CTRL_REQ_SIZE + keyLen,
      CREATE_SESSION_INPUT_SIZE,
      keyLen > 0,
      (mem, off, woff) => {
        mem.set(header, off);
        let p = off + OP_CTRL_REQ_SIZE;
        for (const k of keys) {
          mem.set(k, p);
          p += k.length;
        }
        mem.fill(0, woff, woff + CREATE_SESSION_INPUT_SIZE);
        mem[woff + 8] = VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_ERR; // status starts at ERR
      },
      (mem, woff) => {
        const input = decodeCreateSessionInput(mem, woff);
        const err = errorFromStatus(input.status, what);
        if (err) throw err;
        return input.sessionId;
      },
    );
  }

  #destroy(kind: SessionState['kind'], id: bigint): Promise<void> {
    const header = encodeDestroySessionReq(destroyOpcode(kind), id);
    return this.#driver.submit(
      null, // not owned: a closing handle still destroys its sessions
      true,
      OP_CTRL_REQ_SIZE,
      DESTROY_SESSION_INPUT_SIZE,
      false,
      (mem, off, woff) => {
        mem.set(header, off);
        mem[woff] = VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_ERR;
      },
      (mem, woff) => {
        const err = errorFromStatus(mem[woff]!, `destroy session ${id}`);
        if (err) throw err;
      },
    );
  }

  /** Creates one device session per direction; if one fails the other is destroyed. */
  async #pair(make: (op: number) => Promise<bigint>): Promise<{ enc: bigint; dec: bigint }> {
    const [enc, dec] = await Promise.allSettled([make(VIRTIO_CRYPTO_OP.VIRTIO_CRYPTO_OP_ENCRYPT), make(VIRTIO_CRYPTO_OP.VIRTIO_CRYPTO_OP_DECRYPT)]);
    if (enc.status === 'fulfilled' && dec.status === 'fulfilled') return { enc: enc.value, dec: dec.value };
    const firstError = enc.status === 'rejected' ? enc.reason : (dec as PromiseRejectedResult).reason;
    if (enc.status === 'fulfilled') await this.#destroy('cipher', enc.value).catch(() => undefined);
    if (dec.status === 'fulfilled') await this.#destroy('cipher', dec.value).catch(() => undefined);
    throw firstError;
  }

  async createSession(opts: SessionOptions): Promise<Session> {
    this.#live();
    if (!opts || typeof opts !== 'object') throw new CryptoError('EINVAL', 'session options required');
    validateSessionOptions(opts, this.device);
    checkOffered(this.#driver.config, opts);
    let state: SessionState;
    switch (opts.kind) {
      case 'cipher': {
        const algo = CIPHER_ALGO[opts.cipher];
        const key = opts.key;
        const ids = await this.#pair((op) => this.#create(encodeCipherCreateSessionReq({ algo, keyLen: key.length, op }), [key], `create ${opts.cipher} session`));
        state = { kind: 'cipher', cipher: opts.cipher, ...ids };
        break;
      }
      case 'hash': {
        const hdr = encodeHashCreateSessionReq({ algo: HASH_ALGO[opts.hash], hashResultLen: DIGEST_LENGTH[opts.hash] });
        state = { kind: 'hash', hash: opts.hash, id: await this.#create(hdr, [], `create ${opts.hash} session`) };
        break;
      }
      case 'mac': {
        const hdr = encodeMacCreateSessionReq({ algo: MAC_ALGO[opts.hash], hashResultLen: DIGEST_LENGTH[opts.hash], authKeyLen: opts.key.length });
        state = { kind: 'mac', hash: opts.hash, id: await this.#create(hdr, [opts.key], `create hmac-${opts.hash} session`) };
        break;
      }
      case 'aead': {
        const tagLength = opts.tagLength ?? GCM_DEFAULT_TAG_LENGTH;
        const key = opts.key;
        const algo = VIRTIO_CRYPTO_AEAD.VIRTIO_CRYPTO_AEAD_GCM;
        const ids = await this.#pair((op) =>
          this.#create(encodeAeadCreateSessionReq({ algo, keyLen: key.length, tagLen: tagLength, aadLen: 0, op }), [key], 'create aes-gcm session'),
        );
        state = { kind: 'aead', tagLength, ...ids };
        break;
      }
      case 'chain': {
        const hdr = encodeAlgChainCreateSessionReq({
          algChainOrder:
            opts.order === 'cipher-then-hash'
              ? VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER.VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER_CIPHER_THEN_HASH
              : VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER.VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER_HASH_THEN_CIPHER,
          hashMode: VIRTIO_CRYPTO_SYM_HASH_MODE.VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH,
          cipher: {
            algo: CIPHER_ALGO['aes-cbc'],
            keyLen: opts.key.length,
            op: opts.op === 'encrypt' ? VIRTIO_CRYPTO_OP.VIRTIO_CRYPTO_OP_ENCRYPT : VIRTIO_CRYPTO_OP.VIRTIO_CRYPTO_OP_DECRYPT,
          },
          hashAlgo: MAC_ALGO[opts.hash],
          hashResultLen: DIGEST_LENGTH[opts.hash],
          authKeyLen: opts.macKey.length,
          aadLen: 0,
        });
        state = { kind: 'chain', hash: opts.hash, op: opts.op, id: await this.#create(hdr, [opts.key, opts.macKey], 'create chained session') };
        break;
      }
      default:
        throw new CryptoError('ENOTSUP', `unsupported session kind '${String((opts as { kind: unknown }).kind)}'`);
    }
    const id = deviceIds(state)[0]!;
    if (this.#closed) {
      // The handle closed while the session was being created: do not leak it on the device.
      await Promise.all(deviceIds(state).map((d) => this.#destroy(state.kind, d).catch(() => undefined)));
      throw new CryptoError('EBADF', 'handle is closed');
    }
    this.#sessions.set(id, state);
    return Object.freeze({ id, options: Object.freeze({ kind: opts.kind }) });
  }

  async closeSession(session: Session): Promise<void> {
    const s = this.#lookup(session);
    this.#sessions.delete(session.id);
    const results = await Promise.allSettled(deviceIds(s).map((d) => this.#destroy(s.kind, d)));
    for (const r of results) if (r.status === 'rejected') throw r.reason;
  }

  // --- data queues --------------------------------------------------------------------------------

  async crypt(session: Session, req: CryptRequest): Promise<CryptResult> {
    const s = this.#kind(session, 'cipher');
    if (!req || typeof req !== 'object') throw new CryptoError('EINVAL', 'request required');
    validateCryptRequest(s.cipher, req, this.device);
    const src = req.src;
    const n = src.length;
    if (n === 0) {
      const dst = new Uint8Array(0);
      return req.writeIv ? { dst, iv: nextIv(s.cipher, req.op, req.iv, src, dst) } : { dst };
    }
    const ivLen = cipherIvLength(s.cipher);
    const iv = ivLen > 0 ? (req.iv as Uint8Array) : undefined;
    const encrypt = req.op === 'encrypt';
    const opcode = encrypt ? VIRTIO_CRYPTO_DATA_OPCODE.VIRTIO_CRYPTO_CIPHER_ENCRYPT : VIRTIO_CRYPTO_DATA_OPCODE.VIRTIO_CRYPTO_CIPHER_DECRYPT;
    const sessionId = encrypt ? s.enc : s.dec;
    const dst = await this.#driver.submit(
      this,
      false,
      REQ + ivLen + n, // §5.9.7.5 readable: header, iv, src
      n + 1, //           writable: dst, status
      false,
      (mem, off, woff, dv) => {
        writeDataHeader(mem, dv, off, opcode, sessionId, [
          [D.ivLen, ivLen],
          [D.srcDataLen, n],
          [D.dstDataLen, n],
          [D.symOpType, VIRTIO_CRYPTO_SYM_OP.VIRTIO_CRYPTO_SYM_OP_CIPHER],
        ]);
        if (iv) mem.set(iv, off + REQ);
        mem.set(src, off + REQ + ivLen);
        mem[woff + n] = VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_ERR;
      },
      (mem, woff) => {
        const err = errorFromStatus(dataStatus(mem, woff, n + 1), s.cipher);
        if (err) throw err;
        return mem.slice(woff, woff + n);
      },
    );
    return req.writeIv ? { dst, iv: nextIv(s.cipher, req.op, req.iv, src, dst) } : { dst };
  }

  async aead(session: Session, req: AeadRequest): Promise<AeadResult> {
    const s = this.#kind(session, 'aead');
    if (!req || typeof req !== 'object') throw new CryptoError('EINVAL', 'request required');
    if (req.op !== 'encrypt' && req.op !== 'decrypt') throw new CryptoError('EINVAL', `bad op '${String(req.op)}'`);
    if (!(req.src instanceof Uint8Array)) throw new CryptoError('EINVAL', 'src must be a Uint8Array');
    if (!(req.iv instanceof Uint8Array) || req.iv.length !== GCM_IV_LENGTH) throw new CryptoError('EINVAL', `aes-gcm needs a ${GCM_IV_LENGTH}-byte IV`);
    const aad = req.aad ?? new Uint8Array(0);
    if (!(aad instanceof Uint8Array)) throw new CryptoError('EINVAL', 'aad must be a Uint8Array');
    checkDataLength(req.src.length + aad.length, this.device);
    const tagLen = s.tagLength;
    const encrypt = req.op === 'encrypt';
    if (!encrypt && (!(req.tag instanceof Uint8Array) || req.tag.length !== tagLen)) {
      throw new CryptoError('EINVAL', `aes-gcm decrypt needs the ${tagLen}-byte tag`);
    }
    const iv = req.iv;
    const src = req.src;
    const tag = req.tag;
    // Encrypt: src = plaintext, dst = ciphertext || tag. Decrypt: src = ciphertext || tag, dst = plaintext.
    const srcLen = encrypt ? src.length : src.length + tagLen;
    const dstLen = encrypt ? src.length + tagLen : src.length;
    const opcode = encrypt ? VIRTIO_CRYPTO_DATA_OPCODE.VIRTIO_CRYPTO_AEAD_ENCRYPT : VIRTIO_CRYPTO_DATA_OPCODE.VIRTIO_CRYPTO_AEAD_DECRYPT;
    const sessionId = encrypt ? s.enc : s.dec;
    const out = await this.#driver.submit(
      this,
      false,
      REQ + GCM_IV_LENGTH + srcLen + aad.length, // §5.9.7.6 readable: header, iv, src, aad
      dstLen + 1, //                                 writable: dst, status
      false,
      (mem, off, woff, dv) => {
        writeDataHeader(mem, dv, off, opcode, sessionId, [
          [D.aeadIvLen, GCM_IV_LENGTH],
          [D.aeadAadLen, aad.length],
          [D.aeadSrcDataLen, srcLen],
          [D.aeadDstDataLen, dstLen],
          [D.aeadTagLen, tagLen],
        ]);
        let p = off + REQ;
        mem.set(iv, p);
        p += GCM_IV_LENGTH;
        mem.set(src, p);
        p += src.length;
        if (!encrypt) {
          mem.set(tag!, p);
          p += tagLen;
        }
        mem.set(aad, p);
        mem[woff + dstLen] = VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_ERR;
      },
      (mem, woff) => {
        const err = errorFromStatus(dataStatus(mem, woff, dstLen + 1), 'aes-gcm');
        if (err) {
          mem.fill(0, woff, woff + dstLen); // never leave unauthenticated plaintext around
          throw err;
        }
        return mem.slice(woff, woff + dstLen);
      },
    );
    if (!encrypt) return { dst: out };
    return { dst: out.subarray(0, src.length), tag: out.slice(src.length) };
  }

  async digest(session: Session, data: Uint8Array): Promise<Uint8Array> {
    const s = this.#lookup(session);
    if (s.kind !== 'hash' && s.kind !== 'mac') throw new CryptoError('EINVAL', `session ${session.id} is a ${s.kind} session, not hash or mac`);
    if (!(data instanceof Uint8Array)) throw new CryptoError('EINVAL', 'data must be a Uint8Array');
    checkDataLength(data.length, this.device);
    const resultLen = DIGEST_LENGTH[s.hash];
    const opcode = s.kind === 'hash' ? VIRTIO_CRYPTO_DATA_OPCODE.VIRTIO_CRYPTO_HASH : VIRTIO_CRYPTO_DATA_OPCODE.VIRTIO_CRYPTO_MAC;
    return this.#driver.submit(
      this,
      false,
      REQ + data.length, // §5.9.7.4 readable: header, src
      resultLen + 1, //     writable: hash_result, status
      false,
      (mem, off, woff, dv) => {
        writeDataHeader(mem, dv, off, opcode, s.id, [
          [D.hashSrcDataLen, data.length],
          [D.hashResultLen, resultLen],
        ]);
        mem.set(data, off + REQ);
        mem[woff + resultLen] = VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_ERR;
      },
      (mem, woff) => {
        const err = errorFromStatus(dataStatus(mem, woff, resultLen + 1), s.kind === 'hash' ? s.hash : `hmac-${s.hash}`);
        if (err) throw err;
        return mem.slice(woff, woff + resultLen);
      },
    );
  }

  async chain(session: Session, req: ChainRequest): Promise<ChainResult> {
    const s = this.#kind(session, 'chain');
    if (!req || typeof req !== 'object') throw new CryptoError('EINVAL', 'request required');
    validateCryptRequest('aes-cbc', { op: s.op, src: req.src, iv: req.iv }, this.device);
    const macLen = DIGEST_LENGTH[s.hash];
    if (s.op === 'decrypt' && (!(req.mac instanceof Uint8Array) || req.mac.length !== macLen)) {
      throw new CryptoError('EINVAL', `chained decrypt needs the ${macLen}-byte MAC`);
    }
    const src = req.src;
    const iv = req.iv;
    const n = src.length;
    const opcode = s.op === 'encrypt' ? VIRTIO_CRYPTO_DATA_OPCODE.VIRTIO_CRYPTO_CIPHER_ENCRYPT : VIRTIO_CRYPTO_DATA_OPCODE.VIRTIO_CRYPTO_CIPHER_DECRYPT;
    const out = await this.#driver.submit(
      this,
      false,
      REQ + 16 + n, //     §5.9.7.5 readable: header, iv, src (aad empty)
      n + macLen + 1, //   writable: dst, hash_result, status
      false,
      (mem, off, woff, dv) => {
        // The whole of src is ciphered and hashed (offsets 0, lengths n); no AAD.
        writeDataHeader(mem, dv, off, opcode, s.id, [
          [D.ivLen, 16],
          [D.srcDataLen, n],
          [D.dstDataLen, n],
          [D.lenToCipher, n],
          [D.lenToHash, n],
          [D.chainHashResultLen, macLen],
          [D.symOpType, VIRTIO_CRYPTO_SYM_OP.VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING],
        ]);
        mem.set(iv, off + REQ);
        mem.set(src, off + REQ + 16);
        mem[woff + n + macLen] = VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_ERR;
      },
      (mem, woff) => {
        const err = errorFromStatus(dataStatus(mem, woff, n + macLen + 1), 'chained aes-cbc/hmac');
        if (err) throw err;
        return mem.slice(woff, woff + n + macLen);
      },
    );
    const dst = out.subarray(0, n);
    const mac = out.subarray(n);
    if (s.op === 'encrypt') return { dst, mac: mac.slice() };
    // The device computed the MAC; the caller's expected one is checked here, in constant time.
    let diff = 0;
    for (let i = 0; i < macLen; i++) diff |= mac[i]! ^ req.mac![i]!;
    if (diff !== 0) {
      out.fill(0);
      throw new CryptoError('EBADMSG', 'MAC mismatch');
    }
    return { dst };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const error = new CryptoError('EBADF', 'handle is closed');
    this.#driver.abandon(this, error);
    this.#driver.forget(this);
    const sessions = [...this.#sessions.values()];
    this.#sessions.clear();
    // Best effort: the device may be closed or failed; its reset frees the sessions then.
    await Promise.allSettled(sessions.flatMap((s) => deviceIds(s).map((d) => this.#destroy(s.kind, d))));
  }
}

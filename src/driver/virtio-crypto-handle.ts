/**
 * A handle on the virtio-crypto driver: cryptodev's open file. Builds each request in guest memory
 * (§5.9.7.2 controlq session requests, §5.9.7.4-6 dataq requests) and decodes its result; the driver
 * (virtio-crypto-driver.ts) places it on a queue and completes it. Sessions belong to the handle that
 * created them; a cipher or AEAD session is a pair of device sessions (virtio-crypto fixes the direction
 * at session creation, cryptodev does not).
 */
import {
  CryptoError,
  type AeadRequest,
  type AeadResult,
  type ChainRequest,
  type ChainResult,
  type CipherAlgorithm,
  type CryptoHandle,
  type CryptRequest,
  type CryptResult,
  type DeviceInfo,
  type HashAlgorithm,
  type Session,
  type SessionOptions,
} from './api.js';
import {
  DIGEST_LENGTH,
  GCM_DEFAULT_TAG_LENGTH,
  GCM_IV_LENGTH,
  checkDataLength,
  cipherIvLength,
  deliverCrypt,
  nextIv,
  validateCryptRequest,
  validateSessionOptions,
} from './cryptodev-semantics.js';
import type { VirtioCryptoDriver } from './virtio-crypto-driver.js';
import { CIPHER_ALGO, HASH_ALGO, MAC_ALGO, checkOffered, errorFromStatus } from './virtio-crypto-mapping.js';
import {
  VIRTIO_CRYPTO_AEAD,
  VIRTIO_CRYPTO_CTRL_OPCODE,
  VIRTIO_CRYPTO_DATA_OPCODE,
  VIRTIO_CRYPTO_OP,
  VIRTIO_CRYPTO_STATUS,
  VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER,
  VIRTIO_CRYPTO_SYM_HASH_MODE,
} from '../spec/virtio-crypto.js';
import {
  CREATE_SESSION_INPUT_SIZE,
  DESTROY_SESSION_INPUT_SIZE,
  INHDR_SIZE,
  OP_CTRL_REQ_SIZE,
  OP_DATA_REQ_SIZE,
  decodeCreateSessionInput,
  decodeDestroySessionInput,
  decodeInhdr,
  encodeAeadCreateSessionReq,
  encodeAeadDataReq,
  encodeAlgChainCreateSessionReq,
  encodeAlgChainDataReq,
  encodeCipherCreateSessionReq,
  encodeCipherDataReq,
  encodeCreateSessionInput,
  encodeDestroySessionInput,
  encodeDestroySessionReq,
  encodeHashCreateSessionReq,
  encodeHashDataReq,
  encodeInhdr,
  encodeMacCreateSessionReq,
} from '../wire/virtio-crypto.js';

// Every request is encoded by the wire codecs (wire/virtio-crypto.ts) straight into guest memory:
// the device decodes it with the same codecs. The 72-byte dataq header (§5.9.7.3 struct
// virtio_crypto_op_data_req) is written in place, without allocating (the per-request hot path).

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

const REQ = OP_DATA_REQ_SIZE;
/** Chained sessions are AES-CBC: a 16-byte IV. */
const CBC_IV_LENGTH = cipherIvLength('aes-cbc');

export class VirtioHandle implements CryptoHandle {
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
        encodeCreateSessionInput({ sessionId: 0n, status: VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_ERR }, mem, woff); // status starts at ERR
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
        encodeDestroySessionInput(VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_ERR, mem, woff);
      },
      (mem, woff) => {
        const err = errorFromStatus(decodeDestroySessionInput(mem, woff), `destroy session ${id}`);
        if (err) throw err;
      },
    );
  }

  /** Creates one device session per direction; if one fails the other is destroyed. */
  async #pair(kind: 'cipher' | 'aead', make: (op: number) => Promise<bigint>): Promise<{ enc: bigint; dec: bigint }> {
    const [enc, dec] = await Promise.allSettled([make(VIRTIO_CRYPTO_OP.VIRTIO_CRYPTO_OP_ENCRYPT), make(VIRTIO_CRYPTO_OP.VIRTIO_CRYPTO_OP_DECRYPT)]);
    if (enc.status === 'fulfilled' && dec.status === 'fulfilled') return { enc: enc.value, dec: dec.value };
    const firstError = enc.status === 'rejected' ? enc.reason : (dec as PromiseRejectedResult).reason;
    if (enc.status === 'fulfilled') await this.#destroy(kind, enc.value).catch(() => undefined);
    if (dec.status === 'fulfilled') await this.#destroy(kind, dec.value).catch(() => undefined);
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
        const ids = await this.#pair('cipher', (op) => this.#create(encodeCipherCreateSessionReq({ algo, keyLen: key.length, op }), [key], `create ${opts.cipher} session`));
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
        const ids = await this.#pair('aead', (op) =>
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
      const dst = req.dst ?? new Uint8Array(0);
      return req.writeIv ? { dst, iv: nextIv(s.cipher, req.op, req.iv, src, dst) } : { dst };
    }
    const ivLen = cipherIvLength(s.cipher);
    const iv = ivLen > 0 ? (req.iv as Uint8Array) : undefined;
    const encrypt = req.op === 'encrypt';
    const opcode = encrypt ? VIRTIO_CRYPTO_DATA_OPCODE.VIRTIO_CRYPTO_CIPHER_ENCRYPT : VIRTIO_CRYPTO_DATA_OPCODE.VIRTIO_CRYPTO_CIPHER_DECRYPT;
    const sessionId = encrypt ? s.enc : s.dec;
    return this.#driver.submit(
      this,
      false,
      REQ + ivLen + n, // §5.9.7.5 readable: header, iv, src
      n + INHDR_SIZE, //  writable: dst, status
      false,
      (mem, off, woff) => {
        encodeCipherDataReq(opcode, sessionId, { ivLen, srcDataLen: n, dstDataLen: n }, undefined, mem, off);
        if (iv) mem.set(iv, off + REQ);
        mem.set(src, off + REQ + ivLen);
        encodeInhdr(VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_ERR, mem, woff, n + INHDR_SIZE);
      },
      (mem, woff) => {
        const err = errorFromStatus(decodeInhdr(mem, woff, n + INHDR_SIZE), s.cipher);
        if (err) throw err;
        // Straight from guest memory into the caller's dst when given (no array allocated), else a copy.
        return deliverCrypt(s.cipher, req, mem.subarray(woff, woff + n), (out) => out.slice());
      },
    );
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
      dstLen + INHDR_SIZE, //                        writable: dst, status
      false,
      (mem, off, woff) => {
        encodeAeadDataReq(opcode, sessionId, { ivLen: GCM_IV_LENGTH, aadLen: aad.length, srcDataLen: srcLen, dstDataLen: dstLen, tagLen }, undefined, mem, off);
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
        encodeInhdr(VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_ERR, mem, woff, dstLen + INHDR_SIZE);
      },
      (mem, woff) => {
        const err = errorFromStatus(decodeInhdr(mem, woff, dstLen + INHDR_SIZE), 'aes-gcm');
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
      resultLen + INHDR_SIZE, // writable: hash_result, status
      false,
      (mem, off, woff) => {
        // virtio_crypto_mac_data_flf has hash_data_flf's layout.
        encodeHashDataReq(opcode, s.id, { srcDataLen: data.length, hashResultLen: resultLen }, undefined, mem, off);
        mem.set(data, off + REQ);
        encodeInhdr(VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_ERR, mem, woff, resultLen + INHDR_SIZE);
      },
      (mem, woff) => {
        const err = errorFromStatus(decodeInhdr(mem, woff, resultLen + INHDR_SIZE), s.kind === 'hash' ? s.hash : `hmac-${s.hash}`);
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
      REQ + CBC_IV_LENGTH + n, // §5.9.7.5 readable: header, iv, src (aad empty)
      n + macLen + INHDR_SIZE, // writable: dst, hash_result, status
      false,
      (mem, off, woff) => {
        // The whole of src is ciphered and hashed (offsets 0, lengths n); no AAD.
        const flf = { ivLen: CBC_IV_LENGTH, srcDataLen: n, dstDataLen: n, cipherStartSrcOffset: 0, lenToCipher: n, hashStartSrcOffset: 0, lenToHash: n, aadLen: 0, hashResultLen: macLen };
        encodeAlgChainDataReq(opcode, s.id, flf, undefined, mem, off);
        mem.set(iv, off + REQ);
        mem.set(src, off + REQ + CBC_IV_LENGTH);
        encodeInhdr(VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_ERR, mem, woff, n + macLen + INHDR_SIZE);
      },
      (mem, woff) => {
        const err = errorFromStatus(decodeInhdr(mem, woff, n + macLen + INHDR_SIZE), 'chained aes-cbc/hmac');
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

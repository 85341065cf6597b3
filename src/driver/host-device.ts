/**
 * `--device host`: the session API straight onto node:crypto, no virtio. The baseline every benchmark
 * compares against, and the reference the virtio back-ends must agree with: argument checks, error codes
 * and writeIv come from cryptodev-semantics.ts, shared with the virtio driver.
 *
 * Sessions belong to the handle that created them (another handle's session → ENOENT); closing a handle
 * closes its sessions; keys are copied at createSession and zeroed when the session closes.
 */
import { createCipheriv, createDecipheriv, createHash, createHmac, timingSafeEqual, type CipherGCMTypes } from 'node:crypto';
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
import {
  DIGEST_LENGTH,
  GCM_DEFAULT_TAG_LENGTH,
  GCM_IV_LENGTH,
  chainHashCoversSource,
  checkDataLength,
  deliverCrypt,
  validateCryptRequest,
  validateSessionOptions,
  zeroize,
} from './cryptodev-semantics.js';

/** What `host` reports: everything node:crypto can do, within the virtio-crypto u32 length fields. */
export const HOST_DEVICE_INFO: DeviceInfo = Object.freeze({
  spec: 'host',
  description: 'host (node:crypto, no virtualization)',
  maxDataQueues: 1,
  maxSize: 0xffff_ffffn,
  maxCipherKeyLen: 64,
  maxAuthKeyLen: 1024,
});

type HostSession =
  | { kind: 'cipher'; cipher: CipherAlgorithm; key: Buffer }
  | { kind: 'hash'; hash: HashAlgorithm }
  | { kind: 'mac'; hash: HashAlgorithm; key: Buffer }
  | { kind: 'aead'; key: Buffer; tagLength: number }
  | {
      kind: 'chain';
      key: Buffer;
      hash: 'sha1' | 'sha256';
      macKey: Buffer;
      order: 'cipher-then-hash' | 'hash-then-cipher';
      op: 'encrypt' | 'decrypt';
    };

/** OpenSSL cipher name for an AES mode and key length. */
function opensslCipherName(cipher: CipherAlgorithm, keyLen: number): string {
  if (cipher === 'aes-xts') return `aes-${keyLen * 4}-xts`;
  return `aes-${keyLen * 8}-${cipher.slice(4)}`;
}

function runCipher(name: string, op: 'encrypt' | 'decrypt', key: Uint8Array, iv: Uint8Array | null, src: Uint8Array): Buffer {
  const c = op === 'encrypt' ? createCipheriv(name, key, iv) : createDecipheriv(name, key, iv);
  c.setAutoPadding(false);
  const out = c.update(src);
  const tail = c.final(); // empty without padding; concat only if OpenSSL ever held bytes back
  return tail.length === 0 ? out : Buffer.concat([out, tail]);
}

function copyKey(key: Uint8Array): Buffer {
  return Buffer.from(key); // a private copy; the caller may reuse or zero theirs
}

function wipeSession(s: HostSession): void {
  if ('key' in s) zeroize(s.key);
  if (s.kind === 'chain') zeroize(s.macKey);
}

let nextSessionId = 1n;

class HostHandle implements CryptoHandle {
  readonly device: DeviceInfo;
  private readonly sessions = new Map<bigint, HostSession>();
  private closed = false;

  constructor(info: DeviceInfo, private readonly onClose: (h: HostHandle) => void) {
    this.device = info;
  }

  private live(): void {
    if (this.closed) throw new CryptoError('EBADF', 'handle is closed');
  }

  private lookup<K extends HostSession['kind']>(session: Session, kind: K): Extract<HostSession, { kind: K }> {
    this.live();
    const s = session && typeof session.id === 'bigint' ? this.sessions.get(session.id) : undefined;
    if (!s) throw new CryptoError('ENOENT', `no session ${String(session?.id)} on this handle`);
    if (s.kind !== kind) throw new CryptoError('EINVAL', `session ${session.id} is a ${s.kind} session, not ${kind}`);
    return s as Extract<HostSession, { kind: K }>;
  }

  async createSession(opts: SessionOptions): Promise<Session> {
    this.live();
    if (!opts || typeof opts !== 'object') throw new CryptoError('EINVAL', 'session options required');
    validateSessionOptions(opts, this.device);
    let s: HostSession;
    switch (opts.kind) {
      case 'cipher':
        s = { kind: 'cipher', cipher: opts.cipher, key: copyKey(opts.key) };
        break;
      case 'hash':
        s = { kind: 'hash', hash: opts.hash };
        break;
      case 'mac':
        s = { kind: 'mac', hash: opts.hash, key: copyKey(opts.key) };
        break;
      case 'aead':
        s = { kind: 'aead', key: copyKey(opts.key), tagLength: opts.tagLength ?? GCM_DEFAULT_TAG_LENGTH };
        break;
      case 'chain':
        s = { kind: 'chain', key: copyKey(opts.key), hash: opts.hash, macKey: copyKey(opts.macKey), order: opts.order, op: opts.op };
        break;
    }
    const id = nextSessionId++;
    this.sessions.set(id, s);
    return Object.freeze({ id, options: Object.freeze({ kind: opts.kind }) });
  }

  async closeSession(session: Session): Promise<void> {
    this.live();
    const s = session && typeof session.id === 'bigint' ? this.sessions.get(session.id) : undefined;
    if (!s) throw new CryptoError('ENOENT', `no session ${String(session?.id)} on this handle`);
    this.sessions.delete(session.id);
    wipeSession(s);
  }

  async crypt(session: Session, req: CryptRequest): Promise<CryptResult> {
    const s = this.lookup(session, 'cipher');
    if (!req || typeof req !== 'object') throw new CryptoError('EINVAL', 'request required');
    validateCryptRequest(s.cipher, req, this.device);
    const iv = s.cipher === 'aes-ecb' ? null : (req.iv as Uint8Array);
    const dst = req.src.length === 0 ? Buffer.alloc(0) : runCipher(opensslCipherName(s.cipher, s.key.length), req.op, s.key, iv, req.src);
    const result = deliverCrypt(s.cipher, req, new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength));
    if (req.dst !== undefined) dst.fill(0); // copied into the caller's dst: the plaintext (or ciphertext) goes no further
    return result;
  }

  async aead(session: Session, req: AeadRequest): Promise<AeadResult> {
    const s = this.lookup(session, 'aead');
    if (!req || typeof req !== 'object') throw new CryptoError('EINVAL', 'request required');
    if (req.op !== 'encrypt' && req.op !== 'decrypt') throw new CryptoError('EINVAL', `bad op '${String(req.op)}'`);
    if (!(req.src instanceof Uint8Array)) throw new CryptoError('EINVAL', 'src must be a Uint8Array');
    if (!(req.iv instanceof Uint8Array) || req.iv.length !== GCM_IV_LENGTH) {
      throw new CryptoError('EINVAL', `aes-gcm needs a ${GCM_IV_LENGTH}-byte IV`);
    }
    const aad = req.aad ?? new Uint8Array(0);
    if (!(aad instanceof Uint8Array)) throw new CryptoError('EINVAL', 'aad must be a Uint8Array');
    checkDataLength(req.src.length + aad.length, this.device);
    const name = `aes-${s.key.length * 8}-gcm` as CipherGCMTypes;
    if (req.op === 'encrypt') {
      const c = createCipheriv(name, s.key, req.iv, { authTagLength: s.tagLength });
      c.setAAD(aad);
      const dst = Buffer.concat([c.update(req.src), c.final()]);
      return { dst: new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength), tag: new Uint8Array(c.getAuthTag()) };
    }
    if (!(req.tag instanceof Uint8Array) || req.tag.length !== s.tagLength) {
      throw new CryptoError('EINVAL', `aes-gcm decrypt needs the ${s.tagLength}-byte tag`);
    }
    const d = createDecipheriv(name, s.key, req.iv, { authTagLength: s.tagLength });
    d.setAAD(aad);
    d.setAuthTag(req.tag);
    const plain = d.update(req.src);
    try {
      d.final();
    } catch (err) {
      zeroize(plain); // never hand out unauthenticated plaintext
      throw new CryptoError('EBADMSG', 'aes-gcm tag mismatch', { cause: err });
    }
    return { dst: new Uint8Array(plain.buffer, plain.byteOffset, plain.byteLength) };
  }

  async digest(session: Session, data: Uint8Array): Promise<Uint8Array> {
    this.live();
    const s = session && typeof session.id === 'bigint' ? this.sessions.get(session.id) : undefined;
    if (!s) throw new CryptoError('ENOENT', `no session ${String(session?.id)} on this handle`);
    if (!(data instanceof Uint8Array)) throw new CryptoError('EINVAL', 'data must be a Uint8Array');
    checkDataLength(data.length, this.device);
    if (s.kind === 'hash') return new Uint8Array(createHash(s.hash).update(data).digest());
    if (s.kind === 'mac') return new Uint8Array(createHmac(s.hash, s.key).update(data).digest());
    throw new CryptoError('EINVAL', `session ${session.id} is a ${s.kind} session, not hash or mac`);
  }

  async chain(session: Session, req: ChainRequest): Promise<ChainResult> {
    const s = this.lookup(session, 'chain');
    if (!req || typeof req !== 'object') throw new CryptoError('EINVAL', 'request required');
    validateCryptRequest('aes-cbc', { op: s.op, src: req.src, iv: req.iv }, this.device);
    const name = opensslCipherName('aes-cbc', s.key.length);
    const macOver = (data: Uint8Array): Buffer => createHmac(s.hash, s.macKey).update(data).digest();
    if (s.op === 'encrypt') {
      const dst = runCipher(name, 'encrypt', s.key, req.iv, req.src);
      const mac = macOver(chainHashCoversSource(s.order) ? req.src : dst);
      return { dst: new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength), mac: new Uint8Array(mac) };
    }
    if (!(req.mac instanceof Uint8Array) || req.mac.length !== DIGEST_LENGTH[s.hash]) {
      throw new CryptoError('EINVAL', `chained decrypt needs the ${DIGEST_LENGTH[s.hash]}-byte MAC`);
    }
    if (chainHashCoversSource(s.order)) {
      // hash-then-cipher on decrypt: verify the MAC over the ciphertext BEFORE decrypting.
      if (!timingSafeEqual(macOver(req.src), req.mac)) throw new CryptoError('EBADMSG', 'MAC mismatch');
      const dst = runCipher(name, 'decrypt', s.key, req.iv, req.src);
      return { dst: new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength) };
    }
    const dst = runCipher(name, 'decrypt', s.key, req.iv, req.src);
    if (!timingSafeEqual(macOver(dst), req.mac)) {
      zeroize(dst);
      throw new CryptoError('EBADMSG', 'MAC mismatch');
    }
    return { dst: new Uint8Array(dst.buffer, dst.byteOffset, dst.byteLength) };
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const s of this.sessions.values()) wipeSession(s);
    this.sessions.clear();
    this.onClose(this);
  }
}

/** `--device host`. Each `open()` is a fresh handle (like opening /dev/cryptodev0 again). */
export function createHostDevice(): CryptoDevice {
  const handles = new Set<HostHandle>();
  let closed = false;
  return {
    info: HOST_DEVICE_INFO,
    async open(): Promise<CryptoHandle> {
      if (closed) throw new CryptoError('EBADF', 'device is closed');
      const h = new HostHandle(HOST_DEVICE_INFO, (x) => handles.delete(x));
      handles.add(h);
      return h;
    },
    async close(): Promise<void> {
      closed = true;
      await Promise.all([...handles].map((h) => h.close()));
    },
  };
}

/**
 * The cryptodev-style session API: what the lab's `/dev/cryptodevN` gave its programs
 * (open, CIOCGSESSION, CIOCCRYPT, CIOCAUTHCRYPT, CIOCFSESSION, close), as Promises.
 *
 * Every device back-end implements `CryptoDevice`:
 *  - `host`            straight onto node:crypto (the no-virtualization baseline),
 *  - `virtio`          our virtio-crypto driver talking to the device on a worker thread (default),
 *  - `vhost-user:PATH` our driver as a vhost-user front-end to `vcrypto device --socket PATH`.
 *
 * Sessions belong to the handle that created them; closing a handle closes its sessions.
 * All failures are `CryptoError`s carrying an errno-style `code`.
 */

export type CipherAlgorithm =
  | 'aes-ecb'
  | 'aes-cbc'
  | 'aes-ctr'
  | 'aes-xts';
export type HashAlgorithm = 'sha1' | 'sha224' | 'sha256' | 'sha384' | 'sha512';
export type AeadAlgorithm = 'aes-gcm';

/** Options for createSession (CIOCGSESSION). Exactly one family per session. */
export type SessionOptions =
  /** A plain cipher session; key length selects AES-128/192/256 (XTS: 32 or 64). */
  | { kind: 'cipher'; cipher: CipherAlgorithm; key: Uint8Array }
  /** Plain hash session. */
  | { kind: 'hash'; hash: HashAlgorithm }
  /** HMAC session. */
  | { kind: 'mac'; hash: HashAlgorithm; key: Uint8Array }
  /** AEAD session (AES-GCM: 16/24/32-byte key, 12-byte IV, 16-byte tag). */
  | { kind: 'aead'; aead: AeadAlgorithm; key: Uint8Array; tagLength?: number }
  /**
   * Algorithm chaining (cipher + HMAC in one request), e.g. AES-CBC + HMAC-SHA256.
   * order 'cipher-then-hash' (encrypt-then-MAC, for encryption) or 'hash-then-cipher'.
   */
  | {
      kind: 'chain';
      cipher: 'aes-cbc';
      key: Uint8Array;
      hash: 'sha1' | 'sha256';
      macKey: Uint8Array;
      order: 'cipher-then-hash' | 'hash-then-cipher';
      /** Direction is fixed at session creation for chaining (as in virtio-crypto). */
      op: 'encrypt' | 'decrypt';
    };

export interface Session {
  /** Session id (the device's id; unique per device while open). */
  readonly id: bigint;
  readonly options: Readonly<{ kind: SessionOptions['kind'] }>;
}

export interface CryptRequest {
  op: 'encrypt' | 'decrypt';
  src: Uint8Array;
  /** IV: 16 bytes for CBC/CTR/XTS (XTS: the tweak), ignored (may be omitted) for ECB. */
  iv?: Uint8Array;
  /** COP_FLAG_WRITE_IV: also return the IV to use for the next request (CBC chaining, CTR counter). */
  writeIv?: boolean;
  /**
   * cryptodev's `crypt_op.dst`: where to write the result, exactly `src.length` bytes; it may be `src`
   * itself (in place). The result's `dst` is then this array, and no new one is allocated. Default: a
   * new array.
   */
  dst?: Uint8Array;
}

export interface CryptResult {
  dst: Uint8Array;
  /** Present when `writeIv` was set. */
  iv?: Uint8Array;
}

export interface AeadRequest {
  op: 'encrypt' | 'decrypt';
  src: Uint8Array;
  iv: Uint8Array;
  aad?: Uint8Array;
  /** Required for decrypt: the tag to verify. */
  tag?: Uint8Array;
}

export interface AeadResult {
  dst: Uint8Array;
  /** Present for encrypt. */
  tag?: Uint8Array;
}

export interface ChainRequest {
  src: Uint8Array;
  iv: Uint8Array;
  /** For decrypt sessions: the expected MAC (verified before returning plaintext). */
  mac?: Uint8Array;
}

export interface ChainResult {
  dst: Uint8Array;
  /** For encrypt sessions: the MAC over the ciphertext (cipher-then-hash) or plaintext. */
  mac?: Uint8Array;
}

/** What the device can do (read from its config space; `host` reports everything). */
export interface DeviceInfo {
  /** 'host' | 'virtio' | 'vhost-user:PATH' */
  readonly spec: string;
  /** Human-readable, e.g. "virtio-crypto (embedded, 2 data queues)". */
  readonly description: string;
  readonly maxDataQueues: number;
  readonly maxSize: bigint;
  readonly maxCipherKeyLen: number;
  readonly maxAuthKeyLen: number;
}

/** One open handle on a device (like one open file descriptor on /dev/cryptodevN). */
export interface CryptoHandle {
  readonly device: DeviceInfo;
  /** CIOCGSESSION */
  createSession(opts: SessionOptions): Promise<Session>;
  /** CIOCFSESSION */
  closeSession(session: Session): Promise<void>;
  /** CIOCCRYPT */
  crypt(session: Session, req: CryptRequest): Promise<CryptResult>;
  /** CIOCAUTHCRYPT (AEAD) */
  aead(session: Session, req: AeadRequest): Promise<AeadResult>;
  /** Hash (hash session) or HMAC (mac session) of `data`. */
  digest(session: Session, data: Uint8Array): Promise<Uint8Array>;
  /** Algorithm chaining (chain session). */
  chain(session: Session, req: ChainRequest): Promise<ChainResult>;
  /** Closes every session of this handle, then the handle. Idempotent. */
  close(): Promise<void>;
}

/** A device: open handles on it; close it when done (the last close lets the process exit). */
export interface CryptoDevice {
  readonly info: DeviceInfo;
  open(): Promise<CryptoHandle>;
  close(): Promise<void>;
}

/**
 * errno-style codes. ETIMEDOUT: the device did not complete a request within the driver's deadline
 * (the device is then marked failed: later calls get EIO, closing still works).
 */
export type CryptoErrorCode = 'EINVAL' | 'ENOENT' | 'EBADMSG' | 'ENOSPC' | 'ENOTSUP' | 'EIO' | 'EBADF' | 'ETIMEDOUT';

/** Every failure of the session API. `code` is errno-style, as cryptodev's ioctls return. */
export class CryptoError extends Error {
  override readonly name = 'CryptoError';
  constructor(
    readonly code: CryptoErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(`${code}: ${message}`, options);
  }
}

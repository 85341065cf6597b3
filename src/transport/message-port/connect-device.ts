/**
 * `connectDevice(port, info)`: a `CryptoDevice` proxy whose calls travel over an RpcPort to
 * `serveDevice` (protocol.ts). Used by worker threads (test-fork-crypto; a MessagePort): each worker
 * opens its OWN handle on the one device the main thread owns; and by `--device socket:PATH` (a socket
 * connection to the driver service, transport/socket/connect-socket-device.ts).
 *
 * Every call carries a request id; when the port closes (the server went away) or the proxy is closed,
 * every pending call is rejected with CryptoError('EIO'), and later calls fail with EBADF.
 * Request data is cloned (the caller keeps its buffers); result buffers arrive transferred when possible.
 */
import {
  CryptoError,
  type AeadRequest,
  type AeadResult,
  type ChainRequest,
  type ChainResult,
  type CryptoDevice,
  type CryptoHandle,
  type CryptRequest,
  type CryptResult,
  type DeviceInfo,
  type Session,
  type SessionOptions,
} from '../../driver/api.js';
import { checkCryptDst } from '../../driver/cryptodev-semantics.js';
import { CRYPTO_ERROR_CODES, isResponse, type RpcPort, type RpcRequest } from './protocol.js';

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;
type Call = DistributiveOmit<RpcRequest, 'id'>;

interface Pending {
  resolve(value: unknown): void;
  reject(err: Error): void;
}

export function connectDevice(port: RpcPort, info: DeviceInfo): CryptoDevice {
  const pending = new Map<number, Pending>();
  let nextId = 1;
  let closed = false;
  const handles = new Set<ProxyHandle>();

  const failAll = (why: string): void => {
    closed = true;
    const all = [...pending.values()];
    pending.clear();
    for (const p of all) p.reject(new CryptoError('EIO', why));
  };

  port.on('message', (msg: unknown) => {
    if (!isResponse(msg)) return;
    const p = pending.get(msg.id);
    if (!p) return;
    pending.delete(msg.id);
    if (msg.ok) {
      p.resolve(msg.value);
    } else {
      const code = CRYPTO_ERROR_CODES.includes(msg.error?.code) ? msg.error.code : 'EIO';
      p.reject(new CryptoError(code, String(msg.error?.message ?? 'remote error')));
    }
  });
  port.once('close', () => failAll('device connection closed'));

  const call = (c: Call): Promise<unknown> => {
    if (closed) return Promise.reject(new CryptoError('EBADF', 'device is closed'));
    const id = nextId++;
    return new Promise<unknown>((resolve, reject) => {
      pending.set(id, { resolve, reject });
      try {
        port.postMessage({ ...c, id });
      } catch (err) {
        pending.delete(id);
        // The port's own verdict (e.g. ENOSPC: over the socket's frame limit) is kept as it is.
        reject(err instanceof CryptoError ? err : new CryptoError('EINVAL', `request cannot be sent: ${(err as Error).message}`, { cause: err }));
      }
    });
  };

  class ProxyHandle implements CryptoHandle {
    readonly device = info;
    private closedHandle = false;
    constructor(private readonly id: number) {}

    private live(): number {
      if (this.closedHandle) throw new CryptoError('EBADF', 'handle is closed');
      return this.id;
    }
    private sid(session: Session): bigint {
      if (!session || typeof session.id !== 'bigint') throw new CryptoError('ENOENT', 'not a session');
      return session.id;
    }
    /** DeviceInfo.maxSize is what the far side takes (a driver service caps it to a frame): refuse more here. */
    private fits(data: Uint8Array | undefined): void {
      if (data instanceof Uint8Array && BigInt(data.length) > info.maxSize) {
        throw new CryptoError('ENOSPC', `request of ${data.length} bytes exceeds the device's limit of ${info.maxSize} bytes`);
      }
    }

    async createSession(opts: SessionOptions): Promise<Session> {
      const v = (await call({ method: 'createSession', handle: this.live(), opts })) as { id: bigint; kind: SessionOptions['kind'] };
      return Object.freeze({ id: v.id, options: Object.freeze({ kind: v.kind }) });
    }
    async closeSession(session: Session): Promise<void> {
      await call({ method: 'closeSession', handle: this.live(), session: this.sid(session) });
    }
    async crypt(session: Session, req: CryptRequest): Promise<CryptResult> {
      this.fits(req?.src);
      if (req.dst === undefined) return (await call({ method: 'crypt', handle: this.live(), session: this.sid(session), req })) as CryptResult;
      // dst stays here: checked now, not sent, and filled with the result that comes back.
      checkCryptDst(req);
      const { dst, ...sent } = req;
      const r = (await call({ method: 'crypt', handle: this.live(), session: this.sid(session), req: sent })) as CryptResult;
      if (!(r.dst instanceof Uint8Array) || r.dst.length !== dst.length) throw new CryptoError('EIO', 'the device service returned a result of the wrong length');
      dst.set(r.dst);
      r.dst.fill(0); // the received copy: only the caller's dst keeps the result
      return r.iv === undefined ? { dst } : { dst, iv: r.iv };
    }
    async aead(session: Session, req: AeadRequest): Promise<AeadResult> {
      this.fits(req?.src);
      return (await call({ method: 'aead', handle: this.live(), session: this.sid(session), req })) as AeadResult;
    }
    async digest(session: Session, data: Uint8Array): Promise<Uint8Array> {
      this.fits(data);
      return (await call({ method: 'digest', handle: this.live(), session: this.sid(session), data })) as Uint8Array;
    }
    async chain(session: Session, req: ChainRequest): Promise<ChainResult> {
      this.fits(req?.src);
      return (await call({ method: 'chain', handle: this.live(), session: this.sid(session), req })) as ChainResult;
    }
    async close(): Promise<void> {
      if (this.closedHandle) return;
      this.closedHandle = true;
      handles.delete(this);
      if (!closed) await call({ method: 'closeHandle', handle: this.id }).catch(() => undefined);
    }
  }

  return {
    info,
    async open(): Promise<CryptoHandle> {
      const id = (await call({ method: 'open' })) as number;
      const h = new ProxyHandle(id);
      handles.add(h);
      return h;
    },
    async close(): Promise<void> {
      if (closed) return;
      await Promise.allSettled([...handles].map((h) => h.close()));
      failAll('device proxy closed');
      port.close();
    },
  };
}

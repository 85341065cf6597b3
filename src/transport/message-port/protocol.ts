/**
 * The RPC carried over a MessagePort between `connectDevice` (the proxy, e.g. in a worker thread) and
 * `serveDevice` (next to the real device). Plain structured-clone objects; every request has a numeric
 * `id` and gets exactly one response with the same id. Uint8Array results are transferred when they own
 * their whole ArrayBuffer (no copy), otherwise cloned.
 */
import type { AeadRequest, ChainRequest, CryptoErrorCode, CryptRequest, SessionOptions } from '../../driver/api.js';

export type RpcRequest =
  | { id: number; method: 'open' }
  | { id: number; method: 'closeHandle'; handle: number }
  | { id: number; method: 'createSession'; handle: number; opts: SessionOptions }
  | { id: number; method: 'closeSession'; handle: number; session: bigint }
  | { id: number; method: 'crypt'; handle: number; session: bigint; req: CryptRequest }
  | { id: number; method: 'aead'; handle: number; session: bigint; req: AeadRequest }
  | { id: number; method: 'digest'; handle: number; session: bigint; data: Uint8Array }
  | { id: number; method: 'chain'; handle: number; session: bigint; req: ChainRequest };

export type RpcMethod = RpcRequest['method'];

/**
 * What the RPC needs of a channel: a worker_threads MessagePort has this shape, and so does the
 * Unix-socket adapter of the driver service (src/transport/socket/socket-port.ts).
 */
export interface RpcPort {
  postMessage(message: unknown, transfer?: readonly ArrayBuffer[]): void;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  off(event: 'message', listener: (message: unknown) => void): unknown;
  once(event: 'close', listener: () => void): unknown;
  close(): void;
}

export interface RpcError {
  code: CryptoErrorCode;
  message: string;
}

export type RpcResponse = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: RpcError };

export const RPC_METHODS: readonly RpcMethod[] = ['open', 'closeHandle', 'createSession', 'closeSession', 'crypt', 'aead', 'digest', 'chain'];

export const CRYPTO_ERROR_CODES: readonly CryptoErrorCode[] = ['EINVAL', 'ENOENT', 'EBADMSG', 'ENOSPC', 'ENOTSUP', 'EIO', 'EBADF', 'ETIMEDOUT'];

/** The ArrayBuffers of `views` that can be transferred without losing other data (whole, unshared, distinct). */
export function transferables(views: readonly (Uint8Array | undefined)[]): ArrayBuffer[] {
  const out: ArrayBuffer[] = [];
  for (const v of views) {
    if (!v || !(v.buffer instanceof ArrayBuffer)) continue;
    if (v.byteOffset !== 0 || v.byteLength !== v.buffer.byteLength || v.byteLength === 0) continue;
    if (!out.includes(v.buffer)) out.push(v.buffer);
  }
  return out;
}

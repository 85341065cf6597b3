/**
 * The RPC between `connectDevice` (the proxy, e.g. in a worker thread or another process) and
 * `serveDevice` (next to the real device), carried by any `RpcPort`: a worker-thread MessagePort, or a
 * Unix stream socket adapted by transport/socket/socket-port.ts (the driver service). Plain
 * structured-clone objects; every request has a numeric `id` and gets exactly one response with the
 * same id. Uint8Array results are transferred when they own their whole ArrayBuffer (no copy) and the
 * port can transfer, otherwise cloned.
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

export interface RpcError {
  code: CryptoErrorCode;
  message: string;
}

export type RpcResponse = { id: number; ok: true; value: unknown } | { id: number; ok: false; error: RpcError };

export const RPC_METHODS: readonly RpcMethod[] = ['open', 'closeHandle', 'createSession', 'closeSession', 'crypt', 'aead', 'digest', 'chain'];

/**
 * What `serveDevice` and `connectDevice` need of a message channel. A worker_threads MessagePort is one
 * as it is; transport/socket/socket-port.ts adapts a stream socket to it. `postMessage` may throw (the
 * message cannot be carried); 'close' is emitted once, when the channel is gone for good.
 */
export interface RpcPort {
  postMessage(message: unknown, transfer?: readonly ArrayBuffer[]): void;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  off(event: 'message', listener: (message: unknown) => void): unknown;
  once(event: 'close', listener: () => void): unknown;
  close(): void;
}

export const CRYPTO_ERROR_CODES: readonly CryptoErrorCode[] = ['EINVAL', 'ENOENT', 'EBADMSG', 'ENOSPC', 'ENOTSUP', 'EIO', 'EBADF'];

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

const SESSION_METHODS: readonly string[] = ['closeSession', 'crypt', 'aead', 'digest', 'chain'];
const REQ_METHODS: readonly string[] = ['crypt', 'aead', 'chain'];

/**
 * The shape check every request passes before it is dispatched: a safe-integer id, a known method, and
 * the fields that method needs with the right types (their contents are the device's to judge).
 */
export function isRequest(msg: unknown): msg is RpcRequest {
  if (typeof msg !== 'object' || msg === null) return false;
  const m = msg as Record<string, unknown>;
  if (typeof m.id !== 'number' || !Number.isSafeInteger(m.id)) return false;
  if (typeof m.method !== 'string' || !(RPC_METHODS as readonly string[]).includes(m.method)) return false;
  if (m.method !== 'open' && (typeof m.handle !== 'number' || !Number.isSafeInteger(m.handle))) return false;
  if (SESSION_METHODS.includes(m.method) && typeof m.session !== 'bigint') return false;
  if (REQ_METHODS.includes(m.method) && (typeof m.req !== 'object' || m.req === null)) return false;
  if (m.method === 'createSession' && (typeof m.opts !== 'object' || m.opts === null)) return false;
  if (m.method === 'digest' && !(m.data instanceof Uint8Array)) return false;
  return true;
}

/** The shape check of a response (the proxy ignores anything else). */
export function isResponse(msg: unknown): msg is RpcResponse {
  if (typeof msg !== 'object' || msg === null) return false;
  const m = msg as Record<string, unknown>;
  return typeof m.id === 'number' && typeof m.ok === 'boolean';
}

/**
 * `serveDevice(device, port)`: answers the RPC of protocol.ts on one RpcPort (a worker thread's
 * MessagePort, or one client connection of the driver service, transport/socket/), against a device
 * that this thread owns. The one implementation of request validation and dispatch for both.
 * Each `open` over the port is a separate handle on the device (its own sessions); when the port
 * closes (the peer closed it, its worker exited, its process died) every handle opened through it is
 * closed, which frees their sessions and zeroes their keys.
 *
 * The peer is not trusted to be well-formed, and never gets an exception out of the message handler.
 * A malformed message (protocol.ts `isRequest` fails) gets an EINVAL response (or is dropped when it
 * has no id) — or, with `onMalformed` (the socket service: another process broke the protocol), is
 * reported through it once and the port is closed: that peer only, the others go on.
 */
import { CryptoError, type CryptoDevice, type CryptoHandle, type Session } from '../../driver/api.js';
import { CRYPTO_ERROR_CODES, isRequest, transferables, type RpcError, type RpcPort, type RpcRequest, type RpcResponse } from './protocol.js';

interface ServedHandle {
  handle: CryptoHandle;
  sessions: Map<bigint, Session>;
}

export interface DeviceServer {
  /** Stops serving: closes the port and every handle opened through it. Idempotent. */
  close(): Promise<void>;
  /** Resolves once the port has closed and its handles are closed. */
  readonly closed: Promise<void>;
}

function toRpcError(err: unknown): RpcError {
  if (err instanceof CryptoError && CRYPTO_ERROR_CODES.includes(err.code)) {
    const prefix = `${err.code}: `;
    return { code: err.code, message: err.message.startsWith(prefix) ? err.message.slice(prefix.length) : err.message };
  }
  return { code: 'EIO', message: err instanceof Error ? err.message : String(err) };
}

/** One short line about a message that failed `isRequest` (never its data: it may hold keys). */
function describeMalformed(msg: unknown): string {
  if (typeof msg !== 'object' || msg === null) return `malformed request (a ${msg === null ? 'null' : typeof msg}, not an object)`;
  const m = msg as Record<string, unknown>;
  // Quoted by JSON.stringify: a peer's string never breaks the log line.
  const method = typeof m.method === 'string' ? JSON.stringify(m.method.slice(0, 32)) : typeof m.method;
  return `malformed request (method ${method}, id ${typeof m.id === 'number' ? m.id : typeof m.id})`;
}

export interface ServeDeviceOptions {
  /**
   * Treat a malformed message as a protocol violation: called once with what was wrong, then the port
   * is closed (with every handle opened through it). Without it, malformed messages get EINVAL answers.
   */
  onMalformed?: (what: string) => void;
}

export function serveDevice(device: CryptoDevice, port: RpcPort, opts: ServeDeviceOptions = {}): DeviceServer {
  const handles = new Map<number, ServedHandle>();
  let nextHandle = 1;
  let stopped = false;
  let resolveClosed!: () => void;
  const closed = new Promise<void>((resolve) => (resolveClosed = resolve));

  const reply = (res: RpcResponse, transfer: ArrayBuffer[] = []): void => {
    if (stopped) return;
    try {
      port.postMessage(res, transfer);
    } catch {
      // The port closed under us: nothing to answer to.
    }
  };

  const served = (id: number): ServedHandle => {
    const h = handles.get(id);
    if (!h) throw new CryptoError('EBADF', `no open handle ${id}`);
    return h;
  };
  const sessionOf = (h: ServedHandle, id: bigint): Session => {
    const s = h.sessions.get(id);
    if (!s) throw new CryptoError('ENOENT', `no session ${id} on this handle`);
    return s;
  };

  async function dispatch(req: RpcRequest): Promise<{ value: unknown; transfer?: ArrayBuffer[] }> {
    switch (req.method) {
      case 'open': {
        const handle = await device.open();
        if (stopped) {
          await handle.close();
          throw new CryptoError('EBADF', 'server stopped');
        }
        const id = nextHandle++;
        handles.set(id, { handle, sessions: new Map() });
        return { value: id };
      }
      case 'closeHandle': {
        const h = handles.get(req.handle);
        if (!h) return { value: undefined }; // idempotent
        handles.delete(req.handle);
        await h.handle.close();
        return { value: undefined };
      }
      case 'createSession': {
        const h = served(req.handle);
        try {
          const s = await h.handle.createSession(req.opts);
          h.sessions.set(s.id, s);
          return { value: { id: s.id, kind: s.options.kind } };
        } finally {
          // The cloned keys are ours: the device keeps its own copy.
          const o = req.opts as { key?: unknown; macKey?: unknown };
          if (o.key instanceof Uint8Array) o.key.fill(0);
          if (o.macKey instanceof Uint8Array) o.macKey.fill(0);
        }
      }
      case 'closeSession': {
        const h = served(req.handle);
        const s = sessionOf(h, req.session);
        await h.handle.closeSession(s);
        h.sessions.delete(req.session);
        return { value: undefined };
      }
      case 'crypt': {
        const h = served(req.handle);
        const r = await h.handle.crypt(sessionOf(h, req.session), req.req);
        return { value: r, transfer: transferables([r.dst, r.iv]) };
      }
      case 'aead': {
        const h = served(req.handle);
        const r = await h.handle.aead(sessionOf(h, req.session), req.req);
        return { value: r, transfer: transferables([r.dst, r.tag]) };
      }
      case 'digest': {
        const h = served(req.handle);
        const r = await h.handle.digest(sessionOf(h, req.session), req.data);
        return { value: r, transfer: transferables([r]) };
      }
      case 'chain': {
        const h = served(req.handle);
        const r = await h.handle.chain(sessionOf(h, req.session), req.req);
        return { value: r, transfer: transferables([r.dst, r.mac]) };
      }
    }
  }

  const onMessage = (msg: unknown): void => {
    if (stopped) return;
    if (!isRequest(msg)) {
      if (opts.onMalformed) {
        opts.onMalformed(describeMalformed(msg));
        void shutdown();
        return;
      }
      const id = (msg as { id?: unknown } | null)?.id;
      if (typeof id === 'number') reply({ id, ok: false, error: { code: 'EINVAL', message: 'malformed request' } });
      return;
    }
    dispatch(msg).then(
      ({ value, transfer }) => reply({ id: msg.id, ok: true, value }, transfer),
      (err: unknown) => reply({ id: msg.id, ok: false, error: toRpcError(err) }),
    );
  };

  const shutdown = async (): Promise<void> => {
    if (stopped) return closed;
    stopped = true;
    port.off('message', onMessage);
    port.close();
    const all = [...handles.values()];
    handles.clear();
    await Promise.allSettled(all.map((h) => h.handle.close()));
    resolveClosed();
    return closed;
  };

  port.on('message', onMessage);
  port.once('close', () => void shutdown());
  return { close: shutdown, closed };
}

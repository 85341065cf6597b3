/**
 * `serveDeviceOnSocket(device, path)`: the driver service — the guest's stand-in for /dev/cryptodevN.
 * One process owns the device (e.g. `--device pci`) and serves the session API to many local
 * processes over a Unix stream socket (`--device socket:PATH`, connect-socket-device.ts).
 *
 * - Each connection is served by `serveDevice` (transport/message-port/serve-device.ts, the same code
 *   that serves worker threads) over a `SocketPort`: its handles and sessions belong to the
 *   connection, and when it closes — the client closed it, or its process died — every handle opened
 *   through it is closed (sessions destroyed on the device, keys zeroed).
 * - All connections share the device and its queues; each has many requests in flight.
 * - A malformed frame, an undecodable payload or a malformed request closes that connection only,
 *   with one log line; the others go on.
 *
 * The socket file: created with mode 0600 (`mode` to widen it, e.g. 0o660 for a group) before anyone
 * can connect (bound in a private 0700 directory, chmod'ed, then renamed into place); a live service
 * already answering on the path is an error; a stale socket file (nobody answers) is replaced; on
 * close the file is removed only if it is still ours (same device and inode).
 */
import { chmodSync, lstatSync, mkdtempSync, renameSync, rmdirSync, unlinkSync } from 'node:fs';
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { dirname, join } from 'node:path';
import type { CryptoDevice, DeviceInfo } from '../../driver/api.js';
import { serveDevice, type DeviceServer } from '../message-port/serve-device.js';
import { SocketPort } from './socket-port.js';
import { serviceHello } from './socket-wire.js';

/** Default mode of the socket file: the owner only. */
export const DEFAULT_SOCKET_MODE = 0o600;

/** Requests one connection may have unanswered before the service stops reading it. */
export const MAX_UNANSWERED_PER_CLIENT = 4096;

/** sockaddr_un.sun_path holds 108 bytes on Linux, the last one a NUL. */
const MAX_SUN_PATH = 107;

/** How long the live-service probe waits for a connection to a pre-existing socket file. */
const PROBE_TIMEOUT_MS = 2000;

export interface SocketServiceOptions {
  /** Mode of the socket file (default 0o600). Connecting needs write permission on it. */
  mode?: number;
  /** One line per event: malformed input always, connect/disconnect when `verbose`. */
  log?: (line: string) => void;
  verbose?: boolean;
}

export interface SocketDeviceService {
  readonly path: string;
  /** What every client is told about the device (maxSize capped to what a frame carries). */
  readonly info: DeviceInfo;
  /** Connections currently served. */
  readonly clientCount: number;
  /** Stops accepting, closes every connection (and its handles), removes the socket file if still ours. Idempotent. Does not close the device. */
  close(): Promise<void>;
}

/** A socket file at `path` that answers: a live service. Stale or missing: false. */
async function isLive(path: string): Promise<boolean> {
  return new Promise<boolean>((resolve, reject) => {
    const probe = createConnection({ path });
    const timer = setTimeout(() => {
      probe.destroy();
      // Connected neither way in time (a full backlog): someone is there.
      resolve(true);
    }, PROBE_TIMEOUT_MS);
    probe.once('connect', () => {
      clearTimeout(timer);
      probe.destroy();
      resolve(true);
    });
    probe.once('error', (err: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      if (err.code === 'ECONNREFUSED' || err.code === 'ENOENT') resolve(false);
      else reject(new Error(`cannot probe ${path}: ${err.message}`, { cause: err }));
    });
  });
}

/** Listens on `path` with the file's mode set before it becomes reachable; returns its (dev, ino). */
async function listenPrivately(server: Server, path: string, mode: number): Promise<{ dev: number; ino: number }> {
  // libuv removes the path it bound when the server closes, whoever owns that path by then: binding in
  // a private directory and renaming keeps it from ever removing another service's socket.
  const tmpTemplate = join(dirname(path), '.vXXXXXX', 's');
  if (Buffer.byteLength(tmpTemplate) > MAX_SUN_PATH) {
    // The kernel would silently truncate it (sockaddr_un.sun_path).
    throw new Error(`the directory of ${path} is too long for a Unix socket (at most ${MAX_SUN_PATH - (Buffer.byteLength(tmpTemplate) - Buffer.byteLength(dirname(path)))} bytes)`);
  }
  const dir = mkdtempSync(join(dirname(path), '.v'));
  const tmp = join(dir, 's');
  try {
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(tmp, () => {
        server.off('error', reject);
        resolve();
      });
    });
    chmodSync(tmp, mode);
    const { dev, ino } = lstatSync(tmp);
    renameSync(tmp, path); // atomic: replaces a stale socket file
    return { dev, ino };
  } finally {
    try {
      rmdirSync(dir);
    } catch {
      // still holds the socket only if listening failed: best effort
      try {
        unlinkSync(tmp);
        rmdirSync(dir);
      } catch {
        // nothing more to do
      }
    }
  }
}

export async function serveDeviceOnSocket(device: CryptoDevice, path: string, opts: SocketServiceOptions = {}): Promise<SocketDeviceService> {
  const mode = opts.mode ?? DEFAULT_SOCKET_MODE;
  if (!Number.isInteger(mode) || mode < 0 || mode > 0o777) throw new Error(`invalid socket mode ${mode}`);
  const log = opts.log ?? (() => undefined);
  let existing: ReturnType<typeof lstatSync> | undefined;
  try {
    existing = lstatSync(path);
  } catch {
    existing = undefined;
  }
  if (existing) {
    if (!existing.isSocket()) throw new Error(`${path} exists and is not a socket`);
    if (await isLive(path)) throw new Error(`a service is already listening on ${path}`);
    // Stale: replaced by the rename below.
  }

  const hello = serviceHello(device.info);
  const connections = new Map<number, { socket: Socket; served: DeviceServer }>();
  let nextClient = 1;
  let closing: Promise<void> | undefined;

  const server = createServer((socket) => {
    if (closing) {
      socket.destroy();
      return;
    }
    const id = nextClient++;
    const tag = `client ${id}`;
    let reported = false;
    const report = (what: string) => {
      if (reported) return;
      reported = true;
      log(`${tag}: ${what}; connection closed`);
    };
    const port = new SocketPort(socket, { maxUnanswered: MAX_UNANSWERED_PER_CLIENT, onProtocolError: (err) => report(err.message) });
    const served = serveDevice(device, port, { onMalformed: report });
    connections.set(id, { socket, served });
    if (opts.verbose) log(`${tag} connected (${connections.size} connected)`);
    void served.closed.then(() => {
      connections.delete(id);
      if (opts.verbose) log(`${tag} disconnected; its handles and sessions are closed (${connections.size} connected)`);
    });
    try {
      port.postMessage(hello);
    } catch {
      port.close();
    }
  });
  server.maxConnections = 1024;
  const ours = await listenPrivately(server, path, mode);

  return {
    path,
    info: hello.info,
    get clientCount() {
      return connections.size;
    },
    close() {
      closing ??= (async () => {
        const stopped = new Promise<void>((resolve) => server.close(() => resolve()));
        const all = [...connections.values()];
        await Promise.all(all.map((c) => c.served.close()));
        await stopped;
        try {
          const now = lstatSync(path);
          if (now.dev === ours.dev && now.ino === ours.ino) unlinkSync(path);
        } catch {
          // already gone
        }
      })();
      return closing;
    },
  };
}

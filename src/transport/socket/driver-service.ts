/**
 * The driver service: one process owns a device (in a guest, the virtio-crypto PCI function through
 * our driver) and serves the session API to local processes over a Unix socket — the stand-in for
 * the lab's /dev/cryptodevN. Each connection is like one open() of the device node: its handles and
 * sessions belong to it and are closed (keys zeroed, device sessions destroyed) when it goes away,
 * whether it closed cleanly or its process died. Many connections at once share the device's queues,
 * with many requests in flight.
 *
 * Wire: frames of structured-clone messages (frame-codec.ts). The service first sends
 *   { service: 'vcrypto-driver', version: 1, info: DeviceInfo }
 * then answers the RPC of ../message-port/protocol.ts (serveDevice). A frame that does not decode, or
 * a message that is not a well-formed request, closes that client only.
 *
 * Socket file: created mode 0600 (widen with `mode`); a live service on the path is refused; a stale
 * socket file (nobody answers) is replaced; on close the file is removed only if it is still ours
 * (same inode).
 */
import { chmodSync, lstatSync, statSync, unlinkSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import type { CryptoDevice, DeviceInfo } from '../../driver/api.js';
import { isRequest, serveDevice, type DeviceServer } from '../message-port/serve-device.js';
import { SocketPort } from './socket-port.js';

export const SERVICE_NAME = 'vcrypto-driver';
export const SERVICE_VERSION = 1;

export interface ServiceHello {
  readonly service: typeof SERVICE_NAME;
  readonly version: number;
  readonly info: DeviceInfo;
}

export interface DriverServiceOptions {
  /** Socket file mode (default 0o600: only the owner may use the device). */
  readonly mode?: number;
  /** One line per event worth logging (connections at verbose, protocol errors always). */
  readonly log?: (line: string) => void;
  readonly verbose?: boolean;
}

export class ServiceError extends Error {
  override readonly name = 'ServiceError';
}

/** True when something accepts connections on `path` (a live service). */
function answers(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const s: Socket = connect(path);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

interface Client {
  readonly port: SocketPort;
  readonly served: DeviceServer;
}

export class DriverService {
  readonly path: string;
  readonly #server: Server;
  readonly #clients: Set<Client>;
  readonly #inode: number;
  #closed = false;

  private constructor(path: string, server: Server, inode: number, clients: Set<Client>) {
    this.path = path;
    this.#server = server;
    this.#inode = inode;
    this.#clients = clients;
  }

  static async listen(device: CryptoDevice, path: string, opts: DriverServiceOptions = {}): Promise<DriverService> {
    const log = opts.log ?? (() => undefined);
    let existing: ReturnType<typeof lstatSync> | undefined;
    try {
      existing = lstatSync(path);
    } catch {
      existing = undefined;
    }
    if (existing !== undefined) {
      if (!existing.isSocket()) throw new ServiceError(`${path} exists and is not a socket: refusing to replace it`);
      if (await answers(path)) throw new ServiceError(`a service is already listening on ${path}`);
      unlinkSync(path); // stale: its owner died without removing it
      log(`driver: replaced the stale socket ${path}`);
    }
    const hello: ServiceHello = { service: SERVICE_NAME, version: SERVICE_VERSION, info: { ...device.info } };
    let nextClient = 1;
    const clients = new Set<Client>();
    const server = createServer((socket) => {
      const id = nextClient++;
      const port = new SocketPort(socket, {
        accept: isRequest,
        onProtocolError: (why) => log(`driver: client ${id}: ${why}; closing that connection`),
      });
      const served = serveDevice(device, port);
      const entry = { port, served };
      clients.add(entry);
      if (opts.verbose) log(`driver: client ${id} connected`);
      void served.closed.then(() => {
        clients.delete(entry);
        if (opts.verbose) log(`driver: client ${id} disconnected (its sessions are closed)`);
      });
      try {
        port.postMessage(hello);
      } catch {
        // gone already
      }
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => reject(new ServiceError(`cannot listen on ${path}: ${err.message}`)));
      // The socket appears with the umask's mode: create it private, then widen it if asked.
      const old = process.umask(0o177);
      try {
        server.listen(path, () => resolve());
      } finally {
        process.umask(old);
      }
    });
    chmodSync(path, opts.mode ?? 0o600);
    return new DriverService(path, server, statSync(path).ino, clients);
  }

  /** Connected clients right now. */
  get clients(): number {
    return this.#clients.size;
  }

  /** Stops accepting, closes every client (their sessions), removes the socket file if still ours. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const closing = new Promise<void>((resolve) => this.#server.close(() => resolve()));
    await Promise.allSettled([...this.#clients].map((c) => c.served.close()));
    for (const c of this.#clients) c.port.socket.destroy();
    await closing;
    try {
      if (statSync(this.path).ino === this.#inode) unlinkSync(this.path);
    } catch {
      // already gone
    }
  }
}

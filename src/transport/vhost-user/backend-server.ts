/**
 * `vcrypto device --socket PATH`: the vhost-user back-end server. The main thread listens on the
 * Unix socket (QEMU connects as the client) and waits for connections with poll(2) on a koffi async
 * thread (one libuv threadpool thread; the event loop stays free, nothing spins); each accepted
 * connection gets its own worker thread (connection-worker.ts) and its own device instance, so one
 * connection's failure never affects another. `close()` (SIGINT/SIGTERM) stops every worker (their rings stop, mappings are
 * unmapped, fds closed), closes the listening socket and removes the socket file.
 */
import { Worker } from 'node:worker_threads';
import { existsSync, lstatSync, unlinkSync } from 'node:fs';
import { listenUnix, acceptUnix, type UnixSocket } from '../../sys/unix-socket.js';
import { createEventFd, signalEventFd, closeFd, pollAsync, POLLIN } from '../../sys/fd.js';
import type { ConnectionWorkerData, FromConnectionWorker } from './worker-messages.js';

export interface BackendServerOptions {
  /** Data queues per device (vrings 0..N-1; vring N is the control queue). */
  readonly dataQueues: number;
  /** Session table bound per connection. */
  readonly maxSessions: number;
  /** Log every vhost-user message received. */
  readonly verbose?: boolean;
  /** Bound of each connection's adaptive polling window after a completion, in µs (0: never poll). */
  readonly pollMicros?: number;
  /** Where log lines go (one line each, no trailing newline). */
  readonly log: (line: string) => void;
  /** Called when a connection's worker has exited and everything it held is released. */
  readonly onConnectionClosed?: (id: number) => void;
}

export const DEFAULT_DATA_QUEUES = 1;
export const DEFAULT_MAX_SESSIONS = 1024;

interface Connection {
  readonly id: number;
  readonly worker: Worker;
  readonly stopFd: number;
  readonly socketFd: number;
  closedReported: boolean;
  readonly exited: Promise<void>;
}

function workerUrl(): URL {
  return new URL('./connection-worker' + (import.meta.url.endsWith('.ts') ? '.ts' : '.js'), import.meta.url);
}

/**
 * Built code (dist/) runs the .js worker directly. From source (tests under tsx) the worker first
 * registers tsx's loader, then imports the .ts entry: `--import tsx` in a worker's execArgv does not
 * apply to the worker's own entry module on Node 20.
 */
function startWorker(url: URL, workerData: ConnectionWorkerData): Worker {
  if (!url.pathname.endsWith('.ts')) return new Worker(url, { workerData });
  const api = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(bootstrap, { eval: true, workerData });
}

export class VhostUserBackendServer {
  readonly path: string;
  readonly #listener: UnixSocket;
  readonly #stopFd: number;
  readonly #opts: BackendServerOptions;
  readonly #connections = new Map<number, Connection>();
  #nextId = 1;
  #closing: Promise<void> | undefined;
  readonly #acceptLoop: Promise<void>;

  private constructor(path: string, listener: UnixSocket, opts: BackendServerOptions) {
    this.path = path;
    this.#listener = listener;
    this.#opts = opts;
    this.#stopFd = createEventFd();
    this.#acceptLoop = this.#accept();
  }

  /** Listens on `path` (a stale socket file is replaced; any other existing file is an error). */
  static listen(path: string, opts: BackendServerOptions): VhostUserBackendServer {
    if (existsSync(path)) {
      if (!lstatSync(path).isSocket()) throw new Error(`${path} exists and is not a socket`);
      unlinkSync(path);
    }
    return new VhostUserBackendServer(path, listenUnix(path), opts);
  }

  /** Connections currently served. */
  get connectionCount(): number {
    return this.#connections.size;
  }

  async #accept(): Promise<void> {
    for (;;) {
      const [ready = 0, stop = 0] = await pollAsync(
        [
          { fd: this.#listener.fd, events: POLLIN },
          { fd: this.#stopFd, events: POLLIN },
        ],
        -1,
      );
      if (stop !== 0 || this.#closing !== undefined) return;
      if (ready === 0) continue;
      let sock: UnixSocket | null;
      try {
        sock = acceptUnix(this.#listener);
      } catch (err) {
        this.#opts.log(`accept failed: ${(err as Error).message}`);
        continue;
      }
      if (sock !== null) this.#spawn(sock.detach());
    }
  }

  #spawn(socketFd: number): void {
    const id = this.#nextId++;
    const stopFd = createEventFd();
    const data: ConnectionWorkerData = {
      id,
      socketFd,
      stopFd,
      dataQueues: this.#opts.dataQueues,
      maxSessions: this.#opts.maxSessions,
      verbose: this.#opts.verbose ?? false,
      ...(this.#opts.pollMicros !== undefined ? { pollMicros: this.#opts.pollMicros } : {}),
    };
    const worker = startWorker(workerUrl(), data);
    let resolveExit!: () => void;
    const exited = new Promise<void>((resolve) => (resolveExit = resolve));
    const conn: Connection = { id, worker, stopFd, socketFd, closedReported: false, exited };
    this.#connections.set(id, conn);
    this.#opts.log(`connection ${id}: accepted`);
    worker.on('message', (msg: FromConnectionWorker) => {
      if (msg.type === 'log') this.#opts.log(msg.line);
      else conn.closedReported = true;
    });
    worker.on('error', (err) => this.#opts.log(`connection ${id}: worker failed: ${err.message}`));
    worker.on('exit', () => {
      // A worker that died before releasing its socket: close it here so the peer sees EOF.
      if (!conn.closedReported) closeFd(socketFd);
      closeFd(stopFd);
      this.#connections.delete(id);
      resolveExit();
      this.#opts.onConnectionClosed?.(id);
    });
  }

  /** Stops accepting, stops every connection, removes the socket file. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      signalEventFd(this.#stopFd);
      await this.#acceptLoop;
      const all = [...this.#connections.values()];
      for (const c of all) signalEventFd(c.stopFd);
      await Promise.all(all.map((c) => c.exited));
      this.#listener.close();
      closeFd(this.#stopFd);
      try {
        unlinkSync(this.path);
      } catch {
        // already gone
      }
    })();
    return this.#closing;
  }
}

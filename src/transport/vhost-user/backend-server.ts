/**
 * `vcrypto device --socket PATH`: the vhost-user back-end server. The main thread listens on the
 * Unix socket (QEMU connects as the client) and waits for connections with poll(2) on a koffi async
 * thread (one libuv threadpool thread; the event loop stays free, nothing spins); each accepted
 * connection gets its own worker thread (connection-worker.ts) and its own device instance, so one
 * connection's failure never affects another.
 *
 * Socket path (backend-socket-path.ts): a live device on PATH is never taken over (listen() throws
 * SocketInUseError), a stale socket is replaced, and close() removes the file only if it is still
 * the one this server created. Connections beyond `maxConnections` are refused (closed at once,
 * one log line). Each connection's statistics live in a SharedArrayBuffer its worker writes and
 * this thread reads (stats()), so reading them never blocks a data path.
 * `close()` stops every worker (their rings stop, mappings are unmapped, fds closed), closes the
 * listening socket and removes the socket file.
 */
import { Worker } from 'node:worker_threads';
import { listenUnix, acceptUnix, peerCredentials, type UnixSocket } from '../../sys/unix-socket.js';
import { createEventFd, signalEventFd, closeFd, pollAsync, POLLIN } from '../../sys/fd.js';
import { DeviceStats, snapshotOf, sumSnapshots, type StatsSnapshot } from '../../device/device-stats.js';
import type { ConnectionWorkerData, FromConnectionWorker } from './worker-messages.js';
import { type BackendLog, type LogFields, logLine } from './backend-log.js';
import { claimSocketPath, fileIdentity, releaseSocketPath, type FileIdentity } from './backend-socket-path.js';

export interface BackendServerOptions {
  /** Data queues per device (vrings 0..N-1; vring N is the control queue). */
  readonly dataQueues: number;
  /** Session table bound per connection. */
  readonly maxSessions: number;
  /** Connections served at once; more are refused. Default DEFAULT_MAX_CONNECTIONS. */
  readonly maxConnections?: number;
  /** Per-connection QoS: requests per second (token bucket; 0 or absent: unlimited). */
  readonly throttleOps?: number;
  /** Per-connection QoS: source bytes per second (token bucket; 0 or absent: unlimited). */
  readonly throttleBps?: number;
  /** Log every vhost-user message received (and each session's payload layout). */
  readonly verbose?: boolean;
  /** Bound of each connection's adaptive polling window after a completion, in µs (0: never poll). */
  readonly pollMicros?: number;
  /** Where events go (see backend-log.ts). */
  readonly log: BackendLog;
  /** Called when a connection's worker has exited and everything it held is released. */
  readonly onConnectionClosed?: (id: number) => void;
}

export const DEFAULT_DATA_QUEUES = 1;
export const DEFAULT_MAX_SESSIONS = 1024;
/**
 * Default bound on live connections. Each costs a worker thread (~10-12 MB of RSS: a V8 isolate)
 * plus its mappings of guest memory (address space, not RSS); 32 VMs per back-end process is
 * more than a host usually runs, and bounds the memory a misbehaving client can make us spend.
 */
export const DEFAULT_MAX_CONNECTIONS = 32;

/** One connection, as the metrics endpoint and `vcrypto stats` see it. */
export interface ConnectionInfo {
  readonly id: number;
  /** The front-end's pid (SO_PEERCRED); undefined if the kernel did not say. */
  readonly pid: number | undefined;
  /** Date.now() at accept. */
  readonly since: number;
  readonly stats: StatsSnapshot;
}

interface Connection {
  readonly id: number;
  readonly pid: number | undefined;
  readonly since: number;
  readonly worker: Worker;
  readonly stopFd: number;
  readonly socketFd: number;
  readonly stats: DeviceStats;
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
  /** A stale socket file (left by a crashed device) was replaced at start. */
  readonly replacedStaleSocket: boolean;
  readonly #listener: UnixSocket;
  readonly #identity: FileIdentity | null;
  readonly #stopFd: number;
  readonly #opts: BackendServerOptions;
  readonly #maxConnections: number;
  readonly #connections = new Map<number, Connection>();
  /** The statistics of every connection that has closed, summed (device totals = this + live ones). */
  #closedTotals: StatsSnapshot = snapshotOf([]);
  #refused = 0;
  #nextId = 1;
  #closing: Promise<'removed' | 'gone' | 'replaced'> | undefined;
  readonly #acceptLoop: Promise<void>;

  private constructor(path: string, listener: UnixSocket, replaced: boolean, opts: BackendServerOptions) {
    this.path = path;
    this.replacedStaleSocket = replaced;
    this.#listener = listener;
    this.#identity = fileIdentity(path);
    this.#opts = opts;
    this.#maxConnections = opts.maxConnections ?? DEFAULT_MAX_CONNECTIONS;
    this.#stopFd = createEventFd();
    this.#acceptLoop = this.#accept();
  }

  /**
   * Listens on `path`. A stale socket file is replaced; a live device there is SocketInUseError;
   * any other existing file is an error.
   */
  static listen(path: string, opts: BackendServerOptions): VhostUserBackendServer {
    const replaced = claimSocketPath(path);
    return new VhostUserBackendServer(path, listenUnix(path), replaced, opts);
  }

  /** Connections currently served. */
  get connectionCount(): number {
    return this.#connections.size;
  }

  /** Connections refused so far (over maxConnections). */
  get refusedConnections(): number {
    return this.#refused;
  }

  /** Live connections with their statistics (read from shared memory: never waits for a worker). */
  connections(): ConnectionInfo[] {
    return [...this.#connections.values()].map((c) => ({ id: c.id, pid: c.pid, since: c.since, stats: c.stats.snapshot() }));
  }

  /** The device's totals: every connection, live or closed (sessions-open: live ones only). */
  totals(): StatsSnapshot {
    const live = [...this.#connections.values()].map((c) => c.stats.snapshot());
    return sumSnapshots([this.#closedTotals, ...live]);
  }

  #log(fields: LogFields): void {
    this.#opts.log(logLine(fields), fields);
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
        this.#log({ level: 'error', msg: `accept failed: ${(err as Error).message}` });
        continue;
      }
      if (sock === null) continue;
      let pid: number | undefined;
      try {
        pid = peerCredentials(sock.fd).pid;
      } catch {
        pid = undefined;
      }
      if (this.#connections.size >= this.#maxConnections) {
        this.#refused++;
        sock.close();
        this.#log({
          level: 'warn',
          msg: `connection refused: ${this.#maxConnections} connections already served (--max-connections)`,
          ...(pid !== undefined ? { pid } : {}),
        });
        continue;
      }
      this.#spawn(sock.detach(), pid);
    }
  }

  #spawn(socketFd: number, pid: number | undefined): void {
    const id = this.#nextId++;
    const stopFd = createEventFd();
    const statsBuffer = new SharedArrayBuffer(DeviceStats.byteLength());
    const o = this.#opts;
    const data: ConnectionWorkerData = {
      id,
      socketFd,
      stopFd,
      stats: statsBuffer,
      dataQueues: o.dataQueues,
      maxSessions: o.maxSessions,
      verbose: o.verbose ?? false,
      ...(o.pollMicros !== undefined ? { pollMicros: o.pollMicros } : {}),
      ...(o.throttleOps ? { throttleOps: o.throttleOps } : {}),
      ...(o.throttleBps ? { throttleBps: o.throttleBps } : {}),
    };
    const worker = startWorker(workerUrl(), data);
    let resolveExit!: () => void;
    const exited = new Promise<void>((resolve) => (resolveExit = resolve));
    const stats = new DeviceStats(statsBuffer);
    const conn: Connection = { id, pid, since: Date.now(), worker, stopFd, socketFd, stats, closedReported: false, exited };
    this.#connections.set(id, conn);
    const who = { connection: id, ...(pid !== undefined ? { pid } : {}) };
    this.#log({ level: 'info', msg: 'accepted', ...who });
    worker.on('message', (msg: FromConnectionWorker) => {
      if (msg.type === 'log') this.#log({ ...msg.fields, ...who });
      else conn.closedReported = true;
    });
    worker.on('error', (err) => this.#log({ level: 'error', msg: `worker failed: ${err.message}`, ...who }));
    worker.on('exit', () => {
      // A worker that died before releasing its socket: close it here so the peer sees EOF.
      if (!conn.closedReported) closeFd(socketFd);
      closeFd(stopFd);
      const final = stats.snapshot();
      final['sessions-open'] = 0; // released with the connection
      this.#closedTotals = sumSnapshots([this.#closedTotals, final]);
      this.#connections.delete(id);
      resolveExit();
      this.#opts.onConnectionClosed?.(id);
    });
  }

  /**
   * Stops accepting, stops every connection, removes the socket file if it is still ours (returns
   * what happened to it). Idempotent.
   */
  close(): Promise<'removed' | 'gone' | 'replaced'> {
    this.#closing ??= (async () => {
      signalEventFd(this.#stopFd);
      await this.#acceptLoop;
      const all = [...this.#connections.values()];
      for (const c of all) signalEventFd(c.stopFd);
      await Promise.all(all.map((c) => c.exited));
      this.#listener.close();
      closeFd(this.#stopFd);
      return releaseSocketPath(this.path, this.#identity);
    })();
    return this.#closing;
  }
}

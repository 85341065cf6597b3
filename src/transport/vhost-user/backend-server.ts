/**
 * `vcrypto device --socket PATH`: the vhost-user back-end server. The main thread listens on the
 * Unix socket (QEMU connects as the client) and waits for connections with poll(2) on a koffi async
 * thread (one libuv threadpool thread; the event loop stays free, nothing spins); each accepted
 * connection gets its own worker thread (connection-worker.ts; threads are pooled: a thread serves
 * one connection at a time, and up to MAX_IDLE_WORKERS idle ones wait for the next connections) and
 * its own device instance, so one connection's failure never affects another.
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
import type { ConnectionWorkerData, FromConnectionWorker, ToConnectionWorker } from './worker-messages.js';
import { type BackendLog, type LogFields, logLine } from './backend-log.js';
import { claimSocketPath, fileIdentity, releaseSocketPath, type FileIdentity } from './backend-socket-path.js';

export interface BackendServerOptions {
  /** Data queues per device (vrings 0..N-1; vring N is the control queue). */
  readonly dataQueues: number;
  /** Session table bound per connection. */
  readonly maxSessions: number;
  /** The device's max_size (bytes a request's variable part may have). Default DEFAULT_MAX_SIZE. */
  readonly maxSize?: number;
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
 * Default bound on live connections. Each costs a worker thread (~12.7 MB of RSS measured: a V8 isolate)
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
  readonly stopFd: number;
  readonly socketFd: number;
  readonly stats: DeviceStats;
  /** Resolves once the connection is closed and everything it held released. */
  readonly exited: Promise<void>;
  readonly finished: () => void;
}

/** A connection worker thread, serving one connection or idle in the pool. */
interface PooledWorker {
  readonly worker: Worker;
  current: Connection | null;
  readonly exited: Promise<void>;
}

/**
 * Idle connection threads kept for the next connections. Threads are reused rather than started per
 * connection: every thread that loaded koffi's libc bindings and exited left about 32 KB of RSS
 * behind (measured: 1,000 such threads, +40 MB; 1,000 empty threads, +3 MB after the first 500),
 * which made a device's RSS grow with every connect/disconnect (61 -> 123 MB over 5,000 cycles).
 */
export const MAX_IDLE_WORKERS = 4;

function workerUrl(): URL {
  return new URL('./connection-worker' + (import.meta.url.endsWith('.ts') ? '.ts' : '.js'), import.meta.url);
}

/**
 * Built code (dist/) runs the .js worker directly. From source (tests under tsx) the worker first
 * registers tsx's loader, then imports the .ts entry: `--import tsx` in a worker's execArgv does not
 * apply to the worker's own entry module on Node 20.
 */
function startWorker(url: URL): Worker {
  if (!url.pathname.endsWith('.ts')) return new Worker(url);
  const api = import.meta.resolve('tsx/esm/api');
  const bootstrap = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(url.href)}); });`;
  return new Worker(bootstrap, { eval: true });
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
  readonly #workers = new Set<PooledWorker>();
  readonly #idle: PooledWorker[] = [];
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
      ...(o.maxSize !== undefined ? { maxSize: o.maxSize } : {}),
      verbose: o.verbose ?? false,
      ...(o.pollMicros !== undefined ? { pollMicros: o.pollMicros } : {}),
      ...(o.throttleOps ? { throttleOps: o.throttleOps } : {}),
      ...(o.throttleBps ? { throttleBps: o.throttleBps } : {}),
    };
    let finished!: () => void;
    const exited = new Promise<void>((resolve) => (finished = resolve));
    const conn: Connection = { id, pid, since: Date.now(), stopFd, socketFd, stats: new DeviceStats(statsBuffer), exited, finished };
    this.#connections.set(id, conn);
    this.#log({ level: 'info', msg: 'accepted', ...this.#who(conn) });
    const pooled = this.#idle.pop() ?? this.#startWorker();
    pooled.current = conn;
    pooled.worker.postMessage({ type: 'serve', data } satisfies ToConnectionWorker);
  }

  #who(c: Connection): { connection: number; pid?: number } {
    return { connection: c.id, ...(c.pid !== undefined ? { pid: c.pid } : {}) };
  }

  #startWorker(): PooledWorker {
    const worker = startWorker(workerUrl());
    let resolveExit!: () => void;
    const pooled: PooledWorker = { worker, current: null, exited: new Promise<void>((resolve) => (resolveExit = resolve)) };
    this.#workers.add(pooled);
    worker.on('message', (msg: FromConnectionWorker) => {
      const c = pooled.current;
      if (c === null) return;
      if (msg.type === 'log') {
        this.#log({ ...msg.fields, ...this.#who(c) });
        return;
      }
      // 'closed': the worker released the socket, fds and mappings; it is free for the next one.
      pooled.current = null;
      this.#finish(c, true);
      if (this.#closing === undefined && this.#idle.length < MAX_IDLE_WORKERS) this.#idle.push(pooled);
      else void worker.terminate();
    });
    worker.on('error', (err) => {
      const c = pooled.current;
      this.#log({ level: 'error', msg: `worker failed: ${err.message}`, ...(c !== null ? this.#who(c) : {}) });
    });
    worker.on('exit', () => {
      this.#workers.delete(pooled);
      const at = this.#idle.indexOf(pooled);
      if (at >= 0) this.#idle.splice(at, 1);
      // A worker that died in the middle of a connection: close its socket here so the peer sees EOF.
      if (pooled.current !== null) this.#finish(pooled.current, false);
      pooled.current = null;
      resolveExit();
    });
    return pooled;
  }

  /** The connection is over; `released`: its worker closed the socket (else it is closed here). */
  #finish(c: Connection, released: boolean): void {
    if (!released) closeFd(c.socketFd);
    closeFd(c.stopFd);
    const final = c.stats.snapshot();
    final['sessions-open'] = 0; // released with the connection
    this.#closedTotals = sumSnapshots([this.#closedTotals, final]);
    this.#connections.delete(c.id);
    c.finished();
    this.#opts.onConnectionClosed?.(c.id);
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
      const workers = [...this.#workers];
      for (const w of workers) void w.worker.terminate();
      await Promise.all(workers.map((w) => w.exited));
      this.#listener.close();
      closeFd(this.#stopFd);
      return releaseSocketPath(this.path, this.#identity);
    })();
    return this.#closing;
  }
}

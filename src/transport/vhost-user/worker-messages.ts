/** Messages between the back-end server (main thread) and a connection worker. */
import type { LogFields } from './backend-log.js';

export interface ConnectionWorkerData {
  /** Connection number (for log lines). */
  readonly id: number;
  /** The accepted socket's fd: the worker owns it (closes it when done). */
  readonly socketFd: number;
  /** An eventfd owned by the server: signalled to stop the worker. */
  readonly stopFd: number;
  /** The connection's statistics (one DeviceStats block): the worker writes, the server reads. */
  readonly stats: SharedArrayBuffer;
  readonly dataQueues: number;
  readonly maxSessions: number;
  /** The device's max_size; undefined = the default. */
  readonly maxSize?: number;
  /** Log every message received (request, flags, size, fd count, vring index, session layout). */
  readonly verbose: boolean;
  /** Bound of the adaptive polling window after a completion (µs); undefined = the default. */
  readonly pollMicros?: number;
  /** Token-bucket rates (per second); undefined = unlimited. */
  readonly throttleOps?: number;
  readonly throttleBps?: number;
}

/** server -> pooled worker: serve this connection (the worker serves one at a time). */
export type ToConnectionWorker = { readonly type: 'serve'; readonly data: ConnectionWorkerData };

export type FromConnectionWorker =
  /** One event; the server adds the connection id and the front-end's pid. */
  | { readonly type: 'log'; readonly fields: LogFields }
  /** Sent last: everything (socket, fds, mappings) has been released. */
  | { readonly type: 'closed'; readonly reason: 'eof' | 'stopped' | 'violation' | 'error' };

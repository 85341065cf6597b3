/** Messages between the back-end server (main thread) and a connection worker. */

export interface ConnectionWorkerData {
  /** Connection number (for log lines). */
  readonly id: number;
  /** The accepted socket's fd: the worker owns it (closes it when done). */
  readonly socketFd: number;
  /** An eventfd owned by the server: signalled to stop the worker. */
  readonly stopFd: number;
  readonly dataQueues: number;
  readonly maxSessions: number;
  /** Log every message received (request, flags, size, fd count). */
  readonly verbose: boolean;
  /** Bound of the adaptive polling window after a completion (µs); undefined = the default. */
  readonly pollMicros?: number;
}

export type FromConnectionWorker =
  | { readonly type: 'log'; readonly line: string }
  /** Sent last: everything (socket, fds, mappings) has been released. */
  | { readonly type: 'closed'; readonly reason: 'eof' | 'stopped' | 'violation' | 'error' };

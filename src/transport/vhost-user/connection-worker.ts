/**
 * Worker thread serving vhost-user connections, one at a time (see backend-connection.ts for the
 * design). For each connection the server hands it ('serve'), it adopts the accepted socket fd,
 * builds a fresh device instance (connections share nothing; its statistics go to the block the
 * server reads), runs the connection until EOF, a stop request or a violation, and releases
 * everything before it reports 'closed'; then it waits for the next one. No exception escapes: a
 * violation or a bug ends that connection only.
 */
import { parentPort } from 'node:worker_threads';
import { UnixSocket } from '../../sys/unix-socket.js';
import { SysError, errnoValues } from '../../sys/libc.js';
import { DeviceStats, STAT } from '../../device/device-stats.js';
import { VhostUserChannel } from './channel.js';
import { VhostUserBackendConnection } from './backend-connection.js';
import { VhostUserProtocolError } from './message-table.js';
import { createBackendDevice } from './backend-device.js';
import type { LogFields } from './backend-log.js';
import type { ConnectionWorkerData, FromConnectionWorker, ToConnectionWorker } from './worker-messages.js';

function post(msg: FromConnectionWorker): void {
  parentPort?.postMessage(msg);
}

/** The front-end went away while we were writing to it: a disconnect, not our failure. */
function isPeerGone(err: unknown): err is SysError {
  return err instanceof SysError && (err.errno === errnoValues.EPIPE || err.errno === errnoValues.ECONNRESET);
}

/** Serves one connection to its end (synchronously: this thread is its data path). Never throws. */
function serveConnection(data: ConnectionWorkerData): void {
  const log = (fields: LogFields): void => post({ type: 'log', fields });
  const socket = new UnixSocket(data.socketFd);
  const stats = new DeviceStats(data.stats);
  let connection: VhostUserBackendConnection | undefined;
  let reason: 'eof' | 'stopped' | 'violation' | 'error' = 'error';
  const summary = (): string =>
    `after ${connection?.messages ?? 0} messages; ${connection?.pollHits ?? 0} requests found by polling; ${stats.values[STAT.requests]} requests served`;
  try {
    const channel = new VhostUserChannel(socket);
    const device = createBackendDevice({ dataQueues: data.dataQueues, maxSessions: data.maxSessions, ...(data.maxSize !== undefined ? { maxSize: data.maxSize } : {}), stats });
    connection = new VhostUserBackendConnection(channel, device, {
      dataQueues: data.dataQueues,
      verbose: data.verbose,
      ...(data.pollMicros !== undefined ? { pollMicros: data.pollMicros } : {}),
      ...(data.throttleOps !== undefined ? { throttleOps: data.throttleOps } : {}),
      ...(data.throttleBps !== undefined ? { throttleBps: data.throttleBps } : {}),
      log: (msg, extra) => log({ level: 'debug', msg, ...extra }),
    });
    reason = connection.run(data.stopFd);
    // Kept for tools that grep it: "N requests found by polling".
    log({ level: 'info', msg: `${reason === 'eof' ? 'front-end disconnected' : 'stopped'} ${summary()}` });
  } catch (err) {
    if (err instanceof VhostUserProtocolError) {
      reason = 'violation';
      log({ level: 'warn', msg: `closed: protocol violation: ${err.message}` });
    } else if (isPeerGone(err)) {
      reason = 'eof';
      log({ level: 'info', msg: `front-end disconnected with replies pending (${err.message}) ${summary()}`, errno: err.errno });
    } else {
      reason = 'error';
      log({ level: 'error', msg: `closed: internal error: ${(err as Error)?.message ?? String(err)}` });
    }
  } finally {
    try {
      connection?.close();
    } finally {
      socket.close();
      post({ type: 'closed', reason });
    }
  }
}

// One connection after another, as the server hands them over (a pooled thread: starting a thread
// per connection cost about 32 KB of RSS per connection that was never given back, see
// backend-server.ts).
parentPort?.on('message', (msg: ToConnectionWorker) => {
  if (msg.type === 'serve') serveConnection(msg.data);
});

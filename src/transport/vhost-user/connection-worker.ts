/**
 * Worker thread serving ONE vhost-user connection (see backend-connection.ts for the design). It
 * adopts the accepted socket fd, builds a fresh device instance (connections share nothing; its
 * statistics go to the block the server reads), runs the connection until EOF, a stop request or a
 * violation, and releases everything before it reports 'closed'. No exception escapes: a violation
 * or a bug ends this connection only.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { UnixSocket } from '../../sys/unix-socket.js';
import { SysError, errnoValues } from '../../sys/libc.js';
import { DeviceStats, STAT } from '../../device/device-stats.js';
import { VhostUserChannel } from './channel.js';
import { VhostUserBackendConnection } from './backend-connection.js';
import { VhostUserProtocolError } from './message-table.js';
import { createBackendDevice } from './backend-device.js';
import type { LogFields } from './backend-log.js';
import type { ConnectionWorkerData, FromConnectionWorker } from './worker-messages.js';

const data = workerData as ConnectionWorkerData;

function post(msg: FromConnectionWorker): void {
  parentPort?.postMessage(msg);
}

function log(fields: LogFields): void {
  post({ type: 'log', fields });
}

/** The front-end went away while we were writing to it: a disconnect, not our failure. */
function isPeerGone(err: unknown): err is SysError {
  return err instanceof SysError && (err.errno === errnoValues.EPIPE || err.errno === errnoValues.ECONNRESET);
}

const socket = new UnixSocket(data.socketFd);
const stats = new DeviceStats(data.stats);
let connection: VhostUserBackendConnection | undefined;
let reason: 'eof' | 'stopped' | 'violation' | 'error' = 'error';
function summary(): string {
  const v = stats.values;
  return `after ${connection?.messages ?? 0} messages; ${connection?.pollHits ?? 0} requests found by polling; ${v[STAT.requests]} requests served`;
}
try {
  const channel = new VhostUserChannel(socket);
  const device = createBackendDevice({ dataQueues: data.dataQueues, maxSessions: data.maxSessions, stats });
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
  connection?.close();
  socket.close();
  post({ type: 'closed', reason });
}

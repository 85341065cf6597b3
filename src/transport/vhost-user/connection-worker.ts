/**
 * Worker thread serving ONE vhost-user connection (see backend-connection.ts for the design). It
 * adopts the accepted socket fd, builds a fresh device instance (connections share nothing), runs
 * the connection until EOF, a stop request or a violation, and releases everything before it
 * reports 'closed'. No exception escapes: a violation or a bug ends this connection only.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { UnixSocket } from '../../sys/unix-socket.js';
import { VhostUserChannel } from './channel.js';
import { VhostUserBackendConnection } from './backend-connection.js';
import { VhostUserProtocolError } from './message-table.js';
import { createBackendDevice } from './backend-device.js';
import type { ConnectionWorkerData, FromConnectionWorker } from './worker-messages.js';

const data = workerData as ConnectionWorkerData;

function post(msg: FromConnectionWorker): void {
  parentPort?.postMessage(msg);
}

const prefix = `connection ${data.id}`;
const socket = new UnixSocket(data.socketFd);
let connection: VhostUserBackendConnection | undefined;
let reason: 'eof' | 'stopped' | 'violation' | 'error' = 'error';
try {
  const channel = new VhostUserChannel(socket);
  const device = createBackendDevice({ dataQueues: data.dataQueues, maxSessions: data.maxSessions });
  connection = new VhostUserBackendConnection(channel, device, {
    dataQueues: data.dataQueues,
    verbose: data.verbose,
    ...(data.pollMicros !== undefined ? { pollMicros: data.pollMicros } : {}),
    log: (line) => post({ type: 'log', line: `${prefix}: ${line}` }),
  });
  reason = connection.run(data.stopFd);
  post({ type: 'log', line: `${prefix}: ${reason === 'eof' ? 'front-end disconnected' : 'stopped'} after ${connection.messages} messages; ${connection.pollHits} requests found by polling` });
} catch (err) {
  if (err instanceof VhostUserProtocolError) {
    reason = 'violation';
    post({ type: 'log', line: `${prefix}: closed: protocol violation: ${err.message}` });
  } else {
    reason = 'error';
    post({ type: 'log', line: `${prefix}: closed: internal error: ${(err as Error)?.message ?? String(err)}` });
  }
} finally {
  connection?.close();
  socket.close();
  post({ type: 'closed', reason });
}

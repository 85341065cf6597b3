/**
 * `--device socket:PATH`: the session API of a driver service (`vcrypto driver --socket PATH`) in
 * this process. The service owns the device; this connection owns its handles and sessions, which the
 * service closes if this process goes away. While no call is outstanding the socket does not keep the
 * process alive (as an idle device does not).
 */
import { connect } from 'node:net';
import { CryptoError, type CryptoDevice } from '../../driver/api.js';
import { connectDevice } from '../message-port/connect-device.js';
import { SERVICE_NAME, SERVICE_VERSION, type ServiceHello } from './driver-service.js';
import { SocketPort } from './socket-port.js';

const HELLO_TIMEOUT_MS = 10_000;

function isHello(m: unknown): m is ServiceHello {
  if (typeof m !== 'object' || m === null) return false;
  const h = m as Record<string, unknown>;
  const info = h.info as Record<string, unknown> | undefined;
  return h.service === SERVICE_NAME && h.version === SERVICE_VERSION && typeof info === 'object' && info !== null && typeof info.description === 'string' && typeof info.maxSize === 'bigint';
}

export async function connectSocketDevice(path: string): Promise<CryptoDevice> {
  const socket = connect(path);
  const port = new SocketPort(socket);
  const hello = await new Promise<ServiceHello>((resolve, reject) => {
    const timer = setTimeout(() => fail(`no answer from the driver service within ${HELLO_TIMEOUT_MS / 1000} s`), HELLO_TIMEOUT_MS);
    let settled = false;
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      reject(new CryptoError('EIO', `socket:${path}: ${why}`));
      port.close();
    };
    socket.once('error', (err: NodeJS.ErrnoException) =>
      fail(err.code === 'ENOENT' || err.code === 'ECONNREFUSED' ? `no driver service (${err.code}): start 'vcrypto driver --socket ${path}'` : err.message),
    );
    port.once('close', () => fail('the driver service closed the connection'));
    port.on('message', function first(m: unknown) {
      port.off('message', first);
      clearTimeout(timer);
      if (!isHello(m)) return fail('not a vcrypto driver service (unexpected greeting)');
      settled = true;
      resolve(m);
    });
  });
  socket.removeAllListeners('error');
  socket.on('error', () => undefined);
  port.removeAllListeners('close');
  // Keep the process alive only while calls are outstanding.
  let outstanding = 0;
  socket.unref();
  const post = port.postMessage.bind(port);
  port.postMessage = (message: unknown) => {
    post(message);
    if (outstanding++ === 0) socket.ref();
  };
  port.on('message', () => {
    if (outstanding > 0 && --outstanding === 0) socket.unref();
  });
  const behind = hello.info;
  return connectDevice(port, {
    ...behind,
    spec: `socket:${path}`,
    description: `driver service ${path} -> ${behind.description}`,
  });
}

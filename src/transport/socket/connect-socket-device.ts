/**
 * `--device socket:PATH`: a connection to the driver service (`vcrypto driver --socket PATH`,
 * serve-device-on-socket.ts). The session API is the `connectDevice` proxy of
 * transport/message-port/ over a `SocketPort`: handles and sessions live in the service, owned by this
 * connection, and are freed by the service when the connection closes (or this process dies).
 *
 * The service speaks first (its hello: the device behind it and its limits); a peer that does not
 * (e.g. a vhost-user back-end's socket) fails the connect after `helloTimeoutMs`.
 * Pending calls fail with EIO when the service goes away. The process may exit while the device is
 * idle (the socket is ref'ed only while requests are in flight).
 */
import { createConnection, type Socket } from 'node:net';
import { CryptoError, type CryptoDevice, type DeviceInfo } from '../../driver/api.js';
import { connectDevice } from '../message-port/connect-device.js';
import { SocketPort } from './socket-port.js';
import { isServiceHello } from './socket-wire.js';

export interface SocketDeviceOptions {
  /** How long to wait for the service's hello (default 5000 ms). */
  helloTimeoutMs?: number;
}

export async function connectSocketDevice(path: string, opts: SocketDeviceOptions = {}): Promise<CryptoDevice> {
  const spec = `socket:${path}`;
  const socket = await new Promise<Socket>((resolve, reject) => {
    const s = createConnection({ path });
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', (err: NodeJS.ErrnoException) =>
      reject(new CryptoError('EIO', `${spec}: cannot connect (${err.code ?? err.message}); is \`vcrypto driver --socket ${path}\` running?`, { cause: err })),
    );
  });
  let protocolError: string | undefined;
  const port = new SocketPort(socket, { refWhileBusy: true, onProtocolError: (err) => (protocolError = err.message) });
  const timeoutMs = opts.helloTimeoutMs ?? 5000;
  const info = await new Promise<DeviceInfo>((resolve, reject) => {
    const fail = (why: string) => {
      clearTimeout(timer);
      port.off('message', onHello);
      port.close();
      reject(new CryptoError('EIO', `${spec}: ${why}`));
    };
    const onHello = (msg: unknown) => {
      if (!isServiceHello(msg)) return fail('not a vcrypto driver service (unexpected first message)');
      clearTimeout(timer);
      port.off('message', onHello);
      port.off('close', onClose);
      resolve({ ...msg.info, spec, description: `driver service ${path} → ${msg.info.description}` });
    };
    const onClose = () => fail(`the service closed the connection${protocolError ? ` (${protocolError})` : ''}`);
    const timer = setTimeout(() => fail(`no hello from the service within ${timeoutMs} ms (not a vcrypto driver service?)`), timeoutMs);
    port.on('message', onHello);
    port.once('close', onClose);
  });
  return connectDevice(port, Object.freeze(info));
}

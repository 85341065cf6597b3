/**
 * `--device vhost-user:PATH`: our virtio-crypto driver over the vhost-user front-end transport,
 * talking to `vcrypto device --socket PATH` in another process. Requests are submitted exactly as
 * over the embedded transport; the process may exit while the device is idle.
 */
import type { CryptoDevice } from '../../driver/api.js';
import { CryptoError } from '../../driver/api.js';
import { VirtioCryptoDriver } from '../../driver/virtio-crypto-driver.js';
import { VhostUserFrontendTransport, type FrontendTransportOptions } from './frontend-transport.js';

export interface VhostUserDeviceOptions extends FrontendTransportOptions {
  /** Queue size the driver uses (power of 2, ≤ 1024). Default 256. */
  readonly queueSize?: number;
  /** The driver's deadline for each request, ms (0 = none); see VirtioCryptoDriverOptions.requestTimeoutMs. */
  readonly requestTimeoutMs?: number;
}

export async function connectVhostUserDevice(path: string, opts: VhostUserDeviceOptions = {}): Promise<CryptoDevice> {
  let transport: VhostUserFrontendTransport;
  try {
    transport = await VhostUserFrontendTransport.connect(path, opts);
  } catch (err) {
    throw new CryptoError('EIO', `vhost-user:${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return await VirtioCryptoDriver.create(transport, {
      spec: `vhost-user:${path}`,
      queueSize: opts.queueSize ?? 256,
      ...(opts.requestTimeoutMs !== undefined && { requestTimeoutMs: opts.requestTimeoutMs }),
      onBusyChange: (busy) => (busy ? transport.hold() : transport.release()),
    });
  } catch (err) {
    await transport.close();
    throw err;
  }
}

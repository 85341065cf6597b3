/**
 * `--device vhost-user:PATH`: our virtio-crypto driver over the vhost-user front-end transport,
 * talking to a vhost-user crypto back-end (`vcrypto device --socket PATH`, or any back-end that
 * follows QEMU's contract) in another process. Requests are submitted exactly as over the embedded
 * transport; the process may exit while the device is idle.
 *
 * Sessions: `sessions` option, else VCRYPTO_VHOST_USER_SESSIONS from the environment, else
 * 'qemu-7.1' (see frontend-transport.ts): 'qemu-7.1' / 'qemu-8.1' = QEMU's session messages in that
 * QEMU's layout (cipher and chaining sessions); 'controlq' = our extension for `vcrypto device`
 * (every session kind: hash, HMAC, AES-GCM too).
 */
import type { CryptoDevice } from '../../driver/api.js';
import { CryptoError } from '../../driver/api.js';
import { VirtioCryptoDriver } from '../../driver/virtio-crypto-driver.js';
import { VHOST_USER_SESSION_MODES, VhostUserFrontendTransport, type FrontendTransportOptions, type VhostUserSessionMode } from './frontend-transport.js';

/** The environment variable that picks the session mode for `--device vhost-user:PATH`. */
export const VHOST_USER_SESSIONS_ENV = 'VCRYPTO_VHOST_USER_SESSIONS';

/** The session mode VCRYPTO_VHOST_USER_SESSIONS names, or undefined if unset; EINVAL if unknown. */
export function sessionModeFromEnv(env: NodeJS.ProcessEnv = process.env): VhostUserSessionMode | undefined {
  const raw = env[VHOST_USER_SESSIONS_ENV];
  if (raw === undefined || raw === '') return undefined;
  const mode = VHOST_USER_SESSION_MODES.find((m) => m === raw);
  if (mode === undefined) {
    throw new CryptoError('EINVAL', `${VHOST_USER_SESSIONS_ENV}=${JSON.stringify(raw.slice(0, 40))}: expected ${VHOST_USER_SESSION_MODES.join(', ')}`);
  }
  return mode;
}

export interface VhostUserDeviceOptions extends FrontendTransportOptions {
  /** Queue size the driver uses (power of 2, ≤ 1024). Default 256. */
  readonly queueSize?: number;
  /** The driver's deadline for each request, ms (0 = none); see VirtioCryptoDriverOptions.requestTimeoutMs. */
  readonly requestTimeoutMs?: number;
}

export async function connectVhostUserDevice(path: string, opts: VhostUserDeviceOptions = {}): Promise<CryptoDevice> {
  let transport: VhostUserFrontendTransport;
  const sessions = opts.sessions ?? sessionModeFromEnv();
  try {
    transport = await VhostUserFrontendTransport.connect(path, { ...opts, ...(sessions !== undefined && { sessions }) });
  } catch (err) {
    throw new CryptoError('EIO', `vhost-user:${path}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return await VirtioCryptoDriver.create(transport, {
      spec: `vhost-user:${path}`,
      queueSize: opts.queueSize ?? 256,
      ...(opts.requestTimeoutMs !== undefined && { requestTimeoutMs: opts.requestTimeoutMs }),
    });
  } catch (err) {
    await transport.close();
    throw err;
  }
}

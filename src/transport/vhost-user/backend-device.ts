/**
 * The device model behind one back-end connection: the project's VirtioCryptoDevice, unchanged,
 * plus the mapping of vhost-user session messages onto it.
 */
import { randomBytes } from 'node:crypto';
import { VirtioCryptoDevice } from '../../device/virtio-crypto-device.js';
import { VIRTIO_CRYPTO_STATUS } from '../../spec/virtio-crypto.js';
import type { CryptoSessionRequest } from '../../wire/vhost-user.js';
import type { DeviceStats } from '../../device/device-stats.js';
import type { BackendDeviceModel } from './backend-connection.js';

export interface BackendDeviceOptions {
  readonly dataQueues: number;
  readonly maxSessions: number;
  /** config max_size (default DEFAULT_MAX_SIZE). */
  readonly maxSize?: number;
  /** Where the device counts (default: a private block). */
  readonly stats?: DeviceStats;
}

function randomBytesU64(): bigint {
  return randomBytes(8).readBigUInt64LE(0);
}

export function createBackendDevice(opts: BackendDeviceOptions): BackendDeviceModel {
  const device = new VirtioCryptoDevice({
    maxDataQueues: opts.dataQueues,
    maxSessions: opts.maxSessions,
    ...(opts.maxSize !== undefined ? { maxSize: opts.maxSize } : {}),
    ...(opts.stats !== undefined ? { stats: opts.stats } : {}),
    // A random start in [1, 2^62]: a restarted back-end (QEMU reconnect=N) must not give a new
    // session an id the guest still holds for an old one (its requests must fail INVSESS, not be
    // served with another session's key). 2^62 leaves 2^62 ids before the table wraps.
    firstSessionId: (randomBytesU64() >> 2n) + 1n,
  });
  return {
    processControl: (chain) => device.processControl(chain),
    processData: (chain) => device.processData(chain),
    createSessionFromMessage(request: CryptoSessionRequest): bigint {
      // QEMU 8.1+ forwards akcipher sessions too; this device has no akcipher service.
      if (request.kind !== 'sym') return -BigInt(VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_NOTSUPP);
      return device.createSymSession(request.sym);
    },
    closeSession: (id) => {
      device.destroySession(id);
    },
    reset: () => device.reset(),
    stats: device.stats,
  };
}

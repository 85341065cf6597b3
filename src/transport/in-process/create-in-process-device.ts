/**
 * `--device virtio` (the default): our virtio-crypto driver talking to the virtio-crypto device on a
 * worker thread through the embedded transport. The process exits normally once nothing is in flight
 * (the worker is only ref'ed while requests are outstanding); `close()` stops the worker.
 */
import type { CryptoDevice } from '../../driver/api.js';
import { VirtioCryptoDriver } from '../../driver/virtio-crypto-driver.js';
import { availableParallelism } from 'node:os';
import { InProcessTransport } from './in-process-transport.js';
import { MAX_DEVICE_THREADS } from './registers.js';
import type { StatsSnapshot } from '../../device/device-stats.js';

export interface InProcessDeviceOptions {
  /** Data queues (max_dataqueues). Default 2. */
  dataQueues?: number;
  /**
   * Device worker threads; data queue i is served by thread i mod deviceThreads. Default: one per
   * data queue, at most one per CPU (os.availableParallelism()) and MAX_DEVICE_THREADS.
   */
  deviceThreads?: number;
  /** Queue size the driver uses (power of 2). Default 256. */
  queueSize?: number;
  /** Guest memory bytes (rings + request buffers). Default 32 MiB. */
  memoryBytes?: number;
  /** Session table size of the device. Default 1024. */
  maxSessions?: number;
  /**
   * Config max_size: the bound on a request's whole variable part (§5.9.5). Default 2 MiB + 128 bytes,
   * so that DeviceInfo.maxSize (the longest data every operation accepts) is 1 MiB.
   */
  maxSize?: bigint;
}

/** The transport behind each embedded device this module made (for embeddedDeviceStatistics). */
const transports = new WeakMap<CryptoDevice, InProcessTransport>();

/**
 * The statistics of an embedded device (`--device virtio`): requests and bytes per operation,
 * errors per status, sessions, malformed chains, interrupts (device-stats.ts), summed over its
 * threads; undefined for any other device. Read live from shared memory.
 */
export function embeddedDeviceStatistics(device: CryptoDevice): StatsSnapshot | undefined {
  return transports.get(device)?.statistics();
}

const DEFAULT_MAX_SIZE = 2n * 1024n * 1024n + 128n;

/** Two data queues: on two or more CPUs, two device threads encrypt in parallel. */
const DEFAULT_DATA_QUEUES = 2;

export async function createInProcessDevice(opts: InProcessDeviceOptions = {}): Promise<CryptoDevice> {
  const queueSize = opts.queueSize ?? 256;
  const dataQueues = opts.dataQueues ?? DEFAULT_DATA_QUEUES;
  const transport = await InProcessTransport.create({
    maxDataQueues: dataQueues,
    deviceThreads: opts.deviceThreads ?? Math.max(1, Math.min(dataQueues, availableParallelism(), MAX_DEVICE_THREADS)),
    queueMaxSize: Math.max(queueSize, 1024),
    ...(opts.memoryBytes !== undefined && { memoryBytes: opts.memoryBytes }),
    ...(opts.maxSessions !== undefined && { maxSessions: opts.maxSessions }),
    maxSize: opts.maxSize ?? DEFAULT_MAX_SIZE,
  });
  try {
    const device = await VirtioCryptoDriver.create(transport, {
      spec: 'virtio',
      queueSize,
      onBusyChange: (busy) => (busy ? transport.hold() : transport.release()),
    });
    transports.set(device, transport);
    return device;
  } catch (err) {
    await transport.close();
    throw err;
  }
}

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
import type { PollMode } from '../spare-cpu.js';

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
  /**
   * Guest memory bytes (rings + request buffers). Default 32 MiB plus room for one request of max_size:
   * address space only, the OS commits pages as requests first touch them.
   */
  memoryBytes?: number;
  /** Session table size of the device. Default 1024. */
  maxSessions?: number;
  /**
   * Config max_size: the bound on a request's whole variable part (§5.9.5). Default DEFAULT_MAX_SIZE
   * (512 MiB + 128 bytes), so that DeviceInfo.maxSize (the longest data every operation accepts) is
   * 256 MiB: `vcrypto dgst` hashes a 256 MiB file in one request.
   */
  maxSize?: bigint;
  /** Round-trip stage timestamps for the device threads (src/trace/latency-marks.ts; bench/breakdown.ts). */
  traceMarks?: SharedArrayBuffer;
  /** When the driver and the device threads may poll (spare-cpu.ts). Default: VCRYPTO_POLL, else auto. */
  pollMode?: PollMode;
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

/** The device's DEFAULT_MAX_SIZE (src/device/virtio-crypto-device.ts; not imported: the device code loads only in the worker). */
const DEFAULT_MAX_SIZE = 512n * 1024n * 1024n + 128n;
/** Rings and ordinary requests; a request of up to max_size comes on top. */
const BASE_MEMORY_BYTES = 32 * 1024 * 1024;

/** Two data queues: on two or more CPUs, two device threads encrypt in parallel. */
const DEFAULT_DATA_QUEUES = 2;

export async function createInProcessDevice(opts: InProcessDeviceOptions = {}): Promise<CryptoDevice> {
  const queueSize = opts.queueSize ?? 256;
  const dataQueues = opts.dataQueues ?? DEFAULT_DATA_QUEUES;
  const maxSize = opts.maxSize ?? DEFAULT_MAX_SIZE;
  // One request block: the 72-byte header, the variable part (at most max_size), alignment, the status.
  const memoryBytes = opts.memoryBytes ?? BASE_MEMORY_BYTES + Math.ceil((Number(maxSize) + 8192) / 65536) * 65536;
  const transport = await InProcessTransport.create({
    maxDataQueues: dataQueues,
    deviceThreads: opts.deviceThreads ?? Math.max(1, Math.min(dataQueues, availableParallelism(), MAX_DEVICE_THREADS)),
    queueMaxSize: Math.max(queueSize, 1024),
    memoryBytes,
    ...(opts.maxSessions !== undefined && { maxSessions: opts.maxSessions }),
    maxSize,
    ...(opts.traceMarks !== undefined && { traceMarks: opts.traceMarks }),
    ...(opts.pollMode !== undefined && { pollMode: opts.pollMode }),
  });
  try {
    const device = await VirtioCryptoDriver.create(transport, {
      spec: 'virtio',
      queueSize,
    });
    transports.set(device, transport);
    return device;
  } catch (err) {
    await transport.close();
    throw err;
  }
}

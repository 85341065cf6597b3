/**
 * Messages between the embedded transport (main thread) and the device worker. Only the rare
 * operations travel here (device activation and reset, failures); kicks and interrupts are
 * Atomics on the register block (registers.ts).
 */
import type { MessagePort } from 'node:worker_threads';
import type { QueueAddresses } from '../../driver/virtio-transport.js';

/** What the worker is started with (`workerData`). */
export interface DeviceWorkerData {
  readonly registers: SharedArrayBuffer;
  readonly memory: SharedArrayBuffer;
  readonly guestPhysAddr: bigint;
  /** The worker's end of the control channel (transferred). */
  readonly port: MessagePort;
  readonly maxDataQueues: number;
  readonly maxSessions: number;
  readonly maxSize: bigint;
  readonly queueMaxSize: number;
}

/** main -> worker */
export type ToDevice =
  | {
      readonly type: 'activate';
      readonly id: number;
      /** Negotiated feature bits (VIRTIO 1.2 §2.2). */
      readonly features: bigint;
      /** Queue i's addresses, or null if the driver did not set it up. */
      readonly queues: readonly (QueueAddresses | null)[];
    }
  | { readonly type: 'reset'; readonly id: number }
  | { readonly type: 'stop' };

/** worker -> main */
export type FromDevice =
  | {
      readonly type: 'ready';
      readonly deviceFeatures: bigint;
      readonly config: Uint8Array;
      readonly queueMaxSizes: readonly number[];
    }
  | { readonly type: 'reply'; readonly id: number; readonly error: string | null }
  /** The device set DEVICE_NEEDS_RESET (a broken queue). */
  | { readonly type: 'failure'; readonly message: string };

/**
 * Messages between the embedded transport (main thread) and the device worker. Only the rare
 * operations travel here (device activation and reset, failures); kicks and interrupts are
 * Atomics on the register block (registers.ts).
 */
import type { MessagePort } from 'node:worker_threads';
import type { QueueAddresses } from '../../driver/virtio-transport.js';
import type { SessionCopy } from '../../device/engine.js';
import type { PollMode } from '../spare-cpu.js';

/** What the worker is started with (`workerData`). */
export interface DeviceWorkerData {
  readonly registers: SharedArrayBuffer;
  readonly memory: SharedArrayBuffer;
  readonly guestPhysAddr: bigint;
  /** Thread 0: its end of the control channel with the transport (transferred). Others: none. */
  readonly port?: MessagePort;
  readonly maxDataQueues: number;
  /** Device threads in all, and which one this is (0: the one the transport talks to). */
  readonly threads: number;
  readonly thread: number;
  /** Threads 1..: their link to thread 0 (see device-worker.ts). */
  readonly peer?: PeerLink;
  readonly maxSessions: number;
  readonly maxSize: bigint;
  readonly queueMaxSize: number;
  /** Statistics: `threads` DeviceStats blocks (device-stats.ts), thread k's at k * DeviceStats.byteLength(). */
  readonly stats?: SharedArrayBuffer;
  /** Round-trip stage timestamps (src/trace/latency-marks.ts), when measuring a breakdown. */
  readonly traceMarks?: SharedArrayBuffer;
  /** When the device threads may poll their queues (spare-cpu.ts; default auto). */
  readonly pollMode?: PollMode;
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

/** Thread 0 <-> thread k (k >= 1): a port for messages and a small register block (PeerRegister). */
export interface PeerLink {
  readonly port: MessagePort;
  readonly registers: SharedArrayBuffer;
}

/** Words of a PeerLink's register block. */
export const PeerRegister = {
  /** Messages thread 0 has posted (it bumps this, then rings thread k's doorbell). */
  SENT: 0,
  /** Messages thread k has handled (it stores this, then notifies; thread 0 waits on it). */
  DONE: 1,
  /** Set by thread k when its queues broke (thread 0 reports the failure). */
  FAILED: 2,
  /** Set by thread k once it runs (thread 0 waits for it at start-up). */
  READY: 3,
} as const;
export const PEER_REGISTER_WORDS = 4;

/** thread 0 -> thread k */
export type ToPeer =
  | { readonly type: 'activate'; readonly features: bigint; readonly queues: readonly (QueueAddresses | null)[] }
  | { readonly type: 'reset' }
  | { readonly type: 'session'; readonly id: bigint; readonly copy: SessionCopy }
  | { readonly type: 'drop'; readonly id: bigint };

/** thread k -> thread 0: the outcome of each message, posted before DONE is stored. */
export interface FromPeer {
  readonly error: string | null;
}

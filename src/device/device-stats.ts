/**
 * The device's statistics: one block of counters per serving thread (a vhost-user connection's
 * worker, an embedded device thread), kept in a Float64Array that may live on a SharedArrayBuffer so
 * that another thread (the metrics endpoint, the embedded device's API) reads them live without a
 * message and without ever blocking the data path. Single writer (the serving thread); readers may
 * see a value one request old, never a torn one (8-byte aligned float64 stores are single
 * instructions on every platform Node runs on). Counts are exact integers up to 2^53.
 *
 * Names follow QEMU 8.0's cryptodev statistics (`query-stats` target "cryptodev":
 * sym-encrypt-ops, sym-decrypt-ops, sym-encrypt-bytes, sym-decrypt-bytes) where they exist; hash,
 * mac and aead are ours in the same shape. Bytes are the request's src_data_len (what QEMU counts).
 */
import { VIRTIO_CRYPTO_STATUS } from '../spec/virtio-crypto.js';
import type { ServeCounters } from '../virtqueue/serve-queue.js';

export interface StatDefinition {
  /** QEMU-style kebab-case name. */
  readonly name: string;
  readonly help: string;
  /** 'counter': only ever grows; 'gauge': goes up and down. */
  readonly type: 'counter' | 'gauge';
}

/** Every statistic, in storage order (the index is the position in this list). */
export const STAT_DEFINITIONS = [
  { name: 'requests', type: 'counter', help: 'requests completed (control and data queues; malformed chains not included)' },
  { name: 'malformed-chains', type: 'counter', help: 'descriptor chains that failed validation (loop, out-of-bounds address, ...)' },
  { name: 'kicks', type: 'counter', help: 'available-buffer notifications (kicks) received' },
  { name: 'interrupts', type: 'counter', help: 'used-buffer notifications (interrupts) sent' },
  { name: 'polled-requests', type: 'counter', help: 'requests found by polling after a completion (no kick needed)' },
  { name: 'sym-encrypt-ops', type: 'counter', help: 'cipher and algorithm-chaining encrypt requests' },
  { name: 'sym-encrypt-bytes', type: 'counter', help: 'source bytes of cipher and chaining encrypt requests' },
  { name: 'sym-decrypt-ops', type: 'counter', help: 'cipher and algorithm-chaining decrypt requests' },
  { name: 'sym-decrypt-bytes', type: 'counter', help: 'source bytes of cipher and chaining decrypt requests' },
  { name: 'hash-ops', type: 'counter', help: 'hash requests' },
  { name: 'hash-bytes', type: 'counter', help: 'source bytes of hash requests' },
  { name: 'mac-ops', type: 'counter', help: 'MAC requests' },
  { name: 'mac-bytes', type: 'counter', help: 'source bytes of MAC requests' },
  { name: 'aead-encrypt-ops', type: 'counter', help: 'AEAD encrypt requests' },
  { name: 'aead-encrypt-bytes', type: 'counter', help: 'source bytes of AEAD encrypt requests' },
  { name: 'aead-decrypt-ops', type: 'counter', help: 'AEAD decrypt requests' },
  { name: 'aead-decrypt-bytes', type: 'counter', help: 'source bytes of AEAD decrypt requests' },
  { name: 'errors-err', type: 'counter', help: 'requests answered VIRTIO_CRYPTO_ERR' },
  { name: 'errors-badmsg', type: 'counter', help: 'requests answered VIRTIO_CRYPTO_BADMSG (authentication failed)' },
  { name: 'errors-notsupp', type: 'counter', help: 'requests answered VIRTIO_CRYPTO_NOTSUPP' },
  { name: 'errors-invsess', type: 'counter', help: 'requests answered VIRTIO_CRYPTO_INVSESS (unknown session)' },
  { name: 'errors-nospc', type: 'counter', help: 'session creations answered VIRTIO_CRYPTO_NOSPC (table full)' },
  { name: 'errors-key-rejected', type: 'counter', help: 'requests answered VIRTIO_CRYPTO_KEY_REJECTED' },
  { name: 'sessions-open', type: 'gauge', help: 'sessions currently open' },
  { name: 'sessions-created', type: 'counter', help: 'sessions created' },
  { name: 'sessions-destroyed', type: 'counter', help: 'sessions destroyed (by request, reset or disconnect)' },
  { name: 'throttle-waits', type: 'counter', help: 'times the data queues waited for the --throttle-ops/--throttle-bps token bucket' },
  { name: 'throttle-wait-seconds', type: 'counter', help: 'time the data queues waited for the token bucket, in seconds' },
] as const satisfies readonly StatDefinition[];

export type StatName = (typeof STAT_DEFINITIONS)[number]['name'];

/** Storage index of each statistic. */
export const STAT = Object.fromEntries(STAT_DEFINITIONS.map((d, i) => [d.name, i])) as { readonly [K in StatName]: number };

export const STAT_COUNT = STAT_DEFINITIONS.length;

/** Which operation a data request named (from its opcode), for the per-operation counters. */
export const STAT_OP = {
  NONE: -1,
  SYM_ENCRYPT: STAT['sym-encrypt-ops'],
  SYM_DECRYPT: STAT['sym-decrypt-ops'],
  HASH: STAT['hash-ops'],
  MAC: STAT['mac-ops'],
  AEAD_ENCRYPT: STAT['aead-encrypt-ops'],
  AEAD_DECRYPT: STAT['aead-decrypt-ops'],
} as const;

/** errors-* index of a virtio-crypto status (OK and unknown values: -1). */
const STATUS_STAT: readonly number[] = (() => {
  const S = VIRTIO_CRYPTO_STATUS;
  const t: number[] = [];
  t[S.VIRTIO_CRYPTO_OK] = -1;
  t[S.VIRTIO_CRYPTO_ERR] = STAT['errors-err'];
  t[S.VIRTIO_CRYPTO_BADMSG] = STAT['errors-badmsg'];
  t[S.VIRTIO_CRYPTO_NOTSUPP] = STAT['errors-notsupp'];
  t[S.VIRTIO_CRYPTO_INVSESS] = STAT['errors-invsess'];
  t[S.VIRTIO_CRYPTO_NOSPC] = STAT['errors-nospc'];
  t[S.VIRTIO_CRYPTO_KEY_REJECTED] = STAT['errors-key-rejected'];
  return t;
})();

/** A plain record of every statistic by name (a snapshot, or a sum of snapshots). */
const I_REQUESTS = STAT.requests;
const I_MALFORMED = STAT['malformed-chains'];
const I_INTERRUPTS = STAT.interrupts;

export type StatsSnapshot = { [K in StatName]: number };

export class DeviceStats implements ServeCounters {
  /** The counters, indexed by STAT; may be a view of shared memory. */
  readonly values: Float64Array;

  /** `buffer`: where the counters live (default: a fresh SharedArrayBuffer), STAT_COUNT float64s from `offset`. */
  constructor(buffer: SharedArrayBuffer | ArrayBuffer = new SharedArrayBuffer(DeviceStats.byteLength()), offset = 0) {
    this.values = new Float64Array(buffer, offset, STAT_COUNT);
  }

  /**
   * Bytes one block takes in a shared buffer: rounded up to 256 so that the blocks of two threads
   * never share a cache line (or an adjacent-line prefetch pair): no false sharing between the
   * threads of the embedded device.
   */
  static byteLength(): number {
    return Math.ceil((STAT_COUNT * 8) / 256) * 256;
  }

  // ServeCounters (the queue-serving routine's own counters).
  get requests(): number {
    return this.values[I_REQUESTS]!;
  }
  set requests(v: number) {
    this.values[I_REQUESTS] = v;
  }
  get malformedChains(): number {
    return this.values[I_MALFORMED]!;
  }
  set malformedChains(v: number) {
    this.values[I_MALFORMED] = v;
  }
  get interrupts(): number {
    return this.values[I_INTERRUPTS]!;
  }
  set interrupts(v: number) {
    this.values[I_INTERRUPTS] = v;
  }

  add(index: number, n = 1): void {
    this.values[index]! += n;
  }

  /** A data request of operation `op` (STAT_OP) with `bytes` of source answered `status`. */
  recordData(op: number, bytes: number, status: number): void {
    const v = this.values;
    if (op >= 0) {
      v[op]! += 1;
      v[op + 1]! += bytes; // every *-bytes counter follows its *-ops counter
    }
    if (status !== 0) this.recordStatus(status);
  }

  /** A request answered with a non-OK virtio-crypto status. */
  recordStatus(status: number): void {
    const i = STATUS_STAT[status];
    if (i !== undefined && i >= 0) this.values[i]! += 1;
  }

  snapshot(): StatsSnapshot {
    return snapshotOf(this.values);
  }
}

/** The *-bytes counters (the source bytes of every data request): the bps throttle's cost. */
const BYTE_STATS = STAT_DEFINITIONS.flatMap((d, i) => (d.name.endsWith('-bytes') ? [i] : []));

export function sourceBytes(values: Float64Array): number {
  let n = 0;
  for (const i of BYTE_STATS) n += values[i]!;
  return n;
}

export function snapshotOf(values: ArrayLike<number>): StatsSnapshot {
  const out = {} as StatsSnapshot;
  STAT_DEFINITIONS.forEach((d, i) => (out[d.name] = values[i] ?? 0));
  return out;
}

/** The sum of several snapshots (gauges too: open sessions of several threads add up). */
export function sumSnapshots(list: readonly StatsSnapshot[]): StatsSnapshot {
  const out = snapshotOf([]);
  for (const s of list) for (const d of STAT_DEFINITIONS) out[d.name] += s[d.name];
  return out;
}

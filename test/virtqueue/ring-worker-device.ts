/**
 * Worker-thread device for threaded.test.ts (not a test file itself): serves one split virtqueue in
 * a SharedArrayBuffer. Each request is readable [4-byte xor key][data] + writable [data]; the device
 * writes data XOR key and completes with the data length. Doorbells are Atomics counters in `bells`:
 * [0] kicks (driver -> device), [1] interrupts (device -> driver), [2] stop flag.
 */
import { parentPort, workerData } from 'node:worker_threads';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { DeviceQueue } from '../../src/virtqueue/device-queue.js';
import { ringViews } from '../../src/virtqueue/layout.js';
import { QueueServer, MALFORMED_CHAIN } from '../../src/virtqueue/serve-queue.js';
import type { DescriptorChain } from '../../src/virtqueue/chain.js';

interface Init {
  memory: SharedArrayBuffer;
  bells: SharedArrayBuffer;
  guestPhysAddr: bigint;
  size: number;
  eventIdx: boolean;
}

const init = workerData as Init;
const bytes = new Uint8Array(init.memory);
const bells = new Int32Array(init.bells);
const memory = new GuestMemory([{ guestPhysAddr: init.guestPhysAddr, bytes }]);
const q = new DeviceQueue({ size: init.size, ...ringViews(bytes, init.size, 0), memory, eventIdx: init.eventIdx });

const stats = { requests: 0, malformedChains: 0, interrupts: 0 };
/** XOR each request's data with its 4-byte key; the one serve routine does the ring side. */
function xorRequest(c: DescriptorChain): number {
  const src = new Uint8Array(c.readableLength);
  let off = 0;
  for (const v of c.readable) {
    src.set(v, off);
    off += v.byteLength;
  }
  const n = Math.min(src.byteLength - 4, c.writableLength);
  let i = 0;
  for (const w of c.writable) {
    for (let j = 0; j < w.byteLength && i < n; j++, i++) w[j] = src[4 + i]! ^ src[i & 3]!;
  }
  return n;
}
const server = new QueueServer(q, {
  process: xorRequest,
  notify: () => {
    Atomics.add(bells, 1, 1);
    Atomics.notify(bells, 1);
  },
  malformedChain: MALFORMED_CHAIN.COMPLETE_EMPTY,
  stats,
});

let seenKicks = 0;
for (;;) {
  // Sleep until a kick (or stop) — re-armed notifications guarantee the driver kicks for new work.
  while (Atomics.load(bells, 0) === seenKicks && Atomics.load(bells, 2) === 0) Atomics.wait(bells, 0, seenKicks);
  if (Atomics.load(bells, 2) !== 0) break;
  seenKicks = Atomics.load(bells, 0);
  server.serve();
}
parentPort!.postMessage({ served: stats.requests + stats.malformedChains, interrupts: stats.interrupts, broken: q.broken });

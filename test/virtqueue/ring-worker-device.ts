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

let served = 0;
let interrupts = 0;
let seenKicks = 0;
for (;;) {
  // Sleep until a kick (or stop) — re-armed notifications guarantee the driver kicks for new work.
  while (Atomics.load(bells, 0) === seenKicks && Atomics.load(bells, 2) === 0) Atomics.wait(bells, 0, seenKicks);
  if (Atomics.load(bells, 2) !== 0) break;
  seenKicks = Atomics.load(bells, 0);
  for (;;) {
    q.disableNotifications();
    for (let p = q.popChain(); p !== null; p = q.popChain()) {
      if (!p.ok) {
        q.addUsed(p.head, 0);
        continue;
      }
      const c = p.chain;
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
      q.addUsed(c.head, n);
      served++;
    }
    q.publishUsed();
    if (q.needsNotification()) {
      interrupts++;
      Atomics.add(bells, 1, 1);
      Atomics.notify(bells, 1);
    }
    if (!q.enableNotifications()) break;
  }
}
parentPort!.postMessage({ served, interrupts, broken: q.broken });

/**
 * The driver queue on the main thread and the device queue on a worker thread share ring memory
 * (SharedArrayBuffer) and use Atomics counters as kick/interrupt doorbells. Thousands of requests
 * with the queue kept full, with and without EVENT_IDX: every result is right (an independent
 * oracle: XOR computed here), and no notification is lost (a lost kick or interrupt would hang,
 * which fails the test through its timeout; the waits are event-driven, never sleeps).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { DriverQueue } from '../../src/virtqueue/driver-queue.js';
import { layoutRings, ringViews } from '../../src/virtqueue/layout.js';

const GPA = 0x4000_0000n;

/** Atomics.waitAsync (Node >= 16; not in the ES2023 lib typings this project compiles against). */
type WaitAsyncResult = { async: false; value: 'not-equal' | 'timed-out' } | { async: true; value: Promise<'ok' | 'timed-out'> };
const waitAsync = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number, t: number): WaitAsyncResult }).waitAsync;
const TOTAL = 3000;

async function run(eventIdx: boolean, indirect: boolean): Promise<{ kicks: number; interrupts: number }> {
  const size = 64;
  const memory = new SharedArrayBuffer(4 << 20);
  const bells = new SharedArrayBuffer(12);
  const bytes = new Uint8Array(memory);
  const b = new Int32Array(bells);
  const ringEnd = layoutRings(size).totalBytes;
  const indOff = Math.ceil(ringEnd / 16) * 16;
  const entries = 4;
  const dataOff = indOff + size * entries * 16;
  const driver = new DriverQueue<number>({
    size,
    ...ringViews(bytes, size, 0),
    eventIdx,
    ...(indirect ? { indirect: { addr: GPA + BigInt(indOff), bytes: bytes.subarray(indOff, dataOff), entriesPerChain: entries } } : {}),
  });
  // Workers do not inherit the tsx loader: register it in the worker, then load the TS entry.
  const entry = new URL('./ring-worker-device.ts', import.meta.url).href;
  const bootstrap = `import('tsx/esm/api').then((m) => { m.register(); return import(${JSON.stringify(entry)}); });`;
  const worker = new Worker(bootstrap, { eval: true, workerData: { memory, bells, guestPhysAddr: GPA, size, eventIdx } });
  const done = new Promise<{ served: number; interrupts: number; broken: boolean }>((resolve, reject) => {
    worker.once('message', resolve);
    worker.once('error', reject);
  });
  // Per slot (one per request in flight): key(4) + data(len) readable, out(len) writable.
  const SLOT = 1024;
  const slots: number[] = Array.from({ length: size }, (_, i) => i);
  const lenOf = (id: number) => 1 + ((id * 37) % 300);
  let submitted = 0;
  let completed = 0;
  let kicks = 0;
  let result: { served: number; interrupts: number; broken: boolean };
  try {
    const submit = () => {
      while (submitted < TOTAL && slots.length > 0 && driver.freeCount >= driver.descriptorsNeeded(3)) {
        const slot = slots.pop()!;
        const base = dataOff + slot * SLOT;
        const id = submitted++;
        const len = lenOf(id);
        bytes.set([id & 0xff, (id >> 8) & 0xff, 0x5a, 0xa5], base);
        for (let i = 0; i < len; i++) bytes[base + 4 + i] = (i * 3 + id) & 0xff;
        bytes.fill(0, base + 512, base + 512 + len);
        const g = GPA + BigInt(base);
        // The data split across two readable buffers at an odd boundary.
        const cut = len >> 1;
        driver.addChain([{ addr: g, len: 4 + cut }, { addr: g + BigInt(4 + cut), len: len - cut }], [{ addr: g + 512n, len }], id * SIZE_TAG + slot);
      }
      if (driver.publish()) {
        kicks++;
        Atomics.add(b, 0, 1);
        Atomics.notify(b, 0);
      }
    };
    const reap = () => {
      for (;;) {
        driver.disableInterrupts();
        for (let u = driver.getUsed(); u !== null; u = driver.getUsed()) {
          const id = Math.floor(u.token / SIZE_TAG);
          const slot = u.token % SIZE_TAG;
          const base = dataOff + slot * SLOT;
          const len = lenOf(id);
          assert.equal(u.len, len);
          const key = [id & 0xff, (id >> 8) & 0xff, 0x5a, 0xa5];
          for (let i = 0; i < len; i++) {
            if (bytes[base + 512 + i] !== (((i * 3 + id) & 0xff) ^ key[i & 3]!)) assert.fail(`request ${id}: byte ${i} wrong`);
          }
          slots.push(slot);
          completed++;
        }
        if (!driver.enableInterrupts()) break;
      }
    };
    let seenIrq = 0;
    submit();
    while (completed < TOTAL) {
      // Event-driven wait for the next interrupt; 10 s without one means a lost notification.
      const w = waitAsync(b, 1, seenIrq, 10_000);
      if (w.async && (await w.value) === 'timed-out') assert.fail(`no interrupt for 10 s with ${TOTAL - completed} requests outstanding`);
      seenIrq = Atomics.load(b, 1);
      reap();
      submit();
    }
    assert.equal(driver.inFlight, 0);
    assert.equal(driver.freeCount, size);
    Atomics.store(b, 2, 1); // stop: the worker reports and exits
    Atomics.add(b, 0, 1);
    Atomics.notify(b, 0);
    result = await done;
  } finally {
    await worker.terminate(); // also on failure: never leave the thread behind
  }
  assert.equal(result.served, TOTAL);
  assert.equal(result.broken, false);
  return { kicks, interrupts: result.interrupts };
}

const SIZE_TAG = 1024;

describe('driver and device queues on two threads', { timeout: 60_000 }, () => {
  for (const eventIdx of [false, true]) {
    for (const indirect of [false, true]) {
      it(`${TOTAL} requests, EVENT_IDX ${eventIdx ? 'on' : 'off'}, ${indirect ? 'indirect' : 'direct'} chains`, async (t) => {
        const { kicks, interrupts } = await run(eventIdx, indirect);
        assert.ok(kicks >= 1 && interrupts >= 1);
        t.diagnostic(`${TOTAL} requests: ${kicks} kicks, ${interrupts} interrupts`);
      });
    }
  }
});

/**
 * TOCTOU: a hostile driver on another thread rewrites the descriptor table and the indirect tables
 * with random bytes while the device walks them. Each descriptor is copied into locals before it is
 * checked, so whatever the interleaving, the device returns only typed errors and views inside
 * guest memory, and every walk ends.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { Worker } from 'node:worker_threads';
import { VirtqueueError } from '../../src/virtqueue/chain.js';
import { F_INDIRECT, F_NEXT, F_WRITE, RawRing } from '../fixtures/raw-ring.js';

/** Plain JS (no imports): scribbles over the descriptor table and the indirect tables until told to stop. */
const SCRIBBLER = `
const { workerData, parentPort } = require('node:worker_threads');
const bytes = new Uint8Array(workerData.memory);
const ctl = new Int32Array(workerData.ctl);
let x = workerData.seed | 0 || 1;
const rnd = () => { x ^= x << 13; x ^= x >>> 17; x ^= x << 5; return x >>> 0; };
const { descEnd, tablesOff, tablesEnd, tableAddrOff } = workerData;
const dv = new DataView(workerData.memory);
Atomics.store(ctl, 1, 1); Atomics.notify(ctl, 1);
let writes = 0;
while (Atomics.load(ctl, 0) === 0) {
  const off = rnd() & 1 ? (rnd() % (descEnd >> 4)) * 16 : tablesOff + (rnd() % ((tablesEnd - tablesOff) >> 4)) * 16;
  switch (rnd() & 7) {
    case 0: dv.setUint16(off + 14, rnd() & 0xffff, true); break;             // next
    case 1: dv.setUint16(off + 12, rnd() & 7, true); break;                  // flags
    case 2: dv.setUint32(off + 8, rnd() & 0xfff, true); break;               // len (small)
    case 3: dv.setUint32(off + 8, rnd(), true); break;                       // len (any)
    case 4: dv.setUint32(off + 4, rnd() & 1 ? 0 : rnd(), true); break;       // addr high
    case 5: dv.setUint32(off, 0x100000 + (rnd() & 0xfffff), true); break;     // addr low, near memory
    case 6: dv.setUint32(off, tableAddrOff + (rnd() & 0x3ff) * 16, true); break; // pointing at a table
    default: bytes[off + (rnd() & 15)] = rnd() & 0xff;
  }
  writes++;
}
parentPort.postMessage(writes);
`;

describe('DeviceQueue against a driver rewriting descriptors concurrently', { timeout: 60_000 }, () => {
  it('only typed errors and in-memory views, whatever the interleaving', async (t) => {
    const size = 64;
    const r = new RawRing({ size, regions: [{ gpa: 0x100000n, size: 1 << 20 }] });
    const region = r.regions[0]!;
    // Well-formed start: each head an indirect table of 8 entries; the tables live in one area.
    const tables = r.alloc(size * 8 * 16);
    const data = r.alloc(8 * 64);
    for (let h = 0; h < size; h++) {
      const t = tables + BigInt(h * 8 * 16);
      for (let i = 0; i < 8; i++) {
        r.writeDesc(i, { addr: data + BigInt(i * 64), len: 64, flags: (i < 7 ? F_NEXT : 0) | (i >= 4 ? F_WRITE : 0), next: i + 1 }, t);
      }
      r.writeDesc(h, { addr: t, len: 128, flags: F_INDIRECT });
    }
    const descEnd = 16 * size; // the main descriptor table starts the region
    const tablesOff = Number(tables - region.gpa);
    const tablesEnd = tablesOff + size * 8 * 16;
    const ctl = new SharedArrayBuffer(8);
    const c = new Int32Array(ctl);
    const worker = new Worker(SCRIBBLER, {
      eval: true,
      workerData: { memory: region.bytes.buffer, ctl, descEnd, tablesOff, tablesEnd, tableAddrOff: Number(tables), seed: 12345 },
    });
    const writes = new Promise<number>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    let kinds = new Map<string, number>();
    try {
      // Wait until the scribbler runs (event-driven).
      const w = (Atomics as unknown as { waitAsync(a: Int32Array, i: number, v: number, t: number): { async: boolean; value: unknown } }).waitAsync(c, 1, 0, 10_000);
      if (w.async) await w.value;
      assert.equal(Atomics.load(c, 1), 1, 'scribbler did not start');
      kinds = new Map<string, number>();
      let q = r.deviceQueue();
      let avail = 0;
      for (let i = 0; i < 20_000; i++) {
        r.setAvailRing(avail % size, i % size);
        avail = (avail + 1) & 0xffff;
        r.setAvailIdx(avail);
        const p = q.popChain();
        assert.ok(p !== null);
        if (!p.ok) {
          assert.ok(p.error instanceof VirtqueueError);
          kinds.set(p.error.kind, (kinds.get(p.error.kind) ?? 0) + 1);
          q.addUsed(p.head, 0);
          continue;
        }
        kinds.set('ok', (kinds.get('ok') ?? 0) + 1);
        for (const v of [...p.chain.readable, ...p.chain.writable]) {
          assert.equal(v.buffer, region.bytes.buffer);
          assert.ok(v.byteOffset + v.byteLength <= region.bytes.byteLength);
        }
        q.addUsed(p.chain.head, 0);
        if ((i & 63) === 63) {
          q.publishUsed();
          q = r.deviceQueue({ lastAvailIdx: avail }); // also exercise re-creation (SET_VRING_BASE)
        }
      }
      assert.ok((kinds.get('ok') ?? 0) > 0, 'some chains should still be walked successfully');
    } finally {
      Atomics.store(c, 0, 1);
      const n = await writes.catch(() => 0);
      await worker.terminate();
      t.diagnostic(`${n} concurrent descriptor writes; outcomes ${JSON.stringify(Object.fromEntries(kinds))}`);
    }
  });
});

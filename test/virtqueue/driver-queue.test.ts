import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { VirtqueueError } from '../../src/virtqueue/chain.js';
import type { VirtqueueErrorKind } from '../../src/virtqueue/chain.js';
import { DeviceQueue } from '../../src/virtqueue/device-queue.js';
import { DriverQueue } from '../../src/virtqueue/driver-queue.js';
import type { BufferRef } from '../../src/virtqueue/driver-queue.js';
import { ringViews } from '../../src/virtqueue/layout.js';

const GPA = 0x100000n;
const RING_OFF = 0;
const IND_OFF = 0x20000;
const DATA_OFF = 0x40000;

function hex(s: string): number[] {
  return s.replace(/\s+/g, '').match(/../g)!.map((b) => parseInt(b, 16));
}

/** One SharedArrayBuffer region; the driver and device queues over the same ring. */
function setup(size: number, opts: { eventIdx?: boolean; indirect?: number } = {}) {
  const bytes = new Uint8Array(new SharedArrayBuffer(1 << 20));
  const memory = new GuestMemory([{ guestPhysAddr: GPA, bytes }]);
  const views = ringViews(bytes, size, RING_OFF);
  const eventIdx = opts.eventIdx ?? false;
  const indirect =
    opts.indirect === undefined
      ? undefined
      : { addr: GPA + BigInt(IND_OFF), bytes: bytes.subarray(IND_OFF, IND_OFF + size * opts.indirect * 16), entriesPerChain: opts.indirect };
  const driver = new DriverQueue<string>({ size, ...views, eventIdx, ...(indirect ? { indirect } : {}) });
  const device = new DeviceQueue({ size, ...views, memory, eventIdx });
  const at = (gpa: bigint) => Number(gpa - GPA);
  return { bytes, memory, views, driver, device, at };
}

function expectKind(kind: VirtqueueErrorKind) {
  return (e: unknown) => e instanceof VirtqueueError && e.kind === kind;
}

describe('DriverQueue: ring bytes as the spec lays them out', () => {
  it('a direct chain: descriptors linked by next, readable then writable, avail entry then idx', () => {
    const { driver, views } = setup(4);
    const head = driver.addChain([{ addr: 0x101000n, len: 72 }], [{ addr: 0x102000n, len: 16 }, { addr: 0x103000n, len: 1 }], 'a');
    assert.equal(head, 0);
    assert.equal(driver.freeCount, 1);
    assert.deepEqual(
      [...views.desc.subarray(0, 48)],
      hex(`
        00101000 00000000 48000000 0100 0100
        00201000 00000000 10000000 0300 0200
        00301000 00000000 01000000 0200 0000`),
    );
    assert.deepEqual([...views.avail.subarray(0, 6)], hex('0000 0000 0000'), 'avail.idx not yet published');
    assert.equal(driver.publish(), true);
    assert.deepEqual([...views.avail.subarray(0, 6)], hex('0000 0100 0000'));
    assert.equal(driver.publish(), false, 'nothing new to publish');
  });

  it('an indirect chain: one main descriptor {table, 16n, INDIRECT}; table entries with next = i + 1', () => {
    const { driver, views, bytes } = setup(4, { indirect: 4 });
    assert.equal(driver.addChain([{ addr: 0x101000n, len: 72 }, { addr: 0x101100n, len: 16 }], [{ addr: 0x103000n, len: 1 }], 'a'), 0);
    assert.equal(driver.addChain([{ addr: 0x104000n, len: 8 }], [{ addr: 0x104100n, len: 8 }], 'b'), 1);
    assert.equal(driver.freeCount, 2);
    assert.deepEqual(
      [...views.desc.subarray(0, 32)],
      hex(`
        00001200 00000000 30000000 0400 0000
        40001200 00000000 20000000 0400 0000`),
    );
    assert.deepEqual(
      [...bytes.subarray(IND_OFF, IND_OFF + 48)],
      hex(`
        00101000 00000000 48000000 0100 0100
        00111000 00000000 10000000 0100 0200
        00301000 00000000 01000000 0200 0000`),
    );
    // A single buffer goes direct even when indirect is configured.
    assert.equal(driver.addChain([], [{ addr: 0x105000n, len: 4 }], 'c'), 2);
    assert.deepEqual([...views.desc.subarray(32, 48)], hex('00501000 00000000 04000000 0200 0000'));
    driver.publish();
    assert.deepEqual([...views.avail.subarray(0, 10)], hex('0000 0300 0000 0100 0200'));
  });

  it('refuses bad buffers and a full queue, and recovers room as chains complete', () => {
    const { driver, device } = setup(4);
    assert.throws(() => driver.addChain([], [], 'x'), RangeError);
    assert.throws(() => driver.addChain([{ addr: -1n, len: 1 }], [], 'x'), RangeError);
    assert.throws(() => driver.addChain([{ addr: 1n << 64n, len: 1 }], [], 'x'), RangeError);
    assert.throws(() => driver.addChain([{ addr: 0x101000n, len: 2 ** 32 }], [], 'x'), RangeError);
    driver.addChain([{ addr: 0x101000n, len: 1 }, { addr: 0x101000n, len: 1 }], [{ addr: 0x102000n, len: 1 }], 'a');
    assert.throws(() => driver.addChain([{ addr: 0x101000n, len: 1 }], [{ addr: 0x102000n, len: 1 }], 'b'), RangeError);
    assert.equal(driver.freeCount, 1);
    driver.addChain([{ addr: 0x101000n, len: 1 }], [], 'c');
    assert.equal(driver.freeCount, 0);
    driver.publish();
    for (let c = device.popChain(); c !== null; c = device.popChain()) {
      assert.ok(c.ok);
      device.addUsed(c.chain.head, 0);
    }
    device.publishUsed();
    assert.deepEqual(driver.getUsed(), { token: 'a', len: 0 });
    assert.deepEqual(driver.getUsed(), { token: 'c', len: 0 });
    assert.equal(driver.getUsed(), null);
    assert.equal(driver.freeCount, 4);
    assert.equal(driver.inFlight, 0);
  });
});

describe('DriverQueue <-> DeviceQueue', () => {
  for (const indirect of [undefined, 8]) {
    it(`many chains in flight, completed out of order (${indirect ? 'indirect' : 'direct'})`, () => {
      const size = 16;
      const { driver, device, bytes, at } = setup(size, indirect ? { indirect } : {});
      let next = GPA + BigInt(DATA_OFF);
      const buf = (len: number, fill?: number): BufferRef => {
        const b = { addr: next, len };
        if (fill !== undefined) bytes.fill(fill, at(next), at(next) + len);
        next += BigInt(len) + 16n;
        return b;
      };
      const expected = new Map<string, { out: BufferRef[]; inp: BufferRef[]; fill: number }>();
      const byFirstAddr = new Map<number, string>();
      let issued = 0;
      let completed = 0;
      const pendingOnDevice: { head: number; len: number }[] = [];
      while (completed < 100) {
        // Fill the queue.
        while (issued < 100 && driver.freeCount >= driver.descriptorsNeeded(3)) {
          const token = `t${issued}`;
          const fill = issued & 0xff;
          const out = [buf(20, fill), buf(5, fill ^ 0x55)];
          const inp = [buf(7)];
          driver.addChain(out, inp, token);
          expected.set(token, { out, inp, fill });
          byFirstAddr.set(at(out[0]!.addr), token);
          issued++;
        }
        driver.publish();
        // The device takes everything, checks the bytes it sees, completes in reverse order.
        for (let p = device.popChain(); p !== null; p = device.popChain()) {
          assert.ok(p.ok);
          const token = byFirstAddr.get(p.chain.readable[0]!.byteOffset);
          assert.ok(token !== undefined, 'device saw a buffer the driver never added');
          const e = expected.get(token)!;
          assert.deepEqual(
            p.chain.readable.flatMap((v) => [...v]),
            [...new Array<number>(20).fill(e.fill), ...new Array<number>(5).fill(e.fill ^ 0x55)],
          );
          assert.deepEqual(p.chain.writable.map((v) => v.byteOffset), [at(e.inp[0]!.addr)]);
          pendingOnDevice.push({ head: p.chain.head, len: p.chain.writableLength });
          p.chain.writable[0]!.fill(0xee);
        }
        pendingOnDevice.reverse();
        for (const d of pendingOnDevice.splice(0)) device.addUsed(d.head, d.len);
        device.publishUsed();
        for (let u = driver.getUsed(); u !== null; u = driver.getUsed()) {
          const e = expected.get(u.token);
          assert.ok(e, `unknown token ${u.token}`);
          assert.equal(u.len, 7);
          for (const w of e.inp) assert.ok(bytes.subarray(at(w.addr), at(w.addr) + w.len).every((x) => x === 0xee));
          expected.delete(u.token);
          completed++;
        }
      }
      assert.equal(expected.size, 0);
      assert.equal(driver.freeCount, size);
      assert.equal(driver.inFlight, 0);
    });
  }

  it('EVENT_IDX kicks: the driver kicks only when avail.idx passes avail_event', () => {
    const { driver, device } = setup(8, { eventIdx: true });
    const b = [{ addr: 0x101000n, len: 4 }];
    driver.addChain(b, [], 'a');
    assert.equal(driver.publish(), true); // avail_event 0: 0 -> 1 passes it
    driver.addChain(b, [], 'b');
    assert.equal(driver.publish(), false); // device has not re-armed: no kick
    assert.ok(device.popChain()?.ok);
    assert.ok(device.popChain()?.ok);
    assert.equal(device.enableNotifications(), false); // avail_event = 2
    driver.addChain(b, [], 'c');
    driver.addChain(b, [], 'd');
    assert.equal(driver.publish(), true); // 2 -> 4 passes avail_event 2
  });

  it('flag-based kicks: VIRTQ_USED_F_NO_NOTIFY suppresses them', () => {
    const { driver, device } = setup(8);
    device.disableNotifications();
    driver.addChain([{ addr: 0x101000n, len: 4 }], [], 'a');
    assert.equal(driver.publish(), false);
    assert.equal(device.enableNotifications(), true, 'the re-check after enabling sees the entry');
    driver.addChain([{ addr: 0x101000n, len: 4 }], [], 'b');
    assert.equal(driver.publish(), true);
  });

  it('EVENT_IDX interrupts: used_event is honoured; disable suppresses; enable re-checks', () => {
    const { driver, device } = setup(8, { eventIdx: true });
    const complete = () => {
      const p = device.popChain();
      assert.ok(p?.ok);
      device.addUsed(p.chain.head, 0);
      device.publishUsed();
      return device.needsNotification();
    };
    for (const t of ['a', 'b', 'c', 'd']) driver.addChain([{ addr: 0x101000n, len: 4 }], [], t);
    driver.publish();
    assert.equal(driver.enableInterrupts(), false); // used_event = 0
    assert.equal(complete(), true); // first decision
    assert.equal(driver.getUsed()?.token, 'a');
    driver.disableInterrupts(); // used_event = 0 = last_used - 1
    assert.equal(complete(), false);
    assert.equal(complete(), false);
    assert.equal(driver.enableInterrupts(), true, 'b and c are already there');
    assert.equal(driver.getUsed()?.token, 'b');
    assert.equal(driver.getUsed()?.token, 'c');
    assert.equal(driver.enableInterrupts(), false); // used_event = 3
    assert.equal(complete(), true); // 3 -> 4 passes it
  });

  it('flag-based interrupts: VIRTQ_AVAIL_F_NO_INTERRUPT', () => {
    const { driver, device, views } = setup(8);
    driver.disableInterrupts();
    assert.equal(views.avail[0], 1);
    driver.addChain([{ addr: 0x101000n, len: 4 }], [], 'a');
    driver.addChain([{ addr: 0x101000n, len: 4 }], [], 'b');
    driver.publish();
    const complete = () => {
      const p = device.popChain();
      assert.ok(p?.ok);
      device.addUsed(p.chain.head, 0);
      device.publishUsed();
      return device.needsNotification();
    };
    assert.equal(complete(), false);
    assert.equal(driver.enableInterrupts(), true, 'the re-check after enabling sees the completion');
    assert.equal(views.avail[0], 0);
    assert.equal(complete(), true);
  });
});

describe('DriverQueue: a misbehaving device is a typed error, never a crash', () => {
  function withOne(size = 4) {
    const s = setup(size);
    s.driver.addChain([{ addr: 0x101000n, len: 4 }], [{ addr: 0x102000n, len: 8 }], 'a');
    s.driver.publish();
    const used = new DataView(s.views.used.buffer, s.views.used.byteOffset, s.views.used.byteLength);
    const put = (slot: number, id: number, len: number) => {
      used.setUint32(4 + 8 * slot, id, true);
      used.setUint32(8 + 8 * slot, len, true);
    };
    const setIdx = (v: number) => used.setUint16(2, v, true);
    return { ...s, put, setIdx };
  }

  const cases: { name: string; kind: VirtqueueErrorKind; act: (s: ReturnType<typeof withOne>) => void }[] = [
    { name: 'used id >= queue size', kind: 'used-id-invalid', act: (s) => { s.put(0, 4, 0); s.setIdx(1); } },
    { name: 'used id of a free descriptor', kind: 'used-id-invalid', act: (s) => { s.put(0, 2, 0); s.setIdx(1); } },
    { name: 'used id of a non-head descriptor', kind: 'used-id-invalid', act: (s) => { s.put(0, 1, 0); s.setIdx(1); } },
    { name: 'used len above the writable bytes', kind: 'used-len-invalid', act: (s) => { s.put(0, 0, 9); s.setIdx(1); } },
    { name: 'used.idx ahead of what is in flight', kind: 'used-index-jump', act: (s) => { s.put(0, 0, 0); s.setIdx(2); } },
    { name: 'used.idx far ahead (wrapped)', kind: 'used-index-jump', act: (s) => { s.setIdx(0xffff); } },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const s = withOne();
      c.act(s);
      assert.throws(() => s.driver.getUsed(), expectKind(c.kind));
      assert.equal(s.driver.broken, true);
      assert.equal(s.driver.getUsed(), null);
      assert.throws(() => s.driver.addChain([{ addr: 0x101000n, len: 1 }], [], 'z'));
      const pending: string[] = [];
      s.driver.forEachToken((t) => pending.push(t));
      assert.deepEqual(pending, ['a']);
    });
  }

  it('a completed chain reported twice is refused the second time', () => {
    const s = withOne();
    s.put(0, 0, 8);
    s.put(1, 0, 8);
    s.setIdx(1);
    assert.deepEqual(s.driver.getUsed(), { token: 'a', len: 8 });
    s.setIdx(2);
    assert.throws(() => s.driver.getUsed(), expectKind('used-index-jump'));
  });
});

describe('DriverQueue properties', () => {
  it('random used-ring bytes from a hostile device: only typed errors, never a token twice or unknown', () => {
    fc.assert(
      fc.property(
        fc.nat({ max: 8 }),
        fc.array(fc.record({ id: fc.oneof(fc.nat({ max: 9 }), fc.nat()), len: fc.oneof(fc.nat({ max: 40 }), fc.nat()) }), {
          minLength: 8,
          maxLength: 8,
        }),
        fc.oneof(fc.nat({ max: 9 }), fc.nat({ max: 0xffff })),
        fc.boolean(),
        (nChains, elems, usedIdx, useIndirect) => {
          const { driver, views } = setup(8, useIndirect ? { indirect: 4 } : {});
          const added: string[] = [];
          for (let i = 0; i < nChains && driver.freeCount >= driver.descriptorsNeeded(2); i++) {
            driver.addChain([{ addr: 0x101000n, len: 4 }], [{ addr: 0x102000n, len: 16 }], `t${i}`);
            added.push(`t${i}`);
          }
          driver.publish();
          const used = new DataView(views.used.buffer, views.used.byteOffset, views.used.byteLength);
          elems.forEach((e, i) => {
            used.setUint32(4 + 8 * i, e.id, true);
            used.setUint32(8 + 8 * i, e.len, true);
          });
          used.setUint16(2, usedIdx, true);
          const seen = new Set<string>();
          try {
            for (let u = driver.getUsed(); u !== null; u = driver.getUsed()) {
              assert.ok(added.includes(u.token) && !seen.has(u.token), `bad token ${u.token}`);
              assert.ok(u.len <= 16);
              seen.add(u.token);
            }
          } catch (e) {
            assert.ok(e instanceof VirtqueueError, String(e));
            assert.equal(driver.broken, true);
          }
          // Bookkeeping stays consistent: reaped + in flight = added.
          assert.equal(seen.size + driver.inFlight, added.length);
          const pending: string[] = [];
          driver.forEachToken((t) => pending.push(t));
          assert.equal(pending.length, driver.inFlight);
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('random add/complete/reap sequences: every token comes back once, with its len; no descriptor leaks', () => {
    fc.assert(
      fc.property(
        fc.boolean(),
        fc.boolean(),
        fc.array(
          fc.oneof(
            fc.record({ op: fc.constant('add' as const), nOut: fc.nat({ max: 4 }), nIn: fc.nat({ max: 4 }) }),
            fc.record({ op: fc.constant('device' as const), pick: fc.array(fc.nat(), { maxLength: 8 }) }),
            fc.record({ op: fc.constant('reap' as const), max: fc.nat({ max: 8 }) }),
          ),
          { maxLength: 80 },
        ),
        (useIndirect, eventIdx, ops) => {
          const size = 8;
          const { driver, device } = setup(size, { eventIdx, ...(useIndirect ? { indirect: 4 } : {}) });
          const sent = new Map<number, { out: BufferRef[]; inp: BufferRef[] }>();
          const onDevice: { head: number; token: number; len: number }[] = [];
          const completedLen = new Map<number, number>();
          const reaped = new Set<number>();
          let nextToken = 0;
          let addr = GPA + BigInt(DATA_OFF);
          const drain = () => {
            for (let p = device.popChain(); p !== null; p = device.popChain()) {
              assert.ok(p.ok);
              // Identify the chain by its first buffer's address (unique per chain).
              const first = [...p.chain.readable, ...p.chain.writable][0];
              const token = first === undefined ? -1 : first.byteOffset;
              onDevice.push({ head: p.chain.head, token, len: p.chain.writableLength });
            }
          };
          for (const o of ops) {
            if (o.op === 'add') {
              const n = o.nOut + o.nIn;
              if (n === 0 || driver.freeCount < driver.descriptorsNeeded(n)) continue;
              const mk = () => {
                const b = { addr, len: 1 + (Number(addr) % 13) };
                addr += 32n;
                return b;
              };
              const out = Array.from({ length: o.nOut }, mk);
              const inp = Array.from({ length: o.nIn }, mk);
              const token = Number((out[0] ?? inp[0]!).addr - GPA);
              driver.addChain(out, inp, String(token));
              sent.set(token, { out, inp });
              nextToken++;
              driver.publish();
            } else if (o.op === 'device') {
              drain();
              for (const k of o.pick) {
                if (onDevice.length === 0) break;
                const [d] = onDevice.splice(k % onDevice.length, 1);
                const len = d!.len === 0 ? 0 : k % (d!.len + 1);
                device.addUsed(d!.head, len);
                completedLen.set(d!.token, len);
              }
              device.publishUsed();
            } else {
              for (let i = 0; i < o.max; i++) {
                const u = driver.getUsed();
                if (u === null) break;
                const t = Number(u.token);
                assert.ok(sent.has(t) && !reaped.has(t), `token ${t} returned twice or never sent`);
                assert.equal(u.len, completedLen.get(t));
                reaped.add(t);
              }
            }
          }
          // Finish everything: the queue drains back to all-free.
          drain();
          for (const d of onDevice.splice(0)) {
            device.addUsed(d.head, 0);
            completedLen.set(d.token, 0);
          }
          device.publishUsed();
          for (let u = driver.getUsed(); u !== null; u = driver.getUsed()) reaped.add(Number(u.token));
          assert.equal(reaped.size, sent.size);
          assert.equal(reaped.size, nextToken);
          assert.equal(driver.freeCount, size);
          assert.equal(driver.inFlight, 0);
        },
      ),
      { numRuns: 400 },
    );
  });
});

describe('DriverQueue.addOutIn: the one-readable, one-writable chain with number addresses', () => {
  it('writes the same ring bytes as addChain, including an address above 2^32 split into exact halves', () => {
    const a = setup(4);
    const b = setup(4);
    const hi = 0x1_2345_6780; // > 2^32: the high u32 is 1
    a.driver.addOutIn(hi, 72, hi + 0x100, 17, 'x');
    b.driver.addChain([{ addr: BigInt(hi), len: 72 }], [{ addr: BigInt(hi + 0x100), len: 17 }], 'x');
    assert.deepEqual(
      [...a.views.desc.subarray(0, 32)],
      hex(`
        80674523 01000000 48000000 0100 0100
        80684523 01000000 11000000 0200 0000`),
    );
    assert.deepEqual([...a.views.desc], [...b.views.desc]);
    assert.equal(a.driver.publish(), true);
    b.driver.publish();
    assert.deepEqual([...a.views.avail], [...b.views.avail]);
    assert.equal(a.driver.freeCount, 2);
    assert.equal(a.driver.inFlight, 1);
  });

  it('refuses inexact or negative addresses, non-u32 lengths, a full queue and a broken queue', () => {
    const { driver, views } = setup(4);
    assert.throws(() => driver.addOutIn(-16, 1, 0x102000, 1, 'x'), RangeError);
    assert.throws(() => driver.addOutIn(0x101000, 1, 2 ** 53, 1, 'x'), RangeError);
    assert.throws(() => driver.addOutIn(0x101000 + 0.5, 1, 0x102000, 1, 'x'), RangeError);
    assert.throws(() => driver.addOutIn(0x101000, 2 ** 32, 0x102000, 1, 'x'), RangeError);
    assert.throws(() => driver.addOutIn(0x101000, 1, 0x102000, -1, 'x'), RangeError);
    assert.equal(driver.freeCount, 4, 'nothing taken by a refused chain');
    driver.addOutIn(0x101000, 1, 0x102000, 1, 'a');
    driver.addOutIn(0x101000, 1, 0x102000, 1, 'b');
    assert.throws(() => driver.addOutIn(0x101000, 1, 0x102000, 1, 'c'), /full/);
    driver.publish();
    const used = new DataView(views.used.buffer, views.used.byteOffset, views.used.byteLength);
    used.setUint32(4, 1, true); // id 1: the first chain's writable descriptor, not a head
    used.setUint16(2, 1, true);
    assert.throws(() => driver.getUsed(), expectKind('used-id-invalid'));
    assert.throws(() => driver.addOutIn(0x101000, 1, 0x102000, 1, 'd'), /broken/);
  });

  it('with indirect tables configured it goes indirect like addChain (one main descriptor)', () => {
    const { driver, device, bytes } = setup(4, { indirect: 4 });
    bytes.fill(0x11, DATA_OFF, DATA_OFF + 8);
    driver.addOutIn(Number(GPA) + DATA_OFF, 8, Number(GPA) + DATA_OFF + 64, 4, 'a');
    assert.equal(driver.freeCount, 3);
    driver.publish();
    const p = device.popChain();
    assert.ok(p && p.ok);
    assert.deepEqual([...p.chain.readable[0]!], new Array(8).fill(0x11));
    assert.equal(p.chain.writableLength, 4);
    device.addUsed(p.chain.head, 4);
    device.publishUsed();
    assert.deepEqual(driver.getUsed(), { token: 'a', len: 4 });
  });

  it('against DeviceQueue: bytes both ways, out-of-order completion, descriptors recycled over many rounds', () => {
    const { driver, device, bytes } = setup(8);
    const base = Number(GPA) + DATA_OFF;
    for (let round = 0; round < 50; round++) {
      const n = 1 + (round % 4);
      for (let i = 0; i < n; i++) {
        const off = DATA_OFF + i * 64;
        bytes.fill(round + i, off, off + 10);
        driver.addOutIn(base + i * 64, 10, base + i * 64 + 32, 5, `r${round}.${i}`);
      }
      assert.equal(driver.freeCount, 8 - 2 * n);
      assert.equal(driver.publish(), true, 'without EVENT_IDX the device did not set NO_NOTIFY: kick');
      const heads: number[] = [];
      for (let i = 0; i < n; i++) {
        const p = device.popChain();
        assert.ok(p && p.ok);
        assert.equal(p.chain.readable.length, 1);
        assert.equal(p.chain.writable.length, 1);
        assert.deepEqual([...p.chain.readable[0]!], new Array(10).fill(round + i));
        assert.equal(p.chain.writableLength, 5);
        p.chain.writable[0]!.fill(0xa0 + i);
        heads.push(p.chain.head);
      }
      assert.equal(device.popChain(), null);
      // Complete in reverse order, each with a different len.
      for (let i = n - 1; i >= 0; i--) device.addUsed(heads[i]!, i + 1);
      device.publishUsed();
      for (let i = n - 1; i >= 0; i--) {
        assert.deepEqual(driver.getUsed(), { token: `r${round}.${i}`, len: i + 1 });
        const off = DATA_OFF + i * 64 + 32;
        assert.deepEqual([...bytes.subarray(off, off + 5)], new Array(5).fill(0xa0 + i));
      }
      assert.equal(driver.getUsed(), null);
      assert.equal(driver.freeCount, 8);
      assert.equal(driver.inFlight, 0);
    }
  });
});

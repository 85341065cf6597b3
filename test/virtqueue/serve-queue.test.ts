/**
 * The one queue-serving routine (src/virtqueue/serve-queue.ts) against rings written raw by the
 * mock driver (test/fixtures/raw-ring.ts, offsets by hand from VIRTIO 1.2 §2.7): both malformed-
 * chain policies, publish/notify batching, the §2.7.10 re-check, and its counters.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { QueueServer, MALFORMED_CHAIN, type MalformedChainPolicy } from '../../src/virtqueue/serve-queue.js';
import { VirtqueueError, type DescriptorChain } from '../../src/virtqueue/chain.js';
import { F_NEXT, F_WRITE, RawRing } from '../fixtures/raw-ring.js';

/** A good chain at descriptors (head, head+1): 4 readable bytes, 4 writable. */
function good(r: RawRing, head: number): void {
  r.writeDesc(head, { addr: r.buffer(new Uint8Array([1, 2, 3, 4])), len: 4, flags: F_NEXT, next: head + 1 });
  r.writeDesc(head + 1, { addr: r.alloc(4), len: 4, flags: F_WRITE });
}

/** A descriptor loop (head -> head+1 -> head). */
function loop(r: RawRing, head: number): void {
  const a = r.alloc(8);
  r.writeDesc(head, { addr: a, len: 8, flags: F_NEXT, next: head + 1 });
  r.writeDesc(head + 1, { addr: a, len: 8, flags: F_NEXT, next: head });
}

function setup(policy: MalformedChainPolicy, opts: { eventIdx?: boolean; publishEvery?: number } = {}) {
  const r = new RawRing({ size: 16 });
  const q = r.deviceQueue({ eventIdx: opts.eventIdx ?? false });
  const stats = { requests: 0, malformedChains: 0, interrupts: 0 };
  const seen: number[] = [];
  let notified = 0;
  const server = new QueueServer(q, {
    process: (c: DescriptorChain) => {
      seen.push(c.head);
      return c.writableLength;
    },
    notify: () => notified++,
    malformedChain: policy,
    stats,
    ...(opts.publishEvery !== undefined ? { publishEvery: opts.publishEvery } : {}),
  });
  return { r, q, stats, seen, server, notified: () => notified };
}

describe('QueueServer', () => {
  it("'complete-empty': a loop is completed with 0 bytes between two good chains, and counted", () => {
    const { r, stats, seen, server, notified } = setup(MALFORMED_CHAIN.COMPLETE_EMPTY);
    good(r, 0);
    loop(r, 2);
    good(r, 4);
    r.pushAvail(0);
    r.pushAvail(2);
    r.pushAvail(4);
    assert.equal(server.serve(), 3);
    assert.deepEqual(seen, [0, 4]);
    assert.equal(r.usedIdx(), 3);
    assert.deepEqual([r.usedElem(0), r.usedElem(1), r.usedElem(2)], [
      { id: 0, len: 4 },
      { id: 2, len: 0 },
      { id: 4, len: 4 },
    ]);
    assert.deepEqual(stats, { requests: 2, malformedChains: 1, interrupts: 1 });
    assert.equal(notified(), 1, 'one interrupt for the batch');
  });

  it("'break-queue': the good chain before the loop is published and notified, then a VirtqueueError", () => {
    const { r, stats, seen, server, notified } = setup(MALFORMED_CHAIN.BREAK_QUEUE);
    good(r, 0);
    loop(r, 2);
    good(r, 4);
    r.pushAvail(0);
    r.pushAvail(2);
    r.pushAvail(4);
    assert.throws(() => server.serve(), (e: unknown) => e instanceof VirtqueueError && e.kind === 'chain-too-long' && e.head === 2);
    assert.deepEqual(seen, [0]);
    assert.equal(r.usedIdx(), 1, 'the completion made before the loop is visible');
    assert.equal(notified(), 1);
    assert.deepEqual(stats, { requests: 1, malformedChains: 1, interrupts: 1 });
  });

  it('a queue-fatal avail.idx jump throws after publishing, under either policy', () => {
    for (const policy of Object.values(MALFORMED_CHAIN)) {
      const { r, q, server } = setup(policy);
      good(r, 0);
      r.pushAvail(0);
      assert.equal(server.serve(), 1);
      r.setAvailIdx(1 + 17); // 17 entries pending on a 16-entry ring
      assert.throws(() => server.serve(), (e: unknown) => e instanceof VirtqueueError && e.kind === 'avail-index-jump');
      assert.equal(q.broken, true);
    }
  });

  it('publishes used.idx every publishEvery completions (the driver may start mid-batch)', () => {
    const { r, server, notified } = setup(MALFORMED_CHAIN.COMPLETE_EMPTY, { publishEvery: 2 });
    for (let h = 0; h < 10; h += 2) {
      good(r, h);
      r.pushAvail(h);
    }
    assert.equal(server.serve(), 5);
    assert.equal(r.usedIdx(), 5);
    // Without EVENT_IDX and without VIRTQ_AVAIL_F_NO_INTERRUPT: at 2, at 4 and the final 5.
    assert.equal(notified(), 3);
  });

  it('publishes used.idx once publishBytes of chains are done, whatever the count (big requests are reaped at once)', () => {
    const r = new RawRing({ size: 16 });
    const stats = { requests: 0, malformedChains: 0, interrupts: 0 };
    const usedIdxSeen: number[] = [];
    const server = new QueueServer(r.deviceQueue({ eventIdx: false }), {
      process: (c) => {
        usedIdxSeen.push(r.usedIdx()); // what a driver polling used.idx sees while this chain is served
        return c.writableLength;
      },
      notify: () => {},
      malformedChain: MALFORMED_CHAIN.COMPLETE_EMPTY,
      stats,
      publishBytes: 100,
    });
    // Five chains of 60 readable + 4 writable bytes: 128 >= 100 after every second one.
    for (let h = 0; h < 10; h += 2) {
      r.writeDesc(h, { addr: r.buffer(new Uint8Array(60).fill(h)), len: 60, flags: F_NEXT, next: h + 1 });
      r.writeDesc(h + 1, { addr: r.alloc(4), len: 4, flags: F_WRITE });
      r.pushAvail(h);
    }
    assert.equal(server.serve(), 5);
    assert.deepEqual(usedIdxSeen, [0, 0, 2, 2, 4]);
    assert.equal(r.usedIdx(), 5);
    assert.equal(stats.interrupts, 3); // at 2, at 4 and the final 5

    // Small chains (8 bytes each) stay batched by count: nothing is published before the end.
    const small = setup(MALFORMED_CHAIN.COMPLETE_EMPTY);
    const seenSmall: number[] = [];
    const server2 = new QueueServer(small.q, {
      process: (c) => {
        seenSmall.push(small.r.usedIdx());
        return c.writableLength;
      },
      notify: () => {},
      malformedChain: MALFORMED_CHAIN.COMPLETE_EMPTY,
      stats: { requests: 0, malformedChains: 0, interrupts: 0 },
    });
    for (let h = 0; h < 10; h += 2) {
      good(small.r, h);
      small.r.pushAvail(h);
    }
    assert.equal(server2.serve(), 5);
    assert.deepEqual(seenSmall, [0, 0, 0, 0, 0]);
    assert.equal(small.r.usedIdx(), 5);
  });

  it('rejects a publishBytes below 1', () => {
    const r = new RawRing({ size: 16 });
    assert.throws(
      () => new QueueServer(r.deviceQueue({ eventIdx: false }), { process: () => 0, notify: () => {}, malformedChain: MALFORMED_CHAIN.COMPLETE_EMPTY, stats: { requests: 0, malformedChains: 0, interrupts: 0 }, publishBytes: 0 }),
      /publishBytes must be >= 1/,
    );
  });

  it('a processor that throws gets its chain completed with 0 bytes; the queue goes on', () => {
    const r = new RawRing({ size: 16 });
    const stats = { requests: 0, malformedChains: 0, interrupts: 0 };
    const server = new QueueServer(r.deviceQueue({ eventIdx: false }), {
      process: (c) => {
        if (c.head === 0) throw new Error('bug');
        return 4;
      },
      notify: () => {},
      malformedChain: MALFORMED_CHAIN.BREAK_QUEUE,
      stats,
    });
    good(r, 0);
    good(r, 2);
    r.pushAvail(0);
    r.pushAvail(2);
    assert.equal(server.serve(), 2);
    assert.deepEqual([r.usedElem(0), r.usedElem(1)], [
      { id: 0, len: 0 },
      { id: 2, len: 4 },
    ]);
  });

  it('EVENT_IDX: serve() leaves avail_event = last_avail_idx (re-armed); drain() leaves it quiet', () => {
    const { r, server } = setup(MALFORMED_CHAIN.COMPLETE_EMPTY, { eventIdx: true });
    good(r, 0);
    r.pushAvail(0);
    assert.equal(server.drain(), 1);
    assert.equal(server.quiet, true);
    assert.equal(r.availEvent(), 0, 'not re-armed while quiet');
    assert.equal(server.serve(), 0);
    assert.equal(server.quiet, false);
    assert.equal(r.availEvent(), 1);
  });
});

/**
 * src/sys/fd.ts against the kernel: the reusable PollSet reports exactly the signalled entries
 * (by index), times out with 0, survives being re-filled with fewer/more entries, and reports
 * POLLNVAL for a closed fd; eventfd counters add up and reset on read.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createEventFd, signalEventFd, drainEventFd, closeFd, PollSet, POLLIN, POLLNVAL } from '../../src/sys/fd.js';

test('PollSet: the signalled entry and only it, then nothing after the drain', () => {
  const a = createEventFd();
  const b = createEventFd();
  const c = createEventFd();
  try {
    const set = new PollSet();
    set.set([
      { fd: a, events: POLLIN },
      { fd: b, events: POLLIN },
      { fd: c, events: POLLIN },
    ]);
    assert.equal(set.size, 3);
    assert.equal(set.wait(0), 0); // nothing signalled: an immediate timeout
    assert.deepEqual([set.revents(0), set.revents(1), set.revents(2)], [0, 0, 0]);

    assert.ok(signalEventFd(b));
    assert.ok(signalEventFd(b));
    assert.equal(set.wait(-1), 1);
    assert.deepEqual([set.revents(0), set.revents(1), set.revents(2)], [0, POLLIN, 0]);
    assert.equal(drainEventFd(b), 2n); // two signals, one counter
    assert.equal(drainEventFd(b), 0n); // reset by the read (EAGAIN on the non-blocking fd)
    assert.equal(set.wait(0), 0);
    assert.equal(set.revents(1), 0);
    assert.equal(set.revents(3), 0); // out of range
    assert.equal(set.revents(-1), 0);

    // Re-filled with fewer entries: the old third entry is gone even though it is signalled.
    assert.ok(signalEventFd(c));
    set.set([{ fd: a, events: POLLIN }]);
    assert.equal(set.size, 1);
    assert.equal(set.wait(0), 0);
    assert.equal(set.revents(2), 0);
    // ... and with more again: c (still signalled) is seen at its new index.
    set.set([
      { fd: a, events: POLLIN },
      { fd: b, events: POLLIN },
      { fd: a, events: POLLIN },
      { fd: c, events: POLLIN },
    ]);
    assert.equal(set.wait(-1), 1);
    assert.deepEqual([set.revents(0), set.revents(1), set.revents(2), set.revents(3)], [0, 0, 0, POLLIN]);
    assert.equal(drainEventFd(c), 1n);
  } finally {
    closeFd(a);
    closeFd(b);
    closeFd(c);
  }
});

test('PollSet: a closed fd is POLLNVAL (poll never blocks on it)', () => {
  const a = createEventFd();
  const set = new PollSet();
  set.set([{ fd: a, events: POLLIN }]);
  closeFd(a);
  assert.equal(set.wait(-1), 1);
  assert.equal(set.revents(0), POLLNVAL);
});

test('PollSet.waitMicros: ppoll with a microsecond timeout; times out with 0 after about that long, else reports the entry', () => {
  const a = createEventFd();
  const b = createEventFd();
  try {
    const set = new PollSet();
    set.set([
      { fd: a, events: POLLIN },
      { fd: b, events: POLLIN },
    ]);
    const t0 = performance.now();
    assert.equal(set.waitMicros(3000), 0);
    const waited = performance.now() - t0;
    assert.ok(waited >= 2.5 && waited < 1000, `waited ${waited} ms for a 3000 us timeout`);
    assert.deepEqual([set.revents(0), set.revents(1)], [0, 0]);
    assert.ok(signalEventFd(b));
    assert.equal(set.waitMicros(1_500_000), 1); // over a second: the seconds field is used too
    assert.deepEqual([set.revents(0), set.revents(1)], [0, POLLIN]);
    assert.equal(drainEventFd(b), 1n);
  } finally {
    closeFd(a);
    closeFd(b);
  }
});

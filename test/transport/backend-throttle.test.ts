/**
 * The QoS token buckets (src/transport/vhost-user/backend-throttle.ts) with an injected clock: the
 * long-run rate is exactly the configured one, the burst is bounded, a request larger than the
 * burst is still admitted (and its debt delays the next ones), and waitMs() says when to come back.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { TokenBucket, ConnectionThrottle, BURST_SECONDS } from '../../src/transport/vhost-user/backend-throttle.js';

/** Admits requests of `cost` as fast as the bucket allows, sleeping exactly waitMs(); returns how many in `seconds`. */
function drive(rate: number, cost: number, seconds: number): number {
  let t = 0;
  const b = new TokenBucket(rate, () => t);
  let admitted = 0;
  while (t < seconds * 1000) {
    if (b.ready()) {
      b.take(cost);
      admitted++;
    } else {
      t += b.waitMs();
    }
  }
  return admitted;
}

describe('TokenBucket', () => {
  it('500 ops/s over 10 s admits 500/s plus at most the burst', () => {
    const n = drive(500, 1, 10);
    assert.ok(n >= 5000 && n <= 5000 + 500 * BURST_SECONDS + 1, `${n} in 10 s`);
  });

  it('10 MB/s with 16 KiB requests: 10e6 bytes per second, long-run', () => {
    const n = drive(10_000_000, 16384, 10);
    const bytesPerSecond = (n * 16384) / 10;
    assert.ok(bytesPerSecond >= 9.9e6 && bytesPerSecond <= 10.1e6 + 16384, `${bytesPerSecond} B/s`);
  });

  it('a request larger than the burst is admitted, and its debt delays the next one', () => {
    let t = 0;
    const b = new TokenBucket(1000, () => t); // 1000 B/s, burst 20 B
    assert.equal(b.ready(), true);
    b.take(1000);
    assert.equal(b.ready(), false);
    const wait = b.waitMs();
    assert.ok(wait > 979 && wait < 981, `wait ${wait} ms`); // 980 B of debt at 1 B/ms (+ the 20 B burst it had)
    t += wait;
    assert.equal(b.ready(), true);
  });

  it('an idle period refills only up to the burst', () => {
    let t = 0;
    const b = new TokenBucket(100, () => t); // burst max(1, 100 x 0.02) = 2
    t += 60_000;
    let n = 0;
    while (b.ready()) {
      b.take(1);
      n++;
    }
    assert.equal(n, 2);
  });

  it('rejects a rate that is not > 0', () => {
    for (const r of [0, -1, NaN, Infinity]) assert.throws(() => new TokenBucket(r, () => 0), RangeError);
  });
});

describe('ConnectionThrottle', () => {
  it('both limits: the stricter one decides; no limit means always ready', () => {
    const t = 0;
    const both = new ConnectionThrottle({ ops: 1000, bps: 1000 }, () => t);
    both.take(500); // 1 op (of a 20-op burst), 500 bytes (of a 20-byte burst)
    assert.equal(both.ready(), false);
    assert.ok(Math.abs(both.waitMs() - 480) < 0.01);
    const none = new ConnectionThrottle({}, () => t);
    none.take(1e9);
    assert.equal(none.ready(), true);
    assert.equal(none.waitMs(), 0);
  });
});

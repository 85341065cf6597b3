/**
 * The adaptive window shared by the device's polling and the driver's spin
 * (src/virtqueue/adaptive-window.ts): the moving average (weight 1/8, samples clamped to 4x the
 * bound) and the back-off (skip 1, 3, 7, ... episodes after consecutive misses; a hit resets it),
 * against values worked out by hand.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { AdaptiveWindow } from '../../src/virtqueue/adaptive-window.js';

test('moving average: the first sample, then 1/8 steps; samples clamped to 4x the bound', () => {
  const w = new AdaptiveWindow(0.2, 3);
  assert.equal(w.averageMs, Infinity);
  assert.equal(w.worthPolling, false); // nothing measured yet
  w.addSample(0.1);
  assert.equal(w.averageMs, 0.1);
  assert.equal(w.worthPolling, true);
  w.addSample(0.18); // 0.1 + (0.18 - 0.1) / 8 = 0.11
  assert.ok(Math.abs(w.averageMs - 0.11) < 1e-12);
  w.addSample(1000); // clamped to 0.8: 0.11 + (0.8 - 0.11) / 8 = 0.19625
  assert.ok(Math.abs(w.averageMs - 0.19625) < 1e-12);
  w.addSample(1000); // 0.19625 + (0.8 - 0.19625) / 8 = 0.27171875: over the bound
  assert.ok(Math.abs(w.averageMs - 0.27171875) < 1e-12);
  assert.equal(w.worthPolling, false);
  assert.equal(new AdaptiveWindow(0, 3).worthPolling, false); // bound 0: never
});

test('back-off: consecutive misses skip 1, 3, 7 (capped by maxBackoff) episodes; a hit resets it', () => {
  const w = new AdaptiveWindow(1, 3);
  /** Runs episodes: each is skipped or ends with `hit`; returns S for a skip, H/M for an outcome. */
  const run = (outcomes: boolean[]): string => {
    let out = '';
    for (const hit of outcomes) {
      while (w.skipEpisode()) out += 'S';
      out += w.outcome(hit) ? 'H' : 'M';
    }
    return out;
  };
  assert.equal(run([false, false, false, false]), 'MSMSSSMSSSSSSSM');
  assert.deepEqual([w.hits, w.misses], [0, 4]);
  // Skips pending from the last miss are served first; then a hit resets the back-off: the next miss skips 1.
  assert.equal(run([true, false, false]), 'SSSSSSSHMSM');
  assert.deepEqual([w.hits, w.misses], [1, 6]);
  assert.throws(() => new AdaptiveWindow(1, 31), /maxBackoff must be 0..30/);
});

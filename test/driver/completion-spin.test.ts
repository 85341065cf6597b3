/**
 * The driver's spin-then-sleep (src/driver/completion-spin.ts) with an injected clock: when it
 * spins, for how long, when it leaves the event loop alone, and how it backs off.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CompletionSpin, MAX_SYNC_RUN_MS, SPIN_MAX_IN_FLIGHT } from '../../src/driver/completion-spin.js';

function fake(boundMicros = 100, cpuSpare = () => true) {
  const clock = { t: 1024 };
  const spin = new CompletionSpin(boundMicros, () => clock.t, cpuSpare);
  const runs: number[] = [];
  /** A request published now completes `ms` later (seen by interrupt). */
  const roundTrip = (ms: number): void => {
    spin.notePublished();
    clock.t += ms;
    spin.noteCompletion();
  };
  return { clock, spin, runs, roundTrip, newRun: () => void runs.push(clock.t) };
}

describe('CompletionSpin', () => {
  it('does not spin before a completion time is known, with 0 or > SPIN_MAX_IN_FLIGHT in flight, or a bound of 0', () => {
    const { spin, roundTrip, newRun } = fake();
    assert.equal(spin.window(1, newRun), 0, 'no completion seen yet');
    roundTrip(0.01);
    assert.ok(spin.window(1, newRun) > 0);
    assert.equal(spin.window(0, newRun), 0);
    assert.equal(spin.window(SPIN_MAX_IN_FLIGHT + 1, newRun), 0);
    const off = fake(0);
    off.roundTrip(0.01);
    assert.equal(off.spin.window(1, off.newRun), 0);
    assert.throws(() => new CompletionSpin(-1, () => 0), RangeError);
  });

  it('the window is twice the average completion time plus 2 us, capped at the bound; none when completions are slower than the bound', () => {
    const { spin, roundTrip, newRun } = fake(100);
    roundTrip(0.01); // 10 us: the first sample is the average
    assert.ok(Math.abs(spin.window(1, newRun) - 0.022) < 1e-9);
    roundTrip(0.05); // average 10 + (50 - 10) / 8 = 15 us
    assert.ok(Math.abs(spin.latencyAverageMs - 0.015) < 1e-9);
    assert.ok(Math.abs(spin.window(1, newRun) - 0.032) < 1e-9);
    for (let i = 0; i < 40; i++) roundTrip(0.09); // average -> 90 us: 2x90+2 > 100: capped
    assert.ok(Math.abs(spin.window(1, newRun) - 0.1) < 1e-6);
    for (let i = 0; i < 40; i++) roundTrip(0.3); // slower than the bound (clamped at 4x): no spinning
    assert.equal(spin.window(1, newRun), 0);
  });

  it('a run of episodes without a macrotask boundary stops after MAX_SYNC_RUN_MS, until runEnded()', () => {
    const { clock, spin, runs, roundTrip, newRun } = fake();
    roundTrip(0.01);
    assert.ok(spin.window(1, newRun) > 0);
    assert.deepEqual(runs, [clock.t], 'the first episode starts a run (the caller schedules runEnded)');
    clock.t += MAX_SYNC_RUN_MS / 2;
    assert.ok(spin.window(1, newRun) > 0);
    clock.t += MAX_SYNC_RUN_MS;
    assert.equal(spin.window(1, newRun), 0, 'the event loop gets its turn');
    assert.equal(runs.length, 1);
    spin.runEnded();
    assert.ok(spin.window(1, newRun) > 0);
    assert.equal(runs.length, 2);
  });

  it('episode: a hit as soon as check() succeeds; a miss when the window closes or the thread was descheduled', () => {
    const { clock, spin, roundTrip, newRun } = fake();
    roundTrip(0.01);
    let checks = 0;
    assert.equal(
      spin.episode(spin.window(1, newRun), () => {
        clock.t += 0.001;
        return ++checks === 3;
      }),
      true,
    );
    assert.equal(checks, 3);
    checks = 0;
    // Window 22 us, 1 us per check: a miss after about 22 checks.
    assert.equal(spin.episode(0.022, () => ((clock.t += 0.001), checks++, false)), false);
    assert.ok(checks >= 21 && checks <= 23, String(checks));
    assert.deepEqual([spin.hits, spin.misses], [1, 1]);
    // Preempted: a 0.5 ms gap between two checks ends the episode after one check.
    spin.runEnded();
    let n = 0;
    const fresh = fake();
    fresh.roundTrip(0.01);
    assert.equal(fresh.spin.episode(0.05, () => ((fresh.clock.t += 0.5), n++, false)), false);
    assert.equal(n, 1);
  });

  it('misses skip 1, then 3 following episodes (at most); a hit resets the back-off; sleeping episodes count the same', () => {
    const { spin, roundTrip, newRun } = fake();
    roundTrip(0.01);
    const attempt = (hit: boolean): boolean => {
      spin.runEnded();
      const w = spin.window(1, newRun);
      if (w === 0) return false;
      spin.sleepEpisode(w, () => hit);
      return true;
    };
    // miss, skip 1, miss, skip 3, miss, skip 3 (MAX_SPIN_BACKOFF 2)
    const pattern = Array.from({ length: 11 }, () => attempt(false));
    assert.deepEqual(pattern, [true, false, true, false, false, false, true, false, false, false, true]);
    for (let i = 0; i < 3; i++) attempt(false); // the skips
    assert.equal(attempt(true), true);
    assert.equal(attempt(false), true, 'after a hit the next episode runs');
    assert.equal(attempt(false), false, 'and that miss skips just 1');
  });

  it('cpuSpare() is the transport\'s answer', () => {
    let spare = true;
    const { spin } = fake(100, () => spare);
    assert.equal(spin.cpuSpare(), true);
    spare = false;
    assert.equal(spin.cpuSpare(), false);
  });
});

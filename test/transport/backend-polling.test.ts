/**
 * The back-end's adaptive polling (src/transport/vhost-user/backend-polling.ts) with an injected
 * clock: when it polls, for how long, how it backs off, and that it never polls when disabled,
 * idle, or when requests come slower than the bound.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AdaptivePolling, MAX_POLL_EPISODE_MS } from '../../src/transport/vhost-user/backend-polling.js';

/** A fake clock; every check (findWork) and every yield advance it by `step` ms. */
function fakeEnv(step = 0.01) {
  const env = { t: 1024, yields: 0 }; // a power of 2: +0.1 ms steps stay exact enough below
  return {
    env,
    polling: (boundMicros: number) =>
      new AdaptivePolling(boundMicros, {
        now: () => env.t,
        yieldCpu: () => {
          env.yields++;
          env.t += step;
        },
      }),
  };
}

/** Completes a request at t, then the next one arrives `gapMs` later (a kick). */
function request(p: AdaptivePolling, env: { t: number }, gapMs: number): void {
  env.t += gapMs;
  p.noteRequest();
  p.noteCompletion();
}

describe('AdaptivePolling', () => {
  it('does not poll before any request gap is known, nor when the bound is 0', () => {
    const { env, polling } = fakeEnv();
    const p = polling(1000);
    p.noteCompletion();
    let checks = 0;
    p.episode(() => (checks++, -1), () => 0);
    assert.equal(checks, 0);
    const off = polling(0);
    request(off, env, 0.05);
    request(off, env, 0.05);
    off.episode(() => (checks++, -1), () => 0);
    assert.equal(checks, 0);
  });

  it('polls for twice the average gap after a completion, then misses', () => {
    const { env, polling } = fakeEnv(0.01);
    const p = polling(1000);
    p.noteCompletion();
    request(p, env, 0.1); // first gap: 0.1 ms
    assert.ok(Math.abs(p.gapAverageMs - 0.1) < 1e-9);
    const start = env.t;
    p.episode(() => -1, () => 0);
    assert.equal(p.misses, 1);
    // Window = 2 x 0.1 ms from the completion; checks every 0.01 ms.
    assert.ok(env.t - start >= 0.2 - 1e-9 && env.t - start <= 0.2 + 0.011, `polled ${env.t - start} ms`);
  });

  it('a hit serves and extends the window; an episode is capped at MAX_POLL_EPISODE_MS', () => {
    const { env, polling } = fakeEnv(0.01);
    const p = polling(2000);
    p.noteCompletion();
    request(p, env, 0.5);
    const start = env.t;
    let served = 0;
    // Work is always there: every serve completes a request.
    p.episode(
      () => 0,
      () => {
        served++;
        env.t += 0.05;
        p.noteCompletion();
        return 1;
      },
    );
    assert.ok(served > 10);
    assert.ok(p.hits === served);
    assert.ok(env.t - start <= MAX_POLL_EPISODE_MS + 0.1, `episode ran ${env.t - start} ms`);
  });

  it('does not poll when requests come slower than the bound', () => {
    const { env, polling } = fakeEnv();
    const p = polling(100); // 0.1 ms
    p.noteCompletion();
    request(p, env, 5); // clamped to 4 x bound = 0.4 ms, still above the bound
    let checks = 0;
    p.episode(() => (checks++, -1), () => 0);
    assert.equal(checks, 0);
  });

  it('consecutive misses skip 1, 3, 7 following episodes; a hit resets the back-off', () => {
    const { env, polling } = fakeEnv(0.01);
    const p = polling(1000);
    p.noteCompletion();
    request(p, env, 0.1);
    const ran = (): boolean => {
      let checked = false;
      p.noteCompletion();
      p.episode(() => ((checked = true), -1), () => 0);
      return checked;
    };
    const pattern = Array.from({ length: 1 + 1 + 1 + 3 + 1 + 7 + 1 }, ran);
    // miss, skip 1, miss, skip 3, miss, skip 7, miss
    assert.deepEqual(pattern, [true, false, true, false, false, false, true, false, false, false, false, false, false, false, true]);
    // A hit resets: next episode runs and finds work.
    for (let i = 0; i < 15; i++) if (ran()) break; // consume the skips (15 after the 4th miss)
    let hit = false;
    p.noteCompletion();
    p.episode(
      () => (hit ? -1 : 0),
      () => {
        hit = true;
        p.noteCompletion();
        return 1;
      },
    );
    assert.equal(hit, true);
    // That episode ended in a miss after its hit: back-off 1 (skip 1), not 5 (skip 31).
    assert.deepEqual([ran(), ran()], [false, true]);
  });

  it('a descheduled thread (a gap between two checks > 0.1 ms) ends the episode as a miss', () => {
    const { env, polling } = fakeEnv(0.5); // each yield "takes" 0.5 ms: preempted
    const p = polling(1000);
    p.noteCompletion();
    request(p, env, 0.4);
    let checks = 0;
    p.episode(() => (checks++, -1), () => 0);
    assert.equal(checks, 1);
    assert.equal(p.misses, 1);
  });

  it('never polls while cpuSpare() says no CPU is spare; maxBackoff caps the skips', () => {
    const env = { t: 1024 };
    let spare = false;
    const p = new AdaptivePolling(1000, { now: () => env.t, yieldCpu: () => (env.t += 0.01), cpuSpare: () => spare }, 1);
    p.noteCompletion();
    request(p, env, 0.1);
    let checks = 0;
    p.noteCompletion();
    p.episode(() => (checks++, -1), () => 0);
    assert.equal(checks, 0, 'busy machine: no episode');
    spare = true;
    const ran = (): boolean => {
      let checked = false;
      p.noteCompletion();
      p.episode(() => ((checked = true), -1), () => 0);
      return checked;
    };
    // maxBackoff 1: every miss skips exactly 1 episode (2^1 - 1), never more.
    assert.deepEqual(Array.from({ length: 8 }, ran), [true, false, true, false, true, false, true, false]);
    assert.throws(() => new AdaptivePolling(1000, { now: () => 0, yieldCpu: () => undefined }, 31), RangeError);
  });
});

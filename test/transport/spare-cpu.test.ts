/**
 * When pollers may spend a CPU (src/transport/spare-cpu.ts): /proc/loadavg's runnable count
 * against the CPUs, re-read at most every RECHECK_MS; VCRYPTO_POLL.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { POLL_MODE, RECHECK_MS, SpareCpu, cpuSpareFor, pollModeFromEnv, runnableFromLoadavg } from '../../src/transport/spare-cpu.js';

describe('SpareCpu', () => {
  it('reads the running/total field of /proc/loadavg (proc(5))', () => {
    assert.equal(runnableFromLoadavg('0.52 0.58 0.59 3/512 12345\n'), 3);
    assert.equal(runnableFromLoadavg('10.00 9.50 8.00 17/1024 99\n'), 17);
    assert.ok(Number.isNaN(runnableFromLoadavg('garbage')));
    // This machine's file has the format (this test thread is runnable: at least 1).
    assert.ok(runnableFromLoadavg(readFileSync('/proc/loadavg', 'latin1')) >= 1);
  });

  it('spare while runnable threads <= CPUs; re-read only every RECHECK_MS', () => {
    const clock = { t: 0 };
    let runnable = 2;
    let reads = 0;
    const gate = new SpareCpu({ now: () => clock.t, runnable: () => (reads++, runnable), cpus: 2 });
    assert.equal(gate.spare(), true);
    runnable = 3;
    clock.t += RECHECK_MS / 2;
    assert.equal(gate.spare(), true, 'not re-read yet');
    assert.equal(reads, 1);
    clock.t += RECHECK_MS / 2;
    assert.equal(gate.spare(), false);
    assert.equal(reads, 2);
    runnable = Number.NaN; // unknown: allowed
    clock.t += RECHECK_MS;
    assert.equal(gate.spare(), true);
  });

  it('VCRYPTO_POLL: auto, always, never; anything else is refused', () => {
    assert.equal(pollModeFromEnv({}), undefined);
    assert.equal(pollModeFromEnv({ VCRYPTO_POLL: 'always' }), POLL_MODE.ALWAYS);
    assert.equal(pollModeFromEnv({ VCRYPTO_POLL: 'never' }), POLL_MODE.NEVER);
    assert.throws(() => pollModeFromEnv({ VCRYPTO_POLL: 'yes' }), /VCRYPTO_POLL="yes": expected auto, always, never/);
    assert.equal(cpuSpareFor(POLL_MODE.ALWAYS)(), true);
    assert.equal(cpuSpareFor(POLL_MODE.NEVER)(), false);
  });
});

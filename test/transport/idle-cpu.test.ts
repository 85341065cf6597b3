/**
 * Idle costs nothing: right after a burst of depth-1 requests with polling forced on (the driver
 * spinning on its used rings, the device threads on their avail rings), the process — every thread
 * of it, driver and device (process.cpuUsage() is getrusage(RUSAGE_SELF)) — uses (almost) no CPU.
 * One spinning thread would use ~1000 ms per second; the bound is 25 ms over 1 s, measured from 5 ms
 * after the last request, a margin for the test runner and timers.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { describe, it } from 'node:test';
import type { CryptoDevice } from '../../src/driver/api.js';
import { createInProcessDevice } from '../../src/transport/in-process/create-in-process-device.js';
import { connectVhostUserDevice } from '../../src/transport/vhost-user/connect.js';
import { POLL_MODE, POLL_MODE_ENV } from '../../src/transport/spare-cpu.js';
import { startServer } from './vhost-user-fixture.js';

const IDLE_CPU_BOUND_MS = 25;

/** 2000 requests one at a time, then the CPU time (ms) the process uses over 1 s of idle from 5 ms on. */
async function idleCpuAfterBurst(device: CryptoDevice): Promise<number> {
  const handle = await device.open();
  const session = await handle.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: randomBytes(16) });
  const iv = randomBytes(16);
  const src = randomBytes(64);
  for (let i = 0; i < 2000; i++) await handle.crypt(session, { op: 'encrypt', src, iv });
  await sleep(5);
  const before = process.cpuUsage();
  await sleep(1000);
  const used = process.cpuUsage(before);
  return (used.user + used.system) / 1000;
}

describe('an idle device uses no CPU, polling or not', () => {
  it(`embedded (virtio), VCRYPTO_POLL=always: < ${IDLE_CPU_BOUND_MS} ms of CPU in the second after the last request`, async () => {
    const device = await createInProcessDevice({ pollMode: POLL_MODE.ALWAYS });
    try {
      const ms = await idleCpuAfterBurst(device);
      assert.ok(ms < IDLE_CPU_BOUND_MS, `${ms.toFixed(1)} ms of CPU while idle`);
    } finally {
      await device.close();
    }
  });

  it(`vhost-user front-end and back-end (both in this process), VCRYPTO_POLL=always: < ${IDLE_CPU_BOUND_MS} ms`, async () => {
    const srv = startServer();
    const saved = process.env[POLL_MODE_ENV];
    process.env[POLL_MODE_ENV] = POLL_MODE.ALWAYS;
    let device: CryptoDevice | undefined;
    try {
      device = await connectVhostUserDevice(srv.path);
      const ms = await idleCpuAfterBurst(device);
      assert.ok(ms < IDLE_CPU_BOUND_MS, `${ms.toFixed(1)} ms of CPU while idle`);
    } finally {
      if (saved === undefined) delete process.env[POLL_MODE_ENV];
      else process.env[POLL_MODE_ENV] = saved;
      await device?.close();
      await srv.stop();
    }
  });
});

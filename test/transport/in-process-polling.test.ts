/**
 * The embedded transport's spin-then-sleep (in-process-transport.ts, registers.ts, device-worker.ts):
 * the blocking interrupt wait's handshake with the device, and one request at a time under every
 * VCRYPTO_POLL mode giving node:crypto's answers.
 */
import assert from 'node:assert/strict';
import { createCipheriv, randomBytes } from 'node:crypto';
import { describe, it } from 'node:test';
import { createInProcessDevice, embeddedDeviceStatistics } from '../../src/transport/in-process/create-in-process-device.js';
import { Register, createRegisterBlock, raiseInterrupt, waitInterruptSync } from '../../src/transport/in-process/registers.js';
import { POLL_MODE } from '../../src/transport/spare-cpu.js';

describe('blocking interrupt wait (registers.ts)', () => {
  it('no blocking waiter: the interrupt goes to the event loop word (INTERRUPT)', () => {
    const regs = createRegisterBlock();
    raiseInterrupt(regs, 0b1);
    assert.deepEqual([Atomics.load(regs, Register.INTERRUPT), Atomics.load(regs, Register.SYNC_INTERRUPT), Atomics.load(regs, Register.INTERRUPT_PENDING)], [1, 0, 1]);
    // Bits already pending: no second wake-up.
    raiseInterrupt(regs, 0b10);
    assert.deepEqual([Atomics.load(regs, Register.INTERRUPT), Atomics.load(regs, Register.INTERRUPT_PENDING)], [1, 0b11]);
  });

  it('a blocking waiter present: only SYNC_INTERRUPT is bumped (no event-loop wake-up)', () => {
    const regs = createRegisterBlock();
    Atomics.store(regs, Register.SYNC_WAITING, 1);
    raiseInterrupt(regs, 0b100);
    assert.deepEqual([Atomics.load(regs, Register.INTERRUPT), Atomics.load(regs, Register.SYNC_INTERRUPT)], [0, 1]);
  });

  it('waitInterruptSync takes pending bits at once, and times out with 0 after its timeout', () => {
    const regs = createRegisterBlock();
    Atomics.store(regs, Register.INTERRUPT_PENDING, 0b101);
    const t0 = performance.now();
    assert.equal(waitInterruptSync(regs, 1000), 0b101);
    assert.ok(performance.now() - t0 < 500, 'did not block');
    assert.equal(Atomics.load(regs, Register.INTERRUPT_PENDING), 0);
    assert.equal(Atomics.load(regs, Register.SYNC_WAITING), 0);
    const t1 = performance.now();
    assert.equal(waitInterruptSync(regs, 5), 0);
    assert.ok(performance.now() - t1 >= 4.5, 'waited its timeout');
    assert.equal(Atomics.load(regs, Register.SYNC_WAITING), 0);
  });
});

describe('one request at a time under each polling mode', () => {
  for (const mode of Object.values(POLL_MODE)) {
    it(`VCRYPTO_POLL=${mode}: 300 AES-128-CBC requests in a row give node:crypto's ciphertext`, async () => {
      const device = await createInProcessDevice({ pollMode: mode });
      try {
        const handle = await device.open();
        const key = randomBytes(16);
        const iv = randomBytes(16);
        const session = await handle.createSession({ kind: 'cipher', cipher: 'aes-cbc', key });
        for (let i = 0; i < 300; i++) {
          const src = randomBytes(16 * (1 + (i % 64)));
          const got = await handle.crypt(session, { op: 'encrypt', src, iv });
          const c = createCipheriv('aes-128-cbc', key, iv).setAutoPadding(false);
          assert.deepEqual(Buffer.from(got.dst), Buffer.concat([c.update(src), c.final()]));
        }
        const stats = embeddedDeviceStatistics(device)!;
        assert.equal(stats['sym-encrypt-ops'], 300);
        // Never polling: no request is found by polling (with polling, as many as the machine allows).
        if (mode === POLL_MODE.NEVER) assert.equal(stats['polled-requests'], 0, JSON.stringify(stats));
      } finally {
        await device.close();
      }
    });
  }
});

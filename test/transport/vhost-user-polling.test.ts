/**
 * The back-end's adaptive polling after a completion (backend-connection.ts #pollForWork) against a
 * front-end that follows VIRTIO 1.2 §2.7.10 exactly: with EVENT_IDX it kicks only when
 * vring_need_event(avail_event, new_idx, old_idx) says so. Every request must complete (polling
 * never loses one), requests that follow a completion quickly are served without a kick (the point
 * of polling; the worker counts them in its closing log line), and once the stream stops the ring is re-armed (avail_event = last_avail_idx) so a
 * later request's kick is not lost. With polling disabled (pollMicros 0) the same stream completes.
 * Requests are checked against NIST SP 800-38A F.2.1 (CBC-AES128.Encrypt).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VHOST_USER } from '../../src/spec/vhost-user.js';
import { signalEventFd, drainEventFd, pollAsync, POLLIN } from '../../src/sys/fd.js';
import { RawFrontEnd, TestGuest, HandRing, startServer, u64, u32pair, createEventFd, closeFd } from './vhost-user-fixture.js';
import { hex } from '../fixtures/bytes.js';
import { CBC_IV, KEYS, NIST, PLAIN_HEX } from '../fixtures/nist-sp800-38a.js';
import { F_NEXT, F_WRITE } from '../fixtures/raw-ring.js';

const KEY = hex(KEYS[128]);
const IV = hex(CBC_IV);
const PLAIN = hex(PLAIN_HEX);
const CIPHER = hex(NIST['aes-cbc'][128]);

/** CREATE_CRYPTO_SESSION payload (QEMU 7.2 layout, 632 bytes): AES-128-CBC encrypt. */
function sessionPayload(): Uint8Array {
  const p = new Uint8Array(632);
  const v = new DataView(p.buffer);
  v.setUint32(8, 3, true); // VIRTIO_CRYPTO_CIPHER_AES_CBC
  v.setUint32(12, KEY.length, true);
  p[32] = 1; // VIRTIO_CRYPTO_SYM_OP_CIPHER
  p[33] = 1; // encrypt
  p.set(KEY, 56);
  return p;
}

/** virtio_crypto_op_data_req for CIPHER_ENCRYPT of 64 bytes with a 16-byte IV (§5.9.7.5). */
function cipherHeader(sessionId: bigint): Uint8Array {
  const h = new Uint8Array(72);
  const v = new DataView(h.buffer);
  v.setUint32(0, 0x000, true); // VIRTIO_CRYPTO_CIPHER_ENCRYPT
  v.setBigUint64(8, sessionId, true);
  v.setUint32(24, 16, true);
  v.setUint32(28, 64, true);
  v.setUint32(32, 64, true);
  v.setUint32(64, 1, true); // VIRTIO_CRYPTO_SYM_OP_CIPHER
  return h;
}

/** §2.7.10: vring_need_event(event_idx, new_idx, old_idx). */
function needEvent(event: number, newIdx: number, oldIdx: number): boolean {
  return ((newIdx - event - 1) & 0xffff) < ((newIdx - oldIdx) & 0xffff);
}

async function waitCall(fd: number): Promise<void> {
  const [ev = 0] = await pollAsync([{ fd, events: POLLIN }], 5000);
  assert.notEqual(ev, 0, 'no used-buffer notification on the call eventfd');
  drainEventFd(fd);
}

async function stream(pollMicros: number, requests: number): Promise<{ unkicked: number; polled: number }> {
  const srv = startServer({ pollMicros });
  const g = new TestGuest();
  const fe = RawFrontEnd.connect(srv.path);
  const kick = createEventFd();
  const call = createEventFd();
  try {
    fe.send(VHOST_USER.SET_PROTOCOL_FEATURES, u64(0x88n));
    // EVENT_IDX | VERSION_1 (bits 29 and 32).
    fe.send(VHOST_USER.SET_FEATURES, u64((1n << 29n) | (1n << 32n)));
    assert.deepEqual(await fe.call(VHOST_USER.SET_MEM_TABLE, g.memTable(), { flags: 0x9, fds: [g.memfd, g.memfd] }), u64(0n));
    const ring = new HandRing(g, 64, 0x100000);
    fe.send(VHOST_USER.SET_VRING_NUM, u32pair(0, 64));
    fe.send(VHOST_USER.SET_VRING_ADDR, ring.addrPayload(0));
    fe.send(VHOST_USER.SET_VRING_CALL, u64(0n), { fds: [call] });
    fe.send(VHOST_USER.SET_VRING_KICK, u64(0n), { fds: [kick] });
    const session = new DataView((await fe.call(VHOST_USER.CREATE_CRYPTO_SESSION, sessionPayload())).buffer).getBigInt64(0, true);
    assert.ok(session >= 0n);

    const hdr = 0x120000;
    const iv = 0x120100;
    const src = 0x121000;
    const dst = 0x130000;
    const status = 0x140000;
    g.bytes.set(cipherHeader(session), hdr);
    g.bytes.set(IV, iv);
    g.bytes.set(PLAIN, src);
    ring.setDesc(ring.desc, 0, hdr, 72, F_NEXT, 1);
    ring.setDesc(ring.desc, 1, iv, 16, F_NEXT, 2);
    ring.setDesc(ring.desc, 2, src, 64, F_NEXT, 3);
    ring.setDesc(ring.desc, 3, dst, 64, F_NEXT | F_WRITE, 4);
    ring.setDesc(ring.desc, 4, status, 1, F_WRITE, 0);
    // Full barrier between publishing avail.idx and reading avail_event (§2.7.10): Atomics.
    const avail16 = new Uint16Array(g.bytes.buffer, g.bytes.byteOffset + ring.avail, 2 + ring.size + 1);
    const used16 = new Uint16Array(g.bytes.buffer, g.bytes.byteOffset + ring.used, 2 + 4 * ring.size + 1);

    let unkicked = 0;
    for (let i = 0; i < requests; i++) {
      g.bytes.fill(0, dst, dst + 64);
      g.bytes[status] = 0xff;
      const old = ring.availIdx;
      avail16[2 + ring.size] = ring.usedIdx; // used_event: interrupt on the next completion
      avail16[2 + (old % ring.size)] = 0;
      ring.availIdx = (old + 1) & 0xffff;
      Atomics.store(avail16, 1, ring.availIdx);
      if (needEvent(Atomics.load(used16, 2 + 4 * ring.size), ring.availIdx, old)) signalEventFd(kick);
      else unkicked++;
      await waitCall(call);
      assert.equal(ring.usedIdx, (i + 1) & 0xffff, `request ${i}: completed`);
      assert.equal(ring.usedElem(i).id, 0);
      assert.equal(g.bytes[status], 0, `request ${i}: VIRTIO_CRYPTO_OK`);
      assert.deepEqual(g.bytes.subarray(dst, dst + 64), CIPHER, `request ${i}: NIST ciphertext`);
    }
    // The stream stopped: after a message round trip the ring is re-armed (the worker handles
    // messages only after re-enabling notifications), so the next request is kicked and served.
    await fe.call(VHOST_USER.GET_FEATURES);
    assert.equal(ring.availEvent, ring.availIdx, 'avail_event = last_avail_idx once polling has ended');
    g.bytes.fill(0, dst, dst + 64);
    const old = ring.availIdx;
    ring.publish(0);
    assert.ok(needEvent(ring.availEvent, ring.availIdx, old), 'a re-armed ring asks for the kick');
    signalEventFd(kick);
    await waitCall(call);
    assert.equal(ring.usedIdx, (requests + 1) & 0xffff);
    assert.deepEqual(g.bytes.subarray(dst, dst + 64), CIPHER);
    fe.close();
    const line = await srv.waitForLog(/front-end disconnected after \d+ messages; \d+ requests found by polling/);
    const polled = Number(/; (\d+) requests found by polling/.exec(line)![1]);
    return { unkicked, polled };
  } finally {
    fe.close();
    closeFd(kick);
    closeFd(call);
    g.close();
    await srv.stop();
  }
}

test('adaptive polling: a quick stream is served without kicks, nothing is lost, the ring is re-armed after', async () => {
  // A bound far above this test's own round trip, so the window (twice the average gap) covers it.
  // Polling gives up by design when its thread is descheduled (a check gap over PREEMPTED_MS counts
  // as a miss and backs off): on a CI machine busy with other test files every episode of a stream
  // can miss (seen once: 0 polled of 200). So up to three streams; every one must complete with every
  // answer right (stream() asserts that), and one must find requests by polling. A back-end that
  // never polls fails all three.
  const attempts: string[] = [];
  for (let attempt = 1; attempt <= 3; attempt++) {
    const { unkicked, polled } = await stream(200_000, 200);
    assert.ok(unkicked >= polled, `a request found by polling was not kicked (${unkicked} unkicked, ${polled} polled)`);
    attempts.push(`${polled} polled, ${unkicked} unkicked`);
    if (polled > 0) return;
  }
  assert.fail(`requests that follow a completion quickly are found by polling: none in three streams of 200 (${attempts.join('; ')})`);
});

test('polling disabled (pollMicros 0): the same stream completes, every request served, none by polling', async () => {
  const { polled } = await stream(0, 50);
  assert.equal(polled, 0);
});

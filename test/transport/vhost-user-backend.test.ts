/**
 * The vhost-user back-end against a front-end written byte by byte in this test, replaying the
 * message sequence QEMU 7.2 sends (docs/qemu-vhost-user-crypto.md §3), with a Linux-shaped
 * AES-CBC request (indirect table, byte-granular splits, duplicated entries, in-place) checked
 * against NIST SP 800-38A F.2.1/F.2.2.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { VHOST_USER } from '../../src/spec/vhost-user.js';
import { signalEventFd, drainEventFd, pollAsync, POLLIN } from '../../src/sys/fd.js';
import { RawFrontEnd, TestGuest, HandRing, startServer, u64, u32pair, createEventFd, closeFd, openFdCount } from './vhost-user-fixture.js';
import { hex } from '../fixtures/bytes.js';
import { CBC_IV, KEYS, NIST, PLAIN_HEX } from '../fixtures/nist-sp800-38a.js';
import { F_INDIRECT, F_NEXT, F_WRITE } from '../fixtures/raw-ring.js';

// NIST SP 800-38A F.2.1 CBC-AES128.Encrypt
const KEY = hex(KEYS[128]);
const IV = hex(CBC_IV);
const PLAIN = hex(PLAIN_HEX);
const CIPHER = hex(NIST['aes-cbc'][128]);

/** CREATE_CRYPTO_SESSION payload as QEMU 7.2 builds it for Linux's cbc(aes) setkey (632 bytes). */
function session72(direction: number): Uint8Array {
  const p = new Uint8Array(632);
  const v = new DataView(p.buffer);
  v.setUint32(8, 3, true); // VIRTIO_CRYPTO_CIPHER_AES_CBC
  v.setUint32(12, KEY.length, true);
  p[32] = 1; // VIRTIO_CRYPTO_SYM_OP_CIPHER
  p[33] = direction; // 1 encrypt, 2 decrypt
  v.setBigUint64(40, 0x5555deadbeefn, true); // QEMU heap pointer
  p.set(KEY, 56);
  return p;
}

/** The 72-byte virtio_crypto_op_data_req of a cipher request (VIRTIO 1.2 §5.9.7.1, §5.9.7.2.1). */
function cipherHeader(opcode: number, sessionId: bigint, len: number): Uint8Array {
  const h = new Uint8Array(72);
  const v = new DataView(h.buffer);
  v.setUint32(0, opcode, true);
  v.setBigUint64(8, sessionId, true);
  v.setUint32(24, 16, true); // iv_len
  v.setUint32(28, len, true); // src_data_len
  v.setUint32(32, len, true); // dst_data_len
  v.setUint32(64, 1, true); // op_type = CIPHER
  return h;
}

async function waitCall(fd: number): Promise<void> {
  const [ev = 0] = await pollAsync([{ fd, events: POLLIN }], 5000);
  assert.notEqual(ev, 0, 'no used-buffer notification on the call eventfd');
  drainEventFd(fd);
}

test('QEMU 7.2 sequence: negotiation, memory table, ring start, sessions, CBC requests, GET_VRING_BASE', async () => {
  const srv = startServer();
  const g = new TestGuest();
  const fe = RawFrontEnd.connect(srv.path);
  const kick = createEventFd();
  const call = createEventFd();
  const maskedCall = createEventFd();
  const errFd = createEventFd();
  try {
    // Phase A
    assert.deepEqual(await fe.call(VHOST_USER.GET_FEATURES), u64(0x170000000n));
    assert.deepEqual(await fe.call(VHOST_USER.GET_PROTOCOL_FEATURES), u64(0x89n)); // MQ, REPLY_ACK, CRYPTO_SESSION; never CONFIG
    fe.send(VHOST_USER.SET_PROTOCOL_FEATURES, u64(0x89n));
    assert.deepEqual(await fe.call(VHOST_USER.GET_QUEUE_NUM), u64(1n));
    fe.send(VHOST_USER.SET_OWNER);
    assert.deepEqual(await fe.call(VHOST_USER.GET_FEATURES), u64(0x170000000n));
    fe.send(VHOST_USER.SET_VRING_CALL, u64(0n), { fds: [maskedCall] });
    fe.send(VHOST_USER.SET_VRING_ERR, u64(0n), { fds: [errFd] });
    // Phase B (DRIVER_OK)
    fe.send(VHOST_USER.SET_FEATURES, u64(0x40000000n));
    assert.deepEqual(await fe.call(VHOST_USER.SET_MEM_TABLE, g.memTable(), { flags: 0x9, fds: [g.memfd, g.memfd] }), u64(0n));
    const ring = new HandRing(g, 256, 0x100000);
    fe.send(VHOST_USER.SET_VRING_NUM, u32pair(0, 256));
    fe.send(VHOST_USER.SET_VRING_BASE, u32pair(0, 0));
    fe.send(VHOST_USER.SET_VRING_ADDR, ring.addrPayload(0));
    signalEventFd(kick); // QEMU's ioeventfd arrives pre-signalled
    fe.send(VHOST_USER.SET_VRING_KICK, u64(0n), { fds: [kick] });
    fe.send(VHOST_USER.SET_VRING_CALL, u64(0n), { fds: [call] });
    // Phase C: Linux's setkey creates an encrypt and a decrypt session
    const enc = new DataView((await fe.call(VHOST_USER.CREATE_CRYPTO_SESSION, session72(1))).buffer).getBigInt64(0, true);
    const decReply = await fe.call(VHOST_USER.CREATE_CRYPTO_SESSION, session72(2));
    assert.equal(decReply.length, 632);
    assert.ok(decReply.subarray(8).every((b) => b === 0), 'the reply echoes no key material');
    const dec = new DataView(decReply.buffer).getBigInt64(0, true);
    assert.ok(enc >= 0n && dec >= 0n && enc !== dec, `session ids ${enc}, ${dec}`);

    // Request 1: encrypt, out of place, indirect, src split at byte 20 with Linux's duplicated
    // entries (e1 e2 e2), dst split at byte 30 (d1 d2 d2), status alone.
    const table = 0x110000;
    const hdr = 0x120000;
    const iv = 0x120100;
    const src = 0x121000;
    const dst = 0x130000;
    const status = 0x140000;
    g.bytes.set(cipherHeader(0x000, enc, 64), hdr);
    g.bytes.set(IV, iv);
    g.bytes.set(PLAIN, src);
    g.bytes[status] = 0xff;
    const entries: [number, number, number][] = [
      [hdr, 72, 0],
      [iv, 16, 0],
      [src, 20, 0],
      [src + 20, 44, 0],
      [src + 20, 44, 0],
      [dst, 30, F_WRITE],
      [dst + 30, 34, F_WRITE],
      [dst + 30, 34, F_WRITE],
      [status, 1, F_WRITE],
    ];
    entries.forEach(([a, l, f], i) => ring.setDesc(table, i, a, l, f | (i < entries.length - 1 ? F_NEXT : 0), i + 1));
    ring.setDesc(ring.desc, 5, table, 16 * entries.length, F_INDIRECT, 0);
    ring.publish(5);
    signalEventFd(kick);
    await waitCall(call);
    assert.equal(ring.usedIdx, 1);
    assert.equal(ring.usedElem(0).id, 5);
    assert.ok(ring.usedElem(0).len >= 65, `used len ${ring.usedElem(0).len}`);
    assert.equal(g.bytes[status], 0, 'VIRTIO_CRYPTO_OK');
    assert.deepEqual(g.bytes.subarray(dst, dst + 64), CIPHER);
    assert.deepEqual(g.bytes.subarray(src, src + 64), PLAIN, 'device-readable source untouched');
    // The connection's thread answers messages only between batches: after this round trip the
    // batch has ended, so EVENT_IDX's avail_event must show the drained index (docs/qemu-vhost-user-crypto.md §6).
    await fe.call(VHOST_USER.GET_FEATURES);
    assert.equal(ring.availEvent, 1, `EVENT_IDX: avail_event = last_avail_idx after draining (used ${ring.usedIdx}, status ${g.bytes[status]})`);

    // A new memory table while the ring runs (QEMU re-sends it on memory-map changes): the running
    // ring moves to the new mappings and goes on from where it was.
    assert.deepEqual(await fe.call(VHOST_USER.SET_MEM_TABLE, g.memTable(), { flags: 0x9, fds: [g.memfd, g.memfd] }), u64(0n));

    // Request 2: decrypt in place (src = dst = the ciphertext just produced), direct chain.
    g.bytes.set(cipherHeader(0x001, dec, 64), hdr);
    g.bytes[status] = 0xff;
    ring.setDesc(ring.desc, 10, hdr, 72, F_NEXT, 11);
    ring.setDesc(ring.desc, 11, iv, 16, F_NEXT, 12);
    ring.setDesc(ring.desc, 12, dst, 64, F_NEXT, 13);
    ring.setDesc(ring.desc, 13, dst, 64, F_NEXT | F_WRITE, 14);
    ring.setDesc(ring.desc, 14, status, 1, F_WRITE, 0);
    ring.publish(10);
    signalEventFd(kick);
    await waitCall(call);
    assert.equal(ring.usedIdx, 2);
    assert.equal(ring.usedElem(1).id, 10);
    assert.equal(g.bytes[status], 0);
    assert.deepEqual(g.bytes.subarray(dst, dst + 64), PLAIN);

    // An unknown session: status INVSESS (4), the queue goes on.
    g.bytes.set(cipherHeader(0x000, 999n, 64), hdr);
    ring.publish(10);
    signalEventFd(kick);
    await waitCall(call);
    assert.equal(g.bytes[status], 4);

    // CLOSE has no reply: the next reply is GET_VRING_BASE's. Phase D: {0, requests consumed}.
    fe.send(VHOST_USER.CLOSE_CRYPTO_SESSION, u64(enc));
    fe.send(VHOST_USER.CLOSE_CRYPTO_SESSION, u64(dec));
    fe.send(VHOST_USER.CLOSE_CRYPTO_SESSION, u64(12345n)); // unknown: ignored, no disconnect
    assert.deepEqual(await fe.call(VHOST_USER.GET_VRING_BASE, u32pair(0, 0)), u32pair(0, 3));
    // The ring is stopped: a new request is not served until the ring is restarted.
    g.bytes.set(cipherHeader(0x000, enc, 64), hdr);
    ring.publish(10);
    // The closed session is gone (INVSESS) once the ring restarts from base 3.
    const kick2 = createEventFd();
    fe.send(VHOST_USER.SET_VRING_BASE, u32pair(0, 3));
    fe.send(VHOST_USER.SET_VRING_KICK, u64(0n), { fds: [kick2] });
    await waitCall(call);
    assert.equal(ring.usedIdx, 4);
    assert.equal(g.bytes[status], 4);
    closeFd(kick2);
    fe.close();
    await srv.waitForLog(/connection 1: front-end disconnected after \d+ messages/);
  } finally {
    fe.close();
    for (const fd of [kick, call, maskedCall, errFd]) closeFd(fd);
    g.close();
    await srv.stop();
  }
});

test('several connections are independent devices; stopping the server closes them and removes the socket', async () => {
  const srv = startServer({ dataQueues: 2 });
  const a = RawFrontEnd.connect(srv.path);
  const b = RawFrontEnd.connect(srv.path);
  try {
    assert.deepEqual(await a.call(VHOST_USER.GET_QUEUE_NUM), u64(2n));
    const sa = new DataView((await a.call(VHOST_USER.CREATE_CRYPTO_SESSION, session72(1))).buffer).getBigInt64(0, true);
    const sb = new DataView((await b.call(VHOST_USER.CREATE_CRYPTO_SESSION, session72(1))).buffer).getBigInt64(0, true);
    // Each connection has its own session table: a's ids go on from a's own counter whatever b
    // created meanwhile. Each starts at a random id, so ids of two connections (or of one guest
    // across a back-end restart) do not collide.
    const sa2 = new DataView((await a.call(VHOST_USER.CREATE_CRYPTO_SESSION, session72(1))).buffer).getBigInt64(0, true);
    assert.equal(sa2, sa + 1n, 'each connection has its own session table');
    assert.notEqual(sa, sb, 'random first ids per connection');
    assert.ok(sa >= 1n && sb >= 1n);
    // QEMU 8.1+ layout (1072 bytes): op_code @0, the same sym fields @8.., session_id @1064.
    const s81 = new Uint8Array(1072);
    s81.set(session72(2).subarray(8, 632), 8);
    s81[0] = 0x02; // VIRTIO_CRYPTO_CIPHER_CREATE_SESSION
    const r81 = await b.call(VHOST_USER.CREATE_CRYPTO_SESSION, s81);
    assert.equal(r81.length, 1072);
    assert.deepEqual([...r81.subarray(0, 8)], [2, 0, 0, 0, 0, 0, 0, 0], 'op_code kept');
    const id81 = new DataView(r81.buffer).getBigInt64(1064, true);
    assert.ok(id81 >= 0n && id81 !== sb, `a new session id at @1064 (got ${id81})`);
    assert.ok(r81.subarray(8, 1064).every((x) => x === 0));
    assert.equal(srv.server.connectionCount, 2);
    const before = openFdCount();
    await srv.server.close();
    assert.ok(await a.closedByPeer());
    assert.ok(await b.closedByPeer());
    assert.ok(openFdCount() < before);
    await srv.waitForLog(/connection 2: stopped/);
  } finally {
    a.close();
    b.close();
    await srv.stop();
  }
  const { existsSync } = await import('node:fs');
  assert.equal(existsSync(srv.path), false);
});

test('SET_VRING_ENABLE 0 holds a started ring, 1 serves what queued up meanwhile', async () => {
  const srv = startServer();
  const g = new TestGuest();
  const fe = RawFrontEnd.connect(srv.path);
  const kick = createEventFd();
  const call = createEventFd();
  try {
    fe.send(VHOST_USER.SET_PROTOCOL_FEATURES, u64(0x88n));
    assert.deepEqual(await fe.call(VHOST_USER.SET_MEM_TABLE, g.memTable(), { flags: 0x9, fds: [g.memfd, g.memfd] }), u64(0n));
    const ring = new HandRing(g, 64, 0x100000);
    fe.send(VHOST_USER.SET_VRING_NUM, u32pair(0, 64));
    fe.send(VHOST_USER.SET_VRING_ADDR, ring.addrPayload(0));
    fe.send(VHOST_USER.SET_VRING_CALL, u64(0n), { fds: [call] });
    fe.send(VHOST_USER.SET_VRING_KICK, u64(0n), { fds: [kick] });
    const enc = new DataView((await fe.call(VHOST_USER.CREATE_CRYPTO_SESSION, session72(1))).buffer).getBigInt64(0, true);
    assert.deepEqual(await fe.call(VHOST_USER.SET_VRING_ENABLE, u32pair(0, 0), { flags: 0x9 }), u64(0n));
    const hdr = 0x120000;
    const status = 0x140000;
    g.bytes.set(cipherHeader(0x000, enc, 64), hdr);
    g.bytes.set(IV, hdr + 0x100);
    g.bytes.set(PLAIN, 0x121000);
    ring.setDesc(ring.desc, 0, hdr, 72, F_NEXT, 1);
    ring.setDesc(ring.desc, 1, hdr + 0x100, 16, F_NEXT, 2);
    ring.setDesc(ring.desc, 2, 0x121000, 64, F_NEXT, 3);
    ring.setDesc(ring.desc, 3, 0x130000, 64, F_NEXT | F_WRITE, 4);
    ring.setDesc(ring.desc, 4, status, 1, F_WRITE, 0);
    ring.publish(0);
    signalEventFd(kick);
    await fe.call(VHOST_USER.GET_FEATURES); // the kick has been seen (or not) by now: messages are in order
    assert.equal(ring.usedIdx, 0, 'a disabled ring is not served');
    fe.send(VHOST_USER.SET_VRING_ENABLE, u32pair(0, 1));
    await waitCall(call);
    assert.equal(ring.usedIdx, 1);
    assert.deepEqual(g.bytes.subarray(0x130000, 0x130040), CIPHER);
  } finally {
    fe.close();
    closeFd(kick);
    closeFd(call);
    g.close();
    await srv.stop();
  }
});

test('--verbose: each message with the vring it addresses; sessions with their payload layout and op_code', async () => {
  const srv = startServer({ verbose: true });
  const fe = RawFrontEnd.connect(srv.path);
  try {
    fe.send(VHOST_USER.SET_VRING_NUM, u32pair(0, 64));
    await fe.call(VHOST_USER.CREATE_CRYPTO_SESSION, session72(1));
    const s81 = new Uint8Array(1072);
    s81.set(session72(1).subarray(8, 632), 8);
    s81[0] = 0x02; // op_code VIRTIO_CRYPTO_CIPHER_CREATE_SESSION
    await fe.call(VHOST_USER.CREATE_CRYPTO_SESSION, s81);
    await srv.waitForLog(/^connection 1: <- SET_VRING_NUM flags 0x1 size 8 fds 0 vring 0$/);
    await srv.waitForLog(/^connection 1: <- CREATE_CRYPTO_SESSION flags 0x1 size 632 fds 0 session layout QEMU 7\.1-8\.0 \(632 bytes\)$/);
    await srv.waitForLog(/^connection 1: <- CREATE_CRYPTO_SESSION flags 0x1 size 1072 fds 0 session layout QEMU 8\.1\+ \(1072 bytes\) op_code 0x0002$/);
  } finally {
    fe.close();
    await srv.stop();
  }
});

test('a front-end that leaves with replies pending is a disconnect (errno named), not an internal error', async (t) => {
  const srv = startServer();
  const fe = RawFrontEnd.connect(srv.path);
  try {
    // Many requests that each want a reply, then close without reading one: the back-end's reply
    // writes meet a closed peer (EPIPE or ECONNRESET).
    for (let i = 0; i < 100; i++) fe.send(VHOST_USER.GET_FEATURES);
    fe.close();
    const line = await srv.waitForLog(/^connection 1: (front-end disconnected|closed)/);
    t.diagnostic(line);
    assert.doesNotMatch(line, /internal error/);
    assert.match(line, /^connection 1: front-end disconnected/);
    if (/replies pending/.test(line)) assert.match(line, /\((EPIPE: broken pipe|ECONNRESET: connection reset by peer)\)/);
  } finally {
    fe.close();
    await srv.stop();
  }
});

/**
 * The device behind the real queue walker: raw split rings written by the mock driver
 * (test/fixtures/raw-ring.ts), Linux-shaped indirect requests, malformed chains and malformed
 * requests mixed in; a queue loop that completes everything and never throws. After each bad
 * entry a good request still succeeds.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { F_INDIRECT, F_NEXT, F_WRITE, RawRing } from '../fixtures/raw-ring.js';
import type { DeviceQueue } from '../../src/virtqueue/device-queue.js';
import type { DescriptorChain } from '../../src/virtqueue/chain.js';
import { VirtioCryptoDevice } from '../../src/device/virtio-crypto-device.js';
import { decodeCreateSessionInput, encodeCipherCreateSessionReq, encodeCipherDataReq } from '../../src/wire/virtio-crypto.js';
import { hex, toHex } from './helpers.js';

const KEY = hex('2b7e151628aed2a6abf7158809cf4f3c');
const IV = hex('000102030405060708090a0b0c0d0e0f');
const PLAIN = hex('6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51');
const CT = '7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2'; // NIST SP 800-38A F.2.1

/** The queue loop a transport runs: every popped entry is completed, nothing escapes. */
function drain(q: DeviceQueue, serve: (c: DescriptorChain) => number): number {
  let n = 0;
  for (let p = q.popChain(); p !== null; p = q.popChain()) {
    if (p.ok) q.addUsed(p.chain.head, serve(p.chain));
    else q.addUsed(p.head, 0); // malformed chain: complete with 0 bytes, go on
    n++;
  }
  q.publishUsed();
  return n;
}

test('dataq through DeviceQueue: Linux-shaped indirect requests, malformed chains and requests, good requests in between', () => {
  const dev = new VirtioCryptoDevice({ maxDataQueues: 1 });

  // controlq: create the AES-128-CBC session through a ring as well
  const ctrl = new RawRing({ size: 8 });
  const req = ctrl.buffer(encodeCipherCreateSessionReq({ algo: 3, keyLen: 16, op: 1 }));
  const key = ctrl.buffer(KEY);
  const input = ctrl.alloc(16);
  ctrl.writeDesc(0, { addr: req, len: 72, flags: F_NEXT, next: 1 });
  ctrl.writeDesc(1, { addr: key, len: 16, flags: F_NEXT, next: 2 });
  ctrl.writeDesc(2, { addr: input, len: 16, flags: F_WRITE });
  ctrl.pushAvail(0);
  const cq = ctrl.deviceQueue();
  assert.equal(drain(cq, (c) => dev.processControl(c)), 1);
  assert.deepEqual(ctrl.usedElem(0), { id: 0, len: 16 });
  const created = decodeCreateSessionInput(ctrl.read(input, 16));
  assert.equal(created.status, 0);
  const id = created.sessionId;

  const ring = new RawRing({ size: 32 });
  const q = ring.deviceQueue();
  const statuses: bigint[] = [];
  const dsts: { at: bigint; len: number }[] = [];

  // (A) Linux indirect request: header, iv, src [A(12),B(20)] as A,B,B; dst [C(7),D(25)] as C,D,D; status
  {
    const hdr = ring.buffer(encodeCipherDataReq(0, id, { ivLen: 16, srcDataLen: 32, dstDataLen: 32 }));
    const iv = ring.buffer(IV);
    const src = ring.buffer(PLAIN);
    const dst = ring.alloc(32);
    const st = ring.alloc(1);
    const table = ring.indirectTable([
      { addr: hdr, len: 72, flags: F_NEXT },
      { addr: iv, len: 16, flags: F_NEXT },
      { addr: src, len: 12, flags: F_NEXT },
      { addr: src + 12n, len: 20, flags: F_NEXT },
      { addr: src + 12n, len: 20, flags: F_NEXT },
      { addr: dst, len: 7, flags: F_NEXT | F_WRITE },
      { addr: dst + 7n, len: 25, flags: F_NEXT | F_WRITE },
      { addr: dst + 7n, len: 25, flags: F_NEXT | F_WRITE },
      { addr: st, len: 1, flags: F_WRITE },
    ]);
    ring.writeDesc(0, { addr: table, len: 16 * 9, flags: F_INDIRECT });
    ring.pushAvail(0);
    statuses.push(st);
    dsts.push({ at: dst, len: 32 });
  }
  // (B) a descriptor loop: 1 -> 2 -> 1
  ring.writeDesc(1, { addr: ring.alloc(72), len: 72, flags: F_NEXT, next: 2 });
  ring.writeDesc(2, { addr: ring.alloc(8), len: 8, flags: F_NEXT, next: 1 });
  ring.pushAvail(1);
  // (C) an address past guest memory
  ring.writeDesc(3, { addr: 0xdead_0000_0000n, len: 72, flags: F_NEXT, next: 4 });
  ring.writeDesc(4, { addr: ring.alloc(1), len: 1, flags: F_WRITE });
  ring.pushAvail(3);
  // (D) a well-formed chain carrying a bad request: dst_data_len != src_data_len (-> ERR)
  {
    const hdr = ring.buffer(encodeCipherDataReq(0, id, { ivLen: 16, srcDataLen: 32, dstDataLen: 16 }));
    const st = ring.alloc(17);
    ring.writeDesc(5, { addr: hdr, len: 72, flags: F_NEXT, next: 6 });
    ring.writeDesc(6, { addr: ring.buffer(new Uint8Array([...IV, ...PLAIN])), len: 48, flags: F_NEXT, next: 7 });
    ring.writeDesc(7, { addr: st, len: 17, flags: F_WRITE });
    ring.pushAvail(5);
    statuses.push(st + 16n);
  }
  // (E) a good direct chain with the header split at byte 13 and the status in its own descriptor
  {
    const hdr = ring.buffer(encodeCipherDataReq(0, id, { ivLen: 16, srcDataLen: 32, dstDataLen: 32 }));
    const rest = ring.buffer(new Uint8Array([...IV, ...PLAIN]));
    const dst = ring.alloc(32);
    const st = ring.alloc(1);
    ring.writeDesc(8, { addr: hdr, len: 13, flags: F_NEXT, next: 9 });
    ring.writeDesc(9, { addr: hdr + 13n, len: 59, flags: F_NEXT, next: 10 });
    ring.writeDesc(10, { addr: rest, len: 48, flags: F_NEXT, next: 11 });
    ring.writeDesc(11, { addr: dst, len: 32, flags: F_NEXT | F_WRITE, next: 12 });
    ring.writeDesc(12, { addr: st, len: 1, flags: F_WRITE });
    ring.pushAvail(8);
    statuses.push(st);
    dsts.push({ at: dst, len: 32 });
  }
  // (F) readable after writable (a walker error), then (G) an unknown session
  ring.writeDesc(13, { addr: ring.alloc(1), len: 1, flags: F_WRITE | F_NEXT, next: 14 });
  ring.writeDesc(14, { addr: ring.alloc(72), len: 72, flags: 0 });
  ring.pushAvail(13);
  {
    const hdr = encodeCipherDataReq(0, id + 100n, { ivLen: 16, srcDataLen: 32, dstDataLen: 32 });
    const st = ring.alloc(33);
    ring.writeDesc(15, { addr: ring.buffer(new Uint8Array([...hdr, ...IV, ...PLAIN])), len: 120, flags: F_NEXT, next: 16 });
    ring.writeDesc(16, { addr: st, len: 33, flags: F_WRITE });
    ring.pushAvail(15);
    statuses.push(st + 32n);
  }

  assert.equal(drain(q, (c) => dev.processData(c)), 7);
  assert.equal(ring.usedIdx(), 7);
  const used = Array.from({ length: 7 }, (_, i) => ring.usedElem(i));
  assert.deepEqual(
    used.map((u) => u.id),
    [0, 1, 3, 5, 8, 13, 15],
  );
  // (A) 7+25+25+1 writable bytes; (B)(C)(F) malformed: 0; (D) 17; (E) 33; (G) 33
  assert.deepEqual(
    used.map((u) => u.len),
    [58, 0, 0, 17, 33, 0, 33],
  );
  assert.deepEqual(
    statuses.map((s) => ring.read(s, 1)[0]),
    [0, 1, 0, 4], // A OK, D ERR, E OK, G INVSESS
  );
  for (const d of dsts) assert.equal(toHex(ring.read(d.at, d.len)), CT);
});

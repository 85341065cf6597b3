/**
 * The device's statistics (src/device/device-stats.ts) as VirtioCryptoDevice counts them. Requests
 * are built by hand from VIRTIO 1.2 §5.9.7 offsets (struct virtio_crypto_op_ctrl_req /
 * virtio_crypto_op_data_req, 72 bytes each), so the expected counts come from what this test sent:
 * the operation named by each opcode, its src_data_len, and the status the spec prescribes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { VirtioCryptoDevice } from '../../src/device/virtio-crypto-device.js';
import { DeviceStats, STAT, STAT_DEFINITIONS, sumSnapshots } from '../../src/device/device-stats.js';
import { makeChain } from './helpers.js';

const le32 = (v: DataView, off: number, x: number) => v.setUint32(off, x, true);

/** VIRTIO_CRYPTO_CIPHER_CREATE_SESSION (0x02), AES-CBC (3), 16-byte key, encrypt, SYM_OP_CIPHER. */
function createCbcSession(dev: VirtioCryptoDevice): bigint {
  const h = new Uint8Array(72);
  const v = new DataView(h.buffer);
  le32(v, 0, 0x02);
  le32(v, 16, 3); // cipher_session_flf.algo
  le32(v, 20, 16); // key_len
  le32(v, 24, 1); // op: VIRTIO_CRYPTO_OP_ENCRYPT
  le32(v, 64, 1); // op_type: VIRTIO_CRYPTO_SYM_OP_CIPHER
  const input = new Uint8Array(16);
  dev.processControl(makeChain([h, new Uint8Array(16).fill(7)], [input]));
  const iv = new DataView(input.buffer);
  assert.equal(iv.getUint32(8, true), 0, 'create status OK');
  return iv.getBigUint64(0, true);
}

/** A cipher data request: opcode 0x0000 CIPHER_ENCRYPT / 0x0001 DECRYPT (§5.9.7.2 VIRTIO_CRYPTO_OPCODE(service 0, op)), 16-byte iv, `len` bytes. */
function cipher(dev: VirtioCryptoDevice, opcode: number, session: bigint, len: number): number {
  const h = new Uint8Array(72);
  const v = new DataView(h.buffer);
  le32(v, 0, opcode);
  v.setBigUint64(8, session, true);
  le32(v, 24, 16); // iv_len
  le32(v, 28, len); // src_data_len
  le32(v, 32, len); // dst_data_len
  le32(v, 64, 1); // op_type: SYM_OP_CIPHER
  const status = new Uint8Array(1).fill(0xff);
  dev.processData(makeChain([h, new Uint8Array(16), new Uint8Array(len)], [new Uint8Array(len), status]));
  return status[0]!;
}

/** VIRTIO_CRYPTO_HASH (0x0100: service 1, op 0) with src_data_len `len`: the session id is not a hash session. */
function hash(dev: VirtioCryptoDevice, session: bigint, len: number): number {
  const h = new Uint8Array(72);
  const v = new DataView(h.buffer);
  le32(v, 0, 0x0100);
  v.setBigUint64(8, session, true);
  le32(v, 24, len);
  le32(v, 28, 32);
  const status = new Uint8Array(1).fill(0xff);
  dev.processData(makeChain([h, new Uint8Array(len)], [new Uint8Array(32), status]));
  return status[0]!;
}

describe('device statistics', () => {
  it('per operation: requests and src bytes; per status: errors; sessions created/destroyed/open', () => {
    const stats = new DeviceStats();
    const dev = new VirtioCryptoDevice({ maxDataQueues: 1, stats });
    const s = createCbcSession(dev);
    assert.equal(cipher(dev, 0x0000, s, 32), 0);
    assert.equal(cipher(dev, 0x0000, s, 64), 0);
    assert.equal(cipher(dev, 0x0001, s, 48), 0);
    assert.equal(cipher(dev, 0x0000, s, 15), 1, 'CBC length not a block multiple: VIRTIO_CRYPTO_ERR'); // counted, and an error
    assert.equal(hash(dev, s, 10), 4, 'a cipher session for a hash request: VIRTIO_CRYPTO_INVSESS');
    assert.equal(cipher(dev, 0x0000, 999n, 16), 4, 'unknown session: INVSESS');
    // An unknown data opcode (0x0999): no operation counted, NOTSUPP.
    const h = new Uint8Array(72);
    new DataView(h.buffer).setUint32(0, 0x0999, true);
    dev.processData(makeChain([h], [new Uint8Array(1)]));
    const snap = stats.snapshot();
    assert.equal(snap['sym-encrypt-ops'], 4);
    assert.equal(snap['sym-encrypt-bytes'], 32 + 64 + 15 + 16);
    assert.equal(snap['sym-decrypt-ops'], 1);
    assert.equal(snap['sym-decrypt-bytes'], 48);
    assert.equal(snap['hash-ops'], 1);
    assert.equal(snap['hash-bytes'], 10);
    assert.equal(snap['errors-err'], 1);
    assert.equal(snap['errors-invsess'], 2);
    assert.equal(snap['errors-notsupp'], 1);
    assert.deepEqual([snap['sessions-created'], snap['sessions-destroyed'], snap['sessions-open']], [1, 0, 1]);
    assert.equal(dev.destroySession(s), 0);
    assert.deepEqual([stats.snapshot()['sessions-destroyed'], stats.snapshot()['sessions-open']], [1, 0]);
    createCbcSession(dev);
    createCbcSession(dev);
    dev.reset(); // a reset destroys the open sessions
    assert.deepEqual([stats.values[STAT['sessions-created']], stats.values[STAT['sessions-destroyed']], stats.values[STAT['sessions-open']]], [3, 3, 0]);
  });

  it('a full session table counts NOSPC; a copy-holding instance counts no sessions', () => {
    const stats = new DeviceStats();
    const dev = new VirtioCryptoDevice({ maxDataQueues: 1, maxSessions: 1, stats });
    createCbcSession(dev);
    const h = new Uint8Array(72);
    const v = new DataView(h.buffer);
    le32(v, 0, 0x02);
    le32(v, 16, 3);
    le32(v, 20, 16);
    le32(v, 24, 1);
    le32(v, 64, 1);
    const input = new Uint8Array(16);
    dev.processControl(makeChain([h, new Uint8Array(16)], [input]));
    assert.equal(new DataView(input.buffer).getUint32(8, true), 5, 'VIRTIO_CRYPTO_NOSPC');
    assert.equal(stats.snapshot()['errors-nospc'], 1);

    const copyStats = new DeviceStats();
    const copy = new VirtioCryptoDevice({ maxDataQueues: 1, stats: copyStats, sessionCopies: true });
    copy.dropSessionCopy(1n);
    copy.reset();
    assert.deepEqual([copyStats.snapshot()['sessions-created'], copyStats.snapshot()['sessions-destroyed']], [0, 0]);
  });

  it('statistics live in shared memory another thread can read; blocks sum by name', () => {
    const buffer = new SharedArrayBuffer(2 * DeviceStats.byteLength());
    const a = new DeviceStats(buffer, 0);
    const b = new DeviceStats(buffer, DeviceStats.byteLength());
    a.requests += 3;
    b.requests += 4;
    b.add(STAT['hash-bytes'], 100);
    assert.equal(new Float64Array(buffer)[STAT.requests], 3);
    const sum = sumSnapshots([a.snapshot(), b.snapshot()]);
    assert.equal(sum.requests, 7);
    assert.equal(sum['hash-bytes'], 100);
    // Every *-bytes counter directly follows its *-ops counter (recordData relies on it).
    STAT_DEFINITIONS.forEach((d, i) => {
      if (d.name.endsWith('-bytes')) assert.equal(STAT_DEFINITIONS[i - 1]!.name, d.name.replace('-bytes', '-ops'));
    });
  });
});

/**
 * The virtio-crypto driver over a loopback VirtioTransport written here (DeviceQueue + VirtioCryptoDevice
 * on the main thread, kicks and interrupts on setImmediate): the driver must not care which transport it
 * runs on. The loopback can hold kicks, so ordering-sensitive cases (close with requests pending, a
 * session destroyed under a request) are deterministic. Oracles: NIST SP 800-38A bytes, FIPS 180 "abc",
 * the spec's status codes and init sequence (VIRTIO 1.2 §3.1.1, §5.9).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CryptoError, type CryptoHandle, type Session, type SessionOptions } from '../../src/driver/api.js';
import type { DriverMemory, QueueAddresses, VirtioTransport } from '../../src/driver/virtio-transport.js';
import { VirtioCryptoDriver, dataLengthLimit, errorFromStatus } from '../../src/driver/virtio-crypto-driver.js';
import { createHostDevice } from '../../src/driver/host-device.js';
import fc from 'fast-check';
import { VirtioCryptoDevice } from '../../src/device/virtio-crypto-device.js';
import { GuestMemory } from '../../src/memory/guest-memory.js';
import { VIRTIO_CRYPTO_STATUS } from '../../src/spec/virtio-crypto.js';
import { DeviceQueue } from '../../src/virtqueue/device-queue.js';
import { ringSizes } from '../../src/virtqueue/layout.js';
import { decodeConfig, encodeConfig } from '../../src/wire/virtio-crypto.js';
import { hex } from '../fixtures/bytes.js';
import { FIPS180_ABC } from '../fixtures/fips180.js';

const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const KEY128 = hex('2b7e151628aed2a6abf7158809cf4f3c');
const CBC_IV = hex('000102030405060708090a0b0c0d0e0f');
const PLAIN = hex('6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51');
const CBC_CT = '7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2'; // SP 800-38A F.2.1

const VERSION_1 = 1n << 32n;
const EVENT_IDX = 1n << 29n;
const INDIRECT = 1n << 28n;

interface LoopbackOptions {
  dataQueues?: number;
  maxSessions?: number;
  maxSize?: number;
  features?: bigint;
  /** Device clears FEATURES_OK whatever the driver asks. */
  refuseFeatures?: boolean;
  /** Edit the config space the driver reads. */
  editConfig?: (c: ReturnType<typeof decodeConfig>) => void;
  memoryBytes?: number;
}

/** A VirtioTransport whose device runs on this thread. `held` defers kicks until `release()`. */
class Loopback implements VirtioTransport {
  readonly description = 'loopback (test)';
  readonly memory: DriverMemory;
  readonly device: VirtioCryptoDevice;
  readonly statusWrites: number[] = [];
  readonly setupIndices: number[] = [];
  readonly kicks: number[] = [];
  controlRequests = 0;
  readonly controlOpcodes: number[] = [];
  /** The 72-byte header of every data request served, as the device read it. */
  readonly dataHeaders: Uint8Array[] = [];
  /** The first 72 bytes of every control request (header + op_flf). */
  readonly controlHeaders: Uint8Array[] = [];
  held = false;
  closed = false;
  #status = 0;
  #features = 0n;
  #queues: (QueueAddresses | null)[] = [];
  #dq: (DeviceQueue | null)[] = [];
  #pending = new Set<number>();
  #irq: ((i: number) => void) | null = null;
  #failure: ((e: Error) => void) | null = null;
  readonly #guest: GuestMemory;
  readonly #opts: LoopbackOptions;

  constructor(opts: LoopbackOptions = {}) {
    this.#opts = opts;
    const bytes = new Uint8Array(new SharedArrayBuffer(opts.memoryBytes ?? 4 << 20));
    this.memory = { guestPhysAddr: 0x2000_0000n, bytes };
    this.#guest = new GuestMemory([{ guestPhysAddr: this.memory.guestPhysAddr, bytes }]);
    this.device = new VirtioCryptoDevice({ maxDataQueues: opts.dataQueues ?? 1, maxSessions: opts.maxSessions ?? 64, maxSize: opts.maxSize ?? 1 << 20 });
  }

  get queueCount(): number {
    return this.device.maxDataQueues + 1;
  }

  async getDeviceFeatures(): Promise<bigint> {
    return this.#opts.features ?? VERSION_1 | EVENT_IDX | INDIRECT;
  }
  async setDriverFeatures(f: bigint): Promise<void> {
    this.#features = f;
  }
  async getStatus(): Promise<number> {
    return this.#status;
  }
  async setStatus(s: number): Promise<void> {
    this.statusWrites.push(s);
    if (s === 0) {
      this.#status = 0;
      this.#dq = [];
      this.device.reset();
      return;
    }
    if ((s & 8) !== 0 && this.#opts.refuseFeatures) s &= ~8;
    if ((s & 4) !== 0 && (this.#status & 4) === 0) {
      const eventIdx = (this.#features & EVENT_IDX) !== 0n;
      this.#dq = this.#queues.map((q) => {
        if (!q) return null;
        const z = ringSizes(q.size);
        return new DeviceQueue({
          size: q.size,
          desc: this.#guest.view(q.descAddr, z.descBytes),
          avail: this.#guest.view(q.availAddr, z.availBytes),
          used: this.#guest.view(q.usedAddr, z.usedBytes),
          memory: this.#guest,
          eventIdx,
        });
      });
    }
    this.#status = s;
  }
  async readConfig(): Promise<Uint8Array> {
    const c = decodeConfig(this.device.configSpace());
    this.#opts.editConfig?.(c);
    return encodeConfig(c);
  }
  async getQueueMaxSize(i: number): Promise<number> {
    return i < this.queueCount ? 1024 : 0;
  }
  async setupQueue(i: number, q: QueueAddresses): Promise<void> {
    this.setupIndices.push(i);
    this.#queues[i] = q;
  }
  notify(i: number): void {
    this.kicks.push(i);
    this.#pending.add(i);
    if (!this.held) setImmediate(() => this.#serve());
  }
  onInterrupt(h: (i: number) => void): void {
    this.#irq = h;
  }
  onFailure(h: (e: Error) => void): void {
    this.#failure = h;
  }
  async close(): Promise<void> {
    this.closed = true;
  }
  /** A used-buffer notification for queue `i`, as the device would send it. */
  interrupt(i: number): void {
    this.#irq?.(i);
  }
  fail(message: string): void {
    this.#failure?.(new Error(message));
  }
  /** Serves held kicks: the control queue first (as the embedded device does). */
  release(): void {
    this.held = false;
    this.#serve();
  }
  /** Raw access for the malicious-device test. */
  usedRingOf(i: number): Uint8Array {
    const q = this.#queues[i]!;
    return this.#guest.view(q.usedAddr, ringSizes(q.size).usedBytes);
  }

  #serve(): void {
    if (this.held) return;
    const ctrl = this.queueCount - 1;
    const order = [ctrl, ...Array.from({ length: ctrl }, (_, i) => i)];
    const irqs: number[] = [];
    for (const i of order) {
      if (!this.#pending.delete(i)) continue;
      const q = this.#dq[i];
      if (!q) continue;
      for (;;) {
        let p;
        while ((p = q.popChain()) !== null) {
          if (!p.ok) {
            q.addUsed(p.head, 0);
            continue;
          }
          if (i === ctrl) {
            this.controlRequests++;
            this.controlOpcodes.push(Buffer.concat(p.chain.readable).readUInt32LE(0));
            this.controlHeaders.push(Buffer.concat(p.chain.readable).subarray(0, 72));
          }
          else this.dataHeaders.push(Buffer.concat(p.chain.readable).subarray(0, 72));
          q.addUsed(p.chain.head, i === ctrl ? this.device.processControl(p.chain) : this.device.processData(p.chain));
        }
        q.publishUsed();
        if (!q.enableNotifications()) break;
      }
      if (q.needsNotification()) irqs.push(i);
    }
    for (const i of irqs) setImmediate(() => this.#irq?.(i));
  }
}

async function withDriver(opts: LoopbackOptions & { queueSize?: number }, fn: (d: VirtioCryptoDriver, t: Loopback, h: CryptoHandle) => Promise<void>): Promise<void> {
  const t = new Loopback(opts);
  const d = await VirtioCryptoDriver.create(t, { spec: 'loopback', ...(opts.queueSize !== undefined && { queueSize: opts.queueSize }) });
  const h = await d.open();
  try {
    await fn(d, t, h);
  } finally {
    await d.close();
  }
}

function rejectsWith(p: Promise<unknown>, code: CryptoError['code'], message?: RegExp): Promise<void> {
  return assert.rejects(p, (err: unknown) => err instanceof CryptoError && err.code === code && (!message || message.test(err.message)));
}

describe('virtio-crypto driver over a loopback transport', () => {
  it('initializes in the §3.1.1 order, negotiates VERSION_1 + EVENT_IDX, and puts the controlq at index N', async () => {
    await withDriver({ dataQueues: 2 }, async (d, t, h) => {
      // reset, ACKNOWLEDGE, +DRIVER, +FEATURES_OK, +DRIVER_OK
      assert.deepEqual(t.statusWrites, [0, 1, 3, 11, 15]);
      assert.equal(d.negotiatedFeatures, VERSION_1 | EVENT_IDX);
      assert.deepEqual(t.setupIndices, [0, 1, 2]);
      assert.equal(h.device.maxDataQueues, 2);
      const s = await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: KEY128 });
      assert.ok(t.kicks.includes(2), 'control requests go to queue 2 = max_dataqueues');
      assert.equal(toHex((await h.crypt(s, { op: 'encrypt', src: PLAIN, iv: CBC_IV })).dst), CBC_CT);
    });
  });

  it('fails init with EIO (and sets FAILED) without VERSION_1, when FEATURES_OK is refused, or before HW_READY', async () => {
    for (const opts of [{ features: EVENT_IDX }, { refuseFeatures: true }, { editConfig: (c: { status: number }) => void (c.status = 0) }] as LoopbackOptions[]) {
      const t = new Loopback(opts);
      await rejectsWith(VirtioCryptoDriver.create(t, { spec: 'x' }), 'EIO');
      assert.equal((await t.getStatus()) & 0x80, 0x80, 'FAILED set');
      assert.equal(t.statusWrites.includes(15), false, 'never DRIVER_OK');
    }
  });

  it('spreads requests over the data queues and gets every answer right (SP 800-38A, FIPS 180)', async () => {
    await withDriver({ dataQueues: 3 }, async (_d, t, h) => {
      const cbc = await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: KEY128 });
      const sha = await h.createSession({ kind: 'hash', hash: 'sha1' });
      const results = await Promise.all(
        Array.from({ length: 60 }, (_, i) =>
          i % 2 === 0 ? h.crypt(cbc, { op: 'encrypt', src: PLAIN, iv: CBC_IV }).then((r) => toHex(r.dst)) : h.digest(sha, Buffer.from('abc')).then(toHex),
        ),
      );
      results.forEach((r, i) => assert.equal(r, i % 2 === 0 ? CBC_CT : FIPS180_ABC.sha1));
      for (const q of [0, 1, 2]) assert.ok(t.kicks.includes(q), `data queue ${q} used`);
    });
  });

  it('writes the request bytes of VIRTIO 1.2 §5.9.7, and the device parses them (bytes written by hand here)', async () => {
    // Little-endian fields, formatted with Buffer (not with the wire codecs the driver and device share).
    const le32 = (...v: number[]): string => {
      const b = Buffer.alloc(4 * v.length);
      v.forEach((n, i) => b.writeUInt32LE(n, 4 * i));
      return b.toString('hex');
    };
    const le64 = (n: bigint): string => {
      const b = Buffer.alloc(8);
      b.writeBigUInt64LE(n);
      return b.toString('hex');
    };
    const zeros = (n: number): string => '00'.repeat(n);
    /** struct virtio_crypto_op_header: opcode, algo, session_id, flag, padding. */
    const opHeader = (opcode: number, id: bigint): string => le32(opcode, 0) + le64(id) + le32(0, 0);
    await withDriver({}, async (_d, t, h) => {
      const cbc = await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: KEY128 });
      const sha = await h.createSession({ kind: 'mac', hash: 'sha256', key: KEY128 });
      const gcm = await h.createSession({ kind: 'aead', aead: 'aes-gcm', key: KEY128 });
      const chain = await h.createSession({ kind: 'chain', cipher: 'aes-cbc', key: KEY128, hash: 'sha1', macKey: KEY128, order: 'cipher-then-hash', op: 'encrypt' });
      // §5.9.7.2: ctrl_header (opcode, algo, flag, queue_id) + op_flf padded to 56.
      assert.deepEqual(t.controlHeaders.map(toHex), [
        // CIPHER_CREATE_SESSION, AES_CBC: cipher_session_flf (algo, key_len, op ENCRYPT / DECRYPT, padding), op_type CIPHER
        le32(0x002, 3, 0, 0) + le32(3, 16, 1, 0) + zeros(32) + le32(1, 0),
        le32(0x002, 3, 0, 0) + le32(3, 16, 2, 0) + zeros(32) + le32(1, 0),
        // MAC_CREATE_SESSION, HMAC_SHA_256: mac_create_session_flf (algo, hash_result_len, auth_key_len, padding)
        le32(0x202, 4, 0, 0) + le32(4, 32, 16) + zeros(44),
        // AEAD_CREATE_SESSION, GCM: aead_create_session_flf (algo, key_len, tag_len, aad_len, op, padding)
        le32(0x302, 1, 0, 0) + le32(1, 16, 16, 0, 1, 0) + zeros(32),
        le32(0x302, 1, 0, 0) + le32(1, 16, 16, 0, 2, 0) + zeros(32),
        // CIPHER_CREATE_SESSION, chaining: alg_chain_session_flf (order CIPHER_THEN_HASH, hash_mode AUTH,
        // cipher AES_CBC/16/ENCRYPT/padding, mac flf HMAC_SHA1/20/auth_key_len 16/padding, aad_len, padding), op_type CHAINING
        le32(0x002, 3, 0, 0) + le32(2, 2) + le32(3, 16, 1, 0) + le32(2, 20, 16, 0) + le32(0, 0) + le32(2, 0),
      ]);
      t.dataHeaders.length = 0;
      const dec = await h.crypt(cbc, { op: 'decrypt', src: hex(CBC_CT), iv: CBC_IV });
      assert.equal(toHex(dec.dst), toHex(PLAIN), 'the device parsed the cipher request (SP 800-38A F.2.2)');
      await h.digest(sha, PLAIN.subarray(0, 5));
      const e = await h.aead(gcm, { op: 'encrypt', src: PLAIN.subarray(0, 7), iv: CBC_IV.subarray(0, 12), aad: PLAIN.subarray(0, 3) });
      await h.aead(gcm, { op: 'decrypt', src: e.dst, iv: CBC_IV.subarray(0, 12), aad: PLAIN.subarray(0, 3), tag: e.tag! });
      const c = await h.chain(chain, { src: PLAIN, iv: CBC_IV });
      assert.equal(toHex(c.dst), CBC_CT, 'the device parsed the chaining request');
      assert.deepEqual(t.dataHeaders.map(toHex), [
        // CIPHER_DECRYPT on the pair's 2nd session: cipher_data_flf (iv_len, src, dst, padding), op_type CIPHER
        opHeader(0x001, cbc.id + 1n) + le32(16, 32, 32, 0) + zeros(24) + le32(1, 0),
        // MAC: mac_data_flf (src_data_len, hash_result_len)
        opHeader(0x200, sha.id) + le32(5, 32) + zeros(40),
        // AEAD_ENCRYPT / _DECRYPT: aead_data_flf (iv_len, aad_len, src_data_len, dst_data_len, tag_len, reserved)
        opHeader(0x300, gcm.id) + le32(12, 3, 7, 23, 16, 0) + zeros(24),
        opHeader(0x301, gcm.id + 1n) + le32(12, 3, 23, 7, 16, 0) + zeros(24),
        // CIPHER_ENCRYPT, chaining: alg_chain_data_flf (iv_len, src, dst, cipher_start_src_offset, len_to_cipher,
        // hash_start_src_offset, len_to_hash, aad_len, hash_result_len, reserved), op_type ALGORITHM_CHAINING
        opHeader(0x000, chain.id) + le32(16, 32, 32, 0, 32, 0, 32, 0, 20, 0) + le32(2, 0),
      ]);
      t.controlHeaders.length = 0;
      await h.closeSession(sha);
      // MAC_DESTROY_SESSION: destroy_session_flf (session_id)
      assert.deepEqual(t.controlHeaders.map(toHex), [le32(0x203, 0, 0, 0) + le64(sha.id) + zeros(48)]);
    });
  });

  it('batches: many submissions in one tick cost one kick per queue', async () => {
    await withDriver({}, async (_d, t, h) => {
      const sha = await h.createSession({ kind: 'hash', hash: 'sha256' });
      t.kicks.length = 0;
      await Promise.all(Array.from({ length: 50 }, () => h.digest(sha, new Uint8Array(10))));
      assert.deepEqual(t.kicks, [0]);
    });
  });

  it('backpressure: 300 requests through 4-entry queues and a small arena all complete, in order of their own data', async () => {
    await withDriver({ queueSize: 4, memoryBytes: 256 * 1024 }, async (_d, _t, h) => {
      const ctr = await h.createSession({ kind: 'cipher', cipher: 'aes-ctr', key: KEY128 });
      const inputs = Array.from({ length: 300 }, (_, i) => new Uint8Array(1 + ((i * 97) % 3000)).fill(i & 0xff));
      const outs = await Promise.all(inputs.map((src) => h.crypt(ctr, { op: 'encrypt', src, iv: CBC_IV })));
      const back = await Promise.all(outs.map((o) => h.crypt(ctr, { op: 'decrypt', src: o.dst, iv: CBC_IV })));
      back.forEach((b, i) => assert.equal(toHex(b.dst), toHex(inputs[i]!)));
    });
  });

  it('captures a request\'s bytes at the call, even when it has to wait: callers may reuse their buffers at once', async () => {
    await withDriver({ queueSize: 2 }, async (_d, t, h) => {
      t.held = true;
      const key = KEY128.slice();
      const iv = CBC_IV.slice();
      const sessions = [h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key }), h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key })];
      key.fill(0); // the second pair waits behind the first: its key must already be captured
      t.release();
      const [a, b] = await Promise.all(sessions);
      t.held = true;
      const src = PLAIN.slice();
      const results = [h.crypt(a!, { op: 'encrypt', src, iv }), h.crypt(b!, { op: 'encrypt', src, iv })];
      src.fill(0xee); // the second request is waiting for the only data queue slot
      iv.fill(0xee);
      t.release();
      for (const r of await Promise.all(results)) assert.equal(toHex(r.dst), CBC_CT);
    });
  });

  it('closing a handle with requests pending rejects them with EBADF; the device and other handles go on', async () => {
    await withDriver({}, async (d, t, h) => {
      const s = await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: KEY128 });
      const other = await d.open();
      const os = await other.createSession({ kind: 'hash', hash: 'sha1' });
      t.held = true;
      const pending = Array.from({ length: 20 }, () => h.crypt(s, { op: 'encrypt', src: PLAIN, iv: CBC_IV }));
      const otherPending = other.digest(os, Buffer.from('abc'));
      await new Promise((r) => setImmediate(r)); // submitted and kicked, not served
      await Promise.all([h.close(), ...pending.map((p) => rejectsWith(p, 'EBADF')), (t.release(), Promise.resolve())]);
      assert.equal(toHex(await otherPending), FIPS180_ABC.sha1);
      await rejectsWith(h.crypt(s, { op: 'encrypt', src: PLAIN, iv: CBC_IV }), 'EBADF');
      assert.equal(t.device.sessionCount, 1, "the closed handle's two cipher sessions were destroyed");
    });
  });

  it('requests queued behind a closed handle\'s rejected ones still run (FIFO backpressure skips them)', async () => {
    await withDriver({ queueSize: 2 }, async (d, t, h) => {
      const s = await h.createSession({ kind: 'hash', hash: 'sha1' });
      const other = await d.open();
      const os = await other.createSession({ kind: 'hash', hash: 'sha1' });
      t.held = true;
      const mine = Array.from({ length: 10 }, () => h.digest(s, Buffer.from('abc'))); // 1 fits the 2-entry queue, 9 wait
      const theirs = other.digest(os, Buffer.from('abc')); // waits behind them
      const closing = h.close();
      await Promise.all(mine.map((p) => rejectsWith(p, 'EBADF')));
      t.release();
      assert.equal(toHex(await theirs), FIPS180_ABC.sha1);
      await closing;
    });
  });

  it('closing the device fails everything pending with EBADF and resets the device', async () => {
    const t = new Loopback();
    const d = await VirtioCryptoDriver.create(t, { spec: 'x' });
    const h = await d.open();
    const s = await h.createSession({ kind: 'hash', hash: 'sha256' });
    t.held = true;
    const pending = Array.from({ length: 5 }, () => h.digest(s, new Uint8Array(3)));
    assert.ok(t.memory.bytes.some((b) => b !== 0));
    await Promise.all([d.close(), ...pending.map((p) => rejectsWith(p, 'EBADF'))]);
    assert.ok(t.memory.bytes.every((b) => b === 0), 'rings and request buffers (data, keys) zeroed');
    assert.equal(t.statusWrites.at(-1), 0, 'reset');
    assert.equal(t.closed, true);
    await rejectsWith(d.open(), 'EBADF');
    await rejectsWith(h.digest(s, new Uint8Array(3)), 'EBADF');
  });

  it('maps VIRTIO_CRYPTO_INVSESS: a session destroyed before its request is served → ENOENT', async () => {
    await withDriver({}, async (_d, t, h) => {
      const s = await h.createSession({ kind: 'hash', hash: 'sha256' });
      t.held = true;
      const req = h.digest(s, new Uint8Array(8)); // on the data queue
      const close = h.closeSession(s); // on the control queue, served first
      t.release();
      await close;
      await rejectsWith(req, 'ENOENT', /VIRTIO_CRYPTO_INVSESS/);
    });
  });

  it('maps VIRTIO_CRYPTO_NOSPC: a full session table → ENOSPC, and a half-created cipher pair is undone', async () => {
    await withDriver({ maxSessions: 3 }, async (_d, t, h) => {
      await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: KEY128 }); // 2 device sessions
      await rejectsWith(h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: KEY128 }), 'ENOSPC', /VIRTIO_CRYPTO_NOSPC/);
      assert.equal(t.device.sessionCount, 2, 'the encrypt half that did fit was destroyed');
      t.controlOpcodes.length = 0;
      await rejectsWith(h.createSession({ kind: 'aead', aead: 'aes-gcm', key: KEY128 }), 'ENOSPC');
      // AEAD_CREATE x2 (one fits, one NOSPC), then AEAD_DESTROY_SESSION for the one that fit (§5.9.7.2).
      assert.deepEqual(t.controlOpcodes, [0x302, 0x302, 0x303]);
      assert.equal(t.device.sessionCount, 2);
      await h.createSession({ kind: 'hash', hash: 'sha1' });
      await rejectsWith(h.createSession({ kind: 'hash', hash: 'sha1' }), 'ENOSPC');
    });
  });

  it('maps every status in one function', () => {
    const S = VIRTIO_CRYPTO_STATUS;
    assert.equal(errorFromStatus(S.VIRTIO_CRYPTO_OK, 'x'), null);
    const codes = [
      [S.VIRTIO_CRYPTO_ERR, 'EIO'],
      [S.VIRTIO_CRYPTO_BADMSG, 'EBADMSG'],
      [S.VIRTIO_CRYPTO_NOTSUPP, 'ENOTSUP'],
      [S.VIRTIO_CRYPTO_INVSESS, 'ENOENT'],
      [S.VIRTIO_CRYPTO_NOSPC, 'ENOSPC'],
      [S.VIRTIO_CRYPTO_KEY_REJECTED, 'EINVAL'],
      [200, 'EIO'],
    ] as const;
    for (const [status, code] of codes) assert.equal(errorFromStatus(status, 'x')?.code, code, `status ${status}`);
  });

  it('rejects what the device cannot serve before sending it: unoffered algorithms, over max_size', async () => {
    await withDriver({ maxSize: 4096, editConfig: (c) => void ((c.aeadAlgo = 0), (c.hashAlgo &= ~(1 << 6))) }, async (_d, t, h) => {
      const before = t.controlRequests;
      await rejectsWith(h.createSession({ kind: 'aead', aead: 'aes-gcm', key: KEY128 }), 'ENOTSUP');
      await rejectsWith(h.createSession({ kind: 'hash', hash: 'sha512' }), 'ENOTSUP');
      assert.equal(t.controlRequests, before, 'nothing reached the device');
      const s = await h.createSession({ kind: 'cipher', cipher: 'aes-ctr', key: KEY128 });
      // max_size 4096 bounds iv + src + dst (§5.9.5): DeviceInfo.maxSize is what every operation accepts.
      assert.equal(h.device.maxSize, 1984n); // (4096 - 128) / 2, in whole blocks
      assert.equal(dataLengthLimit(4096n), 1984n);
      assert.equal(dataLengthLimit(100n), 0n);
      t.kicks.length = 0;
      await h.crypt(s, { op: 'encrypt', src: new Uint8Array(1984), iv: CBC_IV });
      await rejectsWith(h.crypt(s, { op: 'encrypt', src: new Uint8Array(1985), iv: CBC_IV }), 'ENOSPC');
      const sha = await h.createSession({ kind: 'hash', hash: 'sha256' });
      await h.digest(sha, new Uint8Array(1984));
      await rejectsWith(h.digest(sha, new Uint8Array(1985)), 'ENOSPC');
      const gcm = await h.createSession({ kind: 'aead', aead: 'aes-gcm', key: KEY128 }).catch(() => null);
      assert.equal(gcm, null, 'AEAD not offered by this config');
      assert.equal(t.kicks.filter((q) => q === 0).length, 2, 'only the two requests that fit reached the data queue');
    });
  });

  it('a transport failure rejects pending requests with EIO and fails later ones', async () => {
    await withDriver({}, async (_d, t, h) => {
      const s = await h.createSession({ kind: 'hash', hash: 'sha1' });
      t.held = true;
      const p = h.digest(s, new Uint8Array(1));
      await new Promise((r) => setImmediate(r));
      t.fail('lost the device');
      await rejectsWith(p, 'EIO', /lost the device/);
      await rejectsWith(h.digest(s, new Uint8Array(1)), 'EIO');
    });
  });

  it('a device completing a descriptor that is not outstanding is a device failure (EIO), not a crash', async () => {
    await withDriver({}, async (_d, t, h) => {
      const s = await h.createSession({ kind: 'hash', hash: 'sha1' });
      t.held = true;
      const p = h.digest(s, new Uint8Array(1));
      await new Promise((r) => setImmediate(r));
      // Forge used.ring[0] = { id: 1 (the chain's 2nd descriptor, not a head), len 0 } and used.idx = 1.
      const used = t.usedRingOf(0);
      const dv = new DataView(used.buffer, used.byteOffset, used.byteLength);
      const idx = dv.getUint16(2, true);
      dv.setUint32(4 + 8 * (idx % 1024), 1, true);
      dv.setUint16(2, idx + 1, true);
      t.interrupt(0);
      await rejectsWith(p, 'EIO', /used-id-invalid/);
    });
  });

  it('a device reporting more bytes written than the chain can hold is a device failure (EIO), §2.7.8', async () => {
    await withDriver({}, async (_d, t, h) => {
      const s = await h.createSession({ kind: 'hash', hash: 'sha1' });
      t.held = true;
      const p = h.digest(s, new Uint8Array(1));
      await new Promise((r) => setImmediate(r));
      // Forge used.ring[idx] = { id: 0 (the head, outstanding), len: 22 } and used.idx + 1: the writable
      // part is hash_result (20) + status (1) = 21 bytes.
      const used = t.usedRingOf(0);
      const dv = new DataView(used.buffer, used.byteOffset, used.byteLength);
      const idx = dv.getUint16(2, true);
      dv.setUint32(4 + 8 * (idx % 1024), 0, true);
      dv.setUint32(8 + 8 * (idx % 1024), 22, true);
      dv.setUint16(2, idx + 1, true);
      t.interrupt(0);
      await rejectsWith(p, 'EIO', /used-len-invalid/);
      await rejectsWith(h.digest(s, new Uint8Array(1)), 'EIO');
    });
  });
});

/** One random operation, run the same way on two handles. */
type Op =
  | { kind: 'cipher'; cipher: 'aes-ecb' | 'aes-cbc' | 'aes-ctr' | 'aes-xts'; keyLen: number; op: 'encrypt' | 'decrypt'; len: number; ivLen: number; writeIv: boolean }
  | { kind: 'hash'; hash: 'sha1' | 'sha224' | 'sha256' | 'sha384' | 'sha512'; len: number }
  | { kind: 'mac'; hash: 'sha1' | 'sha256' | 'sha512'; keyLen: number; len: number }
  | { kind: 'aead'; keyLen: number; len: number; aadLen: number; tamper: boolean }
  | { kind: 'chain'; keyLen: number; len: number; order: 'cipher-then-hash' | 'hash-then-cipher'; tamper: boolean };

const opArb: fc.Arbitrary<Op> = fc.oneof(
  fc.record({
    kind: fc.constant('cipher' as const),
    cipher: fc.constantFrom('aes-ecb' as const, 'aes-cbc' as const, 'aes-ctr' as const, 'aes-xts' as const),
    keyLen: fc.constantFrom(15, 16, 24, 32, 64),
    op: fc.constantFrom('encrypt' as const, 'decrypt' as const),
    len: fc.oneof(fc.integer({ min: 0, max: 8 }).map((n) => n * 16), fc.integer({ min: 0, max: 200 })),
    ivLen: fc.constantFrom(16, 16, 16, 8),
    writeIv: fc.boolean(),
  }),
  fc.record({ kind: fc.constant('hash' as const), hash: fc.constantFrom('sha1' as const, 'sha224' as const, 'sha256' as const, 'sha384' as const, 'sha512' as const), len: fc.integer({ min: 0, max: 300 }) }),
  fc.record({ kind: fc.constant('mac' as const), hash: fc.constantFrom('sha1' as const, 'sha256' as const, 'sha512' as const), keyLen: fc.integer({ min: 0, max: 200 }), len: fc.integer({ min: 0, max: 300 }) }),
  fc.record({ kind: fc.constant('aead' as const), keyLen: fc.constantFrom(16, 24, 32, 20), len: fc.integer({ min: 0, max: 300 }), aadLen: fc.integer({ min: 0, max: 40 }), tamper: fc.boolean() }),
  fc.record({ kind: fc.constant('chain' as const), keyLen: fc.constantFrom(16, 32), len: fc.integer({ min: 0, max: 6 }).map((n) => n * 16), order: fc.constantFrom('cipher-then-hash' as const, 'hash-then-cipher' as const), tamper: fc.boolean() }),
);

/** Runs `op` on `h` with bytes from `seed`; returns the outputs as hex, or the error code. Closes its sessions. */
async function runOp(h: CryptoHandle, op: Op, seed: number): Promise<string> {
  const bytes = (n: number, salt: number): Uint8Array => Uint8Array.from({ length: n }, (_, i) => (seed * 31 + i * 7 + salt) & 0xff);
  const sessions: Session[] = [];
  const open = async (o: SessionOptions): Promise<Session> => {
    const s = await h.createSession(o);
    sessions.push(s);
    return s;
  };
  try {
    switch (op.kind) {
      case 'cipher': {
        const s = await open({ kind: 'cipher', cipher: op.cipher, key: bytes(op.keyLen, 1) });
        const r = await h.crypt(s, { op: op.op, src: bytes(op.len, 2), iv: op.cipher === 'aes-ecb' ? undefined : bytes(op.ivLen, 3), writeIv: op.writeIv });
        return `${toHex(r.dst)}/${r.iv ? toHex(r.iv) : '-'}`;
      }
      case 'hash': {
        const s = await open({ kind: 'hash', hash: op.hash });
        return toHex(await h.digest(s, bytes(op.len, 4)));
      }
      case 'mac': {
        const s = await open({ kind: 'mac', hash: op.hash, key: bytes(op.keyLen, 5) });
        return toHex(await h.digest(s, bytes(op.len, 6)));
      }
      case 'aead': {
        const s = await open({ kind: 'aead', aead: 'aes-gcm', key: bytes(op.keyLen, 7) });
        const iv = bytes(12, 8);
        const aad = bytes(op.aadLen, 9);
        const e = await h.aead(s, { op: 'encrypt', src: bytes(op.len, 10), iv, aad });
        const tag = e.tag!.slice();
        if (op.tamper) tag[0]! ^= 1;
        const d = await h.aead(s, { op: 'decrypt', src: e.dst, iv, aad, tag });
        return `${toHex(e.dst)}/${toHex(e.tag!)}/${toHex(d.dst)}`;
      }
      case 'chain': {
        // Encrypt-then-MAC and its inverse: the decrypt side hashes its input (the ciphertext).
        const base = { kind: 'chain', cipher: 'aes-cbc', key: bytes(op.keyLen, 11), hash: 'sha256', macKey: bytes(32, 12) } as const;
        const enc = await open({ ...base, order: 'cipher-then-hash', op: 'encrypt' });
        const dec = await open({ ...base, order: op.order, op: 'decrypt' });
        const iv = bytes(16, 13);
        const e = await h.chain(enc, { src: bytes(op.len, 14), iv });
        const mac = e.mac!.slice();
        if (op.tamper) mac[3]! ^= 0x10;
        const d = await h.chain(dec, { src: e.dst, iv, mac });
        return `${toHex(e.dst)}/${toHex(e.mac!)}/${toHex(d.dst)}`;
      }
    }
  } catch (err) {
    if (err instanceof CryptoError) return `error ${err.code}`;
    throw err;
  } finally {
    for (const s of sessions) await h.closeSession(s);
  }
  throw new Error('unreachable: every op kind returns');
}

describe('differential: the virtio driver agrees with the host device', () => {
  it('random operations give identical bytes or identical error codes', async () => {
    await withDriver({}, async (_d, _t, v) => {
      const host = createHostDevice();
      const hh = await host.open();
      try {
        await fc.assert(
          fc.asyncProperty(fc.array(opArb, { minLength: 1, maxLength: 8 }), fc.nat(), async (ops, seed) => {
            const a = await Promise.all(ops.map((op, i) => runOp(v, op, seed + i)));
            const b = await Promise.all(ops.map((op, i) => runOp(hh, op, seed + i)));
            assert.deepEqual(a, b, JSON.stringify({ virtio: a, host: b }));
          }),
          { numRuns: 100 },
        );
      } finally {
        await host.close();
      }
    });
  });
});

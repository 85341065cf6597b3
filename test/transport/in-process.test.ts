/**
 * The embedded transport end to end: our driver -> SharedArrayBuffer rings -> the virtio-crypto device on
 * a worker thread -> back. Oracles: NIST SP 800-38A (AES ECB/CBC/CTR), IEEE 1619 (XTS), the GCM spec's
 * test cases, RFC 4231 (HMAC), FIPS 180 ("abc"); node:crypto (OpenSSL) for the many-in-flight mix.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createCipheriv, createHash, createHmac, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import fc from 'fast-check';
import { fileURLToPath } from 'node:url';
import { CryptoError, type CryptoDevice, type CryptoHandle } from '../../src/driver/api.js';
import { createInProcessDevice } from '../../src/transport/in-process/create-in-process-device.js';
import { InProcessTransport } from '../../src/transport/in-process/in-process-transport.js';
import { OP_DATA_REQ_SIZE, encodeDestroySessionReq, encodeHashCreateSessionReq, encodeHashDataReq } from '../../src/wire/virtio-crypto.js';
import { openDevice } from '../../src/transport/open-device.js';
import { DriverQueue } from '../../src/virtqueue/driver-queue.js';
import { layoutRings, ringViews } from '../../src/virtqueue/layout.js';
import { CBC_IV, CTR_IV, KEYS, NIST, PLAIN_HEX } from '../fixtures/nist-sp800-38a.js';
import { hex } from '../fixtures/bytes.js';
import { FIPS180_ABC } from '../fixtures/fips180.js';

const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');

function rejectsWith(p: Promise<unknown>, code: CryptoError['code'], message?: RegExp): Promise<void> {
  return assert.rejects(p, (err: unknown) => err instanceof CryptoError && err.code === code && (!message || message.test(err.message)));
}

// NIST SP 800-38A Appendix F.
const PLAIN = hex(PLAIN_HEX);

describe('embedded virtio-crypto device (worker thread)', () => {
  let dev: CryptoDevice;
  let h: CryptoHandle;
  before(async () => {
    // max_size 2 MiB + 128: DeviceInfo.maxSize 1 MiB, so the boundary tests below stay small.
    dev = await createInProcessDevice({ dataQueues: 2, maxSize: 2n * 1024n * 1024n + 128n });
    h = await dev.open();
  });
  after(async () => {
    await dev.close();
  });

  it('by default, 256 MiB fits every operation (max_size 512 MiB + 128), with guest memory committed only on use', async () => {
    const before = process.memoryUsage().rss;
    const d = await createInProcessDevice();
    try {
      assert.equal(d.info.maxSize, 256n << 20n);
      // The ~545 MiB of guest memory is address space: opening the device commits far less.
      const grown = process.memoryUsage().rss - before;
      assert.ok(grown < 128 * 1024 * 1024, `opening the device grew the RSS by ${grown} bytes`);
    } finally {
      await d.close();
    }
  });

  it('describes itself from the device config', () => {
    assert.equal(dev.info.spec, 'virtio');
    assert.equal(dev.info.maxDataQueues, 2);
    assert.equal(dev.info.maxSize, 1n << 20n, 'a 1 MiB request fits every operation');
    assert.match(dev.info.description, /virtio-crypto .*worker thread.*2 data queues/);
  });

  for (const cipher of ['aes-ecb', 'aes-cbc', 'aes-ctr'] as const) {
    for (const bits of [128, 192, 256] as const) {
      it(`NIST SP 800-38A ${cipher} AES-${bits}: encrypt, decrypt, and block-by-block writeIv chaining equals one shot`, async () => {
        const s = await h.createSession({ kind: 'cipher', cipher, key: hex(KEYS[bits]) });
        const iv0 = cipher === 'aes-ecb' ? undefined : hex(cipher === 'aes-ctr' ? CTR_IV : CBC_IV);
        const expected = hex(NIST[cipher][bits]);
        assert.equal(toHex((await h.crypt(s, { op: 'encrypt', src: PLAIN, iv: iv0 })).dst), toHex(expected));
        assert.equal(toHex((await h.crypt(s, { op: 'decrypt', src: expected, iv: iv0 })).dst), toHex(PLAIN));
        for (const op of ['encrypt', 'decrypt'] as const) {
          const input = op === 'encrypt' ? PLAIN : expected;
          let iv = iv0;
          const parts: Uint8Array[] = [];
          for (let off = 0; off < input.length; off += 16) {
            const r = await h.crypt(s, { op, src: input.subarray(off, off + 16), iv, writeIv: true });
            assert.ok(r.iv);
            parts.push(r.dst);
            iv = r.iv.length === 0 ? undefined : r.iv;
          }
          assert.equal(toHex(Buffer.concat(parts)), toHex(op === 'encrypt' ? expected : PLAIN));
        }
        await h.closeSession(s);
      });
    }
  }

  it('IEEE 1619 XTS-AES-128 vector 2', async () => {
    const s = await h.createSession({ kind: 'cipher', cipher: 'aes-xts', key: hex('11'.repeat(16) + '22'.repeat(16)) });
    const tweak = hex('33333333330000000000000000000000');
    const pt = new Uint8Array(32).fill(0x44);
    const r = await h.crypt(s, { op: 'encrypt', src: pt, iv: tweak });
    assert.equal(toHex(r.dst), 'c454185e6a16936e39334038acef838bfb186fff7480adc4289382ecd6d394f0');
    assert.equal(toHex((await h.crypt(s, { op: 'decrypt', src: r.dst, iv: tweak })).dst), toHex(pt));
    await h.closeSession(s);
  });

  it('GCM spec test cases 3 and 4 (AES-128); a wrong tag or dropped AAD is EBADMSG (VIRTIO_CRYPTO_BADMSG)', async () => {
    const s = await h.createSession({ kind: 'aead', aead: 'aes-gcm', key: hex('feffe9928665731c6d6a8f9467308308') });
    const iv = hex('cafebabefacedbaddecaf888');
    const P = hex('d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255');
    const C = '42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091473f5985';
    const r3 = await h.aead(s, { op: 'encrypt', src: P, iv });
    assert.equal(toHex(r3.dst), C);
    assert.equal(toHex(r3.tag!), '4d5c2af327cd64a62cf35abd2ba6fab4');
    const aad = hex('feedfacedeadbeeffeedfacedeadbeefabaddad2');
    const r4 = await h.aead(s, { op: 'encrypt', src: P.subarray(0, 60), iv, aad });
    assert.equal(toHex(r4.dst), C.slice(0, 120));
    assert.equal(toHex(r4.tag!), '5bc94fbc3221a5db94fae95ae7121a47');
    assert.equal(toHex((await h.aead(s, { op: 'decrypt', src: r4.dst, iv, aad, tag: r4.tag! })).dst), toHex(P.subarray(0, 60)));
    const bad = r4.tag!.slice();
    bad[15]! ^= 1;
    await rejectsWith(h.aead(s, { op: 'decrypt', src: r4.dst, iv, aad, tag: bad }), 'EBADMSG', /VIRTIO_CRYPTO_BADMSG/);
    await rejectsWith(h.aead(s, { op: 'decrypt', src: r4.dst, iv, tag: r4.tag! }), 'EBADMSG');
    await h.closeSession(s);
  });

  it('RFC 4231 test cases 1-2 (HMAC-SHA-224/256/384/512) and FIPS 180 "abc" (SHA-1/224/256/384/512)', async () => {
    const rfc = [
      { key: '0b'.repeat(20), data: 'Hi There', sha224: '896fb1128abbdf196832107cd49df33f47b4b1169912ba4f53684b22', sha256: 'b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7', sha384: 'afd03944d84895626b0825f4ab46907f15f9dadbe4101ec682aa034c7cebc59cfaea9ea9076ede7f4af152e8b2fa9cb6', sha512: '87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854' },
      { key: Buffer.from('Jefe').toString('hex'), data: 'what do ya want for nothing?', sha224: 'a30e01098bc6dbbf45690f3a7e9e6d0f8bbea2a39e6148008fd05e44', sha256: '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843', sha384: 'af45d2e376484031617f78d2b58a6b1b9c7ef464f5a01b47e42ec3736322445e8e2240ca5e69e2c78b3239ecfab21649', sha512: '164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737' },
    ];
    for (const tc of rfc) {
      for (const hash of ['sha224', 'sha256', 'sha384', 'sha512'] as const) {
        const s = await h.createSession({ kind: 'mac', hash, key: hex(tc.key) });
        assert.equal(toHex(await h.digest(s, Buffer.from(tc.data))), tc[hash], `RFC 4231 HMAC-${hash}`);
        await h.closeSession(s);
      }
    }
    for (const [hash, digest] of Object.entries(FIPS180_ABC) as [keyof typeof FIPS180_ABC, string][]) {
      const s = await h.createSession({ kind: 'hash', hash });
      assert.equal(toHex(await h.digest(s, Buffer.from('abc'))), digest);
      await h.closeSession(s);
    }
  });

  it('algorithm chaining AES-128-CBC + HMAC-SHA256: NIST ciphertext, MAC = RFC 2104 HMAC over it; bad MAC → EBADMSG', async () => {
    const macKey = hex('0b'.repeat(20));
    const base = { kind: 'chain', cipher: 'aes-cbc', key: hex(KEYS[128]), hash: 'sha256', macKey } as const;
    const enc = await h.createSession({ ...base, order: 'cipher-then-hash', op: 'encrypt' });
    const r = await h.chain(enc, { src: PLAIN, iv: hex(CBC_IV) });
    assert.equal(toHex(r.dst), NIST['aes-cbc'][128].replace(/ /g, ''));
    assert.equal(toHex(r.mac!), createHmac('sha256', macKey).update(r.dst).digest('hex'));
    const dec = await h.createSession({ ...base, order: 'hash-then-cipher', op: 'decrypt' });
    assert.equal(toHex((await h.chain(dec, { src: r.dst, iv: hex(CBC_IV), mac: r.mac! })).dst), toHex(PLAIN));
    const bad = r.mac!.slice();
    bad[0]! ^= 0x80;
    await rejectsWith(h.chain(dec, { src: r.dst, iv: hex(CBC_IV), mac: bad }), 'EBADMSG');
    await h.closeSession(enc);
    await h.closeSession(dec);
  });

  it('500 concurrent mixed requests (cipher, hash, HMAC, GCM over random data) each get their own right answer', async () => {
    const key = randomBytes(32);
    const macKey = randomBytes(40);
    const cbc = await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key });
    const sha = await h.createSession({ kind: 'hash', hash: 'sha384' });
    const mac = await h.createSession({ kind: 'mac', hash: 'sha256', key: macKey });
    const gcm = await h.createSession({ kind: 'aead', aead: 'aes-gcm', key });
    const jobs = Array.from({ length: 500 }, (_, i) => {
      const data = randomBytes(16 * (1 + ((i * 7919) % 300)));
      const iv = randomBytes(16);
      switch (i % 4) {
        case 0: {
          const c = createCipheriv('aes-256-cbc', key, iv).setAutoPadding(false);
          const want = Buffer.concat([c.update(data), c.final()]).toString('hex');
          return h.crypt(cbc, { op: 'encrypt', src: data, iv }).then((r) => assert.equal(toHex(r.dst), want, `job ${i}`));
        }
        case 1:
          return h.digest(sha, data).then((d) => assert.equal(toHex(d), createHash('sha384').update(data).digest('hex'), `job ${i}`));
        case 2:
          return h.digest(mac, data).then((d) => assert.equal(toHex(d), createHmac('sha256', macKey).update(data).digest('hex'), `job ${i}`));
        default: {
          const n = iv.subarray(0, 12);
          const c = createCipheriv('aes-256-gcm', key, n);
          const ct = Buffer.concat([c.update(data), c.final()]).toString('hex');
          const tag = c.getAuthTag().toString('hex');
          return h.aead(gcm, { op: 'encrypt', src: data, iv: n }).then((r) => {
            assert.equal(toHex(r.dst), ct, `job ${i}`);
            assert.equal(toHex(r.tag!), tag, `job ${i}`);
          });
        }
      }
    });
    await Promise.all(jobs);
    for (const s of [cbc, sha, mac, gcm]) await h.closeSession(s);
  });

  it('requests of the advertised maximum (1 MiB) work for every kind; one byte more is ENOSPC before it is sent', async () => {
    const max = Number(dev.info.maxSize);
    const data = randomBytes(max);
    const key = randomBytes(16);
    const iv = randomBytes(16);
    const ctr = await h.createSession({ kind: 'cipher', cipher: 'aes-ctr', key });
    const sha = await h.createSession({ kind: 'hash', hash: 'sha256' });
    const gcm = await h.createSession({ kind: 'aead', aead: 'aes-gcm', key });
    const c = createCipheriv('aes-128-ctr', key, iv);
    const [enc, dig, sealed] = await Promise.all([
      h.crypt(ctr, { op: 'encrypt', src: data, iv }),
      h.digest(sha, data),
      h.aead(gcm, { op: 'encrypt', src: data.subarray(0, max - 16), iv: iv.subarray(0, 12), aad: data.subarray(0, 16) }),
    ]);
    assert.ok(Buffer.from(enc.dst).equals(Buffer.concat([c.update(data), c.final()])));
    assert.equal(toHex(dig), createHash('sha256').update(data).digest('hex'));
    assert.equal(sealed.dst.length, max - 16);
    await rejectsWith(h.crypt(ctr, { op: 'encrypt', src: new Uint8Array(max + 1), iv }), 'ENOSPC');
    await rejectsWith(h.digest(sha, new Uint8Array(max + 1)), 'ENOSPC');
    for (const s of [ctr, sha, gcm]) await h.closeSession(s);
  });

  it('concurrent handles: sessions are isolated (another handle gets ENOENT), closing one leaves the other working', async () => {
    const a = await dev.open();
    const b = await dev.open();
    const [sa, sb] = await Promise.all([
      a.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: hex(KEYS[128]) }),
      b.createSession({ kind: 'hash', hash: 'sha1' }),
    ]);
    await rejectsWith(b.crypt(sa, { op: 'encrypt', src: PLAIN, iv: hex(CBC_IV) }), 'ENOENT');
    await rejectsWith(a.digest(sb, PLAIN), 'ENOENT');
    await rejectsWith(b.closeSession(sa), 'ENOENT');
    const [ra, rb] = await Promise.all([a.crypt(sa, { op: 'encrypt', src: PLAIN, iv: hex(CBC_IV) }), b.digest(sb, Buffer.from('abc'))]);
    assert.equal(toHex(ra.dst), NIST['aes-cbc'][128].replace(/ /g, ''));
    assert.equal(toHex(rb), FIPS180_ABC.sha1);
    await a.close();
    await rejectsWith(a.crypt(sa, { op: 'encrypt', src: PLAIN, iv: hex(CBC_IV) }), 'EBADF');
    assert.equal(toHex(await b.digest(sb, Buffer.from('abc'))), FIPS180_ABC.sha1);
    await b.close();
  });

  it('closing a handle with 100 requests in flight rejects them with EBADF', async () => {
    const c = await dev.open();
    const s = await c.createSession({ kind: 'cipher', cipher: 'aes-ctr', key: hex(KEYS[128]) });
    const pending = Array.from({ length: 100 }, () => c.crypt(s, { op: 'encrypt', src: new Uint8Array(4096), iv: hex(CTR_IV) }));
    const closing = c.close(); // synchronously after submission: no completion can have been delivered yet
    await Promise.all(pending.map((p) => rejectsWith(p, 'EBADF')));
    await closing;
    // The device still serves others.
    const s2 = await h.createSession({ kind: 'hash', hash: 'sha1' });
    assert.equal(toHex(await h.digest(s2, Buffer.from('abc'))), FIPS180_ABC.sha1);
    await h.closeSession(s2);
  });
});

describe('embedded device lifecycle', () => {
  it('a full session table answers VIRTIO_CRYPTO_NOSPC → ENOSPC; closing sessions frees room', async () => {
    const dev = await createInProcessDevice({ maxSessions: 2 });
    try {
      const h = await dev.open();
      const a = await h.createSession({ kind: 'hash', hash: 'sha1' });
      await h.createSession({ kind: 'mac', hash: 'sha1', key: new Uint8Array(20) });
      await rejectsWith(h.createSession({ kind: 'hash', hash: 'sha256' }), 'ENOSPC', /VIRTIO_CRYPTO_NOSPC/);
      await h.closeSession(a);
      await h.createSession({ kind: 'hash', hash: 'sha256' });
    } finally {
      await dev.close();
    }
  });

  it('closing the device rejects requests in flight with EBADF and ends the worker', async () => {
    const dev = await openDevice('virtio');
    const h = await dev.open();
    const s = await h.createSession({ kind: 'hash', hash: 'sha512' });
    const pending = Array.from({ length: 50 }, () => h.digest(s, new Uint8Array(65536)));
    await Promise.all([dev.close(), ...pending.map((p) => rejectsWith(p, 'EBADF'))]);
    await rejectsWith(dev.open(), 'EBADF');
  });

  it('the process exits by itself once its last handle is closed (device.close() never called)', async () => {
    const self = fileURLToPath(import.meta.url);
    const mod = new URL('../../src/transport/in-process/create-in-process-device.ts', import.meta.url).href;
    const script = `
      const { createInProcessDevice } = await import(${JSON.stringify(mod)});
      const dev = await createInProcessDevice();
      const h = await dev.open();
      const s = await h.createSession({ kind: 'hash', hash: 'sha256' });
      const d = await h.digest(s, new TextEncoder().encode('abc'));
      console.log(Buffer.from(d).toString('hex'));
      await h.close();
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: new URL('../..', import.meta.url), stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (b: Buffer) => (out += b));
    child.stderr.on('data', (b: Buffer) => (err += b));
    // Safety net only: a hang fails the test instead of hanging the suite.
    const guard = setTimeout(() => child.kill('SIGKILL'), 90_000);
    const [code, signal] = await new Promise<[number | null, NodeJS.Signals | null]>((resolve) => child.on('exit', (c, s) => resolve([c, s])));
    clearTimeout(guard);
    assert.equal(signal, null, `child hung (killed); stdout: ${out} stderr: ${err} (${self})`);
    assert.equal(code, 0, err);
    assert.equal(out.trim(), FIPS180_ABC.sha256);
  });
});

/** Drives the transport by hand (raw rings), as a buggy or hostile driver could. */
async function rawSetup(t: InProcessTransport, rings: { index: number; offset: number; descAddr?: bigint }[]) {
  t.hold(); // nothing else keeps the process alive while we wait for the device (the driver does this)
  await t.setStatus(0);
  await t.setStatus(1);
  await t.setStatus(3);
  await t.setDriverFeatures(1n << 32n); // VERSION_1 only: flag-based notification suppression
  await t.setStatus(11);
  assert.equal((await t.getStatus()) & 8, 8, 'FEATURES_OK accepted');
  const base = t.memory.guestPhysAddr;
  const queues = new Map<number, DriverQueue<string>>();
  for (const r of rings) {
    const q = new DriverQueue<string>({ size: 16, ...ringViews(t.memory.bytes, 16, r.offset), eventIdx: false });
    const l = layoutRings(16);
    await t.setupQueue(r.index, {
      size: 16,
      descAddr: r.descAddr ?? base + BigInt(r.offset + l.descOffset),
      availAddr: base + BigInt(r.offset + l.availOffset),
      usedAddr: base + BigInt(r.offset + l.usedOffset),
    });
    queues.set(r.index, q);
  }
  return queues;
}

describe('embedded transport against a hostile driver', () => {
  it('refuses DRIVER_OK when a ring lies outside guest memory (DEVICE_NEEDS_RESET), and works again after a reset', async () => {
    const t = await InProcessTransport.create({ memoryBytes: 1 << 20 });
    try {
      await rawSetup(t, [{ index: 0, offset: 0, descAddr: t.memory.guestPhysAddr + (1n << 20n) }]);
      await assert.rejects(t.setStatus(15), /device refused DRIVER_OK/);
      assert.equal((await t.getStatus()) & 64, 64, 'DEVICE_NEEDS_RESET');
      await rawSetup(t, [{ index: 0, offset: 0 }, { index: 1, offset: 4096 }]);
      await t.setStatus(15);
      assert.equal(await t.getStatus(), 15);
    } finally {
      await t.close();
    }
  });

  it('completes a chain pointing outside guest memory with 0 bytes and goes on serving good ones', async () => {
    const t = await InProcessTransport.create({ memoryBytes: 1 << 20 });
    try {
      const queues = await rawSetup(t, [{ index: 0, offset: 0 }, { index: 1, offset: 4096 }]);
      const interrupts: number[] = [];
      let wake: (() => void) | null = null;
      t.onInterrupt((i) => {
        interrupts.push(i);
        wake?.();
      });
      await t.setStatus(15);
      const ctrl = queues.get(1)!;
      const base = Number(t.memory.guestPhysAddr);
      const next = (): Promise<{ token: string; len: number }> =>
        new Promise((resolve) => {
          const poll = (): void => {
            const u = ctrl.getUsed();
            if (u) resolve(u);
            else wake = poll; // wait for the next interrupt (an event, not a sleep)
          };
          poll();
        });
      // 1. readable buffer far outside the 1 MiB region
      ctrl.addOutIn(base + (8 << 20), 72, base + 0x10000, 16, 'bad');
      if (ctrl.publish()) t.notify(1);
      assert.deepEqual(await next(), { token: 'bad', len: 0 });
      // 2. a well-formed HASH_CREATE_SESSION still works
      t.memory.bytes.set(encodeHashCreateSessionReq({ algo: 2, hashResultLen: 20 }), 0x20000);
      ctrl.addOutIn(base + 0x20000, OP_DATA_REQ_SIZE, base + 0x20100, 16, 'good');
      if (ctrl.publish()) t.notify(1);
      assert.deepEqual(await next(), { token: 'good', len: 16 });
      assert.equal(new DataView(t.memory.bytes.buffer).getUint32(0x20100 + 8, true), 0, 'VIRTIO_CRYPTO_OK');
      assert.ok(interrupts.every((i) => i === 1));
    } finally {
      await t.close();
    }
  });

  it('an available index jumping past the queue size breaks the queue: onFailure, no crash, and close still works', async () => {
    const t = await InProcessTransport.create({ memoryBytes: 1 << 20 });
    try {
      await rawSetup(t, [{ index: 0, offset: 0 }, { index: 1, offset: 4096 }]);
      const failed = new Promise<Error>((resolve) => t.onFailure(resolve));
      await t.setStatus(15);
      const l = layoutRings(16);
      new DataView(t.memory.bytes.buffer).setUint16(l.availOffset + 2, 1000, true); // avail.idx = 1000 > 16
      t.notify(0);
      assert.match((await failed).message, /queue 0 is broken/);
      assert.equal((await t.getStatus()) & 64, 64, 'DEVICE_NEEDS_RESET');
    } finally {
      await t.close();
    }
  });
});

describe('embedded device with several device threads (data queue i on thread i mod threads)', () => {
  const CTRL = 3; // three data queues, then the control queue
  /** A transport with 3 data queues on 3 device threads, its raw rings, and one-request helpers. */
  async function setup(threads: number) {
    return start(await InProcessTransport.create({ memoryBytes: 1 << 20, maxDataQueues: 3, deviceThreads: threads }));
  }
  /** Resets the device (status 0), sets up fresh rings and DRIVER_OK. */
  async function start(t: InProcessTransport) {
    const queues = await rawSetup(t, [0, 1, 2, 3].map((index) => ({ index, offset: index * 4096 })));
    const waiters: (() => void)[] = [];
    t.onInterrupt(() => waiters.splice(0).forEach((w) => w()));
    const failed = new Promise<Error>((resolve) => t.onFailure(resolve));
    await t.setStatus(15);
    const mem = t.memory.bytes;
    const base = Number(t.memory.guestPhysAddr);
    let area = 0x20000;
    const completed = new Set<string>();
    /** One request on queue `qi`: `req` readable, `wlen` writable; resolves with the writable bytes. */
    const request = async (qi: number, req: Uint8Array, wlen: number): Promise<Uint8Array> => {
      const at = area;
      area += 0x1000;
      mem.set(req, at);
      const q = queues.get(qi)!;
      const token = `q${qi}@${at}`;
      q.addOutIn(base + at, req.length, base + at + 0x800, wlen, token);
      if (q.publish()) t.notify(qi);
      // Several requests may be in flight on one queue: whichever waiter reaps a used element files it
      // by token, and each request waits for its own.
      for (;;) {
        for (let u = q.getUsed(); u !== null; u = q.getUsed()) completed.add(u.token as string);
        if (completed.delete(token)) return mem.slice(at + 0x800, at + 0x800 + wlen);
        await new Promise<void>((resolve) => waiters.push(resolve));
      }
    };
    const abcHash = (qi: number, id: bigint) => {
      const req = new Uint8Array(OP_DATA_REQ_SIZE + 3);
      req.set(encodeHashDataReq(DATA_HASH, id, { srcDataLen: 3, hashResultLen: 20 }));
      req.set(new TextEncoder().encode('abc'), OP_DATA_REQ_SIZE);
      return request(qi, req, 21);
    };
    return { t, request, abcHash, failed };
  }
  const DATA_HASH = 0x0100; // VIRTIO_CRYPTO_HASH

  it('a session created on the control queue (thread 0) serves every data queue at once; after destroy every queue answers INVSESS', async () => {
    const { t, request, abcHash } = await setup(3);
    try {
      const created = await request(CTRL, encodeHashCreateSessionReq({ algo: 2, hashResultLen: 20 }), 16);
      const dv = new DataView(created.buffer);
      assert.equal(dv.getUint32(8, true), 0, 'create: VIRTIO_CRYPTO_OK');
      const id = dv.getBigUint64(0, true);
      const results = await Promise.all([0, 1, 2, 0, 1, 2].map((qi) => abcHash(qi, id)));
      for (const r of results) {
        assert.equal(toHex(r.subarray(0, 20)), FIPS180_ABC.sha1);
        assert.equal(r[20], 0, 'VIRTIO_CRYPTO_OK');
      }
      const destroyed = await request(CTRL, encodeDestroySessionReq(0x0103, id), 1);
      assert.equal(destroyed[0], 0, 'destroy: VIRTIO_CRYPTO_OK');
      for (const qi of [0, 1, 2]) assert.equal((await abcHash(qi, id))[20], 4, `queue ${qi}: VIRTIO_CRYPTO_INVSESS`);
    } finally {
      await t.close();
    }
  });

  it('a queue that breaks on thread 1 fails the device (onFailure, NEEDS_RESET); after a reset every thread serves again', async () => {
    const { t, failed } = await setup(2);
    try {
      const l = layoutRings(16);
      new DataView(t.memory.bytes.buffer).setUint16(4096 + l.availOffset + 2, 1000, true); // queue 1: avail.idx = 1000
      t.notify(1);
      assert.match((await failed).message, /device thread 1: a queue is broken/);
      assert.equal((await t.getStatus()) & 64, 64, 'DEVICE_NEEDS_RESET');
      const again = await start(t); // status 0 resets every thread
      const created = await again.request(CTRL, encodeHashCreateSessionReq({ algo: 2, hashResultLen: 20 }), 16);
      const id = new DataView(created.buffer).getBigUint64(0, true);
      for (const qi of [0, 1, 2]) assert.equal(toHex((await again.abcHash(qi, id)).subarray(0, 20)), FIPS180_ABC.sha1, `queue ${qi}`);
    } finally {
      await t.close();
    }
  });

  it('rejects more device threads than data queues (or than MAX_DEVICE_THREADS)', async () => {
    await assert.rejects(InProcessTransport.create({ maxDataQueues: 2, deviceThreads: 3 }), RangeError);
    await assert.rejects(InProcessTransport.create({ maxDataQueues: 16, deviceThreads: 9 }), RangeError);
    await assert.rejects(InProcessTransport.create({ maxDataQueues: 2, deviceThreads: 0 }), RangeError);
  });
});

describe('embedded device under random ring contents', () => {
  it('garbage descriptors and avail entries only ever complete with a status or break the queue; the worker lives on', async () => {
    const t = await InProcessTransport.create({ memoryBytes: 1 << 20 });
    const SIZE = 16;
    const l = layoutRings(SIZE);
    const base = t.memory.guestPhysAddr;
    const dv = new DataView(t.memory.bytes.buffer);
    let onIrq: (() => void) | null = null;
    let onFail: ((e: Error) => void) | null = null;
    t.onInterrupt(() => onIrq?.());
    t.onFailure((e) => onFail?.(e));
    const descArb = fc.record({
      // mostly inside the data area, sometimes anywhere in u64
      addr: fc.oneof(fc.integer({ min: 0x10000, max: 0xfffff }).map((o) => base + BigInt(o)), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n })),
      len: fc.oneof(fc.integer({ min: 0, max: 4096 }), fc.integer({ min: 0, max: 0xffffffff })),
      flags: fc.integer({ min: 0, max: 7 }),
      next: fc.integer({ min: 0, max: 20 }),
    });
    const caseArb = fc.record({
      descs: fc.array(descArb, { minLength: SIZE, maxLength: SIZE }),
      heads: fc.array(fc.integer({ min: 0, max: 17 }), { minLength: 1, maxLength: SIZE }),
      queue: fc.constantFrom(0, 1),
      headerBytes: fc.uint8Array({ minLength: 72, maxLength: 72 }),
    });
    try {
      await fc.assert(
        fc.asyncProperty(caseArb, async (c) => {
          await rawSetup(t, [{ index: 0, offset: 0 }, { index: 1, offset: 4096 }]);
          await t.setStatus(15);
          const ring = c.queue * 4096;
          for (let i = 0; i < SIZE; i++) {
            const d = c.descs[i]!;
            const o = ring + l.descOffset + 16 * i;
            dv.setBigUint64(o, d.addr, true);
            dv.setUint32(o + 8, d.len, true);
            dv.setUint16(o + 12, d.flags, true);
            dv.setUint16(o + 14, d.next, true);
          }
          // Plausible request headers in the data area, so some chains get past the header checks.
          for (let o = 0x10000; o < 0x100000; o += 0x8000) t.memory.bytes.set(c.headerBytes, o);
          c.heads.forEach((h, i) => dv.setUint16(ring + l.availOffset + 4 + 2 * i, h, true));
          const outcome = new Promise<string>((resolve) => {
            onIrq = () => {
              if (dv.getUint16(ring + l.usedOffset + 2, true) === c.heads.length) resolve('completed');
            };
            onFail = (e) => resolve(`broken: ${e.message}`);
          });
          Atomics.store(new Uint16Array(t.memory.bytes.buffer, ring + l.availOffset, 2), 1, c.heads.length);
          t.notify(c.queue);
          const result = await outcome;
          if (c.heads.some((h) => h >= SIZE)) assert.match(result, /broken/);
          else assert.equal(result, 'completed');
          onIrq = null;
          onFail = null;
        }),
        { numRuns: 40 },
      );
      // Still alive and serving after all that.
      const queues = await rawSetup(t, [{ index: 0, offset: 0 }, { index: 1, offset: 4096 }]);
      await t.setStatus(15);
      const ctrl = queues.get(1)!;
      const done = new Promise<void>((resolve) => (onIrq = () => resolve()));
      t.memory.bytes.set(encodeHashCreateSessionReq({ algo: 2, hashResultLen: 20 }), 0x20000);
      ctrl.addOutIn(Number(base) + 0x20000, 72, Number(base) + 0x20100, 16, 'good');
      if (ctrl.publish()) t.notify(1);
      await done;
      assert.deepEqual(ctrl.getUsed(), { token: 'good', len: 16 });
    } finally {
      await t.close();
    }
  });
});

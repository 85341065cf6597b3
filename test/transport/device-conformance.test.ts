/**
 * Every back-end `openDevice` offers behaves the same through the session API: the same results on
 * NIST SP 800-38A / RFC 4231 / GCM vectors, the same writeIv values, and the same CryptoError codes
 * (cryptodev-semantics.ts) for the same bad requests. The `host` device is the reference.
 *
 * vhost-user runs three ways: QEMU's session messages in both layouts (our front-end serves the
 * control queue, our back-end sees only data queues), our controlq extension, and QEMU's contract
 * against an independent back-end (independent-backend/: Python, written from the specs, AES-CBC
 * only, like QEMU 7.2's vhost-user device). Over session messages only cipher sessions exist (QEMU's
 * contract has no hash, MAC or AEAD sessions): there the suite checks that those fail with ENOTSUP,
 * and the independent back-end's other ciphers too.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { openDevice } from '../../src/transport/open-device.js';
import { connectVhostUserDevice } from '../../src/transport/vhost-user/connect.js';
import type { VhostUserSessionMode } from '../../src/transport/vhost-user/frontend-transport.js';
import { CryptoError, type CryptoDevice, type CryptoHandle } from '../../src/driver/api.js';
import { startServer } from './vhost-user-fixture.js';
import { startIndependentBackend } from './independent-backend/start.js';
import { hex } from '../fixtures/bytes.js';
import { createInProcessDevice } from '../../src/transport/in-process/create-in-process-device.js';
import { serveDeviceOnSocket } from '../../src/transport/socket/serve-device-on-socket.js';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** What a back-end can do beyond AES-CBC: every service, or only cipher sessions (QEMU's session messages). */
type Capabilities = 'all' | 'ciphers' | 'aes-cbc';

interface Backend {
  readonly name: string;
  readonly capabilities: Capabilities;
  start(): Promise<{ open(): Promise<CryptoDevice>; stop(): Promise<void> }>;
}

const ours = (sessions: VhostUserSessionMode): Backend['start'] => async () => {
  const srv = startServer();
  return { open: () => connectVhostUserDevice(srv.path, { sessions }), stop: () => srv.stop() };
};

const independent = (layout: 632 | 1072, sessions: VhostUserSessionMode): Backend['start'] => async () => {
  const b = await startIndependentBackend(layout);
  return { open: () => connectVhostUserDevice(b.path, { sessions }), stop: () => b.stop() };
};

/** Each back-end: how to open it (vhost-user: a back-end on a fresh socket) and clean up. */
const BACKENDS: readonly Backend[] = [
  { name: 'host', capabilities: 'all', start: async () => ({ open: () => openDevice('host'), stop: async () => undefined }) },
  { name: 'virtio', capabilities: 'all', start: async () => ({ open: () => openDevice('virtio'), stop: async () => undefined }) },
  { name: 'vhost-user controlq extension', capabilities: 'all', start: ours('controlq') },
  { name: 'vhost-user session messages qemu-7.1', capabilities: 'ciphers', start: ours('qemu-7.1') },
  { name: 'vhost-user session messages qemu-8.1', capabilities: 'ciphers', start: ours('qemu-8.1') },
  { name: 'independent back-end, 632-byte sessions', capabilities: 'aes-cbc', start: independent(632, 'qemu-7.1') },
  { name: 'independent back-end, 1072-byte sessions', capabilities: 'aes-cbc', start: independent(1072, 'qemu-8.1') },
  {
    // The driver service in this process, the embedded virtio device behind it.
    name: 'socket (driver service)',
    capabilities: 'all',
    start: async () => {
      const dir = mkdtempSync(join(tmpdir(), 'vcrypto-conf-'));
      const device = await createInProcessDevice();
      const service = await serveDeviceOnSocket(device, join(dir, 'svc.sock'));
      return {
        open: () => openDevice(`socket:${service.path}`),
        stop: async () => {
          await service.close();
          await device.close();
          rmSync(dir, { recursive: true, force: true });
        },
      };
    },
  },
];

const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const isCode = (code: CryptoError['code']) => (err: unknown) => err instanceof CryptoError && err.code === code;

// NIST SP 800-38A F.2.5 (CBC-AES256) and F.5.1 (CTR-AES128).
const PLAIN = hex('6bc1bee22e409f96e93d7e117393172a ae2d8a571e03ac9c9eb76fac45af8e51 30c81c46a35ce411e5fbc1191a0a52ef f69f2445df4f9b17ad2b417be66c3710');
const CBC256_KEY = hex('603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4');
const CBC256_CT = 'f58c4c04d6e5f1ba779eabfb5f7bfbd69cfc4e967edb808d679f777bc6702c7d39f23369a9d9bacfa530e26304231461b2eb05e2c39be9fcda6c19078c6a9d1b';
const CTR128_KEY = hex('2b7e151628aed2a6abf7158809cf4f3c');
const CTR128_CT = '874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff5ae4df3edbd5d35e5b4f09020db03eab1e031dda2fbe03d1792170a0f3009cee';

async function withDevice(backend: Backend, fn: (d: CryptoDevice) => Promise<void>): Promise<void> {
  const { open, stop } = await backend.start();
  try {
    const device = await open();
    try {
      await fn(device);
    } finally {
      await device.close();
    }
  } finally {
    await stop();
  }
}

/** NIST SP 800-38A F.5.1 (CTR-AES128.Encrypt) in two requests, the counter carried by writeIv. */
async function ctrVectors(h: CryptoHandle): Promise<void> {
  const ctr = await h.createSession({ kind: 'cipher', cipher: 'aes-ctr', key: CTR128_KEY });
  const c1 = await h.crypt(ctr, { op: 'encrypt', src: PLAIN.subarray(0, 48), iv: hex('f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff'), writeIv: true });
  assert.equal(toHex(c1.iv!), 'f0f1f2f3f4f5f6f7f8f9fafbfcfdff02');
  const c2 = await h.crypt(ctr, { op: 'encrypt', src: PLAIN.subarray(48), iv: c1.iv });
  assert.equal(toHex(Buffer.concat([c1.dst, c2.dst])), CTR128_CT);
}

for (const backend of BACKENDS) {
  const spec = backend.name;
  test(`[${spec}] vectors and writeIv chaining`, () =>
    withDevice(backend, async (device) => {
      const h = await device.open();
      const cbc = await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: CBC256_KEY });
      let iv = hex('000102030405060708090a0b0c0d0e0f');
      const parts: Uint8Array[] = [];
      for (let off = 0; off < 64; off += 32) {
        const r = await h.crypt(cbc, { op: 'encrypt', src: PLAIN.subarray(off, off + 32), iv, writeIv: true });
        parts.push(r.dst);
        iv = r.iv!;
      }
      assert.equal(toHex(Buffer.concat(parts)), CBC256_CT);
      assert.equal(toHex(iv), CBC256_CT.slice(-32));
      const dec = await h.crypt(cbc, { op: 'decrypt', src: hex(CBC256_CT), iv: hex('000102030405060708090a0b0c0d0e0f'), writeIv: true });
      assert.equal(toHex(dec.dst), toHex(PLAIN));
      assert.equal(toHex(dec.iv!), CBC256_CT.slice(-32));
      if (backend.capabilities === 'aes-cbc') {
        // QEMU 7.2's vhost-user device has nothing but AES-CBC either: any other session is refused.
        await assert.rejects(h.createSession({ kind: 'cipher', cipher: 'aes-ctr', key: CTR128_KEY }), isCode('ENOTSUP'));
      } else {
        await ctrVectors(h);
      }
      if (backend.capabilities !== 'all') {
        // QEMU's session messages carry cipher and chaining sessions only.
        await assert.rejects(h.createSession({ kind: 'mac', hash: 'sha512', key: hex('0b'.repeat(20)) }), isCode('ENOTSUP'));
        await assert.rejects(h.createSession({ kind: 'aead', aead: 'aes-gcm', key: new Uint8Array(16) }), isCode('ENOTSUP'));
        await assert.rejects(h.createSession({ kind: 'hash', hash: 'sha256' }), isCode('ENOTSUP'));
        await h.close();
        return;
      }
      const mac = await h.createSession({ kind: 'mac', hash: 'sha512', key: hex('0b'.repeat(20)) });
      assert.equal(
        toHex(await h.digest(mac, Buffer.from('Hi There'))),
        '87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854',
      );
      // The GCM specification's test cases 1 and 2 (zero key, zero IV).
      const gcm = await h.createSession({ kind: 'aead', aead: 'aes-gcm', key: new Uint8Array(16) });
      const g1 = await h.aead(gcm, { op: 'encrypt', src: new Uint8Array(0), iv: new Uint8Array(12) });
      assert.equal(toHex(g1.tag!), '58e2fccefa7e3061367f1d57a4e7455a');
      const g2 = await h.aead(gcm, { op: 'encrypt', src: new Uint8Array(16), iv: new Uint8Array(12) });
      assert.equal(toHex(g2.dst), '0388dace60b6a392f328c2b971b2fe78');
      assert.equal(toHex(g2.tag!), 'ab6e47d42cec13bdf53a67b21257bddf');
      await h.close();
    }));

  test(`[${spec}] dst (crypt_op.dst): the result written into the caller's array, in place too, writeIv from the ciphertext`, () =>
    withDevice(backend, async (device) => {
      const h = await device.open();
      const cbc = await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: CBC256_KEY });
      const iv0 = hex('000102030405060708090a0b0c0d0e0f');
      // Into a separate array, which must be the result's dst itself (nothing new allocated).
      const out = new Uint8Array(64).fill(0xee);
      const e = await h.crypt(cbc, { op: 'encrypt', src: PLAIN, iv: iv0, dst: out, writeIv: true });
      assert.equal(e.dst, out);
      assert.equal(toHex(out), CBC256_CT);
      assert.equal(toHex(e.iv!), CBC256_CT.slice(-32));
      // In place, decrypting: dst = src. The next IV is the last CIPHERTEXT block, which the result
      // overwrites: it must be taken before.
      const buf = hex(CBC256_CT);
      const d = await h.crypt(cbc, { op: 'decrypt', src: buf, iv: iv0, dst: buf, writeIv: true });
      assert.equal(d.dst, buf);
      assert.equal(toHex(buf), toHex(PLAIN));
      assert.equal(toHex(d.iv!), CBC256_CT.slice(-32));
      // A view into a larger array: only its bytes are written.
      const big = new Uint8Array(96).fill(0xaa);
      await h.crypt(cbc, { op: 'encrypt', src: PLAIN.subarray(0, 32), iv: iv0, dst: big.subarray(16, 48) });
      assert.equal(toHex(big.subarray(16, 48)), CBC256_CT.slice(0, 64));
      assert.ok(big.subarray(0, 16).every((b) => b === 0xaa) && big.subarray(48).every((b) => b === 0xaa));
      // A dst of the wrong length or type: EINVAL, nothing written.
      const short = new Uint8Array(48).fill(0x11);
      await assert.rejects(h.crypt(cbc, { op: 'encrypt', src: PLAIN, iv: iv0, dst: short }), isCode('EINVAL'));
      assert.ok(short.every((b) => b === 0x11));
      await assert.rejects(h.crypt(cbc, { op: 'encrypt', src: PLAIN, iv: iv0, dst: [] as unknown as Uint8Array }), isCode('EINVAL'));
      await h.close();
    }));

  test(`[${spec}] the same CryptoError codes for the same bad requests`, () =>
    withDevice(backend, async (device) => {
      const a = await device.open();
      const b = await device.open();
      await assert.rejects(a.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: new Uint8Array(20) }), isCode('EINVAL'));
      await assert.rejects(a.createSession({ kind: 'cipher', cipher: 'aes-xts', key: new Uint8Array(24) }), isCode('EINVAL'));
      // XTS key halves equal (found by the MessagePort fuzz: host leaked OpenSSL's "xts duplicated keys" as EIO).
      await assert.rejects(a.createSession({ kind: 'cipher', cipher: 'aes-xts', key: new Uint8Array(32).fill(7) }), isCode('EINVAL'));
      const cbc = await a.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: new Uint8Array(16) });
      await assert.rejects(a.crypt(cbc, { op: 'encrypt', src: new Uint8Array(20), iv: new Uint8Array(16) }), isCode('EINVAL'));
      await assert.rejects(a.crypt(cbc, { op: 'encrypt', src: new Uint8Array(16) }), isCode('EINVAL'));
      await assert.rejects(b.crypt(cbc, { op: 'encrypt', src: new Uint8Array(16), iv: new Uint8Array(16) }), isCode('ENOENT'));
      if (device.info.maxSize < 1n << 30n) {
        // Over the device's max_size (virtio: its config space); host's limit (4 GiB) is too big to allocate here.
        // (The driver refuses by length before copying: the zero-filled source is never touched.)
        await assert.rejects(a.crypt(cbc, { op: 'encrypt', src: new Uint8Array(Number(device.info.maxSize) + 16), iv: new Uint8Array(16) }), isCode('ENOSPC'));
      }
      if (backend.capabilities !== 'all') {
        // No AEAD or hash sessions over QEMU's session messages; the rest behaves the same.
        await assert.rejects(a.createSession({ kind: 'aead', aead: 'aes-gcm', key: new Uint8Array(32) }), isCode('ENOTSUP'));
        await a.closeSession(cbc);
        await assert.rejects(a.crypt(cbc, { op: 'encrypt', src: new Uint8Array(16), iv: new Uint8Array(16) }), isCode('ENOENT'));
        await a.close();
        await assert.rejects(a.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: new Uint8Array(16) }), isCode('EBADF'));
        await assert.rejects(b.createSession({ kind: 'hash', hash: 'sha256' }), isCode('ENOTSUP'));
        return;
      }
      const gcm = await a.createSession({ kind: 'aead', aead: 'aes-gcm', key: new Uint8Array(32) });
      const e = await a.aead(gcm, { op: 'encrypt', src: Buffer.from('attack at dawn'), iv: new Uint8Array(12), aad: Buffer.from('hdr') });
      const tag = e.tag!.slice();
      tag[15]! ^= 0x40;
      await assert.rejects(a.aead(gcm, { op: 'decrypt', src: e.dst, iv: new Uint8Array(12), aad: Buffer.from('hdr'), tag }), isCode('EBADMSG'));
      await a.closeSession(cbc);
      await assert.rejects(a.crypt(cbc, { op: 'encrypt', src: new Uint8Array(16), iv: new Uint8Array(16) }), isCode('ENOENT'));
      await a.close();
      await assert.rejects(a.createSession({ kind: 'hash', hash: 'sha256' }), isCode('EBADF'));
      const s = await b.createSession({ kind: 'hash', hash: 'sha256' });
      assert.equal(toHex(await b.digest(s, Buffer.from('abc'))), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    }));
}

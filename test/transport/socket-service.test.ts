/**
 * The driver service (`vcrypto driver`, src/transport/socket/) and `--device socket:PATH`:
 *  - the frame codec against bytes built by hand (4-byte big-endian length + a v8 structured clone),
 *    split anywhere, oversized and undecodable frames;
 *  - the session API over the socket against NIST SP 800-38A and FIPS 180, with our embedded
 *    virtio device behind the service, many clients with many requests in flight at once;
 *  - a client process killed mid-stream has its sessions destroyed; a malformed client is
 *    disconnected while another keeps working; the socket file's safety rules.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { linkSync, mkdtempSync, renameSync, rmSync, statSync, writeFileSync, existsSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serialize } from 'node:v8';
import { encodeFrame, FrameDecoder, FrameError, MAX_FRAME_BYTES } from '../../src/transport/socket/frame-codec.js';
import { DriverService, ServiceError } from '../../src/transport/socket/driver-service.js';
import { openDevice } from '../../src/transport/open-device.js';
import type { CryptoDevice, CryptoHandle, Session, SessionOptions } from '../../src/driver/api.js';
import { CBC_IV, KEYS, NIST, PLAIN_HEX } from '../fixtures/nist-sp800-38a.js';
import { FIPS180_ABC } from '../fixtures/fips180.js';
import { hex } from '../fixtures/bytes.js';

const dir = mkdtempSync(join(tmpdir(), 'vcrypto-svc-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const sockPath = () => join(dir, `s${++n}.sock`);

test('frames: 4-byte big-endian length + v8 serialization, decoded across any split', () => {
  const messages = [{ id: 1, method: 'open' }, { id: 2, session: 7n, data: new Uint8Array([1, 2, 3]) }, 'x'.repeat(300)];
  const wire = Buffer.concat(messages.map(encodeFrame));
  const first = serialize(messages[0]);
  assert.equal(wire.readUInt32BE(0), first.length, 'length prefix');
  assert.ok(wire.subarray(4, 4 + first.length).equals(first), 'payload is the v8 serialization');
  for (let cut = 0; cut <= wire.length; cut++) {
    for (const cut2 of [cut, Math.min(wire.length, cut + 3), wire.length]) {
      const d = new FrameDecoder();
      const got = [...d.push(wire.subarray(0, cut)), ...d.push(wire.subarray(cut, cut2)), ...d.push(wire.subarray(cut2))];
      assert.deepEqual(got, messages, `cut at ${cut}/${cut2}`);
      assert.equal(d.pending, 0);
    }
  }
});

test('frames: an oversized length is refused before buffering; garbage does not decode', () => {
  const big = Buffer.alloc(4);
  big.writeUInt32BE(MAX_FRAME_BYTES + 1, 0);
  assert.throws(() => new FrameDecoder().push(big), FrameError);
  const garbage = Buffer.from([0, 0, 0, 3, 0xff, 0x0d, 0x99]);
  assert.throws(() => new FrameDecoder().push(garbage), FrameError);
});

/** A device wrapper that counts live sessions (created minus closed, including by handle close). */
function counting(device: CryptoDevice): { device: CryptoDevice; live: () => number } {
  let live = 0;
  return {
    live: () => live,
    device: {
      info: device.info,
      close: () => device.close(),
      async open(): Promise<CryptoHandle> {
        const h = await device.open();
        const mine = new Set<bigint>();
        return {
          device: h.device,
          async createSession(opts: SessionOptions) {
            const s = await h.createSession(opts);
            mine.add(s.id);
            live++;
            return s;
          },
          async closeSession(s: Session) {
            await h.closeSession(s);
            if (mine.delete(s.id)) live--;
          },
          crypt: (s, r) => h.crypt(s, r),
          aead: (s, r) => h.aead(s, r),
          digest: (s, d) => h.digest(s, d),
          chain: (s, r) => h.chain(s, r),
          async close() {
            await h.close();
            live -= mine.size;
            mine.clear();
          },
        };
      },
    },
  };
}

test('the session API over the socket: NIST CBC and FIPS 180 through the embedded device, 8 clients x 32 in flight', async () => {
  const device = await openDevice('virtio');
  const path = sockPath();
  const service = await DriverService.listen(device, path);
  try {
    assert.equal(statSync(path).mode & 0o777, 0o600, 'socket file is private by default');
    const clients = await Promise.all(Array.from({ length: 8 }, () => openDevice(`socket:${path}`)));
    assert.match(clients[0]!.info.description, /^driver service .* -> virtio-crypto/);
    assert.equal(clients[0]!.info.spec, `socket:${path}`);
    await Promise.all(
      clients.map(async (c) => {
        const h = await c.open();
        const s = await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: hex(KEYS[128]) });
        const sha = await h.createSession({ kind: 'hash', hash: 'sha256' });
        const results = await Promise.all(Array.from({ length: 32 }, () => h.crypt(s, { op: 'encrypt', src: hex(PLAIN_HEX), iv: hex(CBC_IV) })));
        for (const r of results) assert.deepEqual(Buffer.from(r.dst).toString('hex'), NIST['aes-cbc'][128].replace(/\s+/g, ''));
        const back = await h.crypt(s, { op: 'decrypt', src: hex(NIST['aes-cbc'][128]), iv: hex(CBC_IV) });
        assert.deepEqual(Buffer.from(back.dst).toString('hex'), PLAIN_HEX.replace(/\s+/g, ''));
        assert.equal(Buffer.from(await h.digest(sha, new TextEncoder().encode('abc'))).toString('hex'), FIPS180_ABC.sha256);
        await h.close();
      }),
    );
    await Promise.all(clients.map((c) => c.close()));
  } finally {
    await service.close();
    await device.close();
  }
  assert.ok(!existsSync(path), 'the service removes its socket file');
});

test('a client process killed mid-stream has its sessions destroyed; a malformed client is cut off, others go on', async () => {
  const inner = await openDevice('host');
  const { device, live } = counting(inner);
  const path = sockPath();
  const service = await DriverService.listen(device, path);
  try {
    // A child process opens 5 sessions and keeps requests going until it is killed.
    const script = join(dir, 'victim.mjs');
    writeFileSync(
      script,
      `const { openDevice } = await import(${JSON.stringify(new URL('../../src/transport/open-device.ts', import.meta.url).href)});
       const d = await openDevice('socket:' + process.argv[2]); const h = await d.open();
       const ss = []; for (let i = 0; i < 5; i++) ss.push(await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: new Uint8Array(16) }));
       console.log('ready');
       for (;;) await h.crypt(ss[0], { op: 'encrypt', src: new Uint8Array(4096), iv: new Uint8Array(16) });`,
    );
    const child = spawn(process.execPath, ['--import', 'tsx', script, path], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (c: Buffer) => (c.toString().includes('ready') ? resolve() : undefined));
      child.once('exit', () => reject(new Error('victim exited early')));
    });
    assert.equal(live(), 5);
    child.kill('SIGKILL');
    const deadline = Date.now() + 10_000;
    while (live() !== 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    assert.equal(live(), 0, 'the killed client\'s sessions were destroyed');

    // A well-behaved client and three malformed ones.
    const good = await openDevice(`socket:${path}`);
    const h = await good.open();
    const s = await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: hex(KEYS[128]) });
    const bad = async (bytes: Buffer): Promise<void> => {
      const sock = connect(path);
      await new Promise<void>((resolve) => sock.once('connect', () => resolve()));
      sock.on('data', () => undefined);
      sock.write(bytes);
      await new Promise<void>((resolve) => sock.once('close', () => resolve()));
    };
    const huge = Buffer.alloc(4);
    huge.writeUInt32BE(0xffffffff, 0);
    await bad(huge); // oversized frame
    await bad(Buffer.from([0, 0, 0, 4, 0xde, 0xad, 0xbe, 0xef])); // undecodable payload
    await bad(encodeFrame({ id: 1, method: 'format-disk' })); // decodes, but not a request
    await bad(encodeFrame({ id: 2, method: 'crypt', handle: 1, session: 'one', req: {} })); // ill-typed fields
    const r = await h.crypt(s, { op: 'encrypt', src: hex(PLAIN_HEX), iv: hex(CBC_IV) });
    assert.equal(Buffer.from(r.dst).toString('hex'), NIST['aes-cbc'][128].replace(/\s+/g, ''));
    await good.close();
  } finally {
    await service.close();
    await device.close();
  }
});

test('socket file safety: a live service is refused, a stale socket replaced, a non-socket left alone', async () => {
  const device = await openDevice('host');
  try {
    const path = sockPath();
    const first = await DriverService.listen(device, path, { mode: 0o660 });
    assert.equal(statSync(path).mode & 0o777, 0o660);
    await assert.rejects(DriverService.listen(device, path), (e: unknown) => e instanceof ServiceError && /already listening/.test(e.message));
    await first.close();

    // A stale socket: bound by a server that is gone (the file stays behind).
    const stale = sockPath();
    const s = createServer();
    await new Promise<void>((resolve) => s.listen(stale, () => resolve()));
    // Close the listening fd without unlinking (as a crashed process would leave it).
    await new Promise<void>((resolve) => {
      const copy = `${stale}.keep`;
      // node removes the file on close(): hard-link it aside and back to keep the stale inode.
      linkSync(stale, copy);
      s.close(() => {
        renameSync(copy, stale);
        resolve();
      });
    });
    assert.ok(existsSync(stale));
    const replaced = await DriverService.listen(device, stale);
    const client = await openDevice(`socket:${stale}`);
    await client.close();
    await replaced.close();

    const file = join(dir, 'plain-file');
    writeFileSync(file, 'not a socket');
    await assert.rejects(DriverService.listen(device, file), /not a socket/);
    assert.ok(existsSync(file));
  } finally {
    await device.close();
  }
});

test('--device socket: with no service names the command to start one', async () => {
  await assert.rejects(openDevice(`socket:${join(dir, 'nobody.sock')}`), /no driver service \(ENOENT\): start 'vcrypto driver --socket/);
});

/**
 * The driver service (transport/socket/): the session API over a Unix socket with the embedded virtio
 * device and a vhost-user device behind it (NIST SP 800-38A, FIPS 180), many clients with many
 * requests in flight, a killed client process whose sessions are freed (observed through a full
 * device session table), malformed frames that close only their own connection, and the socket file's
 * life (mode, live service, stale file, removal only when still ours).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { existsSync, lstatSync, mkdirSync, mkdtempSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createConnection, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { serialize } from 'node:v8';
import { CryptoError, type CryptoDevice } from '../../src/driver/api.js';
import { createHostDevice } from '../../src/driver/host-device.js';
import { createInProcessDevice } from '../../src/transport/in-process/create-in-process-device.js';
import { connectVhostUserDevice } from '../../src/transport/vhost-user/connect.js';
import { serveDeviceOnSocket, type SocketDeviceService } from '../../src/transport/socket/serve-device-on-socket.js';
import { connectSocketDevice } from '../../src/transport/socket/connect-socket-device.js';
import { SocketPort } from '../../src/transport/socket/socket-port.js';
import { decodePayload, encodeFrame, FrameDecoder, MAX_FRAME_PAYLOAD, MAX_SERVICE_DATA } from '../../src/transport/socket/socket-wire.js';
import { startServer } from './vhost-user-fixture.js';
import { hex } from '../fixtures/bytes.js';
import { CBC_IV, KEYS, NIST, PLAIN_HEX } from '../fixtures/nist-sp800-38a.js';
import { FIPS180_ABC } from '../fixtures/fips180.js';
import { REPO_ROOT } from '../fixtures/cli.js';

const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const isCode = (code: CryptoError['code']) => (err: unknown) => err instanceof CryptoError && err.code === code;
const nist = (h: string) => h.replace(/\s+/g, '');

const dir = mkdtempSync(join(tmpdir(), 'vcrypto-svc-'));
after(() => rmSync(dir, { recursive: true, force: true }));
let n = 0;
const socketPath = () => join(dir, `s${++n}.sock`);

/** A service on a fresh socket in front of `device`; the log lines it wrote. */
async function startService(device: CryptoDevice, opts: { mode?: number } = {}) {
  const path = socketPath();
  const logs: string[] = [];
  const service = await serveDeviceOnSocket(device, path, { ...opts, log: (l) => logs.push(l), verbose: true });
  return { path, logs, service };
}

/** Polls `cond` every 10 ms until true; fails after `ms`. */
async function until(what: string, cond: () => boolean, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const BEHIND: readonly { name: string; open(): Promise<{ device: CryptoDevice; stop(): Promise<void> }> }[] = [
  {
    name: 'virtio',
    open: async () => {
      const device = await createInProcessDevice();
      return { device, stop: () => device.close() };
    },
  },
  {
    name: 'vhost-user',
    open: async () => {
      const srv = startServer();
      // The controlq extension: the test hashes too, which QEMU's session messages cannot carry.
      const device = await connectVhostUserDevice(srv.path, { sessions: 'controlq' });
      return {
        device,
        stop: async () => {
          await device.close();
          await srv.stop();
        },
      };
    },
  },
];

for (const behind of BEHIND) {
  test(`[${behind.name} behind the service] NIST SP 800-38A and FIPS 180 through socket:PATH; DeviceInfo names both`, async () => {
    const { device, stop } = await behind.open();
    const { path, service } = await startService(device);
    const client = await connectSocketDevice(path);
    try {
      assert.equal(client.info.spec, `socket:${path}`);
      assert.equal(client.info.description, `driver service ${path} → ${device.info.description}`);
      const cap = BigInt(MAX_SERVICE_DATA);
      assert.equal(client.info.maxSize, device.info.maxSize < cap ? device.info.maxSize : cap, 'the real limit, at most the 64 MiB frame cap');
      assert.equal(client.info.maxCipherKeyLen, device.info.maxCipherKeyLen);
      assert.equal(client.info.maxAuthKeyLen, device.info.maxAuthKeyLen);
      const h = await client.open();
      assert.equal(h.device, client.info);
      const cbc = await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: hex(KEYS[256]) });
      const enc = await h.crypt(cbc, { op: 'encrypt', src: hex(PLAIN_HEX), iv: hex(CBC_IV), writeIv: true });
      assert.equal(toHex(enc.dst), nist(NIST['aes-cbc'][256]));
      assert.equal(toHex(enc.iv!), nist(NIST['aes-cbc'][256]).slice(-32));
      const dec = await h.crypt(cbc, { op: 'decrypt', src: enc.dst, iv: hex(CBC_IV) });
      assert.equal(toHex(dec.dst), nist(PLAIN_HEX));
      const ctr = await h.createSession({ kind: 'cipher', cipher: 'aes-ctr', key: hex(KEYS[128]) });
      assert.equal(toHex((await h.crypt(ctr, { op: 'encrypt', src: hex(PLAIN_HEX), iv: hex('f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff') })).dst), nist(NIST['aes-ctr'][128]));
      for (const alg of ['sha1', 'sha256', 'sha512'] as const) {
        const s = await h.createSession({ kind: 'hash', hash: alg });
        assert.equal(toHex(await h.digest(s, Buffer.from('abc'))), FIPS180_ABC[alg], alg);
      }
      // Errors keep their codes across the socket; over the device's max_size → ENOSPC (its own check).
      await assert.rejects(h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: new Uint8Array(7) }), isCode('EINVAL'));
      await assert.rejects(h.crypt(cbc, { op: 'encrypt', src: new Uint8Array(Number(client.info.maxSize) + 16), iv: new Uint8Array(16) }), isCode('ENOSPC'));
      await h.closeSession(cbc);
      await assert.rejects(h.crypt(cbc, { op: 'encrypt', src: new Uint8Array(16), iv: new Uint8Array(16) }), isCode('ENOENT'));
      await h.close();
      await assert.rejects(h.createSession({ kind: 'hash', hash: 'sha1' }), isCode('EBADF'));
    } finally {
      await client.close();
      await service.close();
      await stop();
    }
  });

  test(`[${behind.name} behind the service] 6 clients at once, 48 requests in flight each, every result the NIST answer`, async () => {
    const { device, stop } = await behind.open();
    const { path, service, logs } = await startService(device);
    try {
      const clients = await Promise.all(Array.from({ length: 6 }, () => connectSocketDevice(path)));
      await until('6 clients', () => service.clientCount === 6);
      const sessions = await Promise.all(
        clients.map(async (c) => {
          const h = await c.open();
          const s = await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: hex(KEYS[128]) });
          const results = await Promise.all(Array.from({ length: 48 }, () => h.crypt(s, { op: 'encrypt', src: hex(PLAIN_HEX), iv: hex(CBC_IV) })));
          for (const r of results) assert.equal(toHex(r.dst), nist(NIST['aes-cbc'][128]));
          return s.id;
        }),
      );
      assert.equal(new Set(sessions).size, 6, 'one session per client on the one device');
      await Promise.all(clients.map((c) => c.close()));
      await until('all disconnected', () => service.clientCount === 0);
      assert.equal(logs.filter((l) => / disconnected; its handles and sessions are closed/.test(l)).length, 6, logs.join('\n'));
    } finally {
      await service.close();
      await stop();
    }
  });
}

test('a client process killed mid-stream frees its sessions: the full device session table is usable again', async () => {
  // 8 device sessions = 4 cipher sessions (the driver makes one device session per direction).
  const device = await createInProcessDevice({ maxSessions: 8 });
  const { path, service, logs } = await startService(device);
  const other = await connectSocketDevice(path);
  try {
    const moduleUrl = new URL('../../src/transport/socket/connect-socket-device.ts', import.meta.url).href;
    // The child fills the session table, then keeps 32 requests in flight until it is killed.
    const code = `
      const { connectSocketDevice } = await import(${JSON.stringify(moduleUrl)});
      const d = await connectSocketDevice(${JSON.stringify(path)});
      const h = await d.open();
      const sessions = [];
      for (let i = 0; i < 4; i++) sessions.push(await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: new Uint8Array(16).fill(i) }));
      let done = 0;
      const loop = async (s) => { for (;;) { await h.crypt(s, { op: 'encrypt', src: new Uint8Array(4096), iv: new Uint8Array(16) }); if (++done === 200) process.stdout.write('streaming\\n'); } };
      for (let i = 0; i < 32; i++) loop(sessions[i % 4]);
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    await until('the child to stream', () => out.includes('streaming'), 30_000);
    const h = await other.open();
    // The table is full of the child's sessions.
    await assert.rejects(h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: new Uint8Array(16) }), isCode('ENOSPC'));
    child.kill('SIGKILL');
    await once(child, 'exit');
    await until('the killed client to be dropped', () => service.clientCount === 1);
    // All four entries are free again, and they work.
    const mine = [];
    for (let i = 0; i < 4; i++) mine.push(await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: hex(KEYS[128]) }));
    for (const s of mine) assert.equal(toHex((await h.crypt(s, { op: 'encrypt', src: hex(PLAIN_HEX), iv: hex(CBC_IV) })).dst), nist(NIST['aes-cbc'][128]));
    assert.ok(logs.some((l) => /client 2 disconnected; its handles and sessions are closed/.test(l)), logs.join('\n'));
  } finally {
    await other.close();
    await service.close();
    await device.close();
  }
});

/** A raw client: reads the service's frames, sends any bytes. */
async function rawClient(path: string) {
  const sock: Socket = createConnection({ path });
  await once(sock, 'connect');
  const decoder = new FrameDecoder();
  const frames: unknown[] = [];
  let closed = false;
  sock.on('data', (c: Buffer) => frames.push(...decoder.push(c).map(decodePayload)));
  sock.on('error', () => undefined);
  sock.once('close', () => (closed = true));
  await until('the hello', () => frames.length === 1);
  const header = (length: number) => {
    const h = Buffer.alloc(4);
    h.writeUInt32BE(length);
    return h;
  };
  return {
    sock,
    frames,
    isClosed: () => closed,
    sendFrame: (message: unknown) => sock.write(encodeFrame(message)),
    sendRaw: (bytes: Uint8Array) => sock.write(bytes),
    header,
  };
}

test('malformed input closes only its own connection, with one log line each; another client keeps working', async () => {
  const device = createHostDevice();
  const { path, service, logs } = await startService(device);
  const good = await connectSocketDevice(path);
  try {
    const h = await good.open();
    const s = await h.createSession({ kind: 'hash', hash: 'sha256' });
    const cases: [string, (c: Awaited<ReturnType<typeof rawClient>>) => void, RegExp][] = [
      ['length 0', (c) => c.sendRaw(c.header(0)), /empty frame \(length 0\)/],
      ['oversized length, header only', (c) => c.sendRaw(c.header(MAX_FRAME_PAYLOAD + 1)), /exceeds the \d+-byte limit/],
      ['length 0xffffffff', (c) => c.sendRaw(Buffer.from('ffffffff', 'hex')), /exceeds the \d+-byte limit/],
      ['garbage payload', (c) => c.sendRaw(Buffer.concat([c.header(5), Buffer.from('hello')])), /undecodable payload of 5 bytes/],
      ['a node:v8 serialization', (c) => {
        const p = serialize({ id: 1, method: 'open' });
        c.sendRaw(Buffer.concat([c.header(p.length), p]));
      }, /undecodable payload .*unknown tag 0xff/],
      ['a payload describing 311 values (built by hand: the encoder refuses it)', (c) => {
        // { k0..k9: { n0..n29: null } }: tag 09, u16 key count, then (u8 key length, key, value) each.
        const object = (keys: string[], value: (k: string) => Buffer) =>
          Buffer.concat([Buffer.from([0x09, 0, keys.length]), ...keys.map((k) => Buffer.concat([Buffer.from([k.length]), Buffer.from(k), value(k)]))]);
        const names = (p: string, count: number) => Array.from({ length: count }, (_, i) => `${p}${i}`);
        const p = object(names('k', 10), () => object(names('n', 30), () => Buffer.from([0x01])));
        c.sendRaw(Buffer.concat([c.header(p.length), p]));
      }, /more than 256 values/],
      ['valid payload, bogus method', (c) => c.sendFrame({ id: 1, method: 'bogus' }), /malformed request \(method "bogus", id 1\)/],
      ['valid payload, handle of the wrong type', (c) => c.sendFrame({ id: 2, method: 'digest', handle: 'x', session: 1n, data: new Uint8Array(1) }), /malformed request \(method "digest", id 2\)/],
      ['valid payload, not an object', (c) => c.sendFrame('junk'), /malformed request \(a string, not an object\)/],
      ['valid payload, a method with a newline', (c) => c.sendFrame({ id: 4, method: 'x\nclient 1: forged' }), /malformed request \(method "x\\nclient 1: forged", id 4\)/],
      ['garbage after a valid request', (c) => {
        c.sendFrame({ id: 3, method: 'open' });
        c.sendRaw(Buffer.concat([c.header(3), Buffer.from('ff0fff', 'hex')]));
      }, /undecodable payload of 3 bytes/],
    ];
    for (const [name, send, line] of cases) {
      const before = logs.length;
      const c = await rawClient(path);
      send(c);
      await until(`${name}: the service to close the connection`, c.isClosed);
      await until(`${name}: the log line`, () => logs.slice(before).some((l) => line.test(l)));
      assert.equal(logs.slice(before).filter((l) => /connection closed$/.test(l)).length, 1, `${name}: one line\n${logs.slice(before).join('\n')}`);
      // The good client is unaffected.
      assert.equal(toHex(await h.digest(s, Buffer.from('abc'))), FIPS180_ABC.sha256, name);
    }
    // A well-formed request naming a handle that is not open is an answer (EBADF), not a violation.
    const c = await rawClient(path);
    c.sendFrame({ id: 9, method: 'digest', handle: 999, session: 1n, data: new Uint8Array(1) });
    await until('the EBADF answer', () => c.frames.length === 2);
    assert.deepEqual(c.frames[1], { id: 9, ok: false, error: { code: 'EBADF', message: 'no open handle 999' } });
    assert.equal(c.isClosed(), false);
    c.sock.destroy();
    assert.equal(toHex(await h.digest(s, Buffer.from('abc'))), FIPS180_ABC.sha256);
  } finally {
    await good.close();
    await service.close();
    await device.close();
  }
});

test('a request over the frame limit fails ENOSPC in the client; the connection goes on', async () => {
  const device = createHostDevice();
  const { path, service } = await startService(device);
  const client = await connectSocketDevice(path);
  try {
    assert.equal(client.info.maxSize, BigInt(MAX_SERVICE_DATA), 'host: 4 GiB, capped to what a frame carries');
    const h = await client.open();
    const s = await h.createSession({ kind: 'hash', hash: 'sha1' });
    // Refused before it is framed: the client knows the limit the service announced.
    await assert.rejects(h.digest(s, new Uint8Array(MAX_FRAME_PAYLOAD)), (e: unknown) => isCode('ENOSPC')(e) && /exceeds the device's limit of 67108864 bytes/.test((e as Error).message));
    assert.equal(toHex(await h.digest(s, Buffer.from('abc'))), FIPS180_ABC.sha1);
  } finally {
    await client.close();
    await service.close();
    await device.close();
  }
});

test('pending and later calls fail when the service goes away', async () => {
  const device = createHostDevice();
  const { path, service } = await startService(device);
  const client = await connectSocketDevice(path);
  const h = await client.open();
  const s = await h.createSession({ kind: 'hash', hash: 'sha1' });
  await service.close();
  await assert.rejects(h.digest(s, Buffer.from('abc')), (e: unknown) => isCode('EIO')(e) || isCode('EBADF')(e));
  await assert.rejects(client.open(), isCode('EBADF'));
  await client.close();
  await device.close();
});

test('connecting: no service → EIO naming the command; a socket that never says hello (vhost-user) → EIO after the timeout', async () => {
  await assert.rejects(connectSocketDevice(join(dir, 'nobody.sock')), (e: unknown) => isCode('EIO')(e) && /cannot connect \(ENOENT\).*vcrypto driver --socket/.test((e as Error).message));
  const vu = startServer();
  try {
    await assert.rejects(connectSocketDevice(vu.path, { helloTimeoutMs: 300 }), (e: unknown) => isCode('EIO')(e) && /no hello from the service within 300 ms/.test((e as Error).message));
  } finally {
    await vu.stop();
  }
});

test('the socket file: 0600 by default, --mode widens it; a live service is refused; a stale file is replaced; removed only while ours', async () => {
  const device = createHostDevice();
  try {
    const a = await startService(device);
    assert.equal(lstatSync(a.path).mode & 0o777, 0o600);
    await assert.rejects(serveDeviceOnSocket(device, a.path), /a service is already listening on/);
    // Still serving after the refused attempt.
    const c = await connectSocketDevice(a.path);
    await c.close();
    await a.service.close();
    assert.equal(existsSync(a.path), false, 'removed on close');

    const b = await startService(device, { mode: 0o660 });
    assert.equal(lstatSync(b.path).mode & 0o777, 0o660);
    // Someone else's file replaces ours: closing must not remove it.
    renameSync(b.path, `${b.path}.moved`);
    writeFileSync(b.path, 'not ours');
    await b.service.close();
    assert.equal(existsSync(b.path), true, 'a file that is not ours stays');
    rmSync(b.path);
    rmSync(`${b.path}.moved`);

    // A stale socket: its process was killed without removing it.
    const stale = socketPath();
    const child = spawn(process.execPath, ['-e', `require('node:net').createServer().listen(${JSON.stringify(stale)}, () => process.kill(process.pid, 'SIGKILL'))`]);
    await once(child, 'exit');
    assert.ok(lstatSync(stale).isSocket(), 'the stale socket file exists');
    const svc: SocketDeviceService = await serveDeviceOnSocket(device, stale);
    const d = await connectSocketDevice(stale);
    const h = await d.open();
    assert.equal(toHex(await h.digest(await h.createSession({ kind: 'hash', hash: 'sha224' }), Buffer.from('abc'))), FIPS180_ABC.sha224);
    await d.close();
    await svc.close();

    // A directory too long for sockaddr_un (the kernel would truncate the bound path): refused, nothing left.
    const deep = join(dir, 'd'.repeat(Math.max(1, 100 - dir.length)));
    mkdirSync(deep);
    await assert.rejects(serveDeviceOnSocket(device, join(deep, 's.sock')), /is too long for a Unix socket \(at most \d+ bytes\)/);
    assert.deepEqual(readdirSync(deep), []);

    // Not a socket: refused, left alone.
    const file = join(dir, 'plain-file');
    writeFileSync(file, 'x');
    await assert.rejects(serveDeviceOnSocket(device, file), /exists and is not a socket/);
    assert.equal(existsSync(file), true);
  } finally {
    await device.close();
  }
});

test('flow control: the service stops reading a client with maxUnanswered requests unanswered, and resumes', async () => {
  const path = socketPath();
  const received: unknown[] = [];
  let port: SocketPort | undefined;
  const server = createServer((s) => {
    port = new SocketPort(s, { maxUnanswered: 2 });
    port.on('message', (m) => received.push(m));
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const client = createConnection({ path });
  await once(client, 'connect');
  const frame = (m: unknown) => encodeFrame(m);
  try {
    client.write(frame({ id: 1 }));
    await until('request 1', () => received.length === 1);
    client.write(frame({ id: 2 }));
    await until('request 2', () => received.length === 2);
    client.write(frame({ id: 3 }));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(received.length, 2, 'two unanswered: request 3 is not read');
    port!.postMessage({ id: 1, ok: true, value: undefined });
    await until('request 3 after an answer', () => received.length === 3);
    assert.deepEqual(received, [{ id: 1 }, { id: 2 }, { id: 3 }]);
  } finally {
    client.destroy();
    port?.close();
    await new Promise((r) => server.close(r));
  }
});

test('flow control by bytes: a 2000-byte request over a 1000-byte bound pauses reading until answered; a reused id closes', async () => {
  const path = socketPath();
  const received: unknown[] = [];
  const errors: string[] = [];
  let port: SocketPort | undefined;
  const server = createServer((s) => {
    port = new SocketPort(s, { maxUnanswered: 100, maxUnansweredBytes: 1000, onProtocolError: (e) => errors.push(e.message) });
    port.on('message', (m) => received.push(m));
  });
  await new Promise<void>((resolve) => server.listen(path, resolve));
  const client = createConnection({ path });
  client.on('error', () => undefined);
  client.resume(); // reads (and drops) the answers, so it sees the service's close
  await once(client, 'connect');
  try {
    client.write(encodeFrame({ id: 1, data: new Uint8Array(2000) }));
    await until('request 1', () => received.length === 1);
    client.write(encodeFrame({ id: 2 }));
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(received.length, 1, '2000 unanswered bytes: request 2 is not read');
    port!.postMessage({ id: 1, ok: true, value: undefined });
    await until('request 2 after the answer', () => received.length === 2);
    client.write(encodeFrame({ id: 2 }));
    await once(client, 'close');
    assert.deepEqual(errors, ['request id 2 reused while unanswered']);
    assert.equal(received.length, 2);
  } finally {
    client.destroy();
    port?.close();
    await new Promise((r) => server.close(r));
  }
});

test('an idle client does not hold its process: a script that never closes the device exits by itself', async () => {
  const device = createHostDevice();
  const { path, service } = await startService(device);
  try {
    const moduleUrl = new URL('../../src/transport/socket/connect-socket-device.ts', import.meta.url).href;
    const code = `
      const { connectSocketDevice } = await import(${JSON.stringify(moduleUrl)});
      const d = await connectSocketDevice(${JSON.stringify(path)});
      const h = await d.open();
      const s = await h.createSession({ kind: 'hash', hash: 'sha384' });
      process.stdout.write(Buffer.from(await h.digest(s, Buffer.from('abc'))).toString('hex'));
    `;
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', code], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (c: Buffer) => (out += c.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
    const [exitCode, signal] = (await once(child, 'exit')) as [number | null, string | null];
    clearTimeout(timer);
    assert.equal(signal, null, 'exited by itself, not killed by the timeout');
    assert.equal(exitCode, 0);
    assert.equal(out, FIPS180_ABC.sha384);
    await until('the service to see it go', () => service.clientCount === 0);
  } finally {
    await service.close();
    await device.close();
  }
});

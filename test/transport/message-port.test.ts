/**
 * The MessagePort device proxy: results equal the device's own (NIST SP 800-38A, RFC 4231 through the
 * proxy), errors keep their codes, handles stay separate, every pending call is rejected when either
 * side closes, and the server closes the handles of a port that went away.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MessageChannel, Worker } from 'node:worker_threads';
import { once } from 'node:events';
import fc from 'fast-check';
import { createHostDevice, HOST_DEVICE_INFO } from '../../src/driver/host-device.js';
import { CryptoError, type CryptoDevice, type CryptoHandle } from '../../src/driver/api.js';
import { serveDevice } from '../../src/transport/message-port/serve-device.js';
import { connectDevice } from '../../src/transport/message-port/connect-device.js';
import { hex } from '../fixtures/bytes.js';
import { FIPS180_ABC } from '../fixtures/fips180.js';

const toHex = (b: Uint8Array): string => Buffer.from(b).toString('hex');
const isCode = (code: CryptoError['code']) => (err: unknown) => err instanceof CryptoError && err.code === code;

function pair(device: CryptoDevice = createHostDevice()) {
  const { port1, port2 } = new MessageChannel();
  const server = serveDevice(device, port1);
  const proxy = connectDevice(port2, device.info);
  return { device, server, proxy };
}

test('NIST SP 800-38A F.2.1 CBC-AES128 and RFC 4231 case 2 through the proxy', async () => {
  const { device, proxy, server } = pair();
  const h = await proxy.open();
  const s = await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: hex('2b7e151628aed2a6abf7158809cf4f3c') });
  const r = await h.crypt(s, {
    op: 'encrypt',
    src: hex('6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51'),
    iv: hex('000102030405060708090a0b0c0d0e0f'),
    writeIv: true,
  });
  assert.equal(toHex(r.dst), '7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2');
  assert.equal(toHex(r.iv!), '5086cb9b507219ee95db113a917678b2');
  const m = await h.createSession({ kind: 'mac', hash: 'sha256', key: Buffer.from('Jefe') });
  assert.equal(toHex(await h.digest(m, Buffer.from('what do ya want for nothing?'))), '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843');
  // A 1 MiB result (transferred, not pooled) arrives intact: compare with the device used directly.
  const big = new Uint8Array(1 << 20).map((_, i) => (i * 7) & 0xff);
  const direct = await device.open();
  const ds = await direct.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: hex('2b7e151628aed2a6abf7158809cf4f3c') });
  const iv = new Uint8Array(16);
  assert.equal(toHex((await h.crypt(s, { op: 'encrypt', src: big, iv })).dst), toHex((await direct.crypt(ds, { op: 'encrypt', src: big, iv })).dst));
  assert.equal(big[1], 7, 'request buffers are cloned, not detached');
  await proxy.close();
  await server.closed;
  await device.close();
});

test('errors keep their codes; handles are separate; closed handle → EBADF', async () => {
  const { device, proxy, server } = pair();
  const a = await proxy.open();
  const b = await proxy.open();
  await assert.rejects(a.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: new Uint8Array(7) }), isCode('EINVAL'));
  const g = await a.createSession({ kind: 'aead', aead: 'aes-gcm', key: new Uint8Array(16) });
  const enc = await a.aead(g, { op: 'encrypt', src: Buffer.from('hello'), iv: new Uint8Array(12) });
  const tag = enc.tag!.slice();
  tag[0]! ^= 1;
  await assert.rejects(a.aead(g, { op: 'decrypt', src: enc.dst, iv: new Uint8Array(12), tag }), isCode('EBADMSG'));
  assert.equal(Buffer.from((await a.aead(g, { op: 'decrypt', src: enc.dst, iv: new Uint8Array(12), tag: enc.tag! })).dst).toString(), 'hello');
  await assert.rejects(b.digest(g, new Uint8Array(1)), isCode('ENOENT'));
  await a.closeSession(g);
  await assert.rejects(a.aead(g, { op: 'encrypt', src: new Uint8Array(1), iv: new Uint8Array(12) }), isCode('ENOENT'));
  await a.close();
  await assert.rejects(a.createSession({ kind: 'hash', hash: 'sha1' }), isCode('EBADF'));
  const s = await b.createSession({ kind: 'hash', hash: 'sha1' });
  assert.equal(toHex(await b.digest(s, Buffer.from('abc'))), FIPS180_ABC.sha1);
  await proxy.close();
  await assert.rejects(proxy.open(), isCode('EBADF'));
  await server.closed;
  await device.close();
});

/** A device whose crypt() never completes until released, and that records handle closes. */
function stallingDevice() {
  const host = createHostDevice();
  const stats = { opened: 0, closed: 0, stalled: 0 };
  let release!: () => void;
  const gate = new Promise<void>((r) => (release = r));
  const device: CryptoDevice = {
    info: HOST_DEVICE_INFO,
    async open(): Promise<CryptoHandle> {
      const h = await host.open();
      stats.opened++;
      return {
        device: h.device,
        createSession: (o) => h.createSession(o),
        closeSession: (s) => h.closeSession(s),
        crypt: async (s, r) => {
          stats.stalled++;
          await gate;
          return h.crypt(s, r);
        },
        aead: (s, r) => h.aead(s, r),
        digest: (s, d) => h.digest(s, d),
        chain: (s, r) => h.chain(s, r),
        close: async () => {
          stats.closed++;
          await h.close();
        },
      };
    },
    close: () => host.close(),
  };
  return { device, stats, release };
}

test('pending calls are rejected with EIO when the server side closes; the server closes its handles', async () => {
  const { device, stats, release } = stallingDevice();
  const { proxy, server } = pair(device);
  const h = await proxy.open();
  const s = await h.createSession({ kind: 'cipher', cipher: 'aes-ecb', key: new Uint8Array(16) });
  const p1 = h.crypt(s, { op: 'encrypt', src: new Uint8Array(16) });
  const p2 = h.crypt(s, { op: 'encrypt', src: new Uint8Array(32) });
  while (stats.stalled < 2) await new Promise((r) => setImmediate(r));
  await server.close();
  await assert.rejects(p1, isCode('EIO'));
  await assert.rejects(p2, isCode('EIO'));
  assert.equal(stats.closed, 1, 'the handle opened through the port was closed');
  await assert.rejects(h.createSession({ kind: 'hash', hash: 'sha1' }), isCode('EBADF'));
  release();
  await proxy.close();
  await device.close();
});

test('pending calls are rejected with EIO when the proxy closes; the server sees the port go away', async () => {
  const { device, stats, release } = stallingDevice();
  const { proxy, server } = pair(device);
  const h = await proxy.open();
  await proxy.open();
  const s = await h.createSession({ kind: 'cipher', cipher: 'aes-ecb', key: new Uint8Array(16) });
  const p = h.crypt(s, { op: 'encrypt', src: new Uint8Array(16) });
  while (stats.stalled < 1) await new Promise((r) => setImmediate(r));
  const closing = proxy.close();
  await assert.rejects(p, isCode('EIO'));
  await closing;
  await server.closed;
  assert.equal(stats.opened, 2);
  assert.equal(stats.closed, 2);
  release();
  await device.close();
});

test('malformed requests get EINVAL responses, the server keeps serving', async () => {
  const device = createHostDevice();
  const { port1, port2 } = new MessageChannel();
  const server = serveDevice(device, port1);
  const responses: unknown[] = [];
  port2.on('message', (m) => responses.push(m));
  for (const bad of [{ id: 1, method: 'bogus' }, { id: 2, method: 'crypt', handle: 1 }, { id: 3, method: 'digest', handle: 'x', session: 1n }, 'junk', null]) {
    port2.postMessage(bad);
  }
  port2.postMessage({ id: 4, method: 'open' });
  while (responses.length < 4) await once(port2, 'message');
  assert.deepEqual(responses.slice(0, 3).map((r) => (r as { error: { code: string } }).error.code), ['EINVAL', 'EINVAL', 'EINVAL']);
  assert.deepEqual(responses[3], { id: 4, ok: true, value: 1 });
  port2.postMessage({ id: 5, method: 'crypt', handle: 1, session: 99n, req: {} });
  const [res] = (await once(port2, 'message')) as [{ id: number; error: { code: string } }];
  assert.equal(res.id, 5);
  assert.equal(res.error.code, 'ENOENT');
  port2.close();
  await server.closed;
  await device.close();
});

test('worker threads: 3 workers, each with its own handle on the one device of this thread (NIST CBC-AES128 in each)', async () => {
  const device = createHostDevice();
  const proxyUrl = new URL('../../src/transport/message-port/connect-device.ts', import.meta.url).href;
  // Each worker: connect, open its own handle, encrypt the NIST vector, and report the ciphertext and handle count.
  const code = `
    const { workerData, parentPort } = require('node:worker_threads');
    import('tsx/esm/api').then((tsx) => { tsx.register(); return import(workerData.proxyUrl); }).then(async ({ connectDevice }) => {
      const device = connectDevice(workerData.port, workerData.info);
      const h = await device.open();
      const key = Uint8Array.from(Buffer.from('2b7e151628aed2a6abf7158809cf4f3c', 'hex'));
      const s = await h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key });
      const r = await h.crypt(s, { op: 'encrypt', src: Buffer.from('6bc1bee22e409f96e93d7e117393172a', 'hex'), iv: Buffer.from('000102030405060708090a0b0c0d0e0f', 'hex') });
      parentPort.postMessage({ ct: Buffer.from(r.dst).toString('hex'), session: s.id });
      await device.close();
    });`;
  const servers: ReturnType<typeof serveDevice>[] = [];
  const results = await Promise.all(
    [1, 2, 3].map(async () => {
      const { port1, port2 } = new MessageChannel();
      servers.push(serveDevice(device, port1));
      const w = new Worker(code, { eval: true, workerData: { port: port2, info: device.info, proxyUrl }, transferList: [port2] });
      const [msg] = (await once(w, 'message')) as [{ ct: string; session: bigint }];
      const [exitCode] = (await once(w, 'exit')) as [number];
      assert.equal(exitCode, 0);
      return msg;
    }),
  );
  for (const r of results) assert.equal(r.ct, '7649abac8119b246cee98e9b12e9197d');
  assert.equal(new Set(results.map((r) => r.session)).size, 3, 'three distinct sessions');
  await Promise.all(servers.map((s) => s.closed)); // each worker's close reached its server
  await device.close();
});

test('property: arbitrary messages to serveDevice get one typed answer each (or none without an id), never a crash', async (t) => {
  const device = createHostDevice();
  const { port1, port2 } = new MessageChannel();
  const server = serveDevice(device, port1);
  // A failed assertion must not leave the port open (it would keep this test file alive forever).
  t.after(async () => {
    port2.close();
    await server.close();
    await device.close();
  });
  const answers = new Map<number, { ok: boolean; value?: unknown; error?: { code: string } }>();
  let waiting: (() => void) | undefined;
  port2.on('message', (m: { id: number; ok: boolean; value?: unknown; error?: { code: string } }) => {
    answers.set(m.id, m);
    waiting?.();
  });
  const methods = ['open', 'closeHandle', 'createSession', 'closeSession', 'crypt', 'aead', 'digest', 'chain', 'bogus'];
  const field = fc.oneof(fc.anything(), fc.nat(3), fc.bigInt({ min: 0n, max: 3n }), fc.uint8Array({ maxLength: 40 }));
  // Mostly well-formed options and requests (with odd fields mixed in), so sessions exist and requests reach the device.
  const handleArb = fc.oneof({ arbitrary: fc.nat().map((n) => ({ pick: n })), weight: 4 }, { arbitrary: field, weight: 1 });
  const optsArb = fc.oneof(
    { arbitrary: field, weight: 1 },
    { arbitrary: fc.constantFrom('aes-cbc', 'aes-ctr', 'aes-ecb', 'aes-xts').map((cipher) => ({ kind: 'cipher', cipher, key: new Uint8Array(32) })), weight: 3 },
    { arbitrary: fc.constant({ kind: 'aead', aead: 'aes-gcm', key: new Uint8Array(16) }), weight: 1 },
    { arbitrary: fc.constant({ kind: 'mac', hash: 'sha256', key: new Uint8Array(3) }), weight: 1 },
  );
  // Mostly the listed lengths (so requests are often valid), sometimes any bytes or anything at all.
  const bytes = (...lengths: number[]) =>
    fc.oneof(
      { arbitrary: fc.constantFrom(...lengths).map((n) => new Uint8Array(n)), weight: 4 },
      { arbitrary: fc.uint8Array({ maxLength: 40 }), weight: 1 },
      { arbitrary: fc.anything(), weight: 1 },
    );
  const reqArb = fc.oneof(
    { arbitrary: field, weight: 1 },
    {
      arbitrary: fc.record(
        { op: fc.oneof({ arbitrary: fc.constantFrom('encrypt', 'decrypt'), weight: 4 }, { arbitrary: fc.anything(), weight: 1 }), src: bytes(0, 16, 32, 33), iv: bytes(16, 12), tag: bytes(16), writeIv: fc.boolean() },
        { requiredKeys: [] },
      ),
      weight: 4,
    },
  );
  // A session field may name one of the sessions actually created so far.
  const sessionArb = fc.oneof({ arbitrary: field, weight: 1 }, { arbitrary: fc.nat().map((n) => ({ pick: n })), weight: 4 });
  const created: { handle: unknown; session: bigint }[] = [];
  const opened: number[] = [];
  const succeeded = new Map<string, number>();
  let nextId = 1;
  await fc.assert(
    // Data-path methods weigh more: the fuzz must also reach the device with well-formed requests.
    fc.asyncProperty(fc.oneof({ arbitrary: fc.constantFrom(...methods), weight: 3 }, { arbitrary: fc.constantFrom('crypt', 'digest', 'aead'), weight: 2 }), handleArb, sessionArb, reqArb, optsArb, async (method, handleChoice, sessionChoice, req, opts) => {
      const id = nextId++;
      const handlePick = (handleChoice as { pick?: number } | null)?.pick;
      let handle = typeof handlePick === 'number' && opened.length > 0 ? opened[handlePick % opened.length] : handleChoice;
      const pick = (sessionChoice as { pick?: number } | null)?.pick;
      const pair = typeof pick === 'number' && created.length > 0 ? created[pick % created.length] : undefined;
      const session = pair ? pair.session : sessionChoice;
      if (pair && typeof handlePick === 'number' && handlePick % 2 === 0) handle = pair.handle; // mostly the owner
      port2.postMessage({ id, method, handle, session, req, opts, data: (req as { src?: unknown } | null)?.src ?? req });
      while (!answers.has(id)) await new Promise<void>((resolve) => (waiting = resolve));
      const a = answers.get(id)!;
      if (a.ok) succeeded.set(method, (succeeded.get(method) ?? 0) + 1);
      if (a.ok && method === 'createSession') created.push({ handle, session: (a.value as { id: bigint }).id });
      if (a.ok && method === 'open') opened.push(a.value as number);
      if (a.ok && method === 'closeHandle' && opened.includes(handle as number)) {
        opened.splice(opened.indexOf(handle as number), 1);
        // Its sessions are gone too: keep picking live ones, so requests keep reaching the device.
        for (let i = created.length - 1; i >= 0; i--) if (created[i]!.handle === handle) created.splice(i, 1);
      }
      if (a.ok && method === 'closeSession' && pair) created.splice(created.indexOf(pair), 1);
      // EIO would mean an untyped exception inside the device: bad input must be a typed error.
      if (!a.ok) assert.ok(['EINVAL', 'ENOENT', 'EBADMSG', 'ENOSPC', 'ENOTSUP', 'EBADF'].includes(a.error!.code), JSON.stringify(a));
    }),
    { numRuns: 1000 },
  );
  // The fuzz reached the device, not only the message validation.
  assert.ok((succeeded.get('createSession') ?? 0) > 0 && (succeeded.get('crypt') ?? 0) + (succeeded.get('aead') ?? 0) + (succeeded.get('digest') ?? 0) > 0, JSON.stringify([...succeeded]));
  port2.close();
  await server.closed;
  await device.close();
});

/**
 * Issue 11 part 3: nothing waits forever on a device that stops answering. The driver's deadline
 * (one watchdog per driver) rejects every pending request with ETIMEDOUT, later calls get EIO, and
 * closing the handle and the device works without waiting on the wedged peer:
 *  - the embedded device, whose worker stops serving (the transport stops passing kicks,
 *    interrupts and control replies, as a stuck worker would),
 *  - a real `vcrypto device` process over vhost-user, stopped with SIGSTOP mid-stream, driven both
 *    in-process and by `vcrypto enc --device vhost-user:S` (VCRYPTO_REQUEST_TIMEOUT_MS).
 * Run `npm run build` first (the device and enc are the built CLI).
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CryptoError, type CryptoHandle, type Session } from '../../src/driver/api.js';
import { VirtioCryptoDriver, requestTimeoutFromEnv, DEFAULT_REQUEST_TIMEOUT_MS } from '../../src/driver/virtio-crypto-driver.js';
import type { DriverMemory, QueueAddresses, VirtioTransport } from '../../src/driver/virtio-transport.js';
import { InProcessTransport } from '../../src/transport/in-process/in-process-transport.js';
import { connectVhostUserDevice } from '../../src/transport/vhost-user/connect.js';
import { spawnCli, killLeftovers, type SpawnedProcess } from '../fixtures/cli.js';
import { CBC_IV, KEYS, NIST, PLAIN_HEX } from '../fixtures/nist-sp800-38a.js';

const hex = (h: string) => Uint8Array.from(Buffer.from(h.replace(/\s+/g, ''), 'hex'));
/** NIST SP 800-38A F.2.1 (CBC-AES128.Encrypt). */
const NIST_CBC = { key: hex(KEYS[128]), iv: hex(CBC_IV), plaintext: hex(PLAIN_HEX), ciphertext: hex(NIST['aes-cbc'][128]) };

after(killLeftovers);

const isCode = (code: string) => (err: unknown) => {
  assert.ok(err instanceof CryptoError, `not a CryptoError: ${String(err)}`);
  assert.equal(err.code, code, err.message);
  return true;
};

/** Bounds the time a promise may take (a hang fails the test instead of stalling the suite). */
async function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([p, new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: still waiting after ${ms} ms`)), ms)))]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * The embedded transport with a switch that makes its device stop serving, as a wedged worker would:
 * kicks go nowhere, completions are not signalled, and a control request (reset) never gets a reply.
 */
class StoppableTransport implements VirtioTransport {
  readonly description = 'embedded worker thread (stoppable)';
  readonly memory: DriverMemory;
  stopped = false;
  constructor(private readonly inner: InProcessTransport) {
    this.memory = inner.memory;
  }
  getDeviceFeatures = () => this.inner.getDeviceFeatures();
  setDriverFeatures = (f: bigint) => this.inner.setDriverFeatures(f);
  getStatus = () => this.inner.getStatus();
  setStatus = (s: number) => (this.stopped ? new Promise<void>(() => {}) : this.inner.setStatus(s));
  readConfig = () => this.inner.readConfig();
  getQueueMaxSize = (i: number) => this.inner.getQueueMaxSize(i);
  setupQueue = (i: number, q: QueueAddresses) => this.inner.setupQueue(i, q);
  notify = (i: number) => {
    if (!this.stopped) this.inner.notify(i);
  };
  onInterrupt = (h: (i: number) => void) =>
    this.inner.onInterrupt((i) => {
      if (!this.stopped) h(i);
    });
  onFailure = (h: (e: Error) => void) => this.inner.onFailure(h);
  close = () => this.inner.close();
  /** The driver's busy transitions (hold = true, release = false), passed on to the inner transport. */
  readonly busyLog: boolean[] = [];
  hold = () => {
    this.busyLog.push(true);
    this.inner.hold();
  };
  release = () => {
    this.busyLog.push(false);
    this.inner.release();
  };
}

const KEY = NIST_CBC.key;

async function cbcSession(h: CryptoHandle): Promise<Session> {
  return h.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: KEY });
}

test('the deadline option: VCRYPTO_REQUEST_TIMEOUT_MS is read and checked; the default is 30 s', () => {
  assert.equal(DEFAULT_REQUEST_TIMEOUT_MS, 30_000);
  assert.equal(requestTimeoutFromEnv({}), undefined);
  assert.equal(requestTimeoutFromEnv({ VCRYPTO_REQUEST_TIMEOUT_MS: '1500' }), 1500);
  assert.equal(requestTimeoutFromEnv({ VCRYPTO_REQUEST_TIMEOUT_MS: '0' }), 0);
  for (const bad of ['-1', '1.5', 'soon', '99999999999']) {
    assert.throws(() => requestTimeoutFromEnv({ VCRYPTO_REQUEST_TIMEOUT_MS: bad }), isCode('EINVAL'));
  }
});

test('embedded device whose worker stops serving: pending requests fail with ETIMEDOUT, later calls EIO, close() works', async (t) => {
  const inner = await InProcessTransport.create({ maxDataQueues: 2, deviceThreads: 1 });
  const transport = new StoppableTransport(inner);
  const TIMEOUT = 500;
  const device = await VirtioCryptoDriver.create(transport, {
    spec: 'virtio',
    requestTimeoutMs: TIMEOUT,
  });
  const h = await device.open();
  const s = await cbcSession(h);
  // Healthy: NIST SP 800-38A F.2.1, and a burst far longer than the deadline's check interval passes.
  const r = await h.crypt(s, { op: 'encrypt', src: NIST_CBC.plaintext, iv: NIST_CBC.iv });
  assert.deepEqual(r.dst, NIST_CBC.ciphertext);
  const burstUntil = performance.now() + 2 * TIMEOUT;
  while (performance.now() < burstUntil) {
    await Promise.all(Array.from({ length: 32 }, () => h.crypt(s, { op: 'encrypt', src: NIST_CBC.plaintext, iv: NIST_CBC.iv })));
  }

  transport.stopped = true;
  const started = performance.now();
  const pending = Array.from({ length: 16 }, () => h.crypt(s, { op: 'encrypt', src: NIST_CBC.plaintext, iv: NIST_CBC.iv }));
  const outcomes = await within(10 * TIMEOUT, 'pending requests', Promise.allSettled(pending));
  const elapsed = performance.now() - started;
  for (const o of outcomes) {
    assert.equal(o.status, 'rejected');
    isCode('ETIMEDOUT')(o.status === 'rejected' ? o.reason : undefined);
  }
  assert.ok(elapsed >= TIMEOUT && elapsed < TIMEOUT + 1000, `timed out after ${elapsed.toFixed(0)} ms (deadline ${TIMEOUT})`);
  t.diagnostic(`pending requests failed ${elapsed.toFixed(0)} ms after the device stopped (deadline ${TIMEOUT} ms)`);
  assert.match(String((outcomes[0] as PromiseRejectedResult).reason), /did not complete a request on data queue \d within 500 ms/);
  // The device is failed now: nothing new is sent to it.
  await assert.rejects(h.crypt(s, { op: 'encrypt', src: NIST_CBC.plaintext, iv: NIST_CBC.iv }), isCode('EIO'));
  await assert.rejects(device.open(), isCode('EIO'));
  // Closing works and does not wait on the stopped device (its reset would never be answered).
  await within(3000, 'handle close', h.close());
  await within(5000, 'device close', device.close());
});

test('no false alarm: a slow but working device (longer than the deadline in total, each request quick) is not failed', async () => {
  const inner = await InProcessTransport.create({ maxDataQueues: 1 });
  const device = await VirtioCryptoDriver.create(inner, { spec: 'virtio', requestTimeoutMs: 2000 });
  try {
    const h = await device.open();
    const s = await cbcSession(h);
    const big = new Uint8Array(256 * 1024);
    const until = performance.now() + 3000;
    let n = 0;
    while (performance.now() < until) {
      await Promise.all(Array.from({ length: 8 }, () => h.crypt(s, { op: 'encrypt', src: big, iv: NIST_CBC.iv })));
      n += 8;
    }
    assert.ok(n > 8);
    await h.close();
  } finally {
    await device.close();
  }
});

/** Starts `vcrypto device --socket S`; resolves once it listens. */
async function startDevice(t: { after(fn: () => unknown): void }): Promise<[SpawnedProcess, string]> {
  const dir = mkdtempSync(join(tmpdir(), 'vcrypto-deadline-'));
  const sock = join(dir, 'vc.sock');
  const device = spawnCli(['device', '--socket', sock], { t, stdin: 'ignore' });
  t.after(() => {
    // A stopped process ignores SIGTERM until continued: continue it, then end it.
    device.child.kill('SIGCONT');
    device.child.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  await device.waitForStdout('listening on');
  return [device, sock];
}

test('vhost-user back-end stopped with SIGSTOP mid-stream: pending requests fail with ETIMEDOUT, later calls EIO, close() works', async (t) => {
  const [backend, sock] = await startDevice(t);
  const TIMEOUT = 1000;
  const device = await connectVhostUserDevice(sock, { requestTimeoutMs: TIMEOUT });
  const h = await device.open();
  const s = await cbcSession(h);
  const r = await h.crypt(s, { op: 'encrypt', src: NIST_CBC.plaintext, iv: NIST_CBC.iv });
  assert.deepEqual(r.dst, NIST_CBC.ciphertext);

  // A stream of requests, 8 in flight; the back-end is stopped while it runs.
  let completed = 0;
  let failure: unknown;
  const stream = (async () => {
    try {
      for (;;) {
        await Promise.all(Array.from({ length: 8 }, () => h.crypt(s, { op: 'encrypt', src: new Uint8Array(4096), iv: NIST_CBC.iv })));
        completed += 8;
      }
    } catch (err) {
      failure = err;
    }
  })();
  while (completed < 64) await new Promise((resolve) => setTimeout(resolve, 5));
  backend.child.kill('SIGSTOP');
  const stoppedAt = performance.now();
  await within(10 * TIMEOUT, 'the stream', stream);
  const elapsed = performance.now() - stoppedAt;
  isCode('ETIMEDOUT')(failure);
  assert.ok(elapsed < TIMEOUT + 1500, `failed ${elapsed.toFixed(0)} ms after SIGSTOP (deadline ${TIMEOUT})`);
  t.diagnostic(`the stream failed ${elapsed.toFixed(0)} ms after SIGSTOP (deadline ${TIMEOUT} ms)`);
  await assert.rejects(h.crypt(s, { op: 'encrypt', src: NIST_CBC.plaintext, iv: NIST_CBC.iv }), isCode('EIO'));
  const closing = performance.now();
  await within(3000, 'handle close', h.close());
  await within(3000, 'device close', device.close());
  const closeMs = performance.now() - closing;
  assert.ok(closeMs < 3000);
  t.diagnostic(`handle and device closed in ${closeMs.toFixed(0)} ms with the back-end still stopped`);
});

test('vcrypto enc --device vhost-user:S with the back-end stopped mid-stream exits 1 with ETIMEDOUT (VCRYPTO_REQUEST_TIMEOUT_MS)', async (t) => {
  const [backend, sock] = await startDevice(t);
  const enc = spawnCli(['enc', '--cipher', 'aes-128-cbc', '--key', Buffer.from(KEY).toString('hex'), '--iv', Buffer.from(NIST_CBC.iv).toString('hex'), '--device', `vhost-user:${sock}`], {
    t,
    env: { ...process.env, VCRYPTO_REQUEST_TIMEOUT_MS: '1000' },
  });
  // The first part goes through (enc streams 64 KiB requests), then the back-end stops.
  enc.stdin.write(Buffer.alloc(256 * 1024, 0x61));
  await enc.waitForStdoutLength(128 * 1024);
  backend.child.kill('SIGSTOP');
  const stoppedAt = performance.now();
  enc.stdin.end(Buffer.alloc(256 * 1024, 0x62));
  const exit = await enc.waitForExit(15_000);
  const elapsed = performance.now() - stoppedAt;
  assert.equal(exit.code, 1, enc.stderr());
  assert.match(enc.stderr(), /^vcrypto enc: .*ETIMEDOUT: the device did not complete a request on data queue \d within 1000 ms/m);
  assert.ok(elapsed < 6000, `enc exited ${elapsed.toFixed(0)} ms after SIGSTOP`);
  t.diagnostic(`vcrypto enc exited 1 ${elapsed.toFixed(0)} ms after SIGSTOP (VCRYPTO_REQUEST_TIMEOUT_MS=1000)`);
});

test('closing a handle with a request in flight on a stopped device: the request fails EBADF, close() returns, the device is failed and the transport released', async () => {
  const inner = await InProcessTransport.create({ maxDataQueues: 1 });
  const transport = new StoppableTransport(inner);
  const busy = transport.busyLog;
  const device = await VirtioCryptoDriver.create(transport, {
    spec: 'virtio',
    requestTimeoutMs: 300,
  });
  const h = await device.open();
  const s = await cbcSession(h);
  transport.stopped = true;
  const pending = assert.rejects(h.crypt(s, { op: 'encrypt', src: NIST_CBC.plaintext, iv: NIST_CBC.iv }), isCode('EBADF'));
  await within(3000, 'handle close', h.close());
  await pending; // abandoned: the device still owes it
  const until = performance.now() + 5000;
  while (busy.at(-1) === true && performance.now() < until) await new Promise((r) => setTimeout(r, 20));
  assert.equal(busy.at(-1), false, 'the transport is released once the abandoned request passed the deadline');
  await assert.rejects(device.open(), isCode('EIO'));
  await within(5000, 'device close', device.close());
});

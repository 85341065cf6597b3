/**
 * Test fixtures for the vhost-user back-end: a raw front-end that writes messages byte by byte (so it
 * can also send garbage), guest memory laid out like QEMU's (two regions of one memfd with a hole,
 * ring addresses given as fake front-end virtual addresses), and hand-written split rings.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connectUnix, type UnixSocket } from '../../src/sys/unix-socket.js';
import { SysError, errnoValues } from '../../src/sys/libc.js';
import { pollAsync, POLLIN, createEventFd, closeFd, closeFds } from '../../src/sys/fd.js';
import { createMemfd, mapShared, type Mapping } from '../../src/sys/memfd.js';
import { VhostUserBackendServer } from '../../src/transport/vhost-user/backend-server.js';

export const FAKE_HVA = 0x7f00_0000_0000n;
export const MEM_BYTES = 4 * 1024 * 1024;
/** Region 0: [0, 0xa0000); region 1: [0xc0000, MEM_BYTES) — the hole QEMU leaves for VGA/BIOS. */
export const REGION1_GPA = 0xc0000;

export function header(request: number, flags: number, size: number): Uint8Array {
  const b = new Uint8Array(12);
  const v = new DataView(b.buffer);
  v.setUint32(0, request, true);
  v.setUint32(4, flags, true);
  v.setUint32(8, size, true);
  return b;
}

export function u64(value: bigint): Uint8Array {
  const b = new Uint8Array(8);
  new DataView(b.buffer).setBigUint64(0, value, true);
  return b;
}

export function u32pair(a: number, b: number): Uint8Array {
  const out = new Uint8Array(8);
  const v = new DataView(out.buffer);
  v.setUint32(0, a, true);
  v.setUint32(4, b, true);
  return out;
}

export function concat(...parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) {
    out.set(p, o);
    o += p.length;
  }
  return out;
}

export interface Reply {
  readonly request: number;
  readonly flags: number;
  readonly payload: Uint8Array;
}

/** A front-end that speaks raw bytes. */
export class RawFrontEnd {
  constructor(readonly sock: UnixSocket) {}

  static connect(path: string): RawFrontEnd {
    return new RawFrontEnd(connectUnix(path));
  }

  sendRaw(bytes: Uint8Array, fds: readonly number[] = []): void {
    let sent = 0;
    let f = fds;
    while (sent < bytes.length) {
      const n = this.sock.send(bytes.subarray(sent), f);
      assert.ok(n > 0, 'socket buffer full');
      f = [];
      sent += n;
    }
  }

  send(request: number, payload: Uint8Array = new Uint8Array(0), opts: { flags?: number; fds?: readonly number[] } = {}): void {
    this.sendRaw(concat(header(request, opts.flags ?? 1, payload.length), payload), opts.fds ?? []);
  }

  async #readExact(n: number, timeoutMs: number): Promise<Uint8Array | null> {
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const r = this.sock.recv(n - got);
      if (r === null) {
        const [ev = 0] = await pollAsync([{ fd: this.sock.fd, events: POLLIN }], timeoutMs);
        assert.notEqual(ev, 0, 'no reply from the back-end');
        continue;
      }
      closeFds(r.fds);
      if (r.data.length === 0) return null;
      out.set(r.data, got);
      got += r.data.length;
    }
    return out;
  }

  async reply(timeoutMs = 5000): Promise<Reply> {
    const h = await this.#readExact(12, timeoutMs);
    assert.ok(h, 'back-end closed the connection instead of replying');
    const v = new DataView(h.buffer);
    const size = v.getUint32(8, true);
    const payload = size === 0 ? new Uint8Array(0) : await this.#readExact(size, timeoutMs);
    assert.ok(payload);
    return { request: v.getUint32(0, true), flags: v.getUint32(4, true), payload };
  }

  /** Sends a request and returns its reply, checking request number and flags 0x5. */
  async call(request: number, payload?: Uint8Array, opts?: { flags?: number; fds?: readonly number[] }): Promise<Uint8Array> {
    this.send(request, payload, opts);
    const r = await this.reply();
    assert.equal(r.request, request);
    assert.equal(r.flags, 0x5);
    return r.payload;
  }

  /** Resolves when the back-end has closed the connection (EOF). */
  async closedByPeer(timeoutMs = 5000): Promise<boolean> {
    for (;;) {
      let r;
      try {
        r = this.sock.recv(4096);
      } catch (err) {
        // Closed with our bytes still unread on its side: the kernel reports a reset.
        if (err instanceof SysError && err.errno === errnoValues.ECONNRESET) return true;
        throw err;
      }
      if (r === null) {
        const [ev = 0] = await pollAsync([{ fd: this.sock.fd, events: POLLIN }], timeoutMs);
        if (ev === 0) return false;
        continue;
      }
      closeFds(r.fds);
      if (r.data.length === 0) return true;
    }
  }

  close(): void {
    this.sock.close();
  }
}

/** Guest memory: one memfd, QEMU-like two-region table, our own mapping to write rings with. */
export class TestGuest {
  readonly memfd: number;
  readonly map: Mapping;
  readonly bytes: Uint8Array;
  readonly view: DataView;

  constructor() {
    this.memfd = createMemfd('test-guest', MEM_BYTES);
    this.map = mapShared(this.memfd, MEM_BYTES);
    this.bytes = new Uint8Array(this.map.buffer);
    this.view = new DataView(this.map.buffer);
  }

  /** SET_MEM_TABLE payload: two regions, userspace_addr = FAKE_HVA + gpa. */
  memTable(): Uint8Array {
    const p = new Uint8Array(8 + 64);
    const v = new DataView(p.buffer);
    v.setUint32(0, 2, true);
    const regions: [number, number, number][] = [
      [0, 0xa0000, 0],
      [REGION1_GPA, MEM_BYTES - REGION1_GPA, REGION1_GPA],
    ];
    regions.forEach(([gpa, size, off], i) => {
      const o = 8 + 32 * i;
      v.setBigUint64(o, BigInt(gpa), true);
      v.setBigUint64(o + 8, BigInt(size), true);
      v.setBigUint64(o + 16, FAKE_HVA + BigInt(gpa), true);
      v.setBigUint64(o + 24, BigInt(off), true);
    });
    return p;
  }

  close(): void {
    this.map.unmap();
    closeFd(this.memfd);
  }
}

/** A split ring written by hand (VIRTIO 1.2 §2.7): desc @base, avail @base+16q, used @next 4 KiB. */
export class HandRing {
  readonly desc: number;
  readonly avail: number;
  readonly used: number;
  availIdx = 0;

  constructor(
    readonly g: TestGuest,
    readonly size: number,
    base: number,
  ) {
    this.desc = base;
    this.avail = base + 16 * size;
    this.used = (this.avail + 6 + 2 * size + 4095) & ~4095;
    g.bytes.fill(0, base, this.used + 6 + 8 * size);
  }

  /** struct vhost_vring_addr for SET_VRING_ADDR: index, flags, desc, USED, avail, log. */
  addrPayload(index: number): Uint8Array {
    const p = new Uint8Array(40);
    const v = new DataView(p.buffer);
    v.setUint32(0, index, true);
    v.setBigUint64(8, FAKE_HVA + BigInt(this.desc), true);
    v.setBigUint64(16, FAKE_HVA + BigInt(this.used), true);
    v.setBigUint64(24, FAKE_HVA + BigInt(this.avail), true);
    v.setBigUint64(32, BigInt(this.used), true);
    return p;
  }

  setDesc(table: number, i: number, addr: number, len: number, flags: number, next: number): void {
    const o = table + 16 * i;
    this.g.view.setBigUint64(o, BigInt(addr), true);
    this.g.view.setUint32(o + 8, len, true);
    this.g.view.setUint16(o + 12, flags, true);
    this.g.view.setUint16(o + 14, next, true);
  }

  /**
   * Makes `head` available (ring entry, then the index: §2.7.13). Like Linux with EVENT_IDX, asks
   * for an interrupt on the next completion: avail.used_event = used.idx seen so far.
   */
  publish(head: number): void {
    this.g.view.setUint16(this.avail + 4 + 2 * this.size, this.usedIdx, true);
    this.g.view.setUint16(this.avail + 4 + 2 * (this.availIdx % this.size), head, true);
    this.availIdx = (this.availIdx + 1) & 0xffff;
    this.g.view.setUint16(this.avail + 2, this.availIdx, true);
  }

  get usedIdx(): number {
    return this.g.view.getUint16(this.used + 2, true);
  }

  usedElem(i: number): { id: number; len: number } {
    const o = this.used + 4 + 8 * (i % this.size);
    return { id: this.g.view.getUint32(o, true), len: this.g.view.getUint32(o + 4, true) };
  }

  /** used.avail_event (EVENT_IDX). */
  get availEvent(): number {
    return this.g.view.getUint16(this.used + 4 + 8 * this.size, true);
  }
}

export interface ServerUnderTest {
  readonly server: VhostUserBackendServer;
  readonly path: string;
  readonly logs: string[];
  /** Resolves with the first log line matching `re` (already logged or future). */
  waitForLog(re: RegExp, timeoutMs?: number): Promise<string>;
  /** Resolves when connection `id` has been released (worker exited). */
  released(id: number): Promise<void>;
  stop(): Promise<void>;
}

export function startServer(opts: { dataQueues?: number; maxSessions?: number; pollMicros?: number; verbose?: boolean; maxConnections?: number } = {}): ServerUnderTest {
  const dir = mkdtempSync(join(tmpdir(), 'vcrypto-vu-'));
  const path = join(dir, 'vc.sock');
  const logs: string[] = [];
  const waiters: { re: RegExp; resolve: (line: string) => void }[] = [];
  const releasedIds = new Set<number>();
  const releaseWaiters = new Map<number, () => void>();
  const server = VhostUserBackendServer.listen(path, {
    dataQueues: opts.dataQueues ?? 1,
    maxSessions: opts.maxSessions ?? 1024,
    ...(opts.pollMicros !== undefined ? { pollMicros: opts.pollMicros } : {}),
    ...(opts.verbose !== undefined ? { verbose: opts.verbose } : {}),
    ...(opts.maxConnections !== undefined ? { maxConnections: opts.maxConnections } : {}),
    onConnectionClosed: (id) => {
      releasedIds.add(id);
      releaseWaiters.get(id)?.();
    },
    log: (line) => {
      logs.push(line);
      for (const w of [...waiters]) {
        if (w.re.test(line)) {
          waiters.splice(waiters.indexOf(w), 1);
          w.resolve(line);
        }
      }
    },
  });
  return {
    server,
    path,
    logs,
    waitForLog(re, timeoutMs = 5000) {
      const found = logs.find((l) => re.test(l));
      if (found !== undefined) return Promise.resolve(found);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no log line matching ${re}; got:\n${logs.join('\n')}`)), timeoutMs);
        waiters.push({
          re,
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
      });
    },
    released(id) {
      if (releasedIds.has(id)) return Promise.resolve();
      return new Promise((resolve) => releaseWaiters.set(id, resolve));
    },
    async stop() {
      await server.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

export function openFdCount(): number {
  let n = 0;
  for (let fd = 0; fd < 4096; fd++) {
    try {
      readlinkSync(`/proc/self/fd/${fd}`);
      n++;
    } catch {
      // not open
    }
  }
  return n;
}

export { createEventFd, closeFd, closeFds };

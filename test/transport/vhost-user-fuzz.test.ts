/**
 * Property: whatever sequence of vhost-user messages a front-end sends (random request numbers,
 * flags, payloads of random or exactly-right sizes, random memory tables over a real memfd, random
 * ring addresses, eventfds attached or not), the back-end connection either serves the message or
 * throws VhostUserProtocolError — never another exception, never a crash (e.g. SIGBUS from mapping
 * past the end of a file) — and `close()` releases every fd it was given.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { mkdtempSync, rmSync, openSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listenUnix, connectUnix, acceptUnix } from '../../src/sys/unix-socket.js';
import { pollSync, POLLIN, createEventFd, closeFd } from '../../src/sys/fd.js';
import { createMemfd } from '../../src/sys/memfd.js';
import { VhostUserChannel } from '../../src/transport/vhost-user/channel.js';
import { VhostUserBackendConnection } from '../../src/transport/vhost-user/backend-connection.js';
import { createBackendDevice } from '../../src/transport/vhost-user/backend-device.js';
import { VhostUserProtocolError, MESSAGE_TABLE } from '../../src/transport/vhost-user/message-table.js';
import { openFdCount } from './vhost-user-fixture.js';
import { VHOST_USER } from '../../src/spec/vhost-user.js';

const MEMFD_BYTES = 1 << 20;

/** Payload sizes the table expects, so that random messages also get past the size checks. */
function sizeFor(request: number): number[] {
  const spec = MESSAGE_TABLE.get(request);
  if (spec === undefined) return [0, 8];
  if (spec.payload.kind === 'exact') return [spec.payload.size];
  if (spec.payload.kind === 'memory-table') return [40, 72];
  return [632, 1072];
}

const message = fc.record({
  request: fc.oneof({ arbitrary: fc.constantFrom(...MESSAGE_TABLE.keys()), weight: 6 }, { arbitrary: fc.integer({ min: 0, max: 64 }), weight: 1 }),
  flags: fc.oneof({ arbitrary: fc.constantFrom(0x1, 0x9), weight: 19 }, { arbitrary: fc.constantFrom(0x5, 0x0, 0x3), weight: 1 }),
  sizeMode: fc.constantFrom('right', 'right', 'right', 'random'),
  bytes: fc.uint8Array({ minLength: 1072, maxLength: 1072 }),
  randomSize: fc.integer({ min: 0, max: 80 }),
  /** Small numbers make plausible vring indexes, region counts and queue sizes. */
  small: fc.array(fc.constantFrom(0, 1, 2, 64, 256, 0x101), { minLength: 4, maxLength: 4 }),
  fds: fc.constantFrom('right', 'right', 'right', 'none', 'eventfd', 'memfd', 'two'),
});

test('random message sequences only ever produce VhostUserProtocolError, and every fd is released', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vcrypto-fuzz-'));
  const listener = listenUnix(join(dir, 's.sock'));
  const memfd = createMemfd('fuzz', MEMFD_BYTES);
  try {
    const before = openFdCount();
    const served = new Map<number, number>();
    fc.assert(
      fc.property(fc.array(message, { minLength: 1, maxLength: 25 }), (msgs) => {
        const peer = connectUnix(join(dir, 's.sock'));
        pollSync([{ fd: listener.fd, events: POLLIN }], 1000);
        const sock = acceptUnix(listener)!;
        const conn = new VhostUserBackendConnection(new VhostUserChannel(sock, 200), createBackendDevice({ dataQueues: 1, maxSessions: 4 }), {
          dataQueues: 1,
          log: () => {},
        });
        try {
          for (const m of msgs) {
            const kind = MESSAGE_TABLE.get(m.request);
            const sizes = sizeFor(m.request);
            const size = m.sizeMode === 'right' ? sizes[m.bytes[0]! % sizes.length]! : m.randomSize;
            const payload = m.bytes.slice(0, size);
            const v = new DataView(payload.buffer);
            // Plausible small values where indexes, counts and sizes live.
            if (size >= 8) {
              v.setUint32(0, m.small[0]!, true);
              v.setUint32(4, m.small[1]!, true);
              if (kind?.vringIndex === 'u32') v.setUint32(0, m.small[0]! % 3, true); // vring 0, 1 or (out of range) 2
              if (kind?.vringIndex === 'file') {
                v.setUint32(0, m.small[0]! & 0x1ff, true); // index, sometimes the NOFD bit
                v.setUint32(4, m.small[1]! === 0x101 ? 1 : 0, true); // rarely a reserved bit
              }
            }
            if (kind?.payload.kind === 'memory-table' && (size === 40 || size === 72)) {
              const n = size === 40 ? 1 : 2;
              v.setUint32(0, n, true);
              for (let i = 0; i < n; i++) {
                const o = 8 + 32 * i;
                v.setBigUint64(o, BigInt(i) * 0x100000n, true); // guest_phys_addr
                v.setBigUint64(o + 8, BigInt(m.small[2 + i]! * 1024), true); // memory_size: 0 .. 257 KiB
                v.setBigUint64(o + 16, 0x7f00_0000_0000n + BigInt(i) * 0x100000n, true); // userspace_addr
                v.setBigUint64(o + 24, BigInt(m.small[3 - i]! * 1024), true); // mmap_offset (maybe unaligned)
              }
            }
            const fdMode =
              m.fds !== 'right'
                ? m.fds
                : kind?.vringIndex === 'file'
                  ? 'eventfd'
                  : kind?.payload.kind === 'memory-table'
                    ? size === 40
                      ? 'memfd'
                      : 'two'
                    : 'none';
            const fds =
              fdMode === 'eventfd' ? [createEventFd()] : fdMode === 'memfd' ? [dupOf(memfd)] : fdMode === 'two' ? [dupOf(memfd), dupOf(memfd)] : [];
            try {
              conn.handle({ header: { request: m.request, flags: m.flags, size }, payload, fds });
              served.set(m.request, (served.get(m.request) ?? 0) + 1);
            } catch (err) {
              assert.ok(err instanceof VhostUserProtocolError, `${(err as Error)?.stack ?? String(err)}`);
              break; // the server closes the connection here
            }
            while (peer.recv(65536) !== null) {
              // drain replies
            }
          }
        } finally {
          conn.close();
          sock.close();
          peer.close();
        }
      }),
      { numRuns: 600 },
    );
    assert.equal(openFdCount(), before, 'fds leaked');
    // The property reached the stateful handlers, not only the table checks.
    for (const r of [VHOST_USER.SET_MEM_TABLE, VHOST_USER.SET_VRING_NUM, VHOST_USER.SET_VRING_CALL, VHOST_USER.CREATE_CRYPTO_SESSION, VHOST_USER.GET_VRING_BASE]) {
      assert.ok((served.get(r) ?? 0) > 0, `request ${r} was never served: ${JSON.stringify([...served])}`);
    }
  } finally {
    closeFd(memfd);
    listener.close();
    rmSync(dir, { recursive: true, force: true });
  }
});

/** A new fd for the same memfd (the connection takes ownership of what it is given). */
function dupOf(fd: number): number {
  return openSync(`/proc/self/fd/${fd}`, 'r+');
}

/**
 * src/sys against the kernel itself: fds passed with SCM_RIGHTS really are the same files (a byte
 * written through one mapping is read through the other; an eventfd signalled through the received
 * fd is seen on the original), split reads, and more fds than a message may carry.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readlinkSync, ftruncateSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { listenUnix, acceptUnix, connectUnix, MAX_RECEIVED_FDS, type UnixSocket } from '../../src/sys/unix-socket.js';
import { createEventFd, signalEventFd, drainEventFd, closeFd, closeFds, pollSync, POLLIN } from '../../src/sys/fd.js';
import { createMemfd, mapShared, getSeals, F_SEAL } from '../../src/sys/memfd.js';

function pair(): { server: UnixSocket; client: UnixSocket; listener: UnixSocket; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), 'vcrypto-sys-'));
  const path = join(dir, 's.sock');
  const listener = listenUnix(path);
  const client = connectUnix(path);
  pollSync([{ fd: listener.fd, events: POLLIN }], 2000);
  const server = acceptUnix(listener);
  assert.ok(server);
  return {
    server,
    client,
    listener,
    cleanup: () => {
      server.close();
      client.close();
      listener.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

function recvWait(sock: UnixSocket, max: number) {
  const [ev = 0] = pollSync([{ fd: sock.fd, events: POLLIN }], 2000);
  assert.notEqual(ev, 0, 'socket never became readable');
  const r = sock.recv(max);
  assert.ok(r);
  return r;
}

test('fds passed with SCM_RIGHTS refer to the same memfd and eventfd', () => {
  const { server, client, cleanup } = pair();
  const memfd = createMemfd('test', 8192);
  const efd = createEventFd();
  try {
    assert.equal(client.send(new Uint8Array([1, 2, 3]), [memfd, efd]), 3);
    const r = recvWait(server, 64);
    assert.deepEqual([...r.data], [1, 2, 3]);
    assert.equal(r.fds.length, 2);
    assert.equal(r.controlTruncated, false);
    const [rmem, refd] = r.fds as [number, number];
    assert.match(readlinkSync(`/proc/self/fd/${rmem}`), /^\/memfd:test/);
    assert.equal(readlinkSync(`/proc/self/fd/${refd}`), 'anon_inode:[eventfd]');
    const a = mapShared(memfd, 8192);
    const b = mapShared(rmem, 8192);
    new Uint8Array(a.buffer)[4097] = 0xa5;
    assert.equal(new Uint8Array(b.buffer)[4097], 0xa5);
    assert.notEqual(a.address, b.address);
    a.unmap();
    b.unmap();
    assert.equal(drainEventFd(efd), 0n);
    assert.ok(signalEventFd(refd));
    assert.ok(signalEventFd(refd));
    assert.equal(drainEventFd(efd), 2n);
    closeFds(r.fds);
  } finally {
    closeFd(memfd);
    closeFd(efd);
    cleanup();
  }
});

test('a message split across sends is read in parts; EOF reads as 0 bytes; EAGAIN as null', () => {
  const { server, client, cleanup } = pair();
  try {
    assert.equal(server.recv(16), null);
    client.send(new Uint8Array([9, 8, 7, 6, 5]));
    client.send(new Uint8Array([4, 3]));
    const first = recvWait(server, 3);
    assert.deepEqual([...first.data], [9, 8, 7]);
    const rest = recvWait(server, 16);
    assert.deepEqual([...rest.data], [6, 5, 4, 3]);
    client.close();
    const eof = recvWait(server, 16);
    assert.equal(eof.data.length, 0);
  } finally {
    cleanup();
  }
});

test('more fds than the control buffer holds: truncation is reported and no fd leaks', () => {
  const { server, client, cleanup } = pair();
  const fds = Array.from({ length: MAX_RECEIVED_FDS + 8 }, () => createEventFd());
  try {
    const before = countOpenEventFds();
    client.send(new Uint8Array([1]), fds.slice(0, MAX_RECEIVED_FDS));
    const ok = recvWait(server, 1);
    assert.equal(ok.fds.length, MAX_RECEIVED_FDS);
    closeFds(ok.fds);
    client.send(new Uint8Array([2]), fds);
    const truncated = recvWait(server, 1);
    assert.equal(truncated.controlTruncated, true);
    assert.equal(truncated.fds.length, MAX_RECEIVED_FDS);
    closeFds(truncated.fds);
    assert.throws(() => client.send(new Uint8Array([1]), [...fds, ...fds]), RangeError);
    assert.equal(countOpenEventFds(), before);
  } finally {
    closeFds(fds);
    cleanup();
  }
});

test('a mapping at a page offset sees the file from that offset', () => {
  const memfd = createMemfd('offset', 3 * 4096);
  try {
    const whole = mapShared(memfd, 3 * 4096);
    const tail = mapShared(memfd, 4096, 2 * 4096);
    new Uint8Array(whole.buffer)[2 * 4096 + 5] = 0x5a;
    assert.equal(new Uint8Array(tail.buffer)[5], 0x5a);
    whole.unmap();
    tail.unmap();
    assert.equal(tail.mapped, false);
  } finally {
    closeFd(memfd);
  }
});

test('memfds are sealed against shrinking and growing unless asked not to be', () => {
  const sealed = createMemfd('sealed', 4096);
  const open = createMemfd('open', 4096, { seal: false });
  try {
    assert.equal(getSeals(sealed), F_SEAL.SHRINK | F_SEAL.GROW | F_SEAL.SEAL);
    assert.equal(getSeals(open), F_SEAL.SEAL); // created without MFD_ALLOW_SEALING: sealed shut
    assert.throws(() => ftruncateSync(sealed, 0), /EPERM/);
    ftruncateSync(open, 0);
    const notMemfd = createEventFd();
    assert.equal(getSeals(notMemfd), null);
    closeFd(notMemfd);
  } finally {
    closeFd(sealed);
    closeFd(open);
  }
});

test('mapShared refuses lengths it cannot view', () => {
  const memfd = createMemfd('len', 4096);
  try {
    assert.throws(() => mapShared(memfd, 0), RangeError);
    assert.throws(() => mapShared(memfd, 2 ** 32 + 1), RangeError);
    assert.throws(() => mapShared(memfd, 4096, -4096), RangeError);
    assert.throws(() => mapShared(memfd, 1.5), RangeError);
  } finally {
    closeFd(memfd);
  }
});

test('connect to a missing socket fails with a SysError naming the path', () => {
  assert.throws(() => connectUnix(join(tmpdir(), 'vcrypto-no-such-socket')), /connect .*vcrypto-no-such-socket failed: errno 2/);
});

/**
 * Open eventfds in this process. Every fd this test passes is an eventfd, so a leaked one shows here;
 * counting all fds instead also saw Node's own files open and close meanwhile (a CI flake: 69 !== 70).
 */
function countOpenEventFds(): number {
  let n = 0;
  for (let fd = 0; fd < 4096; fd++) {
    try {
      if (readlinkSync(`/proc/self/fd/${fd}`) === 'anon_inode:[eventfd]') n++;
    } catch {
      // not open
    }
  }
  return n;
}

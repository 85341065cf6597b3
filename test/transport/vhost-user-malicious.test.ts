/**
 * A malicious front-end: each kind of bad vhost-user message (or guest memory garbage) gets its own
 * connection. Each must end with that connection closed by the back-end and one log line naming the
 * violation; afterwards every fd and mapping the connection held is released, and a good connection
 * on the same server still works. A bad session request is NOT a violation (a negative id reply).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { VHOST_USER } from '../../src/spec/vhost-user.js';
import { createMemfd } from '../../src/sys/memfd.js';
import { signalEventFd, pollAsync, POLLIN } from '../../src/sys/fd.js';
import {
  RawFrontEnd,
  TestGuest,
  HandRing,
  startServer,
  u64,
  u32pair,
  header,
  concat,
  createEventFd,
  closeFd,
  openFdCount,
  FAKE_HVA,
  MEM_BYTES,
} from './vhost-user-fixture.js';

/** Mappings of the test guest's memfd in this process (the back-end's workers share it). */
function guestMappings(): number {
  return readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.includes('/memfd:test-guest')).length;
}

interface Ctx {
  fe: RawFrontEnd;
  g: TestGuest;
  /** fds this case created (closed by the harness). */
  own: number[];
  /** Extra check once the connection is closed. */
  after?: () => Promise<void>;
}

/** Memory table + ring 0 of size 256 at 0x100000, ready for a kick. */
async function setUpRing(c: Ctx): Promise<HandRing> {
  const { fe, g } = c;
  fe.send(VHOST_USER.SET_PROTOCOL_FEATURES, u64(0x88n));
  assert.deepEqual(await fe.call(VHOST_USER.SET_MEM_TABLE, g.memTable(), { flags: 0x9, fds: [g.memfd, g.memfd] }), u64(0n));
  const ring = new HandRing(g, 256, 0x100000);
  fe.send(VHOST_USER.SET_VRING_NUM, u32pair(0, 256));
  fe.send(VHOST_USER.SET_VRING_ADDR, ring.addrPayload(0));
  return ring;
}

function eventFd(c: Ctx): number {
  const fd = createEventFd();
  c.own.push(fd);
  return fd;
}

const cases: { name: string; log: RegExp; run: (c: Ctx) => Promise<void> | void }[] = [
  {
    name: 'wrong payload size',
    log: /SET_FEATURES: payload is 4 bytes, expected 8/,
    run: ({ fe }) => fe.send(VHOST_USER.SET_FEATURES, new Uint8Array(4)),
  },
  {
    name: 'payload larger than any message',
    log: /SET_MEM_TABLE: payload size 100000 exceeds 1072/,
    run: ({ fe }) => fe.sendRaw(header(VHOST_USER.SET_MEM_TABLE, 1, 100000)),
  },
  {
    name: 'bad version in flags',
    log: /GET_FEATURES: unsupported version 2/,
    run: ({ fe }) => fe.send(VHOST_USER.GET_FEATURES, undefined, { flags: 0x2 }),
  },
  {
    name: 'REPLY flag on a request',
    log: /GET_FEATURES: a front-end request has the REPLY flag set/,
    run: ({ fe }) => fe.send(VHOST_USER.GET_FEATURES, undefined, { flags: 0x5 }),
  },
  {
    name: 'too many fds',
    log: /SET_VRING_CALL: 2 fds with the NOFD flag clear \(expected 1\)/,
    run: (c) => c.fe.send(VHOST_USER.SET_VRING_CALL, u64(0n), { fds: [eventFd(c), eventFd(c)] }),
  },
  {
    name: 'more fds than any message may carry',
    log: /9 file descriptors attached \(max 8\)|more file descriptors than any message may carry/,
    run: (c) => c.fe.send(VHOST_USER.SET_MEM_TABLE, c.g.memTable(), { fds: Array.from({ length: 9 }, () => eventFd(c)) }),
  },
  {
    name: 'missing fds',
    log: /SET_MEM_TABLE: 2 regions but 1 fds/,
    run: ({ fe, g }) => fe.send(VHOST_USER.SET_MEM_TABLE, g.memTable(), { fds: [g.memfd] }),
  },
  {
    name: 'an fd where none belongs',
    log: /SET_OWNER: carries 1 fds, expected none/,
    run: (c) => c.fe.send(VHOST_USER.SET_OWNER, undefined, { fds: [eventFd(c)] }),
  },
  {
    name: 'vring index out of range (state)',
    log: /SET_VRING_NUM: vring index 5 out of range \(0-1\)/,
    run: ({ fe }) => fe.send(VHOST_USER.SET_VRING_NUM, u32pair(5, 256)),
  },
  {
    name: 'vring index out of range (file)',
    log: /SET_VRING_KICK: vring index 2 out of range/,
    run: (c) => c.fe.send(VHOST_USER.SET_VRING_KICK, u64(2n), { fds: [eventFd(c)] }),
  },
  {
    name: 'queue size not a power of two',
    log: /SET_VRING_NUM: vring 0 size 100 is not a power of 2/,
    run: ({ fe }) => fe.send(VHOST_USER.SET_VRING_NUM, u32pair(0, 100)),
  },
  {
    name: 'ring addresses outside the memory table',
    log: /SET_VRING_ADDR: vring 0: .*not inside one memory region/,
    run: async (c) => {
      await setUpRing(c);
      const ring = new HandRing(c.g, 256, 0x200000);
      const p = ring.addrPayload(0);
      new DataView(p.buffer).setBigUint64(16, FAKE_HVA + BigInt(MEM_BYTES) - 16n, true); // used ring runs off the end
      c.fe.send(VHOST_USER.SET_VRING_ADDR, p);
    },
  },
  {
    name: 'ring addresses in the hole between regions',
    log: /SET_VRING_ADDR: vring 0: .*not inside one memory region/,
    run: async (c) => {
      await setUpRing(c);
      const p = new HandRing(c.g, 256, 0x100000).addrPayload(0);
      new DataView(p.buffer).setBigUint64(8, FAKE_HVA + 0xb0000n, true); // desc table in the VGA hole
      c.fe.send(VHOST_USER.SET_VRING_ADDR, p);
    },
  },
  {
    name: 'region size + offset overflow',
    log: /SET_MEM_TABLE: region 0 size 0x2000 \+ offset 0xfffffffffffff000 overflows u64/,
    run: ({ fe, g }) => {
      const t = new Uint8Array(40);
      const v = new DataView(t.buffer);
      v.setUint32(0, 1, true);
      v.setBigUint64(16, 0x2000n, true);
      v.setBigUint64(24, FAKE_HVA, true);
      v.setBigUint64(32, 0xfffffffffffff000n, true);
      fe.send(VHOST_USER.SET_MEM_TABLE, t, { fds: [g.memfd] });
    },
  },
  {
    name: 'region fd not sealed against shrinking (could SIGBUS later)',
    log: /SET_MEM_TABLE: region 0 fd is not a memfd sealed against shrinking \(F_SEAL_SHRINK\)/,
    run: (c) => {
      const unsealed = createMemfd('unsealed', MEM_BYTES, { seal: false });
      c.own.push(unsealed);
      const t = c.g.memTable().slice(0, 40);
      t[0] = 1;
      c.fe.send(VHOST_USER.SET_MEM_TABLE, t, { fds: [unsealed] });
    },
  },
  {
    name: 'region beyond the end of its file (would SIGBUS)',
    log: /SET_MEM_TABLE: region 0 ends at 0x10000 beyond its file \(4096 bytes\)/,
    run: (c) => {
      const small = createMemfd('small', 4096);
      c.own.push(small);
      const t = new Uint8Array(40);
      const v = new DataView(t.buffer);
      v.setUint32(0, 1, true);
      v.setBigUint64(16, 0x10000n, true);
      v.setBigUint64(24, FAKE_HVA, true);
      c.fe.send(VHOST_USER.SET_MEM_TABLE, t, { fds: [small] });
    },
  },
  {
    name: 'region larger than any mapping we make',
    log: /SET_MEM_TABLE: region 0 needs a 8589934592-byte mapping \(max 4294967296\)/,
    run: ({ fe, g }) => {
      const t = new Uint8Array(40);
      const v = new DataView(t.buffer);
      v.setUint32(0, 1, true);
      v.setBigUint64(16, 1n << 33n, true);
      v.setBigUint64(24, FAKE_HVA, true);
      fe.send(VHOST_USER.SET_MEM_TABLE, t, { fds: [g.memfd] });
    },
  },
  {
    name: 'a new memory table without the running ring',
    log: /SET_MEM_TABLE: vring 0: .*not inside one memory region/,
    run: async (c) => {
      await setUpRing(c);
      c.fe.send(VHOST_USER.SET_VRING_KICK, u64(0n), { fds: [eventFd(c)] });
      const t = c.g.memTable().slice(0, 40); // region 0 only: the ring lives in region 1
      t[0] = 1;
      c.fe.send(VHOST_USER.SET_MEM_TABLE, t, { fds: [c.g.memfd] });
    },
  },
  {
    name: 'kick fd that is not an eventfd',
    log: /SET_VRING_KICK: vring 0 fd is not an eventfd \(\/memfd:test-guest/,
    run: async (c) => {
      await setUpRing(c);
      c.fe.send(VHOST_USER.SET_VRING_KICK, u64(0n), { fds: [c.g.memfd] });
    },
  },
  {
    name: 'message cut short',
    log: /SET_FEATURES: connection closed mid-message \(4 of 8 bytes\)/,
    run: ({ fe }) => {
      fe.sendRaw(concat(header(VHOST_USER.SET_FEATURES, 1, 8), new Uint8Array(4)));
      fe.sock.shutdown();
    },
  },
  {
    name: 'descriptor garbage: a descriptor loop',
    log: /vring 0: chain 3: chain-too-long/,
    run: async (c) => {
      const ring = await setUpRing(c);
      ring.setDesc(ring.desc, 3, 0x120000, 72, 1, 4);
      ring.setDesc(ring.desc, 4, 0x120100, 16, 1, 3);
      ring.publish(3);
      c.fe.send(VHOST_USER.SET_VRING_KICK, u64(0n), { fds: [eventFd(c)] });
    },
  },
  {
    name: 'descriptor garbage: an address outside guest memory',
    log: /vring 0: chain 0: address-out-of-bounds/,
    run: async (c) => {
      const ring = await setUpRing(c);
      const kick = eventFd(c);
      c.fe.send(VHOST_USER.SET_VRING_KICK, u64(0n), { fds: [kick] });
      ring.setDesc(ring.desc, 0, 0xa0000 - 8, 72, 0, 0); // runs into the hole after region 0
      ring.publish(0);
      signalEventFd(kick);
    },
  },
  {
    name: 'descriptor garbage: a head index out of range (the error eventfd is signalled)',
    log: /vring 0: .*head-out-of-range/,
    run: async (c) => {
      const ring = await setUpRing(c);
      const err = eventFd(c);
      c.fe.send(VHOST_USER.SET_VRING_ERR, u64(0n), { fds: [err] });
      c.after = async () => {
        const [ev = 0] = await pollAsync([{ fd: err, events: POLLIN }], 5000);
        assert.notEqual(ev, 0, 'SET_VRING_ERR eventfd not signalled');
      };
      const kick = eventFd(c);
      c.fe.send(VHOST_USER.SET_VRING_KICK, u64(0n), { fds: [kick] });
      ring.publish(999);
      signalEventFd(kick);
    },
  },
];

test('each kind of bad message closes only its connection, with one log line, releasing its fds and mappings', async () => {
  const srv = startServer();
  const g = new TestGuest();
  try {
    // Warm up once so that lazily opened fds (worker machinery) do not count as leaks.
    const warm = RawFrontEnd.connect(srv.path);
    await warm.call(VHOST_USER.GET_FEATURES);
    warm.close();
    await srv.released(1);
    const baseline = openFdCount();
    const baselineMaps = guestMappings();
    let id = 1;
    for (const bad of cases) {
      id++;
      const c: Ctx = { fe: RawFrontEnd.connect(srv.path), g, own: [] };
      try {
        await c.fe.call(VHOST_USER.GET_FEATURES); // the connection works up to the bad message
        await bad.run(c);
        assert.ok(await c.fe.closedByPeer(), `${bad.name}: the back-end did not close the connection`);
        const line = await srv.waitForLog(new RegExp(`^connection ${id}: closed: protocol violation: `));
        assert.match(line, bad.log, bad.name);
        assert.equal(srv.logs.filter((l) => l.startsWith(`connection ${id}: closed`)).length, 1, 'exactly one closing line');
        await c.after?.();
      } finally {
        c.fe.close();
        for (const fd of c.own) closeFd(fd);
      }
      await srv.released(id);
      assert.equal(openFdCount(), baseline, `${bad.name}: fds leaked`);
      assert.equal(guestMappings(), baselineMaps, `${bad.name}: guest memory still mapped`);
    }
    // A good connection still works: full negotiation and a session.
    const good = RawFrontEnd.connect(srv.path);
    try {
      assert.deepEqual(await good.call(VHOST_USER.GET_FEATURES), u64(0x170000000n));
      good.send(VHOST_USER.SET_PROTOCOL_FEATURES, u64(0x88n));
      assert.deepEqual(await good.call(VHOST_USER.SET_MEM_TABLE, g.memTable(), { flags: 0x9, fds: [g.memfd, g.memfd] }), u64(0n));
      const s = new Uint8Array(632);
      s.set([3, 0, 0, 0, 16, 0, 0, 0], 8);
      s[32] = 1;
      s[33] = 1;
      const id0 = new DataView((await good.call(VHOST_USER.CREATE_CRYPTO_SESSION, s)).buffer).getBigInt64(0, true);
      assert.ok(id0 >= 0n);
    } finally {
      good.close();
    }
  } finally {
    g.close();
    await srv.stop();
  }
});

test('bad session parameters are a status, not a violation; unknown requests are NACKed, not fatal', async () => {
  const srv = startServer({ maxSessions: 2 });
  const fe = RawFrontEnd.connect(srv.path);
  try {
    fe.send(VHOST_USER.SET_PROTOCOL_FEATURES, u64(0x88n));
    const session = (keyLen: number, cipherAlg = 3) => {
      const s = new Uint8Array(632);
      const v = new DataView(s.buffer);
      v.setUint32(8, cipherAlg, true);
      v.setUint32(12, keyLen, true);
      s[32] = 1;
      s[33] = 1;
      return s;
    };
    const idOf = async (p: Uint8Array) => new DataView((await fe.call(VHOST_USER.CREATE_CRYPTO_SESSION, p)).buffer).getBigInt64(0, true);
    assert.ok((await idOf(session(65))) < 0n, 'key_len beyond the 64-byte buffer');
    assert.ok((await idOf(session(17))) < 0n, 'AES with a 17-byte key');
    assert.ok((await idOf(session(16, 99))) < 0n, 'unknown cipher');
    assert.ok((await idOf(session(16))) >= 0n);
    assert.ok((await idOf(session(32))) >= 0n);
    assert.equal(await idOf(session(16)), -5n, 'table full: -VIRTIO_CRYPTO_NOSPC');
    // SET_CONFIG (25) is not served: NEED_REPLY gets a non-zero ack and the connection goes on.
    assert.deepEqual(await fe.call(25, new Uint8Array(12), { flags: 0x9 }), u64(1n));
    fe.send(VHOST_USER.SET_LOG_BASE, u64(0n)); // ignored
    assert.deepEqual(await fe.call(VHOST_USER.GET_FEATURES), u64(0x170000000n));
  } finally {
    fe.close();
    await srv.stop();
  }
});

/**
 * The secure chat channel between two in-process peers over real loopback TCP: handshake, messages
 * both ways, fragmentation and reassembly with the stream split anywhere, and every failure the issue
 * lists (wrong key, tampered / replayed / dropped / reordered / truncated frames, a wrong version, a
 * non-vcrypto peer, a silent peer).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { socketPair } from '../fixtures/socket-pair.js';
import { randomBytes } from 'node:crypto';
import { secureChannel, AUTH_FAILED } from '../../src/chat/secure-channel.js';
import { ChannelError, type ChatChannel } from '../../src/chat/chat-channel.js';
import { FrameDecoder, encodeFrame, hello, MAX_FRAGMENT } from '../../src/chat/secure-framing.js';
import { createHostDevice } from '../../src/driver/host-device.js';
import type { CryptoDevice } from '../../src/driver/api.js';

/** Reads everything the socket delivers until `n` bytes are in (after the channel handed it back). */
async function readBytes(socket: Socket, n: number): Promise<Uint8Array> {
  let got = new Uint8Array(0);
  for await (const chunk of socket as AsyncIterable<Buffer>) {
    got = Buffer.concat([got, chunk]);
    if (got.length >= n) break;
  }
  return got;
}

async function withDevice(fn: (device: CryptoDevice) => Promise<void>): Promise<void> {
  const device = createHostDevice();
  try {
    await fn(device);
  } finally {
    await device.close();
  }
}

async function pair(device: CryptoDevice, pskC: Uint8Array, pskS = pskC) {
  const [c, s, cleanup] = await socketPair();
  const results = await Promise.allSettled([
    secureChannel({ device, psk: pskC })(c, 'client'),
    secureChannel({ device, psk: pskS })(s, 'server'),
  ]);
  return { c, s, cleanup, results };
}

const enc = (t: string) => new TextEncoder().encode(t);
const dec = (b: Uint8Array) => new TextDecoder().decode(b);

test('two peers: handshake, messages both ways, status names the protocol and the device', async () => {
  await withDevice(async (device) => {
    const { cleanup, results } = await pair(device, randomBytes(32));
    try {
      const [rc, rs] = results;
      assert.ok(rc.status === 'fulfilled' && rs.status === 'fulfilled');
      const client = rc.value;
      const server = rs.value;
      assert.match(client.status, /Noise_NNpsk0_25519_AESGCM_SHA256.*host \(node:crypto/);
      const wire = await client.seal(enc('hello server\n'));
      assert.equal(wire.length, 2 + 1 + 13 + 16);
      assert.ok(!Buffer.from(wire).includes(Buffer.from('hello')));
      assert.equal(dec(await server.open(wire)), 'hello server\n');
      assert.equal(dec(await client.open(await server.seal(enc('hi client\n')))), 'hi client\n');
      assert.equal((await server.open(await client.end!())).length, 0); // the client's end of chat
      server.finish();
      client.close();
      server.close();
    } finally {
      await cleanup();
    }
  });
});

test('a chat message larger than one Noise message is split, reassembled, and survives any stream split', async () => {
  await withDevice(async (device) => {
    const { cleanup, results } = await pair(device, randomBytes(32));
    try {
      const [rc, rs] = results.map((r) => (r.status === 'fulfilled' ? r.value : assert.fail('handshake'))) as [ChatChannel, ChatChannel];
      const big = randomBytes(3 * MAX_FRAGMENT + 1234);
      const wire = await rc.seal(big);
      const frames = new FrameDecoder().push(wire);
      assert.equal(frames.length, 4);
      assert.ok(frames.every((f) => f.length <= 65535));
      // Deliver in odd-sized pieces: nothing comes out until the final fragment authenticates.
      const out: Uint8Array[] = [];
      for (let at = 0; at < wire.length; at += 7919) {
        const piece = await rs.open(wire.subarray(at, at + 7919));
        if (at + 7919 < wire.length) assert.equal(piece.length, 0);
        out.push(piece);
      }
      assert.deepEqual(Buffer.concat(out), big);
      // Two messages in one TCP read, then one split inside its length prefix.
      const two = Buffer.concat([await rc.seal(enc('one ')), await rc.seal(enc('two '))]);
      assert.equal(dec(await rs.open(two)), 'one two ');
      const three = await rc.seal(enc('three'));
      assert.equal((await rs.open(three.subarray(0, 1))).length, 0);
      assert.throws(() => rs.finish(), ChannelError); // a partial frame at EOF is truncation
      assert.equal(dec(await rs.open(three.subarray(1))), 'three');
      assert.throws(() => rs.finish(), /connection truncated/); // whole frames, but no END yet
      assert.equal((await rs.open(await rc.end!())).length, 0);
      rs.finish();
      rc.close();
      rs.close();
    } finally {
      await cleanup();
    }
  });
});

test('fragment boundary: MAX_FRAGMENT bytes fill exactly one 65535-byte Noise message; one more byte takes two', async () => {
  await withDevice(async (device) => {
    const { cleanup, results } = await pair(device, randomBytes(32));
    try {
      const [rc, rs] = results.map((r) => (r.status === 'fulfilled' ? r.value : assert.fail('handshake'))) as [ChatChannel, ChatChannel];
      for (const [size, lengths] of [[MAX_FRAGMENT, [65535]], [MAX_FRAGMENT + 1, [65535, 1 + 1 + 16]], [1, [1 + 1 + 16]]] as const) {
        const msg = randomBytes(size);
        const wire = await rc.seal(msg);
        assert.deepEqual(new FrameDecoder().push(wire).map((f) => f.length), lengths, `size ${size}`);
        assert.deepEqual(Buffer.from(await rs.open(wire)), msg);
      }
      assert.equal((await rc.seal(new Uint8Array(0))).length, 0, 'an empty chunk sends nothing');
      rc.close();
      rs.close();
    } finally {
      await cleanup();
    }
  });
});

test('wrong key: both sides report authentication failed', async () => {
  await withDevice(async (device) => {
    const { cleanup, results } = await pair(device, randomBytes(32), randomBytes(32));
    try {
      for (const r of results) {
        assert.equal(r.status, 'rejected');
        assert.ok(r.reason instanceof ChannelError);
        assert.match((r.reason as Error).message, new RegExp(`^${AUTH_FAILED}`));
      }
    } finally {
      await cleanup();
    }
  });
});

for (const [what, mutate] of [
  ['a flipped bit', (frames: Uint8Array[]) => { frames[1]![5]! ^= 0x20; return frames; }],
  ['a replayed frame', (frames: Uint8Array[]) => [frames[0]!, frames[0]!, frames[1]!]],
  ['a dropped frame', (frames: Uint8Array[]) => [frames[0]!, frames[2]!]],
  ['reordered frames', (frames: Uint8Array[]) => [frames[1]!, frames[0]!, frames[2]!]],
  ['a truncated frame (one byte cut)', (frames: Uint8Array[]) => [frames[0]!, frames[1]!.subarray(0, frames[1]!.length - 1), frames[2]!]],
] as const) {
  test(`transport: ${what} is rejected and nothing of it is output`, async () => {
    await withDevice(async (device) => {
      const { cleanup, results } = await pair(device, randomBytes(32));
      try {
        const [rc, rs] = results.map((r) => (r.status === 'fulfilled' ? r.value : assert.fail('handshake'))) as [ChatChannel, ChatChannel];
        const frames = [await rc.seal(enc('first message')), await rc.seal(enc('second message')), await rc.seal(enc('third message'))].map((f) => Uint8Array.from(f));
        const delivered: string[] = [];
        let error: unknown;
        for (const f of mutate(frames)) {
          try {
            delivered.push(dec(await rs.open(f)));
          } catch (err) {
            error = err;
            break;
          }
        }
        assert.ok(error instanceof ChannelError, `rejected (delivered: ${JSON.stringify(delivered)})`);
        assert.match(error.message, new RegExp(AUTH_FAILED));
        assert.ok(delivered.every((d) => d === 'first message' || d === ''), JSON.stringify(delivered));
        rc.close();
        rs.close();
      } finally {
        await cleanup();
      }
    });
  });
}

test('an authentic message followed by its replay in the same read: the message is delivered once, then the error', async () => {
  await withDevice(async (device) => {
    const { cleanup, results } = await pair(device, randomBytes(32));
    try {
      const [rc, rs] = results.map((r) => (r.status === 'fulfilled' ? r.value : assert.fail('handshake'))) as [ChatChannel, ChatChannel];
      const f = await rc.seal(enc('only once'));
      assert.equal(dec(await rs.open(Buffer.concat([f, f]))), 'only once');
      await assert.rejects(rs.open(new Uint8Array(0)), new RegExp(AUTH_FAILED));
      assert.throws(() => rs.finish(), ChannelError);
      rc.close();
      rs.close();
    } finally {
      await cleanup();
    }
  });
});

test('a peer that sends binary garbage instead of a hello is refused', async () => {
  await withDevice(async (device) => {
    const [c, s, cleanup] = await socketPair();
    try {
      const p = secureChannel({ device, psk: randomBytes(32) })(s, 'server');
      c.end(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x00]));
      await assert.rejects(p, /the client does not speak the vcrypto secure chat protocol/);
    } finally {
      await cleanup();
    }
  });
});

test('a peer that speaks another protocol version (v1: no END frame) is refused by name', async () => {
  await withDevice(async (device) => {
    const [c, s, cleanup] = await socketPair();
    try {
      s.write(hello(1));
      const p = secureChannel({ device, psk: randomBytes(32) })(c, 'client');
      await assert.rejects(p, /speaks secure chat protocol version 1; this vcrypto speaks version 4/);
    } finally {
      await cleanup();
    }
  });
});

test('a non-vcrypto server (a plain busy notice) is reported with its text, not as a crash', async () => {
  await withDevice(async (device) => {
    const [c, s, cleanup] = await socketPair();
    try {
      s.end('busy: the server is chatting with another peer, try again later\n');
      const p = secureChannel({ device, psk: randomBytes(32) })(c, 'client');
      await assert.rejects(p, /the server did not start a secure chat; it said: busy: the server is chatting/);
    } finally {
      await cleanup();
    }
  });
});

test('server side: a garbage first frame gets an alert and "authentication failed"; a silent peer times out', async () => {
  await withDevice(async (device) => {
    const [c, s, cleanup] = await socketPair();
    try {
      const p = secureChannel({ device, psk: randomBytes(32) })(s, 'server');
      c.write(Buffer.concat([hello(), encodeFrame(randomBytes(64))]));
      await assert.rejects(p, new RegExp(`^ChannelError: ${AUTH_FAILED}`));
      // What the server sent: its hello, then the zero-length ALERT frame.
      const got = await readBytes(c, 7);
      assert.deepEqual([...got.subarray(0, 7)], [...hello(), 0, 0]);
    } finally {
      await cleanup();
    }
    const [c2, s2, cleanup2] = await socketPair();
    try {
      const p = secureChannel({ device, psk: randomBytes(32), handshakeTimeoutMs: 150 })(s2, 'server');
      await assert.rejects(p, /handshake timed out/);
      assert.ok(c2);
    } finally {
      await cleanup2();
    }
  });
});

test('the peer closing mid-handshake rejects (never hangs), and the listeners are removed', async () => {
  await withDevice(async (device) => {
    const [c, s, cleanup] = await socketPair();
    try {
      const before = s.listenerCount('data');
      const p = secureChannel({ device, psk: randomBytes(32) })(s, 'server');
      c.end(hello().subarray(0, 3));
      await assert.rejects(p, /closed the connection during the handshake/);
      assert.equal(s.listenerCount('data'), before);
    } finally {
      await cleanup();
    }
  });
});

test('the key must be 32 bytes', async () => {
  await withDevice(async (device) => {
    assert.throws(() => secureChannel({ device, psk: new Uint8Array(16) }), RangeError);
  });
});

test('end of chat: one 1-byte END frame (2 + 1 + 16 bytes on the wire); finish() requires it; nothing may follow it', async () => {
  await withDevice(async (device) => {
    const { cleanup, results } = await pair(device, randomBytes(32));
    try {
      const [rc, rs] = results.map((r) => (r.status === 'fulfilled' ? r.value : assert.fail('handshake'))) as [ChatChannel, ChatChannel];
      assert.equal(typeof rc.end, 'function');
      assert.equal(dec(await rs.open(await rc.seal(enc('last words')))), 'last words');
      assert.equal(rs.peerEnded?.(), false);
      // Whole frames and a FIN, but no END: the last messages may have been cut off in transit.
      assert.throws(() => rs.finish(), /connection truncated/);
      const end = await rc.end!();
      // length(u16) + AES-GCM(type byte) + 16-byte tag; the type byte is not visible in clear
      assert.equal(end.length, 2 + 1 + 16);
      assert.deepEqual([...end.subarray(0, 2)], [0x00, 0x11]);
      assert.equal((await rs.open(end)).length, 0);
      assert.equal(rs.peerEnded?.(), true);
      rs.finish();
      // Our side: no second END, no message after it.
      await assert.rejects(async () => rc.end!(), ChannelError);
      await assert.rejects(rc.seal(enc('too late')), ChannelError);
      rc.close();
      rs.close();
    } finally {
      await cleanup();
    }
  });
});

test('end of chat: a replayed END, or bytes after it, are refused; an END in place of a dropped message fails authentication', async () => {
  await withDevice(async (device) => {
    for (const attack of ['replay', 'garbage', 'drop-last-message'] as const) {
      const { cleanup, results } = await pair(device, randomBytes(32));
      try {
        const [rc, rs] = results.map((r) => (r.status === 'fulfilled' ? r.value : assert.fail('handshake'))) as [ChatChannel, ChatChannel];
        const first = await rc.seal(enc('first'));
        const second = await rc.seal(enc('second'));
        const end = await rc.end!();
        assert.equal(dec(await rs.open(first)), 'first');
        if (attack === 'drop-last-message') {
          // The END's nonce is one past the dropped message's (Noise §5.1): it cannot stand in for it.
          await assert.rejects(rs.open(end), new RegExp(AUTH_FAILED));
          assert.equal(rs.peerEnded?.(), false);
        } else {
          assert.equal(dec(await rs.open(second)), 'second');
          assert.equal((await rs.open(end)).length, 0);
          const after = attack === 'replay' ? end : encodeFrame(randomBytes(40));
          await assert.rejects(rs.open(after), /after its end of chat/);
        }
        rc.close();
        rs.close();
      } finally {
        await cleanup();
      }
    }
  });
});

test("the server's handshake reply, then a message, its END and its FIN in one write right behind it: nothing is lost", async () => {
  await withDevice(async (device) => {
    // Client side under test: c1 (ours, half-open like the chat client) <-> s1 (played by the test).
    // The real server channel runs on s2 of a second pair; the test carries the bytes between them.
    // Since version 3 the server has its channel only after the client's CONFIRM, so its first
    // message can at the earliest arrive right behind the handshake: all of it, END and FIN in one write.
    const server = createServer({ allowHalfOpen: true });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as { port: number }).port;
    const open = async (): Promise<[Socket, Socket]> => {
      const accepted = once(server, 'connection') as Promise<[Socket]>;
      const ours = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
      await once(ours, 'connect');
      const [theirs] = await accepted;
      for (const s of [ours, theirs]) s.on('error', () => {});
      return [ours, theirs];
    };
    const [c1, s1] = await open();
    const [c2, s2] = await open();
    try {
      const psk = randomBytes(32);
      s1.on('data', (b: Buffer) => c2.write(b)); // the client's hello, handshake message and CONFIRM
      // The server's hello (5 bytes) and reply frame (2 + e 32 + empty payload's tag 16).
      const REPLY = 5 + 2 + 32 + 16;
      const held: Buffer[] = [];
      let replyIn: () => void = () => {};
      const replyHeld = new Promise<void>((resolve) => (replyIn = resolve));
      c2.on('data', (b: Buffer) => {
        held.push(b);
        if (Buffer.concat(held).length >= REPLY) replyIn();
      });
      const clientP = secureChannel({ device, psk })(c1, 'client');
      const serverP = secureChannel({ device, psk })(s2, 'server');
      await replyHeld;
      assert.equal(Buffer.concat(held).length, REPLY);
      s1.write(Buffer.concat(held));
      const serverCh = await serverP; // the client's CONFIRM got through
      const last = await serverCh.seal(enc('the last message\n'));
      const end = await serverCh.end!();
      const fromClient: Buffer[] = [];
      s1.removeAllListeners('data');
      s1.on('data', (b: Buffer) => fromClient.push(b));
      s1.end(Buffer.concat([last, end])); // one write, then FIN
      const clientCh = await clientP;
      // The session reads what the handshake did not need, straight from the socket.
      const { runChatSession } = await import('../../src/chat/chat-session.js');
      const { ChunkSource } = await import('../../src/chat/chunk-source.js');
      const { PassThrough } = await import('node:stream');
      const out = new PassThrough();
      const shown: Buffer[] = [];
      out.on('data', (b: Buffer) => shown.push(b));
      const ended = await runChatSession({ socket: c1, channel: clientCh, input: new ChunkSource(new PassThrough()), output: out, lingerMs: 10_000 });
      assert.deepEqual(ended, { reason: 'peer-closed' });
      assert.equal(Buffer.concat(shown).toString(), 'the last message\n');
      // ... and the client ended its direction with its own END, which the server channel accepts.
      if (!s1.readableEnded) await once(s1, 'end');
      assert.equal((await serverCh.open(Buffer.concat(fromClient))).length, 0);
      assert.equal(serverCh.peerEnded?.(), true);
      serverCh.finish();
      serverCh.close();
    } finally {
      for (const s of [c1, s1, c2, s2]) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

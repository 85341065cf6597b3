/**
 * The chat plumbing in-process: ChunkSource (stdin shared across peers) and runChatSession (one
 * connection over a channel), on real sockets on 127.0.0.1. The channels here are small test
 * doubles that follow the ChatChannel contract, so the session's reasons and cleanup are checked
 * without the CLI.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, connect, type Socket } from 'node:net';
import { PassThrough, Writable } from 'node:stream';
import { ChannelError, plainChannel, type ChatChannel } from '../../src/chat/chat-channel.js';
import { runChatSession } from '../../src/chat/chat-session.js';
import { ABORTED, ChunkSource } from '../../src/chat/chunk-source.js';

/** A connected socket pair over loopback: [ours (as the plumbing opens it), theirs (the test's peer)]. */
async function socketPair(t: { after(fn: () => unknown): void }): Promise<[Socket, Socket]> {
  // allowHalfOpen: the test's peer decides itself when to send its FIN.
  const server = createServer({ allowHalfOpen: true });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const accepted = once(server, 'connection') as Promise<[Socket]>;
  // ours is half-open like the chat server's and client's sockets: the peer's FIN leaves our direction open.
  const ours = connect({ port: (server.address() as { port: number }).port, host: '127.0.0.1', allowHalfOpen: true });
  await once(ours, 'connect');
  const [theirs] = await accepted;
  server.close();
  ours.on('error', () => {});
  theirs.on('error', () => {});
  t.after(() => {
    ours.destroy();
    theirs.destroy();
  });
  return [ours, theirs];
}

/** A Writable that collects what it is given. */
function collector(): { stream: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk);
      cb();
    },
  });
  return { stream, text: () => Buffer.concat(chunks).toString() };
}

/** Reads everything `socket` receives until the other side ends or drops the connection. */
async function readAll(socket: Socket): Promise<string> {
  const chunks: Buffer[] = [];
  socket.on('data', (c: Buffer) => chunks.push(c));
  if (!socket.readableEnded && !socket.destroyed) {
    await new Promise((resolve) => {
      socket.once('end', resolve);
      socket.once('close', resolve);
    });
  }
  return Buffer.concat(chunks).toString();
}

test('ChunkSource: a chunk that arrives after its reader gave up goes to the next reader', async () => {
  const stdin = new PassThrough();
  const source = new ChunkSource(stdin);
  const gaveUp = new AbortController();
  const first = source.next(gaveUp.signal);
  gaveUp.abort();
  assert.equal(await first, ABORTED);
  stdin.write('typed while nobody listened');
  assert.equal(Buffer.from((await source.next()) as Uint8Array).toString(), 'typed while nobody listened');
  source.unshift(Buffer.from('given back'));
  assert.equal(Buffer.from((await source.next()) as Uint8Array).toString(), 'given back');
  stdin.end();
  assert.equal(await source.next(), null);
  assert.equal(await source.next(), null, 'EOF is sticky');
});

test('ChunkSource: a read error rejects next() instead of looking like EOF', async () => {
  const stdin = new PassThrough();
  const source = new ChunkSource(stdin);
  const pending = source.next();
  stdin.destroy(new Error('EIO'));
  await assert.rejects(pending, /EIO/);
});

test('session: data both ways, then the peer FIN ends it as peer-closed and closes the channel once', async (t) => {
  const [ours, theirs] = await socketPair(t);
  const stdin = new PassThrough();
  const stdout = collector();
  let closed = 0;
  const base = await plainChannel(ours, 'client');
  const channel: ChatChannel = { ...base, close: () => void closed++ };
  const session = runChatSession({ socket: ours, channel, input: new ChunkSource(stdin), output: stdout.stream, lingerMs: 10_000 });
  stdin.write('to them');
  const [got] = (await once(theirs, 'data')) as [Buffer];
  assert.equal(got.toString(), 'to them');
  theirs.end('to us');
  const theirView = readAll(theirs);
  assert.deepEqual(await session, { reason: 'peer-closed' });
  assert.equal(stdout.text(), 'to us');
  assert.equal(closed, 1);
  assert.ok(ours.destroyed || ours.closed);
  assert.equal(await theirView, '');
});

test('session: a ChannelError on incoming bytes drops only that connection (channel-error)', async (t) => {
  const [ours, theirs] = await socketPair(t);
  let closed = 0;
  const channel: ChatChannel = {
    status: 'rejects the byte 0xff',
    seal: async (p) => p,
    open: async (w) => {
      if (w.includes(0xff)) throw new ChannelError('bad frame');
      return w;
    },
    finish: () => {},
    close: () => void closed++,
  };
  const stdout = collector();
  const session = runChatSession({ socket: ours, channel, input: new ChunkSource(new PassThrough()), output: stdout.stream, lingerMs: 10_000 });
  theirs.write(Buffer.from([0x41, 0xff]));
  const end = await session;
  assert.equal(end.reason, 'channel-error');
  assert.ok('error' in end && end.error instanceof ChannelError);
  assert.equal(closed, 1);
  assert.equal(stdout.text(), '', 'nothing from a rejected chunk reaches stdout');
  await readAll(theirs); // the peer sees its connection closed
});

test('session: finish() rejecting a truncated stream at the peer FIN ends it as channel-error', async (t) => {
  const [ours, theirs] = await socketPair(t);
  const channel: ChatChannel = {
    status: 'frames of 4 bytes',
    seal: async (p) => p,
    open: async () => new Uint8Array(0),
    finish: () => {
      throw new ChannelError('stream ended inside a frame');
    },
    close: () => {},
  };
  const session = runChatSession({ socket: ours, channel, input: new ChunkSource(new PassThrough()), output: collector().stream, lingerMs: 10_000 });
  theirs.end('ab');
  const end = await session;
  assert.equal(end.reason, 'channel-error');
  assert.ok('error' in end && /inside a frame/.test(end.error.message));
});

test('session: EOF on input sends the rest, half-closes, still shows what the peer sends, then input-ended', async (t) => {
  const [ours, theirs] = await socketPair(t);
  const stdin = new PassThrough();
  const stdout = collector();
  const session = runChatSession({ socket: ours, channel: await plainChannel(ours, 'client'), input: new ChunkSource(stdin), output: stdout.stream, lingerMs: 10_000 });
  const received: Buffer[] = [];
  theirs.on('data', (c: Buffer) => received.push(c));
  stdin.end('last words');
  await once(theirs, 'end'); // our FIN arrived after our data
  assert.equal(Buffer.concat(received).toString(), 'last words');
  theirs.end('their reply'); // the half-closed connection still carries the peer's bytes
  assert.deepEqual(await session, { reason: 'input-ended' });
  assert.equal(stdout.text(), 'their reply');
});

test('session: after our FIN, a peer that stays silent is dropped after the linger', async (t) => {
  const [ours, theirs] = await socketPair(t);
  const stdin = new PassThrough();
  const session = runChatSession({ socket: ours, channel: await plainChannel(ours, 'client'), input: new ChunkSource(stdin), output: collector().stream, lingerMs: 50 });
  theirs.resume(); // reads, but never closes its side
  stdin.end();
  assert.deepEqual(await session, { reason: 'input-ended' });
  assert.ok(ours.destroyed);
});

test('session: a reset from the peer ends it as peer-reset; the input stays readable for the next peer', async (t) => {
  const [ours, theirs] = await socketPair(t);
  const stdin = new PassThrough();
  const input = new ChunkSource(stdin);
  const session = runChatSession({ socket: ours, channel: await plainChannel(ours, 'server'), input, output: collector().stream, lingerMs: 10_000 });
  theirs.resetAndDestroy();
  const end = await session;
  assert.equal(end.reason, 'peer-reset');
  stdin.write('for the next peer');
  assert.equal(Buffer.from((await input.next()) as Uint8Array).toString(), 'for the next peer');
});

test('session: stdout failing ends it as output-error (the caller then exits), never a throw', async (t) => {
  const [ours, theirs] = await socketPair(t);
  const broken = new Writable({
    write(_chunk, _enc, cb) {
      cb(Object.assign(new Error('write EPIPE'), { code: 'EPIPE' }));
    },
  });
  broken.on('error', () => {});
  const session = runChatSession({ socket: ours, channel: await plainChannel(ours, 'client'), input: new ChunkSource(new PassThrough()), output: broken, lingerMs: 10_000 });
  theirs.write('first');
  theirs.write('second');
  const end = await session;
  assert.equal(end.reason, 'output-error');
});

/**
 * A test double with an end-of-stream message, like the secure channel: data passes as is, the byte
 * 0x00 is the end-of-chat; finish() refuses a FIN that did not come after the peer's end-of-chat.
 * `gate` (if given) holds every seal() until it resolves; `sealing` resolves when a seal() starts.
 */
function endChannel(gate?: Promise<void>) {
  let peerEnded = false;
  let sealStarted: () => void = () => {};
  const sealing = new Promise<void>((resolve) => (sealStarted = resolve));
  let finished: () => void = () => {};
  const finishedP = new Promise<void>((resolve) => (finished = resolve));
  const channel: ChatChannel = {
    status: 'test channel with an end of chat',
    seal: async (p) => {
      sealStarted();
      await gate;
      return p;
    },
    open: async (w) => {
      const at = w.indexOf(0);
      if (at < 0) return w;
      peerEnded = true;
      return w.subarray(0, at);
    },
    finish: () => {
      finished();
      if (!peerEnded) throw new ChannelError('connection truncated (test)');
    },
    end: () => Uint8Array.of(0),
    peerEnded: () => peerEnded,
    close: () => {},
  };
  return { channel, sealing, finished: finishedP, peerEndedNow: () => peerEnded };
}

test('session with an end of chat: EOF on input sends the end-of-chat after the data, then FIN; the peer\'s end then FIN is input-ended', async (t) => {
  const [ours, theirs] = await socketPair(t);
  const stdin = new PassThrough();
  const { channel } = endChannel();
  const session = runChatSession({ socket: ours, channel, input: new ChunkSource(stdin), output: collector().stream, lingerMs: 10_000 });
  const theirView = readAll(theirs);
  stdin.end('last words');
  assert.equal(await theirView, 'last words\0');
  theirs.end(Uint8Array.of(0));
  assert.deepEqual(await session, { reason: 'input-ended' });
});

test('session with an end of chat: a chunk sealed while the peer ends still goes out, then our end-of-chat and FIN (peer-closed)', async (t) => {
  const [ours, theirs] = await socketPair(t);
  const stdin = new PassThrough();
  let release: () => void = () => {};
  const gate = new Promise<void>((resolve) => (release = resolve));
  const { channel, sealing, finished } = endChannel(gate);
  const input = new ChunkSource(stdin);
  const stdout = collector();
  const session = runChatSession({ socket: ours, channel, input, output: stdout.stream, lingerMs: 10_000 });
  const theirView = readAll(theirs);
  stdin.write('sealed before the peer ended');
  await sealing;
  theirs.end(Buffer.from('their last\0')); // their end-of-chat and FIN arrive while we are sealing
  await finished; // the session has seen the peer's clean end
  release();
  assert.deepEqual(await session, { reason: 'peer-closed' });
  // The sealed chunk was not dropped (for the secure channel that would be a nonce gap, reported by
  // the peer as tampering): the peer gets it, then our end-of-chat, then our FIN.
  assert.equal(await theirView, 'sealed before the peer ended\0');
  assert.equal(stdout.text(), 'their last');
});

test('session with an end of chat: a FIN without the peer\'s end-of-chat is channel-error (truncated), and we still end properly', async (t) => {
  const [ours, theirs] = await socketPair(t);
  const { channel } = endChannel();
  const session = runChatSession({ socket: ours, channel, input: new ChunkSource(new PassThrough()), output: collector().stream, lingerMs: 10_000 });
  theirs.end('cut short');
  const end = await session;
  assert.equal(end.reason, 'channel-error');
  assert.ok('error' in end && /connection truncated/.test(end.error.message));
});

test('session with an end of chat: a reset after the peer\'s end-of-chat is a normal end; a reset before it is truncation', async (t) => {
  for (const endFirst of [true, false]) {
    const [ours, theirs] = await socketPair(t);
    const { channel, peerEndedNow } = endChannel();
    let shown: (text: string) => void = () => {};
    const firstOutput = new Promise<string>((resolve) => (shown = resolve));
    const stdout = new Writable({
      write(chunk: Buffer, _enc, cb) {
        shown(chunk.toString());
        cb();
      },
    });
    const session = runChatSession({ socket: ours, channel, input: new ChunkSource(new PassThrough()), output: stdout, lingerMs: 10_000 });
    theirs.write(endFirst ? Buffer.from('bye\0') : Buffer.from('bye'));
    assert.equal(await firstOutput, 'bye'); // opened (and, with the end byte, the peer's end seen)
    assert.equal(peerEndedNow(), endFirst);
    theirs.resetAndDestroy();
    const end = await session;
    if (endFirst) assert.deepEqual(end, { reason: 'peer-closed' });
    else {
      assert.equal(end.reason, 'channel-error');
      assert.ok('error' in end && /connection truncated: it broke before the peer's authenticated end of chat/.test(end.error.message));
    }
  }
});

/**
 * runChatServer / runChatClient in-process with channels that fail, as the encrypted chat's will
 * (a bad handshake, a bad frame): the failure ends only that connection, the server says so on its
 * log and takes the next peer; the client reports it as a one-line ChatError.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { PassThrough, Writable } from 'node:stream';
import { ChannelError, plainChannel, type ChatChannelFactory } from '../../src/chat/chat-channel.js';
import { runChatClient } from '../../src/chat/chat-client.js';
import { ChatError } from '../../src/chat/chat-error.js';
import { DEFAULT_BUSY_NOTICE, runChatServer } from '../../src/chat/chat-server.js';
import { awaitableLog } from '../fixtures/awaitable-log.js';

function sink(): { stream: Writable; text: () => string } {
  const chunks: Buffer[] = [];
  return {
    stream: new Writable({
      write(c: Buffer, _e, cb) {
        chunks.push(c);
        cb();
      },
    }),
    text: () => Buffer.concat(chunks).toString(),
  };
}

async function peer(port: number): Promise<Socket> {
  const s = connect(port, '127.0.0.1');
  s.on('error', () => {});
  await once(s, 'connect');
  return s;
}

test('a channel whose handshake fails drops that peer; the server then chats with the next one', async () => {
  // The first connection's handshake fails; later ones use the plain channel.
  let connections = 0;
  const channel: ChatChannelFactory = async (socket, role) => {
    assert.equal(role, 'server');
    if (++connections === 1) throw new ChannelError('handshake failed: bad key');
    return plainChannel(socket, role);
  };
  const stdin = new PassThrough();
  const stdout = sink();
  const { log, waitFor } = awaitableLog();
  const running = runChatServer({ host: '127.0.0.1', port: 0, channel, log, input: stdin, output: stdout.stream });
  const [, port] = await waitFor(/^listening on 127\.0\.0\.1:(\d+)$/);

  const bad = await peer(Number(port));
  bad.resume();
  await waitFor(/^peer 127\.0\.0\.1:\d+ dropped: handshake failed: bad key$/);
  await once(bad, 'close'); // its connection is closed, not left open

  const good = await peer(Number(port));
  await waitFor(/^channel: plain TCP, no encryption$/);
  good.write('hello');
  stdin.end('bye');
  const received: Buffer[] = [];
  good.on('data', (c: Buffer) => received.push(c));
  await once(good, 'end');
  good.end();
  await running;
  assert.equal(Buffer.concat(received).toString(), 'bye');
  assert.equal(stdout.text(), 'hello');
});

test('a channel error mid-chat drops the peer; the server logs it and keeps listening', async () => {
  const channel: ChatChannelFactory = async () => ({
    status: 'rejects "!"',
    seal: async (p) => p,
    open: async (w) => {
      if (w.includes(0x21)) throw new ChannelError('authentication failed');
      return w;
    },
    finish: () => {},
    close: () => {},
  });
  const stdin = new PassThrough();
  const stdout = sink();
  const { log, waitFor } = awaitableLog();
  const running = runChatServer({ host: '127.0.0.1', port: 0, channel, log, input: stdin, output: stdout.stream });
  const [, port] = await waitFor(/^listening on 127\.0\.0\.1:(\d+)$/);
  const first = await peer(Number(port));
  first.resume();
  first.write('ok then !');
  await waitFor(/^peer 127\.0\.0\.1:\d+ dropped: authentication failed$/);
  const second = await peer(Number(port));
  await waitFor(/^peer connected from/, { count: 2 });
  second.write('fine');
  stdin.end();
  second.resume();
  await once(second, 'end');
  second.end();
  await running;
  assert.equal(stdout.text(), 'fine');
});

test('a peer that never completes the handshake is dropped after the deadline; the next one is served', async () => {
  let connections = 0;
  const channel: ChatChannelFactory = async (socket, role) => {
    if (++connections === 1) return new Promise(() => {}); // a handshake that never ends
    return plainChannel(socket, role);
  };
  const stdin = new PassThrough();
  const stdout = sink();
  const { log, waitFor } = awaitableLog();
  const running = runChatServer({ host: '127.0.0.1', port: 0, channel, log, input: stdin, output: stdout.stream, handshakeTimeoutMs: 200 });
  const [, port] = await waitFor(/^listening on 127\.0\.0\.1:(\d+)$/);
  const silent = await peer(Number(port));
  silent.resume();
  await waitFor(/^peer 127\.0\.0\.1:\d+ dropped: no handshake within 200 ms$/);
  await once(silent, 'close');
  const next = await peer(Number(port));
  next.resume();
  await waitFor(/^channel: plain TCP, no encryption$/);
  next.end('served');
  await waitFor(/^peer went away$/);
  stdin.end();
  await running;
  assert.equal(stdout.text(), 'served');
});

test('twenty peers arriving at once while one is active each get the busy notice and a closed connection', async () => {
  const stdin = new PassThrough();
  const stdout = sink();
  const { log, waitFor } = awaitableLog();
  const running = runChatServer({ host: '127.0.0.1', port: 0, channel: plainChannel, log, input: stdin, output: stdout.stream });
  const [, port] = await waitFor(/^listening on 127\.0\.0\.1:(\d+)$/);
  const active = await peer(Number(port));
  await waitFor(/^channel: /);
  const crowd = await Promise.all(Array.from({ length: 20 }, () => peer(Number(port))));
  const notices = await Promise.all(
    crowd.map(async (s) => {
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => chunks.push(c));
      await once(s, 'end');
      s.end();
      return Buffer.concat(chunks).toString();
    }),
  );
  assert.deepEqual(notices, crowd.map(() => DEFAULT_BUSY_NOTICE));
  assert.match(DEFAULT_BUSY_NOTICE, /^busy\b[^\n]*\n$/);
  await waitFor(/^busy: turned away 127\.0\.0\.1:\d+$/, { count: 20 });
  active.write('still served');
  stdin.end();
  active.resume();
  await once(active, 'end');
  active.end();
  await running;
  assert.equal(stdout.text(), 'still served');
});

test('the client turns a failed handshake into a one-line ChatError', async (t) => {
  const listener = createServer((s) => {
    s.on('error', () => {});
    s.resume();
  });
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  t.after(() => listener.close());
  const port = (listener.address() as { port: number }).port;
  const channel: ChatChannelFactory = async () => {
    throw new ChannelError('handshake failed: peer is not a crypto-server');
  };
  const { log } = awaitableLog();
  await assert.rejects(
    runChatClient({ host: '127.0.0.1', port, channel, log, input: new PassThrough(), output: sink().stream }),
    (err: unknown) =>
      err instanceof ChatError && err.message === `connection to 127.0.0.1:${port} failed: handshake failed: peer is not a crypto-server`,
  );
});

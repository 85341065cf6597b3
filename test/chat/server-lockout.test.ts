/**
 * Issue 11 part 1: a peer without the key cannot lock the encrypted chat server out. The server runs
 * in-process with the secure channel (crypto on the host device, default 10 s handshake deadline);
 * attackers connect and reconnect as soon as they are dropped, and a real client must get in within
 * 2 s: silent connections, connections that send a hello and stall, a replay of a real client's first
 * flight (which authenticates with the key but cannot confirm the transport keys), a flood from one
 * address beyond the per-source bound, and one that fills the whole table.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createServer, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { PassThrough, Writable } from 'node:stream';
import { runChatClient } from '../../src/chat/chat-client.js';
import { runChatServer, DEFAULT_BUSY_NOTICE } from '../../src/chat/chat-server.js';
import { secureChannel } from '../../src/chat/secure-channel.js';
import { encodeFrame, hello } from '../../src/chat/secure-framing.js';
import { createHostDevice } from '../../src/driver/host-device.js';
import type { CryptoDevice } from '../../src/driver/api.js';
import { awaitableLog } from '../fixtures/awaitable-log.js';

/** The bound for a real client to get in while attackers keep reconnecting. */
const GET_IN_MS = 2000;

function sink(): { stream: Writable; text: () => string; waitFor: (s: string) => Promise<void> } {
  const chunks: Buffer[] = [];
  let poke = () => {};
  return {
    stream: new Writable({
      write(c: Buffer, _e, cb) {
        chunks.push(c);
        poke();
        cb();
      },
    }),
    text: () => Buffer.concat(chunks).toString(),
    waitFor: (s) =>
      new Promise<void>((resolve) => {
        poke = () => {
          if (Buffer.concat(chunks).toString().includes(s)) resolve();
        };
        poke();
      }),
  };
}

/**
 * `parallel` attacker loops: each connects, sends `send` (if any), ignores what comes back, and
 * reconnects as soon as its connection closes. Returns a stop function and the attempt count.
 */
function attackerLoops(port: number, parallel: number, send?: Uint8Array, localAddress = '127.0.0.1'): { stop: () => void; attempts: () => number } {
  let stopped = false;
  let attempts = 0;
  const live = new Set<Socket>();
  const loop = () => {
    if (stopped) return;
    attempts++;
    const s = connect({ port, host: '127.0.0.1', localAddress });
    live.add(s);
    s.on('error', () => {});
    s.on('connect', () => {
      if (send !== undefined) s.write(send);
    });
    s.resume();
    s.on('close', () => {
      live.delete(s);
      setImmediate(loop);
    });
  };
  for (let i = 0; i < parallel; i++) loop();
  return {
    stop: () => {
      stopped = true;
      for (const s of live) s.destroy();
    },
    attempts: () => attempts,
  };
}

/** A real client's first flight (hello + "-> psk, e"), captured by a listener that then hangs up. */
async function captureFirstFlight(device: CryptoDevice, psk: Uint8Array): Promise<Buffer> {
  const FLIGHT = 5 + 2 + 32 + 16; // hello, frame length, e, the empty payload's tag
  const listener = createServer();
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  const port = (listener.address() as { port: number }).port;
  const captured = new Promise<Buffer>((resolve) => {
    listener.once('connection', (s: Socket) => {
      s.on('error', () => {});
      const chunks: Buffer[] = [];
      s.on('data', (c: Buffer) => {
        chunks.push(c);
        const all = Buffer.concat(chunks);
        if (all.length >= FLIGHT) {
          resolve(all.subarray(0, FLIGHT));
          s.destroy();
        }
      });
    });
  });
  const c = connect(port, '127.0.0.1');
  c.on('error', () => {});
  await once(c, 'connect');
  const failed = secureChannel({ device, psk })(c, 'client').catch(() => undefined);
  const flight = await captured;
  await failed;
  c.destroy();
  await new Promise<void>((r) => listener.close(() => r()));
  return flight;
}

interface Scenario {
  readonly name: string;
  /** What each attacker connection sends (undefined: nothing). */
  readonly send?: (device: CryptoDevice, psk: Uint8Array) => Promise<Uint8Array | undefined>;
  readonly parallel: number;
  /** The real client's source address (the attackers use 127.0.0.1; Linux routes all of 127/8 to lo). */
  readonly clientAddress?: string;
  readonly maxPendingHandshakes?: number;
  /** A line the server must have logged. */
  readonly logged?: RegExp;
}

const SCENARIOS: Scenario[] = [
  { name: 'silent connections', parallel: 4 },
  { name: 'a hello, then silence', parallel: 4, send: async () => hello() },
  { name: "a replay of a real client's hello and handshake message (it has no transport keys)", parallel: 4, send: captureFirstFlight },
  {
    name: "a replayed first flight followed by a forged key confirmation",
    parallel: 4,
    send: async (device, psk) => Buffer.concat([await captureFirstFlight(device, psk), encodeFrame(randomBytes(17))]),
    logged: /^peer 127\.0\.0\.1:\d+ dropped: authentication failed: the client could not confirm the handshake keys/,
  },
  {
    name: 'a flood of 40 silent connections from one address, beyond the per-source bound of 8; the client comes from another',
    parallel: 40,
    clientAddress: '127.0.0.2',
    logged: /^closed 127\.0\.0\.1:\d+: too many handshakes in progress from 127\.0\.0\.1/,
  },
  {
    name: 'replays from one address filling the whole table of 8 pending handshakes; the client comes from another',
    parallel: 20,
    send: captureFirstFlight,
    clientAddress: '127.0.0.2',
    maxPendingHandshakes: 8,
    logged: /^peer 127\.0\.0\.1:\d+ dropped: too many handshakes in progress \(127\.0\.0\.2 took its place\)$/,
  },
];

for (const scenario of SCENARIOS) {
  test(`attackers reconnecting in a loop (${scenario.name}): a real client gets in within ${GET_IN_MS} ms, and only it chats`, async (t) => {
    const device = createHostDevice();
    const psk = randomBytes(32);
    const stdin = new PassThrough();
    const stdout = sink();
    const server = awaitableLog();
    const running = runChatServer({
      host: '127.0.0.1',
      port: 0,
      channel: secureChannel({ device, psk }),
      log: server.log,
      input: stdin,
      output: stdout.stream,
      ...(scenario.maxPendingHandshakes !== undefined && { maxPendingHandshakes: scenario.maxPendingHandshakes }),
    });
    const attack = { stop: () => {}, attempts: () => 0 };
    try {
      const [, port] = await server.waitFor(/^listening on 127\.0\.0\.1:(\d+)$/);
      const payload = scenario.send === undefined ? undefined : await scenario.send(device, psk);
      Object.assign(attack, attackerLoops(Number(port), scenario.parallel, payload));
      // Let the attackers take whatever they can first.
      await new Promise((r) => setTimeout(r, 300));
      assert.ok(attack.attempts() >= scenario.parallel);

      const clientIn = new PassThrough();
      const clientOut = sink();
      const client = awaitableLog();
      const started = performance.now();
      const chatting = runChatClient({ host: '127.0.0.1', port: Number(port), channel: secureChannel({ device, psk }), log: client.log, input: clientIn, output: clientOut.stream, ...(scenario.clientAddress !== undefined && { localAddress: scenario.clientAddress }) });
      chatting.catch(() => {});
      await Promise.race([
        client.waitFor(/^channel: Noise/, { timeoutMs: GET_IN_MS }),
        chatting.then(() => assert.fail(`the client ended before chatting:\n${client.lines.join('\n')}`)),
      ]);
      clientIn.write('the real client got in\n');
      await stdout.waitFor('the real client got in\n');
      const elapsed = performance.now() - started;
      assert.ok(elapsed < GET_IN_MS, `took ${elapsed.toFixed(0)} ms`);
      t.diagnostic(`the real client's first message reached the server ${elapsed.toFixed(0)} ms after it started, against ${attack.attempts()} attacker connections so far`);
      await server.waitFor(/^peer connected from/);
      // Only the real client ever got the chat slot or a busy notice: no attacker authenticated.
      assert.equal(server.lines.filter((l) => /^peer connected from/.test(l)).length, 1, server.lines.join('\n'));
      assert.ok(!server.lines.some((l) => l.startsWith('busy:')), server.lines.join('\n'));
      assert.ok(!client.lines.some((l) => l.includes(DEFAULT_BUSY_NOTICE.trim())));
      if (scenario.logged !== undefined) assert.ok(server.lines.some((l) => scenario.logged!.test(l)), server.lines.join('\n'));
      attack.stop();
      clientIn.end();
      await chatting;
      stdin.end();
      await running;
      assert.equal(stdout.text(), 'the real client got in\n');
    } finally {
      attack.stop();
      stdin.end();
      await running.catch(() => {});
      await device.close();
    }
  });
}

test('a second real client that authenticates while a chat is on gets the busy notice through the channel and a one-line error', async () => {
  const device = createHostDevice();
  const psk = randomBytes(32);
  const stdin = new PassThrough();
  const stdout = sink();
  const server = awaitableLog();
  const running = runChatServer({ host: '127.0.0.1', port: 0, channel: secureChannel({ device, psk }), log: server.log, input: stdin, output: stdout.stream });
  try {
    const [, port] = await server.waitFor(/^listening on 127\.0\.0\.1:(\d+)$/);
    const firstIn = new PassThrough();
    const first = awaitableLog();
    const chatting = runChatClient({ host: '127.0.0.1', port: Number(port), channel: secureChannel({ device, psk }), log: first.log, input: firstIn, output: sink().stream });
    await server.waitFor(/^channel: Noise/);
    const second = awaitableLog();
    await assert.rejects(
      runChatClient({ host: '127.0.0.1', port: Number(port), channel: secureChannel({ device, psk }), log: second.log, input: new PassThrough(), output: sink().stream }),
      (err: Error) => {
        assert.equal(err.message, `connection dropped: the peer turned us away: ${DEFAULT_BUSY_NOTICE.trim()}`);
        return true;
      },
    );
    await server.waitFor(/^busy: turned away 127\.0\.0\.1:\d+$/);
    // A peer with another key is not told "busy": it never authenticated.
    const intruder = awaitableLog();
    await assert.rejects(
      runChatClient({ host: '127.0.0.1', port: Number(port), channel: secureChannel({ device, psk: randomBytes(32) }), log: intruder.log, input: new PassThrough(), output: sink().stream }),
      /authentication failed/,
    );
    assert.equal(server.lines.filter((l) => l.startsWith('busy:')).length, 1);
    firstIn.end('still here\n');
    await chatting;
    stdin.end();
    await running;
    assert.equal(stdout.text(), 'still here\n');
  } finally {
    stdin.end();
    await running.catch(() => {});
    await device.close();
  }
});

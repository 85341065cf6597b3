/**
 * Property tests (fast-check): whatever bytes an attacker sends, in whatever pieces, the Noise and
 * secure-channel parsers only ever raise their typed errors (NoiseError / ChannelError) and never
 * output anything; and the frame decoder gives the same frames however the stream is split.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { createServer, connect, type Socket } from 'node:net';
import { once } from 'node:events';
import { randomBytes } from 'node:crypto';
import { HandshakeState } from '../../src/chat/noise/handshake-state.js';
import { NoiseError } from '../../src/chat/noise/noise-error.js';
import { secureChannel } from '../../src/chat/secure-channel.js';
import { ChannelError, type ChatChannel } from '../../src/chat/chat-channel.js';
import { FrameDecoder, encodeFrame } from '../../src/chat/secure-framing.js';
import { createHostDevice } from '../../src/driver/host-device.js';

test('FrameDecoder: the same frames whatever the split points', () => {
  fc.assert(
    fc.property(
      fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 8 }),
      fc.array(fc.nat(), { maxLength: 10 }),
      (messages, cuts) => {
        const stream = Buffer.concat(messages.map(encodeFrame));
        const points = [...new Set(cuts.map((c) => c % (stream.length + 1)))].sort((a, b) => a - b);
        const decoder = new FrameDecoder();
        const frames: Uint8Array[] = [];
        let at = 0;
        for (const p of [...points, stream.length]) {
          frames.push(...decoder.push(stream.subarray(at, p)));
          at = p;
        }
        assert.equal(decoder.pending, 0);
        assert.deepEqual(frames.map((f) => Buffer.from(f).toString('hex')), messages.map((m) => Buffer.from(m).toString('hex')));
      },
    ),
    { numRuns: 200 },
  );
});

test('HandshakeState.readMessage: random first messages only raise NoiseError', async () => {
  const device = createHostDevice();
  const handle = await device.open();
  const psk = randomBytes(32);
  try {
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ maxLength: 200 }), async (message) => {
        const r = await HandshakeState.initialize(handle, { pattern: 'NNpsk0', initiator: false, prologue: new Uint8Array(0), psk });
        try {
          await r.readMessage(message);
          assert.fail('a random message authenticated');
        } catch (err) {
          assert.ok(err instanceof NoiseError, String(err));
        } finally {
          await r.destroy();
        }
      }),
      { numRuns: 100 },
    );
  } finally {
    await handle.close();
    await device.close();
  }
});

test('SecureChannel.open: random bytes after a real handshake only raise ChannelError and output nothing', async () => {
  const device = createHostDevice();
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as { port: number }).port;
  const psk = randomBytes(32);
  try {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.uint8Array({ minLength: 1, maxLength: 400 }), { minLength: 1, maxLength: 5 }), async (pieces) => {
        const accepted = once(server, 'connection') as Promise<[Socket]>;
        const c = connect(port, '127.0.0.1');
        const [s] = await accepted;
        for (const x of [c, s]) x.on('error', () => {});
        let rs: ChatChannel | undefined;
        let rc: ChatChannel | undefined;
        try {
          [rc, rs] = await Promise.all([secureChannel({ device, psk })(c, 'client'), secureChannel({ device, psk })(s, 'server')]);
          let rejected = false;
          for (const p of pieces) {
            try {
              assert.equal((await rs.open(p)).length, 0, 'random bytes produced output');
            } catch (err) {
              assert.ok(err instanceof ChannelError, String(err));
              rejected = true;
              break;
            }
          }
          if (!rejected) assert.throws(() => rs!.finish(), ChannelError);
        } finally {
          rc?.close();
          rs?.close();
          c.destroy();
          s.destroy();
        }
      }),
      { numRuns: 40 },
    );
  } finally {
    await new Promise<void>((r) => server.close(() => r()));
    await device.close();
  }
});

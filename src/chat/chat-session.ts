/**
 * One chat connection: stdin -> channel.seal -> socket and socket -> channel.open -> stdout, both
 * directions at once, each with back-pressure (a direction awaits its writes before reading more,
 * so memory stays flat whatever the input size). Event-driven: an idle session uses no CPU.
 *
 * The session ends, with a reason, when
 *  - the peer ends its stream (FIN) ........................ 'peer-closed'
 *  - the socket fails (reset, write to a closed peer) ...... 'peer-reset'
 *  - the channel rejects bytes (ChannelError) or fails ..... 'channel-error'
 *  - our input ends: we send what is left, half-close (FIN) and read what the peer still sends
 *    until it closes too, or stays silent for `lingerMs` ... 'input-ended'
 *  - writing to our output (stdout) fails .................. 'output-error'
 *  - reading our input (stdin) fails ....................... 'input-error'
 * It never throws. The socket is closed and `channel.close()` called before it resolves.
 */
import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import type { ChatChannel } from './chat-channel.js';
import { ABORTED, type ChunkSource } from './chunk-source.js';

export type ChatSessionEnd =
  | { readonly reason: 'peer-closed' | 'input-ended' }
  | { readonly reason: 'peer-reset' | 'channel-error' | 'output-error' | 'input-error'; readonly error: Error };

export interface ChatSessionOptions {
  readonly socket: Socket;
  readonly channel: ChatChannel;
  /** Plaintext to send (stdin); shared across sessions, so unsent chunks go to the next peer. */
  readonly input: ChunkSource;
  /** Where the peer's plaintext goes (stdout). */
  readonly output: Writable;
  /**
   * After our FIN (or the peer's): how long the peer may stay silent before the connection is
   * dropped instead of closed cleanly (reset on every chunk received).
   */
  readonly lingerMs: number;
}

export async function runChatSession(options: ChatSessionOptions): Promise<ChatSessionEnd> {
  const { socket, channel, input, output, lingerMs } = options;
  const stop = new AbortController();
  let end: ChatSessionEnd | undefined;
  let inputEnded = false;
  let linger: NodeJS.Timeout | undefined;
  const settle = (result: ChatSessionEnd) => {
    end ??= result;
    stop.abort();
  };
  const startLinger = () => {
    linger ??= setTimeout(() => socket.destroy(), lingerMs);
  };

  // The plumbing's own listener: an 'error' event must never go unhandled (that would crash).
  const onSocketError = () => {};
  socket.on('error', onSocketError);

  const down = async () => {
    try {
      for await (const wire of socket as AsyncIterable<Buffer>) {
        linger?.refresh(); // the linger bounds the peer's silence, not a long final transfer
        let plaintext: Uint8Array;
        try {
          plaintext = await channel.open(wire);
        } catch (err) {
          return settle({ reason: 'channel-error', error: asError(err) });
        }
        if (plaintext.length === 0) continue;
        try {
          await writeAll(output, plaintext);
        } catch (err) {
          return settle({ reason: 'output-error', error: asError(err) });
        }
      }
    } catch (err) {
      // A reset, or our own destroy() after the linger: the stream did not end cleanly.
      return settle(inputEnded ? { reason: 'input-ended' } : { reason: 'peer-reset', error: asError(err) });
    }
    try {
      channel.finish();
    } catch (err) {
      return settle({ reason: 'channel-error', error: asError(err) });
    }
    settle(inputEnded ? { reason: 'input-ended' } : { reason: 'peer-closed' });
  };

  const up = async () => {
    for (;;) {
      let chunk: Uint8Array | null | typeof ABORTED;
      try {
        chunk = await input.next(stop.signal);
      } catch (err) {
        return settle({ reason: 'input-error', error: asError(err) });
      }
      if (chunk === ABORTED) return;
      if (chunk === null) {
        // EOF on our input: everything read so far has been written; send FIN after it and keep
        // reading the peer's last bytes until it closes (bounded by the linger).
        inputEnded = true;
        socket.end();
        startLinger();
        return;
      }
      let wire: Uint8Array;
      try {
        wire = await channel.seal(chunk);
      } catch (err) {
        input.unshift(chunk);
        return settle({ reason: 'channel-error', error: asError(err) });
      }
      if (end !== undefined || socket.destroyed || !socket.writable) {
        // The connection is gone before this chunk left: keep it for the next peer.
        input.unshift(chunk);
        return;
      }
      try {
        await writeAll(socket, wire);
      } catch (err) {
        return settle({ reason: 'peer-reset', error: asError(err) });
      }
    }
  };

  const loops = Promise.all([down(), up()]);
  await new Promise<void>((resolve) => {
    if (stop.signal.aborted) resolve();
    else stop.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  const result = end ?? { reason: 'peer-closed' };
  if (result.reason === 'peer-closed' || result.reason === 'input-ended') {
    // Clean end: let our pending bytes and FIN go out, then the socket closes by itself.
    socket.end();
    startLinger();
  } else {
    socket.destroy();
  }
  if (!socket.closed) await new Promise((resolve) => socket.once('close', resolve));
  clearTimeout(linger);
  await loops;
  socket.off('error', onSocketError);
  socket.on('error', () => {}); // late errors on a closed socket stay harmless
  try {
    channel.close();
  } catch {
    // close() must not throw; if it does anyway, the session is over regardless.
  }
  return result;
}

/**
 * Writes `data` and resolves once the stream accepts more (back-pressure), or rejects if the
 * stream is closed or fails first. Never leaves listeners behind.
 */
export function writeAll(stream: Writable, data: Uint8Array): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    if (stream.destroyed || stream.writableEnded) {
      reject(new Error('write after the stream was closed'));
      return;
    }
    if (stream.write(data)) {
      resolve();
      return;
    }
    const cleanup = () => {
      stream.off('drain', onDrain);
      stream.off('error', onError);
      stream.off('close', onClose);
    };
    const onDrain = () => {
      cleanup();
      resolve();
    };
    const onError = (err: Error) => {
      cleanup();
      reject(err);
    };
    const onClose = () => {
      cleanup();
      reject(new Error('the stream closed before its data was written'));
    };
    stream.on('drain', onDrain);
    stream.on('error', onError);
    stream.on('close', onClose);
  });
}

export function asError(err: unknown): Error {
  return err instanceof Error ? err : new Error(String(err));
}

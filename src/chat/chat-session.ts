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
 * With a channel that has an end-of-chat (`channel.end`, the secure chat): we send it before every
 * FIN of ours (also when the peer ended first); the peer's FIN or a reset counts as a clean end only
 * after the peer's end-of-chat, else it is 'channel-error' ("connection truncated").
 * The socket should be half-open (`allowHalfOpen`), so the peer's FIN leaves our direction open.
 * It never throws. The socket is closed and `channel.close()` called before it resolves.
 */
import type { Socket } from 'node:net';
import type { Writable } from 'node:stream';
import { ChannelError, type ChatChannel } from './chat-channel.js';
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
  let lingerExpired = false;
  const settle = (result: ChatSessionEnd) => {
    end ??= result;
    stop.abort();
  };
  const startLinger = () => {
    linger ??= setTimeout(() => {
      lingerExpired = true;
      socket.destroy();
    }, lingerMs);
  };
  const cleanEnd = (): ChatSessionEnd => (inputEnded ? { reason: 'input-ended' } : { reason: 'peer-closed' });
  /**
   * The connection broke (reset, write to a closed peer, or our own destroy after the linger). After
   * the peer's authenticated end-of-chat that is a normal end; before it, a channel that
   * authenticates the end of its stream reports truncation (frames may have been cut off).
   */
  const brokenEnd = (err: Error): ChatSessionEnd => {
    if (channel.peerEnded?.() === true) return cleanEnd();
    if (lingerExpired) return { reason: 'input-ended' }; // we stopped waiting for the peer ourselves
    if (channel.end !== undefined) {
      return { reason: 'channel-error', error: new ChannelError(`connection truncated: it broke before the peer's authenticated end of chat (${err.message})`, { cause: err }) };
    }
    return inputEnded ? { reason: 'input-ended' } : { reason: 'peer-reset', error: err };
  };

  /**
   * Sends the channel's end-of-chat bytes once (if it has any), after every sealed chunk. Resolves
   * with the session end to report if that failed, else undefined. Only called while no seal() runs.
   */
  let endSent = false;
  const sendEnd = async (): Promise<ChatSessionEnd | undefined> => {
    if (endSent || channel.end === undefined) return undefined;
    endSent = true;
    if (socket.destroyed || !socket.writable) return undefined;
    let wire: Uint8Array;
    try {
      wire = await channel.end();
    } catch (err) {
      return { reason: 'channel-error', error: asError(err) };
    }
    try {
      await writeAll(socket, wire);
    } catch (err) {
      return brokenEnd(asError(err));
    }
    return undefined;
  };

  // The plumbing's own listener: an 'error' event must never go unhandled (that would crash).
  const onSocketError = () => {};
  socket.on('error', onSocketError);

  const down = async () => {
    try {
      // destroyOnReturn false: the peer's FIN must not destroy the socket, our direction still has
      // to send its last bytes (and end of chat) and its own FIN.
      for await (const wire of socket.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>) {
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
      // A reset, or our own destroy() after the linger: the stream did not end with a FIN.
      return settle(brokenEnd(asError(err)));
    }
    try {
      channel.finish();
    } catch (err) {
      return settle({ reason: 'channel-error', error: asError(err) });
    }
    settle(cleanEnd());
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
        // EOF on our input: everything read so far has been written; send the end-of-chat and FIN
        // after it, and keep reading the peer's last bytes until it closes (bounded by the linger).
        inputEnded = true;
        const failed = await sendEnd();
        if (failed !== undefined) return settle(failed);
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
      // The connection is gone before this chunk left: keep it for the next peer. If the session
      // merely ended cleanly meanwhile (the peer closed), a channel that authenticates its stream
      // still sends the chunk it sealed (it is part of the stream; the peer reads until our end);
      // the plain chat keeps it for the next peer as before.
      if (socket.destroyed || !socket.writable || (end !== undefined && channel.end === undefined)) {
        input.unshift(chunk);
        return;
      }
      try {
        await writeAll(socket, wire);
      } catch (err) {
        return settle(brokenEnd(asError(err)));
      }
      if (end !== undefined) return;
    }
  };

  const upDone = up();
  const loops = Promise.all([down(), upDone]);
  await new Promise<void>((resolve) => {
    if (stop.signal.aborted) resolve();
    else stop.signal.addEventListener('abort', () => resolve(), { once: true });
  });
  let result = end ?? { reason: 'peer-closed' };
  if (result.reason === 'peer-closed' || result.reason === 'input-ended') {
    // Clean end: the chunk in flight goes out, then our end-of-chat (if not sent yet) and FIN; the
    // socket closes by itself once the peer's FIN is in. The linger bounds all of it.
    startLinger();
    await upDone;
    const failed = await sendEnd();
    if (failed !== undefined && failed.reason !== 'peer-closed' && failed.reason !== 'input-ended') {
      result = failed;
      socket.destroy();
    } else {
      socket.end();
    }
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

/**
 * Runs a ChatChannelFactory on a fresh connection with a deadline, so a peer that connects and
 * never finishes its handshake cannot hold the one-peer server (or a client) forever.
 */
import type { Socket } from 'node:net';
import type { Readable, Writable } from 'node:stream';
import { ChannelError, type ChatChannel, type ChatChannelFactory, type ChatRole } from './chat-channel.js';

/** Default deadline for a channel's handshake. */
export const DEFAULT_HANDSHAKE_TIMEOUT_MS = 10_000;

/** How long a closing connection may take to finish its FIN exchange. */
export const DEFAULT_LINGER_MS = 2000;

/** What the chat server and the chat client both take. */
export interface ChatEndpointOptions {
  readonly host: string;
  readonly port: number;
  readonly channel: ChatChannelFactory;
  /** One line on stderr per status change (no trailing newline). */
  readonly log: (line: string) => void;
  /** Default process.stdin / process.stdout. */
  readonly input?: Readable;
  readonly output?: Writable;
  /** How long a closing connection may take to finish its FIN exchange (default 2000 ms). */
  readonly lingerMs?: number;
  /** Deadline for the channel factory (its handshake), default 10000 ms. */
  readonly handshakeTimeoutMs?: number;
}

/**
 * Resolves with the factory's channel, or rejects with the factory's error, or with a
 * ChannelError after `timeoutMs` (the socket is then destroyed, and a channel that the factory
 * still delivers afterwards is closed at once).
 */
export function openChannel(factory: ChatChannelFactory, socket: Socket, role: ChatRole, timeoutMs: number): Promise<ChatChannel> {
  return new Promise<ChatChannel>((resolve, reject) => {
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      socket.destroy();
      reject(new ChannelError(`no handshake within ${timeoutMs} ms`));
    }, timeoutMs);
    let pending: Promise<ChatChannel>;
    try {
      pending = factory(socket, role);
    } catch (err) {
      pending = Promise.reject(err); // a factory that throws synchronously breaks its contract; survive it
    }
    pending.then(
      (channel) => {
        clearTimeout(timer);
        if (timedOut) {
          try {
            channel.close();
          } catch {
            // close() must not throw; the connection is gone either way.
          }
        } else {
          resolve(channel);
        }
      },
      (err: unknown) => {
        clearTimeout(timer);
        if (!timedOut) reject(err);
      },
    );
  });
}

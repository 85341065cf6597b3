/**
 * The pluggable channel between a chat's terminal (stdin/stdout) and its TCP socket.
 *
 * The chat plumbing (chat-server.ts, chat-client.ts, chat-session.ts) is the same for the plain
 * chat (`vcrypto server`/`client`) and the encrypted one (`crypto-server`/`crypto-client`): status
 * lines on stderr, one peer at a time, a busy notice for a second peer, EOF handling, no crash on
 * resets, back-pressure both ways. The only difference is the channel:
 *
 *   stdin --plaintext--> channel.seal() --wire bytes--> socket
 *   socket --wire bytes--> channel.open() --plaintext--> stdout
 *
 * Contract for a `ChatChannelFactory(socket, role)`:
 *  - It is called once per connection, right after the TCP connection is established, before any
 *    chat data moves. It may do a handshake on `socket` (write to it, read from it with
 *    `socket.read()`/'data' events). If it read more bytes than its handshake needs, it must give the
 *    rest back with `socket.unshift(rest)` and leave the socket paused before resolving.
 *  - It must reject (never hang, never throw synchronously) when the socket closes or errors, or
 *    the peer breaks the handshake. The plumbing closes THAT connection and reports the error's
 *    message on stderr; the server then waits for the next peer. The plumbing attaches its own
 *    'error' listener to the socket before calling the factory, so the factory need not.
 *  - It must not keep listeners on the socket after it settles (remove what it added).
 *  - If it has not settled within the server's/client's `handshakeTimeoutMs` (default 10 s), the
 *    plumbing destroys the socket and drops the peer; a channel delivered later is closed at once.
 *
 * Contract for a `ChatChannel`:
 *  - `seal` and `open` are called strictly one at a time per direction (the plumbing awaits each
 *    call before the next), in stream order. The two directions may run concurrently.
 *  - `seal(plaintext)` returns the wire bytes to send for that chunk (any framing inside).
 *  - `open(wire)` receives the socket's bytes exactly as TCP delivered them (split anywhere) and
 *    returns the plaintext they complete (possibly empty). Bad bytes: throw `ChannelError`; the
 *    plumbing then drops the connection (not the process).
 *  - `finish()` is called when the peer ends the stream cleanly (TCP FIN): throw `ChannelError`
 *    if a partial frame is left over, or (for a channel with `end`) if the peer's authenticated
 *    end-of-chat did not come first (truncation), otherwise return.
 *  - `end()` (optional) returns the wire bytes announcing the clean end of OUR stream, sealed like
 *    any message. The plumbing calls it at most once, after the last `seal()` (never concurrently
 *    with one), writes its bytes, and only then half-closes (FIN): on input EOF, and also when the
 *    peer ended first (we still end our direction properly before closing). A channel without `end`
 *    (the plain chat) sends nothing extra.
 *  - `refuse(notice)` (optional, server side) returns the wire bytes that tell a peer which completed
 *    its handshake while another chat is in progress that it is turned away; called at most once,
 *    instead of any seal(), then the connection is closed. A channel without it gets the raw notice.
 *  - `peerEnded()` (optional) is true once the peer's authenticated end-of-chat has been opened: a
 *    reset or a failed write after it is a normal end of the chat, not an error.
 *  - A channel with `end` authenticates the whole stream, so a sealed chunk must go out before the
 *    end-of-chat even if the peer has meanwhile ended its own direction (dropping it would leave a
 *    gap the peer reports as tampering). And a reset before the peer's end-of-chat is reported as a
 *    truncated connection, not as the peer going away.
 *  - `close()` is called exactly once when the connection is over, whatever the reason (also after
 *    an error): release resources and zero the keys. It must not throw.
 *  - `status` is one line for stderr describing the channel (e.g. which device does the crypto);
 *    never a secret.
 *  - The plumbing never modifies or reuses a buffer after passing it in, so a channel may return
 *    it as is (the identity channel does); a returned buffer is written out and then dropped.
 */
import type { Socket } from 'node:net';

export type ChatRole = 'server' | 'client';

export interface ChatChannel {
  /** One line for stderr, e.g. "plain TCP (no encryption)". Never a secret. */
  readonly status: string;
  /** Plaintext from stdin -> wire bytes for the socket. */
  seal(plaintext: Uint8Array): Promise<Uint8Array>;
  /** Wire bytes from the socket (split anywhere) -> plaintext for stdout (possibly empty). */
  open(wire: Uint8Array): Promise<Uint8Array>;
  /** The peer ended its stream cleanly: throw ChannelError if that truncated a frame. */
  finish(): void;
  /** Optional: the wire bytes that end our stream (sent after the last message, before FIN). */
  end?(): Promise<Uint8Array> | Uint8Array;
  /** Optional: the peer's authenticated end of stream has arrived. */
  peerEnded?(): boolean;
  /**
   * Optional, server side: the wire bytes that turn this (authenticated) peer away with `notice`
   * because another chat is in progress; the connection closes after them. Without it the server
   * sends `notice` raw (the plain chat, so `nc` shows it).
   */
  refuse?(notice: string): Promise<Uint8Array> | Uint8Array;
  /** The connection is over: release resources, zero keys. Never throws. */
  close(): void;
}

/** Sets up a channel on a freshly connected socket (may handshake). See the contract above. */
export type ChatChannelFactory = (socket: Socket, role: ChatRole) => Promise<ChatChannel>;

/**
 * The peer sent bytes the channel cannot accept (bad frame, failed authentication, truncated
 * stream). Ends only that connection; the message is printed as one line on stderr.
 */
export class ChannelError extends Error {
  override readonly name = 'ChannelError';
}

/** The plain chat's channel: the identity. Raw bytes on the wire, so `nc` can be the other peer. */
export const plainChannel: ChatChannelFactory = async () => ({
  status: 'plain TCP, no encryption',
  seal: async (plaintext) => plaintext,
  open: async (wire) => wire,
  finish: () => {},
  close: () => {},
});

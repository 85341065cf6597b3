/**
 * The chat server: listens on host:port and chats with one peer at a time over a pluggable channel.
 *
 *  - Status lines go to `log` (stderr): "listening on HOST:PORT", "peer connected from ADDR:PORT",
 *    the channel's status, "peer went away", "busy: turned away ADDR:PORT".
 *  - Handshakes run concurrently, apart from the chat: the chat slot goes to the first peer whose
 *    channel handshake completes (for the secure chat: the first peer that proves it holds the key),
 *    so a peer that connects and never finishes its handshake cannot keep anybody else out. A
 *    handshake that takes longer than `handshakeTimeoutMs` is dropped. Bounds, against floods:
 *    at most `maxPendingPerSource` (default 8) connections from one remote address are in their
 *    handshake at once; a further one from that address is closed at once (a flood from one address
 *    only shuts out that address, as with sshd's PerSourceMaxStartups). At most
 *    `maxPendingHandshakes` (default 64) in all: when full, the address holding the most pending
 *    handshakes gives up its oldest one for the newcomer (fair share), unless the newcomer's own
 *    address holds as many (then the newcomer is closed). Connections the bounds close are logged
 *    at most once a second (per kind, with a count).
 *  - A peer whose handshake completes while another one chats gets `busyNotice` (through the
 *    channel's `refuse` if it has one, else as raw bytes: one line) and is closed at once.
 *  - When the peer leaves (FIN, reset, or a channel error) the server says so and waits for the next.
 *  - Stdin is shared by all peers: what is typed while nobody is connected goes to the next peer.
 *    EOF on stdin closes the current peer (after sending what is left) and `runChatServer` resolves.
 *  - Port 0 binds any free port; the "listening" line gives the actual one.
 *
 * Failures to listen reject with a one-line `ChatError`; failures writing stdout too.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { ChatChannel } from './chat-channel.js';
import { ChatError, errorLine } from './chat-error.js';
import { runChatSession } from './chat-session.js';
import { ChunkSource } from './chunk-source.js';
import { DEFAULT_HANDSHAKE_TIMEOUT_MS, DEFAULT_LINGER_MS, openChannel, type ChatEndpointOptions } from './open-channel.js';

export interface ChatServerOptions extends ChatEndpointOptions {
  /** Sent to a peer that completed its handshake while another one is chatting. */
  readonly busyNotice?: string;
  /** Connections in their handshake at once (default 64); see the fair-share rule above. */
  readonly maxPendingHandshakes?: number;
  /** Of those, from one remote address (default 8); a further one from that address is closed at once. */
  readonly maxPendingPerSource?: number;
}

export const DEFAULT_BUSY_NOTICE = 'busy: the server is chatting with another peer, try again later\n';
export const DEFAULT_MAX_PENDING_HANDSHAKES = 64;
export const DEFAULT_MAX_PENDING_PER_SOURCE = 8;

/** A connection in its handshake. */
interface Pending {
  readonly socket: Socket;
  readonly source: string;
  /** Why the server pushed it out (then its handshake's own failure is not what gets logged). */
  evicted?: string;
}

/** A peer whose handshake completed, handed to the chat loop. */
interface Ready {
  readonly socket: Socket;
  readonly channel: ChatChannel;
  readonly from: string;
}

export async function runChatServer(options: ChatServerOptions): Promise<void> {
  const { host, port, channel, log } = options;
  const output = options.output ?? process.stdout;
  const busyNotice = options.busyNotice ?? DEFAULT_BUSY_NOTICE;
  const lingerMs = options.lingerMs ?? DEFAULT_LINGER_MS;
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const maxPending = Math.max(1, options.maxPendingHandshakes ?? DEFAULT_MAX_PENDING_HANDSHAKES);
  const maxPerSource = Math.max(1, options.maxPendingPerSource ?? DEFAULT_MAX_PENDING_PER_SOURCE);
  const input = new ChunkSource(options.input ?? process.stdin);

  // stdout failures (EPIPE when the reader went away) surface through writeAll; never crash here.
  const onOutputError = () => {};
  output.on('error', onOutputError);

  /** Connections in their handshake, oldest first (a Set keeps insertion order). */
  const pending = new Set<Pending>();
  /** How many of them each remote address holds. */
  const perSource = new Map<string, number>();
  /** The peer that won the chat slot, waiting for the loop below. */
  let waiting: Ready | undefined;
  let wake: (() => void) | undefined;
  /** The chat slot is taken (by `waiting` or by the running session). */
  let busy = false;
  let closing = false;

  const add = (entry: Pending) => {
    pending.add(entry);
    perSource.set(entry.source, (perSource.get(entry.source) ?? 0) + 1);
  };
  const remove = (entry: Pending) => {
    if (!pending.delete(entry)) return;
    const n = (perSource.get(entry.source) ?? 1) - 1;
    if (n === 0) perSource.delete(entry.source);
    else perSource.set(entry.source, n);
  };
  const evict = (victim: Pending, why: string) => {
    victim.evicted = why;
    remove(victim);
    victim.socket.destroy();
  };
  /** One log line a second at most for each kind of connection the bounds close (a flood must not flood stderr). */
  const limitedLog = () => {
    let loggedAt = -Infinity;
    let since = 0;
    return (line: string) => {
      since++;
      const now = performance.now();
      if (now - loggedAt < 1000) return;
      log(`${line}${since > 1 ? ` (${since} such connections since the last such line)` : ''}`);
      loggedAt = now;
      since = 0;
    };
  };
  const logRefused = limitedLog();
  const logEvicted = limitedLog();
  const refuse = (socket: Socket, from: string, why: string) => {
    socket.destroy();
    logRefused(`closed ${from}: ${why}`);
  };

  /** The handshake completed: the peer takes the free chat slot, or is turned away. */
  const authenticated = (socket: Socket, ch: ChatChannel) => {
    if (closing || socket.destroyed) {
      closeChannel(ch);
      socket.destroy();
      return;
    }
    if (busy) {
      void turnAway(socket, ch, busyNotice, lingerMs, log);
      return;
    }
    busy = true;
    waiting = { socket, channel: ch, from: remote(socket) };
    wake?.();
  };

  // allowHalfOpen: the peer's FIN must not end our direction too; the session ends it itself, after
  // its last bytes (and, for the secure chat, its authenticated end of chat).
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    if (closing) {
      socket.destroy();
      return;
    }
    const from = remote(socket);
    const entry: Pending = { socket, source: socket.remoteAddress ?? '?' };
    const mine = perSource.get(entry.source) ?? 0;
    if (mine >= maxPerSource) {
      refuse(socket, from, `too many handshakes in progress from ${entry.source}`);
      return;
    }
    if (pending.size >= maxPending) {
      // Fair share: the address with the most pending handshakes gives up its oldest one.
      let top: string | undefined;
      let topCount = 0;
      for (const [source, n] of perSource) {
        if (n > topCount) [top, topCount] = [source, n];
      }
      if (top === undefined || topCount <= mine + 1) {
        refuse(socket, from, 'too many handshakes in progress');
        return;
      }
      for (const p of pending) {
        if (p.source !== top) continue;
        evict(p, `too many handshakes in progress (${entry.source} took its place)`);
        break;
      }
    }
    add(entry);
    openChannel(channel, socket, 'server', handshakeTimeoutMs).then(
      (ch) => {
        remove(entry);
        authenticated(socket, ch);
      },
      (err: unknown) => {
        remove(entry);
        socket.destroy();
        if (closing) return;
        if (entry.evicted !== undefined) logEvicted(`peer ${from} dropped: ${entry.evicted}`);
        else log(`peer ${from} dropped: ${errorLine(err)}`);
      },
    );
  });

  try {
    const address = await listen(server, host, port);
    log(`listening on ${address}`);

    for (;;) {
      // Idle: wait for an authenticated peer, or for EOF on stdin (a chunk typed meanwhile is kept for the peer).
      const idle = new AbortController();
      let readError: unknown;
      const peer = await new Promise<Ready | null>((resolve) => {
        if (waiting !== undefined) return resolve(waiting);
        wake = () => resolve(waiting ?? null);
        void input.next(idle.signal).then(
          (chunk) => {
            if (chunk === null) resolve(null);
            else if (typeof chunk !== 'symbol') input.unshift(chunk);
          },
          (err: unknown) => {
            readError = err ?? new Error('read failed');
            resolve(null);
          },
        );
      });
      idle.abort();
      wake = undefined;
      waiting = undefined;
      if (readError !== undefined) {
        if (peer !== null) dropReady(peer);
        throw new ChatError(`cannot read stdin: ${errorLine(readError)}`);
      }
      if (peer === null) return; // EOF on stdin with nobody connected

      const { socket, channel: ch, from } = peer;
      log(`peer connected from ${from}`);
      log(`channel: ${ch.status}`);
      const end = await runChatSession({ socket, channel: ch, input, output, lingerMs });
      busy = false;
      switch (end.reason) {
        case 'peer-closed':
          log('peer went away');
          break;
        case 'peer-reset':
          log(`peer went away (${errorLine(end.error)})`);
          break;
        case 'channel-error':
          log(`peer ${from} dropped: ${errorLine(end.error)}`);
          break;
        case 'input-ended':
          log('end of input: closed the connection');
          return;
        case 'input-error':
          throw new ChatError(`cannot read stdin: ${errorLine(end.error)}`);
        case 'output-error':
          throw new ChatError(`cannot write stdout: ${errorLine(end.error)}`);
      }
    }
  } finally {
    closing = true;
    if (waiting !== undefined) dropReady(waiting);
    for (const p of pending) p.socket.destroy();
    pending.clear();
    perSource.clear();
    input.close();
    output.off('error', onOutputError);
    output.on('error', () => {});
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}

function dropReady(peer: Ready): void {
  closeChannel(peer.channel);
  peer.socket.destroy();
}

function closeChannel(ch: ChatChannel): void {
  try {
    ch.close();
  } catch {
    // close() must not throw; the connection is gone either way.
  }
}

function listen(server: Server, host: string, port: number): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const onError = (err: NodeJS.ErrnoException) => {
      const why =
        err.code === 'EADDRINUSE' ? 'address already in use'
        : err.code === 'EADDRNOTAVAIL' ? 'no such local address'
        : err.code === 'EACCES' ? 'permission denied'
        : err.code === 'ENOTFOUND' || err.code === 'EAI_AGAIN' ? 'unknown host'
        : err.message;
      reject(new ChatError(`cannot listen on ${host}:${port}: ${why}`, { cause: err }));
    };
    server.once('error', onError);
    server.listen({ host, port }, () => {
      server.off('error', onError);
      server.on('error', () => {}); // accept() errors after listening (EMFILE) must not crash
      const a = server.address();
      resolve(a !== null && typeof a === 'object' ? formatAddress(a.address, a.port) : String(a));
    });
  });
}

/**
 * Sends the busy notice (sealed by the channel if it can, else raw), half-closes, and drops the
 * connection if the peer does not close within the linger.
 */
async function turnAway(socket: Socket, ch: ChatChannel, notice: string, lingerMs: number, log: (line: string) => void): Promise<void> {
  log(`busy: turned away ${remote(socket)}`);
  let wire: Uint8Array | string = notice;
  try {
    if (ch.refuse !== undefined) wire = await ch.refuse(notice);
  } catch {
    wire = ''; // the channel failed: close without a notice
  } finally {
    closeChannel(ch);
  }
  socket.resume(); // discard whatever it sends, so its FIN is seen
  socket.end(wire);
  const timer = setTimeout(() => socket.destroy(), lingerMs);
  socket.once('close', () => clearTimeout(timer));
}

function remote(socket: Socket): string {
  return formatAddress(socket.remoteAddress ?? '?', socket.remotePort ?? 0);
}

function formatAddress(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

/**
 * The chat server: listens on host:port and chats with one peer at a time over a pluggable channel.
 *
 *  - Status lines go to `log` (stderr): "listening on HOST:PORT", "peer connected from ADDR:PORT",
 *    the channel's status, "peer went away", "busy: turned away ADDR:PORT".
 *  - A second peer that connects while one is active gets `busyNotice` (one line, raw bytes) and
 *    is closed at once, so it never waits in the backlog.
 *  - When the peer leaves (FIN, reset, or a channel error) the server says so and waits for the next.
 *    A peer whose channel handshake takes longer than `handshakeTimeoutMs` is dropped the same way.
 *  - Stdin is shared by all peers: what is typed while nobody is connected goes to the next peer.
 *    EOF on stdin closes the current peer (after sending what is left) and `runChatServer` resolves.
 *  - Port 0 binds any free port; the "listening" line gives the actual one.
 *
 * Failures to listen reject with a one-line `ChatError`; failures writing stdout too.
 */
import { createServer, type Server, type Socket } from 'node:net';
import { ChatError, errorLine } from './chat-error.js';
import { runChatSession } from './chat-session.js';
import { ChunkSource } from './chunk-source.js';
import { DEFAULT_HANDSHAKE_TIMEOUT_MS, DEFAULT_LINGER_MS, openChannel, type ChatEndpointOptions } from './open-channel.js';

export interface ChatServerOptions extends ChatEndpointOptions {
  /** Sent raw to a peer turned away while another one is active. */
  readonly busyNotice?: string;
}

export const DEFAULT_BUSY_NOTICE = 'busy: the server is chatting with another peer, try again later\n';

export async function runChatServer(options: ChatServerOptions): Promise<void> {
  const { host, port, channel, log } = options;
  const output = options.output ?? process.stdout;
  const busyNotice = options.busyNotice ?? DEFAULT_BUSY_NOTICE;
  const lingerMs = options.lingerMs ?? DEFAULT_LINGER_MS;
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const input = new ChunkSource(options.input ?? process.stdin);

  // stdout failures (EPIPE when the reader went away) surface through writeAll; never crash here.
  const onOutputError = () => {};
  output.on('error', onOutputError);

  /** Connections accepted while idle, waiting for the loop below (at most one). */
  let waiting: Socket | undefined;
  let wake: (() => void) | undefined;
  let busy = false;
  let closing = false;

  // allowHalfOpen: the peer's FIN must not end our direction too; the session ends it itself, after
  // its last bytes (and, for the secure chat, its authenticated end of chat).
  const server = createServer({ allowHalfOpen: true }, (socket) => {
    socket.on('error', () => {});
    if (busy || waiting !== undefined || closing) {
      turnAway(socket, busyNotice, lingerMs, log);
      return;
    }
    waiting = socket;
    wake?.();
  });

  try {
    const address = await listen(server, host, port);
    log(`listening on ${address}`);

    for (;;) {
      // Idle: wait for a peer, or for EOF on stdin (a chunk typed meanwhile is kept for the peer).
      const idle = new AbortController();
      let readError: unknown;
      const peer = await new Promise<Socket | null>((resolve) => {
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
      if (readError !== undefined) throw new ChatError(`cannot read stdin: ${errorLine(readError)}`);
      if (peer === null) return; // EOF on stdin with nobody connected

      busy = true;
      const from = remote(peer);
      log(`peer connected from ${from}`);
      let ch;
      try {
        ch = await openChannel(channel, peer, 'server', handshakeTimeoutMs);
      } catch (err) {
        peer.destroy();
        log(`peer ${from} dropped: ${errorLine(err)}`);
        busy = false;
        continue;
      }
      log(`channel: ${ch.status}`);
      const end = await runChatSession({ socket: peer, channel: ch, input, output, lingerMs });
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
    waiting?.destroy();
    input.close();
    output.off('error', onOutputError);
    output.on('error', () => {});
    await new Promise<void>((resolve) => server.close(() => resolve()));
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

/** Sends the busy notice, half-closes, and drops the connection if the peer does not close. */
function turnAway(socket: Socket, notice: string, lingerMs: number, log: (line: string) => void): void {
  log(`busy: turned away ${remote(socket)}`);
  socket.resume(); // discard whatever it sends, so its FIN is seen
  socket.end(notice);
  const timer = setTimeout(() => socket.destroy(), lingerMs);
  socket.once('close', () => clearTimeout(timer));
}

function remote(socket: Socket): string {
  return formatAddress(socket.remoteAddress ?? '?', socket.remotePort ?? 0);
}

function formatAddress(address: string, port: number): string {
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

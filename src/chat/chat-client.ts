/**
 * The chat client: connects to host:port and chats over a pluggable channel until either side ends.
 *
 *  - Status lines go to `log` (stderr): "connected to HOST:PORT", the channel's status, and how the
 *    chat ended. Stdout carries only the peer's data.
 *  - EOF on stdin: what is left is sent, the connection is closed cleanly (FIN; the peer's last
 *    bytes are still shown until it closes too), and `runChatClient` resolves.
 *  - The peer closing or resetting the connection also resolves: both are a normal end of the chat.
 *  - Connection refused, unknown host, a channel failure, stdout closed: a one-line `ChatError`.
 */
import { connect, type Socket } from 'node:net';
import { ChatError, errorLine } from './chat-error.js';
import { runChatSession } from './chat-session.js';
import { ChunkSource } from './chunk-source.js';
import { DEFAULT_HANDSHAKE_TIMEOUT_MS, DEFAULT_LINGER_MS, openChannel, type ChatEndpointOptions } from './open-channel.js';

export interface ChatClientOptions extends ChatEndpointOptions {
  /** The local address to connect from (default: the system picks). */
  readonly localAddress?: string;
}

export async function runChatClient(options: ChatClientOptions): Promise<void> {
  const { host, port, channel, log } = options;
  const output = options.output ?? process.stdout;
  const lingerMs = options.lingerMs ?? DEFAULT_LINGER_MS;
  const handshakeTimeoutMs = options.handshakeTimeoutMs ?? DEFAULT_HANDSHAKE_TIMEOUT_MS;
  const input = new ChunkSource(options.input ?? process.stdin);
  const onOutputError = () => {};
  output.on('error', onOutputError);
  try {
    const socket = await open(host, port, options.localAddress);
    log(`connected to ${socket.remoteAddress ?? host}:${socket.remotePort ?? port}`);
    let ch;
    try {
      ch = await openChannel(channel, socket, 'client', handshakeTimeoutMs);
    } catch (err) {
      socket.destroy();
      throw new ChatError(`connection to ${host}:${port} failed: ${errorLine(err)}`, { cause: err });
    }
    log(`channel: ${ch.status}`);
    const end = await runChatSession({ socket, channel: ch, input, output, lingerMs });
    switch (end.reason) {
      case 'peer-closed':
        log('peer closed the connection');
        return;
      case 'input-ended':
        log('end of input: closed the connection');
        return;
      case 'peer-reset':
        log(`peer went away (${errorLine(end.error)})`);
        return;
      case 'channel-error':
        throw new ChatError(`connection dropped: ${errorLine(end.error)}`, { cause: end.error });
      case 'input-error':
        throw new ChatError(`cannot read stdin: ${errorLine(end.error)}`, { cause: end.error });
      case 'output-error':
        throw new ChatError(`cannot write stdout: ${errorLine(end.error)}`, { cause: end.error });
    }
  } finally {
    input.close();
    output.off('error', onOutputError);
    output.on('error', () => {});
  }
}

function open(host: string, port: number, localAddress: string | undefined): Promise<Socket> {
  return new Promise<Socket>((resolve, reject) => {
    // allowHalfOpen: the server's FIN must not end our direction too (see chat-server.ts).
    const socket = connect({ host, port, allowHalfOpen: true, ...(localAddress !== undefined && { localAddress }) });
    const onError = (err: NodeJS.ErrnoException) => {
      socket.destroy();
      const why =
        err.code === 'ECONNREFUSED' ? 'connection refused'
        : err.code === 'ENOTFOUND' || err.code === 'EAI_NONAME' ? 'unknown host'
        : err.code === 'EAI_AGAIN' ? 'cannot resolve host (temporary failure)'
        : err.code === 'ECONNRESET' ? 'connection reset by peer'
        : err.code === 'ETIMEDOUT' ? 'connection timed out'
        : err.code === 'EHOSTUNREACH' || err.code === 'ENETUNREACH' ? 'host unreachable'
        : err.message;
      reject(new ChatError(`cannot connect to ${host}:${port}: ${why}`, { cause: err }));
    };
    socket.once('error', onError);
    socket.once('connect', () => {
      socket.off('error', onError);
      socket.on('error', () => {}); // the session reports socket failures; never crash on them
      resolve(socket);
    });
  });
}

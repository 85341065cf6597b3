/**
 * `vcrypto server`: the lab's plain chat server (`./server`), event-driven, raw bytes on the wire.
 */
import { plainChannel } from '../../chat/chat-channel.js';
import { ChatError } from '../../chat/chat-error.js';
import { runChatServer } from '../../chat/chat-server.js';
import { CliError, UsageError, parseCommandArgs, parsePort, formatHelp, type Command } from '../command.js';

export const DEFAULT_CHAT_HOST = '127.0.0.1';
export const DEFAULT_CHAT_PORT = 35001;

export const serverCommand: Command = {
  name: 'server',
  summary: 'plain TCP chat server (the lab\'s ./server): one peer at a time',
  help: formatHelp({
    usage: ['vcrypto server [--host ADDR] [--port PORT]'],
    description: [
      "The lab's plain chat server. What you type on stdin goes to the peer as raw bytes; what the",
      'peer sends appears on stdout. Status lines (listening, peer connected, peer went away) go to',
      'stderr, so stdout carries only chat data. One peer at a time: a second peer gets a one-line',
      '"busy" notice and is closed. When the peer leaves, the server waits for the next one.',
      'EOF on stdin (Ctrl-D) closes the current peer and exits 0. Input that arrives while nobody is',
      "connected is kept for the next peer (so 'vcrypto server < file' sends the file to the first",
      'peer), and an EOF after it takes effect once it has been sent. Any client works, including nc.',
    ],
    options: [
      `  --host ADDR        address to listen on (default ${DEFAULT_CHAT_HOST}, this machine only;`,
      '                     use --host 0.0.0.0 to listen on all interfaces, --host :: for IPv6 too)',
      `  --port PORT        TCP port (default ${DEFAULT_CHAT_PORT}; 0 = any free port, shown in the`,
      '                     "listening on ADDR:PORT" line)',
    ],
    examples: [
      'vcrypto server',
      `vcrypto client 127.0.0.1 ${DEFAULT_CHAT_PORT}      # in another terminal`,
      `nc 127.0.0.1 ${DEFAULT_CHAT_PORT}                  # or any TCP client`,
    ],
  }),

  async run(argv) {
    const { values } = parseCommandArgs(argv, {
      host: { type: 'string' },
      port: { type: 'string' },
    });
    const host = values.host ?? DEFAULT_CHAT_HOST;
    if (host === '') throw new UsageError("invalid host ''");
    const port = values.port === undefined ? DEFAULT_CHAT_PORT : parsePort(values.port, { allowZero: true });
    try {
      await runChatServer({ host, port, channel: plainChannel, log: (line) => process.stderr.write(`[server] ${line}\n`) });
    } catch (err) {
      if (err instanceof ChatError) throw new CliError(err.message, 1, { cause: err });
      throw err;
    }
    return 0;
  },
};

/**
 * `vcrypto client <host> <port>`: the lab's plain chat client (`./client 127.0.0.1 35001`).
 */
import { plainChannel } from '../../chat/chat-channel.js';
import { ChatError } from '../../chat/chat-error.js';
import { runChatClient } from '../../chat/chat-client.js';
import { CliError, UsageError, parseCommandArgs, parsePort, formatHelp, type Command } from '../command.js';

export const clientCommand: Command = {
  name: 'client',
  summary: 'plain TCP chat client (the lab\'s ./client HOST PORT)',
  help: formatHelp({
    usage: ['vcrypto client <host> <port>'],
    description: [
      "The lab's plain chat client. What you type on stdin goes to the server as raw bytes; what the",
      'server sends appears on stdout. Status lines go to stderr. EOF on stdin (Ctrl-D, or the end of',
      'a pipe) sends what is left, closes the connection and exits 0; the server closing the',
      'connection also exits 0. Works against any TCP peer, e.g. nc -l.',
    ],
    arguments: ['  <host>             server name or address (e.g. 127.0.0.1)', "  <port>             server TCP port, 1-65535 (the lab's is 35001)"],
    options: [],
    exitCodes: [[0, 'the chat ended'], [1, 'the connection failed (refused, unknown host)']],
    examples: ['vcrypto client 127.0.0.1 35001', "printf 'hello\\n' | vcrypto client 127.0.0.1 35001"],
  }),

  async run(argv) {
    const { positionals } = parseCommandArgs(argv, {}, { allowPositionals: true });
    if (positionals.length !== 2) {
      throw new UsageError(positionals.length < 2 ? 'expected <host> and <port>' : `unexpected argument '${positionals[2]}'`);
    }
    const [host = '', portText = ''] = positionals;
    if (host === '') throw new UsageError("invalid host ''");
    const port = parsePort(portText);
    try {
      await runChatClient({ host, port, channel: plainChannel, log: (line) => process.stderr.write(`[client] ${line}\n`) });
    } catch (err) {
      if (err instanceof ChatError) throw new CliError(err.message, 1, { cause: err });
      throw err;
    }
    return 0;
  },
};

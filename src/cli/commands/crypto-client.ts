/**
 * `vcrypto crypto-client <host> <port>`: the lab's encrypted chat client (`./crypto-client`),
 * Noise_NNpsk0_25519_AESGCM_SHA256 with the crypto on the selected device.
 */
import { runChatClient } from '../../chat/chat-client.js';
import { DEFAULT_DEVICE_SPEC, DEVICE_OPTION_HELP } from '../../transport/open-device.js';
import { UsageError, parseCommandArgs, parsePort, formatHelp, type Command } from '../command.js';
import { CRYPTO_CHAT_OPTIONS, KEY_OPTION_HELP, PROTOCOL_HELP, SUITE_OPTION_HELP, runSecureChat } from './crypto-server.js';
import { checkDeviceSpec } from './crypto-common.js';

export const cryptoClientCommand: Command = {
  name: 'crypto-client',
  summary: 'encrypted chat client (Noise NNpsk0, crypto on the virtio-crypto device)',
  help: formatHelp({
    usage: ['vcrypto crypto-client <host> <port> (--psk-file FILE | --passphrase-env VAR) [--device SPEC] [--suite SUITE]'],
    description: [
      "The lab's encrypted chat client. Like 'vcrypto client' (stdin to the server, the server to stdout,",
      'status on stderr; EOF on stdin sends what is left and exits 0; the server ending the chat also exits 0),',
      'but every byte on the wire is encrypted and authenticated.',
      '',
      ...PROTOCOL_HELP,
    ],
    arguments: ['  <host>                 server name or address (e.g. 127.0.0.1)', '  <port>                 server TCP port, 1-65535'],
    options: [...KEY_OPTION_HELP, DEVICE_OPTION_HELP, ...SUITE_OPTION_HELP],
    exitCodes: [
      [0, 'the chat ended'],
      [1, 'the connection or the handshake failed (wrong key: "authentication failed"), a message failed\n     authentication, or the connection closed before the end of chat ("connection truncated")'],
    ],
    examples: [
      'vcrypto crypto-client 127.0.0.1 35001 --psk-file chat.key',
      "CHAT_PASS='long shared passphrase' vcrypto crypto-client 127.0.0.1 35001 --passphrase-env CHAT_PASS --device host",
    ],
  }),

  async run(argv) {
    const { values, positionals } = parseCommandArgs(argv, CRYPTO_CHAT_OPTIONS, { allowPositionals: true });
    if (positionals.length !== 2) {
      throw new UsageError(positionals.length < 2 ? 'expected <host> and <port>' : `unexpected argument '${positionals[2]}'`);
    }
    const [host = '', portText = ''] = positionals;
    if (host === '') throw new UsageError("invalid host ''");
    const port = parsePort(portText);
    const spec = checkDeviceSpec(values.device ?? DEFAULT_DEVICE_SPEC);
    return runSecureChat('crypto-client', values, spec, (channel, log) => runChatClient({ host, port, channel, log }));
  },
};

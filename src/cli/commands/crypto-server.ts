/**
 * `vcrypto crypto-server`: the lab's encrypted chat server (`./crypto-server`), done properly:
 * Noise_NNpsk0_25519_AESGCM_SHA256 with a pre-shared key, every symmetric operation on the crypto
 * device (default: the embedded virtio-crypto device). Same plumbing as `vcrypto server`.
 * Also exports the option handling crypto-client shares (key and device).
 */
import { ChatError } from '../../chat/chat-error.js';
import { runChatServer } from '../../chat/chat-server.js';
import { SECURE_PROTOCOL, secureChannel } from '../../chat/secure-channel.js';
import { CHAT_SUITES, DEFAULT_CHAT_SUITE, type ChatSuiteName } from '../../chat/secure-framing.js';
import { SCRYPT_PARAMS, SecureKeyError, keyFromPassphraseEnv, readKeyFile } from '../../chat/secure-key.js';
import { zeroize } from '../../driver/cryptodev-semantics.js';
import { CryptoError, type CryptoDevice } from '../../driver/api.js';
import { DEFAULT_DEVICE_SPEC, DEVICE_OPTION_HELP, openDevice } from '../../transport/open-device.js';
import type { ChatChannelFactory } from '../../chat/chat-channel.js';
import { checkDeviceSpec } from './crypto-common.js';
import { CliError, UsageError, parseCommandArgs, parsePort, formatHelp, type Command } from '../command.js';

export const DEFAULT_CRYPTO_CHAT_HOST = '127.0.0.1';
export const DEFAULT_CRYPTO_CHAT_PORT = 35001;

/** The options both crypto chat commands take. */
export const CRYPTO_CHAT_OPTIONS = {
  'psk-file': { type: 'string' },
  'passphrase-env': { type: 'string' },
  device: { type: 'string' },
  suite: { type: 'string' },
} as const;

export const SUITE_OPTION_HELP = [
  `  --suite SUITE          how messages are sealed, the same on both peers: ${CHAT_SUITES.join(' or ')}`,
  `                         (default ${DEFAULT_CHAT_SUITE}); cbc-hmac is for a device that offers only AES-CBC,`,
  "                         such as QEMU's virtio-crypto device seen from a guest",
];

/** --suite NAME (usage error for anything else). */
export function parseSuite(text: string | undefined): ChatSuiteName {
  if (text === undefined) return DEFAULT_CHAT_SUITE;
  if ((CHAT_SUITES as string[]).includes(text)) return text as ChatSuiteName;
  throw new UsageError(`unknown --suite '${text}' (expected ${CHAT_SUITES.join(' or ')})`);
}

/** The key options both crypto chat commands take (exactly one; both peers must use the same key). */
export const KEY_OPTION_HELP = [
  "  --psk-file FILE        a 32-byte key: 64 hex digits (what 'vcrypto keygen' prints) or 32 raw bytes",
  '  --passphrase-env VAR   read a passphrase from environment variable VAR (removed once read) and',
  `                         stretch it to 32 bytes with scrypt (N=2^${Math.log2(SCRYPT_PARAMS.N)}, r=${SCRYPT_PARAMS.r}, p=${SCRYPT_PARAMS.p}, fixed salt); prefer a key file`,
];

export const PROTOCOL_HELP = [
  `Protocol: ${SECURE_PROTOCOL} (Noise revision 34). The key authenticates both`,
  'peers; fresh X25519 ephemerals give forward secrecy; every message is AES-256-GCM with a counter',
  'nonce, so a changed, replayed, reordered, dropped or truncated message ends the connection and is',
  'never printed. Each side ends the chat with an authenticated END message before closing: a',
  'connection that closes without it was cut short ("connection truncated"; the client exits 1).',
  'A wrong key: both sides say "authentication failed". SHA-256, HMAC-SHA256 (HKDF) and AES-GCM run',
  'on the crypto device; X25519 runs on node:crypto. There is no plaintext fallback.',
  'With --suite cbc-hmac every message is instead AES-256-CBC on the crypto device with a random IV,',
  'then HMAC-SHA256 over a counter, the IV and the ciphertext (encrypt-then-MAC) on node:crypto, with',
  'the same guarantees; the handshake then runs on node:crypto.',
];

export interface ChatKeyValues {
  'psk-file'?: string | undefined;
  'passphrase-env'?: string | undefined;
}

/** Loads the key the options name (usage error unless exactly one source is given). */
export async function loadChatKey(values: ChatKeyValues, log: (line: string) => void): Promise<Uint8Array> {
  const file = values['psk-file'];
  const env = values['passphrase-env'];
  if (file === undefined && env === undefined) throw new UsageError('a key is required: --psk-file FILE or --passphrase-env VAR');
  if (file !== undefined && env !== undefined) throw new UsageError('give either --psk-file or --passphrase-env, not both');
  if (file === '' || env === '') throw new UsageError(file === '' ? "invalid --psk-file ''" : "invalid --passphrase-env ''");
  try {
    return file !== undefined ? await readKeyFile(file, log) : await keyFromPassphraseEnv(env ?? '', process.env, log);
  } catch (err) {
    if (err instanceof SecureKeyError) throw new CliError(err.message, 1, { cause: err });
    throw err;
  }
}

/**
 * The part crypto-server and crypto-client share: load the key, open the device (a CryptoError becomes
 * a one-line CliError), say which device does the crypto, run the chat over the secure channel, and
 * always wipe the key and close the device.
 */
export async function runSecureChat(
  name: string,
  values: ChatKeyValues & { suite?: string | undefined },
  spec: string,
  run: (channel: ChatChannelFactory, log: (line: string) => void) => Promise<void>,
): Promise<number> {
  const log = (line: string) => process.stderr.write(`[${name}] ${line}\n`);
  const suite = parseSuite(values.suite);
  const psk = await loadChatKey(values, log);
  let device: CryptoDevice | undefined;
  try {
    try {
      device = await openDevice(spec);
    } catch (err) {
      if (err instanceof CryptoError) throw new CliError(`cannot open crypto device '${spec}': ${err.message}`, 1, { cause: err });
      throw err;
    }
    log(`crypto device: ${device.info.description} (--device ${device.info.spec})`);
    await run(secureChannel({ device, psk, suite }), log);
  } catch (err) {
    if (err instanceof ChatError) throw new CliError(err.message, 1, { cause: err });
    throw err;
  } finally {
    zeroize(psk);
    await device?.close();
  }
  return 0;
}

export const cryptoServerCommand: Command = {
  name: 'crypto-server',
  summary: 'encrypted chat server (Noise NNpsk0, crypto on the virtio-crypto device)',
  help: formatHelp({
    usage: ['vcrypto crypto-server [--host ADDR] [--port PORT] (--psk-file FILE | --passphrase-env VAR) [--device SPEC] [--suite SUITE]'],
    description: [
      "The lab's encrypted chat server. Like 'vcrypto server' (stdin to the peer, the peer to stdout,",
      'status on stderr, one peer at a time, a busy notice for a second peer, waits for the next peer',
      'when one leaves, EOF on stdin exits 0), but every byte on the wire is encrypted and authenticated.',
      'A peer with the wrong key, or whose messages are tampered with, is dropped ("authentication',
      'failed") and the server waits for the next one.',
      '',
      ...PROTOCOL_HELP,
    ],
    options: [
      `  --host ADDR            address to listen on (default ${DEFAULT_CRYPTO_CHAT_HOST})`,
      `  --port PORT            TCP port (default ${DEFAULT_CRYPTO_CHAT_PORT}; 0 = any free port, shown in the "listening" line)`,
      ...KEY_OPTION_HELP,
      DEVICE_OPTION_HELP,
      ...SUITE_OPTION_HELP,
    ],
    examples: [
      'vcrypto keygen --out chat.key',
      'vcrypto crypto-server --psk-file chat.key',
      `vcrypto crypto-client 127.0.0.1 ${DEFAULT_CRYPTO_CHAT_PORT} --psk-file chat.key     # in another terminal`,
    ],
  }),

  async run(argv) {
    const { values } = parseCommandArgs(argv, { host: { type: 'string' }, port: { type: 'string' }, ...CRYPTO_CHAT_OPTIONS });
    const host = values.host ?? DEFAULT_CRYPTO_CHAT_HOST;
    if (host === '') throw new UsageError("invalid host ''");
    const port = values.port === undefined ? DEFAULT_CRYPTO_CHAT_PORT : parsePort(values.port, { allowZero: true });
    const spec = checkDeviceSpec(values.device ?? DEFAULT_DEVICE_SPEC);
    return runSecureChat('crypto-server', values, spec, (channel, log) => runChatServer({ host, port, channel, log }));
  },
};

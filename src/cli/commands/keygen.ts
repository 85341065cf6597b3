/**
 * `vcrypto keygen`: a fresh random 32-byte chat key in the key file format (64 hex digits).
 */
import { open } from 'node:fs/promises';
import { formatKey, generateKey } from '../../chat/secure-key.js';
import { zeroize } from '../../driver/cryptodev-semantics.js';
import { CliError, UsageError, parseCommandArgs, formatHelp, type Command } from '../command.js';

export const keygenCommand: Command = {
  name: 'keygen',
  summary: 'print a fresh random key for crypto-server/crypto-client',
  help: formatHelp({
    usage: ['vcrypto keygen [--out FILE]'],
    description: [
      'Prints a fresh random 32-byte key (from the OS CSPRNG) as 64 hex digits and a newline: the key',
      "file format of 'crypto-server --psk-file' and 'crypto-client --psk-file', and an AES-256 key for",
      "'enc/dec --key-file'. Give the same file to both peers over a channel you trust; anyone with the",
      'file can join or impersonate either side.',
    ],
    options: [
      '  --out FILE         write the key to FILE (created with mode 600; an existing file is never',
      '                     overwritten) instead of stdout',
    ],
    examples: ['vcrypto keygen --out chat.key', 'vcrypto keygen > chat.key && chmod 600 chat.key'],
  }),

  async run(argv) {
    const { values } = parseCommandArgs(argv, { out: { type: 'string' } });
    if (values.out === '') throw new UsageError("invalid --out ''");
    const key = generateKey();
    const text = Buffer.from(formatKey(key));
    zeroize(key);
    try {
      if (values.out === undefined) {
        process.stdout.write(Uint8Array.from(text));
        return 0;
      }
      let file;
      try {
        file = await open(values.out, 'wx', 0o600);
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code;
        const why = code === 'EEXIST' ? 'file exists (not overwritten)' : code === 'ENOENT' ? 'no such directory' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
        throw new CliError(`cannot create ${values.out}: ${why}`, 1, { cause: err });
      }
      try {
        await file.writeFile(text);
      } finally {
        await file.close();
      }
      process.stderr.write(`[keygen] wrote a new key to ${values.out}\n`);
      return 0;
    } finally {
      zeroize(text);
    }
  },
};

/**
 * `vcrypto enc` (and the shared body of `vcrypto dec`): input → the device → output, byte-identical to
 * `openssl enc [-d] -<cipher> -K HEX -iv HEX [-nopad]`.
 */
import { type Command, formatHelp, parseCommandArgs, UsageError } from '../command.js';
import { DEFAULT_DEVICE_SPEC, DEVICE_OPTION_HELP } from '../../transport/open-device.js';
import { checkDeviceSpec, parseCipherName, runCipherStream, streamChunkSize, withDevice, CLI_CIPHERS } from './crypto-common.js';
import { CIPHER_KEY_HELP, CIPHER_KEY_OPTIONS, loadCipherKey, loadIv, openAtomicOutput, openInput, type AtomicOutput } from './key-options.js';
import { zeroize } from '../../driver/cryptodev-semantics.js';
import type { Readable } from 'node:stream';

export function cipherCommand(op: 'encrypt' | 'decrypt'): Command {
  const name = op === 'encrypt' ? 'enc' : 'dec';
  const d = op === 'decrypt' ? ' -d' : '';
  const help = formatHelp({
    usage: [`vcrypto ${name} --cipher CIPHER (--key-file FILE | --key-env VAR | --key HEX) [--iv HEX | --iv-file FILE]`, `  [--nopad] [--in FILE] [--out FILE] [--device SPEC]`],
    description: [
      `${op === 'encrypt' ? 'Encrypts' : 'Decrypts'} stdin (or --in FILE) to stdout (or --out FILE) through the crypto device, byte for`,
      `byte like \`openssl enc${d} -CIPHER -K HEX -iv HEX\` (PKCS#7 padding for CBC/ECB unless --nopad).`,
      'Any input size: the data is streamed through the device in 64 KiB requests.',
      'Keep keys off the command line: --key HEX is visible to every user of the machine through ps.',
      '--out FILE is written only when the whole run succeeds (through a temporary file beside it, mode',
      '600); after a failure FILE is untouched. Output to stdout may end early on a failure.',
    ],
    options: [
      `  --cipher CIPHER    ${CLI_CIPHERS.join(', ')}`,
      ...CIPHER_KEY_HELP,
      '  --nopad            no PKCS#7 padding (the input must then be whole 16-byte blocks)',
      '  --in FILE          read FILE instead of stdin',
      '  --out FILE         write FILE instead of stdout (only if the whole run succeeds)',
      DEVICE_OPTION_HELP,
    ],
    exitCodes: [[1, `failure: device error, unreadable input or key file${op === 'decrypt' ? ', bad decrypt (wrong key or IV, corrupted data)' : ''}`]],
    examples: [
      'vcrypto keygen --out aes.key',
      `vcrypto enc --cipher aes-256-cbc --key-file aes.key --iv-file aes.iv --in notes.txt --out notes.enc`,
      `vcrypto dec --cipher aes-256-cbc --key-file aes.key --iv-file aes.iv --in notes.enc --out notes.txt`,
      `AES_KEY=$(cat aes.key) vcrypto ${name} --cipher aes-256-ctr --key-env AES_KEY --iv 000102030405060708090a0b0c0d0e0f < in > out`,
    ],
  });

  return {
    name,
    summary: `${op === 'encrypt' ? 'encrypt' : 'decrypt'} a file or stdin (like openssl enc${d})`,
    help,
    async run(argv) {
      const { values } = parseCommandArgs(argv, {
        cipher: { type: 'string' },
        ...CIPHER_KEY_OPTIONS,
        nopad: { type: 'boolean' },
        in: { type: 'string' },
        out: { type: 'string' },
        device: { type: 'string' },
      });
      if (values.cipher === undefined) throw new UsageError('--cipher is required');
      if (values.in === '') throw new UsageError("invalid --in ''");
      if (values.out === '') throw new UsageError("invalid --out ''");
      const spec = parseCipherName(values.cipher);
      const deviceSpec = checkDeviceSpec(values.device ?? DEFAULT_DEVICE_SPEC);
      const warn = (line: string): void => void process.stderr.write(`${line}\n`);
      const key = await loadCipherKey(values, spec.keyLength, warn);
      let output: AtomicOutput | undefined;
      let input: Readable | undefined;
      try {
        let iv = await loadIv(values);
        if (spec.cipher === 'aes-ecb') {
          if (iv !== undefined) warn('warning: iv not used by this cipher');
          iv = undefined;
        } else if (iv === undefined) {
          throw new UsageError(`${spec.name} needs an IV: --iv HEX or --iv-file FILE (32 hex digits)`);
        }
        const source = await openInput(values.in);
        input = source;
        output = values.out === undefined ? undefined : await openAtomicOutput(values.out);
        await withDevice(deviceSpec, async (device) => {
          const handle = await device.open();
          try {
            await runCipherStream({
              handle,
              spec,
              key,
              iv,
              op,
              pad: !values.nopad,
              input: source,
              output: output?.stream ?? process.stdout,
              chunkSize: streamChunkSize(device.info.maxSize),
            });
          } finally {
            await handle.close();
          }
        });
        if (output) await output.commit();
        output = undefined;
      } finally {
        zeroize(key);
        if (input !== process.stdin) input?.destroy();
        await output?.discard();
      }
      return 0;
    },
  };
}

export const encCommand = cipherCommand('encrypt');

/**
 * `vcrypto enc` (and the shared body of `vcrypto dec`): stdin → the device → stdout, byte-identical to
 * `openssl enc [-d] -<cipher> -K HEX -iv HEX [-nopad]`.
 */
import { type Command, parseCommandArgs, CliError, UsageError } from '../command.js';
import { DEFAULT_DEVICE_SPEC, DEVICE_OPTION_HELP } from '../../transport/open-device.js';
import { checkDeviceSpec, parseCipherName, parseHex, runCipherStream, streamChunkSize, withDevice, CLI_CIPHERS } from './crypto-common.js';
import { zeroize } from '../../driver/cryptodev-semantics.js';

export function cipherCommand(op: 'encrypt' | 'decrypt'): Command {
  const name = op === 'encrypt' ? 'enc' : 'dec';
  const help = [
    `Usage: vcrypto ${name} --cipher CIPHER --key HEX [--iv HEX] [--nopad] [--device SPEC] < in > out`,
    '',
    `${op === 'encrypt' ? 'Encrypts' : 'Decrypts'} stdin to stdout through the crypto device, byte for byte like`,
    `\`openssl enc${op === 'decrypt' ? ' -d' : ''} -CIPHER -K HEX -iv HEX\` (PKCS#7 padding for CBC/ECB unless --nopad).`,
    'Any input size: the data is streamed through the device in 64 KiB requests.',
    '',
    'Options:',
    `  --cipher CIPHER  ${CLI_CIPHERS.join(', ')}`,
    '  --key HEX        the key: 32/48/64 hex digits for AES-128/192/256',
    '  --iv HEX         the IV (32 hex digits); required for CBC and CTR, not used by ECB',
    '  --nopad          no PKCS#7 padding (the input must then be whole 16-byte blocks)',
    DEVICE_OPTION_HELP,
    '',
    'Example:',
    `  vcrypto ${name} --cipher aes-128-cbc --key 000102030405060708090a0b0c0d0e0f --iv 00000000000000000000000000000000 < in > out`,
  ].join('\n');

  return {
    name,
    summary: `${op === 'encrypt' ? 'encrypt' : 'decrypt'} stdin to stdout (like openssl enc${op === 'decrypt' ? ' -d' : ''})`,
    help,
    async run(argv) {
      const { values } = parseCommandArgs(argv, {
        cipher: { type: 'string' },
        key: { type: 'string' },
        iv: { type: 'string' },
        nopad: { type: 'boolean' },
        device: { type: 'string' },
      });
      if (values.cipher === undefined) throw new UsageError('--cipher is required');
      if (values.key === undefined) throw new UsageError('--key is required');
      const spec = parseCipherName(values.cipher);
      const deviceSpec = checkDeviceSpec(values.device ?? DEFAULT_DEVICE_SPEC);
      const key = parseHex('key', values.key, spec.keyLength);
      let iv: Uint8Array | undefined;
      if (spec.cipher === 'aes-ecb') {
        if (values.iv !== undefined) process.stderr.write('warning: iv not used by this cipher\n');
      } else {
        if (values.iv === undefined) throw new CliError(`${spec.name} needs an IV: --iv HEX (32 hex digits)`);
        iv = parseHex('iv', values.iv, 16);
      }
      try {
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
              input: process.stdin,
              output: process.stdout,
              chunkSize: streamChunkSize(device.info.maxSize),
            });
          } finally {
            await handle.close();
          }
        });
      } finally {
        zeroize(key);
      }
      return 0;
    },
  };
}

export const encCommand = cipherCommand('encrypt');

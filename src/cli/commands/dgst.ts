/**
 * `vcrypto dgst --digest NAME [--hmac KEY] [--device SPEC] [FILE...]`: prints `HEX  NAME` per input
 * (`-` for stdin), like sha256sum; the digest equals `openssl dgst -NAME [-hmac KEY]`.
 *
 * The session API hashes one buffer per request, so each input must fit the device's max_size.
 */
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { type Command, parseCommandArgs, CliError, UsageError } from '../command.js';
import { DEFAULT_DEVICE_SPEC, DEVICE_OPTION_HELP } from '../../transport/open-device.js';
import { HASH_ALGORITHMS, isHashAlgorithm, zeroize } from '../../driver/cryptodev-semantics.js';
import { checkDeviceSpec, withDevice } from './crypto-common.js';

/** Reads a whole stream, refusing more than `max` bytes (the device's max_size). */
async function readLimited(input: Readable | AsyncIterable<Uint8Array>, max: bigint, name: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  for await (const chunk of input as AsyncIterable<Uint8Array>) {
    total += chunk.length;
    if (BigInt(total) > max) {
      throw new CliError(`${name}: input larger than the device's max_size (${max} bytes): one digest request cannot hold it`);
    }
    parts.push(Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk));
  }
  return Buffer.concat(parts, total);
}

async function readInput(name: string, max: bigint): Promise<Buffer> {
  if (name === '-') return readLimited(process.stdin, max, name);
  let fh;
  try {
    fh = await open(name, 'r');
  } catch (err) {
    throw new CliError(`${name}: ${(err as NodeJS.ErrnoException).code === 'ENOENT' ? 'No such file or directory' : (err as Error).message}`);
  }
  try {
    return await readLimited(fh.createReadStream({ autoClose: false }), max, name);
  } finally {
    await fh.close();
  }
}

export const dgstCommand: Command = {
  name: 'dgst',
  summary: 'hash or HMAC files or stdin (like sha256sum / openssl dgst)',
  help: [
    'Usage: vcrypto dgst --digest NAME [--hmac KEY] [--device SPEC] [FILE...]',
    '',
    'Prints "HEX  FILE" for each FILE (or "HEX  -" for stdin), like sha256sum; the digest is the one',
    '`openssl dgst -NAME [-hmac KEY]` prints. A virtio-crypto hash request is one-shot, so each input',
    "must fit in one request: at most the device's max_size (virtio: its config space, e.g. 1 MiB).",
    '',
    'Options:',
    `  --digest NAME    ${HASH_ALGORITHMS.join(', ')}`,
    '  --hmac KEY       HMAC with KEY (the bytes of the string, as openssl -hmac) instead of a plain hash',
    DEVICE_OPTION_HELP,
    '',
    'Example:',
    '  echo -n abc | vcrypto dgst --digest sha256 --device host',
  ].join('\n'),
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      { digest: { type: 'string' }, hmac: { type: 'string' }, device: { type: 'string' } },
      { allowPositionals: true },
    );
    if (values.digest === undefined) throw new UsageError('--digest is required');
    const hash = values.digest.toLowerCase();
    if (!isHashAlgorithm(hash)) throw new UsageError(`unknown digest '${values.digest}' (expected one of ${HASH_ALGORITHMS.join(', ')})`);
    const spec = checkDeviceSpec(values.device ?? DEFAULT_DEVICE_SPEC);
    const files = positionals.length === 0 ? ['-'] : positionals;
    const key = values.hmac === undefined ? undefined : new Uint8Array(Buffer.from(values.hmac, 'utf8'));
    try {
      await withDevice(spec, async (device) => {
        const handle = await device.open();
        try {
          const session = await handle.createSession(key ? { kind: 'mac', hash, key } : { kind: 'hash', hash });
          for (const file of files) {
            const data = await readInput(file, device.info.maxSize);
            const digest = await handle.digest(session, data);
            process.stdout.write(`${Buffer.from(digest).toString('hex')}  ${file}\n`);
          }
          await handle.closeSession(session);
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

/**
 * `vcrypto dgst [--digest NAME] [--hmac-key-file FILE | --key-env VAR | --hmac KEY] [-c] [FILE...]`:
 * prints `HEX  NAME` per input (`-` for stdin), like sha256sum; the digest equals
 * `openssl dgst -NAME [-hmac KEY]`. `-c/--check` verifies sha256sum-style checksum files.
 *
 * A virtio-crypto hash request is one-shot (VIRTIO 1.2 §5.9.7.4: one src buffer, one hash_result), so
 * each input must fit in one request: at most the device's DeviceInfo.maxSize (256 MiB with the default
 * device). Past that the input is reported with the limit and the alternatives, and the next one is
 * hashed. Any failed input makes the exit code 1, after all inputs have been tried.
 */
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { type Command, formatHelp, parseCommandArgs, UsageError } from '../command.js';
import { DEFAULT_DEVICE_SPEC, DEVICE_OPTION_HELP } from '../../transport/open-device.js';
import { CryptoError, type CryptoHandle, type HashAlgorithm, type Session } from '../../driver/api.js';
import { HASH_ALGORITHMS, isHashAlgorithm, zeroize } from '../../driver/cryptodev-semantics.js';
import { checkDeviceSpec, withDevice } from './crypto-common.js';
import { HMAC_KEY_HELP, HMAC_KEY_OPTIONS, loadHmacKey } from './key-options.js';

const DEFAULT_DIGEST: HashAlgorithm = 'sha256';

/** Hex digest length → algorithm, for --check without --digest; and back. */
const BY_HEX_LENGTH: Readonly<Record<number, HashAlgorithm>> = { 40: 'sha1', 56: 'sha224', 64: 'sha256', 96: 'sha384', 128: 'sha512' };
const HEX_LENGTH: Readonly<Record<HashAlgorithm, number>> = { sha1: 40, sha224: 56, sha256: 64, sha384: 96, sha512: 128 };

/** One input that could not be hashed: reported, and the run goes on. */
class InputError extends Error {}

/** "256 MiB" when exact, else the byte count ("268435457 bytes"): a limit is never blurred by rounding. */
function sizeText(bytes: bigint | number): string {
  const n = Number(bytes);
  for (const [unit, shift] of [['GiB', 30], ['MiB', 20], ['KiB', 10]] as const) {
    if (n >= 2 ** shift && n % 2 ** shift === 0) return `${n / 2 ** shift} ${unit}`;
  }
  return `${n} bytes`;
}

function tooLarge(name: string, size: bigint | number | undefined, limit: bigint, spec: string): InputError {
  const what = size === undefined ? 'more than' : `${sizeText(size)}, more than`;
  return new InputError(
    `${name}: ${what} the ${sizeText(limit)} one request can hash on '${spec}' (a virtio-crypto hash is one-shot); ` +
      `hash it with --device host, or sha256sum / openssl dgst`,
  );
}

function errnoText(err: unknown): string {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return 'No such file or directory';
  if (code === 'EACCES') return 'Permission denied';
  if (code === 'EISDIR') return 'Is a directory';
  return (err as Error).message;
}

/** Reads a whole stream, refusing more than `max` bytes. */
async function readStream(input: Readable, max: bigint, name: string, spec: string): Promise<Buffer> {
  const parts: Buffer[] = [];
  let total = 0;
  for await (const chunk of input as AsyncIterable<Buffer>) {
    total += chunk.length;
    if (BigInt(total) > max) throw tooLarge(name, undefined, max, spec);
    parts.push(chunk);
  }
  return Buffer.concat(parts, total);
}

/** Reads file `name` (or stdin for `-`) whole, checking its size against `max` before reading it. */
async function readInput(name: string, max: bigint, spec: string): Promise<Buffer> {
  if (name === '-') return readStream(process.stdin, max, name, spec);
  let fh;
  try {
    fh = await open(name, 'r');
  } catch (err) {
    throw new InputError(`${name}: ${errnoText(err)}`);
  }
  try {
    const st = await fh.stat();
    if (st.isDirectory()) throw new InputError(`${name}: Is a directory`);
    if (st.isFile()) {
      if (BigInt(st.size) > max) throw tooLarge(name, st.size, max, spec);
      // Read exactly what is there (the file may change meanwhile; a pipe or device has no size).
      const buf = Buffer.allocUnsafe(st.size);
      let off = 0;
      while (off < buf.length) {
        const { bytesRead } = await fh.read(buf, off, buf.length - off, null);
        if (bytesRead === 0) break;
        off += bytesRead;
      }
      if (off === buf.length) {
        const probe = Buffer.alloc(1);
        if ((await fh.read(probe, 0, 1, null)).bytesRead !== 0) throw new InputError(`${name}: the file grew while it was read`);
      }
      return buf.subarray(0, off);
    }
    return await readStream(fh.createReadStream({ autoClose: false }), max, name, spec);
  } catch (err) {
    if (err instanceof InputError) throw err;
    throw new InputError(`${name}: ${errnoText(err)}`);
  } finally {
    await fh.close();
  }
}

/** Hashes one input; InputError for anything that is this input's fault (the run goes on). */
async function digestOf(handle: CryptoHandle, session: Session, name: string, spec: string): Promise<string> {
  const data = await readInput(name, handle.device.maxSize, spec);
  try {
    return Buffer.from(await handle.digest(session, data)).toString('hex');
  } catch (err) {
    if (err instanceof CryptoError && err.code === 'ENOSPC') throw tooLarge(name, data.length, handle.device.maxSize, spec);
    throw err;
  }
}

interface CheckLine {
  readonly hex: string;
  readonly name: string;
}

/** A sha256sum line: `HEX  NAME` (text mode) or `HEX *NAME` (binary mode); also openssl's `-r` output. */
function parseCheckLine(line: string): CheckLine | undefined {
  const m = /^([0-9a-fA-F]+) [ *](.+)$/.exec(line);
  if (m === null || BY_HEX_LENGTH[m[1]!.length] === undefined) return undefined;
  return { hex: m[1]!.toLowerCase(), name: m[2]! };
}

export const dgstCommand: Command = {
  name: 'dgst',
  summary: 'hash or HMAC files or stdin, or check checksums (like sha256sum / openssl dgst)',
  help: formatHelp({
    usage: [
      'vcrypto dgst [--digest NAME] [--hmac-key-file FILE | --key-env VAR | --hmac KEY] [--device SPEC] [FILE...]',
      'vcrypto dgst -c [--digest NAME] [--hmac-key-file FILE | --key-env VAR] [--device SPEC] [CHECKFILE...]',
    ],
    description: [
      'Prints "HEX  FILE" for each FILE (or "HEX  -" for stdin when no FILE is given), like sha256sum;',
      'the digest is the one `openssl dgst -NAME [-hmac KEY]` prints. With -c, reads lines of that form',
      'from each CHECKFILE (or stdin) and prints "FILE: OK" or "FILE: FAILED" for each.',
      '',
      "A virtio-crypto hash request is one-shot, so each file must fit in one request: up to the device's",
      'limit: 256 MiB with the default virtio and vhost-user devices, 4 GiB with `--device host`.',
      'A file that cannot be hashed (missing, a directory, too large) is reported on stderr and the next',
      'one is hashed; the exit code is then 1.',
    ],
    options: [
      `  --digest NAME         ${HASH_ALGORITHMS.join(', ')} (default ${DEFAULT_DIGEST}; with -c, taken from each line's length)`,
      ...HMAC_KEY_HELP,
      '  -c, --check           verify the checksums listed in the files (sha256sum -c)',
      '  --quiet               with -c: do not print "OK" lines',
      DEVICE_OPTION_HELP,
    ],
    exitCodes: [[1, 'an input could not be read or hashed, or (with -c) a checksum did not match']],
    examples: [
      'vcrypto dgst notes.txt disk.img                      # sha256, like sha256sum',
      'echo -n abc | vcrypto dgst --digest sha512 --device host',
      'vcrypto dgst --hmac-key-file mac.key --digest sha256 report.pdf',
      'vcrypto dgst *.iso > SHA256SUMS && vcrypto dgst -c SHA256SUMS',
    ],
  }),
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      { digest: { type: 'string' }, ...HMAC_KEY_OPTIONS, check: { type: 'boolean', short: 'c' }, quiet: { type: 'boolean' }, device: { type: 'string' } },
      { allowPositionals: true },
    );
    let hash: HashAlgorithm | undefined;
    if (values.digest !== undefined) {
      const h = values.digest.toLowerCase();
      if (!isHashAlgorithm(h)) throw new UsageError(`unknown digest '${values.digest}' (expected one of ${HASH_ALGORITHMS.join(', ')})`);
      hash = h;
    }
    if (values.quiet && !values.check) throw new UsageError('--quiet only applies to -c/--check');
    const spec = checkDeviceSpec(values.device ?? DEFAULT_DEVICE_SPEC);
    const inputs = positionals.length === 0 ? ['-'] : positionals;
    const warn = (line: string): void => void process.stderr.write(`vcrypto dgst: ${line}\n`);
    const key = await loadHmacKey(values, warn);
    let failed = false;
    const report = (err: unknown): void => {
      if (!(err instanceof InputError)) throw err;
      warn(err.message);
      failed = true;
    };
    try {
      await withDevice(spec, async (device) => {
        const handle = await device.open();
        const sessions = new Map<HashAlgorithm, Session>();
        const session = async (h: HashAlgorithm): Promise<Session> => {
          let s = sessions.get(h);
          if (s === undefined) {
            s = await handle.createSession(key ? { kind: 'mac', hash: h, key } : { kind: 'hash', hash: h });
            sessions.set(h, s);
          }
          return s;
        };
        try {
          if (!values.check) {
            const s = await session(hash ?? DEFAULT_DIGEST);
            for (const name of inputs) {
              try {
                process.stdout.write(`${await digestOf(handle, s, name, spec)}  ${name}\n`);
              } catch (err) {
                report(err);
              }
            }
            return;
          }
          let mismatched = 0;
          let unreadable = 0;
          for (const list of inputs) {
            let text: string;
            try {
              text = (await readInput(list, 1n << 24n, spec)).toString('utf8');
            } catch (err) {
              report(err);
              continue;
            }
            let good = 0;
            let bad = 0;
            for (const line of text.split('\n')) {
              if (line.trim() === '') continue;
              const entry = parseCheckLine(line.replace(/\r$/, ''));
              const algo = entry && (hash ?? BY_HEX_LENGTH[entry.hex.length]);
              if (!entry || !algo || (hash !== undefined && entry.hex.length !== HEX_LENGTH[hash])) {
                bad++;
                continue;
              }
              good++;
              let actual: string;
              try {
                actual = await digestOf(handle, await session(algo), entry.name, spec);
              } catch (err) {
                report(err);
                process.stdout.write(`${entry.name}: FAILED open or read\n`);
                unreadable++;
                continue;
              }
              if (actual === entry.hex) {
                if (!values.quiet) process.stdout.write(`${entry.name}: OK\n`);
              } else {
                process.stdout.write(`${entry.name}: FAILED\n`);
                mismatched++;
              }
            }
            if (bad > 0) warn(`WARNING: ${bad} line${bad === 1 ? ' is' : 's are'} improperly formatted in ${list}`);
            if (good === 0) {
              warn(`${list}: no properly formatted checksum lines found`);
              failed = true;
            }
          }
          if (unreadable > 0) warn(`WARNING: ${unreadable} listed file${unreadable === 1 ? '' : 's'} could not be read`);
          if (mismatched > 0) {
            warn(`WARNING: ${mismatched} computed checksum${mismatched === 1 ? '' : 's'} did NOT match`);
            failed = true;
          }
        } finally {
          await handle.close();
        }
      });
    } finally {
      zeroize(key);
    }
    return failed ? 1 : 0;
  },
};

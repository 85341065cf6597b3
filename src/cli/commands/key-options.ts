/**
 * Keys and IVs for enc/dec/dgst without putting them on the command line (where every user sees
 * them through `ps` and /proc/PID/cmdline): from a file (`--key-file`, `--iv-file`, `--hmac-key-file`)
 * or from an environment variable that is removed from the environment once read (`--key-env`, as
 * the chat's `--passphrase-env`). `--key HEX` / `--hmac KEY` still work, for tests and throwaway keys.
 *
 * A malformed value (bad hex, wrong length) is a usage error (exit 2), wherever it came from; a file
 * that cannot be read is a failure (exit 1). Key bytes are returned in fresh buffers the caller zeroes.
 */
import { open, rename, rm, stat, readFile } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { randomBytes } from 'node:crypto';
import type { WriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { zeroize } from '../../driver/cryptodev-semantics.js';
import { CliError, UsageError } from '../command.js';

/** A key or IV file is small: anything bigger is not one (and is not read into memory). */
const MAX_SECRET_FILE = 4096;

/** Parses a hex string of exactly `bytes` bytes (when given). The text is never echoed: it may be a key. */
export function parseHex(what: string, text: string, bytes?: number): Uint8Array {
  if (!/^([0-9a-fA-F]{2})*$/.test(text)) {
    throw new UsageError(`invalid ${what}: not a hex string (an even number of 0-9a-f digits)`);
  }
  if (bytes !== undefined && text.length !== bytes * 2) {
    throw new UsageError(`invalid ${what}: expected ${bytes * 2} hex digits (${bytes} bytes), got ${text.length}`);
  }
  return new Uint8Array(Buffer.from(text, 'hex'));
}

/** Reads a small file holding a secret; warns when other users may read it (as ssh does). */
export async function readSecretFile(path: string, what: string, warn: (line: string) => void): Promise<Buffer> {
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new CliError(`${what} ${path} is not a regular file`);
    if (st.size > MAX_SECRET_FILE) throw new CliError(`${what} ${path} is too large (${st.size} bytes) to be a ${what}`);
    if ((st.mode & 0o077) !== 0) warn(`warning: ${what} ${path} is accessible by other users (chmod 600 ${path})`);
    return await readFile(path);
  } catch (err) {
    if (err instanceof CliError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new CliError(`cannot read ${what} ${path}: ${why}`, 1, { cause: err });
  }
}

/** Reads environment variable `name` and removes it, so no child process inherits it. */
export function takeEnv(name: string, option: string): string {
  if (name === '') throw new UsageError(`invalid ${option} ''`);
  const value = process.env[name];
  if (value === undefined) throw new CliError(`environment variable ${name} (${option}) is not set`);
  delete process.env[name];
  return value;
}

/** Hex text from a file: surrounding whitespace (a trailing newline) is ignored. */
async function hexFromFile(path: string, what: string, bytes: number | undefined, warn: (line: string) => void): Promise<Uint8Array> {
  const content = await readSecretFile(path, what, warn);
  try {
    return parseHex(`${what} in ${path}`, content.toString('latin1').trim(), bytes);
  } finally {
    zeroize(content);
  }
}

/** Exactly one of the options may be given; returns its name, or undefined when none is. */
function oneOf(values: Record<string, string | undefined>, names: readonly string[], required: boolean): string | undefined {
  const given = names.filter((n) => values[n] !== undefined);
  if (given.length > 1) throw new UsageError(`give only one of ${given.map((n) => `--${n}`).join(', ')}`);
  if (given.length === 0 && required) throw new UsageError(`a key is required: ${names.map((n) => `--${n}`).join(', ')}`);
  const name = given[0];
  if (name !== undefined && values[name] === '') throw new UsageError(`invalid --${name} ''`);
  return name;
}

export const CIPHER_KEY_OPTIONS = {
  key: { type: 'string' },
  'key-file': { type: 'string' },
  'key-env': { type: 'string' },
  iv: { type: 'string' },
  'iv-file': { type: 'string' },
} as const;

export const CIPHER_KEY_HELP = [
  '  --key-file FILE    the key as hex in FILE (e.g. made by `vcrypto keygen` for AES-256); preferred',
  '  --key-env VAR      the key as hex in environment variable VAR (removed from the environment once read)',
  '  --key HEX          the key on the command line: 32/48/64 hex digits for AES-128/192/256',
  '                     (visible to every user through ps: for tests and throwaway keys only)',
  '  --iv HEX           the IV, 32 hex digits; required for CBC and CTR, not used by ECB',
  '  --iv-file FILE     the IV as hex in FILE',
];

export interface CipherKeyValues {
  key?: string | undefined;
  'key-file'?: string | undefined;
  'key-env'?: string | undefined;
  iv?: string | undefined;
  'iv-file'?: string | undefined;
}

/** The cipher key from --key, --key-file or --key-env (exactly one): `bytes` bytes. */
export async function loadCipherKey(values: CipherKeyValues, bytes: number, warn: (line: string) => void): Promise<Uint8Array> {
  const source = oneOf(values as Record<string, string | undefined>, ['key-file', 'key-env', 'key'], true);
  if (source === 'key-file') return hexFromFile(values['key-file']!, 'key file', bytes, warn);
  if (source === 'key-env') return parseHex(`key in $${values['key-env']}`, takeEnv(values['key-env']!, '--key-env').trim(), bytes);
  return parseHex('--key', values.key!, bytes);
}

/** The IV from --iv or --iv-file (at most one), 16 bytes; undefined when neither is given. */
export async function loadIv(values: CipherKeyValues): Promise<Uint8Array | undefined> {
  const source = oneOf(values as Record<string, string | undefined>, ['iv', 'iv-file'], false);
  if (source === undefined) return undefined;
  if (source === 'iv-file') return hexFromFile(values['iv-file']!, 'IV file', 16, () => undefined);
  return parseHex('--iv', values.iv!, 16);
}

export const HMAC_KEY_OPTIONS = {
  hmac: { type: 'string' },
  'hmac-key-file': { type: 'string' },
  'key-env': { type: 'string' },
} as const;

export const HMAC_KEY_HELP = [
  '  --hmac-key-file FILE  HMAC with the bytes of FILE as the key (one trailing newline is dropped)',
  '  --key-env VAR         HMAC with the value of environment variable VAR (removed once read)',
  '  --hmac KEY            HMAC with KEY, the bytes of the string as `openssl dgst -hmac KEY`',
  '                        (visible to every user through ps: for tests only)',
];

export interface HmacKeyValues {
  hmac?: string | undefined;
  'hmac-key-file'?: string | undefined;
  'key-env'?: string | undefined;
}

/** The HMAC key from --hmac, --hmac-key-file or --key-env (at most one); undefined: a plain hash. */
export async function loadHmacKey(values: HmacKeyValues, warn: (line: string) => void): Promise<Uint8Array | undefined> {
  const source = oneOf(values as Record<string, string | undefined>, ['hmac-key-file', 'key-env', 'hmac'], false);
  if (source === undefined) return undefined;
  if (source === 'hmac-key-file') {
    const content = await readSecretFile(values['hmac-key-file']!, 'key file', warn);
    let end = content.length;
    if (end > 0 && content[end - 1] === 0x0a) end--;
    if (end > 0 && content[end - 1] === 0x0d) end--;
    const key = new Uint8Array(content.subarray(0, end));
    zeroize(content);
    return key;
  }
  const text = source === 'key-env' ? takeEnv(values['key-env']!, '--key-env') : values.hmac!;
  return new Uint8Array(Buffer.from(text, 'utf8'));
}

// ------------------------------------------------------------------------------------------------
// --in / --out

/** `--in FILE` (or stdin): a readable stream; a missing file is a one-line failure. */
export async function openInput(path: string | undefined): Promise<Readable> {
  if (path === undefined || path === '-') return process.stdin;
  try {
    const fh = await open(path, 'r');
    const st = await fh.stat();
    if (st.isDirectory()) {
      await fh.close();
      throw new CliError(`${path}: Is a directory`);
    }
    return fh.createReadStream();
  } catch (err) {
    if (err instanceof CliError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new CliError(`${path}: ${code === 'ENOENT' ? 'No such file or directory' : code === 'EACCES' ? 'Permission denied' : (err as Error).message}`, 1, { cause: err });
  }
}

/**
 * `--out FILE`: written to a temporary file beside FILE (mode 600) and renamed over FILE only when
 * `commit()` is called, so a failed run leaves no partial output and an existing FILE untouched.
 */
export interface AtomicOutput {
  readonly stream: WriteStream;
  commit(): Promise<void>;
  discard(): Promise<void>;
}

export async function openAtomicOutput(path: string): Promise<AtomicOutput> {
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.tmp`);
  let stream: WriteStream;
  try {
    stream = (await open(tmp, 'wx', 0o600)).createWriteStream();
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    throw new CliError(`cannot write ${path}: ${code === 'ENOENT' ? 'No such directory' : code === 'EACCES' ? 'Permission denied' : (err as Error).message}`, 1, { cause: err });
  }
  const closed = (): Promise<void> =>
    new Promise((resolve, reject) => {
      if (stream.closed) return resolve();
      stream.once('error', reject);
      stream.end(() => resolve());
    });
  return {
    stream,
    async commit() {
      await closed();
      try {
        await rename(tmp, path);
      } catch (err) {
        await rm(tmp, { force: true });
        throw new CliError(`cannot write ${path}: ${(err as Error).message}`, 1, { cause: err });
      }
    },
    async discard() {
      stream.destroy();
      await rm(tmp, { force: true });
    },
  };
}


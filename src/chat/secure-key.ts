/**
 * The secure chat's pre-shared key: from a key file (`--psk-file`) or a passphrase in an environment
 * variable (`--passphrase-env`), and fresh ones for `vcrypto keygen`.
 *
 * Key file format: 64 hexadecimal digits (whitespace and `#` comment lines ignored), as `vcrypto keygen`
 * prints; or exactly 32 raw bytes. A file that is neither is refused (never truncated or padded).
 *
 * Passphrase stretching: scrypt (RFC 7914) with N = 2^15, r = 8, p = 1, dkLen = 32 and the fixed salt
 * PASSPHRASE_SALT. DEVIATION: the salt is fixed (both peers must derive the same PSK with no message
 * exchanged first: NNpsk0 uses the PSK in its first message); it only separates this use from others.
 * The cost is ~32 MiB and ~0.1 s per derivation, once per process.
 */
import { randomBytes, scrypt } from 'node:crypto';
import { readFile, stat } from 'node:fs/promises';
import { PSKLEN } from './noise/handshake-state.js';
import { zeroize } from '../driver/cryptodev-semantics.js';

export const SCRYPT_PARAMS = { N: 2 ** 15, r: 8, p: 1 } as const;
export const PASSPHRASE_SALT = 'vcrypto secure chat v1 passphrase';
/** Passphrases shorter than this get a warning (they are guessable offline from one recorded handshake). */
export const SHORT_PASSPHRASE = 12;

/** The key could not be loaded; the message says why in one line and never shows key bytes. */
export class SecureKeyError extends Error {
  override readonly name = 'SecureKeyError';
}

/** A fresh random key. */
export function generateKey(): Uint8Array {
  return new Uint8Array(randomBytes(PSKLEN));
}

/** The key file text for `key` (what keygen prints). */
export function formatKey(key: Uint8Array): string {
  return `${Buffer.from(key).toString('hex')}\n`;
}

/** Parses key file contents (64 hex digits, or 32 raw bytes). The caller wipes `content`. */
export function parseKey(content: Uint8Array): Uint8Array {
  const text = Buffer.from(content).toString('latin1');
  const digits = text
    .split('\n')
    .filter((line) => !line.trimStart().startsWith('#'))
    .join('')
    .replace(/\s+/g, '');
  let key: Uint8Array;
  if (/^[0-9a-fA-F]*$/.test(digits) && digits.length === 2 * PSKLEN) {
    key = new Uint8Array(Buffer.from(digits, 'hex'));
  } else if (content.length === PSKLEN && !/^[\x20-\x7e]*$/.test(text)) {
    key = Uint8Array.from(content);
  } else if (/^[0-9a-fA-F]*$/.test(digits) && digits.length > 0) {
    throw new SecureKeyError(`the key has ${digits.length} hex digits; expected ${2 * PSKLEN} (a ${PSKLEN}-byte key; make one with 'vcrypto keygen')`);
  } else {
    throw new SecureKeyError(`not a key file: expected ${2 * PSKLEN} hex digits or ${PSKLEN} raw bytes (make one with 'vcrypto keygen')`);
  }
  if (key.every((b) => b === 0)) {
    zeroize(key);
    throw new SecureKeyError('the key is all zeros; make a real one with vcrypto keygen');
  }
  return key;
}

/**
 * Reads a key file. `warn` gets a line if the file is readable by group or others (like ssh, we
 * say so; unlike ssh we still use it, since a lab machine often has loose umasks).
 */
export async function readKeyFile(path: string, warn: (line: string) => void = () => {}): Promise<Uint8Array> {
  let content: Buffer;
  try {
    const st = await stat(path);
    if (!st.isFile()) throw new SecureKeyError(`key file ${path} is not a regular file`);
    if (st.size > 4096) throw new SecureKeyError(`key file ${path} is too large to be a key file`);
    if ((st.mode & 0o077) !== 0) warn(`warning: key file ${path} is accessible by other users (chmod 600 ${path})`);
    content = await readFile(path);
  } catch (err) {
    if (err instanceof SecureKeyError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : (err as Error).message;
    throw new SecureKeyError(`cannot read key file ${path}: ${why}`, { cause: err });
  }
  try {
    return parseKey(content);
  } catch (err) {
    if (err instanceof SecureKeyError) throw new SecureKeyError(`key file ${path}: ${err.message}`);
    throw err;
  } finally {
    zeroize(content);
  }
}

/** Stretches a passphrase to a 32-byte key with scrypt (parameters above). */
export async function keyFromPassphrase(passphrase: string, warn: (line: string) => void = () => {}): Promise<Uint8Array> {
  if (passphrase.length === 0) throw new SecureKeyError('the passphrase is empty');
  if ([...passphrase].length < SHORT_PASSPHRASE) {
    warn(`warning: the passphrase is shorter than ${SHORT_PASSPHRASE} characters; anyone who records a handshake can try to guess it offline`);
  }
  const secret = Buffer.from(passphrase.normalize('NFC'), 'utf8');
  try {
    const key = await new Promise<Buffer>((resolve, reject) =>
      scrypt(secret, PASSPHRASE_SALT, PSKLEN, { ...SCRYPT_PARAMS, maxmem: 64 * 1024 * 1024 }, (err, out) => (err ? reject(err) : resolve(out))),
    );
    const copy = new Uint8Array(key);
    zeroize(key);
    return copy;
  } finally {
    zeroize(secret);
  }
}

/**
 * Reads the passphrase from environment variable `name`, and removes it from `env` so that no child
 * process inherits it. (A JS string cannot be overwritten; the derived key can, and is, by the caller.)
 */
export async function keyFromPassphraseEnv(name: string, env: NodeJS.ProcessEnv = process.env, warn?: (line: string) => void): Promise<Uint8Array> {
  const value = env[name];
  if (value === undefined) throw new SecureKeyError(`environment variable ${name} is not set`);
  delete env[name];
  return keyFromPassphrase(value, warn);
}

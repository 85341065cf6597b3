/**
 * Helpers shared by the crypto commands (test-crypto, test-fork-crypto, enc, dec, dgst, bench):
 * opening the `--device`, hex and cipher-name parsing, the lab's test routine, and the streaming
 * cipher used by enc/dec (bounded memory, CBC chaining and CTR counters carried across requests).
 */
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Readable, Writable } from 'node:stream';
import { CryptoError, type CipherAlgorithm, type CryptoDevice, type CryptoHandle } from '../../driver/api.js';
import { AES_BLOCK_SIZE, nextIv, zeroize } from '../../driver/cryptodev-semantics.js';
import { openDevice, parseDeviceSpec } from '../../transport/open-device.js';
import { CliError, UsageError } from '../command.js';

/** Turns a CryptoError into the one-line CliError the CLI prints (exit 1). */
export function asCliError(err: unknown): unknown {
  if (err instanceof CryptoError) return new CliError(err.message, 1, { cause: err });
  return err;
}

/** Validates a --device spec (usage error, exit 2, when it cannot name a device). */
export function checkDeviceSpec(spec: string): string {
  try {
    parseDeviceSpec(spec);
  } catch (err) {
    throw new UsageError(err instanceof Error ? err.message.replace(/^EINVAL: /, '') : String(err));
  }
  return spec;
}

/** Opens the device, runs `fn`, always closes the device; CryptoErrors become CliErrors. */
export async function withDevice<T>(spec: string, fn: (device: CryptoDevice) => Promise<T>): Promise<T> {
  let device: CryptoDevice;
  try {
    device = await openDevice(checkDeviceSpec(spec));
  } catch (err) {
    throw asCliError(err);
  }
  try {
    return await fn(device);
  } catch (err) {
    throw asCliError(err);
  } finally {
    await device.close();
  }
}

export const CLI_CIPHERS = [
  'aes-128-cbc', 'aes-192-cbc', 'aes-256-cbc',
  'aes-128-ctr', 'aes-192-ctr', 'aes-256-ctr',
  'aes-128-ecb', 'aes-192-ecb', 'aes-256-ecb',
] as const;
export type CliCipher = (typeof CLI_CIPHERS)[number];

export interface CipherSpec {
  readonly name: CliCipher;
  readonly cipher: Extract<CipherAlgorithm, 'aes-cbc' | 'aes-ctr' | 'aes-ecb'>;
  readonly keyLength: number;
  /** Block modes pad (PKCS#7) by default; CTR is a stream mode and never pads. */
  readonly padded: boolean;
}

/** `aes-128-cbc` → { cipher: 'aes-cbc', keyLength: 16 }. The names `openssl enc` uses. */
export function parseCipherName(text: string): CipherSpec {
  const name = text.toLowerCase();
  if (!(CLI_CIPHERS as readonly string[]).includes(name)) {
    throw new UsageError(`unknown cipher '${text}' (expected one of ${CLI_CIPHERS.join(', ')})`);
  }
  const [, bits, mode] = name.split('-') as [string, string, 'cbc' | 'ctr' | 'ecb'];
  return { name: name as CliCipher, cipher: `aes-${mode}`, keyLength: Number(bits) / 8, padded: mode !== 'ctr' };
}

/** Writes with back-pressure: waits for 'drain' when the stream's buffer is full. */
export async function writeAll(out: Writable, data: Uint8Array): Promise<void> {
  if (data.length === 0) return;
  if (out.write(data)) return;
  try {
    await once(out, 'drain'); // rejects if the stream errors meanwhile (e.g. EPIPE: the reader went away)
  } catch (err) {
    throw new CliError(`cannot write the output: ${err instanceof Error ? err.message : String(err)}`, 1, { cause: err });
  }
}

export interface CipherStreamOptions {
  handle: CryptoHandle;
  spec: CipherSpec;
  key: Uint8Array;
  iv: Uint8Array | undefined;
  op: 'encrypt' | 'decrypt';
  /** PKCS#7 (openssl's default); ignored for CTR. */
  pad: boolean;
  input: AsyncIterable<Uint8Array> | Readable;
  output: Writable;
  /** Bytes per request: a multiple of 16, within the device's max_size. */
  chunkSize: number;
  /** Requests in flight where the IVs allow it (default 4). */
  depth?: number;
}

/** The request size for streaming: 64 KiB, or less when the device's max_size is smaller. */
export function streamChunkSize(maxSize: bigint, preferred = 64 * 1024): number {
  const cap = maxSize < BigInt(preferred) ? Number(maxSize) : preferred;
  const size = cap - (cap % AES_BLOCK_SIZE);
  if (size < AES_BLOCK_SIZE) throw new CliError(`device max_size ${maxSize} is smaller than one AES block`);
  return size;
}

/**
 * enc/dec: streams `input` through a cipher session in requests of `chunkSize` bytes, carrying the IV
 * from one request to the next: CBC encryption takes it from the device (writeIv: the last ciphertext
 * block, known only when the request completes, so one request at a time); CTR, ECB and CBC decryption
 * know the next IV in advance (nextIv of cryptodev-semantics.ts), so up to `depth` requests are in
 * flight. Output is written in order; memory stays bounded by about (depth + 2) chunks.
 * Output is byte-identical to `openssl enc [-d] -<cipher> -K -iv [-nopad]`.
 */
export async function runCipherStream(o: CipherStreamOptions): Promise<void> {
  const pad = o.pad && o.spec.padded;
  const { cipher } = o.spec;
  const session = await o.handle.createSession({ kind: 'cipher', cipher, key: o.key });
  let iv = o.iv;
  const pending: Buffer[] = [];
  let pendingLength = 0;
  const chained = cipher === 'aes-cbc' && o.op === 'encrypt';
  const depth = chained ? 1 : Math.max(1, o.depth ?? 4);
  const inFlight: Promise<Uint8Array>[] = [];

  const take = (n: number): Buffer => {
    const all = pending.length === 1 ? pending[0]! : Buffer.concat(pending, pendingLength);
    pending.length = 0;
    const head = all.subarray(0, n);
    const rest = all.subarray(n);
    if (rest.length > 0) pending.push(rest);
    pendingLength = rest.length;
    return head;
  };
  /** Writes completed results, oldest first, until at most `n` requests remain in flight. */
  const drainTo = async (n: number): Promise<void> => {
    while (inFlight.length > n) await writeAll(o.output, await inFlight.shift()!);
  };
  const submit = async (src: Uint8Array): Promise<void> => {
    if (src.length === 0) return;
    await drainTo(depth - 1);
    let result: Promise<Uint8Array>;
    if (chained) {
      // depth 1: the previous request has completed and set `iv`.
      result = o.handle.crypt(session, { op: o.op, src, iv, writeIv: true }).then((r) => {
        iv = r.iv;
        return r.dst;
      });
    } else {
      const requestIv = iv;
      if (cipher !== 'aes-ecb') iv = nextIv(cipher, o.op, requestIv, src, new Uint8Array(0));
      result = o.handle.crypt(session, { op: o.op, src, iv: requestIv }).then((r) => r.dst);
    }
    result.catch(() => undefined); // awaited in order by drainTo; no unhandled rejection meanwhile
    inFlight.push(result);
  };

  try {
    // Decrypting padded data: the last block must be held back until EOF (it carries the padding).
    const holdBack = pad && o.op === 'decrypt' ? 1 : 0;
    for await (const chunk of o.input as AsyncIterable<Uint8Array>) {
      const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk);
      if (buf.length === 0) continue;
      pending.push(buf);
      pendingLength += buf.length;
      while (pendingLength >= o.chunkSize + holdBack) await submit(take(o.chunkSize));
    }
    let last = take(pendingLength);
    if (cipher === 'aes-ctr') {
      await submit(last);
    } else if (pad && o.op === 'encrypt') {
      // PKCS#7 (RFC 5652 §6.3): always 1..16 bytes, each equal to the count.
      const n = AES_BLOCK_SIZE - (last.length % AES_BLOCK_SIZE);
      last = Buffer.concat([last, Buffer.alloc(n, n)]);
      await submit(last);
    } else if (last.length % AES_BLOCK_SIZE !== 0) {
      throw new CliError(
        pad
          ? `bad decrypt: input is not a multiple of the ${AES_BLOCK_SIZE}-byte block size`
          : `data not a multiple of the ${AES_BLOCK_SIZE}-byte block size (--nopad needs whole blocks)`,
      );
    } else if (!pad) {
      await submit(last);
    } else {
      if (last.length === 0) throw new CliError('bad decrypt: no final block (empty or truncated input)');
      await submit(last);
      await drainTo(1);
      const plain = await inFlight.shift()!;
      const n = plain[plain.length - 1] ?? 0;
      let ok = n >= 1 && n <= AES_BLOCK_SIZE;
      for (let i = 1; ok && i <= n; i++) ok = plain[plain.length - i] === n;
      if (!ok) throw new CliError('bad decrypt: wrong key or IV, or corrupted data (invalid PKCS#7 padding)');
      await writeAll(o.output, plain.subarray(0, plain.length - n));
    }
    await drainTo(0);
  } finally {
    await Promise.allSettled(inFlight);
    for (const b of pending) zeroize(b);
    await o.handle.closeSession(session).catch(() => undefined);
  }
}

export const LAB_DATA_SIZE = 16384;

/**
 * The lab's test_crypto: 16384 random bytes, a random key and IV (the original left them uninitialised),
 * AES-CBC encrypt, decrypt, verify. Prints the lab's lines through `print`; returns true on success.
 */
export async function runLabTest(handle: CryptoHandle, keyBits: number, print: (line: string) => void): Promise<boolean> {
  const data = randomBytes(LAB_DATA_SIZE);
  const key = randomBytes(keyBits / 8);
  const iv = randomBytes(AES_BLOCK_SIZE);
  let step = 'Starting Session...';
  try {
    const session = await handle.createSession({ kind: 'cipher', cipher: 'aes-cbc', key });
    print(`${step}[OK]`);
    step = `Doing encryption of ${LAB_DATA_SIZE} bytes of data...`;
    const encrypted = await handle.crypt(session, { op: 'encrypt', src: data, iv });
    print(`${step}[OK]`);
    step = `Doing decryption of ${LAB_DATA_SIZE} bytes of data...`;
    const decrypted = await handle.crypt(session, { op: 'decrypt', src: encrypted.dst, iv });
    print(`${step}[OK]`);
    const same = Buffer.compare(Buffer.from(decrypted.dst.buffer, decrypted.dst.byteOffset, decrypted.dst.byteLength), data) === 0;
    const differs = Buffer.compare(Buffer.from(encrypted.dst.buffer, encrypted.dst.byteOffset, encrypted.dst.byteLength), data) !== 0;
    print(`Doing Verification of data... ${same && differs ? 'Success' : 'Error'}`);
    step = 'Ending Session...';
    await handle.closeSession(session);
    print(`${step}[OK]`);
    return same && differs;
  } catch (err) {
    print(`${step}[FAILED] ${err instanceof Error ? err.message : String(err)}`);
    return false;
  } finally {
    zeroize(key);
  }
}

/** --key-bits 128|192|256 */
export function parseKeyBits(text: string | undefined, fallback: number): number {
  if (text === undefined) return fallback;
  if (text !== '128' && text !== '192' && text !== '256') throw new UsageError(`invalid --key-bits '${text}': expected 128, 192 or 256`);
  return Number(text);
}

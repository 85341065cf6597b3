/**
 * The crypto commands, run built (`npm run build` first), against `openssl` as the oracle:
 * enc/dec byte-identical to `openssl enc` for the 9 ciphers and edge sizes, dec of openssl's output,
 * streamed multi-MiB inputs, padding and key errors; dgst equal to `openssl dgst` (5 digests, plain and
 * HMAC, FILE and stdin); test-crypto / test-fork-crypto output; bench --json shape.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_MAIN, killLeftovers, spawnProcess } from '../fixtures/cli.js';

const TIMEOUT_MS = 60_000;
/** The devices every CLI test runs on. Add 'virtio' here once its case lands in transport/open-device.ts. */
const DEVICES = ['host', 'virtio'] as const;

const tmp = mkdtempSync(join(tmpdir(), 'vcrypto-crypto-cli-'));
after(async () => {
  await killLeftovers();
  rmSync(tmp, { recursive: true, force: true });
});

interface Run {
  code: number | null;
  stdout: Buffer;
  stderr: string;
}

/** Runs a program to completion with `input` on stdin (test/fixtures/cli.ts: killed and failed after TIMEOUT_MS). */
async function run(command: string, args: readonly string[], input: Uint8Array | string = '', env?: NodeJS.ProcessEnv): Promise<Run> {
  const proc = spawnProcess(command, args, env === undefined ? {} : { env: { ...process.env, ...env } });
  proc.stdin.end(input);
  try {
    const { code } = await proc.waitForExit(TIMEOUT_MS);
    return { code, stdout: proc.stdout(), stderr: proc.stderr() };
  } finally {
    await proc.kill();
  }
}

const vcrypto = (args: readonly string[], input?: Uint8Array | string, env?: NodeJS.ProcessEnv): Promise<Run> =>
  run(process.execPath, [CLI_MAIN, ...args], input, env);

async function openssl(args: readonly string[], input?: Uint8Array | string): Promise<Buffer> {
  const r = await run('openssl', args, input);
  assert.equal(r.code, 0, `openssl ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** Runs `fn` over `items` with at most `limit` at a time (the machine is shared). */
async function pool<T>(items: readonly T[], limit: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await fn(items[next++]!);
  };
  await Promise.all(Array.from({ length: limit }, worker));
}

const CIPHERS = ['128', '192', '256'].flatMap((bits) => ['cbc', 'ctr', 'ecb'].map((mode) => `aes-${bits}-${mode}`));
const keyFor = (cipher: string): string => randomBytes(Number(cipher.split('-')[1]) / 8).toString('hex');
const ivArgs = (cipher: string, iv: string, tool: 'openssl' | 'vcrypto'): string[] =>
  cipher.endsWith('-ecb') ? [] : [tool === 'openssl' ? '-iv' : '--iv', iv];

for (const device of DEVICES) {
  test(`[${device}] enc and dec are byte-identical to openssl enc: 9 ciphers x sizes 0,1,15,16,17,100000`, async () => {
    const cases = CIPHERS.flatMap((cipher) => [0, 1, 15, 16, 17, 100000].map((size) => ({ cipher, size })));
    await pool(cases, 3, async ({ cipher, size }) => {
      const key = keyFor(cipher);
      const iv = randomBytes(16).toString('hex');
      const plain = randomBytes(size);
      const what = `${cipher} size ${size}`;
      const expected = await openssl(['enc', `-${cipher}`, '-K', key, ...ivArgs(cipher, iv, 'openssl')], plain);
      const enc = await vcrypto(['enc', '--device', device, '--cipher', cipher, '--key', key, ...ivArgs(cipher, iv, 'vcrypto')], plain);
      assert.equal(enc.code, 0, `${what}: ${enc.stderr}`);
      assert.equal(enc.stdout.toString('hex'), expected.toString('hex'), what);
      const dec = await vcrypto(['dec', '--device', device, '--cipher', cipher, '--key', key, ...ivArgs(cipher, iv, 'vcrypto')], expected);
      assert.equal(dec.code, 0, `${what}: ${dec.stderr}`);
      assert.ok(dec.stdout.equals(plain), `${what}: dec of openssl's ciphertext`);
    });
  });

  test(`[${device}] --nopad matches openssl -nopad for whole blocks, and rejects a partial block`, async () => {
    await pool(['aes-128-cbc', 'aes-192-ecb', 'aes-256-cbc'], 3, async (cipher) => {
      const key = keyFor(cipher);
      const iv = randomBytes(16).toString('hex');
      const plain = randomBytes(4096 + 48);
      const expected = await openssl(['enc', `-${cipher}`, '-nopad', '-K', key, ...ivArgs(cipher, iv, 'openssl')], plain);
      assert.equal(expected.length, plain.length);
      const enc = await vcrypto(['enc', '--device', device, '--nopad', '--cipher', cipher, '--key', key, ...ivArgs(cipher, iv, 'vcrypto')], plain);
      assert.equal(enc.code, 0, enc.stderr);
      assert.ok(enc.stdout.equals(expected), cipher);
      const dec = await vcrypto(['dec', '--device', device, '--nopad', '--cipher', cipher, '--key', key, ...ivArgs(cipher, iv, 'vcrypto')], expected);
      assert.equal(dec.code, 0, dec.stderr);
      assert.ok(dec.stdout.equals(plain), cipher);
      const partial = await vcrypto(['enc', '--device', device, '--nopad', '--cipher', cipher, '--key', key, ...ivArgs(cipher, iv, 'vcrypto')], randomBytes(17));
      assert.equal(partial.code, 1);
      assert.match(partial.stderr, /multiple of the 16-byte block size/);
    });
  });

  test(`[${device}] a few MiB streamed through enc and dec equal openssl (CBC chaining and CTR counters across requests)`, async () => {
    const input = join(tmp, `big-${device}`);
    const plain = randomBytes(3 * 1024 * 1024 + 5);
    writeFileSync(input, plain);
    await pool(['aes-256-cbc', 'aes-128-ctr', 'aes-192-ecb'], 2, async (cipher) => {
      const key = keyFor(cipher);
      // CTR: start near a 2^32 boundary so the counter carries out of its low word mid-stream.
      const iv = cipher.endsWith('-ctr') ? '00112233445566778899aabbfffffff0' : randomBytes(16).toString('hex');
      const expected = await openssl(['enc', `-${cipher}`, '-K', key, ...ivArgs(cipher, iv, 'openssl'), '-in', input]);
      const enc = await vcrypto(['enc', '--device', device, '--cipher', cipher, '--key', key, ...ivArgs(cipher, iv, 'vcrypto')], plain);
      assert.equal(enc.code, 0, enc.stderr);
      assert.ok(enc.stdout.equals(expected), `${cipher}: ${enc.stdout.length} vs ${expected.length} bytes`);
      const dec = await vcrypto(['dec', '--device', device, '--cipher', cipher, '--key', key, ...ivArgs(cipher, iv, 'vcrypto')], expected);
      assert.equal(dec.code, 0, dec.stderr);
      assert.ok(dec.stdout.equals(plain), cipher);
    });
  });

  test(`[${device}] dec: bad padding, truncated input, empty input → "bad decrypt", exit 1 (as openssl)`, async () => {
    const key = keyFor('aes-128-cbc');
    const iv = randomBytes(16).toString('hex');
    const args = ['dec', '--device', device, '--cipher', 'aes-128-cbc', '--key', key, '--iv', iv];
    // Plaintexts whose last block is not PKCS#7: ends in 0x00, ends in 0x11 (> 16), ends in 03 02 03.
    const badLastBlocks = [Buffer.alloc(16), Buffer.alloc(16, 0x11), Buffer.concat([Buffer.alloc(13), Buffer.from([3, 2, 3])])];
    for (const last of badLastBlocks) {
      const ct = await openssl(['enc', '-aes-128-cbc', '-nopad', '-K', key, '-iv', iv], Buffer.concat([randomBytes(32), last]));
      const ref = await run('openssl', ['enc', '-d', '-aes-128-cbc', '-K', key, '-iv', iv], ct);
      assert.equal(ref.code, 1, 'openssl rejects it too');
      const r = await vcrypto(args, ct);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /bad decrypt/);
    }
    const good = await openssl(['enc', '-aes-128-cbc', '-K', key, '-iv', iv], 'hello');
    for (const input of [good.subarray(0, 15), good.subarray(0, 0)]) {
      const r = await vcrypto(args, input);
      assert.equal(r.code, 1, `input of ${input.length} bytes`);
      assert.match(r.stderr, /bad decrypt/);
    }
  });

  test(`[${device}] enc/dec malformed values are usage errors (exit 2): wrong key length, bad hex, missing IV or key, bad cipher`, async () => {
    const iv = '00'.repeat(16);
    const cases: [string[], RegExp][] = [
      [['--cipher', 'aes-128-cbc', '--key', '00'.repeat(15), '--iv', iv], /expected 32 hex digits/],
      [['--cipher', 'aes-256-ctr', '--key', '00'.repeat(16), '--iv', iv], /expected 64 hex digits/],
      [['--cipher', 'aes-128-cbc', '--key', 'zz'.repeat(16), '--iv', iv], /not a hex string/],
      [['--cipher', 'aes-128-cbc', '--key', '00'.repeat(16), '--iv', '0g'.repeat(16)], /invalid --iv/],
      [['--cipher', 'aes-128-cbc', '--key', '00'.repeat(16), '--iv', '00'.repeat(8)], /expected 32 hex digits/],
      [['--cipher', 'aes-128-ctr', '--key', '00'.repeat(16)], /needs an IV/],
      [['--cipher', 'des-cbc', '--key', '00'.repeat(8), '--iv', iv], /unknown cipher/],
      [['--cipher', 'aes-128-cbc', '--iv', iv], /a key is required: --key-file, --key-env, --key/],
      [['--cipher', 'aes-128-cbc', '--key', '00'.repeat(16), '--key-env', 'K', '--iv', iv], /give only one of --key-env, --key/],
    ];
    for (const [args, message] of cases) {
      for (const cmd of ['enc', 'dec']) {
        const r = await vcrypto([cmd, '--device', device, ...args], 'x'.repeat(32));
        assert.equal(r.code, 2, `${cmd} ${args.join(' ')}: ${r.stderr}`);
        const [first = '', usage = ''] = r.stderr.split('\n');
        assert.match(first, message);
        assert.match(usage, new RegExp(`^Usage: vcrypto ${cmd} `), 'the usage line follows the one-line error');
        assert.doesNotMatch(r.stderr, /00000000000000/, 'a key is never echoed');
        assert.equal(r.stdout.length, 0);
      }
    }
  });

  test(`[${device}] keys off the command line: --key-file, --key-env (removed from the environment), --iv-file, --in/--out equal openssl`, async () => {
    const key = randomBytes(32);
    const iv = randomBytes(16);
    const data = randomBytes(100_003);
    const keyFile = join(tmp, `key-${device}.hex`);
    const ivFile = join(tmp, `iv-${device}.hex`);
    const inFile = join(tmp, `plain-${device}.bin`);
    const encFile = join(tmp, `cipher-${device}.bin`);
    const backFile = join(tmp, `back-${device}.bin`);
    writeFileSync(keyFile, key.toString('hex') + '\n', { mode: 0o600 });
    writeFileSync(ivFile, iv.toString('hex') + '\n');
    writeFileSync(inFile, data);
    const ref = await openssl(['enc', '-aes-256-cbc', '-K', key.toString('hex'), '-iv', iv.toString('hex')], data);
    const enc = await vcrypto(['enc', '--device', device, '--cipher', 'aes-256-cbc', '--key-file', keyFile, '--iv-file', ivFile, '--in', inFile, '--out', encFile]);
    assert.equal(enc.code, 0, enc.stderr);
    assert.equal(enc.stdout.length, 0);
    assert.ok(readFileSync(encFile).equals(ref), '--key-file/--iv-file/--in/--out output equals openssl enc');
    // --key-env (its removal from the environment is checked in key-options.test.ts).
    const viaEnv = await vcrypto(['dec', '--device', device, '--cipher', 'aes-256-cbc', '--key-env', 'VC_TEST_KEY', '--iv', iv.toString('hex'), '--in', encFile, '--out', backFile], '', {
      VC_TEST_KEY: key.toString('hex'),
    });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    assert.ok(readFileSync(backFile).equals(data));
    // A failed run leaves --out untouched and no temporary file behind.
    const wrongKey = join(tmp, `wrong-${device}.hex`);
    writeFileSync(wrongKey, randomBytes(32).toString('hex'), { mode: 0o600 });
    const failed = await vcrypto(['dec', '--device', device, '--cipher', 'aes-256-cbc', '--key-file', wrongKey, '--iv-file', ivFile, '--in', encFile, '--out', backFile]);
    assert.equal(failed.code, 1, failed.stderr);
    assert.match(failed.stderr, /bad decrypt/);
    assert.ok(readFileSync(backFile).equals(data), 'the previous --out file is intact');
    assert.deepEqual(readdirSync(tmp).filter((f) => f.endsWith('.tmp')), [], 'no temporary file left');
    const missing = await vcrypto(['enc', '--device', device, '--cipher', 'aes-256-cbc', '--key-file', join(tmp, 'nope.key'), '--iv-file', ivFile], 'x');
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot read key file .*nope\.key: no such file/);
  });

  test(`[${device}] dgst equals openssl dgst: 5 digests, plain and --hmac, FILE and stdin`, async () => {
    const file = join(tmp, `dgst-${device}.bin`);
    const fileData = randomBytes(70_001);
    writeFileSync(file, fileData);
    const stdinData = randomBytes(1000);
    const cases = ['sha1', 'sha224', 'sha256', 'sha384', 'sha512'].flatMap((digest) => [
      { digest, hmac: undefined as string | undefined },
      { digest, hmac: 'Jefe the key' },
    ]);
    await pool(cases, 3, async ({ digest, hmac }) => {
      const hmacOpenssl = hmac === undefined ? [] : ['-hmac', hmac];
      const refFile = (await openssl(['dgst', `-${digest}`, ...hmacOpenssl, '-r', file])).toString().split(' ')[0];
      const refStdin = (await openssl(['dgst', `-${digest}`, ...hmacOpenssl, '-r'], stdinData)).toString().split(' ')[0];
      const r = await vcrypto(['dgst', '--device', device, '--digest', digest, ...(hmac === undefined ? [] : ['--hmac', hmac]), file, '-'], stdinData);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), `${refFile}  ${file}\n${refStdin}  -\n`, `${digest} hmac=${hmac}`);
    });
    const noArgs = await vcrypto(['dgst', '--device', device, '--digest', 'sha256'], 'abc');
    assert.equal(noArgs.stdout.toString(), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad  -\n');
    const missing = await vcrypto(['dgst', '--device', device, '--digest', 'sha256', join(tmp, 'does-not-exist')]);
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /No such file/);
    assert.equal((await vcrypto(['dgst', '--device', device, '--digest', 'md5'])).code, 2);
  });

  test(`[${device}] dgst goes on after a directory or a missing file, exits 1 at the end; -c checks sha256sum's own output`, async () => {
    const a = join(tmp, `a-${device}.txt`);
    const b = join(tmp, `b-${device}.bin`);
    writeFileSync(a, 'abc');
    writeFileSync(b, randomBytes(5000));
    const r = await vcrypto(['dgst', '--device', device, a, tmp, join(tmp, 'nope'), b]);
    assert.equal(r.code, 1);
    const ref = (await run('sha256sum', [a, b])).stdout.toString();
    assert.equal(r.stdout.toString(), ref, 'both readable files hashed (sha256 by default), in order, as sha256sum prints them');
    assert.equal(r.stderr, `vcrypto dgst: ${tmp}: Is a directory\nvcrypto dgst: ${join(tmp, 'nope')}: No such file or directory\n`);
    assert.doesNotMatch(r.stderr, /internal error|\n\s+at /);
    // -c on sha256sum's output (and sha512sum's: the algorithm follows the line's length).
    const sums = join(tmp, `SUMS-${device}`);
    writeFileSync(sums, ref + (await run('sha512sum', [a])).stdout.toString());
    const ok = await vcrypto(['dgst', '--device', device, '-c', sums]);
    assert.equal(ok.code, 0, ok.stderr);
    assert.equal(ok.stdout.toString(), `${a}: OK\n${b}: OK\n${a}: OK\n`);
    writeFileSync(b, randomBytes(5000));
    writeFileSync(sums, ref + 'not a checksum line\n');
    const bad = await vcrypto(['dgst', '--device', device, '--check', sums]);
    assert.equal(bad.code, 1);
    assert.equal(bad.stdout.toString(), `${a}: OK\n${b}: FAILED\n`);
    assert.match(bad.stderr, /1 line is improperly formatted/);
    assert.match(bad.stderr, /WARNING: 1 computed checksum did NOT match/);
  });

  test(`[${device}] dgst of a file past the device's one-request limit names the limit and the alternative; 256 MiB fits`, async () => {
    const sparse = (name: string, bytes: number): string => {
      const f = join(tmp, `${name}-${device}.bin`);
      writeFileSync(f, '');
      truncateSync(f, bytes);
      return f;
    };
    const big = sparse('256m', 256 * 1024 * 1024);
    const r = await vcrypto(['dgst', '--device', device, big]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), (await run('sha256sum', [big])).stdout.toString());
    if (device !== 'host') {
      const over = sparse('over', 256 * 1024 * 1024 + 1);
      const small = join(tmp, `small-${device}.txt`);
      writeFileSync(small, 'abc');
      const o = await vcrypto(['dgst', '--device', device, over, small]);
      assert.equal(o.code, 1);
      assert.match(o.stderr, /^vcrypto dgst: .*over-.*\.bin: 268435457 bytes, more than the 256 MiB one request can hash on 'virtio' .*--device host/);
      assert.match(o.stdout.toString(), /^ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad {2}.*small/, 'the next file is hashed');
    }
  });

  test(`[${device}] test-crypto prints the lab's lines; --iterations adds SUCC = N`, async () => {
    const lab = [
      'Starting Session...[OK]',
      'Doing encryption of 16384 bytes of data...[OK]',
      'Doing decryption of 16384 bytes of data...[OK]',
      'Doing Verification of data... Success',
      'Ending Session...[OK]',
    ];
    const one = await vcrypto(['test-crypto', '--device', device]);
    assert.equal(one.code, 0, one.stderr);
    assert.deepEqual(one.stdout.toString().trimEnd().split('\n'), lab);
    for (const bits of ['128', '256']) {
      const many = await vcrypto(['test-crypto', '--device', device, '--key-bits', bits, '--iterations', '3']);
      assert.equal(many.code, 0, many.stderr);
      assert.deepEqual(many.stdout.toString().trimEnd().split('\n'), [...lab, ...lab, ...lab, 'SUCC = 3']);
    }
    assert.equal((await vcrypto(['test-crypto', '--device', device, '--key-bits', '100'])).code, 2);
    assert.equal((await vcrypto(['test-crypto', '--device', device, '--iterations', '0'])).code, 2);
  });

  test(`[${device}] test-fork-crypto with 4 children: each child verifies on its own handle`, async () => {
    const r = await vcrypto(['test-fork-crypto', '--device', device, '--children', '4']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.toString().trimEnd().split('\n');
    for (const k of [1, 2, 3, 4]) {
      const mine = lines.filter((l) => l.startsWith(`[child ${k}] `)).map((l) => l.slice(`[child ${k}] `.length));
      assert.deepEqual(mine, [
        'Starting Session...[OK]',
        'Doing encryption of 16384 bytes of data...[OK]',
        'Doing decryption of 16384 bytes of data...[OK]',
        'Doing Verification of data... Success',
        'Ending Session...[OK]',
      ]);
    }
    assert.equal(lines.at(-1), '4/4 children succeeded');
    assert.equal(lines.length, 21);
  });

  test(`[${device}] test-fork-crypto --mode processes: 3 child processes, each running test-crypto`, async () => {
    const r = await vcrypto(['test-fork-crypto', '--device', device, '--children', '3', '--mode', 'processes', '--key-bits', '128']);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.toString().trimEnd().split('\n');
    for (const k of [1, 2, 3]) assert.ok(lines.includes(`[child ${k}] Doing Verification of data... Success`), r.stdout.toString());
    assert.equal(lines.at(-1), '3/3 children succeeded');
    assert.equal((await vcrypto(['test-fork-crypto', '--device', device, '--mode', 'fork'])).code, 2);
  });

  test(`[${device}] enc of 256 MiB streamed: equals openssl, and the process stays smaller than its input (memory bounded)`, async () => {
    const block = randomBytes(1 << 20);
    const blocks = 256;
    const key = keyFor('aes-256-cbc');
    const iv = randomBytes(16).toString('hex');
    /** Feeds `blocks` copies of `block` to a process and hashes its stdout; samples its RSS on every output chunk. */
    const pump = (command: string, args: string[]): Promise<{ code: number | null; sha: string; maxRssKiB: number; bytes: number }> =>
      new Promise((resolve, reject) => {
        const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'inherit'] });
        const hash = createHash('sha256');
        let maxRssKiB = 0;
        let bytes = 0;
        child.stdout.on('data', (c: Buffer) => {
          hash.update(c);
          bytes += c.length;
          try {
            const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${child.pid}/status`, 'utf8'));
            if (m) maxRssKiB = Math.max(maxRssKiB, Number(m[1]));
          } catch {
            // exited between chunks
          }
        });
        child.once('error', reject);
        child.once('close', (code) => resolve({ code, sha: hash.digest('hex'), maxRssKiB, bytes }));
        let sent = 0;
        const feed = (): void => {
          while (sent < blocks) {
            sent++;
            if (!child.stdin.write(block)) {
              child.stdin.once('drain', feed);
              return;
            }
          }
          child.stdin.end();
        };
        feed();
      });
    const [ours, ref] = await Promise.all([
      pump(process.execPath, [CLI_MAIN, 'enc', '--device', device, '--cipher', 'aes-256-cbc', '--key', key, '--iv', iv]),
      pump('openssl', ['enc', '-aes-256-cbc', '-K', key, '-iv', iv]),
    ]);
    assert.equal(ours.code, 0);
    assert.equal(ours.bytes, blocks * (1 << 20) + 16);
    assert.equal(ours.sha, ref.sha);
    // A process that held the 256 MiB input (or output) would be larger than 256 MiB; streaming stays far
    // below (measured: about 100 MiB on host, 175 MiB on virtio with its guest memory, for any input size).
    assert.ok(ours.maxRssKiB > 0 && ours.maxRssKiB < 240 * 1024, `max RSS ${ours.maxRssKiB} KiB`);
  });
}

test('bench --json prints exactly one JSON object of the documented shape', async () => {
  const r = await vcrypto(['bench', '--device', `raw,${DEVICES.join(',')}`, '--sizes', '64,1024', '--depth', '1,4', '--seconds', '0.05', '--json']);
  assert.equal(r.code, 0, r.stderr);
  const parsed = JSON.parse(r.stdout.toString()) as { results: Record<string, unknown>[]; deviceStats: Record<string, Record<string, number>> };
  assert.deepEqual(Object.keys(parsed), ['results', 'deviceStats']);
  // The embedded device's own counters: every request an AES-128-CBC encryption of 64 or 1024 bytes.
  assert.deepEqual(Object.keys(parsed.deviceStats), ['virtio']);
  const st = parsed.deviceStats.virtio!;
  const ops = st['sym-encrypt-ops']!;
  assert.ok(ops > 0);
  assert.ok(st['sym-encrypt-bytes']! >= 64 * ops && st['sym-encrypt-bytes']! <= 1024 * ops, JSON.stringify(st));
  assert.equal(st['sym-decrypt-ops'], 0);
  assert.equal(st['errors-err'], 0);
  assert.equal(st['malformed-chains'], 0);
  assert.equal(st['sessions-created'], st['sessions-destroyed']);
  assert.equal(st.requests, ops + st['sessions-created']! + st['sessions-destroyed']!, 'data requests + control requests');
  const expected = [
    ...[64, 1024].map((size) => ({ device: 'raw', size, depth: 1 })),
    ...DEVICES.flatMap((device) => [64, 1024].flatMap((size) => [1, 4].map((depth) => ({ device, size, depth })))),
  ];
  assert.deepEqual(parsed.results.map(({ device, size, depth }) => ({ device, size, depth })), expected);
  for (const res of parsed.results) {
    assert.deepEqual(Object.keys(res).sort(), ['depth', 'device', 'mbPerSec', 'op', 'opsPerSec', 'rawMbPerSec', 'rawOpsPerSec', 'size', 'vsRawMb', 'vsRawOps']);
    assert.equal(res.op, 'aes-128-cbc-encrypt');
    assert.ok(typeof res.opsPerSec === 'number' && res.opsPerSec > 0);
    assert.ok(typeof res.mbPerSec === 'number' && Math.abs(res.mbPerSec - ((res.opsPerSec as number) * (res.size as number)) / 1e6) < 0.01 + (res.mbPerSec as number) * 1e-3);
  }
  const table = await vcrypto(['bench', '--device', 'raw,host', '--sizes', '64', '--depth', '2', '--seconds', '0.05']);
  assert.equal(table.code, 0, table.stderr);
  assert.match(table.stdout.toString(), /^host\s+64\s+2\s+\d+\s+[\d.]+\s+[\d.]+x\s+[\d.]+x$/m);
  assert.equal((await vcrypto(['bench', '--sizes', '100'])).code, 2);
  assert.equal((await vcrypto(['bench', '--device', 'nonsense'])).code, 2);
});

test('unknown --device spec is a usage error (exit 2); vhost-user without a path too', async () => {
  for (const spec of ['nonsense', 'vhost-user:']) {
    const r = await vcrypto(['test-crypto', '--device', spec]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /device spec/);
  }
});

/**
 * `vcrypto crypto-server` / `crypto-client` / `keygen` as real processes, with a recording TCP proxy
 * between the peers (an eavesdropper and, with a transform, an active attacker). Run `npm run build` first.
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, readFileSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type Socket } from 'node:net';
import { runCli, spawnCli, killLeftovers, type SpawnedProcess } from '../fixtures/cli.js';
import { startRecordingProxy, frameTransform, type RecordingProxy } from '../fixtures/recording-proxy.js';

/** The device every chat process uses: the embedded virtio-crypto device, as by default (VCRYPTO_TEST_DEVICE overrides). */
const DEVICE = process.env.VCRYPTO_TEST_DEVICE ?? 'virtio';
const HELLO_BYTES = 5;

let dir = '';
let keyA = '';
let keyB = '';
before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'vcrypto-chat-'));
  keyA = join(dir, 'a.key');
  keyB = join(dir, 'b.key');
  for (const k of [keyA, keyB]) {
    const r = await runCli(['keygen', '--out', k]);
    assert.equal(r.code, 0, r.stderr);
  }
});
after(async () => {
  await killLeftovers();
  rmSync(dir, { recursive: true, force: true });
});

async function startServer(t: { after(fn: () => unknown): void }, key = keyA): Promise<[SpawnedProcess, number]> {
  const server = spawnCli(['crypto-server', '--port', '0', '--psk-file', key, '--device', DEVICE], { t });
  const [, port] = await server.waitForStderr(/listening on 127\.0\.0\.1:(\d+)/);
  return [server, Number(port)];
}

function client(t: { after(fn: () => unknown): void }, port: number, key = keyA): SpawnedProcess {
  return spawnCli(['crypto-client', '127.0.0.1', String(port), '--psk-file', key, '--device', DEVICE], { t });
}

/** Every 8-byte window of `data`, as a set (to test "no 8-byte piece of X appears in Y" quickly). */
function windows8(data: Buffer): Set<string> {
  const set = new Set<string>();
  for (let i = 0; i + 8 <= data.length; i++) set.add(data.toString('latin1', i, i + 8));
  return set;
}

function assertNoPlaintextOnWire(proxy: RecordingProxy, plaintexts: Buffer[]): void {
  const wire = proxy.recorded();
  assert.ok(wire.length > 0);
  const seen = windows8(wire);
  for (const p of plaintexts) {
    for (let i = 0; i + 8 <= p.length; i++) {
      const piece = p.toString('latin1', i, i + 8);
      assert.ok(!seen.has(piece), `plaintext piece ${JSON.stringify(piece)} found on the wire`);
    }
  }
}

test('keygen prints a fresh 64-hex-digit key; --out creates a 0600 file and never overwrites', async () => {
  const a = await runCli(['keygen']);
  const b = await runCli(['keygen']);
  assert.equal(a.code, 0);
  assert.match(a.stdout.toString(), /^[0-9a-f]{64}\n$/);
  assert.notEqual(a.stdout.toString(), b.stdout.toString());
  assert.match(readFileSync(keyA, 'utf8'), /^[0-9a-f]{64}\n$/);
  assert.equal(statSync(keyA).mode & 0o777, 0o600);
  const again = await runCli(['keygen', '--out', keyA]);
  assert.equal(again.code, 1);
  assert.match(again.stderr, /file exists/);
});

test('usage: a key is required, only one key source, a bad device spec, an unknown suite', async () => {
  for (const args of [
    ['crypto-server', '--port', '0'],
    ['crypto-client', '127.0.0.1', '1'],
    ['crypto-server', '--psk-file', 'x', '--passphrase-env', 'Y'],
    ['crypto-server', '--psk-file', 'x', '--device', 'floppy'],
    ['crypto-client', '127.0.0.1', '1', '--psk-file', 'x', '--suite', 'rot13'],
  ]) {
    const r = await runCli(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
  }
  const missing = await runCli(['crypto-client', '127.0.0.1', '1', '--psk-file', join(dir, 'missing.key')]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /cannot read key file .*missing\.key: no such file/);
});

test('messages cross both ways through a recording proxy, and no 8-byte piece of any plaintext is on the wire', async (t) => {
  const [server, port] = await startServer(t);
  assert.match(server.stderr(), new RegExp(`crypto device: .*--device ${DEVICE}`));
  const proxy = await startRecordingProxy({ port });
  t.after(() => proxy.close());
  const c = client(t, proxy.port);
  await c.waitForStderr(/channel: Noise_NNpsk0_25519_AESGCM_SHA256.*crypto by /);
  await server.waitForStderr(/channel: Noise_NNpsk0_25519_AESGCM_SHA256.*crypto by /);

  const fromClient = Buffer.from('the eagle lands at midnight, bring the documents\n');
  const fromServer = Buffer.from('understood: the documents are in the blue folder\n');
  c.stdin.write(fromClient);
  await server.waitForStdout(fromClient.toString());
  server.stdin.write(fromServer);
  await c.waitForStdout(fromServer.toString());
  // A message larger than one Noise message (65535 bytes) is split and reassembled.
  const lines: string[] = [];
  for (let i = 0; lines.join('').length < 200_000; i++) lines.push(`line ${i}: confidential payload ${(i * 7919) % 100_003}\n`);
  const big = Buffer.from(lines.join(''));
  c.stdin.end(big);
  await server.waitForStdoutLength(fromClient.length + big.length);
  const exit = await c.waitForExit();
  assert.equal(exit.code, 0, c.stderr());
  assert.deepEqual(server.stdout(), Buffer.concat([fromClient, big]));
  assert.deepEqual(c.stdout(), fromServer);
  await server.waitForStderr(/peer went away/);
  assertNoPlaintextOnWire(proxy, [fromClient, fromServer, big]);
  server.stdin.end();
  assert.equal((await server.waitForExit()).code, 0);
});

test('wrong key: both say "authentication failed", nothing is printed, the client exits 1, the server serves the next peer', async (t) => {
  const [server, port] = await startServer(t);
  const bad = client(t, port, keyB);
  bad.stdin.write('this must never be shown\n');
  const exit = await bad.waitForExit();
  assert.equal(exit.code, 1);
  assert.match(bad.stderr(), /authentication failed/);
  await server.waitForStderr(/dropped: authentication failed/);
  assert.equal(server.stdout().length, 0);
  assert.equal(bad.stdout().length, 0);

  const good = client(t, port);
  good.stdin.end('hello after the intruder\n');
  await server.waitForStdout('hello after the intruder\n');
  assert.equal((await good.waitForExit()).code, 0);
  assert.equal(server.stdout().toString(), 'hello after the intruder\n');
  server.stdin.end();
  assert.equal((await server.waitForExit()).code, 0);
});

test('a second peer while one is chatting gets the busy notice and exits 1', async (t) => {
  const [server, port] = await startServer(t);
  const first = client(t, port);
  await server.waitForStderr(/channel: Noise/);
  const second = client(t, port);
  assert.equal((await second.waitForExit()).code, 1);
  assert.match(second.stderr(), /busy/);
  first.stdin.end('still here\n');
  await server.waitForStdout('still here\n');
  assert.equal((await first.waitForExit()).code, 0);
  server.stdin.end();
  assert.equal((await server.waitForExit()).code, 0);
});

test('attackers without the key reconnecting in a loop cannot keep a real client out: it gets in within 2 s', async (t) => {
  const [server, port] = await startServer(t);
  // Silent connections and connections that send a hello and stall, each reconnecting at once when dropped.
  let stopped = false;
  const live = new Set<Socket>();
  const attacker = (send?: Buffer) => {
    if (stopped) return;
    const s = connect(port, '127.0.0.1');
    live.add(s);
    s.on('error', () => {});
    s.on('connect', () => send !== undefined && s.write(send));
    s.resume();
    s.on('close', () => {
      live.delete(s);
      setImmediate(() => attacker(send));
    });
  };
  t.after(() => {
    stopped = true;
    for (const s of live) s.destroy();
  });
  // Six in all: below the per-source bound (8), since the real client comes from the same address.
  for (let i = 0; i < 3; i++) attacker();
  for (let i = 0; i < 3; i++) attacker(Buffer.from('VCN\x04\x01', 'latin1'));
  await new Promise((r) => setTimeout(r, 500));
  const c = client(t, port);
  await c.waitForStderr(/connected to 127\.0\.0\.1/);
  const connected = performance.now();
  await c.waitForStderr(/channel: Noise/, 2000);
  c.stdin.end('the real client got in\n');
  await server.waitForStdout('the real client got in\n');
  const elapsed = performance.now() - connected;
  assert.ok(elapsed < 2000, `from connect to the message on the server's stdout: ${elapsed.toFixed(0)} ms`);
  t.diagnostic(`from the client's connect to its message on the server's stdout: ${elapsed.toFixed(0)} ms`);
  assert.equal((await c.waitForExit()).code, 0, c.stderr());
  assert.equal(server.stderr().match(/peer connected from/g)?.length, 1, server.stderr());
  assert.doesNotMatch(server.stderr(), /busy/);
  stopped = true;
  for (const s of live) s.destroy();
  server.stdin.end();
  assert.equal((await server.waitForExit()).code, 0);
});

/**
 * Attacks on the client->server direction; frame 0 is the handshake, frame 1 the client's key
 * confirmation (secure chat v3), frames 2.. carry chat messages.
 */
const ATTACKS: { name: string; onFrame: (frame: Buffer, index: number) => Buffer[]; secondMessage: boolean; shown: string }[] = [
  { name: 'a flipped bit', onFrame: (f, i) => (i === 2 ? [Buffer.from(f.map((b, k) => (k === f.length - 5 ? b ^ 0x01 : b)))] : [f]), secondMessage: false, shown: '' },
  { name: 'a replayed frame', onFrame: (f, i) => (i === 2 ? [f, f] : [f]), secondMessage: false, shown: 'first secret line\n' },
  { name: 'a dropped frame', onFrame: (f, i) => (i === 2 ? [] : [f]), secondMessage: true, shown: '' },
  { name: 'reordered frames', onFrame: (() => { let held: Buffer | undefined; return (f: Buffer, i: number) => (i === 2 ? ((held = f), []) : i === 3 ? [f, held!] : [f]); })(), secondMessage: true, shown: '' },
  { name: 'a truncated frame', onFrame: (f, i) => (i === 2 ? [f.subarray(0, f.length - 3)] : [f]), secondMessage: false, shown: '' },
];

test('tampering in transit (flip, replay, drop, reorder, truncate): the server prints nothing of it, reports it, and keeps serving', async (t) => {
  const [server, port] = await startServer(t);
  let drops = 0;
  for (const attack of ATTACKS) {
    let sawFirst: () => void = () => {};
    const firstSeen = new Promise<void>((resolve) => (sawFirst = resolve));
    const proxy = await startRecordingProxy({
      port,
      transform: frameTransform('up', HELLO_BYTES, (frame, index) => {
        if (index === 2) sawFirst();
        return attack.onFrame(frame, index);
      }),
    });
    t.after(() => proxy.close());
    const before = server.stdout().length;
    const c = client(t, proxy.port);
    await c.waitForStderr(/channel: Noise/);
    if (attack.secondMessage) {
      c.stdin.write('first secret line\n');
      await firstSeen;
      c.stdin.end('second secret line\n');
    } else {
      c.stdin.end('first secret line\n');
    }
    drops++;
    await server.waitForStderr(new RegExp(`(dropped: [^\\n]*(authentication failed|truncated)[^\\n]*\\n[\\s\\S]*){${drops}}`));
    await c.waitForExit();
    assert.equal(server.stdout().subarray(before).toString(), attack.shown, attack.name);
    await proxy.close();
  }
  // Still serving: an honest peer gets through.
  const before = server.stdout().length;
  const good = client(t, port);
  good.stdin.end('all clear\n');
  await server.waitForStdout('all clear\n');
  assert.equal((await good.waitForExit()).code, 0);
  assert.equal(server.stdout().subarray(before).toString(), 'all clear\n');
  server.stdin.end();
  assert.equal((await server.waitForExit()).code, 0);
});

test('--passphrase-env on both sides: the same passphrase chats', async (t) => {
  const env = { ...process.env, CHAT_PASS: 'a long shared passphrase for the test' };
  const server = spawnCli(['crypto-server', '--port', '0', '--passphrase-env', 'CHAT_PASS', '--device', DEVICE], { t, env });
  const [, port] = await server.waitForStderr(/listening on 127\.0\.0\.1:(\d+)/);
  const c = spawnCli(['crypto-client', '127.0.0.1', String(port), '--passphrase-env', 'CHAT_PASS', '--device', DEVICE], { t, env });
  c.stdin.end('passphrase works\n');
  await server.waitForStdout('passphrase works\n');
  assert.equal((await c.waitForExit()).code, 0);
  server.stdin.end();
  assert.equal((await server.waitForExit()).code, 0);
});

/**
 * Frames of one direction: 0 is the handshake message, then (client -> server only) the key
 * confirmation, then one frame per chat message, then the END.
 */
const FIRST_CHAT_FRAME = { server: 2, client: 1 } as const;
const DROP_AT_END: { name: string; side: 'server' | 'client'; from: number }[] = [
  { name: "the last message and the END dropped, then a clean close: the server reports it", side: 'server', from: 3 },
  { name: 'only the END dropped, then a clean close: the server reports it', side: 'server', from: 4 },
  { name: "the last message and the END dropped, then a clean close: the client reports it (exit 1)", side: 'client', from: 2 },
];

for (const attack of DROP_AT_END) {
  test(`truncation at the end: ${attack.name}, and prints nothing of what was dropped`, async (t) => {
    const [server, port] = await startServer(t);
    let sawFirst: () => void = () => {};
    const firstSeen = new Promise<void>((resolve) => (sawFirst = resolve));
    // The receiver's direction: up (client -> server) when the server is the victim, down otherwise.
    const proxy = await startRecordingProxy({
      port,
      transform: frameTransform(attack.side === 'server' ? 'up' : 'down', HELLO_BYTES, (frame, index) => {
        if (index === FIRST_CHAT_FRAME[attack.side]) sawFirst();
        return index >= attack.from ? [] : [frame];
      }),
    });
    t.after(() => proxy.close());
    const c = client(t, proxy.port);
    await c.waitForStderr(/channel: Noise/);
    await server.waitForStderr(/channel: Noise/);
    const sender = attack.side === 'server' ? c : server;
    const receiver = attack.side === 'server' ? server : c;
    sender.stdin.write('first line, delivered\n');
    await firstSeen;
    await receiver.waitForStdout('first line, delivered\n');
    sender.stdin.end('last line, cut off by the attacker\n'); // then the sender's END, then its FIN
    if (attack.side === 'server') {
      await server.waitForStderr(/dropped: connection truncated: it was closed before the peer's authenticated end of chat/);
      await c.waitForExit();
    } else {
      const exit = await c.waitForExit();
      assert.equal(exit.code, 1, c.stderr());
      assert.match(c.stderr(), /connection dropped: connection truncated: it was closed before the peer's authenticated end of chat/);
      assert.equal((await server.waitForExit()).code, 0, server.stderr());
    }
    const shown = attack.from === FIRST_CHAT_FRAME[attack.side] + 2 ? 'first line, delivered\nlast line, cut off by the attacker\n' : 'first line, delivered\n';
    assert.equal(receiver.stdout().toString(), shown);
    // Without the attacker the same exchange ends cleanly (the END frame crossed the proxy here).
    if (attack.side === 'server') {
      const good = client(t, port);
      good.stdin.end('an honest peer\n');
      assert.equal((await good.waitForExit()).code, 0, good.stderr());
      await server.waitForStderr(/peer went away/);
      server.stdin.end();
      assert.equal((await server.waitForExit()).code, 0);
      assert.equal(server.stdout().toString(), `${shown}an honest peer\n`);
    }
  });
}

test('the server ends first (EOF on its input): its last message arrives, both exit 0', async (t) => {
  const [server, port] = await startServer(t);
  const proxy = await startRecordingProxy({ port });
  t.after(() => proxy.close());
  const c = client(t, proxy.port);
  await server.waitForStderr(/channel: Noise/);
  server.stdin.end('goodbye from the server\n');
  const exit = await c.waitForExit();
  assert.equal(exit.code, 0, c.stderr());
  assert.match(c.stderr(), /peer closed the connection/);
  assert.equal(c.stdout().toString(), 'goodbye from the server\n');
  assert.equal((await server.waitForExit()).code, 0, server.stderr());
  assert.match(server.stderr(), /end of input: closed the connection/);
});

test('simultaneous close: both inputs end at once with a last message; both print the other\'s and exit 0', async (t) => {
  const [server, port] = await startServer(t);
  const proxy = await startRecordingProxy({ port });
  t.after(() => proxy.close());
  const c = client(t, proxy.port);
  await c.waitForStderr(/channel: Noise/);
  await server.waitForStderr(/channel: Noise/);
  c.stdin.end('bye from the client\n');
  server.stdin.end('bye from the server\n');
  const [ce, se] = await Promise.all([c.waitForExit(), server.waitForExit()]);
  assert.equal(ce.code, 0, c.stderr());
  assert.equal(se.code, 0, server.stderr());
  assert.equal(c.stdout().toString(), 'bye from the server\n');
  assert.equal(server.stdout().toString(), 'bye from the client\n');
  assert.doesNotMatch(c.stderr() + server.stderr(), /truncated|authentication failed|dropped/);
});

/** Keeps writing a numbered line stream to `stdin` (with back-pressure) until `stop()`; returns what it wrote. */
function endlessInput(stdin: NodeJS.WritableStream): { written: () => Buffer; stop: () => void } {
  const chunks: Buffer[] = [];
  let stopped = false;
  let n = 0;
  const pump = () => {
    while (!stopped) {
      const lines: string[] = [];
      for (let i = 0; i < 1000; i++) lines.push(`stream line ${n++} of a long message\n`);
      const chunk = Buffer.from(lines.join(''));
      chunks.push(chunk);
      if (!stdin.write(chunk)) {
        stdin.once('drain', pump);
        return;
      }
    }
  };
  pump();
  return { written: () => Buffer.concat(chunks), stop: () => (stopped = true) };
}

for (const stillSending of ['server', 'client'] as const) {
  test(`the peer ends while the ${stillSending} is still sending a long stream: no false alarm, the receiver gets a clean prefix, exit 0`, async (t) => {
    const [server, port] = await startServer(t);
    const proxy = await startRecordingProxy({ port });
    t.after(() => proxy.close());
    const c = client(t, proxy.port);
    await c.waitForStderr(/channel: Noise/);
    await server.waitForStderr(/channel: Noise/);
    const sender = stillSending === 'server' ? server : c;
    const ender = stillSending === 'server' ? c : server;
    // The sender's input never runs dry, so it is sending (sealing, writing) whenever the END arrives.
    const stream = endlessInput(sender.stdin);
    t.after(() => stream.stop());
    await ender.waitForStdoutLength(1);
    ender.stdin.end('that is enough, bye\n');
    await sender.waitForStdout('that is enough, bye\n');
    // The ender exits once the sender's END and FIN are in; the client exits in both cases.
    assert.equal((await c.waitForExit()).code, 0, c.stderr());
    if (stillSending === 'client') assert.equal((await server.waitForExit()).code, 0, server.stderr());
    else await server.waitForStderr(/peer went away/);
    stream.stop();
    const got = ender.stdout();
    assert.ok(got.length > 0);
    assert.deepEqual(got, stream.written().subarray(0, got.length), 'the receiver printed a prefix of the stream');
    assert.doesNotMatch(c.stderr() + server.stderr(), /truncated|authentication failed|dropped/);
  });
}

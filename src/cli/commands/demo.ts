/**
 * `vcrypto demo` (what `npm start` runs): a non-interactive tour that finishes in seconds.
 *  1. starts the crypto device: a separate `vcrypto device` process serving vhost-user, with our
 *     driver as the front-end (else the embedded device on a worker thread): `startDemoDevice`;
 *  2. runs the lab's test-crypto through it;
 *  3. runs an encrypted chat between two peers (crypto-server / crypto-client in this process) through
 *     a tap that shows, side by side, what was typed and what crossed the wire;
 *  4. prints a short AES-128-CBC bench table: raw node:crypto vs the session API on the device at
 *     depth 1 and depth 64 (requests in flight).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { createCipheriv, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { PassThrough } from 'node:stream';
import { runChatClient } from '../../chat/chat-client.js';
import { runChatServer } from '../../chat/chat-server.js';
import { SECURE_PROTOCOL, secureChannel } from '../../chat/secure-channel.js';
import { generateKey } from '../../chat/secure-key.js';
import { zeroize } from '../../driver/cryptodev-semantics.js';
import type { CryptoDevice, CryptoHandle, Session } from '../../driver/api.js';
import { openDevice } from '../../transport/open-device.js';
import { CliError, parseCommandArgs, formatHelp, type Command } from '../command.js';
import { runLabTest } from './crypto-common.js';
import { checkDeviceSpec } from './crypto-common.js';

const print = (line = '') => process.stdout.write(`${line}\n`);
const heading = (n: number, title: string) => print(`\n== ${n}. ${title} ==`);

export interface DemoDevice {
  readonly device: CryptoDevice;
  /** What started, in one or two lines for the reader. */
  readonly story: string[];
  stop(): Promise<void>;
}

/**
 * Starts the demo's crypto device. The one place to change how the demo gets its device.
 * `forced`: a --device spec from the command line (no separate process then); `entry`: the vcrypto
 * script to run as the device process (this one).
 * Otherwise: `vcrypto device --socket` in a child process + `--device vhost-user:PATH`; if that
 * cannot start, the embedded virtio device, saying why.
 */
export async function startDemoDevice(forced: string | undefined, entry: string | undefined = process.argv[1]): Promise<DemoDevice> {
  if (forced !== undefined) {
    const device = await openDevice(forced);
    return { device, story: [`--device ${forced}: ${device.info.description}`], stop: () => device.close() };
  }
  const dir = mkdtempSync(join(tmpdir(), 'vcrypto-demo-'));
  const socketPath = join(dir, 'vc.sock');
  let child: ChildProcess | undefined;
  const stopChild = async () => {
    if (child && child.exitCode === null && child.signalCode === null) {
      const exited = once(child, 'exit');
      child.kill('SIGTERM');
      await exited;
    }
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    if (entry === undefined) throw new Error('cannot find the vcrypto entry point');
    child = spawn(process.execPath, [entry, 'device', '--socket', socketPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    await waitForListening(child, 10_000);
    // Our own back-end: the controlq extension, so the chat's SHA-256, HMAC and AES-GCM sessions work
    // too (QEMU's session messages carry cipher sessions only).
    const { connectVhostUserDevice } = await import('../../transport/vhost-user/connect.js');
    const device = await connectVhostUserDevice(socketPath, { sessions: 'controlq' });
    return {
      device,
      story: [
        `started 'vcrypto device --socket ${socketPath}' (pid ${child.pid}): the virtio-crypto device as a vhost-user back-end, in its own process`,
        `our virtio-crypto driver is its vhost-user front-end (as QEMU would be): ${device.info.description}`,
      ],
      stop: async () => {
        await device.close();
        await stopChild();
      },
    };
  } catch (err) {
    await stopChild();
    const device = await openDevice('virtio');
    return {
      device,
      story: [
        `(the vhost-user device process could not start: ${err instanceof Error ? err.message : String(err)})`,
        `using the embedded device instead: ${device.info.description}`,
      ],
      stop: () => device.close(),
    };
  }
}

/** Resolves once `vcrypto device` prints its "listening on" line; rejects if it exits or times out. */
function waitForListening(child: ChildProcess, timeoutMs: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    let out = '';
    let err = '';
    const timer = setTimeout(() => finish(new Error(`no "listening" line within ${timeoutMs} ms`)), timeoutMs);
    const onOut = (chunk: Buffer) => {
      out += chunk.toString();
      if (out.includes('listening on')) finish();
    };
    const onErr = (chunk: Buffer) => {
      err += chunk.toString();
    };
    const onExit = () => finish(new Error(`it exited: ${err.trim().split('\n').pop() ?? ''}`));
    const finish = (e?: Error) => {
      clearTimeout(timer);
      child.stdout?.off('data', onOut);
      child.off('exit', onExit);
      child.stdout?.resume();
      child.stderr?.resume(); // keep draining its log so it never blocks on a full pipe
      if (e) reject(e);
      else resolve();
    };
    child.stdout?.on('data', onOut);
    child.stderr?.on('data', onErr);
    child.once('exit', onExit);
    child.once('error', (e) => finish(e));
  });
}

/** A TCP tap between the chat client and server: forwards and records every chunk in order. */
interface Tap {
  readonly port: number;
  readonly chunks: { dir: Direction; bytes: Buffer }[];
  /** Play the attacker: flip one bit in the next client->server chunk. */
  flipNextUp: boolean;
  close(): Promise<void>;
}
type Direction = 'client->server' | 'server->client';

async function startTap(targetPort: number): Promise<Tap> {
  const sockets = new Set<Socket>();
  const keep = (s: Socket) => {
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
  };
  // allowHalfOpen: a FIN crosses the tap as a FIN while the other direction keeps flowing (each peer
  // sends its authenticated end of chat before its own FIN).
  const server: Server = createServer({ allowHalfOpen: true }, (client) => {
    keep(client);
    client.pause();
    const upstream = connect({ host: '127.0.0.1', port: targetPort, allowHalfOpen: true }, () => client.resume());
    keep(upstream);
    client.on('data', (b: Buffer) => {
      const bytes = Buffer.from(b);
      if (tap.flipNextUp) {
        tap.flipNextUp = false;
        bytes[bytes.length - 1]! ^= 0x01; // one bit of the AES-GCM tag
      }
      tap.chunks.push({ dir: 'client->server', bytes });
      upstream.write(bytes);
    });
    upstream.on('data', (b: Buffer) => {
      tap.chunks.push({ dir: 'server->client', bytes: Buffer.from(b) });
      client.write(b);
    });
    client.on('end', () => upstream.end());
    upstream.on('end', () => client.end());
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const tap: Tap = {
    port: (server.address() as { port: number }).port,
    chunks: [],
    flipNextUp: false,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  return tap;
}

/** Resolves when `matches()` holds, re-checked on every `poke()`; rejects after `timeoutMs`. */
class Waiter {
  #checks = new Set<() => void>();
  poke(): void {
    for (const c of [...this.#checks]) c();
  }
  until(what: string, matches: () => boolean, timeoutMs = 10_000): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#checks.delete(check);
        reject(new Error(`timed out waiting for ${what}`));
      }, timeoutMs);
      const check = () => {
        if (!matches()) return;
        clearTimeout(timer);
        this.#checks.delete(check);
        resolve();
      };
      this.#checks.add(check);
      check();
    });
  }
}

function hexPreview(bytes: Buffer, max = 20): string {
  const hex = bytes.subarray(0, max).toString('hex').replace(/(.{4})/g, '$1 ').trim();
  return bytes.length > max ? `${hex} ...` : hex;
}

/** Two peers in this process (crypto-server and crypto-client code), the client through the tap. */
async function chatTour(device: CryptoDevice): Promise<boolean> {
  const psk = generateKey();
  const otherPsk = generateKey();
  const waiter = new Waiter();
  const logs: string[] = [];
  let serverSaw = '';
  let clientSaw = '';
  const serverIn = new PassThrough();
  const serverOut = new PassThrough().on('data', (b: Buffer) => ((serverSaw += b.toString()), waiter.poke()));
  const log = (who: string) => (line: string) => {
    logs.push(`[${who}] ${line}`);
    print(`   [${who}] ${line}`);
    waiter.poke();
  };
  const logCount = (re: RegExp) => logs.filter((l) => re.test(l)).length;
  const channel = secureChannel({ device, psk });
  const server = runChatServer({ host: '127.0.0.1', port: 0, channel, log: log('crypto-server'), input: serverIn, output: serverOut, lingerMs: 1000 });
  let serverDone = false;
  server.then(
    () => ((serverDone = true), waiter.poke()),
    () => ((serverDone = true), waiter.poke()),
  );
  let tap: Tap | undefined;
  const rows: { dir: Direction; typed: string; wire: Buffer }[] = [];
  const exchange: { who: 'client' | 'server'; text: string }[] = [
    { who: 'client', text: 'hello server, this is the client\n' },
    { who: 'server', text: 'hi client! every byte here went through virtio-crypto\n' },
    { who: 'client', text: 'the launch code is 0000, keep it secret\n' },
  ];
  const tampered = 'transfer 100 EUR to Mallory\n';
  let ok = true;
  try {
    print(`   both peers share a fresh random 32-byte key (what 'vcrypto keygen' makes)`);
    await waiter.until('the server to listen', () => serverDone || logCount(/listening on/) > 0);
    const port = Number(/listening on .*:(\d+)/.exec(logs.find((l) => /listening on/.test(l)) ?? '')?.[1] ?? NaN);
    if (!Number.isInteger(port)) throw new Error('the server did not start');
    tap = await startTap(port);
    const t = tap;
    let seen = 0;
    const takeWire = (dir: Direction, from = seen) => {
      const fresh = t.chunks.slice(from).filter((c) => c.dir === dir);
      seen = t.chunks.length;
      return Buffer.concat(fresh.map((c) => c.bytes));
    };

    // 1. An honest exchange, shown side by side with the wire.
    const clientIn = new PassThrough();
    const clientOut = new PassThrough().on('data', (b: Buffer) => ((clientSaw += b.toString()), waiter.poke()));
    const client = runChatClient({ host: '127.0.0.1', port: t.port, channel, log: log('crypto-client'), input: clientIn, output: clientOut, lingerMs: 1000 });
    client.catch(() => {});
    // The server has its channel once the client's key confirmation is in: all handshake bytes crossed.
    await waiter.until('the handshake', () => logCount(/\[crypto-client\] channel:/) > 0 && logCount(/\[crypto-server\] channel:/) > 0);
    rows.push({ dir: 'client->server', typed: '(handshake: hello, -> psk, e; key confirmation)', wire: takeWire('client->server', 0) });
    rows.push({ dir: 'server->client', typed: '(handshake: hello, <- e, ee)', wire: takeWire('server->client', 0) });
    for (const m of exchange) {
      seen = t.chunks.length;
      const from = seen;
      if (m.who === 'client') {
        clientIn.write(m.text);
        await waiter.until('the server to print the message', () => serverSaw.includes(m.text));
      } else {
        serverIn.write(m.text);
        await waiter.until('the client to print the message', () => clientSaw.includes(m.text));
      }
      const dir: Direction = m.who === 'client' ? 'client->server' : 'server->client';
      rows.push({ dir, typed: JSON.stringify(m.text.trimEnd()), wire: takeWire(dir, from) });
    }
    // 2. The client's input ends: each side sends its authenticated END before its FIN, so an
    // attacker who drops the last messages and closes the connection is caught ("truncated").
    const endFrom = t.chunks.length;
    clientIn.end();
    await client;
    await waiter.until('the server to see the peer leave', () => logCount(/peer went away/) > 0);
    rows.push({ dir: 'client->server', typed: '(end of chat: END, then FIN)', wire: takeWire('client->server', endFrom) });
    rows.push({ dir: 'server->client', typed: '(end of chat: END, then FIN)', wire: takeWire('server->client', endFrom) });

    print('');
    print(`   ${'direction'.padEnd(15)} ${'typed (plaintext)'.padEnd(58)} crossed the wire (hex)`);
    for (const r of rows) {
      const typed = r.typed.length > 58 ? `${r.typed.slice(0, 55)}..."` : r.typed;
      print(`   ${r.dir.padEnd(15)} ${typed.padEnd(58)} ${String(r.wire.length).padStart(4)} B: ${hexPreview(r.wire)}`);
    }
    const wire = Buffer.concat(t.chunks.map((c) => c.bytes));
    const leaked = exchange.some((m) => {
      const text = Buffer.from(m.text);
      for (let i = 0; i + 8 <= text.length; i++) if (wire.includes(text.subarray(i, i + 8))) return true;
      return false;
    });
    print(`   each message: 2-byte length, then AES-256-GCM(type byte + text) and a 16-byte tag; the END`);
    print(`   frame is the same with no text, so dropping the last messages before a close is detected`);
    print(`   any 8-byte piece of the typed text on the wire? ${leaked ? 'YES (bug!)' : 'no'}`);
    ok = !leaked;

    // 3. An attacker on the wire flips one bit: the server prints nothing of it and drops the peer.
    print('');
    print(`   now the tap flips one bit of the client's next message ${JSON.stringify(tampered.trimEnd())}:`);
    const drops = logCount(/dropped:/);
    const in2 = new PassThrough();
    const client2 = runChatClient({ host: '127.0.0.1', port: t.port, channel, log: log('crypto-client'), input: in2, output: new PassThrough().resume(), lingerMs: 1000 });
    client2.catch(() => {});
    await waiter.until('the second handshake', () => logCount(/\[crypto-client\] channel:/) > 1 && logCount(/\[crypto-server\] channel:/) > 1);
    t.flipNextUp = true;
    in2.write(tampered);
    await waiter.until('the server to drop the tampered message', () => logCount(/dropped:/) > drops);
    in2.end();
    await client2.catch(() => {});
    const printed = serverSaw.includes(tampered);
    print(`   the server printed the tampered message? ${printed ? 'YES (bug!)' : 'no'}`);
    ok = ok && !printed;

    // 4. A peer with another key: "authentication failed" on both sides; the server keeps serving.
    print('');
    print('   a client with a different key tries to connect:');
    const drops2 = logCount(/dropped:/);
    const in3 = new PassThrough();
    in3.end('let me in\n');
    try {
      await runChatClient({
        host: '127.0.0.1', port, channel: secureChannel({ device, psk: otherPsk }), log: log('crypto-client'), input: in3, output: new PassThrough().resume(), lingerMs: 1000,
      });
      print('   the client got in (bug!)');
      ok = false;
    } catch (err) {
      print(`   [crypto-client] ${err instanceof Error ? err.message : String(err)}`);
    }
    await waiter.until('the server to refuse the wrong key', () => logCount(/dropped:/) > drops2);
    ok = ok && !serverSaw.includes('let me in');
  } catch (err) {
    ok = false;
    print(`   chat failed: ${err instanceof Error ? err.message : String(err)}`);
  } finally {
    serverIn.end();
    await server.catch(() => {});
    await tap?.close();
    zeroize(psk);
    zeroize(otherPsk);
  }
  return ok;
}

/** Requests in flight on the device in the bench: one at a time, and the queue kept full. */
export const BENCH_DEPTHS = [1, 64] as const;

async function benchTour(device: CryptoDevice, label: string): Promise<void> {
  const seconds = 0.25;
  const sizes = [64, 4096, 65536];
  const handle = await device.open();
  const fmt = (mb: number) => `${mb.toFixed(1)} MB/s`;
  try {
    const head = BENCH_DEPTHS.map((d) => `${`depth ${d}`.padStart(12)} ${'ratio'.padStart(6)}`).join('  ');
    print(`   ${label}, AES-128-CBC encryption (${seconds} s per cell):`);
    print(`   ${'size'.padStart(6)}  ${'raw node:crypto'.padStart(16)}  ${head}`);
    for (const size of sizes) {
      const key = randomBytes(16);
      const iv = randomBytes(16);
      const data = randomBytes(size);
      let ops = 0;
      const start = performance.now();
      while (performance.now() - start < seconds * 1000) {
        const c = createCipheriv('aes-128-cbc', key, iv);
        c.setAutoPadding(false);
        c.update(data);
        c.final();
        ops++;
      }
      const raw = (ops * size) / ((performance.now() - start) / 1000) / 1e6;
      const session = await handle.createSession({ kind: 'cipher', cipher: 'aes-cbc', key });
      key.fill(0);
      const cells: string[] = [];
      for (const depth of BENCH_DEPTHS) {
        const dev = await deviceThroughput(handle, session, data, iv, depth, seconds);
        cells.push(`${fmt(dev).padStart(12)} ${`${(dev / raw).toFixed(2)}x`.padStart(6)}`);
      }
      await handle.closeSession(session);
      print(`   ${String(size).padStart(6)}  ${fmt(raw).padStart(16)}  ${cells.join('  ')}`);
    }
    print(`   depth = requests in flight on the data queue. At depth 1 every request pays a whole round trip`);
    print(`   (kick, device, interrupt) that raw node:crypto never pays; at depth 64 (the device's design point)`);
    print(`   those costs are shared by the requests in flight. 'vcrypto bench' for more.`);
  } finally {
    await handle.close();
  }
}

/** MB/s of `depth` loops each awaiting one encryption at a time, for `seconds`. */
async function deviceThroughput(
  handle: CryptoHandle,
  session: Session,
  data: Uint8Array,
  iv: Uint8Array,
  depth: number,
  seconds: number,
): Promise<number> {
  let ops = 0;
  const start = performance.now();
  const deadline = start + seconds * 1000;
  const loop = async () => {
    while (performance.now() < deadline) {
      await handle.crypt(session, { op: 'encrypt', src: data, iv });
      ops++;
    }
  };
  await Promise.all(Array.from({ length: depth }, loop));
  return (ops * data.length) / ((performance.now() - start) / 1000) / 1e6;
}

export const demoCommand: Command = {
  name: 'demo',
  summary: 'a 30-second tour: device, test-crypto, encrypted chat with a wire tap, bench (npm start)',
  help: formatHelp({
    usage: ['vcrypto demo [--device SPEC]'],
    description: [
      "A non-interactive tour of the project (what 'npm start' runs), done in well under 30 seconds:",
      "  1. starts the virtio-crypto device as a separate 'vcrypto device' process (vhost-user back-end)",
      '     and connects our driver to it as the front-end; falls back to the embedded device if that fails;',
      "  2. runs the lab's test-crypto through it;",
      `  3. runs an encrypted chat (crypto-server + crypto-client, ${SECURE_PROTOCOL}) between two peers`,
      '     through a tap that shows side by side what was typed and what crossed the wire;',
      '  4. prints a short bench table: raw node:crypto vs the same work through the device, with one',
      "     request in flight (depth 1) and with 64 (depth 64, the device's design point).",
    ],
    options: ['  --device SPEC      use this device (host, virtio, vhost-user:PATH) instead of starting one'],
    exitCodes: [[1, 'a step failed']],
    examples: ['npx vcrypto demo', 'npx vcrypto demo --device host'],
  }),

  async run(argv) {
    const { values } = parseCommandArgs(argv, { device: { type: 'string' } });
    const forced = values.device === undefined ? undefined : checkDeviceSpec(values.device);
    const started = performance.now();
    print('vcrypto demo: a paravirtualized crypto accelerator (virtio-crypto), from device to encrypted chat');
    heading(1, 'The crypto device');
    let dev: DemoDevice;
    try {
      dev = await startDemoDevice(forced);
    } catch (err) {
      throw new CliError(`cannot start a crypto device: ${err instanceof Error ? err.message : String(err)}`, 1, { cause: err });
    }
    let ok = true;
    try {
      for (const line of dev.story) print(`   ${line}`);
      const info = dev.device.info;
      print(`   device config: ${info.maxDataQueues} data queue(s), max request ${info.maxSize} bytes, cipher keys up to ${info.maxCipherKeyLen} bytes`);

      heading(2, "test-crypto through the device (the lab's test_crypto: AES-192-CBC, 16384 random bytes)");
      const handle = await dev.device.open();
      try {
        ok = (await runLabTest(handle, 192, (line) => print(`   ${line}`))) && ok;
      } finally {
        await handle.close();
      }

      heading(3, `Encrypted chat: two peers, ${SECURE_PROTOCOL}, SHA-256/HMAC/AES-GCM on the device`);
      ok = (await chatTour(dev.device)) && ok;

      heading(4, 'Bench: raw node:crypto vs the session API on the device');
      await benchTour(dev.device, info.spec.startsWith('vhost-user:') ? 'vhost-user device' : `${info.spec} device`);
    } finally {
      await dev.stop();
    }
    print(`\n${ok ? 'Done' : 'FAILED'} in ${((performance.now() - started) / 1000).toFixed(1)} s. Try it yourself:`);
    print('   npx vcrypto keygen --out chat.key');
    print('   npx vcrypto crypto-server --psk-file chat.key                   # terminal 1');
    print('   npx vcrypto crypto-client 127.0.0.1 35001 --psk-file chat.key   # terminal 2');
    print("   npx vcrypto --help                                              # everything else");
    return ok ? 0 : 1;
  },
};

/**
 * The plain chat (`vcrypto server` / `vcrypto client`), as the lab's part 1: real processes, real
 * sockets on 127.0.0.1, ephemeral ports. `nc` (OpenBSD netcat) is the independent peer: it speaks
 * raw bytes, so if it interoperates, the wire carries exactly what was typed.
 * Needs `npm run build` first.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { createServer, connect, type Server, type Socket } from 'node:net';
import { once } from 'node:events';
import { killLeftovers, runCli, spawnCli, spawnProcess, type SpawnedProcess, type TestLike } from '../fixtures/cli.js';

after(killLeftovers);

const LISTENING = /\[server\] listening on 127\.0\.0\.1:(\d+)\n/;

async function startServer(t: TestLike): Promise<{ server: SpawnedProcess; port: number }> {
  const server = spawnCli(['server', '--port', '0'], { t });
  const [, port] = await server.waitForStderr(LISTENING);
  return { server, port: Number(port) };
}

/** Counts "peer connected from 127.0.0.1:N" lines, to await the n-th connection. */
function connectedLine(n: number): RegExp {
  return new RegExp(`(?:peer connected from 127\\.0\\.0\\.1:\\d+\\n[^]*?){${n}}`);
}

/** A port nobody listens on: bound by us, then released. */
async function closedPort(): Promise<number> {
  const s = createServer();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const port = (s.address() as { port: number }).port;
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

test('server and client chat both ways; stdout carries only chat data; status lines on stderr', async (t) => {
  const { server, port } = await startServer(t);
  const client = spawnCli(['client', '127.0.0.1', String(port)], { t });
  await client.waitForStderr(/\[client\] connected to 127\.0\.0\.1:\d+\n/);
  await server.waitForStderr(connectedLine(1));

  client.stdin.write('hello from the client\n');
  await server.waitForStdout('hello from the client\n');
  server.stdin.write('hello from the server\n');
  await client.waitForStdout('hello from the server\n');
  // A partial line is not held back: raw bytes, no line buffering.
  client.stdin.write('no newline');
  await server.waitForStdout('no newline');

  client.stdin.end();
  assert.deepEqual(await client.waitForExit(), { code: 0, signal: null });
  await server.waitForStderr(/\[server\] peer went away\n/);
  assert.equal(server.stdout().toString(), 'hello from the client\nno newline');
  assert.equal(client.stdout().toString(), 'hello from the server\n');
  assert.doesNotMatch(server.stderr() + client.stderr(), /Error|\n\s+at /);

  // The server waits for the next peer; EOF on its stdin then closes that peer and exits 0.
  const second = spawnCli(['client', '127.0.0.1', String(port)], { t });
  await server.waitForStderr(connectedLine(2));
  second.stdin.write('second peer\n');
  await server.waitForStdout('second peer\n');
  server.stdin.end('bye\n');
  assert.deepEqual(await server.waitForExit(), { code: 0, signal: null });
  assert.deepEqual(await second.waitForExit(), { code: 0, signal: null });
  assert.equal(second.stdout().toString(), 'bye\n');
  assert.match(second.stderr(), /\[client\] peer closed the connection\n/);
});

test('both directions at once: 5 MiB each way arrives byte-identical, in order', async (t) => {
  const { server, port } = await startServer(t);
  const client = spawnCli(['client', '127.0.0.1', String(port)], { t });
  await server.waitForStderr(connectedLine(1));
  const up = randomBytes(5 * 1024 * 1024);
  const down = randomBytes(5 * 1024 * 1024);
  client.stdin.write(up);
  server.stdin.write(down);
  const [atServer, atClient] = await Promise.all([
    server.waitForStdoutLength(up.length, 60_000),
    client.waitForStdoutLength(down.length, 60_000),
  ]);
  assert.ok(atServer.equals(up), 'client -> server bytes differ');
  assert.ok(atClient.equals(down), 'server -> client bytes differ');
  client.stdin.end();
  assert.deepEqual(await client.waitForExit(), { code: 0, signal: null });
  server.stdin.end();
  assert.deepEqual(await server.waitForExit(), { code: 0, signal: null });
  assert.equal(server.stdout().length, up.length, 'nothing but chat data on stdout');
  assert.equal(client.stdout().length, down.length, 'nothing but chat data on stdout');
});

test('a 5 MiB file piped into the client arrives intact; EOF on the pipe ends the client with exit 0', async (t) => {
  const { server, port } = await startServer(t);
  const data = randomBytes(5 * 1024 * 1024);
  const r = await runCli(['client', '127.0.0.1', String(port)], { input: data, timeoutMs: 60_000, t });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, /\[client\] end of input: closed the connection\n/);
  await server.waitForStderr(/\[server\] peer went away\n/);
  // stdout and stderr are separate pipes: the last bytes may be read after the status line.
  const got = await server.waitForStdoutLength(data.length, 60_000);
  assert.ok(got.equals(data), `server got ${got.length} bytes, not the ${data.length} sent`);
});

test('input piped into the server waits for the first peer; then EOF closes it and the server exits 0', async (t) => {
  const server = spawnCli(['server', '--port', '0'], { t });
  server.stdin.end('typed before anyone connected\n');
  const [, port] = await server.waitForStderr(LISTENING);
  const client = spawnCli(['client', '127.0.0.1', port!], { t });
  assert.deepEqual(await server.waitForExit(), { code: 0, signal: null });
  assert.deepEqual(await client.waitForExit(), { code: 0, signal: null });
  assert.equal(client.stdout().toString(), 'typed before anyone connected\n');
});

test('EOF on the server stdin with nobody connected: exit 0 at once', async (t) => {
  const r = await runCli(['server', '--port', '0'], { t });
  assert.equal(r.code, 0, r.stderr);
  assert.match(r.stderr, LISTENING);
  assert.equal(r.stdout.length, 0);
});

test('nc as the client of our server, both ways', async (t) => {
  const { server, port } = await startServer(t);
  const nc = spawnProcess('nc', ['127.0.0.1', String(port)], { t });
  await server.waitForStderr(connectedLine(1));
  nc.stdin.write('from nc\n');
  await server.waitForStdout('from nc\n');
  server.stdin.write('to nc\n');
  await nc.waitForStdout('to nc\n');
  // EOF on the server's stdin closes the peer and ends the server. (nc itself keeps running
  // until its own stdin ends: that is how nc treats a peer's FIN.)
  server.stdin.end();
  assert.deepEqual(await server.waitForExit(), { code: 0, signal: null });
  nc.stdin.end();
  assert.equal((await nc.waitForExit()).code, 0);
  assert.equal(nc.stdout().toString(), 'to nc\n');
  assert.equal(server.stdout().toString(), 'from nc\n');
});

test('our client against nc -l, both ways; the peer closing ends the client with exit 0', async (t) => {
  // -N: nc closes the connection (FIN) when its stdin ends.
  const nc = spawnProcess('nc', ['-N', '-lvn', '127.0.0.1', '0'], { t });
  const [, port] = await nc.waitForStderr(/Listening on 127\.0\.0\.1 (\d+)\n/);
  const client = spawnCli(['client', '127.0.0.1', port!], { t });
  await client.waitForStderr(/connected to/);
  nc.stdin.write('from nc -l\n');
  await client.waitForStdout('from nc -l\n');
  client.stdin.write('from our client\n');
  await nc.waitForStdout('from our client\n');
  nc.stdin.end();
  assert.deepEqual(await client.waitForExit(), { code: 0, signal: null });
  assert.match(client.stderr(), /\[client\] peer closed the connection\n/);
  await nc.waitForExit();
});

test('a second peer gets a one-line busy notice and is closed; the first chat goes on', async (t) => {
  const { server, port } = await startServer(t);
  const first = spawnCli(['client', '127.0.0.1', String(port)], { t });
  await server.waitForStderr(connectedLine(1));

  const second = spawnCli(['client', '127.0.0.1', String(port)], { t });
  assert.deepEqual(await second.waitForExit(), { code: 0, signal: null });
  const notice = second.stdout().toString();
  assert.match(notice, /^busy\b[^\n]*\n$/, `not a one-line busy notice: ${JSON.stringify(notice)}`);
  await server.waitForStderr(/\[server\] busy: turned away 127\.0\.0\.1:\d+\n/);

  // nc too: it gets the notice and the connection's end (nc exits once its stdin, here
  // /dev/null, and the connection have both ended), so it is not left hanging in the backlog.
  const nc = spawnProcess('nc', ['127.0.0.1', String(port)], { t, stdin: 'ignore' });
  await nc.waitForExit();
  assert.match(nc.stdout().toString(), /^busy\b[^\n]*\n$/);

  first.stdin.write('still here\n');
  await server.waitForStdout('still here\n');
  server.stdin.write('me too\n');
  await first.waitForStdout('me too\n');
  assert.equal(first.stdout().toString(), 'me too\n');
  assert.equal(server.stdout().toString(), 'still here\n', 'the busy peers sent nothing to stdout');
});

test('connection refused: one line on stderr, exit 1, no stack trace', async (t) => {
  const port = await closedPort();
  const r = await runCli(['client', '127.0.0.1', String(port)], { t });
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `vcrypto client: cannot connect to 127.0.0.1:${port}: connection refused\n`);
  assert.equal(r.stdout.length, 0);
});

test('an unknown host: one line on stderr, exit 1', async (t) => {
  // RFC 6761: names under .invalid never resolve.
  const r = await runCli(['client', 'no-such-host.invalid', '35001'], { t });
  assert.equal(r.code, 1);
  assert.match(r.stderr, /^vcrypto client: cannot connect to no-such-host\.invalid:35001: (unknown host|cannot resolve host[^\n]*)\n$/);
});

test('the server port already in use: one line on stderr, exit 1', async (t) => {
  const { server, port } = await startServer(t);
  const r = await runCli(['server', '--port', String(port)], { t });
  assert.equal(r.code, 1);
  assert.equal(r.stderr, `vcrypto server: cannot listen on 127.0.0.1:${port}: address already in use\n`);
  server.stdin.end();
  assert.equal((await server.waitForExit()).code, 0);
});

/** Connects a raw socket and waits until the server has reported it. */
async function rawPeer(server: SpawnedProcess, port: number, nth: number): Promise<Socket> {
  const socket = connect(port, '127.0.0.1');
  socket.on('error', () => {});
  await once(socket, 'connect');
  await server.waitForStderr(connectedLine(nth));
  return socket;
}

test('a peer that resets the connection mid-transfer does not crash the server; it takes the next peer', async (t) => {
  const { server, port } = await startServer(t);
  const peer = await rawPeer(server, port, 1);
  // Keep the server writing to the peer (1 MiB, never read) while the peer resets.
  server.stdin.write(randomBytes(1024 * 1024));
  peer.write('last words\n');
  await server.waitForStdout('last words\n');
  peer.resetAndDestroy();
  await server.waitForStderr(/\[server\] peer went away[^\n]*\n/);

  const next = spawnCli(['client', '127.0.0.1', String(port)], { t });
  await server.waitForStderr(connectedLine(2));
  next.stdin.write('next peer\n');
  await server.waitForStdout('next peer\n');
  server.stdin.end();
  assert.deepEqual(await server.waitForExit(), { code: 0, signal: null });
  assert.deepEqual(await next.waitForExit(), { code: 0, signal: null });
  assert.doesNotMatch(server.stderr(), /\n\s+at |internal error/);
});

test('a server that resets the connection ends the client with a status line, never a crash', async (t) => {
  const listener: Server = createServer((socket) => {
    socket.on('error', () => {});
    // Reset once the client has shown it is connected (its first bytes arrived).
    socket.once('data', () => socket.resetAndDestroy());
  });
  listener.listen(0, '127.0.0.1');
  await once(listener, 'listening');
  t.after(() => listener.close());
  const port = (listener.address() as { port: number }).port;
  const client = spawnCli(['client', '127.0.0.1', String(port)], { t });
  client.stdin.write('hello\n');
  // Keep writing to the dead connection: the writes fail, the client must not crash.
  client.stdin.write(randomBytes(256 * 1024));
  const exit = await client.waitForExit();
  assert.equal(exit.signal, null);
  assert.equal(exit.code, 0, client.stderr());
  assert.match(client.stderr(), /\[client\] (peer went away|peer closed the connection)/);
  assert.doesNotMatch(client.stderr(), /\n\s+at |internal error/);
});

test('a client whose stdout reader went away ends with one line and exit 1, not a crash; the server goes on', async (t) => {
  const { server, port } = await startServer(t);
  const client = spawnCli(['client', '127.0.0.1', String(port)], { t });
  await server.waitForStderr(connectedLine(1));
  client.child.stdout?.destroy(); // close our end of the client's stdout pipe: its writes get EPIPE
  server.stdin.write(randomBytes(1024 * 1024));
  assert.deepEqual(await client.waitForExit(), { code: 1, signal: null });
  assert.match(client.stderr(), /^vcrypto client: cannot write stdout: [^\n]*EPIPE[^\n]*\n$/m);
  assert.doesNotMatch(client.stderr(), /\n\s+at |internal error/);
  await server.waitForStderr(/\[server\] peer went away/);
  // The server goes on: it serves the next peer, then its EOF ends it.
  const next = spawnCli(['client', '127.0.0.1', String(port)], { t });
  await server.waitForStderr(connectedLine(2));
  server.stdin.end();
  assert.deepEqual(await server.waitForExit(), { code: 0, signal: null });
  assert.deepEqual(await next.waitForExit(), { code: 0, signal: null });
});

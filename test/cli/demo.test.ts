/**
 * `vcrypto demo` (what `npm start` runs) as a real process: exit 0, every step of the tour present,
 * and nothing left behind (the device process is gone, its socket directory removed).
 * Run `npm run build` first.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync } from 'node:fs';
import { runCli, killLeftovers } from '../fixtures/cli.js';
import { startDemoDevice } from '../../src/cli/commands/demo.js';

after(killLeftovers);

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

test('vcrypto demo: exit 0 in under 30 s, device process, test-crypto, chat tap, bench table; cleans up', async (t) => {
  const r = await runCli(['demo'], { timeoutMs: 30_000, t });
  const out = r.stdout.toString();
  assert.equal(r.code, 0, `${out}\n${r.stderr}`);
  // 1. the device: a separate vhost-user process (or the announced fallback to the embedded device)
  const started = /started 'vcrypto device --socket (\S+)' \(pid (\d+)\)/.exec(out);
  if (started) {
    assert.match(out, /vhost-user front-end/);
    assert.equal(alive(Number(started[2])), false, 'the device process has exited');
    assert.equal(existsSync(started[1]!), false, 'the socket is removed');
  } else {
    assert.match(out, /using the embedded device instead/);
  }
  // 2. test-crypto
  assert.match(out, /Doing Verification of data\.\.\. Success/);
  // 3. the chat, with the tap: typed text on the left, the wire bytes (hex) on the right
  assert.match(out, /channel: Noise_NNpsk0_25519_AESGCM_SHA256/);
  assert.match(out, /client->server +"hello server, this is the client" +\d+ B: 00[0-9a-f]{2} /);
  assert.match(out, /server->client +"hi client!/);
  assert.match(out, /any 8-byte piece of the typed text on the wire\? no/);
  // ... an attacker flipping a bit, then a peer with another key: refused, never printed
  assert.match(out, /dropped: authentication failed: a message was altered/);
  assert.match(out, /the server printed the tampered message\? no/);
  assert.match(out, /\[crypto-client\] connection to .* failed: authentication failed/);
  assert.match(out, /dropped: authentication failed: the peer does not have the same key/);
  // ... and the authenticated end of chat both ways (2-byte length + encrypted type byte + 16-byte tag)
  assert.match(out, /client->server +\(end of chat: END, then FIN\) +19 B: 0011 /);
  assert.match(out, /server->client +\(end of chat: END, then FIN\) +19 B: 0011 /);
  // 4. the bench table, raw vs device at depth 1 and depth 64, three sizes
  assert.match(out, /^\s+size\s+raw node:crypto\s+depth 1\s+ratio\s+depth 64\s+ratio$/m);
  assert.equal((out.match(/^\s+\d+\s+[\d.]+ MB\/s\s+[\d.]+ MB\/s\s+[\d.]+x\s+[\d.]+ MB\/s\s+[\d.]+x$/gm) ?? []).length, 3, out);
  assert.match(out, /depth = requests in flight/);
  assert.match(out, /^Done in [\d.]+ s/m);
});

test('vcrypto demo --device host: the same tour on a named device, no separate process', async (t) => {
  const r = await runCli(['demo', '--device', 'host'], { timeoutMs: 30_000, t });
  const out = r.stdout.toString();
  assert.equal(r.code, 0, `${out}\n${r.stderr}`);
  assert.match(out, /--device host: host \(node:crypto/);
  assert.doesNotMatch(out, /started 'vcrypto device/);
  assert.match(out, /crypto by host \(node:crypto/);
});

test('vcrypto demo --device floppy is a usage error', async (t) => {
  const r = await runCli(['demo', '--device', 'floppy'], { t });
  assert.equal(r.code, 2);
});

test('startDemoDevice: when the vhost-user device process cannot start, the embedded device is used and the reason shown', async () => {
  const dev = await startDemoDevice(undefined, 'no-such-vcrypto-entry.js');
  try {
    assert.match(dev.story.join('\n'), /could not start: it exited/);
    assert.match(dev.story.join('\n'), /using the embedded device instead/);
    assert.equal(dev.device.info.spec, 'virtio');
    const handle = await dev.device.open();
    const s = await handle.createSession({ kind: 'hash', hash: 'sha256' });
    // FIPS 180-2 / NIST example: SHA-256("abc")
    assert.equal(Buffer.from(await handle.digest(s, new TextEncoder().encode('abc'))).toString('hex'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    await handle.close();
  } finally {
    await dev.stop();
  }
});

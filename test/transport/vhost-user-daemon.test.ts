/**
 * `vcrypto device` as a daemon an admin runs (built CLI: run `npm run build` first): socket-path
 * safety, signals, logs (levels, JSON, VCRYPTO_LOG, connection id and front-end pid on every line),
 * --max-connections, the Prometheus endpoint, and usage errors. Oracles: the kernel's pid of the
 * front-end process (this test process holds the connection: SO_PEERCRED must name process.pid),
 * byte counts of inputs written here, FIPS 180-2 SHA-256("abc").
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, existsSync, lstatSync, unlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { spawnCli, runCli, killLeftovers } from '../fixtures/cli.js';
import { RawFrontEnd } from './vhost-user-fixture.js';

/** dgst's hash session travels on our back-end's controlq extension (QEMU's session messages carry ciphers only). */
const CONTROLQ_ENV = { ...process.env, VCRYPTO_VHOST_USER_SESSIONS: 'controlq' };

after(killLeftovers);

const ABC_SHA256 = 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad'; // FIPS 180-2 B.1

function tempSocket(): { dir: string; sock: string } {
  const dir = mkdtempSync(join(tmpdir(), 'vcrypto-daemon-'));
  return { dir, sock: join(dir, 'vc.sock') };
}

test('bad numbers, levels, formats and addresses are usage errors (exit 2)', async () => {
  const cases: string[][] = [
    ['--throttle-ops', '-1'],
    ['--throttle-ops', 'fast'],
    ['--throttle-ops', '1.5'],
    ['--throttle-bps', '-5'],
    ['--throttle-bps', '10M'],
    ['--max-connections', '0'],
    ['--max-connections', '-3'],
    ['--max-connections', 'many'],
    ['--log-level', 'loud'],
    ['--log-format', 'xml'],
    ['--metrics-listen', 'localhost'],
    ['--metrics-listen', '127.0.0.1:70000'],
  ];
  for (const extra of cases) {
    const r = await runCli(['device', '--socket', 'x.sock', `${extra[0]}=${extra[1]}`]);
    assert.equal(r.code, 2, `${extra.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr.toString(), new RegExp(`invalid ${extra[0]}`));
  }
  const env = await runCli(['device', '--socket', 'x.sock'], { env: { ...process.env, VCRYPTO_LOG: 'chatty' } });
  assert.equal(env.code, 2);
  assert.match(env.stderr.toString(), /invalid VCRYPTO_LOG 'chatty'/);
});

test('a live device is never taken over (exit 1); a stale socket is replaced; exit removes only our own socket file', async (t) => {
  const { dir, sock } = tempSocket();
  try {
    const first = spawnCli(['device', '--socket', sock], { t, stdin: 'ignore' });
    await first.waitForStdout('listening on');
    const second = await runCli(['device', '--socket', sock]);
    assert.equal(second.code, 1);
    assert.match(second.stderr.toString(), /a device is already serving this socket/);
    // The first one still serves.
    const dgst = await runCli(['dgst', '--digest', 'sha256', '--device', `vhost-user:${sock}`], { input: Buffer.from('abc'), env: CONTROLQ_ENV });
    assert.equal(dgst.code, 0, dgst.stderr);
    assert.equal(dgst.stdout.toString(), `${ABC_SHA256}  -\n`);

    // A crash (SIGKILL) leaves the socket file behind: the next device replaces it.
    await first.kill();
    assert.ok(lstatSync(sock).isSocket(), 'the crashed device left its socket file');
    const third = spawnCli(['device', '--socket', sock], { t, stdin: 'ignore' });
    await third.waitForStdout('listening on');
    await third.waitForStderr(/replaced a stale socket/);

    // Someone removes the file and a newer device binds the path: the older one's exit leaves it.
    unlinkSync(sock);
    const fourth = spawnCli(['device', '--socket', sock], { t, stdin: 'ignore' });
    await fourth.waitForStdout('listening on');
    const inode = lstatSync(sock).ino;
    third.child.kill('SIGTERM');
    assert.equal((await third.waitForExit()).code, 0);
    assert.match(third.stderr(), /socket left in place: another process replaced it/);
    assert.equal(lstatSync(sock).ino, inode, "the newer device's socket survived");
    const again = await runCli(['dgst', '--digest', 'sha256', '--device', `vhost-user:${sock}`], { input: Buffer.from('abc'), env: CONTROLQ_ENV });
    assert.equal(again.code, 0, again.stderr);
    fourth.child.kill('SIGTERM');
    assert.equal((await fourth.waitForExit()).code, 0);
    assert.equal(existsSync(sock), false, 'its own socket is removed');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('SIGINT, SIGTERM and SIGHUP each give one log line and exit 0', async (t) => {
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const { dir, sock } = tempSocket();
    try {
      const device = spawnCli(['device', '--socket', sock], { t, stdin: 'ignore' });
      await device.waitForStdout('listening on');
      device.child.kill(signal);
      const exit = await device.waitForExit();
      assert.equal(exit.code, 0, `${signal}: ${JSON.stringify(exit)} ${device.stderr()}`);
      assert.equal(device.stderr().split('\n').filter((l) => l.includes(signal)).length, 1, device.stderr());
      assert.match(device.stderr(), new RegExp(`^\\S+Z INFO  ${signal}: stopping 0 connection\\(s\\)$`, 'm'));
      assert.equal(existsSync(sock), false);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test('JSON logs carry level, time, connection and the front-end pid; VCRYPTO_LOG=warn hides info lines', async (t) => {
  const { dir, sock } = tempSocket();
  try {
    const device = spawnCli(['device', '--socket', sock, '--log-format', 'json', '--max-connections', '1'], { t, stdin: 'ignore' });
    await device.waitForStdout('listening on');
    const fe = RawFrontEnd.connect(sock);
    t.after(() => fe.close());
    await fe.call(1); // GET_FEATURES: the connection is served
    // Over --max-connections: refused (closed at once) with one log line.
    const refused = RawFrontEnd.connect(sock);
    t.after(() => refused.close());
    assert.ok(await refused.closedByPeer());
    await device.waitForStderr(/connection refused/);
    fe.close();
    await device.waitForStderr(/front-end disconnected/);
    device.child.kill('SIGTERM');
    assert.equal((await device.waitForExit()).code, 0);
    const records = device
      .stderr()
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    for (const r of records) {
      assert.ok(typeof r.level === 'string' && typeof r.msg === 'string', JSON.stringify(r));
      assert.match(String(r.time), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/);
    }
    const conn = records.filter((r) => r.connection === 1);
    assert.deepEqual(conn.map((r) => r.msg).slice(0, 1), ['accepted']);
    assert.ok(conn.length >= 2 && conn.every((r) => r.frontEndPid === process.pid), JSON.stringify(conn));
    const refusal = records.filter((r) => String(r.msg).startsWith('connection refused'));
    assert.equal(refusal.length, 1);
    assert.equal(refusal[0]!.level, 'warn');
    assert.equal(refusal[0]!.frontEndPid, process.pid);

    const { dir: dir2, sock: sock2 } = tempSocket();
    try {
      const quiet = spawnCli(['device', '--socket', sock2], { t, stdin: 'ignore', env: { ...process.env, VCRYPTO_LOG: 'warn' } });
      await quiet.waitForStdout('listening on');
      const fe2 = RawFrontEnd.connect(sock2);
      await fe2.call(1);
      fe2.close();
      quiet.child.kill('SIGTERM');
      assert.equal((await quiet.waitForExit()).code, 0);
      assert.equal(quiet.stderr(), '', 'no info lines at level warn');
    } finally {
      rmSync(dir2, { recursive: true, force: true });
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('--metrics-listen: Prometheus text at GET /metrics, per connection (pid from SO_PEERCRED) and per device; nothing else answers', async (t) => {
  const { dir, sock } = tempSocket();
  try {
    const device = spawnCli(['device', '--socket', sock, '--metrics-listen', '127.0.0.1:0'], { t, stdin: 'ignore' });
    const out = (await device.waitForStdout('/metrics')).toString();
    const url = /metrics at (http:\/\/127\.0\.0\.1:\d+\/metrics)/.exec(out)![1]!;
    // Two SHA-256 requests of 3 and 1000 bytes through another process.
    for (const input of [Buffer.from('abc'), Buffer.alloc(1000, 0x61)]) {
      const r = await runCli(['dgst', '--digest', 'sha256', '--device', `vhost-user:${sock}`], { input, env: CONTROLQ_ENV });
      assert.equal(r.code, 0, r.stderr);
    }
    // A connection held open by this process: its series is labelled with our pid.
    const fe = RawFrontEnd.connect(sock);
    t.after(() => fe.close());
    await fe.call(1);
    const res = await fetch(url);
    assert.equal(res.status, 200);
    assert.match(res.headers.get('content-type') ?? '', /^text\/plain; version=0\.0\.4/);
    const text = await res.text();
    const value = (name: string): number => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1]);
    assert.equal(value('vcrypto_hash_ops_total'), 2);
    assert.equal(value('vcrypto_hash_bytes_total'), 1003);
    assert.equal(value('vcrypto_sessions_created_total'), 2);
    assert.equal(value('vcrypto_sessions_destroyed_total'), 2);
    assert.equal(value('vcrypto_sessions_open'), 0);
    assert.equal(value('vcrypto_connections'), 1);
    assert.match(text, new RegExp(`^vcrypto_connection_requests_total\\{connection="\\d+",pid="${process.pid}"\\} 0$`, 'm'));
    assert.match(text, /^# TYPE vcrypto_sym_encrypt_ops_total counter$/m);
    // vcrypto stats: the same numbers as a table.
    const table = await runCli(['stats', '--metrics', url]);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.toString().split('\n');
    assert.match(lines[0]!, new RegExp(`^statistic +device +conn \\d+ pid ${process.pid}$`));
    assert.match(table.stdout.toString(), /^hash-ops +2 +0$/m);
    assert.match(table.stdout.toString(), /^hash-bytes +1003 +0$/m);
    assert.equal((await runCli(['stats', '--metrics', url.replace('/metrics', '/nothing')])).code, 1);
    assert.equal((await runCli(['stats', '--metrics', 'not a url'])).code, 2);
    assert.equal((await fetch(url.replace('/metrics', '/'))).status, 404);
    assert.equal((await fetch(url, { method: 'POST', body: 'x' })).status, 405);
    fe.close();
    device.child.kill('SIGTERM');
    assert.equal((await device.waitForExit()).code, 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('QoS: --throttle-ops 500 gives 450-550 ops/s at depth 64; --throttle-bps 10000000 gives 9-11 MB/s with 16 KiB requests', async (t) => {
  interface Row {
    opsPerSec: number;
    mbPerSec: number;
  }
  const cases: [string, string, number, (r: Row) => boolean][] = [
    ['--throttle-ops', '500', 64, (r) => r.opsPerSec >= 450 && r.opsPerSec <= 550],
    ['--throttle-bps', '10000000', 16384, (r) => r.mbPerSec >= 9 && r.mbPerSec <= 11],
  ];
  for (const [flag, value, size, check] of cases) {
    const { dir, sock } = tempSocket();
    try {
      const device = spawnCli(['device', '--socket', sock, flag, value], { t, stdin: 'ignore' });
      await device.waitForStdout('listening on');
      const bench = await runCli(['bench', '--device', `vhost-user:${sock}`, '--sizes', String(size), '--depth', '64', '--seconds', '2', '--json']);
      assert.equal(bench.code, 0, bench.stderr);
      const row = (JSON.parse(bench.stdout.toString()) as { results: Row[] }).results[0]!;
      assert.ok(check(row), `${flag} ${value}: ${JSON.stringify(row)}`);
      device.child.kill('SIGTERM');
      assert.equal((await device.waitForExit()).code, 0);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

/**
 * The `vcrypto` dispatcher, run as the built program: help for every command, and usage errors
 * (unknown command, bad option, missing argument) as one line plus usage on stderr, exit code 2.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runCli } from '../fixtures/cli.js';

/** The command names `vcrypto --help` lists under "Commands:". */
function listedCommands(help: string): string[] {
  const section = help.split('\nCommands:\n')[1];
  assert.ok(section !== undefined, `no "Commands:" section in:\n${help}`);
  const names: string[] = [];
  for (const line of section.split('\n')) {
    const m = /^ {2}([a-z][a-z0-9-]*) {2,}\S/.exec(line);
    if (m === null) break;
    names.push(m[1]!);
  }
  return names;
}

test('vcrypto --help lists the chat commands on stdout and exits 0', async (t) => {
  const r = await runCli(['--help'], { t });
  assert.equal(r.code, 0);
  assert.equal(r.stderr, '');
  const help = r.stdout.toString();
  assert.match(help, /^Usage: vcrypto <command>/);
  const names = listedCommands(help);
  assert.ok(names.includes('server'), `server missing from ${names.join(', ')}`);
  assert.ok(names.includes('client'), `client missing from ${names.join(', ')}`);
});

test('-h and "help" print the same overview as --help', async (t) => {
  const [long, short, word] = await Promise.all([runCli(['--help'], { t }), runCli(['-h'], { t }), runCli(['help'], { t })]);
  assert.equal(short.code, 0);
  assert.equal(word.code, 0);
  assert.deepEqual(short.stdout, long.stdout);
  assert.deepEqual(word.stdout, long.stdout);
});

test('every listed command has its own --help: usage line, exit 0, nothing on stderr', async (t) => {
  const names = listedCommands((await runCli(['--help'], { t })).stdout.toString());
  assert.ok(names.length >= 2);
  for (const name of names) {
    const r = await runCli([name, '--help'], { t });
    assert.equal(r.code, 0, `${name} --help: exit ${r.code}, stderr ${r.stderr}`);
    assert.equal(r.stderr, '', `${name} --help wrote to stderr`);
    const text = r.stdout.toString();
    assert.match(text, new RegExp(`^Usage: vcrypto ${name}\\b`), `${name} --help:\n${text}`);
    assert.ok(text.split('\n').length >= 3, `${name} --help is a single line`);
    const viaHelp = await runCli(['help', name], { t });
    assert.equal(viaHelp.code, 0);
    assert.deepEqual(viaHelp.stdout, r.stdout, `vcrypto help ${name} differs from ${name} --help`);
  }
});

test('the chat commands document their defaults and how to listen on all interfaces', async (t) => {
  const server = (await runCli(['server', '--help'], { t })).stdout.toString();
  assert.match(server, /--port PORT/);
  assert.match(server, /35001/);
  assert.match(server, /127\.0\.0\.1/);
  assert.match(server, /0\.0\.0\.0/, 'server --help must say how to listen on all interfaces');
  const client = (await runCli(['client', '-h'], { t })).stdout.toString();
  assert.match(client, /^Usage: vcrypto client <host> <port>/);
});

/** Asserts a usage error: exit 2, nothing on stdout, a first line naming the problem, then usage. */
function assertUsageError(r: { code: number | null; stdout: Buffer; stderr: string }, firstLine: RegExp, usage: RegExp): void {
  assert.equal(r.code, 2, `exit ${r.code}, stderr:\n${r.stderr}`);
  assert.equal(r.stdout.length, 0, 'usage errors write nothing to stdout');
  const [first = '', ...others] = r.stderr.split('\n');
  assert.match(first, firstLine);
  assert.match(others.join('\n'), usage);
  assert.doesNotMatch(r.stderr, /\n\s+at /, 'no stack trace');
}

test('an unknown command: one-line error plus the overview on stderr, exit 2', async (t) => {
  assertUsageError(await runCli(['frobnicate'], { t }), /^vcrypto: unknown command 'frobnicate'$/, /^Usage: vcrypto <command>/m);
  assertUsageError(await runCli(['help', 'frobnicate'], { t }), /^vcrypto: unknown command 'frobnicate'$/, /^Usage: vcrypto <command>/m);
  assertUsageError(await runCli(['--frobnicate'], { t }), /^vcrypto: unknown option '--frobnicate'$/, /^Usage: vcrypto <command>/m);
});

test('no command at all is a usage error (exit 2), not a success', async (t) => {
  assertUsageError(await runCli([], { t }), /^vcrypto: missing command$/, /^Usage: vcrypto <command>/m);
});

test("a bad option: one-line error plus the command's usage on stderr, exit 2", async (t) => {
  assertUsageError(await runCli(['server', '--bogus'], { t }), /^vcrypto server: .*'--bogus'/, /^Usage: vcrypto server/m);
  assertUsageError(await runCli(['server', '--port'], { t }), /^vcrypto server: .*'--port\b.*missing/, /^Usage: vcrypto server/m);
  assertUsageError(await runCli(['server', 'extra'], { t }), /^vcrypto server: .*'extra'/, /^Usage: vcrypto server/m);
});

test('every listed command rejects an unknown option: one line plus its usage, exit 2', async (t) => {
  const names = listedCommands((await runCli(['--help'], { t })).stdout.toString());
  for (const name of names) {
    const r = await runCli([name, '--no-such-option'], { t });
    assertUsageError(r, new RegExp(`^vcrypto ${name}: unknown option '--no-such-option'$`), new RegExp(`^Usage: vcrypto ${name}\\b`, 'm'));
  }
});

test('bad ports and missing arguments are usage errors (exit 2)', async (t) => {
  const serverPort = /^vcrypto server: invalid port '(.*)': expected an integer 1-65535$/;
  for (const bad of ['65536', 'http', '-1', '1.5', '']) {
    assertUsageError(await runCli(['server', `--port=${bad}`], { t }), serverPort, /^Usage: vcrypto server/m);
  }
  const clientPort = /^vcrypto client: invalid port '(.*)': expected an integer 1-65535$/;
  for (const bad of ['0', '65536', 'x35001']) {
    assertUsageError(await runCli(['client', '127.0.0.1', bad], { t }), clientPort, /^Usage: vcrypto client/m);
  }
  assertUsageError(await runCli(['client'], { t }), /^vcrypto client: expected <host> and <port>$/, /^Usage: vcrypto client/m);
  assertUsageError(await runCli(['client', '127.0.0.1'], { t }), /^vcrypto client: expected <host> and <port>$/, /^Usage: vcrypto client/m);
  assertUsageError(await runCli(['client', 'a', '1', 'b'], { t }), /^vcrypto client: unexpected argument 'b'$/, /^Usage: vcrypto client/m);
});

test('--version prints the package version', async (t) => {
  const r = await runCli(['--version'], { t });
  assert.equal(r.code, 0);
  assert.match(r.stdout.toString(), /^\d+\.\d+\.\d+\n$/);
});

test('every command help has the same shape: Usage, Options ending with -h/--help and --version, Exit codes, Examples', async (t) => {
  const names = listedCommands((await runCli(['--help'], { t })).stdout.toString());
  assert.ok(names.length >= 12);
  for (const name of names) {
    const help = (await runCli([name, '--help'], { t })).stdout.toString();
    const sections = help.split('\n').filter((l) => /^(Usage:|[A-Z][a-z ]+:$)/.test(l)).map((l) => l.replace(/:.*/, ''));
    assert.deepEqual(sections.filter((s) => s !== 'Arguments'), ['Usage', 'Options', 'Exit codes', 'Examples'], `${name} --help sections`);
    assert.match(help, /\n {2}-h, --help {2,}show this help\n {2}--version {2,}print the version\n\nExit codes:\n {2}0 {2}/, `${name} --help`);
    assert.match(help, /\n {2}2 {2}usage error/, `${name} --help documents exit code 2`);
  }
});

test('vcrypto --help CMD and vcrypto CMD --help print the same; --version works after a command too', async (t) => {
  const [a, b, v] = await Promise.all([runCli(['--help', 'enc'], { t }), runCli(['enc', '--help'], { t }), runCli(['dgst', '--version'], { t })]);
  assert.equal(a.code, 0);
  assert.deepEqual(a.stdout, b.stdout);
  assert.match(a.stdout.toString(), /^Usage: vcrypto enc /);
  assert.equal(v.code, 0);
  assert.match(v.stdout.toString(), /^\d+\.\d+\.\d+\n$/);
});

test('a typo gets a "did you mean" and only the usage line, not the whole help (exit 2)', async (t) => {
  const cmd = await runCli(['dgts'], { t });
  assertUsageError(cmd, /^vcrypto: unknown command 'dgts'; did you mean 'dgst'\?$/, /^Usage: vcrypto <command>/m);
  assert.equal(cmd.stderr.split('\n').length, 4, `three lines: ${cmd.stderr}`);
  const opt = await runCli(['enc', '--cipher', 'aes-128-cbc', '--kye', '00'], { t });
  assertUsageError(opt, /^vcrypto enc: unknown option '--kye'; did you mean '--key'\?$/, /^Usage: vcrypto enc /m);
  assert.doesNotMatch(opt.stderr, /Options:|Examples:/, 'not the whole help');
  assert.match(opt.stderr, /Run 'vcrypto enc --help' for more\.\n$/);
  assertUsageError(await runCli(['--help', 'sever'], { t }), /^vcrypto: unknown command 'sever'; did you mean 'server'\?$/, /^Usage: vcrypto <command>/m);
});

test('negative numbers reach the range check instead of "argument is ambiguous"', async (t) => {
  const r = await runCli(['test-fork-crypto', '--children', '-1'], { t });
  assertUsageError(r, /^vcrypto test-fork-crypto: invalid --children '-1': expected an integer 1-256$/, /^Usage: vcrypto test-fork-crypto/m);
  const q = await runCli(['device', '--socket', 'x', '--queues', '-3'], { t });
  assertUsageError(q, /^vcrypto device: invalid --queues '-3': expected an integer 1-255$/, /^Usage: vcrypto device/m);
});

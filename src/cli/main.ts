#!/usr/bin/env node
/**
 * `vcrypto`: the one command-line entry point. Dispatches to the sub-commands in `commands/`.
 * Exit codes: 0 success, 1 failure, 2 usage error (unknown command, bad arguments).
 */
import { type Command, UsageError, CliError } from './command.js';
import { commands } from './commands/index.js';

const PROGRAM = 'vcrypto';

function topHelp(): string {
  const width = Math.max(...commands.map((c) => c.name.length));
  const lines = commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    `Usage: ${PROGRAM} <command> [options]`,
    '',
    'A paravirtualized crypto accelerator (virtio-crypto) and the chat apps that use it.',
    '',
    'Commands:',
    ...lines,
    '',
    `Run '${PROGRAM} <command> --help' for a command's options.`,
  ].join('\n');
}

export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    process.stderr.write(`${PROGRAM}: missing command\n${topHelp()}\n`);
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    const target = name === 'help' ? rest[0] : undefined;
    if (target === undefined) {
      process.stdout.write(topHelp() + '\n');
      return 0;
    }
    const cmd = commands.find((c) => c.name === target);
    if (!cmd) {
      process.stderr.write(`${PROGRAM}: unknown command '${target}'\n${topHelp()}\n`);
      return 2;
    }
    process.stdout.write(cmd.help + '\n');
    return 0;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write('0.1.0\n');
    return 0;
  }
  const cmd: Command | undefined = commands.find((c) => c.name === name);
  if (!cmd) {
    const what = name.startsWith('-') ? 'option' : 'command';
    process.stderr.write(`${PROGRAM}: unknown ${what} '${name}'\n${topHelp()}\n`);
    return 2;
  }
  const terminator = rest.indexOf('--');
  const options = terminator === -1 ? rest : rest.slice(0, terminator);
  if (options.includes('--help') || options.includes('-h')) {
    process.stdout.write(cmd.help + '\n');
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${PROGRAM} ${cmd.name}: ${err.message}\n${cmd.help}\n`);
      return 2;
    }
    if (err instanceof CliError) {
      process.stderr.write(`${PROGRAM} ${cmd.name}: ${err.message}\n`);
      return err.code;
    }
    process.stderr.write(`${PROGRAM} ${cmd.name}: internal error: ${(err as Error)?.stack ?? String(err)}\n`);
    return 1;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (err: unknown) => {
    process.stderr.write(`${PROGRAM}: ${String(err)}\n`);
    process.exitCode = 1;
  },
);

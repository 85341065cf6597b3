#!/usr/bin/env node
/**
 * `vcrypto`: the one command-line entry point. Dispatches to the sub-commands in `commands/`.
 * Exit codes: 0 success, 1 failure, 2 usage error (unknown command, bad arguments).
 */
import { type Command, UsageError, CliError, PROGRAM, didYouMean, packageVersion, usageOf } from './command.js';
import { commands, loadCommand } from './commands/index.js';

const TOP_USAGE = `Usage: ${PROGRAM} <command> [options]`;

async function topHelp(): Promise<string> {
  const all = await Promise.all(commands.map((c) => c.load()));
  const width = Math.max(...all.map((c) => c.name.length));
  const lines = all.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`);
  return [
    TOP_USAGE,
    `       ${PROGRAM} <command> --help | ${PROGRAM} --help [<command>] | ${PROGRAM} --version`,
    '',
    'A paravirtualized crypto accelerator (virtio-crypto) and the chat apps that use it.',
    '',
    'Commands:',
    ...lines,
    '',
    'Options:',
    '  -h, --help [COMMAND]  show this help, or the help of COMMAND',
    '  -V, --version         print the version',
    '',
    'Exit codes:',
    '  0  success',
    '  1  failure (one line on stderr)',
    '  2  usage error (one line plus usage on stderr)',
    '',
    `Run '${PROGRAM} <command> --help' for a command's options and examples.`,
  ].join('\n');
}

/** One line naming the problem, the usage line, and where the full help is: exit code 2. */
function usageError(prefix: string, message: string, usage: string, helpHint: string): number {
  process.stderr.write(`${prefix}: ${message}\n${usage}\nRun '${helpHint}' for more.\n`);
  return 2;
}

function unknownCommand(name: string): number {
  const what = name.startsWith('-') ? 'option' : 'command';
  const candidates = what === 'command' ? commands.map((c) => c.name) : ['--help', '--version'];
  return usageError(PROGRAM, `unknown ${what} '${name}'${didYouMean(name, candidates)}`, TOP_USAGE, `${PROGRAM} --help`);
}

export async function main(argv: readonly string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) return usageError(PROGRAM, 'missing command', TOP_USAGE, `${PROGRAM} --help`);
  if (name === '--help' || name === '-h' || name === 'help') {
    const target = rest[0];
    if (target === undefined) {
      process.stdout.write((await topHelp()) + '\n');
      return 0;
    }
    const cmd = await loadCommand(target);
    if (!cmd) return unknownCommand(target);
    process.stdout.write(cmd.help + '\n');
    return 0;
  }
  if (name === '--version' || name === '-V') {
    process.stdout.write(packageVersion() + '\n');
    return 0;
  }
  const cmd: Command | undefined = await loadCommand(name);
  if (!cmd) return unknownCommand(name);
  const terminator = rest.indexOf('--');
  const options = terminator === -1 ? rest : rest.slice(0, terminator);
  if (options.includes('--help') || options.includes('-h')) {
    process.stdout.write(cmd.help + '\n');
    return 0;
  }
  if (options.includes('--version')) {
    process.stdout.write(packageVersion() + '\n');
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (err) {
    if (err instanceof UsageError) {
      return usageError(`${PROGRAM} ${cmd.name}`, err.message, usageOf(cmd.help), `${PROGRAM} ${cmd.name} --help`);
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

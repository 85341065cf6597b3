/**
 * The shape every `vcrypto` sub-command has, and the one place usage errors are defined.
 *
 * A command is a plain object: its name, a one-line summary for `vcrypto --help`, the full help text
 * for `vcrypto <name> --help`, and `run`, which returns the process exit code. Commands never call
 * `process.exit` themselves (so tests can run them in-process and streams flush); they throw
 * `UsageError` for bad arguments (exit 2) and `CliError` for a clear one-line failure (exit 1 or
 * the code given).
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

export interface Command {
  readonly name: string;
  readonly summary: string;
  /** Full help: synopsis, options, examples. Printed by `vcrypto <name> --help`. */
  readonly help: string;
  run(argv: readonly string[]): Promise<number>;
}

/** Bad command line: printed as one line plus the command's usage on stderr, exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** A failure the user should read as one line (no stack trace); exit code `code` (default 1). */
export class CliError extends Error {
  override readonly name = 'CliError';
  constructor(message: string, readonly code = 1, options?: { cause?: unknown }) {
    super(message, options);
  }
}

type Options = NonNullable<ParseArgsConfig['options']>;

/**
 * `node:util` parseArgs in strict mode, with its errors turned into UsageError.
 * `--help`/`-h` is always accepted; the caller checks `values.help`.
 */
export function parseCommandArgs<O extends Options>(
  argv: readonly string[],
  options: O,
  { allowPositionals = false }: { allowPositionals?: boolean } = {},
) {
  try {
    return parseArgs({
      args: [...argv],
      options: { ...options, help: { type: 'boolean', short: 'h' } } as O & { help: { type: 'boolean'; short: 'h' } },
      allowPositionals,
      strict: true,
    });
  } catch (err) {
    // One line: node's message for an unknown option goes on with advice about '--' that only
    // fits commands taking positionals, and ends in an unbalanced quote; keep its first sentence.
    const first = (err as Error).message.split('\n')[0] ?? String(err);
    throw new UsageError(first.replace(/\. To specify a positional argument .*$/, ''));
  }
}

/** Parses a TCP port: an integer 1..65535 (0 allowed when `allowZero`, meaning "any free port"). */
export function parsePort(text: string, { allowZero = false } = {}): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`invalid port '${text}': expected an integer 1-65535`);
  const port = Number(text);
  if (port > 65535 || (port === 0 && !allowZero)) throw new UsageError(`invalid port '${text}': expected an integer 1-65535`);
  return port;
}

/** Parses a positive integer option (e.g. --iterations). */
export function parsePositiveInt(name: string, text: string, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^\d+$/.test(text)) throw new UsageError(`invalid ${name} '${text}': expected a positive integer`);
  const n = Number(text);
  if (n < 1 || n > max) throw new UsageError(`invalid ${name} '${text}': expected an integer 1-${max}`);
  return n;
}

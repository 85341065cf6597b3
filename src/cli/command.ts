/**
 * The shape every `vcrypto` sub-command has, and the one place usage errors and help are defined.
 *
 * A command is a plain object: its name, a one-line summary for `vcrypto --help`, the full help text
 * for `vcrypto <name> --help`, and `run`, which returns the process exit code. Commands never call
 * `process.exit` themselves (so tests can run them in-process and streams flush); they throw
 * `UsageError` for bad arguments (exit 2) and `CliError` for a clear one-line failure (exit 1 or
 * the code given).
 *
 * Help text: build it with `formatHelp` so every command's help has the same sections — usage,
 * description, options (ending with -h/--help and --version), exit codes, examples.
 */
import { parseArgs } from 'node:util';
import { readFileSync } from 'node:fs';

export const PROGRAM = 'vcrypto';

export interface Command {
  readonly name: string;
  readonly summary: string;
  /** Full help: synopsis, options, exit codes, examples. Printed by `vcrypto <name> --help`. */
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

/** The package version (package.json sits two levels above both src/cli/ and dist/cli/). */
export function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version?: unknown };
  return typeof pkg.version === 'string' ? pkg.version : 'unknown';
}

// ------------------------------------------------------------------------------------------------
// Help

export interface HelpSpec {
  /** Synopsis lines, each starting with `vcrypto <name>`. */
  readonly usage: readonly string[];
  /** What the command does: paragraphs, already wrapped. */
  readonly description: readonly string[];
  /** Positional arguments, already indented and aligned. */
  readonly arguments?: readonly string[];
  /** Option lines, already indented and aligned (e.g. DEVICE_OPTION_HELP); -h/--help and --version are added. */
  readonly options: readonly string[];
  /** Exit codes beyond the standard 0/1/2, or replacements for their meaning: [code, meaning]. */
  readonly exitCodes?: readonly (readonly [number, string])[];
  /** Example command lines (and `# comment` lines). */
  readonly examples: readonly string[];
}

const STANDARD_EXIT_CODES: readonly (readonly [number, string])[] = [
  [0, 'success'],
  [1, 'failure (one line on stderr)'],
  [2, 'usage error: unknown option, missing or malformed value (one line plus usage on stderr)'],
];

/** The one help layout every command uses. */
export function formatHelp(spec: HelpSpec): string {
  const codes = new Map(STANDARD_EXIT_CODES);
  for (const [code, meaning] of spec.exitCodes ?? []) codes.set(code, meaning);
  // Arguments and options share one description column.
  const args = (spec.arguments ?? []).flatMap((b) => b.split('\n'));
  const aligned = alignOptions([...args, ...spec.options, '  -h, --help  show this help', '  --version  print the version']);
  const argLines = aligned.slice(0, args.length);
  const optionLines = aligned.slice(args.length);
  const lines = [
    ...spec.usage.map((u, i) => `${i === 0 ? 'Usage: ' : '       '}${u}`),
    '',
    ...spec.description,
    '',
    ...(argLines.length > 0 ? ['Arguments:', ...argLines, ''] : []),
    'Options:',
    ...optionLines,
    '',
    'Exit codes:',
    ...[...codes].sort((a, b) => a[0] - b[0]).map(([code, meaning]) => `  ${code}  ${meaning}`),
    '',
    'Examples:',
    ...spec.examples.map((e) => `  ${e}`),
  ];
  return lines.join('\n');
}

/**
 * Puts every option's description in one column: an option line is `  FLAGS  description` (two or
 * more spaces before the description); the lines that continue it keep their indent relative to it.
 */
function alignOptions(blocks: readonly string[]): string[] {
  const lines = blocks.flatMap((b) => b.split('\n'));
  const parsed = lines.map((line) => {
    const m = /^( {2}[-<]\S.*?)( {2,})(\S.*)$/.exec(line);
    return m ? { flags: m[1]!, column: m[1]!.length + m[2]!.length, text: m[3]! } : null;
  });
  const column = Math.max(...parsed.map((p) => (p ? p.flags.length + 2 : 0)));
  let shift = 0;
  return lines.map((line, i) => {
    const p = parsed[i];
    if (p) {
      shift = column - p.column;
      return `${p.flags.padEnd(column)}${p.text}`;
    }
    // A continuation line: move it with the option it belongs to.
    return shift >= 0 ? ' '.repeat(shift) + line : line.slice(Math.min(-shift, line.length - line.trimStart().length));
  });
}

/** The synopsis of a help text: its "Usage:" line and the indented lines that continue it. */
export function usageOf(help: string): string {
  const lines = help.split('\n');
  const start = lines.findIndex((l) => l.startsWith('Usage:'));
  if (start < 0) return '';
  let end = start + 1;
  while (end < lines.length && /^ {6,}\S/.test(lines[end]!)) end++;
  return lines.slice(start, end).join('\n');
}

// ------------------------------------------------------------------------------------------------
// Suggestions

/** Edit distance with adjacent transpositions (optimal string alignment); small strings only. */
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const row = d[i]!;
      row[j] = Math.min(d[i - 1]![j]! + 1, row[j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) row[j] = Math.min(row[j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

/** The closest of `candidates` to `word`, if it is a plausible typo (or a prefix) of it. */
export function closest(word: string, candidates: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const c of candidates) {
    const d = c.startsWith(word) && word.length >= 3 ? 1 : editDistance(word, c);
    if (d < bestDistance) {
      best = c;
      bestDistance = d;
    }
  }
  const core = word.replace(/^-+/, '');
  return best !== undefined && bestDistance <= Math.max(1, Math.floor(core.length / 3)) ? best : undefined;
}

/** "; did you mean X?" or nothing. */
export function didYouMean(word: string, candidates: readonly string[]): string {
  const c = closest(word, candidates);
  return c === undefined ? '' : `; did you mean '${c}'?`;
}

// ------------------------------------------------------------------------------------------------
// Argument parsing

interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string;
  multiple?: boolean;
  default?: string | boolean | string[] | boolean[];
}
type Options = Record<string, OptionSpec>;
type Value<S extends OptionSpec> = S['type'] extends 'string' ? (S['multiple'] extends true ? string[] : string) : S['multiple'] extends true ? boolean[] : boolean;
type Values<O extends Options> = { [K in keyof O]?: Value<O[K]> } & { help?: boolean; version?: boolean };

/**
 * `node:util` parseArgs in strict mode, with its errors turned into one-line UsageErrors (an unknown
 * option names the closest known one). `-h/--help` and `--version` are always accepted (main.ts
 * handles them before `run`). A negative number after an option that takes a value is that value
 * (`--children -1`), so range checks, not the parser, report it.
 */
export function parseCommandArgs<O extends Options>(
  argv: readonly string[],
  options: O,
  { allowPositionals = false }: { allowPositionals?: boolean } = {},
): { values: Values<O>; positionals: string[] } {
  const all: Options = { ...options, help: { type: 'boolean', short: 'h' }, version: { type: 'boolean' } };
  const takesValue = new Set<string>();
  for (const [name, o] of Object.entries(all)) {
    if (o.type !== 'string') continue;
    takesValue.add(`--${name}`);
    if (o.short !== undefined) takesValue.add(`-${o.short}`);
  }
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      args.push(...argv.slice(i));
      break;
    }
    const next = argv[i + 1];
    if (takesValue.has(a) && next !== undefined && /^-\d/.test(next)) {
      args.push(`${a}${a.startsWith('--') ? '=' : ''}${next}`);
      i++;
    } else {
      args.push(a);
    }
  }
  try {
    const { values, positionals } = parseArgs({ args, options: all, allowPositionals, strict: true });
    return { values: values as Values<O>, positionals };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const message = (err as Error).message;
    if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') {
      const flag = /'([^']+)'/.exec(message)?.[1] ?? '';
      const names = Object.entries(all).flatMap(([n, o]) => [`--${n}`, ...(o.short !== undefined ? [`-${o.short}`] : [])]);
      throw new UsageError(`unknown option '${flag}'${didYouMean(flag.replace(/=.*$/, ''), names)}`);
    }
    if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL') {
      const arg = /'([^']+)'/.exec(message)?.[1] ?? '';
      throw new UsageError(`unexpected argument '${arg}'`);
    }
    // One line: node's message goes on with advice that only fits some commands; keep its first sentence.
    const first = message.split('\n')[0] ?? String(err);
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

/** Parses a positive integer option (e.g. --iterations); negative numbers get the range message too. */
export function parsePositiveInt(name: string, text: string, max = Number.MAX_SAFE_INTEGER): number {
  if (!/^[-+]?\d+$/.test(text)) throw new UsageError(`invalid ${name} '${text}': expected a positive integer`);
  const n = Number(text);
  if (n < 1 || n > max) throw new UsageError(`invalid ${name} '${text}': expected an integer 1-${max}`);
  return n;
}

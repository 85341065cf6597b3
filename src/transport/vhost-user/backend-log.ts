/**
 * How the back-end reports what it does: one call per event, with a level and the connection it
 * concerns, so the CLI can print timestamps, levels and the connection id / front-end pid on every
 * line (text or JSON, see src/cli/commands/device.ts). `line` is the same event as one
 * human-readable line ("connection 3: accepted"), for callers that only want text (tests).
 */

/** Levels, most severe first (pino's names and order). */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LogFields {
  readonly level: LogLevel;
  /** The message without the "connection N: " prefix. */
  readonly msg: string;
  /** Connection number (absent for server-wide events). */
  readonly connection?: number;
  /** The front-end's pid (SO_PEERCRED), when known. */
  readonly pid?: number;
  /** Extra structured detail (vring index, opcode, errno name, ...). */
  readonly [key: string]: unknown;
}

export type BackendLog = (line: string, fields?: LogFields) => void;

/** The human-readable form: "connection 3: msg" or "msg". */
export function logLine(fields: LogFields): string {
  return fields.connection === undefined ? fields.msg : `connection ${fields.connection}: ${fields.msg}`;
}

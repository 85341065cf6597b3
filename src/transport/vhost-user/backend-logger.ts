/**
 * The device daemon's log (`vcrypto device`), on pino: levels, ISO-8601 UTC timestamps, and the
 * connection id and front-end pid on every line of a connection, to stderr, written synchronously
 * (a line is out before the process exits on a signal).
 *
 *   text (default): 2026-12-03T10:00:00.123Z INFO  [conn 3 pid 4242] accepted
 *   json:           {"level":"info","time":"2026-12-03T10:00:00.123Z","connection":3,"frontEndPid":4242,"msg":"accepted"}
 *
 * The level comes from --log-level, else the VCRYPTO_LOG environment variable, else info;
 * --verbose (every vhost-user message, at debug) lowers it to debug.
 */
import { pino, type Logger, type DestinationStream } from 'pino';
import { LOG_LEVELS, type BackendLog, type LogFields, type LogLevel } from './backend-log.js';

export const LOG_FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** Levels accepted by --log-level / VCRYPTO_LOG ('silent' logs nothing). */
export const LOG_LEVEL_NAMES: readonly string[] = [...LOG_LEVELS, 'silent'];

export function isLogLevel(s: string): s is LogLevel | 'silent' {
  return LOG_LEVEL_NAMES.includes(s);
}

export interface BackendLoggerOptions {
  readonly level: LogLevel | 'silent';
  readonly format: LogFormat;
  /** Where lines go (default: fd 2, synchronously). */
  readonly destination?: DestinationStream;
}

/** One JSON record from pino -> one text line. */
function textLine(json: string): string {
  const r = JSON.parse(json) as Record<string, unknown>;
  const { level, time, msg, connection, frontEndPid, ...rest } = r;
  const who =
    connection === undefined ? (frontEndPid === undefined ? '' : `[pid ${String(frontEndPid)}] `) : `[conn ${String(connection)}${frontEndPid === undefined ? '' : ` pid ${String(frontEndPid)}`}] `;
  const extra = Object.entries(rest)
    .filter(([k]) => k !== 'errno' && k !== 'request' && k !== 'flags' && k !== 'size' && k !== 'fds' && k !== 'vring' && k !== 'sessionLayout' && k !== 'opCode')
    .map(([k, v]) => ` ${k}=${JSON.stringify(v)}`)
    .join('');
  return `${String(time)} ${String(level).toUpperCase().padEnd(5)} ${who}${String(msg)}${extra}\n`;
}

export function createBackendLogger(opts: BackendLoggerOptions): { logger: Logger; log: BackendLog } {
  const sink = opts.destination ?? pino.destination({ dest: 2, sync: true });
  const stream: DestinationStream = opts.format === 'json' ? sink : { write: (s: string) => sink.write(textLine(s)) };
  const logger = pino(
    {
      level: opts.level,
      base: null, // no hostname, and "pid" would be ours, not the front-end's
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    stream,
  );
  const log: BackendLog = (line, fields?: LogFields) => {
    if (fields === undefined) {
      logger.info(line);
      return;
    }
    const { level, msg, pid, ...rest } = fields;
    logger[level]({ ...rest, ...(pid !== undefined ? { frontEndPid: pid } : {}) }, msg);
  };
  return { logger, log };
}

/**
 * `vcrypto device --socket PATH`: serve the virtio-crypto device as a vhost-user back-end, for stock
 * QEMU's cryptodev-vhost-user (7.2) or our own driver (`--device vhost-user:PATH`).
 */
import { DEFAULT_MAX_SIZE } from '../../device/virtio-crypto-device.js';
import { resolve } from 'node:path';
import { type Command, UsageError, CliError, formatHelp, parseCommandArgs, parsePositiveInt } from '../command.js';
import { VhostUserBackendServer, DEFAULT_DATA_QUEUES, DEFAULT_MAX_SESSIONS, DEFAULT_MAX_CONNECTIONS } from '../../transport/vhost-user/backend-server.js';
import { SocketInUseError } from '../../transport/vhost-user/backend-socket-path.js';
import { createBackendLogger, isLogLevel, LOG_LEVEL_NAMES } from '../../transport/vhost-user/backend-logger.js';
import { parseListenAddress, startMetricsServer } from '../../transport/vhost-user/backend-metrics.js';
import { DEFAULT_POLL_MICROS } from '../../transport/vhost-user/backend-connection.js';
import { keepFreedMemory } from '../../sys/malloc.js';
import { vhostUserQemuArgs } from '../../vm/qemu.js';
import { probeQemuVersion, vhostUserNeedsVectorsZero, type QemuVersion } from '../../vm/qemu-version.js';

/** Upper bound of --poll-us: a polling episode ends after 2 ms anyway (control messages wait meanwhile). */
export const MAX_POLL_MICROS = 2000;

/** Parses --poll-us: an integer 0..MAX_POLL_MICROS. */
export function parsePollMicros(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) > MAX_POLL_MICROS) throw new UsageError(`invalid --poll-us '${text}': expected an integer 0-${MAX_POLL_MICROS}`);
  return Number(text);
}

const help = formatHelp({
  usage: [
    'vcrypto device --socket PATH [--queues N] [--max-sessions N] [--max-connections N] [--max-size SIZE]',
    '               [--throttle-ops N] [--throttle-bps N] [--poll-us N]',
    '               [--metrics-listen HOST:PORT] [--log-level LEVEL] [--log-format text|json] [--verbose]',
    'vcrypto device --socket PATH --print-qemu-args [--memory SIZE] [--qemu PATH]',
  ],
  description: [
    'Serve the virtio-crypto device as a vhost-user back-end on the Unix socket PATH (QEMU connects as the',
    "client, so start this first). Every connection (a VM, or a 'vcrypto ... --device vhost-user:PATH'",
    'process) gets its own device instance and worker thread. A live device already on PATH is never',
    'taken over (exit 1); a stale socket left by a crashed device is replaced; on exit the socket file is',
    "removed only if it is still this process's. SIGINT, SIGTERM and SIGHUP stop every ring, unmap guest",
    'memory and exit 0. Logs go to stderr, one line per event, with a timestamp, a level and the',
    'connection id and front-end pid.',
  ],
  options: [
    '  --socket PATH          Unix socket to listen on',
    `  --queues N             data queues per device (default ${DEFAULT_DATA_QUEUES}; QEMU 7.2 only uses queue 0)`,
    `  --max-sessions N       session table bound per connection (default ${DEFAULT_MAX_SESSIONS})`,
    '  --max-size SIZE        the largest request (iv + data + output) a front-end may send: bytes, or',
    `                         with K, M or G (default ${formatSize(DEFAULT_MAX_SIZE)}); a guest can make the`,
    '                         device allocate that much per request in flight: bound it for untrusted VMs',
    '  --max-connections N    connections served at once; more are refused with one log line',
    `                         (default ${DEFAULT_MAX_CONNECTIONS}; each costs a worker thread, ~12 MB)`,
    '  --throttle-ops N       per connection: at most N requests per second (token bucket; requests',
    '                         over the limit wait, they are never dropped; 0 = unlimited, the default)',
    '  --throttle-bps N       per connection: at most N source bytes per second (same rules)',
    '  --poll-us N            after a completion, watch the rings for the next request for up to N µs',
    '                         instead of waiting for a kick (adaptive: only while requests come back faster',
    `                         than that; default ${DEFAULT_POLL_MICROS}, 0 = never poll, at most ${MAX_POLL_MICROS})`,
    '  --metrics-listen ADDR  serve Prometheus metrics at http://ADDR/metrics (HOST:PORT, or PORT for',
    "                         127.0.0.1:PORT); read them with 'vcrypto stats --metrics URL'",
    `  --log-level LEVEL      ${LOG_LEVEL_NAMES.join(', ')} (default: $VCRYPTO_LOG, else info)`,
    '  --log-format FORMAT    text (default) or json (one JSON object per line)',
    '  --verbose              log every vhost-user message (request, flags, size, fds, vring index, and',
    '                         for sessions the payload layout: QEMU 7.1-8.0 632 bytes or 8.1+ 1072 bytes',
    '                         with its op_code); implies --log-level debug',
    '  --print-qemu-args      print the QEMU flags (-m and the device) that attach a virtio-crypto-pci device',
    '                         to PATH, and exit; vectors=0 only for a QEMU before 9.1 (7.2 under TCG',
    '                         segfaults with MSI-X and vhost-user), from the version --qemu prints',
    '  --memory SIZE          guest memory for --print-qemu-args, with its unit: e.g. 512M, 2G (default 512M)',
    '  --qemu PATH            the QEMU whose version --print-qemu-args asks (default qemu-system-x86_64)',
  ],
  exitCodes: [[0, 'stopped by SIGINT, SIGTERM or SIGHUP'], [1, 'cannot listen on PATH (or a live device is already there)']],
  examples: [
    'vcrypto device --socket ./vc.sock --metrics-listen 127.0.0.1:9464 &',
    'qemu-system-x86_64 -kernel bzImage $(vcrypto device --socket ./vc.sock --print-qemu-args --memory 512M)',
    'vcrypto stats --metrics http://127.0.0.1:9464/metrics --watch',
  ],
});

/** Parses a non-negative integer option (0 allowed); anything else is a usage error. */
export function parseRate(name: string, text: string): number {
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(Number(text))) throw new UsageError(`invalid ${name} '${text}': expected an integer >= 0`);
  return Number(text);
}

/** --memory for --print-qemu-args: a size with its unit, M (MiB) or G (GiB), as QEMU's -m takes it. */
/** 4096, 64K, 16M, 1G (binary units) -> bytes; 1 byte to 4 GiB - 1 (max_size is a le64, but a request's lengths are le32). */
export function parseByteSize(option: string, text: string): number {
  const m = /^([1-9]\d{0,12})([KMG]?)$/.exec(text);
  const bytes = m === null ? NaN : Number(m[1]) * (m[2] === 'K' ? 1024 : m[2] === 'M' ? 1024 ** 2 : m[2] === 'G' ? 1024 ** 3 : 1);
  if (!Number.isSafeInteger(bytes) || bytes > 2 ** 32 - 1) {
    throw new UsageError(`invalid ${option} '${text}': expected a size in bytes from 1 to 4294967295, or with K, M or G (e.g. 16M)`);
  }
  return bytes;
}

function formatSize(bytes: number): string {
  const mib = Math.floor(bytes / 1024 ** 2);
  return bytes % 1024 ** 2 === 0 ? `${mib}M` : `${mib}M + ${bytes % 1024 ** 2} bytes`;
}

export function parseGuestMemory(text: string): string {
  if (!/^[1-9]\d{0,6}[MG]$/.test(text)) {
    throw new UsageError(`invalid --memory '${text}': give the size with its unit, e.g. 512M or 2G${/^\d+$/.test(text) ? ' (a bare number is ambiguous: QEMU reads MiB, memfd sizes read bytes)' : ''}`);
  }
  return text;
}

export const deviceCommand: Command = {
  name: 'device',
  summary: 'serve the virtio-crypto device as a vhost-user back-end (for QEMU or --device vhost-user:PATH)',
  help,
  async run(argv) {
    const { values } = parseCommandArgs(argv, {
      socket: { type: 'string' },
      queues: { type: 'string' },
      'max-sessions': { type: 'string' },
      'max-size': { type: 'string' },
      'max-connections': { type: 'string' },
      'throttle-ops': { type: 'string' },
      'throttle-bps': { type: 'string' },
      'poll-us': { type: 'string' },
      'metrics-listen': { type: 'string' },
      'log-level': { type: 'string' },
      'log-format': { type: 'string' },
      'print-qemu-args': { type: 'boolean' },
      memory: { type: 'string' },
      qemu: { type: 'string' },
      verbose: { type: 'boolean' },
    });
    if (values.socket === undefined) throw new UsageError('--socket PATH is required');
    const queues = values.queues === undefined ? DEFAULT_DATA_QUEUES : parsePositiveInt('--queues', values.queues, 255);
    const maxSessions = values['max-sessions'] === undefined ? DEFAULT_MAX_SESSIONS : parsePositiveInt('--max-sessions', values['max-sessions'], 1 << 20);
    const maxSize = values['max-size'] === undefined ? undefined : parseByteSize('--max-size', values['max-size']);
    const maxConnections =
      values['max-connections'] === undefined ? DEFAULT_MAX_CONNECTIONS : parsePositiveInt('--max-connections', values['max-connections'], 4096);
    const throttleOps = values['throttle-ops'] === undefined ? 0 : parseRate('--throttle-ops', values['throttle-ops']);
    const throttleBps = values['throttle-bps'] === undefined ? 0 : parseRate('--throttle-bps', values['throttle-bps']);
    const pollMicros = values['poll-us'] === undefined ? DEFAULT_POLL_MICROS : parsePollMicros(values['poll-us']);
    let metrics: { host: string; port: number } | undefined;
    if (values['metrics-listen'] !== undefined) {
      try {
        metrics = parseListenAddress(values['metrics-listen']);
      } catch (err) {
        throw new UsageError(`invalid --metrics-listen: ${(err as Error).message}`);
      }
    }
    const envLevel = process.env.VCRYPTO_LOG;
    const levelText = values['log-level'] ?? (envLevel !== undefined && envLevel !== '' ? envLevel : 'info');
    if (!isLogLevel(levelText)) {
      throw new UsageError(`invalid ${values['log-level'] !== undefined ? '--log-level' : 'VCRYPTO_LOG'} '${levelText}': expected one of ${LOG_LEVEL_NAMES.join(', ')}`);
    }
    const verbose = values.verbose ?? false;
    const level = verbose && (levelText === 'info' || levelText === 'warn' || levelText === 'error' || levelText === 'fatal') ? 'debug' : levelText;
    const format = values['log-format'] ?? 'text';
    if (format !== 'text' && format !== 'json') throw new UsageError(`invalid --log-format '${format}': expected text or json`);
    if (values['print-qemu-args']) {
      const memory = parseGuestMemory(values.memory ?? '512M');
      if (/[,\s]/.test(values.socket)) throw new UsageError('the socket path must not contain commas or spaces (QEMU option syntax)');
      // vectors=0 only where the QEMU needs it: ask the binary its version.
      let version: QemuVersion | undefined;
      try {
        version = await probeQemuVersion(values.qemu ?? 'qemu-system-x86_64');
      } catch (err) {
        if (values.qemu !== undefined) throw new CliError(`--qemu ${values.qemu}: ${(err as Error).message}`);
        process.stderr.write(`vcrypto device: no QEMU version (${(err as Error).message}); printing vectors=0, which every QEMU accepts\n`);
      }
      const socketPath = resolve(values.socket);
      if (/[,\s]/.test(socketPath)) throw new UsageError(`the socket's absolute path ${socketPath} must not contain commas or spaces (QEMU option syntax)`);
      const args = ['-m', memory, ...vhostUserQemuArgs({ socketPath, memory, queues, msix: !vhostUserNeedsVectorsZero(version) })];
      process.stdout.write(args.join(' ') + '\n');
      return 0;
    }
    if (values.memory !== undefined || values.qemu !== undefined) throw new UsageError('--memory and --qemu only apply to --print-qemu-args');
    const { log } = createBackendLogger({ level, format });
    const info = (msg: string) => log(msg, { level: 'info', msg });
    // This process is a data path: keep freed request buffers mapped (see src/sys/malloc.ts).
    if (!keepFreedMemory()) log('', { level: 'warn', msg: 'mallopt(M_TRIM_THRESHOLD) refused; request buffers will be re-faulted' });
    let server: VhostUserBackendServer;
    try {
      server = VhostUserBackendServer.listen(values.socket, {
        dataQueues: queues,
        maxSessions,
        ...(maxSize !== undefined ? { maxSize } : {}),
        maxConnections,
        throttleOps,
        throttleBps,
        pollMicros,
        log,
        verbose,
      });
    } catch (err) {
      if (err instanceof SocketInUseError) throw new CliError(err.message);
      throw new CliError(`cannot listen on ${values.socket}: ${(err as Error).message}`);
    }
    // Handlers first: a supervisor may signal as soon as it reads the 'listening' line.
    const stopSignal = new Promise<NodeJS.Signals>((done) => {
      for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.once(s, () => done(s));
    });
    if (server.replacedStaleSocket) info(`replaced a stale socket at ${values.socket} (no device was listening on it)`);
    let metricsServer: Awaited<ReturnType<typeof startMetricsServer>> | undefined;
    if (metrics !== undefined) {
      try {
        metricsServer = await startMetricsServer(server, metrics.host, metrics.port);
      } catch (err) {
        await server.close();
        throw new CliError(`cannot serve metrics on ${values['metrics-listen']}: ${(err as Error).message}`);
      }
    }
    const limits = [
      throttleOps > 0 ? `${throttleOps} ops/s` : '',
      throttleBps > 0 ? `${throttleBps} B/s` : '',
    ].filter((x) => x !== '');
    process.stdout.write(
      `listening on ${values.socket} (${queues} data queue${queues > 1 ? 's' : ''}, max ${maxSessions} sessions per connection, ` +
        `max ${maxConnections} connections${limits.length > 0 ? `, throttle ${limits.join(' and ')} per connection` : ''})` +
        (metricsServer !== undefined ? `; metrics at http://${metrics!.host.includes(':') ? `[${metrics!.host}]` : metrics!.host}:${metricsServer.port}/metrics` : '') +
        '\n',
    );
    const signal = await stopSignal;
    // A second signal while stopping: stop waiting for it (one log line each was promised).
    for (const s of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) process.on(s, () => undefined);
    info(`${signal}: stopping ${server.connectionCount} connection(s)`);
    await metricsServer?.close();
    const socketFile = await server.close();
    info(
      socketFile === 'removed'
        ? 'stopped; socket removed'
        : socketFile === 'replaced'
          ? 'stopped; socket left in place: another process replaced it'
          : 'stopped; socket was already gone',
    );
    return 0;
  },
};

/**
 * `vcrypto device --socket PATH`: serve the virtio-crypto device as a vhost-user back-end, for stock
 * QEMU's cryptodev-vhost-user (7.2) or our own driver (`--device vhost-user:PATH`).
 */
import { resolve } from 'node:path';
import { type Command, UsageError, CliError, formatHelp, parseCommandArgs, parsePositiveInt } from '../command.js';
import { VhostUserBackendServer, DEFAULT_DATA_QUEUES, DEFAULT_MAX_SESSIONS } from '../../transport/vhost-user/backend-server.js';
import { DEFAULT_POLL_MICROS } from '../../transport/vhost-user/backend-connection.js';
import { keepFreedMemory } from '../../sys/malloc.js';

/** Upper bound of --poll-us: a polling episode ends after 2 ms anyway (control messages wait meanwhile). */
export const MAX_POLL_MICROS = 2000;

/** Parses --poll-us: an integer 0..MAX_POLL_MICROS. */
export function parsePollMicros(text: string): number {
  if (!/^\d+$/.test(text) || Number(text) > MAX_POLL_MICROS) throw new UsageError(`invalid --poll-us '${text}': expected an integer 0-${MAX_POLL_MICROS}`);
  return Number(text);
}

const help = formatHelp({
  usage: ['vcrypto device --socket PATH [--queues N] [--max-sessions N] [--poll-us N] [--verbose]', 'vcrypto device --socket PATH --print-qemu-args [--memory SIZE]'],
  description: [
    'Serve the virtio-crypto device as a vhost-user back-end on the Unix socket PATH (QEMU connects as the',
    "client, so start this first). Every connection (a VM, or a 'vcrypto ... --device vhost-user:PATH'",
    'process) gets its own device instance and worker thread. Log lines go to stderr. SIGINT/SIGTERM stop',
    'every ring, unmap guest memory, remove the socket file and exit 0.',
  ],
  options: [
    '  --socket PATH        Unix socket to listen on (a stale socket file is replaced)',
    `  --queues N           data queues per device (default ${DEFAULT_DATA_QUEUES}; QEMU 7.2 only uses queue 0)`,
    `  --max-sessions N     session table bound per connection (default ${DEFAULT_MAX_SESSIONS})`,
    '  --poll-us N          after a completion, watch the rings for the next request for up to N µs',
    '                       instead of waiting for a kick (adaptive: only while requests come back faster',
    `                       than that; default ${DEFAULT_POLL_MICROS}, 0 = never poll, at most ${MAX_POLL_MICROS})`,
    '  --verbose            log every vhost-user message received (request, flags, size, fds)',
    '  --print-qemu-args    print the QEMU 7.2 flags that attach a virtio-crypto-pci device to PATH, and exit',
    '  --memory SIZE        guest memory size for --print-qemu-args (default 512M; must match QEMU -m)',
  ],
  exitCodes: [[0, 'stopped by SIGINT/SIGTERM'], [1, 'cannot listen on PATH']],
  examples: [
    'vcrypto device --socket ./vc.sock &',
    'qemu-system-x86_64 -m 512M -kernel bzImage $(vcrypto device --socket ./vc.sock --print-qemu-args --memory 512M)',
  ],
});

/** The QEMU 7.2 command-line flags for our back-end (docs/qemu-vhost-user-crypto.md §1; vectors=0: TCG + MSI-X crash). */
export function qemuArgs(socketPath: string, memory: string, queues: number): string[] {
  return [
    '-object', `memory-backend-memfd,id=mem,size=${memory},share=on`,
    '-machine', 'memory-backend=mem',
    '-chardev', `socket,id=c0,path=${socketPath}`,
    '-object', `cryptodev-vhost-user,id=cd0,chardev=c0${queues > 1 ? `,queues=${queues}` : ''}`,
    '-device', 'virtio-crypto-pci,id=crypto0,cryptodev=cd0,vectors=0',
  ];
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
      'poll-us': { type: 'string' },
      'print-qemu-args': { type: 'boolean' },
      memory: { type: 'string' },
      verbose: { type: 'boolean' },
    });
    if (values.socket === undefined) throw new UsageError('--socket PATH is required');
    const queues = values.queues === undefined ? DEFAULT_DATA_QUEUES : parsePositiveInt('--queues', values.queues, 255);
    const maxSessions = values['max-sessions'] === undefined ? DEFAULT_MAX_SESSIONS : parsePositiveInt('--max-sessions', values['max-sessions'], 1 << 20);
    const pollMicros = values['poll-us'] === undefined ? DEFAULT_POLL_MICROS : parsePollMicros(values['poll-us']);
    if (values['print-qemu-args']) {
      const memory = values.memory ?? '512M';
      if (!/^\d+[KMGT]?$/.test(memory)) throw new UsageError(`invalid --memory '${memory}': expected e.g. 512M`);
      if (/[,\s]/.test(values.socket)) throw new UsageError('the socket path must not contain commas or spaces (QEMU option syntax)');
      process.stdout.write(qemuArgs(resolve(values.socket), memory, queues).join(' ') + '\n');
      return 0;
    }
    if (values.memory !== undefined) throw new UsageError('--memory only applies to --print-qemu-args');
    const log = (line: string) => process.stderr.write(`vcrypto device: ${line}\n`);
    // This process is a data path: keep freed request buffers mapped (see src/sys/malloc.ts).
    if (!keepFreedMemory()) log('note: mallopt(M_TRIM_THRESHOLD) refused; request buffers will be re-faulted');
    let server: VhostUserBackendServer;
    try {
      server = VhostUserBackendServer.listen(values.socket, { dataQueues: queues, maxSessions, pollMicros, log, verbose: values.verbose ?? false });
    } catch (err) {
      throw new CliError(`cannot listen on ${values.socket}: ${(err as Error).message}`);
    }
    process.stdout.write(`listening on ${values.socket} (${queues} data queue${queues > 1 ? 's' : ''}, max ${maxSessions} sessions per connection)\n`);
    const signal = await new Promise<NodeJS.Signals>((done) => {
      process.once('SIGINT', () => done('SIGINT'));
      process.once('SIGTERM', () => done('SIGTERM'));
    });
    log(`${signal}: stopping ${server.connectionCount} connection(s)`);
    await server.close();
    log('stopped; socket removed');
    return 0;
  },
};

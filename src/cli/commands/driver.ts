/**
 * `vcrypto driver --socket PATH`: the driver service, the guest's stand-in for /dev/cryptodevN. This
 * process owns one device (default `pci`: the machine's virtio-crypto-pci device) and serves the
 * session API to local processes (`--device socket:PATH`) over a Unix socket
 * (transport/socket/serve-device-on-socket.ts).
 */
import { CryptoError, type CryptoDevice } from '../../driver/api.js';
import { DEVICE_OPTION_HELP, openDevice } from '../../transport/open-device.js';
import { DEFAULT_SOCKET_MODE, serveDeviceOnSocket, type SocketDeviceService } from '../../transport/socket/serve-device-on-socket.js';
import { type Command, CliError, formatHelp, parseCommandArgs, UsageError } from '../command.js';
import { asCliError, checkDeviceSpec } from './crypto-common.js';

const DEFAULT_SERVICE_DEVICE = 'pci';

const help = formatHelp({
  usage: ['vcrypto driver --socket PATH [--device SPEC | --pci [BDF]] [--mode OCTAL] [--verbose]'],
  description: [
    'Own one crypto device and serve its session API to the processes of this machine over the Unix socket',
    "PATH: every 'vcrypto ... --device socket:PATH' (or connectSocketDevice(PATH)) is a client. Like",
    '/dev/cryptodevN: sessions belong to the connection that made them and are freed when it closes or its',
    "process dies; all clients share the device's queues, each with many requests in flight. A client that",
    'breaks the protocol is disconnected (one log line); the others go on.',
    '',
    'Prints "vcrypto driver: serving <device> on PATH" on stderr once clients can connect. SIGINT/SIGTERM',
    'disconnect every client, close the device (a virtio device is reset), remove the socket file (if it is',
    'still ours) and exit 0.',
  ],
  options: [
    '  --socket PATH      Unix socket to serve on (required). A stale socket file is replaced; a service',
    '                     already answering there is an error.',
    DEVICE_OPTION_HELP.replace('(default: virtio)', `(default: ${DEFAULT_SERVICE_DEVICE})`),
    '  --pci [BDF]        the same as --device pci[:BDF]',
    `  --mode OCTAL       permissions of the socket file (default ${DEFAULT_SOCKET_MODE.toString(8).padStart(4, '0')}: this user only;`,
    "                     0660: also the file's group)",
    '  --verbose          log every client connect and disconnect',
  ],
  exitCodes: [[0, 'stopped by SIGINT/SIGTERM'], [1, 'the device or the socket could not be set up']],
  examples: [
    'vcrypto driver --pci --socket /run/vcrypto.sock &           # in a guest with a virtio-crypto-pci device',
    'vcrypto test-crypto --device socket:/run/vcrypto.sock',
    'vcrypto driver --device virtio --socket ./vc.sock --mode 0660 --verbose',
  ],
});

/** `--pci` takes an optional value: a bare `--pci` (last, or before another option) becomes `--pci=`. */
function expandBarePci(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.push(...argv.slice(i));
      break;
    }
    const next = argv[i + 1];
    out.push(a === '--pci' && (next === undefined || next.startsWith('-')) ? '--pci=' : a);
  }
  return out;
}

/** Parses --mode: an octal permission 0-0777 (e.g. 600, 0660). */
export function parseSocketMode(text: string): number {
  if (!/^0?[0-7]{1,3}$/.test(text)) throw new UsageError(`invalid --mode '${text}': expected octal permissions such as 0600 or 0660`);
  return parseInt(text, 8);
}

export const driverCommand: Command = {
  name: 'driver',
  summary: 'own a crypto device and serve it to local processes over a Unix socket (--device socket:PATH)',
  help,
  async run(argv) {
    const { values } = parseCommandArgs(expandBarePci(argv), {
      socket: { type: 'string' },
      device: { type: 'string' },
      pci: { type: 'string' },
      mode: { type: 'string' },
      verbose: { type: 'boolean' },
    });
    if (values.socket === undefined || values.socket === '') throw new UsageError('--socket PATH is required');
    if (values.device !== undefined && values.pci !== undefined) throw new UsageError('give --device or --pci, not both');
    const spec = checkDeviceSpec(values.pci !== undefined ? (values.pci === '' ? 'pci' : `pci:${values.pci}`) : (values.device ?? DEFAULT_SERVICE_DEVICE));
    if (spec === `socket:${values.socket}`) throw new UsageError('the service cannot serve its own socket');
    const mode = values.mode === undefined ? DEFAULT_SOCKET_MODE : parseSocketMode(values.mode);
    const log = (line: string) => void process.stderr.write(`vcrypto driver: ${line}\n`);

    // Signals are caught from the start: a SIGTERM while the device comes up still ends cleanly.
    let stopSignal: NodeJS.Signals | undefined;
    let onSignal: (signal: NodeJS.Signals) => void = (signal) => (stopSignal ??= signal);
    const handler = (signal: NodeJS.Signals) => onSignal(signal);
    process.on('SIGINT', handler);
    process.on('SIGTERM', handler);
    let device: CryptoDevice | undefined;
    let service: SocketDeviceService | undefined;
    try {
      try {
        device = await openDevice(spec);
      } catch (err) {
        throw err instanceof CryptoError ? new CliError(`cannot open the device ${spec}: ${err.message}`, 1, { cause: err }) : asCliError(err);
      }
      try {
        service = await serveDeviceOnSocket(device, values.socket, { mode, log, verbose: values.verbose ?? false });
      } catch (err) {
        throw new CliError(`cannot serve on ${values.socket}: ${(err as Error).message}`, 1, { cause: err });
      }
      log(`serving ${device.info.description} on ${values.socket}`);
      const signal = stopSignal ?? (await new Promise<NodeJS.Signals>((resolve) => (onSignal = resolve)));
      const clients = service.clientCount;
      await service.close();
      await device.close();
      device = undefined;
      log(`${signal}: disconnected ${clients} client(s), closed the device, removed ${values.socket}`);
      return 0;
    } finally {
      await service?.close();
      await device?.close();
      process.off('SIGINT', handler);
      process.off('SIGTERM', handler);
    }
  },
};

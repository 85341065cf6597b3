/**
 * `vcrypto driver`: the guest's /dev/cryptodevN. Owns one device (in a VM: the virtio-crypto PCI
 * function, through our user-space driver) and serves the session API to local processes on a Unix
 * socket; they use it with `--device socket:PATH`. Runs until SIGINT/SIGTERM, then closes every
 * client, resets the device and removes its socket file.
 */
import { type Command, CliError, UsageError, formatHelp, parseCommandArgs } from '../command.js';
import { parseDeviceSpec } from '../../transport/open-device.js';
import { DriverService, ServiceError } from '../../transport/socket/driver-service.js';
import { asCliError, checkDeviceSpec } from './crypto-common.js';
import { openDevice } from '../../transport/open-device.js';

const help = formatHelp({
  usage: ['vcrypto driver --socket PATH [--pci [BDF] | --device SPEC] [--mode OCTAL] [--verbose]'],
  description: [
    "The lab's /dev/cryptodevN: owns one crypto device and serves the cryptodev-style session API to",
    "local processes over the Unix socket PATH. Other commands use it with '--device socket:PATH'. Each",
    "connection is like one open() of the device node: its sessions belong to it and are destroyed (keys",
    'zeroed) when it closes or its process dies; many processes share the device\'s queues at once. A',
    'client that sends a malformed message is disconnected; the others go on. Prints',
    "'driver: serving <device> on PATH' on stderr once it accepts connections. In 'vcrypto vm' it runs at",
    'boot as `vcrypto driver --pci --socket /run/vcrypto.sock`.',
  ],
  options: [
    '  --socket PATH      the Unix socket to serve on (created mode 0600; a stale one is replaced, a live',
    '                     service on PATH is refused)',
    '  --pci [BDF]        the virtio-crypto PCI device (bound to vfio-pci or uio_pci_generic; default: the',
    '                     first one found); the same as --device pci[:BDF], and the default device',
    '  --device SPEC      any other device spec (host, virtio, vhost-user:PATH), e.g. for tests on a host',
    '  --mode OCTAL       socket file permissions (default 600; 660 lets a group use the device)',
    '  --verbose          log each client connecting and leaving',
  ],
  exitCodes: [[0, 'stopped by SIGINT/SIGTERM'], [1, 'the device cannot be opened, or PATH cannot be served']],
  examples: [
    'vcrypto driver --pci --socket /run/vcrypto.sock &',
    'vcrypto test-crypto --device socket:/run/vcrypto.sock',
    'vcrypto driver --device virtio --socket ./vc-driver.sock --mode 660',
  ],
});

export const driverCommand: Command = {
  name: 'driver',
  summary: 'serve a crypto device to local processes on a Unix socket (the guest\'s /dev/cryptodevN)',
  help,
  async run(argv) {
    const { values, positionals } = parseCommandArgs(
      argv,
      {
        socket: { type: 'string' },
        pci: { type: 'boolean' },
        device: { type: 'string' },
        mode: { type: 'string' },
        verbose: { type: 'boolean' },
      },
      { allowPositionals: true },
    );
    if (values.socket === undefined || values.socket === '') throw new UsageError('--socket PATH is required');
    if (values.pci && values.device !== undefined) throw new UsageError('--pci and --device exclude each other');
    if (positionals.length > (values.pci ? 1 : 0)) throw new UsageError(`unexpected argument '${positionals.at(-1)}'`);
    const spec = values.device !== undefined ? checkDeviceSpec(values.device) : positionals[0] !== undefined ? checkDeviceSpec(`pci:${positionals[0]}`) : 'pci';
    if (parseDeviceSpec(spec).kind === 'socket') throw new UsageError('the driver service cannot serve another driver service (--device socket:...)');
    let mode = 0o600;
    if (values.mode !== undefined) {
      if (!/^[0-7]{3}$/.test(values.mode)) throw new UsageError(`invalid --mode '${values.mode}': expected three octal digits, e.g. 600 or 660`);
      mode = Number.parseInt(values.mode, 8);
    }
    const log = (line: string) => void process.stderr.write(`${line}\n`);
    const device = await openDevice(spec).catch((err: unknown) => {
      throw asCliError(err);
    });
    let service: DriverService;
    try {
      service = await DriverService.listen(device, values.socket, { mode, log, verbose: values.verbose === true });
    } catch (err) {
      await device.close();
      if (err instanceof ServiceError) throw new CliError(err.message);
      throw err;
    }
    const stopped = new Promise<string>((resolve) => {
      for (const sig of ['SIGINT', 'SIGTERM'] as const) process.once(sig, () => resolve(sig));
    });
    log(`driver: serving ${device.info.description} on ${values.socket}`);
    const signal = await stopped;
    log(`driver: ${signal}: closing ${service.clients} client(s) and the device`);
    await service.close();
    await device.close();
    return 0;
  },
};

/**
 * Device selection: `--device SPEC` → a `CryptoDevice`. The one place a spec string is parsed.
 *
 *   host              the session API straight onto node:crypto (no virtio; the baseline)
 *   virtio            our driver + the embedded virtio-crypto device on a worker thread (default)
 *   vhost-user:PATH   our driver as a vhost-user front-end to `vcrypto device --socket PATH`
 *   pci[:BDF]         our driver on a virtio-crypto-pci device of this (guest) machine, used directly
 *   socket:PATH       the driver service `vcrypto driver --socket PATH` (one device, many processes)
 *
 * Adding a back-end: one `case` in `openDevice` below (import it lazily with `await import(...)` so
 * `--device host` never loads worker or socket code).
 */
import { CryptoError, type CryptoDevice } from '../driver/api.js';
import { createHostDevice } from '../driver/host-device.js';

export const DEFAULT_DEVICE_SPEC = 'virtio';

export type DeviceSpec =
  | { readonly kind: 'host' }
  | { readonly kind: 'virtio' }
  | { readonly kind: 'vhost-user'; readonly path: string }
  /** `bdf`: normalised DDDD:BB:DD.F (lower case); absent: the first virtio-crypto PCI device. */
  | { readonly kind: 'pci'; readonly bdf?: string }
  | { readonly kind: 'socket'; readonly path: string };

/** The shared help text of the `--device` option, for every command's help. */
export const DEVICE_OPTION_HELP = [
  '  --device SPEC    the crypto device to use (default: virtio):',
  '                     host             node:crypto directly, no virtualization (baseline)',
  '                     virtio           our driver + the embedded virtio-crypto device (worker thread)',
  '                     vhost-user:PATH  our driver + `vcrypto device --socket PATH` (another process)',
  '                     pci[:BDF]        our driver on this machine\'s virtio-crypto-pci device (first one,',
  '                                      or e.g. pci:0000:00:04.0), used by this process alone',
  '                     socket:PATH      the driver service `vcrypto driver --socket PATH` (shared device)',
].join('\n');

/**
 * A PCI address: DDDD:BB:DD.F (domain, bus, device 0-1f, function 0-7), or BB:DD.F in domain 0000.
 * Returns it as DDDD:BB:DD.F in lower case (the form of /sys/bus/pci/devices/), or undefined.
 */
export function normalizePciAddress(text: string): string | undefined {
  const m = /^(?:([0-9a-fA-F]{4}):)?([0-9a-fA-F]{2}):([0-9a-fA-F]{2})\.([0-7])$/.exec(text);
  if (!m) return undefined;
  const [, domain = '0000', bus, device, fn] = m;
  if (parseInt(device!, 16) > 0x1f) return undefined;
  return `${domain}:${bus}:${device}.${fn}`.toLowerCase();
}

/** Parses a device spec; throws CryptoError('EINVAL') for anything else. */
export function parseDeviceSpec(spec: string): DeviceSpec {
  if (spec === 'host' || spec === 'virtio') return { kind: spec };
  if (spec.startsWith('vhost-user:')) {
    const path = spec.slice('vhost-user:'.length);
    if (path.length === 0) throw new CryptoError('EINVAL', `device spec '${spec}': vhost-user needs a socket path (vhost-user:PATH)`);
    return { kind: 'vhost-user', path };
  }
  if (spec === 'pci') return { kind: 'pci' };
  if (spec.startsWith('pci:')) {
    const bdf = normalizePciAddress(spec.slice('pci:'.length));
    if (bdf === undefined) throw new CryptoError('EINVAL', `device spec '${spec}': expected pci:DDDD:BB:DD.F or pci:BB:DD.F (e.g. pci:0000:00:04.0)`);
    return { kind: 'pci', bdf };
  }
  if (spec.startsWith('socket:')) {
    const path = spec.slice('socket:'.length);
    if (path.length === 0) throw new CryptoError('EINVAL', `device spec '${spec}': socket needs the driver service's socket path (socket:PATH)`);
    return { kind: 'socket', path };
  }
  throw new CryptoError('EINVAL', `unknown device spec '${spec}' (expected host, virtio, vhost-user:PATH, pci[:BDF] or socket:PATH)`);
}

/** Opens the device a spec names. The caller closes it. */
export async function openDevice(spec: string = DEFAULT_DEVICE_SPEC): Promise<CryptoDevice> {
  const parsed = parseDeviceSpec(spec);
  switch (parsed.kind) {
    case 'host':
      return createHostDevice();
    // --- back-ends added by their owners: one case each ---
    case 'virtio':
      return (await import('./in-process/create-in-process-device.js')).createInProcessDevice();
    case 'vhost-user':
      return (await import('./vhost-user/connect.js')).connectVhostUserDevice(parsed.path);
    case 'pci':
      return (await import('./virtio-pci/open-pci-device.js')).openPciDevice(parsed.bdf);
    case 'socket':
      return (await import('./socket/connect-socket-device.js')).connectSocketDevice(parsed.path);
    default:
      throw new CryptoError('ENOTSUP', `device '${spec}' is not available in this build`);
  }
}

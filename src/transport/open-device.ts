/**
 * Device selection: `--device SPEC` → a `CryptoDevice`. The one place a spec string is parsed.
 *
 *   host              the session API straight onto node:crypto (no virtio; the baseline)
 *   virtio            our driver + the embedded virtio-crypto device on a worker thread (default)
 *   vhost-user:PATH   our driver as a vhost-user front-end to `vcrypto device --socket PATH`
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
  | { readonly kind: 'pci'; readonly bdf?: string }
  | { readonly kind: 'socket'; readonly path: string };

/** The shared help text of the `--device` option, for every command's help. */
export const DEVICE_OPTION_HELP = [
  '  --device SPEC    the crypto device to use (default: virtio):',
  '                     host             node:crypto directly, no virtualization (baseline)',
  '                     virtio           our driver + the embedded virtio-crypto device (worker thread)',
  '                     vhost-user:PATH  our driver + `vcrypto device --socket PATH` (another process)',
  '                     pci[:BDF]        our driver on a virtio-crypto-pci device bound to vfio-pci or',
  '                                      uio_pci_generic (inside a VM; default: the first one found)',
  '                     socket:PATH      the driver service `vcrypto driver --socket PATH` (in the',
  '                                      lab\'s VM: socket:/run/vcrypto.sock)',
].join('\n');

/** Parses a device spec; throws CryptoError('EINVAL') for anything else. */
export function parseDeviceSpec(spec: string): DeviceSpec {
  if (spec === 'host' || spec === 'virtio') return { kind: spec };
  if (spec.startsWith('vhost-user:')) {
    const path = spec.slice('vhost-user:'.length);
    if (path.length === 0) throw new CryptoError('EINVAL', `device spec '${spec}': vhost-user needs a socket path (vhost-user:PATH)`);
    return { kind: 'vhost-user', path };
  }
  if (spec.startsWith('socket:')) {
    const path = spec.slice('socket:'.length);
    if (path.length === 0) throw new CryptoError('EINVAL', `device spec '${spec}': socket needs the driver service's path (socket:PATH)`);
    return { kind: 'socket', path };
  }
  if (spec === 'pci') return { kind: 'pci' };
  if (spec.startsWith('pci:')) return { kind: 'pci', bdf: spec.slice('pci:'.length) };
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

/**
 * PLACEHOLDER for `--device pci[:BDF]` (the virtio-pci transport): keeps open-device.ts building until
 * the transport lands; that change replaces this file.
 */
import { CryptoError, type CryptoDevice } from '../../driver/api.js';

/** The virtio-crypto PCI device at `bdf` (DDDD:BB:DD.F), or the first one when absent. */
export async function openPciDevice(bdf?: string): Promise<CryptoDevice> {
  throw new CryptoError('ENOTSUP', `the virtio-pci transport is not in this build yet${bdf === undefined ? '' : ` (pci:${bdf})`}`);
}

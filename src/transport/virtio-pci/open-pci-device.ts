/**
 * `--device pci[:BDF]`: our virtio-crypto driver on a virtio-crypto-pci device that the kernel has
 * handed to user space (vfio-pci behind an IOMMU, or uio_pci_generic). Without a BDF the first
 * virtio-crypto function (vendor 0x1af4, device 0x1054) is used. One process owns the device at a
 * time (VFIO's group, or an flock for uio): a second one gets a clear "busy" error.
 */
import { CryptoError, type CryptoDevice } from '../../driver/api.js';
import { VirtioCryptoDriver } from '../../driver/virtio-crypto-driver.js';
import { normalizePciAddress } from '../open-device.js';
import { findVirtioCryptoFunctions, openPciFunction, type PciFunction } from './pci-function.js';
import { VirtioPciTransport, type PciTransportOptions } from './virtio-pci-transport.js';

export interface PciDeviceOptions extends PciTransportOptions {
  /** Queue size the driver uses (power of 2, capped by the device). Default 256. */
  readonly queueSize?: number;
  /** The driver's request deadline (default: VCRYPTO_REQUEST_TIMEOUT_MS, else 30 s). */
  readonly requestTimeoutMs?: number;
}

export async function openPciDevice(bdf?: string, opts: PciDeviceOptions = {}): Promise<CryptoDevice> {
  let address: string;
  if (bdf === undefined) {
    const found = findVirtioCryptoFunctions();
    if (found.length === 0) throw new CryptoError('ENOENT', 'pci: no virtio-crypto PCI device (vendor 0x1af4, device 0x1054) in /sys/bus/pci/devices');
    address = found[0]!;
  } else {
    const normal = normalizePciAddress(bdf);
    if (normal === undefined) throw new CryptoError('EINVAL', `pci: '${bdf}' is not a PCI address (DDDD:BB:DD.F or BB:DD.F)`);
    address = normal;
  }
  let fn: PciFunction;
  try {
    fn = openPciFunction(address);
  } catch (err) {
    throw new CryptoError('EIO', `pci:${address}: ${(err as Error).message}`, { cause: err });
  }
  return openDeviceOnFunction(fn, opts);
}

/** Our driver on an opened PCI function (closed with the device, or here on failure). */
export async function openDeviceOnFunction(fn: PciFunction, opts: PciDeviceOptions = {}): Promise<CryptoDevice> {
  const address = fn.bdf;
  let transport: VirtioPciTransport;
  try {
    transport = VirtioPciTransport.open(fn, opts);
  } catch (err) {
    fn.close();
    throw new CryptoError('EIO', `pci:${address}: ${(err as Error).message}`, { cause: err });
  }
  try {
    return await VirtioCryptoDriver.create(transport, {
      spec: `pci:${address}`,
      queueSize: opts.queueSize ?? 256,
      ...(opts.requestTimeoutMs === undefined ? {} : { requestTimeoutMs: opts.requestTimeoutMs }),
    });
  } catch (err) {
    await transport.close();
    throw err;
  }
}

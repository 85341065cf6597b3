/**
 * One PCI function handed to user space, the two ways Linux offers:
 *
 *  - `vfio`: bound to vfio-pci behind an IOMMU (the product path). Config space and BARs through
 *    the VFIO device fd; DMA memory is ordinary locked memory mapped at an IOVA of our choosing
 *    (the device sees only IOVAs); interrupts are eventfds (MSI-X vector 0, or INTx).
 *  - `uio`: bound to uio_pci_generic, no IOMMU (guests without one). Config space and BARs through
 *    sysfs (`config`, `resourceN`); DMA memory is one 2 MiB hugetlb page (physically contiguous)
 *    whose physical address comes from /proc/self/pagemap; interrupts are INTx through /dev/uioN.
 *    Exclusive use is an flock on the sysfs config file: a second process gets "busy".
 *
 * Everything native goes through src/sys. Ownership: a PciFunction owns its fds, BAR mappings and DMA
 * memory; close() releases them (after the caller has reset the device).
 */
import { readdirSync, readFileSync, readlinkSync, statSync } from 'node:fs';
import { basename } from 'node:path';
import { VfioDevice, VFIO_PCI_CONFIG_REGION_INDEX, VFIO_PCI_IRQ_INDEX, type VfioRegion } from '../../sys/vfio.js';
import { allocDmaMemory, openFile, physicalAddressOf, preadExact, pwriteExact, readRecord, tryLockExclusive, HUGE_PAGE_BYTES, O_RDWR } from '../../sys/device-file.js';
import { closeFd, createEventFd, drainEventFd } from '../../sys/fd.js';
import { mapShared, type Mapping } from '../../sys/memfd.js';
import { PCI_CFG, PCI_COMMAND_INTX_DISABLE, VIRTIO_PCI_CRYPTO_DEVICE_ID, VIRTIO_PCI_VENDOR_ID } from '../../spec/virtio-pci.js';
import type { VirtioPciRegion } from './pci-capabilities.js';

export class PciError extends Error {
  override readonly name = 'PciError';
}

export interface DmaMemory {
  readonly mapping: Mapping;
  /** The address the device uses for mapping byte 0 (an IOVA, or a physical address). */
  readonly busAddress: bigint;
}

export interface InterruptSource {
  readonly kind: 'msix' | 'intx';
  /** Becomes readable (POLLIN) when the device interrupts. Owned by the PciFunction. */
  readonly fd: number;
  /** Consumes the fd's readiness (before the ISR is read). */
  consume(): void;
  /** INTx: re-enables the line after the device's ISR has been read (which de-asserts it). */
  rearm(): void;
}

/** Single, width-exact accesses to one register structure (offsets relative to the structure). */
export interface RegisterWindow {
  readonly region: VirtioPciRegion;
  r8(off: number): number;
  r16(off: number): number;
  r32(off: number): number;
  w8(off: number, v: number): void;
  w16(off: number, v: number): void;
  w32(off: number, v: number): void;
}

export interface PciFunction {
  readonly bdf: string;
  readonly kind: 'vfio' | 'uio';
  readConfig(offset: number, length: number): Uint8Array;
  writeConfig(offset: number, bytes: Uint8Array): void;
  /** The BAR's size in bytes; 0 when it does not exist. */
  barSize(bar: number): number;
  /** Maps a memory BAR (owned by the PciFunction: unmapped by close()). */
  mapBar(bar: number): Mapping;
  /**
   * Only for a function whose registers are not memory (a device model in tests): the transport
   * then uses these windows and maps no BAR. Real functions leave it out (Atomics on the mapping).
   */
  registers?(region: VirtioPciRegion): RegisterWindow;
  /** DMA-able memory of `bytes` (the uio route gives at most one 2 MiB hugepage). */
  allocateDma(bytes: number): DmaMemory;
  /** Interrupts: MSI-X vector 0 when `msixVectors` > 0 and supported, else INTx; null when unavailable. */
  enableInterrupts(msixVectors: number): InterruptSource | null;
  close(): void;
}

const SYSFS_PCI = '/sys/bus/pci/devices';
/** IOVA of the driver's memory under VFIO: above 4 GiB, clear of the x86 MSI window (0xfee00000). */
export const VFIO_DMA_IOVA = 0x1_0000_0000n;

function readHexFile(path: string): number {
  return Number.parseInt(readFileSync(path, 'utf8').trim(), 16);
}

/** The kernel driver bound to `bdf` ('vfio-pci', 'uio_pci_generic', 'virtio-pci', ...) or null. */
export function boundDriver(bdf: string): string | null {
  try {
    return basename(readlinkSync(`${SYSFS_PCI}/${bdf}/driver`));
  } catch {
    return null;
  }
}

/** Every virtio-crypto PCI function (vendor 0x1af4, device 0x1054), sorted by address. */
export function findVirtioCryptoFunctions(): string[] {
  let entries: string[];
  try {
    entries = readdirSync(SYSFS_PCI);
  } catch {
    return [];
  }
  return entries
    .filter((bdf) => {
      try {
        return readHexFile(`${SYSFS_PCI}/${bdf}/vendor`) === VIRTIO_PCI_VENDOR_ID && readHexFile(`${SYSFS_PCI}/${bdf}/device`) === VIRTIO_PCI_CRYPTO_DEVICE_ID;
      } catch {
        return false;
      }
    })
    .sort();
}

/** The shell commands that hand `bdf` from the kernel to user space (for error messages and docs). */
export function bindHint(bdf: string, driver: 'vfio-pci' | 'uio_pci_generic' = 'vfio-pci'): string {
  return `echo ${bdf} > /sys/bus/pci/devices/${bdf}/driver/unbind; echo ${driver} > /sys/bus/pci/devices/${bdf}/driver_override; echo ${bdf} > /sys/bus/pci/drivers/${driver}/bind`;
}

/** Opens `bdf` through whichever user-space driver it is bound to. */
export function openPciFunction(bdf: string): PciFunction {
  let vendor: number;
  let device: number;
  try {
    vendor = readHexFile(`${SYSFS_PCI}/${bdf}/vendor`);
    device = readHexFile(`${SYSFS_PCI}/${bdf}/device`);
  } catch {
    throw new PciError(`no PCI device ${bdf} (ls /sys/bus/pci/devices)`);
  }
  if (vendor !== VIRTIO_PCI_VENDOR_ID || device !== VIRTIO_PCI_CRYPTO_DEVICE_ID) {
    throw new PciError(`${bdf} is not a virtio-crypto device (vendor 0x${vendor.toString(16)}, device 0x${device.toString(16)}; expected 0x1af4:0x1054)`);
  }
  const driver = boundDriver(bdf);
  if (driver === 'vfio-pci') return VfioPciFunction.open(bdf);
  if (driver === 'uio_pci_generic') return UioPciFunction.open(bdf);
  if (driver === null) throw new PciError(`${bdf} is bound to no driver: bind it to vfio-pci (with an IOMMU) or uio_pci_generic: ${bindHint(bdf).split('; ').slice(1).join('; ')}`);
  throw new PciError(`${bdf} is bound to the kernel's ${driver} driver: hand it to user space first: ${bindHint(bdf)} (or uio_pci_generic without an IOMMU)`);
}

class VfioPciFunction implements PciFunction {
  readonly kind = 'vfio';
  readonly #dev: VfioDevice;
  readonly #config: VfioRegion;
  readonly #bars = new Map<number, VfioRegion | null>();
  readonly #mappings: Mapping[] = [];
  #irq: { fd: number; index: number } | undefined;
  #nextIova = VFIO_DMA_IOVA;

  private constructor(readonly bdf: string, dev: VfioDevice) {
    this.#dev = dev;
    this.#config = dev.regionInfo(VFIO_PCI_CONFIG_REGION_INDEX);
  }

  static open(bdf: string): VfioPciFunction {
    const dev = VfioDevice.open(bdf);
    try {
      return new VfioPciFunction(bdf, dev);
    } catch (err) {
      dev.close();
      throw err;
    }
  }

  readConfig(offset: number, length: number): Uint8Array {
    return this.#dev.read(this.#config, offset, length);
  }

  writeConfig(offset: number, bytes: Uint8Array): void {
    this.#dev.write(this.#config, offset, bytes);
  }

  #bar(bar: number): VfioRegion | null {
    if (!this.#bars.has(bar)) {
      let region: VfioRegion | null = null;
      try {
        region = this.#dev.regionInfo(bar);
      } catch {
        region = null;
      }
      this.#bars.set(bar, region !== null && region.size > 0 ? region : null);
    }
    return this.#bars.get(bar) ?? null;
  }

  barSize(bar: number): number {
    return bar >= 0 && bar <= 5 ? (this.#bar(bar)?.size ?? 0) : 0;
  }

  mapBar(bar: number): Mapping {
    const region = this.#bar(bar);
    if (region === null) throw new PciError(`${this.bdf}: BAR${bar} does not exist`);
    const mapping = this.#dev.mapRegion(region);
    this.#mappings.push(mapping);
    return mapping;
  }

  allocateDma(bytes: number): DmaMemory {
    const length = Math.ceil(bytes / 4096) * 4096;
    const mapping = allocDmaMemory(length);
    this.#mappings.push(mapping);
    const busAddress = this.#nextIova;
    this.#dev.mapDma(mapping.address, busAddress, length);
    this.#nextIova += BigInt(Math.ceil(length / 0x20_0000) * 0x20_0000);
    return { mapping, busAddress };
  }

  enableInterrupts(msixVectors: number): InterruptSource | null {
    const fd = createEventFd();
    const useMsix = msixVectors > 0 && this.#dev.irqCount(VFIO_PCI_IRQ_INDEX.MSIX) > 0;
    const index = useMsix ? VFIO_PCI_IRQ_INDEX.MSIX : VFIO_PCI_IRQ_INDEX.INTX;
    if (!useMsix && this.#dev.irqCount(VFIO_PCI_IRQ_INDEX.INTX) === 0) {
      closeFd(fd);
      return null;
    }
    try {
      this.#dev.setIrqEventFds(index, 0, [fd]);
    } catch (err) {
      closeFd(fd);
      throw err;
    }
    this.#irq = { fd, index };
    const dev = this.#dev;
    return {
      kind: useMsix ? 'msix' : 'intx',
      fd,
      consume: () => void drainEventFd(fd),
      rearm: useMsix ? () => undefined : () => dev.unmaskIntx(),
    };
  }

  close(): void {
    if (this.#irq !== undefined) {
      this.#dev.disableIrqs(this.#irq.index);
      closeFd(this.#irq.fd);
      this.#irq = undefined;
    }
    // DMA is unmapped (dev.close) before the memory behind it is released.
    this.#dev.close();
    for (const m of this.#mappings.splice(0)) m.unmap();
  }
}

class UioPciFunction implements PciFunction {
  readonly kind = 'uio';
  readonly #configFd: number;
  readonly #fds: number[] = [];
  readonly #mappings: Mapping[] = [];

  private constructor(readonly bdf: string, configFd: number) {
    this.#configFd = configFd;
  }

  static open(bdf: string): UioPciFunction {
    const fd = openFile(`${SYSFS_PCI}/${bdf}/config`, O_RDWR);
    if (!tryLockExclusive(fd)) {
      closeFd(fd);
      throw new PciError(`${bdf} is busy (another process drives it)`);
    }
    return new UioPciFunction(bdf, fd);
  }

  readConfig(offset: number, length: number): Uint8Array {
    return preadExact(this.#configFd, length, offset, 'pread(PCI config)');
  }

  writeConfig(offset: number, bytes: Uint8Array): void {
    pwriteExact(this.#configFd, bytes, offset, 'pwrite(PCI config)');
  }

  barSize(bar: number): number {
    if (bar < 0 || bar > 5) return 0;
    try {
      return statSync(`${SYSFS_PCI}/${this.bdf}/resource${bar}`).size;
    } catch {
      return 0;
    }
  }

  mapBar(bar: number): Mapping {
    const size = this.barSize(bar);
    if (size === 0) throw new PciError(`${this.bdf}: BAR${bar} does not exist or is not a memory BAR`);
    const fd = openFile(`${SYSFS_PCI}/${this.bdf}/resource${bar}`, O_RDWR);
    try {
      const mapping = mapShared(fd, size, 0);
      this.#mappings.push(mapping);
      return mapping;
    } finally {
      closeFd(fd); // the mapping outlives the fd
    }
  }

  allocateDma(bytes: number): DmaMemory {
    if (bytes > HUGE_PAGE_BYTES) throw new PciError(`without an IOMMU the driver's DMA memory is one 2 MiB hugepage (asked for ${bytes} bytes)`);
    const mapping = allocDmaMemory(HUGE_PAGE_BYTES, { hugetlb: true });
    this.#mappings.push(mapping);
    return { mapping, busAddress: physicalAddressOf(mapping.address) };
  }

  enableInterrupts(): InterruptSource | null {
    let uio: string | undefined;
    try {
      uio = readdirSync(`${SYSFS_PCI}/${this.bdf}/uio`).find((n) => /^uio\d+$/.test(n));
    } catch {
      uio = undefined;
    }
    if (uio === undefined) return null;
    const fd = openFile(`/dev/${uio}`, O_RDWR);
    this.#fds.push(fd);
    // uio_pci_generic masks INTx (the command register's Interrupt Disable bit) in its handler and
    // has no irqcontrol: user space re-enables the line by clearing that bit again
    // (Documentation/driver-api/uio-howto.rst, "Writing a driver in user space" for uio_pci_generic).
    const unmask = () => {
      const command = this.readConfig(PCI_CFG.COMMAND, 2);
      const value = (command[0]! | (command[1]! << 8)) & ~PCI_COMMAND_INTX_DISABLE;
      this.writeConfig(PCI_CFG.COMMAND, new Uint8Array([value & 0xff, value >> 8]));
    };
    unmask();
    return {
      kind: 'intx',
      fd,
      consume: () => {
        try {
          readRecord(fd, 4, `read(/dev/${uio})`); // the interrupt count; consumes the readiness
        } catch {
          // A spurious wake-up: nothing to consume.
        }
      },
      rearm: unmask,
    };
  }

  close(): void {
    for (const m of this.#mappings.splice(0)) m.unmap();
    for (const fd of this.#fds.splice(0)) closeFd(fd);
    closeFd(this.#configFd);
  }
}

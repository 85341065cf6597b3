/**
 * VFIO (Linux Documentation/driver-api/vfio.rst, include/uapi/linux/vfio.h): a PCI device bound
 * to vfio-pci, driven from user space behind an IOMMU (type1 v2).
 *
 *   container = open /dev/vfio/vfio; group = open /dev/vfio/<iommu group>;
 *   GROUP_GET_STATUS (viable) -> GROUP_SET_CONTAINER -> SET_IOMMU(TYPE1v2) -> GROUP_GET_DEVICE_FD;
 *   DEVICE_GET_REGION_INFO (config space, BARs) -> pread/pwrite/mmap at the region's offset;
 *   IOMMU_MAP_DMA (our memory at an IOVA of our choosing); DEVICE_SET_IRQS (eventfd per vector).
 *
 * Ownership: a VfioDevice owns its container, group and device fds and every DMA mapping it made;
 * close() unmaps DMA and closes them (the kernel resets a vfio-pci device when its fd is released).
 * A group can be open in one process at a time: a second opener gets EBUSY, reported as "busy".
 */
import { readlinkSync } from 'node:fs';
import { basename } from 'node:path';
import { native, check, lastErrno, errnoValues, SysError } from './libc.js';
import { openFile, preadExact, pwriteExact, O_RDWR } from './device-file.js';
import { closeFd } from './fd.js';
import { mapShared, type Mapping } from './memfd.js';

// _IO(';', 100 + n): VFIO_TYPE ';' = 0x3b, VFIO_BASE 100.
const VFIO_IO = (n: number): number => (0x3b << 8) | (100 + n);
const VFIO_GET_API_VERSION = VFIO_IO(0);
const VFIO_CHECK_EXTENSION = VFIO_IO(1);
const VFIO_SET_IOMMU = VFIO_IO(2);
const VFIO_GROUP_GET_STATUS = VFIO_IO(3);
const VFIO_GROUP_SET_CONTAINER = VFIO_IO(4);
const VFIO_GROUP_GET_DEVICE_FD = VFIO_IO(6);
const VFIO_DEVICE_GET_REGION_INFO = VFIO_IO(8);
const VFIO_DEVICE_GET_IRQ_INFO = VFIO_IO(9);
const VFIO_DEVICE_SET_IRQS = VFIO_IO(10);
const VFIO_IOMMU_MAP_DMA = VFIO_IO(13);
const VFIO_IOMMU_UNMAP_DMA = VFIO_IO(14);
const VFIO_API_VERSION = 0;
const VFIO_TYPE1v2_IOMMU = 3;
const VFIO_GROUP_FLAGS_VIABLE = 1;
const VFIO_DMA_MAP_FLAG_READ = 1;
const VFIO_DMA_MAP_FLAG_WRITE = 2;
export const VFIO_REGION_INFO_FLAG = { READ: 1, WRITE: 2, MMAP: 4 } as const;
/** vfio-pci region indexes: BAR0..BAR5 = 0..5. */
export const VFIO_PCI_CONFIG_REGION_INDEX = 7;
export const VFIO_PCI_IRQ_INDEX = { INTX: 0, MSI: 1, MSIX: 2 } as const;
const VFIO_IRQ_SET_DATA_NONE = 1 << 0;
const VFIO_IRQ_SET_DATA_EVENTFD = 1 << 2;
const VFIO_IRQ_SET_ACTION_UNMASK = 1 << 4;
const VFIO_IRQ_SET_ACTION_TRIGGER = 1 << 5;

export interface VfioRegion {
  readonly index: number;
  readonly flags: number;
  readonly size: number;
  /** Offset of the region in the device fd (for pread/pwrite/mmap). */
  readonly offset: number;
}

function ioctlPtr(fd: number, request: number, arg: Buffer, what: string): number {
  return check(what, native.ioctl(fd, request, 'void *', arg) as number);
}

function ioctlInt(fd: number, request: number, arg: number, what: string): number {
  return check(what, native.ioctl(fd, request, 'int', arg) as number);
}

/** The IOMMU group number of a PCI device, or null when it has none (no IOMMU). */
export function iommuGroupOf(bdf: string): string | null {
  try {
    return basename(readlinkSync(`/sys/bus/pci/devices/${bdf}/iommu_group`));
  } catch {
    return null;
  }
}

export class VfioDevice {
  readonly bdf: string;
  readonly #container: number;
  readonly #group: number;
  readonly #device: number;
  readonly #dma: { iova: bigint; size: bigint }[] = [];
  #closed = false;

  private constructor(bdf: string, container: number, group: number, device: number) {
    this.bdf = bdf;
    this.#container = container;
    this.#group = group;
    this.#device = device;
  }

  /** Opens the device `bdf` (bound to vfio-pci) in its own container. */
  static open(bdf: string): VfioDevice {
    const groupId = iommuGroupOf(bdf);
    if (groupId === null) throw new SysError(`vfio: ${bdf} has no IOMMU group (no IOMMU: boot with intel_iommu=on on a machine with one)`, errnoValues.ENODEV);
    const fds: number[] = [];
    try {
      const container = openFile('/dev/vfio/vfio', O_RDWR);
      fds.push(container);
      if ((native.ioctl(container, VFIO_GET_API_VERSION) as number) !== VFIO_API_VERSION) throw new SysError('vfio: unknown API version', errnoValues.EINVAL);
      if ((native.ioctl(container, VFIO_CHECK_EXTENSION, 'int', VFIO_TYPE1v2_IOMMU) as number) <= 0) {
        throw new SysError('vfio: the type1 v2 IOMMU is not supported (load vfio_iommu_type1)', errnoValues.ENODEV);
      }
      let group: number;
      try {
        group = openFile(`/dev/vfio/${groupId}`, O_RDWR);
      } catch (err) {
        if (err instanceof SysError && err.errno === errnoValues.EBUSY) {
          throw new SysError(`vfio: ${bdf} is busy (its IOMMU group ${groupId} is open in another process)`, errnoValues.EBUSY);
        }
        throw err;
      }
      fds.push(group);
      const status = Buffer.alloc(8);
      status.writeUInt32LE(8, 0);
      ioctlPtr(group, VFIO_GROUP_GET_STATUS, status, 'VFIO_GROUP_GET_STATUS');
      if ((status.readUInt32LE(4) & VFIO_GROUP_FLAGS_VIABLE) === 0) {
        throw new SysError(`vfio: IOMMU group ${groupId} is not viable (bind every device in it to vfio-pci)`, errnoValues.EINVAL);
      }
      const containerArg = Buffer.alloc(4);
      containerArg.writeInt32LE(container, 0);
      ioctlPtr(group, VFIO_GROUP_SET_CONTAINER, containerArg, 'VFIO_GROUP_SET_CONTAINER');
      ioctlInt(container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU, 'VFIO_SET_IOMMU');
      const name = Buffer.from(`${bdf}\0`, 'latin1');
      const device = ioctlPtr(group, VFIO_GROUP_GET_DEVICE_FD, name, `VFIO_GROUP_GET_DEVICE_FD(${bdf})`);
      return new VfioDevice(bdf, container, group, device);
    } catch (err) {
      for (const fd of fds.reverse()) closeFd(fd);
      throw err;
    }
  }

  regionInfo(index: number): VfioRegion {
    const info = Buffer.alloc(32);
    info.writeUInt32LE(32, 0);
    info.writeUInt32LE(index, 8);
    ioctlPtr(this.#device, VFIO_DEVICE_GET_REGION_INFO, info, `VFIO_DEVICE_GET_REGION_INFO(${index})`);
    const size = info.readBigUInt64LE(16);
    const offset = info.readBigUInt64LE(24);
    if (size > BigInt(Number.MAX_SAFE_INTEGER) || offset > BigInt(Number.MAX_SAFE_INTEGER)) throw new SysError('vfio: region beyond 2^53', errnoValues.EINVAL);
    return { index, flags: info.readUInt32LE(4), size: Number(size), offset: Number(offset) };
  }

  read(region: VfioRegion, offset: number, length: number): Uint8Array {
    if (offset < 0 || offset + length > region.size) throw new RangeError(`vfio: read [${offset}, +${length}) outside region ${region.index} (${region.size} bytes)`);
    return preadExact(this.#device, length, region.offset + offset, `pread(vfio region ${region.index})`);
  }

  write(region: VfioRegion, offset: number, bytes: Uint8Array): void {
    if (offset < 0 || offset + bytes.length > region.size) throw new RangeError(`vfio: write [${offset}, +${bytes.length}) outside region ${region.index}`);
    pwriteExact(this.#device, bytes, region.offset + offset, `pwrite(vfio region ${region.index})`);
  }

  /** mmap of a whole region (a BAR that VFIO allows to map). The caller owns the Mapping. */
  mapRegion(region: VfioRegion): Mapping {
    if ((region.flags & VFIO_REGION_INFO_FLAG.MMAP) === 0) throw new SysError(`vfio: region ${region.index} cannot be mmapped`, errnoValues.EINVAL);
    return mapShared(this.#device, region.size, region.offset);
  }

  /** Number of interrupt vectors of an IRQ index (0 when the device has none of that kind). */
  irqCount(index: number): number {
    const info = Buffer.alloc(16);
    info.writeUInt32LE(16, 0);
    info.writeUInt32LE(index, 8);
    try {
      ioctlPtr(this.#device, VFIO_DEVICE_GET_IRQ_INFO, info, 'VFIO_DEVICE_GET_IRQ_INFO');
    } catch {
      return 0;
    }
    return info.readUInt32LE(12);
  }

  /** Routes vectors start.. of IRQ `index` to the eventfds (-1 = none). */
  setIrqEventFds(index: number, start: number, eventFds: readonly number[]): void {
    const buf = Buffer.alloc(20 + 4 * eventFds.length);
    buf.writeUInt32LE(buf.length, 0);
    buf.writeUInt32LE(VFIO_IRQ_SET_DATA_EVENTFD | VFIO_IRQ_SET_ACTION_TRIGGER, 4);
    buf.writeUInt32LE(index, 8);
    buf.writeUInt32LE(start, 12);
    buf.writeUInt32LE(eventFds.length, 16);
    eventFds.forEach((fd, i) => buf.writeInt32LE(fd, 20 + 4 * i));
    ioctlPtr(this.#device, VFIO_DEVICE_SET_IRQS, buf, `VFIO_DEVICE_SET_IRQS(index ${index})`);
  }

  /** Disables every vector of IRQ `index` (count 0, DATA_NONE | ACTION_TRIGGER). */
  disableIrqs(index: number): void {
    const buf = Buffer.alloc(20);
    buf.writeUInt32LE(20, 0);
    buf.writeUInt32LE(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_TRIGGER, 4);
    buf.writeUInt32LE(index, 8);
    native.ioctl(this.#device, VFIO_DEVICE_SET_IRQS, 'void *', buf);
  }

  /** INTx is masked by VFIO when it fires: unmask it after the device's cause has been cleared. */
  unmaskIntx(): void {
    const buf = Buffer.alloc(20);
    buf.writeUInt32LE(20, 0);
    buf.writeUInt32LE(VFIO_IRQ_SET_DATA_NONE | VFIO_IRQ_SET_ACTION_UNMASK, 4);
    buf.writeUInt32LE(VFIO_PCI_IRQ_INDEX.INTX, 8);
    buf.writeUInt32LE(0, 12);
    buf.writeUInt32LE(1, 16);
    ioctlPtr(this.#device, VFIO_DEVICE_SET_IRQS, buf, 'VFIO_DEVICE_SET_IRQS(unmask INTx)');
  }

  /** Maps [vaddr, vaddr+size) of this process at `iova` for device reads and writes. */
  mapDma(vaddr: bigint, iova: bigint, size: number): void {
    const buf = Buffer.alloc(32);
    buf.writeUInt32LE(32, 0);
    buf.writeUInt32LE(VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE, 4);
    buf.writeBigUInt64LE(vaddr, 8);
    buf.writeBigUInt64LE(iova, 16);
    buf.writeBigUInt64LE(BigInt(size), 24);
    ioctlPtr(this.#container, VFIO_IOMMU_MAP_DMA, buf, 'VFIO_IOMMU_MAP_DMA');
    this.#dma.push({ iova, size: BigInt(size) });
  }

  /** Unmaps DMA and closes the device, group and container fds. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const { iova, size } of this.#dma.splice(0)) {
      const buf = Buffer.alloc(24);
      buf.writeUInt32LE(24, 0);
      buf.writeBigUInt64LE(iova, 8);
      buf.writeBigUInt64LE(size, 16);
      if ((native.ioctl(this.#container, VFIO_IOMMU_UNMAP_DMA, 'void *', buf) as number) < 0) {
        // The container's close below drops every mapping anyway.
        void lastErrno();
      }
    }
    closeFd(this.#device);
    closeFd(this.#group);
    closeFd(this.#container);
  }
}

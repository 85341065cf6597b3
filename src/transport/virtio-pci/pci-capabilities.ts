/**
 * The virtio structures a modern virtio-pci device announces in its PCI capability list
 * (VIRTIO 1.2 §4.1.4), parsed from the bytes of its configuration space and checked against the
 * BARs they point into. Pure: the caller reads the bytes (VFIO config region or sysfs `config`).
 *
 * Untrusted input: a capability list that loops, leaves the capability area, is too short for its
 * type, names a BAR that does not exist, or points outside its BAR is a typed error, never a wrong
 * mapping. §4.1.4: "the driver SHOULD use the first instance" of each type it can use, and MUST ignore
 * capabilities of unknown types and with a BAR value it does not know.
 */
import {
  PCI_CAP_ID_MSIX,
  PCI_CAP_ID_VNDR,
  PCI_CFG,
  PCI_STATUS_CAP_LIST,
  VIRTIO_PCI_CAP,
  VIRTIO_PCI_COMMON_CFG_MIN_LENGTH,
} from '../../spec/virtio-pci.js';

export class PciCapabilityError extends Error {
  override readonly name = 'PciCapabilityError';
}

/** One structure: `length` bytes at `offset` of BAR `bar`. */
export interface VirtioPciRegion {
  readonly bar: number;
  readonly offset: number;
  readonly length: number;
}

export interface VirtioPciLayout {
  readonly vendorId: number;
  readonly deviceId: number;
  readonly common: VirtioPciRegion;
  readonly notify: VirtioPciRegion & { readonly notifyOffMultiplier: number };
  readonly isr: VirtioPciRegion;
  readonly device: VirtioPciRegion;
  /** MSI-X table size (number of vectors), or 0 when the device has no MSI-X capability. */
  readonly msixVectors: number;
}

/** The first 64 bytes are the standard header; capabilities live in 0x40..0xff (PCI 3.0 §6.7). */
const CAP_AREA_START = 0x40;
const CONFIG_SPACE_BYTES = 256;
/** At most this many capabilities fit in 192 bytes (each is at least 4 bytes and 4-aligned). */
const MAX_CAPS = 48;

/**
 * Parses `config` (at least the 256-byte PCI configuration space) and checks every structure the
 * driver will use against `barSize(bar)` (the BAR's length in bytes, 0 when it does not exist).
 */
export function parseVirtioPciCapabilities(config: Uint8Array, barSize: (bar: number) => number): VirtioPciLayout {
  if (config.length < CONFIG_SPACE_BYTES) throw new PciCapabilityError(`PCI config space is ${config.length} bytes (need ${CONFIG_SPACE_BYTES})`);
  const dv = new DataView(config.buffer, config.byteOffset, config.byteLength);
  const vendorId = dv.getUint16(PCI_CFG.VENDOR_ID, true);
  const deviceId = dv.getUint16(PCI_CFG.DEVICE_ID, true);
  if ((dv.getUint16(PCI_CFG.STATUS, true) & PCI_STATUS_CAP_LIST) === 0) throw new PciCapabilityError('the device has no capability list');
  const found = new Map<number, VirtioPciRegion & { notifyOffMultiplier?: number }>();
  let msixVectors = 0;
  const seen = new Set<number>();
  let ptr = config[PCI_CFG.CAPABILITIES_POINTER]! & 0xfc;
  while (ptr !== 0) {
    if (ptr < CAP_AREA_START || ptr + 4 > CONFIG_SPACE_BYTES) throw new PciCapabilityError(`capability pointer 0x${ptr.toString(16)} outside 0x40..0xff`);
    if (seen.has(ptr) || seen.size >= MAX_CAPS) throw new PciCapabilityError(`the capability list loops (at 0x${ptr.toString(16)})`);
    seen.add(ptr);
    const id = config[ptr]!;
    const next = config[ptr + 1]! & 0xfc;
    if (id === PCI_CAP_ID_MSIX) {
      // PCI 3.0 §6.8.2: Message Control bits 10:0 = table size - 1.
      msixVectors = (dv.getUint16(ptr + 2, true) & 0x7ff) + 1;
    } else if (id === PCI_CAP_ID_VNDR) {
      // §4.1.4 struct virtio_pci_cap: cap_vndr, cap_next, cap_len, cfg_type, bar, id, padding[2], offset le32, length le32.
      const capLen = config[ptr + 2]!;
      const cfgType = config[ptr + 3]!;
      if (capLen < 16 || ptr + capLen > CONFIG_SPACE_BYTES) throw new PciCapabilityError(`virtio capability at 0x${ptr.toString(16)}: cap_len ${capLen} out of range`);
      const bar = config[ptr + 4]!;
      const isWanted = cfgType === VIRTIO_PCI_CAP.COMMON_CFG || cfgType === VIRTIO_PCI_CAP.NOTIFY_CFG || cfgType === VIRTIO_PCI_CAP.ISR_CFG || cfgType === VIRTIO_PCI_CAP.DEVICE_CFG;
      // §4.1.4: ignore unknown types and BAR values 0x6..0xff (reserved); use the first of each type.
      if (isWanted && bar <= 5 && !found.has(cfgType)) {
        const offset = dv.getUint32(ptr + 8, true);
        const length = dv.getUint32(ptr + 12, true);
        const size = barSize(bar);
        const what = `virtio capability type ${cfgType} at 0x${ptr.toString(16)}`;
        if (size === 0) throw new PciCapabilityError(`${what} names BAR${bar}, which does not exist`);
        if (length === 0 || offset + length > size) throw new PciCapabilityError(`${what}: [0x${offset.toString(16)}, +0x${length.toString(16)}) is outside BAR${bar} (${size} bytes)`);
        if (offset % 4 !== 0) throw new PciCapabilityError(`${what}: offset 0x${offset.toString(16)} is not 4-byte aligned`);
        if (cfgType === VIRTIO_PCI_CAP.NOTIFY_CFG) {
          // §4.1.4.4 struct virtio_pci_notify_cap: notify_off_multiplier le32 after the cap.
          if (capLen < 20) throw new PciCapabilityError(`${what}: notify capability of ${capLen} bytes (need 20)`);
          found.set(cfgType, { bar, offset, length, notifyOffMultiplier: dv.getUint32(ptr + 16, true) });
        } else {
          found.set(cfgType, { bar, offset, length });
        }
      }
    }
    ptr = next;
  }
  const need = (type: number, name: string): VirtioPciRegion & { notifyOffMultiplier?: number } => {
    const region = found.get(type);
    if (region === undefined) throw new PciCapabilityError(`the device has no usable ${name} capability (not a modern virtio-pci device?)`);
    return region;
  };
  const common = need(VIRTIO_PCI_CAP.COMMON_CFG, 'common configuration');
  if (common.length < VIRTIO_PCI_COMMON_CFG_MIN_LENGTH) throw new PciCapabilityError(`common configuration of ${common.length} bytes (need ${VIRTIO_PCI_COMMON_CFG_MIN_LENGTH})`);
  const notify = need(VIRTIO_PCI_CAP.NOTIFY_CFG, 'notification');
  const isr = need(VIRTIO_PCI_CAP.ISR_CFG, 'ISR status');
  const device = need(VIRTIO_PCI_CAP.DEVICE_CFG, 'device configuration');
  return {
    vendorId,
    deviceId,
    common,
    notify: { bar: notify.bar, offset: notify.offset, length: notify.length, notifyOffMultiplier: notify.notifyOffMultiplier ?? 0 },
    isr,
    device,
    msixVectors,
  };
}

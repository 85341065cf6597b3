/**
 * Virtio over PCI (VIRTIO 1.2 §4.1), from the specification text only. No logic.
 */

/** §4.1.1: the PCI vendor ID of every virtio device. */
export const VIRTIO_PCI_VENDOR_ID = 0x1af4;
/** §4.1.2.1: modern device ID = 0x1040 + virtio device ID (crypto: 20). */
export const VIRTIO_PCI_DEVICE_ID_BASE = 0x1040;
export const VIRTIO_PCI_CRYPTO_DEVICE_ID = 0x1040 + 20;

/** §4.1.4: cfg_type of struct virtio_pci_cap. */
export const VIRTIO_PCI_CAP = {
  COMMON_CFG: 1,
  NOTIFY_CFG: 2,
  ISR_CFG: 3,
  DEVICE_CFG: 4,
  PCI_CFG: 5,
  SHARED_MEMORY_CFG: 8,
  VENDOR_CFG: 9,
} as const;

/** PCI Local Bus 3.0: capability IDs and configuration-space registers used here. */
export const PCI_CAP_ID_VNDR = 0x09;
export const PCI_CAP_ID_MSIX = 0x11;
export const PCI_CFG = {
  VENDOR_ID: 0x00,
  DEVICE_ID: 0x02,
  COMMAND: 0x04,
  STATUS: 0x06,
  CAPABILITIES_POINTER: 0x34,
} as const;
export const PCI_COMMAND_MEMORY = 0x2;
export const PCI_COMMAND_MASTER = 0x4;
export const PCI_COMMAND_INTX_DISABLE = 0x400;
export const PCI_STATUS_CAP_LIST = 0x10;

/** §4.1.4.3 struct virtio_pci_common_cfg: field offsets. */
export const VIRTIO_PCI_COMMON = {
  device_feature_select: 0x00, // le32
  device_feature: 0x04, // le32, RO
  driver_feature_select: 0x08, // le32
  driver_feature: 0x0c, // le32
  config_msix_vector: 0x10, // le16
  num_queues: 0x12, // le16, RO
  device_status: 0x14, // u8
  config_generation: 0x15, // u8, RO
  queue_select: 0x16, // le16
  queue_size: 0x18, // le16
  queue_msix_vector: 0x1a, // le16
  queue_enable: 0x1c, // le16
  queue_notify_off: 0x1e, // le16, RO
  queue_desc: 0x20, // le64
  queue_driver: 0x28, // le64
  queue_device: 0x30, // le64
} as const;
/** The common configuration a driver of the 1.0 layout needs (through queue_device). */
export const VIRTIO_PCI_COMMON_CFG_MIN_LENGTH = 0x38;
/** §4.1.5.1.2: "no vector" for config_msix_vector / queue_msix_vector. */
export const VIRTIO_MSI_NO_VECTOR = 0xffff;
/** §4.1.4.5: ISR status bits. */
export const VIRTIO_PCI_ISR_QUEUE = 0x1;
export const VIRTIO_PCI_ISR_CONFIG = 0x2;

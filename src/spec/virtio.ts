/**
 * Generic virtio constants, from the VIRTIO 1.2 specification text only. No logic.
 *
 * Split virtqueue flags: VIRTIO 1.2 §2.7.5 (descriptor table), §2.7.6 (available ring),
 * §2.7.8 (used ring). Feature bits: §6 ("Reserved Feature Bits").
 * Device status: §2.1. Device IDs: §5.
 */

// --- §2.7.5 struct virtq_desc.flags -------------------------------------------------------------

/** This marks a buffer as continuing via the `next` field. */
export const VIRTQ_DESC_F_NEXT = 1;
/** This marks a buffer as device write-only (otherwise device read-only). */
export const VIRTQ_DESC_F_WRITE = 2;
/** This means the buffer contains a list of buffer descriptors (§2.7.5.3). */
export const VIRTQ_DESC_F_INDIRECT = 4;

// --- §2.7.6 struct virtq_avail.flags / §2.7.8 struct virtq_used.flags ----------------------------

/** Driver -> device: do not interrupt me (ignored by the device when EVENT_IDX is negotiated). */
export const VIRTQ_AVAIL_F_NO_INTERRUPT = 1;
/** Device -> driver: do not kick me (ignored by the driver when EVENT_IDX is negotiated). */
export const VIRTQ_USED_F_NO_NOTIFY = 1;

// --- §6 Reserved feature bits (bit numbers; the feature word is 64-bit) -----------------------

/** Legacy (§6.3 "Legacy Interface: Reserved Feature Bits"). */
export const VIRTIO_F_NOTIFY_ON_EMPTY = 24;
/** Legacy (§6.3). */
export const VIRTIO_F_ANY_LAYOUT = 27;
/** The spec calls it VIRTIO_F_INDIRECT_DESC; Linux and QEMU VIRTIO_RING_F_INDIRECT_DESC. */
export const VIRTIO_RING_F_INDIRECT_DESC = 28;
export const VIRTIO_F_INDIRECT_DESC = VIRTIO_RING_F_INDIRECT_DESC;
/** The spec calls it VIRTIO_F_EVENT_IDX; Linux and QEMU VIRTIO_RING_F_EVENT_IDX. */
export const VIRTIO_RING_F_EVENT_IDX = 29;
export const VIRTIO_F_EVENT_IDX = VIRTIO_RING_F_EVENT_IDX;
export const VIRTIO_F_VERSION_1 = 32;
export const VIRTIO_F_ACCESS_PLATFORM = 33;
export const VIRTIO_F_RING_PACKED = 34;
export const VIRTIO_F_IN_ORDER = 35;
export const VIRTIO_F_ORDER_PLATFORM = 36;
export const VIRTIO_F_SR_IOV = 37;
export const VIRTIO_F_NOTIFICATION_DATA = 38;
export const VIRTIO_F_NOTIF_CONFIG_DATA = 39;
export const VIRTIO_F_RING_RESET = 40;

// --- §2.1 Device Status Field -------------------------------------------------------------------

export const VIRTIO_CONFIG_S_ACKNOWLEDGE = 1;
export const VIRTIO_CONFIG_S_DRIVER = 2;
export const VIRTIO_CONFIG_S_DRIVER_OK = 4;
export const VIRTIO_CONFIG_S_FEATURES_OK = 8;
export const VIRTIO_CONFIG_S_NEEDS_RESET = 64;
export const VIRTIO_CONFIG_S_FAILED = 128;

/** The same status bits under the spec's own names (§2.1). */
export const VIRTIO_STATUS = {
  ACKNOWLEDGE: VIRTIO_CONFIG_S_ACKNOWLEDGE,
  DRIVER: VIRTIO_CONFIG_S_DRIVER,
  DRIVER_OK: VIRTIO_CONFIG_S_DRIVER_OK,
  FEATURES_OK: VIRTIO_CONFIG_S_FEATURES_OK,
  DEVICE_NEEDS_RESET: VIRTIO_CONFIG_S_NEEDS_RESET,
  FAILED: VIRTIO_CONFIG_S_FAILED,
} as const;

// --- §5 Device Types ----------------------------------------------------------------------------

export const VIRTIO_ID_CRYPTO = 20;

// --- §2.7 split virtqueue sizes -------------------------------------------------------------------

/** §2.7: "Queue Size ... is always a power of 2" for split virtqueues; the maximum is 32768. */
export const VIRTQ_MAX_SIZE = 32768;
/** §2.7.5: sizeof(struct virtq_desc). */
export const VIRTQ_DESC_SIZE = 16;
/** §2.7.8: sizeof(struct virtq_used_elem). */
export const VIRTQ_USED_ELEM_SIZE = 8;

/**
 * The ring feature bits every device side of this project offers (the embedded device's
 * transport and the vhost-user back-end's GET_FEATURES), defined once: VIRTIO_F_VERSION_1 (§6),
 * VIRTIO_F_INDIRECT_DESC (§2.7.5.3; DeviceQueue walks indirect tables) and VIRTIO_F_EVENT_IDX
 * (§2.7.7/§2.7.10; DeviceQueue keeps avail_event and reads used_event). No VIRTIO_CRYPTO_F_* bits:
 * the device serves the fixed-size (legacy) request layouts.
 */
import { VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC } from '../spec/virtio.js';

/** 1 << bit as a u64 feature mask. */
export function featureBit(bit: number): bigint {
  return 1n << BigInt(bit);
}

export const DEVICE_RING_FEATURES = featureBit(VIRTIO_F_VERSION_1) | featureBit(VIRTIO_RING_F_INDIRECT_DESC) | featureBit(VIRTIO_RING_F_EVENT_IDX);

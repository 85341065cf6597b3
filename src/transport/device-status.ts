/**
 * The device status register's rules (VIRTIO 1.2 §2.1, §3.1.1), defined once for every transport:
 * the transports that emulate the device side (in-process, the vhost-user front-end, which has no
 * status register without F_STATUS) compute the new status with it, and the PCI transport checks the
 * driver's writes with it before they reach the real register.
 *
 *  - Writing 0 resets the device.
 *  - §2.1.2: the driver MUST NOT clear a status bit (only a reset does); the device's own
 *    DEVICE_NEEDS_RESET is not the driver's to keep.
 *  - §3.1.1 steps 5-6: FEATURES_OK stays clear when the device does not accept the driver's features.
 *  - §3.1.1 step 8: DRIVER_OK only after FEATURES_OK.
 */
import { VIRTIO_STATUS } from '../spec/virtio.js';

export interface StatusTransition {
  /** The write is a reset (0). */
  readonly reset: boolean;
  /** DRIVER_OK is newly set: the device goes live. */
  readonly activate: boolean;
  /** The status the device holds afterwards. */
  readonly next: number;
}

export class StatusError extends Error {
  override readonly name = 'StatusError';
}

export function statusTransition(previous: number, written: number, featuresAccepted: () => boolean): StatusTransition {
  if (!Number.isInteger(written) || written < 0 || written > 0xff) throw new StatusError(`device status ${written} is not a byte`);
  if (written === 0) return { reset: true, activate: false, next: 0 };
  const kept = previous & ~VIRTIO_STATUS.DEVICE_NEEDS_RESET;
  if ((kept & ~written) !== 0) {
    throw new StatusError(`device status 0x${written.toString(16)} clears bits of 0x${previous.toString(16)} (VIRTIO 1.2 §2.1.2: only a reset clears them)`);
  }
  let next = written | (previous & VIRTIO_STATUS.DEVICE_NEEDS_RESET);
  const added = next & ~previous;
  if ((added & VIRTIO_STATUS.FEATURES_OK) !== 0 && !featuresAccepted()) next &= ~VIRTIO_STATUS.FEATURES_OK;
  const activate = (added & VIRTIO_STATUS.DRIVER_OK) !== 0;
  if (activate && (next & VIRTIO_STATUS.FEATURES_OK) === 0) throw new StatusError('DRIVER_OK without FEATURES_OK (VIRTIO 1.2 §3.1.1)');
  return { reset: false, activate, next };
}

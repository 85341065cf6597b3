/**
 * The contract between the virtqueue layer (which walks descriptor chains in guest memory) and the
 * device model (which serves requests). The device never sees descriptors or addresses: it gets
 * the chain's device-readable and device-writable buffers, already translated and bounds-checked,
 * in chain order.
 *
 * The buffers are live views into guest memory: the driver may change them concurrently
 * (TOCTOU, DPDK CVE-2020-14375). The device therefore copies what it parses (headers) before
 * validating it, gathers source data into its own buffer, and only then writes destinations.
 */

export interface DescriptorChain {
  /** Head descriptor index: the `id` of the used element that completes this chain. */
  readonly head: number;
  /** Device-readable buffers in chain order (VIRTIO 1.2 §2.7.4: all readable before any writable). */
  readonly readable: readonly Uint8Array[];
  /** Device-writable buffers in chain order. */
  readonly writable: readonly Uint8Array[];
  /** Sum of readable buffer lengths (already capped by the queue's max chain bytes). */
  readonly readableLength: number;
  /** Sum of writable buffer lengths. */
  readonly writableLength: number;
}

/** Why a chain (or a whole queue) is unusable. One variant per violation, as rust-vmm's Error. */
export type VirtqueueErrorKind =
  | 'avail-index-jump' // avail.idx moved more than queue size past last_avail_idx (fatal for the queue)
  | 'head-out-of-range' // avail.ring[] entry >= queue size
  | 'next-out-of-range' // desc.next >= table size
  | 'chain-too-long' // more descriptors than the table holds (a loop)
  | 'nested-indirect' // INDIRECT inside an indirect table
  | 'indirect-with-next' // INDIRECT and NEXT on the same descriptor
  | 'indirect-bad-length' // indirect table length 0 or not a multiple of 16, or too large
  | 'readable-after-writable' // a device-readable descriptor after a writable one
  | 'address-out-of-bounds' // [addr, addr+len) not inside guest memory (or overflows u64)
  | 'chain-too-large' // total length over the cap (also catches u32 sums that would wrap)
  | 'ring-out-of-bounds' // the rings themselves are not inside guest memory (or misaligned)
  // Driver side (DriverQueue.getUsed): the device broke the protocol; the queue is broken.
  | 'used-id-invalid' // used element id is not the head of an outstanding chain
  | 'used-len-invalid' // used element len exceeds the chain's device-writable bytes (§2.7.8)
  | 'used-index-jump'; // used.idx moved past more entries than are in flight

export class VirtqueueError extends Error {
  override readonly name = 'VirtqueueError';
  constructor(
    readonly kind: VirtqueueErrorKind,
    message: string,
    /** The head of the offending chain, when known (complete it with 0 bytes and go on). */
    readonly head?: number,
  ) {
    super(`${kind}: ${message}`);
  }
}

/** What `DeviceQueue.popChain()` yields for one available entry. */
export type PoppedChain =
  | { readonly ok: true; readonly chain: DescriptorChain }
  | { readonly ok: false; readonly head: number; readonly error: VirtqueueError };

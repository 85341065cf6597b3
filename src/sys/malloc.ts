/**
 * glibc malloc tuning for a long-running data-path process (`vcrypto device`).
 *
 * By default glibc gives freed memory at the top of a heap back to the kernel as soon as more than
 * 128 KiB is free (M_TRIM_THRESHOLD), and the next allocation faults the pages in again. A device
 * serving 64 KiB requests allocates and frees buffers of that size per request (node:crypto returns
 * each result in a new buffer), so it paid about 8 minor page faults and 30 us of CPU per request
 * for this (measured with a Linux guest, 64 KiB AF_ALG requests). A high trim threshold keeps the
 * freed pages for reuse; the memory stays bounded by the peak in use (the heap is still trimmed
 * beyond the threshold, and malloc_trim(3) still works).
 */
import { native } from './libc.js';

/** mallopt(3) parameter numbers (malloc.h). */
const M_TRIM_THRESHOLD = -1;

/** Freed memory kept at the top of a heap before it is returned to the kernel: 64 MiB. */
export const TRIM_THRESHOLD_BYTES = 64 * 1024 * 1024;

/**
 * Keeps up to TRIM_THRESHOLD_BYTES of freed heap memory mapped (process-wide, every thread's arena).
 * Returns false when the C library refused (not glibc): harmless, only slower.
 */
export function keepFreedMemory(): boolean {
  return native.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) === 1;
}

/**
 * Scheduler calls for a worker thread's polling loop.
 */
import { native } from './libc.js';

/**
 * sched_yield(2): lets another runnable thread on this CPU run first (returns at once when there is
 * none). A polling loop calls it between checks so it never holds a CPU that another thread — the
 * hypervisor's vCPU or I/O thread, say — is waiting for.
 */
export function yieldCpu(): void {
  native.sched_yield();
}

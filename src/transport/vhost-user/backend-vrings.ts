/**
 * The back-end's vrings: per vring its size, base, addresses, kick/call/err eventfds and, once
 * started, its DeviceQueue served by the one queue-serving routine (src/virtqueue/serve-queue.ts).
 *
 * Lifecycle (vhost-user.rst "Starting and stopping rings"; QEMU's order): SET_VRING_NUM, SET_VRING_BASE
 * and SET_VRING_ADDR on a stopped ring; SET_VRING_KICK starts it (the memory table must exist);
 * GET_VRING_BASE stops it and returns the next avail index; SET_MEM_TABLE moves running rings to
 * the new table. Ring addresses are front-end virtual addresses, translated via userspace_addr.
 *
 * Malformed chains are a protocol violation here (MALFORMED_CHAIN.BREAK_QUEUE): the vring's error
 * eventfd is signalled (QEMU reports "vhost vring error") and VhostUserProtocolError closes the
 * connection. Ownership: every eventfd stored here is closed when replaced, on stop (kick) and on
 * close().
 */
import { readlinkSync } from 'node:fs';
import { VHOST_USER, VHOST_USER_VRING_IDX_MASK } from '../../spec/vhost-user.js';
import { VIRTQ_MAX_SIZE } from '../../spec/virtio.js';
import { decodeVringFile, type VringAddr } from '../../wire/vhost-user.js';
import type { GuestMemory } from '../../memory/guest-memory.js';
import { DeviceQueue } from '../../virtqueue/device-queue.js';
import { checkRingAlignment } from '../../virtqueue/layout.js';
import { QueueServer, MALFORMED_CHAIN } from '../../virtqueue/serve-queue.js';
import { VirtqueueError, type DescriptorChain } from '../../virtqueue/chain.js';
import type { DeviceStats } from '../../device/device-stats.js';
import { closeFd, signalEventFd, setNonBlocking } from '../../sys/fd.js';
import { VhostUserProtocolError, requestName } from './message-table.js';

interface Vring {
  num: number;
  base: number;
  addr: VringAddr | null;
  kickFd: number;
  callFd: number;
  errFd: number;
  /** SET_VRING_ENABLE; rings count as enabled once started (QEMU 7.2 never enables them, ref. §7.1). */
  enabled: boolean;
  server: QueueServer | null;
}

export interface BackendVringsOptions {
  /** vrings 0..count-1; the last one is the control queue. */
  readonly count: number;
  readonly processControl: (chain: DescriptorChain) => number;
  readonly processData: (chain: DescriptorChain) => number;
  /** Is VIRTIO_RING_F_EVENT_IDX in effect (asked when a ring starts)? */
  readonly eventIdx: () => boolean;
  readonly stats: DeviceStats;
  /** QoS for the data rings (see QueueServerOptions.admit); the control ring is never throttled. */
  readonly admit?: () => boolean;
}

function fdKind(fd: number): string {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return 'invalid';
  }
}

export class BackendVrings {
  readonly #opts: BackendVringsOptions;
  readonly #vrings: Vring[];

  constructor(opts: BackendVringsOptions) {
    this.#opts = opts;
    this.#vrings = Array.from({ length: opts.count }, () => ({
      num: 0,
      base: 0,
      addr: null,
      kickFd: -1,
      callFd: -1,
      errFd: -1,
      enabled: true,
      server: null,
    }));
  }

  get count(): number {
    return this.#vrings.length;
  }

  /** The kick fd of a started, enabled ring (to poll), or -1. */
  kickFdToPoll(index: number): number {
    const v = this.#vrings[index]!;
    return v.server !== null && v.enabled ? v.kickFd : -1;
  }

  kickFd(index: number): number {
    return this.#vrings[index]!.kickFd;
  }

  /** Does running ring `index` have available entries not yet popped? */
  hasAvailable(index: number): boolean {
    const s = this.#vrings[index]!.server;
    return s !== null && s.queue.hasAvailable();
  }

  /** Stopped by the QoS limit with requests waiting in the ring. */
  isThrottled(index: number): boolean {
    return this.#vrings[index]!.server?.throttled ?? false;
  }

  /** Served with notifications left disabled (drain()): serve() must follow. */
  isQuiet(index: number): boolean {
    return this.#vrings[index]!.server?.quiet ?? false;
  }

  setNum(index: number, num: number): void {
    const v = this.#vrings[index]!;
    // VIRTIO 1.2 §2.7: Queue Size is a power of 2, at most 32768.
    if (num === 0 || num > VIRTQ_MAX_SIZE || (num & (num - 1)) !== 0) {
      throw new VhostUserProtocolError(`SET_VRING_NUM: vring ${index} size ${num} is not a power of 2 in 1-${VIRTQ_MAX_SIZE}`);
    }
    if (v.server !== null) throw new VhostUserProtocolError(`SET_VRING_NUM: vring ${index} is running`);
    v.num = num;
  }

  setBase(index: number, base: number): void {
    const v = this.#vrings[index]!;
    if (base > 0xffff) throw new VhostUserProtocolError(`SET_VRING_BASE: vring ${index} base ${base} is not a u16 ring index`);
    if (v.server !== null) throw new VhostUserProtocolError(`SET_VRING_BASE: vring ${index} is running`);
    v.base = base;
  }

  setAddr(addr: VringAddr, memory: GuestMemory | null): void {
    const v = this.#vrings[addr.index]!;
    if (v.server !== null) throw new VhostUserProtocolError(`SET_VRING_ADDR: vring ${addr.index} is running`);
    if (v.num === 0) throw new VhostUserProtocolError(`SET_VRING_ADDR: vring ${addr.index} before SET_VRING_NUM`);
    if (memory === null) throw new VhostUserProtocolError(`SET_VRING_ADDR: vring ${addr.index} before SET_MEM_TABLE`);
    ringViews(addr, v.num, memory); // validates now: addresses inside the table
    v.addr = addr;
  }

  /** SET_VRING_ENABLE. */
  enable(index: number, on: boolean): void {
    this.#vrings[index]!.enabled = on;
    if (on) this.serve(index); // work queued while disabled
  }

  /** SET_VRING_KICK / SET_VRING_CALL / SET_VRING_ERR: takes ownership of `fds`. */
  setFile(request: number, payload: Uint8Array, fds: number[], memory: GuestMemory | null): void {
    const file = decodeVringFile(payload);
    const name = requestName(request);
    const index = file.index & VHOST_USER_VRING_IDX_MASK;
    const v = this.#vrings[index]!;
    const fd = file.noFd ? -1 : fds[0]!;
    if (fd >= 0) {
      const kind = fdKind(fd);
      if (kind !== 'anon_inode:[eventfd]') throw new VhostUserProtocolError(`${name}: vring ${index} fd is not an eventfd (${kind})`);
      setNonBlocking(fd);
    }
    fds.length = 0; // ownership taken
    if (request === VHOST_USER.SET_VRING_KICK) {
      if (fd < 0) throw new VhostUserProtocolError(`${name}: vring ${index} without a kick fd (polling mode) is not supported`);
      closeFd(v.kickFd);
      v.kickFd = fd;
      this.#start(index, memory);
    } else if (request === VHOST_USER.SET_VRING_CALL) {
      // The first call fd (phase A) is QEMU's masked notifier; always switch to the newest (ref. §5.4).
      closeFd(v.callFd);
      v.callFd = fd;
    } else {
      closeFd(v.errFd);
      v.errFd = fd;
    }
  }

  /** A ring starts when its kick fd arrives after NUM, ADDR and the memory table (QEMU's order). */
  #start(index: number, memory: GuestMemory | null): void {
    const v = this.#vrings[index]!;
    if (memory === null || v.addr === null || v.num === 0) {
      throw new VhostUserProtocolError(`SET_VRING_KICK: vring ${index} before SET_MEM_TABLE/SET_VRING_NUM/SET_VRING_ADDR`);
    }
    if (v.server !== null) return; // a new kick fd for a running ring
    v.server = this.#makeServer(index, v.base, memory, 'SET_VRING_KICK');
    // The kick fd arrives pre-signalled; serve whatever is already there.
    this.serve(index);
  }

  /** GET_VRING_BASE: stop the ring (between batches: we are single-threaded) and return its base. */
  stop(index: number): number {
    const v = this.#vrings[index]!;
    if (v.server !== null) {
      v.base = v.server.queue.lastAvailIdx;
      v.server = null;
    }
    closeFd(v.kickFd); // vhost-user.rst: the ring is stopped; a new SET_VRING_KICK restarts it
    v.kickFd = -1;
    return v.base;
  }

  /**
   * SET_MEM_TABLE: builds every running ring's queue on `memory` (throws, changing nothing, when a
   * ring's addresses are not mapped there); the returned function switches to them.
   */
  prepareMove(memory: GuestMemory): () => void {
    const rebuilt = this.#vrings.map((v, i) => (v.server === null ? null : this.#makeServer(i, v.server.queue.lastAvailIdx, memory, 'SET_MEM_TABLE')));
    return () =>
      rebuilt.forEach((s, i) => {
        if (s !== null) this.#vrings[i]!.server = s;
      });
  }

  #makeServer(index: number, lastAvailIdx: number, memory: GuestMemory, what: string): QueueServer {
    const v = this.#vrings[index]!;
    const views = ringViews(v.addr!, v.num, memory, what);
    let queue: DeviceQueue;
    try {
      queue = new DeviceQueue({ size: v.num, ...views, memory, eventIdx: this.#opts.eventIdx(), lastAvailIdx });
    } catch (err) {
      throw new VhostUserProtocolError(`vring ${index}: ${(err as Error).message}`);
    }
    const o = this.#opts;
    const control = index === o.count - 1;
    return new QueueServer(queue, {
      process: control ? o.processControl : o.processData,
      ...(!control && o.admit !== undefined ? { admit: o.admit } : {}),
      notify: () => {
        if (v.callFd >= 0) signalEventFd(v.callFd);
      },
      malformedChain: MALFORMED_CHAIN.BREAK_QUEUE,
      stats: o.stats,
    });
  }

  /**
   * Serves vring `index` until it is empty with notifications enabled (§2.7.10 re-check), signalling
   * the call eventfd when the driver asked for it. Descriptor garbage throws VhostUserProtocolError.
   * Returns the chains served (0 for a stopped or disabled ring).
   */
  serve(index: number): number {
    return this.#run(index, false);
  }

  /**
   * Serves vring `index` until it is empty, with notifications disabled and LEFT disabled: the
   * caller must end with serve(index). Returns the chains served, or -1 when the ring is not
   * running or disabled.
   */
  drain(index: number): number {
    return this.#run(index, true);
  }

  #run(index: number, quiet: boolean): number {
    const v = this.#vrings[index];
    const s = v?.server;
    if (!v || !s || !v.enabled) return quiet ? -1 : 0;
    try {
      return quiet ? s.drain() : s.serve();
    } catch (err) {
      // A ring hit descriptor garbage: signal its error eventfd (SET_VRING_ERR; QEMU reports
      // "vhost vring error") and close the connection.
      if (v.errFd >= 0) signalEventFd(v.errFd);
      const chain = err instanceof VirtqueueError && err.head !== undefined ? `chain ${err.head}: ` : '';
      throw new VhostUserProtocolError(`vring ${index}: ${chain}${(err as Error).message}`);
    }
  }

  /** RESET_OWNER: stop every ring. */
  stopAll(): void {
    for (let i = 0; i < this.#vrings.length; i++) this.stop(i);
  }

  /** Closes every eventfd and drops the queues. Idempotent. */
  close(): void {
    for (const v of this.#vrings) {
      v.server = null;
      closeFd(v.kickFd);
      closeFd(v.callFd);
      closeFd(v.errFd);
      v.kickFd = v.callFd = v.errFd = -1;
    }
  }
}

function ringViews(addr: VringAddr, num: number, memory: GuestMemory, what = 'SET_VRING_ADDR'): { desc: Uint8Array; avail: Uint8Array; used: Uint8Array } {
  try {
    // Ring addresses are front-end virtual addresses (vhost-user.rst): translate via userspace_addr.
    checkRingAlignment(addr.descUserAddr, addr.availUserAddr, addr.usedUserAddr);
    return {
      desc: memory.viewUser(addr.descUserAddr, 16 * num),
      avail: memory.viewUser(addr.availUserAddr, 6 + 2 * num),
      used: memory.viewUser(addr.usedUserAddr, 6 + 8 * num),
    };
  } catch (err) {
    throw new VhostUserProtocolError(`${what}: vring ${addr.index}: ${(err as Error).message}`);
  }
}

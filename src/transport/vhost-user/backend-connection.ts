/**
 * One vhost-user connection on the back-end side: the protocol state (features, memory table, vrings
 * with their eventfds) and the data path, driven synchronously by ONE thread (the connection's
 * worker, see connection-worker.ts).
 *
 * Design: the worker owns the socket, the mappings, the device model and every queue of its
 * connection, and sleeps in poll(2) on [socket, stop eventfd, the kick eventfd of each started vring].
 * Sessions created by CREATE_CRYPTO_SESSION are therefore visible to the data path before the reply
 * is even sent (no cross-thread hand-off), GET_VRING_BASE stops a ring between two batches by
 * construction, and an idle connection costs no CPU. After a completion the worker polls the avail
 * rings for a short, adaptive window (#pollForWork, yielding the CPU between checks) with
 * notifications still disabled: a front-end that submits its next request quickly (a guest's
 * AF_ALG loop) needs no kick and we need no wake-up; the window is 0 when requests come slower
 * than DEFAULT_POLL_MICROS or the connection is idle. One connection = one thread: several
 * connections (VMs, or our front-ends) are served in parallel and independently.
 * DEVIATION: the issue suggests one worker per active queue. Per-queue threads would need every
 * session copied to every queue thread before each CREATE reply (the embedded device does that,
 * in-process/device-worker.ts). QEMU 7.2 only ever starts vring 0 and Linux only uses data_vq[0],
 * so a thread per connection loses nothing there; our front-end gets parallelism from
 * processes/connections (test-fork-crypto, several VMs).
 *
 * Untrusted input: every message passes the dispatch table (message-table.ts) before its handler;
 * handlers validate values (sizes, overflow, addresses inside the memory table, fd types). Any
 * violation throws VhostUserProtocolError; the worker then closes the connection with one log line
 * naming it, and `close()` releases every fd and mapping.
 */
import { readlinkSync, fstatSync } from 'node:fs';
import {
  VHOST_USER,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_PROTOCOL_F,
  VHOST_USER_REPLY_FLAGS,
  VHOST_USER_VRING_IDX_MASK,
} from '../../spec/vhost-user.js';
import { VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC, VIRTQ_MAX_SIZE } from '../../spec/virtio.js';
import {
  decodeU64,
  decodeVringState,
  decodeVringFile,
  decodeVringAddr,
  decodeMemoryTable,
  decodeCryptoSession,
  encodeU64,
  encodeVringState,
  encodeMessage,
  encodeCryptoSessionReply,
  CryptoSessionParamError,
  type VringAddr,
  type VhostUserHeader,
  type CryptoSessionRequest,
} from '../../wire/vhost-user.js';
import { GuestMemory } from '../../memory/guest-memory.js';
import { DeviceQueue } from '../../virtqueue/device-queue.js';
import { checkRingAlignment } from '../../virtqueue/layout.js';
import type { DescriptorChain } from '../../virtqueue/chain.js';
import { mapShared, getSeals, F_SEAL, MAX_MAPPING_BYTES, type Mapping } from '../../sys/memfd.js';
import { closeFd, closeFds, drainEventFd, signalEventFd, setNonBlocking, PollSet, POLLIN } from '../../sys/fd.js';
import { yieldCpu } from '../../sys/sched.js';
import { VhostUserProtocolError, checkMessage, needsReply, requestName } from './message-table.js';
import { ConnectionClosed, type VhostUserChannel, type VhostUserMessage } from './channel.js';

/** What the connection needs from the virtio-crypto device model (src/device/). */
export interface BackendDeviceModel {
  /** Serves one controlq chain; returns the bytes written (used.len). Never throws for bad input. */
  processControl(chain: DescriptorChain): number;
  /** Serves one dataq chain; returns the bytes written. Never throws for bad input. */
  processData(chain: DescriptorChain): number;
  /** CREATE_CRYPTO_SESSION: ≥ 0 session id, or -VIRTIO_CRYPTO_* status. */
  createSessionFromMessage(request: CryptoSessionRequest): bigint;
  /** CLOSE_CRYPTO_SESSION: unknown ids are ignored (QEMU never reads an answer). */
  closeSession(id: bigint): void;
  /** Forget all sessions and zero their keys. */
  reset(): void;
}

export interface BackendConnectionOptions {
  /** Data queues served (vrings 0..N-1); vring N is the control queue. */
  readonly dataQueues: number;
  readonly log: (line: string) => void;
  /** Log every message received. */
  readonly verbose?: boolean;
  /**
   * Upper bound of the adaptive polling window after a completion, in microseconds (0: never poll,
   * always sleep in poll(2) until the next kick). Default DEFAULT_POLL_MICROS.
   */
  readonly pollMicros?: number;
}

/**
 * Default bound of the polling window after a completion. A TCG guest running one AF_ALG request
 * at a time submits its next request ~125-150 µs after our interrupt at 4 KiB, ~300 µs at 16 KiB,
 * ~520 µs at 64 KiB (measured). Polling saves the guest's kick (an MMIO exit, then the vCPU halts)
 * and our wake-up (on this 2-vCPU VM, an IPI to a halted vCPU): ~75 µs per 4 KiB request
 * (`vcrypto vm --bench`: +30% ops/s at 4 KiB). At 64 KiB a 400 µs bound did not poll; 1000 µs
 * does, and gave +5% ops/s (4 interleaved pairs of 5 s runs: mean 1662 vs 1577 ops/s) for about
 * 330 µs more device CPU per request. Requests that come slower than this are not polled for,
 * nor is an idle connection (the window only follows a completion); `--poll-us 0` turns it off.
 */
export const DEFAULT_POLL_MICROS = 1000;

/**
 * Virtio feature bits offered by GET_FEATURES: INDIRECT_DESC, EVENT_IDX, VERSION_1 and
 * PROTOCOL_FEATURES (docs/qemu-vhost-user-crypto.md §2: 0x170000000). Never VHOST_F_LOG_ALL or ACCESS_PLATFORM.
 */
export const BACKEND_FEATURES =
  (1n << BigInt(VIRTIO_RING_F_INDIRECT_DESC)) |
  (1n << BigInt(VIRTIO_RING_F_EVENT_IDX)) |
  (1n << BigInt(VIRTIO_F_VERSION_1)) |
  (1n << BigInt(VHOST_USER_F_PROTOCOL_FEATURES));

/**
 * Protocol features: MQ (GET_QUEUE_NUM), REPLY_ACK, CRYPTO_SESSION. Never CONFIG (crashes QEMU
 * 7.2.0-7.2.2, docs/qemu-vhost-user-crypto.md §2), STATUS (QEMU 7.2 never reports DRIVER_OK), SLAVE_REQ or
 * CONFIGURE_MEM_SLOTS (not implemented).
 */
export const BACKEND_PROTOCOL_FEATURES =
  (1n << BigInt(VHOST_USER_PROTOCOL_F.MQ)) |
  (1n << BigInt(VHOST_USER_PROTOCOL_F.REPLY_ACK)) |
  (1n << BigInt(VHOST_USER_PROTOCOL_F.CRYPTO_SESSION));

/** mmap offsets must be multiples of this (x86-64 and the usual aarch64 kernels: 4 KiB). */
const PAGE_SIZE = 4096;

/** Completions added before used.idx is published (and the front-end possibly signalled) mid-batch. */
const PUBLISH_EVERY = 32;

/** One polling episode ends after this long even if requests keep coming (control messages wait). */
const MAX_POLL_EPISODE_MS = 2;
/** A gap this long between two polling checks means this thread was descheduled (a busy host). */
const PREEMPTED_MS = 0.1;
/** Consecutive missed episodes skip up to 2^this - 1 of the following ones. */
const MAX_POLL_BACKOFF = 6;

interface Vring {
  num: number;
  base: number;
  addr: VringAddr | null;
  kickFd: number;
  callFd: number;
  errFd: number;
  /** SET_VRING_ENABLE; rings count as enabled once started (QEMU 7.2 never enables them, ref. §7.1). */
  enabled: boolean;
  /** Served with notifications left disabled (#serveQuietly): serveQueue must re-enable them. */
  quiet: boolean;
  queue: DeviceQueue | null;
}

interface MappedRegion {
  readonly mapping: Mapping;
  readonly guestPhysAddr: bigint;
  readonly userspaceAddr: bigint;
  readonly bytes: Uint8Array;
}

function fdKind(fd: number): string {
  try {
    return readlinkSync(`/proc/self/fd/${fd}`);
  } catch {
    return 'invalid';
  }
}

export class VhostUserBackendConnection {
  readonly #channel: VhostUserChannel;
  readonly #device: BackendDeviceModel;
  readonly #opts: BackendConnectionOptions;
  readonly #vrings: Vring[];
  #features = 0n;
  #protocolFeatures = 0n;
  #regions: MappedRegion[] = [];
  #memory: GuestMemory | null = null;
  #closed = false;
  /** Requests served (for tests and the closing log line). */
  messages = 0;
  /** Adaptive polling (see #pollForWork): bound, moving average of request gaps, last completion. */
  readonly #pollBoundMs: number;
  #gapAverageMs = Infinity;
  #lastCompletionMs = 0;
  #pollBackoff = 0;
  #pollSkips = 0;
  /** Polling episodes that found work / ran out (for tests and measurements). */
  pollHits = 0;
  pollMisses = 0;

  constructor(channel: VhostUserChannel, device: BackendDeviceModel, opts: BackendConnectionOptions) {
    this.#channel = channel;
    this.#device = device;
    this.#opts = opts;
    const micros = opts.pollMicros ?? DEFAULT_POLL_MICROS;
    if (!Number.isFinite(micros) || micros < 0) throw new RangeError(`pollMicros must be >= 0, got ${micros}`);
    this.#pollBoundMs = micros / 1000;
    this.#vrings = Array.from({ length: opts.dataQueues + 1 }, () => ({
      num: 0,
      base: 0,
      addr: null,
      kickFd: -1,
      callFd: -1,
      errFd: -1,
      enabled: true,
      quiet: false,
      queue: null,
    }));
  }

  get vringCount(): number {
    return this.#vrings.length;
  }

  /** EVENT_IDX: always, except when a front-end negotiated VERSION_1 features without it (ours may). */
  get #eventIdx(): boolean {
    const f = this.#features;
    return (f & (1n << BigInt(VIRTIO_F_VERSION_1))) === 0n || (f & (1n << BigInt(VIRTIO_RING_F_EVENT_IDX))) !== 0n;
  }

  /**
   * Serves until the peer disconnects (returns 'eof'), `stopFd` is signalled ('stopped'), or the
   * peer breaks the protocol (throws VhostUserProtocolError). Never busy-polls.
   */
  run(stopFd: number): 'eof' | 'stopped' {
    // Hot path: one poll(2), one read(2) of each signalled kick eventfd, the serve, one write(2) of
    // the call eventfd per batch. The poll set is rebuilt only after a control message (the only
    // thing that starts, stops, enables or re-kicks rings), so a request allocates nothing here.
    const pollSet = new PollSet();
    const started: number[] = [];
    let stale = true;
    for (;;) {
      if (stale) {
        started.length = 0;
        const polls = [
          { fd: this.#channel.socket.fd, events: POLLIN },
          { fd: stopFd, events: POLLIN },
        ];
        this.#vrings.forEach((v, i) => {
          if (v.queue !== null && v.enabled && v.kickFd >= 0) {
            started.push(i);
            polls.push({ fd: v.kickFd, events: POLLIN });
          }
        });
        pollSet.set(polls);
        stale = false;
      }
      pollSet.wait(-1);
      if (pollSet.revents(1) !== 0) return 'stopped';
      let served = 0;
      for (let k = 0; k < started.length; k++) {
        if (pollSet.revents(k + 2) === 0) continue;
        const index = started[k]!;
        const v = this.#vrings[index]!;
        try {
          drainEventFd(v.kickFd);
        } catch {
          throw new VhostUserProtocolError(`vring ${index}: kick fd is unreadable`);
        }
        if (served === 0) this.#noteRequestGap();
        served += this.#serveQuietly(index);
      }
      // Rings served above still have notifications disabled: poll them for a short while (the
      // guest's next request needs no kick), then re-enable and re-check (§2.7.10) before sleeping.
      if (served > 0) this.#pollForWork(started);
      for (let k = 0; k < started.length; k++) if (this.#vrings[started[k]!]!.quiet) this.serveQueue(started[k]!);
      if (pollSet.revents(0) !== 0) {
        let msg: VhostUserMessage;
        try {
          msg = this.#channel.readMessageSync();
        } catch (err) {
          if (err instanceof ConnectionClosed) return 'eof';
          throw err;
        }
        this.handle(msg);
        stale = true;
      }
    }
  }

  /** Applies the dispatch table, then the handler. Takes ownership of `msg.fds`. */
  handle(msg: VhostUserMessage): void {
    const { header, payload, fds } = msg;
    if (this.#opts.verbose) {
      this.#opts.log(`<- ${requestName(header.request)} flags 0x${header.flags.toString(16)} size ${header.size} fds ${fds.length}`);
    }
    let spec;
    try {
      spec = checkMessage(header, payload, fds.length, this.#vrings.length);
    } catch (err) {
      closeFds(fds);
      throw err;
    }
    this.messages++;
    if (spec === undefined) {
      // vhost-user.rst: a back-end ignores requests it does not know, NACKing when asked to reply.
      closeFds(fds);
      if (needsReply(header)) this.#reply(header, encodeU64(1n));
      return;
    }
    let ok = true;
    try {
      ok = this.#dispatch(header, payload, fds);
    } catch (err) {
      closeFds(fds);
      throw err;
    }
    // REPLY_ACK (vhost-user.rst): messages without their own reply answer NEED_REPLY with a u64.
    if (spec.reply === 'none' && needsReply(header) && this.#hasProtocolFeature(VHOST_USER_PROTOCOL_F.REPLY_ACK)) {
      this.#reply(header, encodeU64(ok ? 0n : 1n));
    }
  }

  #hasProtocolFeature(bit: number): boolean {
    return (this.#protocolFeatures & (1n << BigInt(bit))) !== 0n;
  }

  #reply(header: VhostUserHeader, payload: Uint8Array): void {
    // Replies carry exactly REPLY|VERSION (0x5): QEMU rejects any other flags.
    this.#channel.writeSync(encodeMessage(header.request, VHOST_USER_REPLY_FLAGS, payload));
  }

  /** Returns the REPLY_ACK status (true = success). `fds` become owned by the handler. */
  #dispatch(header: VhostUserHeader, payload: Uint8Array, fds: number[]): boolean {
    switch (header.request) {
      case VHOST_USER.GET_FEATURES:
        this.#reply(header, encodeU64(BACKEND_FEATURES));
        return true;
      case VHOST_USER.SET_FEATURES:
        // QEMU 7.2 sends 0x40000000 or even heap garbage (docs/qemu-vhost-user-crypto.md §2): accept any value.
        this.#features = decodeU64(payload);
        return true;
      case VHOST_USER.GET_PROTOCOL_FEATURES:
        this.#reply(header, encodeU64(BACKEND_PROTOCOL_FEATURES));
        return true;
      case VHOST_USER.SET_PROTOCOL_FEATURES: {
        const wanted = decodeU64(payload);
        if ((wanted & ~BACKEND_PROTOCOL_FEATURES) !== 0n) {
          throw new VhostUserProtocolError(`SET_PROTOCOL_FEATURES: 0x${wanted.toString(16)} has bits that were not offered`);
        }
        this.#protocolFeatures = wanted;
        return true;
      }
      case VHOST_USER.GET_QUEUE_NUM:
        this.#reply(header, encodeU64(BigInt(this.#opts.dataQueues)));
        return true;
      case VHOST_USER.SET_OWNER:
        return true;
      case VHOST_USER.RESET_OWNER:
        this.#resetDevice();
        return true;
      case VHOST_USER.SET_MEM_TABLE:
        this.#setMemTable(payload, fds);
        return true;
      case VHOST_USER.SET_VRING_NUM: {
        const { index, num } = decodeVringState(payload);
        const v = this.#vrings[index]!;
        // VIRTIO 1.2 §2.7: Queue Size is a power of 2, at most 32768.
        if (num === 0 || num > VIRTQ_MAX_SIZE || (num & (num - 1)) !== 0) {
          throw new VhostUserProtocolError(`SET_VRING_NUM: vring ${index} size ${num} is not a power of 2 in 1-${VIRTQ_MAX_SIZE}`);
        }
        if (v.queue !== null) throw new VhostUserProtocolError(`SET_VRING_NUM: vring ${index} is running`);
        v.num = num;
        return true;
      }
      case VHOST_USER.SET_VRING_BASE: {
        const { index, num } = decodeVringState(payload);
        const v = this.#vrings[index]!;
        if (num > 0xffff) throw new VhostUserProtocolError(`SET_VRING_BASE: vring ${index} base ${num} is not a u16 ring index`);
        if (v.queue !== null) throw new VhostUserProtocolError(`SET_VRING_BASE: vring ${index} is running`);
        v.base = num;
        return true;
      }
      case VHOST_USER.SET_VRING_ADDR: {
        const addr = decodeVringAddr(payload);
        const v = this.#vrings[addr.index]!;
        if (v.queue !== null) throw new VhostUserProtocolError(`SET_VRING_ADDR: vring ${addr.index} is running`);
        if (v.num === 0) throw new VhostUserProtocolError(`SET_VRING_ADDR: vring ${addr.index} before SET_VRING_NUM`);
        if (this.#memory === null) throw new VhostUserProtocolError(`SET_VRING_ADDR: vring ${addr.index} before SET_MEM_TABLE`);
        this.#ringViews(addr, v.num, this.#memory); // validates now: addresses inside the table
        v.addr = addr;
        return true;
      }
      case VHOST_USER.GET_VRING_BASE: {
        const { index } = decodeVringState(payload);
        const base = this.#stopRing(index);
        this.#reply(header, encodeVringState({ index, num: base }));
        return true;
      }
      case VHOST_USER.SET_VRING_KICK:
      case VHOST_USER.SET_VRING_CALL:
      case VHOST_USER.SET_VRING_ERR:
        this.#setVringFile(header.request, payload, fds);
        return true;
      case VHOST_USER.SET_VRING_ENABLE: {
        const { index, num } = decodeVringState(payload);
        if (num > 1) throw new VhostUserProtocolError(`SET_VRING_ENABLE: vring ${index} state ${num} is not 0 or 1`);
        this.#vrings[index]!.enabled = num === 1;
        if (num === 1) this.serveQueue(index); // work queued while disabled
        return true;
      }
      case VHOST_USER.CREATE_CRYPTO_SESSION: {
        let request: CryptoSessionRequest | undefined;
        let id: bigint;
        try {
          request = decodeCryptoSession(payload);
          id = this.#device.createSessionFromMessage(request);
        } catch (err) {
          if (!(err instanceof CryptoSessionParamError)) throw err;
          id = -1n; // VIRTIO_CRYPTO_ERR: a bad request, not a broken connection
        } finally {
          payload.fill(0); // the payload held key material
          if (request?.kind === 'sym') {
            request.sym.key.fill(0);
            request.sym.authKey.fill(0);
          }
        }
        const layout = payload.length === 632 ? 'qemu-7.1' : 'qemu-8.1';
        const opCode = request !== undefined && request.layout === 'qemu-8.1' ? request.opCode : 0;
        this.#reply(header, encodeCryptoSessionReply(layout, id, opCode));
        return id >= 0n;
      }
      case VHOST_USER.CLOSE_CRYPTO_SESSION:
        // No reply: QEMU does not read one (docs/qemu-vhost-user-crypto.md §4); unknown ids are ignored.
        this.#device.closeSession(BigInt.asIntN(64, decodeU64(payload)));
        return true;
      default:
        throw new VhostUserProtocolError(`${requestName(header.request)}: in the table but not handled`);
    }
  }

  #setVringFile(request: number, payload: Uint8Array, fds: number[]): void {
    const file = decodeVringFile(payload);
    const name = requestName(request);
    const v = this.#vrings[file.index & VHOST_USER_VRING_IDX_MASK]!;
    const fd = file.noFd ? -1 : fds[0]!;
    if (fd >= 0) {
      const kind = fdKind(fd);
      if (kind !== 'anon_inode:[eventfd]') throw new VhostUserProtocolError(`${name}: vring ${file.index} fd is not an eventfd (${kind})`);
      setNonBlocking(fd);
    }
    fds.length = 0; // ownership taken
    if (request === VHOST_USER.SET_VRING_KICK) {
      if (fd < 0) throw new VhostUserProtocolError(`${name}: vring ${file.index} without a kick fd (polling mode) is not supported`);
      closeFd(v.kickFd);
      v.kickFd = fd;
      this.#startRing(file.index);
    } else if (request === VHOST_USER.SET_VRING_CALL) {
      // The first call fd (phase A) is QEMU's masked notifier; always switch to the newest (ref. §5.4).
      closeFd(v.callFd);
      v.callFd = fd;
    } else {
      closeFd(v.errFd);
      v.errFd = fd;
    }
  }

  #ringViews(addr: VringAddr, num: number, memory: GuestMemory, what = 'SET_VRING_ADDR'): { desc: Uint8Array; avail: Uint8Array; used: Uint8Array } {
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

  #makeQueue(index: number, lastAvailIdx: number, memory: GuestMemory, what: string): DeviceQueue {
    const v = this.#vrings[index]!;
    const views = this.#ringViews(v.addr!, v.num, memory, what);
    try {
      return new DeviceQueue({ size: v.num, ...views, memory, eventIdx: this.#eventIdx, lastAvailIdx });
    } catch (err) {
      throw new VhostUserProtocolError(`vring ${index}: ${(err as Error).message}`);
    }
  }

  /** A ring starts when its kick fd arrives after NUM, ADDR and the memory table (QEMU's order). */
  #startRing(index: number): void {
    const v = this.#vrings[index]!;
    if (this.#memory === null || v.addr === null || v.num === 0) {
      throw new VhostUserProtocolError(`SET_VRING_KICK: vring ${index} before SET_MEM_TABLE/SET_VRING_NUM/SET_VRING_ADDR`);
    }
    if (v.queue !== null) return; // a new kick fd for a running ring
    v.queue = this.#makeQueue(index, v.base, this.#memory, 'SET_VRING_KICK');
    // The kick fd arrives pre-signalled; serve whatever is already there.
    this.serveQueue(index);
  }

  /** GET_VRING_BASE: stop the ring (between batches: we are single-threaded) and return its base. */
  #stopRing(index: number): number {
    const v = this.#vrings[index]!;
    if (v.queue !== null) {
      v.base = v.queue.lastAvailIdx;
      v.queue = null;
    }
    closeFd(v.kickFd); // vhost-user.rst: the ring is stopped; a new SET_VRING_KICK restarts it
    v.kickFd = -1;
    return v.base;
  }

  #setMemTable(payload: Uint8Array, fds: number[]): void {
    const table = decodeMemoryTable(payload);
    const regions: MappedRegion[] = [];
    try {
      table.forEach((r, i) => {
        const fd = fds[i]!;
        const end = r.memorySize + r.mmapOffset; // bigint: no overflow possible here
        if (r.memorySize === 0n) throw new VhostUserProtocolError(`SET_MEM_TABLE: region ${i} has size 0`);
        // u64 overflow of size + offset (DPDK CVE-2020-10722 was this bug for the log region).
        if (end >= 1n << 64n) {
          throw new VhostUserProtocolError(`SET_MEM_TABLE: region ${i} size 0x${r.memorySize.toString(16)} + offset 0x${r.mmapOffset.toString(16)} overflows u64`);
        }
        // A page-aligned offset is mapped directly; otherwise the file is mapped from 0.
        const direct = r.mmapOffset % BigInt(PAGE_SIZE) === 0n;
        const mapLength = direct ? r.memorySize : end;
        if (mapLength > BigInt(MAX_MAPPING_BYTES)) {
          throw new VhostUserProtocolError(`SET_MEM_TABLE: region ${i} needs a ${mapLength}-byte mapping (max ${MAX_MAPPING_BYTES})`);
        }
        if (r.guestPhysAddr + r.memorySize > 1n << 64n || r.userspaceAddr + r.memorySize > 1n << 64n) {
          throw new VhostUserProtocolError(`SET_MEM_TABLE: region ${i} address + size overflows u64`);
        }
        let fileSize: number;
        try {
          const st = fstatSync(fd);
          if (!st.isFile()) throw new Error('not a regular file or memfd');
          fileSize = st.size;
        } catch (err) {
          throw new VhostUserProtocolError(`SET_MEM_TABLE: region ${i} fd: ${(err as Error).message}`);
        }
        // Touching a mapping beyond the end of the file is SIGBUS, which would kill every connection:
        // the file must be a memfd sealed against shrinking (QEMU's memory-backend-memfd, seal=on by
        // default, and our front-end), and long enough now.
        const seals = getSeals(fd);
        if (seals === null || (seals & F_SEAL.SHRINK) === 0) {
          throw new VhostUserProtocolError(
            `SET_MEM_TABLE: region ${i} fd is not a memfd sealed against shrinking (F_SEAL_SHRINK); use QEMU's memory-backend-memfd with seal=on (the default)`,
          );
        }
        if (BigInt(fileSize) < end) {
          throw new VhostUserProtocolError(`SET_MEM_TABLE: region ${i} ends at 0x${end.toString(16)} beyond its file (${fileSize} bytes)`);
        }
        const mapping = direct ? mapShared(fd, Number(mapLength), Number(r.mmapOffset)) : mapShared(fd, Number(mapLength));
        const offset = direct ? 0 : Number(r.mmapOffset);
        regions.push({
          mapping,
          guestPhysAddr: r.guestPhysAddr,
          userspaceAddr: r.userspaceAddr,
          bytes: new Uint8Array(mapping.buffer, offset, Number(r.memorySize)),
        });
      });
      let memory: GuestMemory;
      try {
        memory = new GuestMemory(regions.map((r) => ({ guestPhysAddr: r.guestPhysAddr, bytes: r.bytes, userAddr: r.userspaceAddr })));
      } catch (err) {
        throw new VhostUserProtocolError(`SET_MEM_TABLE: ${(err as Error).message}`);
      }
      // Running rings move to the new table (their addresses must still be mapped).
      const rebuilt = this.#vrings.map((v, i) => (v.queue === null ? null : this.#makeQueue(i, v.queue.lastAvailIdx, memory, 'SET_MEM_TABLE')));
      const old = this.#regions;
      this.#regions = regions;
      this.#memory = memory;
      rebuilt.forEach((q, i) => {
        if (q !== null) this.#vrings[i]!.queue = q;
      });
      for (const r of old) r.mapping.unmap();
    } catch (err) {
      for (const r of regions) r.mapping.unmap();
      throw err;
    } finally {
      // The mappings stay valid without the fds (vhost-user.rst: the back-end may close them).
      closeFds(fds);
      fds.length = 0;
    }
  }

  /**
   * Serves vring `index` until it is empty with notifications enabled (VIRTIO 1.2 §2.7.10: re-check
   * after re-enabling, or a kick is lost — the EVENT_IDX trap of docs/qemu-vhost-user-crypto.md §6), signalling the call
   * eventfd once per batch when the driver asked for it (used_event). Descriptor garbage throws
   * VhostUserProtocolError (the connection is closed). Returns the chains served.
   */
  serveQueue(index: number): number {
    let served = 0;
    for (;;) {
      const n = this.#serveQuietly(index);
      if (n < 0) return served;
      served += n;
      const v = this.#vrings[index]!;
      v.quiet = false;
      if (!v.queue!.enableNotifications()) return served;
    }
  }

  /**
   * Serves vring `index` until it is empty, with notifications disabled and LEFT disabled: the
   * caller must end with serveQueue(index) (which re-enables them and re-checks). Returns the
   * chains served, or -1 when the ring is not running or disabled.
   */
  #serveQuietly(index: number): number {
    const v = this.#vrings[index];
    const q = v?.queue;
    if (!v || !q || !v.enabled) return -1;
    const isControl = index === this.#opts.dataQueues;
    q.disableNotifications();
    v.quiet = true;
    let served = 0;
    let sincePublish = 0;
    for (;;) {
      let popped;
      try {
        popped = q.popChain();
      } catch (err) {
        throw this.#ringError(v, `vring ${index}: ${(err as Error).message}`);
      }
      if (popped === null) break;
      if (!popped.ok) throw this.#ringError(v, `vring ${index}: chain ${popped.head}: ${popped.error.message}`);
      let used = 0;
      try {
        used = isControl ? this.#device.processControl(popped.chain) : this.#device.processData(popped.chain);
      } catch {
        used = 0; // the device reports statuses itself; an exception is a bug: 0 bytes and go on
      }
      q.addUsed(popped.chain.head, used);
      served++;
      if (++sincePublish === PUBLISH_EVERY) {
        sincePublish = 0;
        q.publishUsed();
        if (q.needsNotification() && v.callFd >= 0) signalEventFd(v.callFd);
      }
    }
    if (q.broken) throw this.#ringError(v, `vring ${index}: broken`);
    if (sincePublish > 0) {
      // Only when something was used since the last publish: no spurious interrupt for an empty
      // (or pre-signalled) kick.
      q.publishUsed();
      if (q.needsNotification() && v.callFd >= 0) signalEventFd(v.callFd);
    }
    if (served > 0) this.#lastCompletionMs = performance.now();
    return served;
  }

  /**
   * A request arrived (kick or poll hit): fold the time since the previous completion into the
   * moving average that sizes the polling window. Gaps are clamped so that the average comes down
   * within a few requests after an idle period.
   */
  #noteRequestGap(): void {
    if (this.#lastCompletionMs === 0) return;
    const gap = Math.min(performance.now() - this.#lastCompletionMs, 4 * this.#pollBoundMs);
    this.#gapAverageMs = this.#gapAverageMs === Infinity ? gap : this.#gapAverageMs + (gap - this.#gapAverageMs) / 8;
  }

  /**
   * Adaptive polling after a completion: while the front-end's requests come back faster than the
   * bound, watch the avail rings of `rings` (notifications still disabled, so the front-end does
   * not kick) for up to twice the average gap, yielding the CPU between checks (the guest's vCPU
   * and QEMU's I/O thread may need it). Serves what arrives; an episode ends after
   * MAX_POLL_EPISODE_MS so control messages are never starved. Does nothing when requests come
   * slower than the bound (or when idle: nothing completed, nothing to poll for).
   * On a busy host polling competes with the very threads that produce the next request: an
   * episode that finds nothing, or in which this thread was descheduled (a gap between two checks
   * longer than PREEMPTED_MS), ends as a miss, and consecutive misses skip the next 1, 3, 7, ...
   * 63 completions' episodes (any hit resets that back-off).
   */
  #pollForWork(rings: readonly number[]): void {
    const bound = this.#pollBoundMs;
    if (bound === 0 || !(this.#gapAverageMs < bound)) return;
    if (this.#pollSkips > 0) {
      this.#pollSkips--;
      return;
    }
    const window = Math.min(bound, 2 * this.#gapAverageMs);
    let prev = performance.now();
    const episodeEnd = prev + MAX_POLL_EPISODE_MS;
    let deadline = this.#lastCompletionMs + window;
    for (;;) {
      const now = performance.now();
      if (now >= deadline || now >= episodeEnd || now - prev > PREEMPTED_MS) {
        this.pollMisses++;
        this.#pollBackoff = Math.min(this.#pollBackoff + 1, MAX_POLL_BACKOFF);
        this.#pollSkips = (1 << this.#pollBackoff) - 1;
        return;
      }
      prev = now;
      let found = -1;
      for (let k = 0; k < rings.length && found < 0; k++) {
        const q = this.#vrings[rings[k]!]!.queue;
        if (q !== null && q.hasAvailable()) found = rings[k]!;
      }
      if (found < 0) {
        yieldCpu();
        continue;
      }
      this.pollHits++;
      this.#pollBackoff = 0;
      this.#noteRequestGap();
      if (this.#serveQuietly(found) > 0) deadline = this.#lastCompletionMs + window;
      prev = performance.now();
    }
  }

  /**
   * A ring hit descriptor garbage: signal its error eventfd (SET_VRING_ERR; QEMU reports "vhost vring
   * error") and return the violation that closes the connection.
   */
  #ringError(v: Vring, message: string): VhostUserProtocolError {
    if (v.errFd >= 0) signalEventFd(v.errFd);
    return new VhostUserProtocolError(message);
  }

  #resetDevice(): void {
    for (let i = 0; i < this.#vrings.length; i++) this.#stopRing(i);
    this.#device.reset();
  }

  /** Releases everything: rings, eventfds, mappings, sessions (keys zeroed). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const v of this.#vrings) {
      v.queue = null;
      closeFd(v.kickFd);
      closeFd(v.callFd);
      closeFd(v.errFd);
      v.kickFd = v.callFd = v.errFd = -1;
    }
    this.#memory = null;
    try {
      this.#device.reset();
    } catch {
      // a device bug must not keep fds or mappings alive
    }
    for (const r of this.#regions) r.mapping.unmap();
    this.#regions = [];
  }
}

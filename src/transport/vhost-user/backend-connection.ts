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
 * rings for a short, adaptive window (backend-polling.ts, yielding the CPU between checks) with
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
 * Files: this one is the protocol handler (dispatch of each message) and the serve loop;
 * backend-memory-table.ts maps and checks SET_MEM_TABLE, backend-vrings.ts owns the vrings (and
 * serves them with the one queue-serving routine, src/virtqueue/serve-queue.ts), backend-polling.ts
 * decides the adaptive polling (pure, with an injected clock), backend-throttle.ts holds the QoS
 * token buckets (--throttle-ops/--throttle-bps: a data ring over the limit is left quiet, its
 * requests waiting in the ring, and poll(2) gets a timeout for when the bucket allows more).
 *
 * Untrusted input: every message passes the dispatch table (message-table.ts) before its handler;
 * handlers validate values (sizes, overflow, addresses inside the memory table, fd types). Any
 * violation throws VhostUserProtocolError; the worker then closes the connection with one log line
 * naming it, and `close()` releases every fd and mapping.
 */
import {
  VHOST_USER,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_PROTOCOL_F,
  VHOST_USER_REPLY_FLAGS,
  VHOST_USER_CRYPTO_SESSION_SIZE_V71,
  VHOST_USER_CRYPTO_SESSION_SIZE_V81,
} from '../../spec/vhost-user.js';
import { VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX } from '../../spec/virtio.js';
import { VIRTIO_CRYPTO_STATUS } from '../../spec/virtio-crypto.js';
import {
  decodeU64,
  decodeVringState,
  decodeVringAddr,
  decodeCryptoSession,
  encodeU64,
  encodeVringState,
  encodeMessage,
  encodeCryptoSessionReply,
  CryptoSessionParamError,
  cryptoSessionLayout,
  cryptoSessionOpCode,
  type VhostUserHeader,
  type CryptoSessionRequest,
} from '../../wire/vhost-user.js';
import type { DescriptorChain } from '../../virtqueue/chain.js';
import { DEVICE_RING_FEATURES, featureBit } from '../../virtqueue/ring-features.js';
import { DeviceStats, STAT, sourceBytes } from '../../device/device-stats.js';
import { closeFds, drainEventFd, PollSet, POLLIN } from '../../sys/fd.js';
import { yieldCpu } from '../../sys/sched.js';
import { MESSAGE_TABLE, VhostUserProtocolError, checkMessage, needsReply, requestName } from './message-table.js';
import { ConnectionClosed, type VhostUserChannel, type VhostUserMessage } from './channel.js';
import { BackendMemoryTable } from './backend-memory-table.js';
import { BackendVrings } from './backend-vrings.js';
import { AdaptivePolling, DEFAULT_POLL_MICROS } from './backend-polling.js';
import { ConnectionThrottle } from './backend-throttle.js';

export { DEFAULT_POLL_MICROS };

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
  /** Where the device counts requests, statuses and sessions (the serve routine counts into it too). */
  readonly stats?: DeviceStats;
}

export interface BackendConnectionOptions {
  /** Data queues served (vrings 0..N-1); vring N is the control queue. */
  readonly dataQueues: number;
  /** Debug detail (verbose mode): the message and structured fields. */
  readonly log: (msg: string, fields?: Record<string, unknown>) => void;
  /** Log every message received (vring index, session payload layout and op_code). */
  readonly verbose?: boolean;
  /** QoS (backend-throttle.ts): requests per second on the data queues; 0 or absent: unlimited. */
  readonly throttleOps?: number;
  /** QoS: source bytes per second on the data queues; 0 or absent: unlimited. */
  readonly throttleBps?: number;
  /**
   * Upper bound of the adaptive polling window after a completion, in microseconds (0: never poll,
   * always sleep in poll(2) until the next kick). Default DEFAULT_POLL_MICROS.
   */
  readonly pollMicros?: number;
}

/**
 * Virtio feature bits offered by GET_FEATURES: the ring features every device side offers
 * (INDIRECT_DESC, EVENT_IDX, VERSION_1) and PROTOCOL_FEATURES (docs/qemu-vhost-user-crypto.md §2:
 * 0x170000000). Never VHOST_F_LOG_ALL or ACCESS_PLATFORM.
 */
export const BACKEND_FEATURES = DEVICE_RING_FEATURES | featureBit(VHOST_USER_F_PROTOCOL_FEATURES);

/**
 * Protocol features: MQ (GET_QUEUE_NUM), REPLY_ACK, CRYPTO_SESSION. Never CONFIG (crashes QEMU
 * 7.2.0-7.2.2, docs/qemu-vhost-user-crypto.md §2), STATUS (QEMU 7.2 never reports DRIVER_OK), SLAVE_REQ or
 * CONFIGURE_MEM_SLOTS (not implemented).
 */
export const BACKEND_PROTOCOL_FEATURES =
  featureBit(VHOST_USER_PROTOCOL_F.MQ) | featureBit(VHOST_USER_PROTOCOL_F.REPLY_ACK) | featureBit(VHOST_USER_PROTOCOL_F.CRYPTO_SESSION);

export class VhostUserBackendConnection {
  readonly #channel: VhostUserChannel;
  readonly #device: BackendDeviceModel;
  readonly #opts: BackendConnectionOptions;
  readonly #memoryTable = new BackendMemoryTable();
  readonly #vrings: BackendVrings;
  readonly #polling: AdaptivePolling;
  readonly #throttle: ConnectionThrottle | null;
  #features = 0n;
  #protocolFeatures = 0n;
  #closed = false;
  /** Statistics of this connection (the device model's, or a private block). */
  readonly stats: DeviceStats;
  /** Requests served (for tests and the closing log line). */
  messages = 0;

  constructor(channel: VhostUserChannel, device: BackendDeviceModel, opts: BackendConnectionOptions) {
    this.#channel = channel;
    this.#device = device;
    this.#opts = opts;
    this.stats = device.stats ?? new DeviceStats(new ArrayBuffer(DeviceStats.byteLength()));
    this.#polling = new AdaptivePolling(opts.pollMicros ?? DEFAULT_POLL_MICROS, { now: () => performance.now(), yieldCpu });
    const throttle = opts.throttleOps || opts.throttleBps ? new ConnectionThrottle({ ops: opts.throttleOps ?? 0, bps: opts.throttleBps ?? 0 }, () => performance.now()) : null;
    this.#throttle = throttle;
    const values = this.stats.values;
    this.#vrings = new BackendVrings({
      count: opts.dataQueues + 1,
      processControl: (chain) => device.processControl(chain),
      processData:
        throttle === null
          ? (chain) => device.processData(chain)
          : (chain) => {
              // Charge the request's source bytes, as the device counted them (src_data_len).
              const before = sourceBytes(values);
              const used = device.processData(chain);
              throttle.take(sourceBytes(values) - before);
              return used;
            },
      eventIdx: () => this.#eventIdx,
      stats: this.stats,
      ...(throttle !== null ? { admit: () => throttle.ready() } : {}),
    });
  }

  get vringCount(): number {
    return this.#vrings.count;
  }

  /** Polling episodes that found work / ran out (for tests and measurements). */
  get pollHits(): number {
    return this.#polling.hits;
  }

  get pollMisses(): number {
    return this.#polling.misses;
  }

  /** EVENT_IDX: always, except when a front-end negotiated VERSION_1 features without it (ours may). */
  get #eventIdx(): boolean {
    const f = this.#features;
    return (f & featureBit(VIRTIO_F_VERSION_1)) === 0n || (f & featureBit(VIRTIO_RING_F_EVENT_IDX)) !== 0n;
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
    const vrings = this.#vrings;
    const polling = this.#polling;
    const stats = this.stats.values;
    const findWork = (): number => {
      for (let k = 0; k < started.length; k++) if (vrings.hasAvailable(started[k]!)) return started[k]!;
      return -1;
    };
    const servePolled = (index: number): number => {
      const n = vrings.drain(index);
      if (n > 0) {
        stats[STAT['polled-requests']]! += n;
        polling.noteCompletion();
      }
      return n;
    };
    const throttle = this.#throttle;
    let waitingSince = -1;
    let stale = true;
    for (;;) {
      if (stale) {
        started.length = 0;
        const polls = [
          { fd: this.#channel.socket.fd, events: POLLIN },
          { fd: stopFd, events: POLLIN },
        ];
        for (let i = 0; i < vrings.count; i++) {
          const fd = vrings.kickFdToPoll(i);
          if (fd >= 0) {
            started.push(i);
            polls.push({ fd, events: POLLIN });
          }
        }
        pollSet.set(polls);
        stale = false;
      }
      // QoS: a ring stopped by the token bucket is served again when the bucket allows (the kick
      // and socket fds still wake us before that).
      let timeout = -1;
      if (throttle !== null && this.#anyThrottled(started)) {
        timeout = Math.max(1, Math.ceil(throttle.waitMs()));
        if (waitingSince < 0) {
          waitingSince = performance.now();
          stats[STAT['throttle-waits']]! += 1;
        }
      }
      pollSet.wait(timeout);
      if (pollSet.revents(1) !== 0) return 'stopped';
      let served = 0;
      for (let k = 0; k < started.length; k++) {
        if (pollSet.revents(k + 2) === 0) continue;
        const index = started[k]!;
        try {
          drainEventFd(vrings.kickFd(index));
        } catch {
          throw new VhostUserProtocolError(`vring ${index}: kick fd is unreadable`);
        }
        stats[STAT.kicks]! += 1;
        if (served === 0) polling.noteRequest();
        const n = vrings.drain(index);
        if (n > 0) {
          served += n;
          polling.noteCompletion();
        }
      }
      // Rings served above still have notifications disabled: poll them for a short while (the
      // guest's next request needs no kick), then re-enable and re-check (§2.7.10) before sleeping.
      // (Not while throttled: the polled requests would have to wait anyway.)
      if (served > 0 && (throttle === null || !this.#anyThrottled(started))) polling.episode(findWork, servePolled);
      for (let k = 0; k < started.length; k++) if (vrings.isQuiet(started[k]!)) vrings.serve(started[k]!);
      if (waitingSince >= 0 && !this.#anyThrottled(started)) {
        stats[STAT['throttle-wait-seconds']]! += (performance.now() - waitingSince) / 1000;
        waitingSince = -1;
      }
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

  #anyThrottled(rings: readonly number[]): boolean {
    for (let k = 0; k < rings.length; k++) if (this.#vrings.isThrottled(rings[k]!)) return true;
    return false;
  }

  /** Applies the dispatch table, then the handler. Takes ownership of `msg.fds`. */
  handle(msg: VhostUserMessage): void {
    const { header, payload, fds } = msg;
    if (this.#opts.verbose) this.#logMessage(header, payload, fds.length);
    let spec;
    try {
      spec = checkMessage(header, payload, fds.length, this.#vrings.count);
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

  /**
   * --verbose: the request, its flags, size and fds, the vring it addresses, and for
   * CREATE_CRYPTO_SESSION the payload layout (QEMU 7.1-8.0: 632 bytes; 8.1+: 1072 bytes with an
   * op_code) and op_code. Read before validation, so only what the bytes present say.
   */
  #logMessage(header: VhostUserHeader, payload: Uint8Array, fdCount: number): void {
    const name = requestName(header.request);
    const fields: Record<string, unknown> = { request: name, flags: header.flags, size: header.size, fds: fdCount };
    let detail = '';
    const spec = MESSAGE_TABLE.get(header.request);
    const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
    if (spec !== undefined && spec.vringIndex !== 'none' && payload.length >= 4) {
      const vring = spec.vringIndex === 'file' ? dv.getUint8(0) : dv.getUint32(0, true);
      fields.vring = vring;
      detail += ` vring ${vring}`;
    }
    if (header.request === VHOST_USER.CREATE_CRYPTO_SESSION) {
      const layout = cryptoSessionLayout(payload.length);
      fields.sessionLayout = layout ?? 'unknown';
      const described =
        layout === 'qemu-7.1'
          ? `QEMU 7.1-8.0 (${VHOST_USER_CRYPTO_SESSION_SIZE_V71} bytes)`
          : layout === 'qemu-8.1'
            ? `QEMU 8.1+ (${VHOST_USER_CRYPTO_SESSION_SIZE_V81} bytes)`
            : `unknown (${payload.length} bytes)`;
      detail += ` session layout ${described}`;
      const opCode = cryptoSessionOpCode(payload);
      if (opCode !== undefined) {
        fields.opCode = opCode;
        detail += ` op_code 0x${opCode.toString(16).padStart(4, '0')}`;
      }
    }
    this.#opts.log(`<- ${name} flags 0x${header.flags.toString(16)} size ${header.size} fds ${fdCount}${detail}`, fields);
  }

  #hasProtocolFeature(bit: number): boolean {
    return (this.#protocolFeatures & featureBit(bit)) !== 0n;
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
        this.#vrings.stopAll();
        this.#device.reset();
        return true;
      case VHOST_USER.SET_MEM_TABLE:
        // Running rings move to the new table (their addresses must still be mapped there).
        this.#memoryTable.replace(payload, fds, (memory) => this.#vrings.prepareMove(memory)());
        return true;
      case VHOST_USER.SET_VRING_NUM: {
        const { index, num } = decodeVringState(payload);
        this.#vrings.setNum(index, num);
        return true;
      }
      case VHOST_USER.SET_VRING_BASE: {
        const { index, num } = decodeVringState(payload);
        this.#vrings.setBase(index, num);
        return true;
      }
      case VHOST_USER.SET_VRING_ADDR:
        this.#vrings.setAddr(decodeVringAddr(payload), this.#memoryTable.memory);
        return true;
      case VHOST_USER.GET_VRING_BASE: {
        const { index } = decodeVringState(payload);
        const base = this.#vrings.stop(index);
        this.#reply(header, encodeVringState({ index, num: base }));
        return true;
      }
      case VHOST_USER.SET_VRING_KICK:
      case VHOST_USER.SET_VRING_CALL:
      case VHOST_USER.SET_VRING_ERR:
        this.#vrings.setFile(header.request, payload, fds, this.#memoryTable.memory);
        return true;
      case VHOST_USER.SET_VRING_ENABLE: {
        const { index, num } = decodeVringState(payload);
        if (num > 1) throw new VhostUserProtocolError(`SET_VRING_ENABLE: vring ${index} state ${num} is not 0 or 1`);
        this.#vrings.enable(index, num === 1);
        return true;
      }
      case VHOST_USER.CREATE_CRYPTO_SESSION:
        return this.#createSession(header, payload);
      case VHOST_USER.CLOSE_CRYPTO_SESSION:
        // No reply: QEMU does not read one (docs/qemu-vhost-user-crypto.md §4); unknown ids are ignored.
        this.#device.closeSession(BigInt.asIntN(64, decodeU64(payload)));
        return true;
      default:
        throw new VhostUserProtocolError(`${requestName(header.request)}: in the table but not handled`);
    }
  }

  #createSession(header: VhostUserHeader, payload: Uint8Array): boolean {
    let request: CryptoSessionRequest | undefined;
    let id: bigint;
    try {
      request = decodeCryptoSession(payload);
      id = this.#device.createSessionFromMessage(request);
    } catch (err) {
      if (!(err instanceof CryptoSessionParamError)) throw err;
      id = -BigInt(VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_ERR); // a bad request, not a broken connection
    } finally {
      payload.fill(0); // the payload held key material
      if (request?.kind === 'sym') {
        request.sym.key.fill(0);
        request.sym.authKey.fill(0);
      }
    }
    // The table admitted only the two sizes (message-table.ts): the reply uses the request's layout.
    const layout = cryptoSessionLayout(payload.length) ?? 'qemu-8.1';
    const opCode = request !== undefined && request.layout === 'qemu-8.1' ? request.opCode : 0;
    this.#reply(header, encodeCryptoSessionReply(layout, id, opCode));
    return id >= 0n;
  }

  /** Releases everything: rings, eventfds, mappings, sessions (keys zeroed). Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#vrings.close();
    try {
      this.#device.reset();
    } catch {
      // a device bug must not keep fds or mappings alive
    }
    this.#memoryTable.close();
  }
}

/**
 * Our driver as a vhost-user FRONT-END (QEMU's role): a `VirtioTransport` whose guest memory is a
 * memfd shared with the back-end (`vcrypto device --socket PATH`), whose rings are announced with
 * SET_MEM_TABLE / SET_VRING_*, and whose kicks and interrupts are eventfds.
 *
 * - Status is kept locally (vhost-user has no status register without F_STATUS). At DRIVER_OK the
 *   transport sends SET_FEATURES, SET_MEM_TABLE and, per queue the back-end serves,
 *   SET_VRING_NUM/BASE/ADDR/CALL/KICK. With REPLY_ACK every one of them asks for an ack, so a refusal
 *   fails DRIVER_OK instead of a later request.
 * - Sessions (`sessions` option), by default as QEMU does it (the contract every vhost-user crypto
 *   back-end implements, e.g. DPDK's vhost_crypto): the back-end needs
 *   VHOST_USER_PROTOCOL_F_CRYPTO_SESSION and sees only the data queues; this transport serves the
 *   control queue itself and turns its requests into VHOST_USER_CREATE_CRYPTO_SESSION /
 *   CLOSE_CRYPTO_SESSION (frontend-sessions.ts), in QEMU 7.1-8.0's 632-byte layout ('qemu-7.1',
 *   the default: QEMU 7.2's) or 8.1+'s 1072-byte one ('qemu-8.1'); nothing in the protocol tells
 *   which one a back-end expects. Like QEMU, only cipher and chaining sessions exist that way.
 *   'controlq' is our extension, for `vcrypto device` only: the control queue is a vring of the
 *   back-end like the data queues, and every session kind (hash, MAC, AEAD) works.
 * - readConfig(): vhost-user gives no config space here (we never negotiate F_CONFIG, which crashes
 *   QEMU 7.2.0-7.2.2), so the transport synthesizes the one our back-end's device model has: the
 *   configSpace() of a VirtioCryptoDevice with max_dataqueues = GET_QUEUE_NUM. DEVIATION: against a
 *   foreign back-end this config is an assumption, not a reading.
 * - Interrupts: an InterruptWaiter (../interrupt-waiter.ts): one poll(2) on a koffi async thread waits on every call eventfd, a wake eventfd and
 *   the socket (hang-up = the back-end is gone → onFailure). The wait runs only while the driver has
 *   work in flight (`hold()`/`release()`), so an idle device lets the process exit. koffi runs the
 *   wait on libuv's threadpool (UV_THREADPOOL_SIZE, default 4): each busy device holds one thread.
 * - notify() writes the queue's kick eventfd: one syscall, never blocks.
 *
 * Ownership: the transport owns the socket, the memfd and its mapping, and every eventfd it created;
 * close() releases them (the back-end has its own duplicates).
 */
import { statusTransition } from '../device-status.js';
import { InterruptWaiter } from '../interrupt-waiter.js';
import type { DriverMemory, QueueAddresses, VirtioTransport } from '../../driver/virtio-transport.js';
import { VirtioCryptoDevice } from '../../device/virtio-crypto-device.js';
import {
  VHOST_USER,
  VHOST_USER_VERSION,
  VHOST_USER_NEED_REPLY_MASK,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_PROTOCOL_F,
  VHOST_CRYPTO_SYM_CIPHER_MAX_KEY_LEN,
  VHOST_CRYPTO_SYM_HMAC_MAX_KEY_LEN,
} from '../../spec/vhost-user.js';
import {
  encodeCryptoSession,
  decodeCryptoSessionReply,
  encodeMessage,
  encodeU64,
  decodeU64,
  encodeVringState,
  decodeVringState,
  encodeVringAddr,
  encodeVringFile,
  encodeMemoryTable,
} from '../../wire/vhost-user.js';
import { connectUnix, type UnixSocket } from '../../sys/unix-socket.js';
import { createMemfd, mapShared, type Mapping } from '../../sys/memfd.js';
import { createEventFd, signalEventFd, drainEventFd, closeFd, closeFds, PollSet, POLLIN, POLLHUP, POLLERR } from '../../sys/fd.js';
import { completionSpinFor } from '../spare-cpu.js';
import { VhostUserChannel } from './channel.js';
import { requestName } from './message-table.js';
import { sessionActionFor, statusForSessionReply } from './frontend-sessions.js';
import { GuestMemory } from '../../memory/guest-memory.js';
import { DeviceQueue } from '../../virtqueue/device-queue.js';
import { checkRingAlignment, ringSizes } from '../../virtqueue/layout.js';
import type { DescriptorChain } from '../../virtqueue/chain.js';
import { VIRTIO_RING_F_EVENT_IDX } from '../../spec/virtio.js';
import { VIRTIO_CRYPTO_CTRL_OPCODE, VIRTIO_CRYPTO_STATUS } from '../../spec/virtio-crypto.js';
import {
  CREATE_SESSION_INPUT_SIZE,
  DESTROY_SESSION_INPUT_SIZE,
  OP_CTRL_REQ_SIZE,
  encodeCreateSessionInput,
  encodeDestroySessionInput,
} from '../../wire/virtio-crypto.js';

/** Guest-physical address of our memory (deliberately unlike its user address: translation is tested). */
export const FRONTEND_GUEST_PHYS_BASE = 0x4000_0000n;
/** 64 MiB for rings and ordinary requests plus one request of the device's max_size (512 MiB + 128): a sparse memfd, pages are committed on first touch. */
export const DEFAULT_FRONTEND_MEMORY_BYTES = 64 * 1024 * 1024 + 512 * 1024 * 1024 + 64 * 1024;
/** Largest queue the transport offers the driver (QEMU uses 1024 for virtio-crypto). */
export const FRONTEND_QUEUE_MAX_SIZE = 1024;
const REPLY_TIMEOUT_MS = 10_000;
/**
 * Bound of the driver's spin on the used rings after a kick (completion-spin.ts), in µs: the
 * back-end answers a small request in tens of µs, and polls its avail rings meanwhile
 * (backend-polling.ts), so one request at a time needs neither a kick nor a call.
 */
export const FRONTEND_SPIN_MICROS = 100;
const POLLRDHUP = 0x2000;

const WANTED_PROTOCOL_FEATURES =
  (1n << BigInt(VHOST_USER_PROTOCOL_F.MQ)) |
  (1n << BigInt(VHOST_USER_PROTOCOL_F.REPLY_ACK)) |
  (1n << BigInt(VHOST_USER_PROTOCOL_F.CRYPTO_SESSION));

/**
 * How sessions are created (see the file comment): QEMU's contract with the 632-byte (QEMU 7.1-8.0)
 * or 1072-byte (8.1+) CREATE_CRYPTO_SESSION payload, or our control-queue extension.
 */
export type VhostUserSessionMode = 'qemu-7.1' | 'qemu-8.1' | 'controlq';
export const VHOST_USER_SESSION_MODES: readonly VhostUserSessionMode[] = ['qemu-7.1', 'qemu-8.1', 'controlq'];
export const DEFAULT_VHOST_USER_SESSION_MODE: VhostUserSessionMode = 'qemu-7.1';

export interface FrontendTransportOptions {
  /** Guest memory bytes (rings + request buffers). Default DEFAULT_FRONTEND_MEMORY_BYTES. */
  readonly memoryBytes?: number;
  /** How sessions are created; default 'qemu-7.1' (QEMU's contract, QEMU 7.2's layout). */
  readonly sessions?: VhostUserSessionMode;
}

/** The most a control request's readable part holds: the 72-byte request and both keys. */
const MAX_CONTROL_REQUEST = OP_CTRL_REQ_SIZE + VHOST_CRYPTO_SYM_CIPHER_MAX_KEY_LEN + VHOST_CRYPTO_SYM_HMAC_MAX_KEY_LEN;

export class VhostUserFrontendTransport implements VirtioTransport {
  readonly description: string;
  readonly memory: DriverMemory;
  readonly #channel: VhostUserChannel;
  readonly #socket: UnixSocket;
  readonly #memfd: number;
  readonly #mapping: Mapping;
  readonly #deviceFeatures: bigint;
  readonly #protocolFeatures: bigint;
  readonly #dataQueues: number;
  readonly #queues = new Map<number, QueueAddresses>();
  readonly #kickFds = new Map<number, number>();
  readonly #callFds = new Map<number, number>();
  readonly #waiter: InterruptWaiter;
  /** The call eventfds of the wait in progress (fds() and handle() see the same list). */
  #waitingOn: [number, number][] = [];
  readonly #sessions: VhostUserSessionMode;
  /** Message mode: the control queue, served here (QEMU's role). */
  #controlQueue: DeviceQueue | undefined;
  #controlServing = false;
  #controlAgain = false;
  #driverFeatures = 0n;
  #status = 0;
  #started = false;
  #interrupt: ((index: number) => void) | undefined;
  #failure: ((error: Error) => void) | undefined;
  #failed = false;
  #closed = false;
  /** waitForInterrupt's poll set (its pollfd array and timespec are reused from call to call). */
  readonly #syncPoll = new PollSet();
  /** The driver's spin-then-sleep after a kick (VCRYPTO_POLL: auto, always, never). */
  readonly completionSpin: { readonly boundMicros: number; readonly cpuSpare: () => boolean };
  /** Serializes socket exchanges (one request/reply at a time, as vhost-user requires). */
  #exchange: Promise<unknown> = Promise.resolve();

  private constructor(init: {
    path: string;
    socket: UnixSocket;
    memfd: number;
    mapping: Mapping;
    deviceFeatures: bigint;
    protocolFeatures: bigint;
    dataQueues: number;
    channel: VhostUserChannel;
    sessions: VhostUserSessionMode;
  }) {
    this.description = `vhost-user:${init.path}`;
    this.#sessions = init.sessions;
    this.#socket = init.socket;
    this.#channel = init.channel;
    this.#memfd = init.memfd;
    this.#mapping = init.mapping;
    this.#deviceFeatures = init.deviceFeatures;
    this.#protocolFeatures = init.protocolFeatures;
    this.#dataQueues = init.dataQueues;
    this.memory = { guestPhysAddr: FRONTEND_GUEST_PHYS_BASE, bytes: new Uint8Array(init.mapping.buffer) };
    this.completionSpin = completionSpinFor(FRONTEND_SPIN_MICROS);
    this.#waiter = new InterruptWaiter({
      ready: () => this.#started && !this.#failed && !this.#closed,
      fds: () => {
        this.#waitingOn = [...this.#callFds.entries()];
        return [{ fd: this.#socket.fd, events: POLLRDHUP }, ...this.#waitingOn.map(([, fd]) => ({ fd, events: POLLIN }))];
      },
      timeoutMs: () => -1,
      handle: (revents) => {
        if (((revents[0] ?? 0) & (POLLRDHUP | POLLHUP | POLLERR)) !== 0) {
          this.#fail(new Error(`${this.description}: the back-end closed the connection`));
          return;
        }
        this.#waitingOn.forEach(([index, fd], k) => {
          if ((revents[k + 1] ?? 0) === 0) return;
          drainEventFd(fd);
          this.#interrupt?.(index);
        });
      },
      onError: (err) => this.#fail(err),
    });
  }

  /** Connects, negotiates protocol features, SET_OWNER. Throws with the back-end's failure named. */
  static async connect(path: string, opts: FrontendTransportOptions = {}): Promise<VhostUserFrontendTransport> {
    const memoryBytes = opts.memoryBytes ?? DEFAULT_FRONTEND_MEMORY_BYTES;
    const sessions = opts.sessions ?? DEFAULT_VHOST_USER_SESSION_MODE;
    if (!VHOST_USER_SESSION_MODES.includes(sessions)) throw new Error(`unknown session mode '${String(sessions)}' (${VHOST_USER_SESSION_MODES.join(', ')})`);
    const socket = connectUnix(path);
    let memfd = -1;
    let mapping: Mapping | undefined;
    try {
      const channel = new VhostUserChannel(socket);
      const call = async (request: number, payload?: Uint8Array): Promise<Uint8Array> => {
        channel.writeSync(encodeMessage(request, VHOST_USER_VERSION, payload));
        return readReply(channel, request);
      };
      const features = decodeU64(await call(VHOST_USER.GET_FEATURES));
      let protocolFeatures = 0n;
      let dataQueues = 1;
      if ((features & (1n << BigInt(VHOST_USER_F_PROTOCOL_FEATURES))) !== 0n) {
        protocolFeatures = decodeU64(await call(VHOST_USER.GET_PROTOCOL_FEATURES)) & WANTED_PROTOCOL_FEATURES;
        channel.writeSync(encodeMessage(VHOST_USER.SET_PROTOCOL_FEATURES, VHOST_USER_VERSION, encodeU64(protocolFeatures)));
        if ((protocolFeatures & (1n << BigInt(VHOST_USER_PROTOCOL_F.MQ))) !== 0n) {
          const n = decodeU64(await call(VHOST_USER.GET_QUEUE_NUM));
          if (n < 1n || n > 255n) throw new Error(`GET_QUEUE_NUM: ${n} data queues`);
          dataQueues = Number(n);
        }
      }
      if (sessions !== 'controlq' && (protocolFeatures & (1n << BigInt(VHOST_USER_PROTOCOL_F.CRYPTO_SESSION))) === 0n) {
        throw new Error(
          'the back-end does not offer VHOST_USER_PROTOCOL_F_CRYPTO_SESSION, so sessions cannot be created ' +
            "(a 'vcrypto device' back-end can serve the control queue instead: VCRYPTO_VHOST_USER_SESSIONS=controlq)",
        );
      }
      channel.writeSync(encodeMessage(VHOST_USER.SET_OWNER, VHOST_USER_VERSION));
      memfd = createMemfd('vcrypto-guest', memoryBytes);
      mapping = mapShared(memfd, memoryBytes);
      return new VhostUserFrontendTransport({
        path,
        socket,
        memfd,
        mapping,
        deviceFeatures: features & ~(1n << BigInt(VHOST_USER_F_PROTOCOL_FEATURES)),
        protocolFeatures,
        dataQueues,
        channel,
        sessions,
      });
    } catch (err) {
      mapping?.unmap();
      closeFd(memfd);
      socket.close();
      throw err;
    }
  }

  get dataQueues(): number {
    return this.#dataQueues;
  }

  /** How this transport creates sessions. */
  get sessionMode(): VhostUserSessionMode {
    return this.#sessions;
  }

  async getDeviceFeatures(): Promise<bigint> {
    return this.#deviceFeatures;
  }

  async setDriverFeatures(features: bigint): Promise<void> {
    this.#driverFeatures = features;
  }

  async getStatus(): Promise<number> {
    return this.#status;
  }

  async setStatus(status: number): Promise<void> {
    this.#checkOpen();
    const t = statusTransition(this.#status, status, () => (this.#driverFeatures & ~this.#deviceFeatures) === 0n);
    if (t.reset) {
      await this.#stopRings();
      this.#status = 0;
      this.#queues.clear();
      return;
    }
    if (t.activate) await this.#start();
    this.#status = t.next;
  }

  async readConfig(): Promise<Uint8Array> {
    return new VirtioCryptoDevice({ maxDataQueues: this.#dataQueues }).configSpace();
  }

  async getQueueMaxSize(index: number): Promise<number> {
    // Queues 0..N-1 are data queues, N is the controlq (§5.9.2).
    return Number.isInteger(index) && index >= 0 && index <= this.#dataQueues ? FRONTEND_QUEUE_MAX_SIZE : 0;
  }

  async setupQueue(index: number, queue: QueueAddresses): Promise<void> {
    if ((await this.getQueueMaxSize(index)) === 0) throw new RangeError(`queue ${index} does not exist`);
    this.#queues.set(index, queue);
  }

  notify(index: number): void {
    if (index === this.#dataQueues && this.#sessions !== 'controlq') {
      // The control queue is ours to serve (QEMU's role); not inside the driver's flush.
      queueMicrotask(() => void this.#serveControl());
      return;
    }
    const fd = this.#kickFds.get(index);
    if (fd !== undefined) signalEventFd(fd);
  }

  onInterrupt(handler: (index: number) => void): void {
    this.#interrupt = handler;
  }

  onFailure(handler: (error: Error) => void): void {
    this.#failure = handler;
  }

  /**
   * Blocks this thread in ppoll(2) on the call eventfds (and the socket) for at most `timeoutMs`:
   * the back-end's call wakes it directly, without the wait thread's hop to the event loop.
   * Delivers what came; true if a call came.
   */
  waitForInterrupt(timeoutMs: number): boolean {
    if (!this.#started || this.#failed || this.#closed) return false;
    const calls = [...this.#callFds.entries()];
    const set = this.#syncPoll;
    set.set([{ fd: this.#socket.fd, events: POLLRDHUP }, ...calls.map(([, fd]) => ({ fd, events: POLLIN }))]);
    set.waitMicros(timeoutMs * 1000);
    if ((set.revents(0) & (POLLRDHUP | POLLHUP | POLLERR)) !== 0) {
      this.#fail(new Error(`${this.description}: the back-end closed the connection`));
      return false;
    }
    let called = false;
    calls.forEach(([index, fd], k) => {
      if (set.revents(k + 1) === 0) return;
      drainEventFd(fd);
      called = true;
      this.#interrupt?.(index);
    });
    return called;
  }

  /** Keep waiting for interrupts (work is in flight). Nested. */
  hold(): void {
    this.#waiter.hold();
  }

  /** No work in flight: stop waiting, so an idle process can exit. */
  release(): void {
    this.#waiter.release();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#waiter.close();
    await this.#exchange.catch(() => undefined);
    this.#socket.close(); // the back-end sees EOF and releases its side
    closeFds(this.#kickFds.values());
    closeFds(this.#callFds.values());
    this.#kickFds.clear();
    this.#callFds.clear();
    this.#mapping.unmap();
    closeFd(this.#memfd);
  }

  // ----------------------------------------------------------------------------------------------

  #checkOpen(): void {
    if (this.#closed) throw new Error('vhost-user transport is closed');
    if (this.#failed) throw new Error('vhost-user back-end connection failed');
  }

  get #replyAck(): boolean {
    return (this.#protocolFeatures & (1n << BigInt(VHOST_USER_PROTOCOL_F.REPLY_ACK))) !== 0n;
  }

  /**
   * Sends one request (+fds) and, by `reply`: 'ack' awaits the REPLY_ACK when negotiated, 'own'
   * awaits and returns the request's own reply, 'none' expects nothing (CLOSE_CRYPTO_SESSION, as QEMU).
   * `secret`: the payload holds key material; the encoded message is zeroed once written.
   */
  #send(request: number, payload: Uint8Array | undefined, fds: readonly number[] = [], reply: 'ack' | 'own' | 'none' = 'ack', secret = false): Promise<Uint8Array | null> {
    const run = async (): Promise<Uint8Array | null> => {
      const ack = reply === 'ack' && this.#replyAck;
      const message = encodeMessage(request, VHOST_USER_VERSION | (ack ? VHOST_USER_NEED_REPLY_MASK : 0), payload);
      try {
        this.#channel.writeSync(message, fds);
      } finally {
        if (secret) message.fill(0);
      }
      if (!ack && reply !== 'own') return null;
      const answer = await readReply(this.#channel, request);
      if (ack && decodeU64(answer) !== 0n) throw new Error(`${requestName(request)} refused by the back-end`);
      return answer;
    };
    const p = this.#exchange.then(run, run);
    this.#exchange = p.catch(() => undefined);
    return p;
  }

  async #start(): Promise<void> {
    // The vhost-user feature bit travels with the virtio features (vhost-user.rst SET_FEATURES).
    const features = this.#driverFeatures | (this.#protocolFeatures !== 0n ? 1n << BigInt(VHOST_USER_F_PROTOCOL_FEATURES) : 0n);
    await this.#send(VHOST_USER.SET_FEATURES, encodeU64(features));
    const region = {
      guestPhysAddr: FRONTEND_GUEST_PHYS_BASE,
      memorySize: BigInt(this.#mapping.length),
      userspaceAddr: this.#mapping.address,
      mmapOffset: 0n,
    };
    await this.#send(VHOST_USER.SET_MEM_TABLE, encodeMemoryTable([region]), [this.#memfd]);
    // Ring addresses are OUR virtual addresses (vhost-user.rst: user addresses without an IOMMU).
    const toUser = (gpa: bigint) => this.#mapping.address + (gpa - FRONTEND_GUEST_PHYS_BASE);
    for (const [index, q] of [...this.#queues.entries()].sort((a, b) => a[0] - b[0])) {
      if (index === this.#dataQueues && this.#sessions !== 'controlq') {
        this.#controlQueue = this.#localQueue(q);
        continue;
      }
      let call = this.#callFds.get(index);
      if (call === undefined) this.#callFds.set(index, (call = createEventFd()));
      let kick = this.#kickFds.get(index);
      if (kick === undefined) this.#kickFds.set(index, (kick = createEventFd()));
      await this.#send(VHOST_USER.SET_VRING_NUM, encodeVringState({ index, num: q.size }));
      await this.#send(VHOST_USER.SET_VRING_BASE, encodeVringState({ index, num: 0 }));
      await this.#send(
        VHOST_USER.SET_VRING_ADDR,
        encodeVringAddr({
          index,
          flags: 0,
          descUserAddr: toUser(q.descAddr),
          usedUserAddr: toUser(q.usedAddr),
          availUserAddr: toUser(q.availAddr),
          logGuestAddr: q.usedAddr,
        }),
      );
      await this.#send(VHOST_USER.SET_VRING_CALL, encodeVringFile(index, false), [call]);
      await this.#send(VHOST_USER.SET_VRING_KICK, encodeVringFile(index, false), [kick]);
    }
    this.#started = true;
    this.#waiter.start();
  }

  /** Device reset: stop every ring (GET_VRING_BASE); the back-end forgets them until restarted. */
  async #stopRings(): Promise<void> {
    this.#controlQueue = undefined;
    if (!this.#started) return;
    this.#started = false;
    for (const index of [...this.#kickFds.keys()].sort((a, b) => a - b)) {
      const reply = await this.#send(VHOST_USER.GET_VRING_BASE, encodeVringState({ index, num: 0 }), [], 'own');
      if (reply === null || decodeVringState(reply).index !== index) throw new Error(`GET_VRING_BASE ${index}: bad reply`);
    }
  }

  /** The control queue as a device-side queue over our own memory (message mode). */
  #localQueue(q: QueueAddresses): DeviceQueue {
    const memory = new GuestMemory([{ guestPhysAddr: FRONTEND_GUEST_PHYS_BASE, bytes: this.memory.bytes }]);
    checkRingAlignment(q.descAddr, q.availAddr, q.usedAddr);
    const sizes = ringSizes(q.size);
    return new DeviceQueue({
      size: q.size,
      desc: memory.view(q.descAddr, sizes.descBytes),
      avail: memory.view(q.availAddr, sizes.availBytes),
      used: memory.view(q.usedAddr, sizes.usedBytes),
      memory,
      eventIdx: (this.#driverFeatures & (1n << BigInt(VIRTIO_RING_F_EVENT_IDX))) !== 0n,
      maxChainBytes: MAX_CONTROL_REQUEST + 4096,
    });
  }

  /**
   * Serves the control queue (message mode): each request becomes a session message, one at a time
   * (vhost-user is strictly request/reply), in ring order; then the driver is interrupted.
   */
  async #serveControl(): Promise<void> {
    if (this.#controlServing) {
      this.#controlAgain = true;
      return;
    }
    this.#controlServing = true;
    try {
      do {
        this.#controlAgain = false;
        const q = this.#controlQueue;
        if (q === undefined || this.#closed || this.#failed) return;
        let served = 0;
        for (;;) {
          for (;;) {
            const popped = q.popChain();
            if (popped === null) break;
            const len = popped.ok ? await this.#controlRequest(popped.chain) : 0;
            if (this.#controlQueue !== q) return; // reset meanwhile
            q.addUsed(popped.ok ? popped.chain.head : popped.head, len);
            served++;
          }
          // §2.7.10: re-enable notifications, then re-check, or a request can slip by without a kick.
          if (!q.enableNotifications()) break;
        }
        if (served > 0) {
          q.publishUsed();
          this.#interrupt?.(this.#dataQueues);
        }
      } while (this.#controlAgain);
    } catch (err) {
      // A broken control ring (only our own driver writes it) or a failed exchange with the back-end.
      this.#failed = true;
      this.#failure?.(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.#controlServing = false;
    }
  }

  /** One control request: returns the bytes written (used.len). */
  async #controlRequest(chain: DescriptorChain): Promise<number> {
    const req = new Uint8Array(Math.min(chain.readableLength, MAX_CONTROL_REQUEST));
    let at = 0;
    for (const b of chain.readable) {
      if (at >= req.length) break;
      const n = Math.min(b.length, req.length - at);
      req.set(b.subarray(0, n), at);
      at += n;
    }
    const action = sessionActionFor(req);
    req.fill(0); // it held the keys
    const out = new Uint8Array(CREATE_SESSION_INPUT_SIZE);
    let outLen: number;
    switch (action.kind) {
      case 'answer':
        if (action.create) {
          encodeCreateSessionInput({ sessionId: 0n, status: action.status }, out);
          outLen = CREATE_SESSION_INPUT_SIZE;
        } else {
          encodeDestroySessionInput(action.status, out); // one status byte, as for a destroy
          outLen = DESTROY_SESSION_INPUT_SIZE;
        }
        break;
      case 'close':
        // vhost-user.rst / QEMU: no reply; the guest is told OK once the message is written.
        await this.#send(VHOST_USER.CLOSE_CRYPTO_SESSION, encodeU64(action.sessionId), [], 'none');
        encodeDestroySessionInput(VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_OK, out);
        outLen = DESTROY_SESSION_INPUT_SIZE;
        break;
      case 'create': {
        const layout = this.#sessions === 'qemu-8.1' ? 'qemu-8.1' : 'qemu-7.1';
        const payload = encodeCryptoSession(layout, action.sym, VIRTIO_CRYPTO_CTRL_OPCODE.VIRTIO_CRYPTO_CIPHER_CREATE_SESSION);
        action.sym.key.fill(0);
        action.sym.authKey.fill(0);
        let reply: Uint8Array | null;
        try {
          reply = await this.#send(VHOST_USER.CREATE_CRYPTO_SESSION, payload, [], 'own', true);
        } finally {
          payload.fill(0);
        }
        // The reply has the request's size (QEMU checks it); its session_id: >= 0 the id, < 0 a failure.
        let sessionId = -BigInt(VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_ERR);
        if (reply !== null && reply.length === payload.length) sessionId = decodeCryptoSessionReply(reply);
        reply?.fill(0); // a back-end may echo the request, keys included
        const status = statusForSessionReply(sessionId);
        encodeCreateSessionInput({ sessionId: status === VIRTIO_CRYPTO_STATUS.VIRTIO_CRYPTO_OK ? sessionId : 0n, status }, out);
        outLen = CREATE_SESSION_INPUT_SIZE;
        break;
      }
    }
    // The answer goes to the first writable bytes (§5.9.7.2.1), whatever the buffers' split.
    let written = 0;
    for (const b of chain.writable) {
      if (written >= outLen) break;
      const n = Math.min(b.length, outLen - written);
      b.set(out.subarray(written, written + n));
      written += n;
    }
    return written;
  }

  #fail(error: Error): void {
    if (this.#failed) return;
    this.#failed = true;
    this.#failure?.(error);
  }
}

async function readReply(channel: VhostUserChannel, request: number): Promise<Uint8Array> {
  const msg = await channel.readMessage(REPLY_TIMEOUT_MS, requestName(request), 'reply');
  closeFds(msg.fds); // no reply we ask for carries fds
  if (msg.header.request !== request) {
    throw new Error(`${requestName(request)}: the back-end answered ${requestName(msg.header.request)}`);
  }
  return msg.payload;
}

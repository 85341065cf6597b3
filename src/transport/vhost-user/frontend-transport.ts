/**
 * Our driver as a vhost-user FRONT-END (QEMU's role): a `VirtioTransport` whose guest memory is a
 * memfd shared with the back-end (`vcrypto device --socket PATH`), whose rings are announced with
 * SET_MEM_TABLE / SET_VRING_*, and whose kicks and interrupts are eventfds.
 *
 * - Status is kept locally (vhost-user has no status register without F_STATUS). At DRIVER_OK the
 *   transport sends SET_FEATURES, SET_MEM_TABLE and, per queue (the controlq included: our back-end
 *   serves it, QEMU never sends it), SET_VRING_NUM/BASE/ADDR/CALL/KICK. With REPLY_ACK every one of
 *   them asks for an ack, so a refusal fails DRIVER_OK instead of a later request.
 * - readConfig(): vhost-user gives no config space here (we never negotiate F_CONFIG, which crashes
 *   QEMU 7.2.0-7.2.2), so the transport synthesizes the one our back-end's device model has: the
 *   configSpace() of a VirtioCryptoDevice with max_dataqueues = GET_QUEUE_NUM. DEVIATION: against a
 *   foreign back-end this config is an assumption, not a reading.
 * - Interrupts: one poll(2) on a koffi async thread waits on every call eventfd, a wake eventfd and
 *   the socket (hang-up = the back-end is gone → onFailure). The wait runs only while the driver has
 *   work in flight (`hold()`/`release()`), so an idle device lets the process exit. koffi runs the
 *   wait on libuv's threadpool (UV_THREADPOOL_SIZE, default 4): each busy device holds one thread.
 * - notify() writes the queue's kick eventfd: one syscall, never blocks.
 *
 * Ownership: the transport owns the socket, the memfd and its mapping, and every eventfd it created;
 * close() releases them (the back-end has its own duplicates).
 */
import type { DriverMemory, QueueAddresses, VirtioTransport } from '../../driver/virtio-transport.js';
import { VirtioCryptoDevice } from '../../device/virtio-crypto-device.js';
import {
  VHOST_USER,
  VHOST_USER_VERSION,
  VHOST_USER_NEED_REPLY_MASK,
  VHOST_USER_F_PROTOCOL_FEATURES,
  VHOST_USER_PROTOCOL_F,
} from '../../spec/vhost-user.js';
import { VIRTIO_CONFIG_S_DRIVER_OK } from '../../spec/virtio.js';
import {
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
import { createEventFd, signalEventFd, drainEventFd, closeFd, closeFds, pollAsync, POLLIN, POLLHUP, POLLERR } from '../../sys/fd.js';
import { VhostUserChannel } from './channel.js';
import { requestName } from './message-table.js';

/** Guest-physical address of our memory (deliberately unlike its user address: translation is tested). */
export const FRONTEND_GUEST_PHYS_BASE = 0x4000_0000n;
/** 64 MiB for rings and ordinary requests plus one request of the device's max_size (512 MiB + 128): a sparse memfd, pages are committed on first touch. */
export const DEFAULT_FRONTEND_MEMORY_BYTES = 64 * 1024 * 1024 + 512 * 1024 * 1024 + 64 * 1024;
/** Largest queue the transport offers the driver (QEMU uses 1024 for virtio-crypto). */
export const FRONTEND_QUEUE_MAX_SIZE = 1024;
const REPLY_TIMEOUT_MS = 10_000;
const POLLRDHUP = 0x2000;
/** How long the interrupt wait outlives the last request in flight. */
const IDLE_LINGER_MS = 20;

const WANTED_PROTOCOL_FEATURES =
  (1n << BigInt(VHOST_USER_PROTOCOL_F.MQ)) |
  (1n << BigInt(VHOST_USER_PROTOCOL_F.REPLY_ACK)) |
  (1n << BigInt(VHOST_USER_PROTOCOL_F.CRYPTO_SESSION));

export interface FrontendTransportOptions {
  /** Guest memory bytes (rings + request buffers). Default DEFAULT_FRONTEND_MEMORY_BYTES. */
  readonly memoryBytes?: number;
}

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
  readonly #wakeFd: number;
  #driverFeatures = 0n;
  #status = 0;
  #started = false;
  #interrupt: ((index: number) => void) | undefined;
  #failure: ((error: Error) => void) | undefined;
  #failed = false;
  #holds = 0;
  #idleTimer: ReturnType<typeof setTimeout> | undefined;
  #loop: Promise<void> | undefined;
  #closed = false;
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
  }) {
    this.description = `vhost-user:${init.path}`;
    this.#socket = init.socket;
    this.#channel = init.channel;
    this.#memfd = init.memfd;
    this.#mapping = init.mapping;
    this.#deviceFeatures = init.deviceFeatures;
    this.#protocolFeatures = init.protocolFeatures;
    this.#dataQueues = init.dataQueues;
    this.memory = { guestPhysAddr: FRONTEND_GUEST_PHYS_BASE, bytes: new Uint8Array(init.mapping.buffer) };
    this.#wakeFd = createEventFd();
  }

  /** Connects, negotiates protocol features, SET_OWNER. Throws with the back-end's failure named. */
  static async connect(path: string, opts: FrontendTransportOptions = {}): Promise<VhostUserFrontendTransport> {
    const memoryBytes = opts.memoryBytes ?? DEFAULT_FRONTEND_MEMORY_BYTES;
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
    if (status === 0) {
      await this.#stopRings();
      this.#status = 0;
      this.#queues.clear();
      return;
    }
    if ((status & VIRTIO_CONFIG_S_DRIVER_OK) !== 0 && (this.#status & VIRTIO_CONFIG_S_DRIVER_OK) === 0) {
      await this.#start();
    }
    this.#status = status;
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
    const fd = this.#kickFds.get(index);
    if (fd !== undefined) signalEventFd(fd);
  }

  onInterrupt(handler: (index: number) => void): void {
    this.#interrupt = handler;
  }

  onFailure(handler: (error: Error) => void): void {
    this.#failure = handler;
  }

  /** Keep waiting for interrupts (work is in flight). Nested. */
  hold(): void {
    this.#holds++;
    if (this.#idleTimer !== undefined) {
      clearTimeout(this.#idleTimer);
      this.#idleTimer = undefined;
    }
    if (this.#loop === undefined && this.#started && !this.#closed) this.#loop = this.#interruptLoop();
  }

  /** No work in flight: stop waiting, so an idle process can exit. */
  release(): void {
    if (this.#holds > 0) this.#holds--;
    if (this.#holds > 0 || this.#loop === undefined || this.#idleTimer !== undefined) return;
    // Linger briefly: a synchronous caller (depth 1) submits its next request within microseconds,
    // and restarting the wait for every request would double its latency.
    this.#idleTimer = setTimeout(() => {
      this.#idleTimer = undefined;
      if (this.#holds === 0) signalEventFd(this.#wakeFd);
    }, IDLE_LINGER_MS);
    this.#idleTimer.unref();
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#idleTimer !== undefined) clearTimeout(this.#idleTimer);
    signalEventFd(this.#wakeFd);
    await this.#loop;
    await this.#exchange.catch(() => undefined);
    this.#socket.close(); // the back-end sees EOF and releases its side
    closeFds(this.#kickFds.values());
    closeFds(this.#callFds.values());
    this.#kickFds.clear();
    this.#callFds.clear();
    closeFd(this.#wakeFd);
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

  /** Sends one request (+fds); with REPLY_ACK (or a reply of its own) awaits and returns the reply. */
  #send(request: number, payload: Uint8Array | undefined, fds: readonly number[] = [], ownReply = false): Promise<Uint8Array | null> {
    const run = async (): Promise<Uint8Array | null> => {
      const ack = !ownReply && this.#replyAck;
      this.#channel.writeSync(encodeMessage(request, VHOST_USER_VERSION | (ack ? VHOST_USER_NEED_REPLY_MASK : 0), payload), fds);
      if (!ack && !ownReply) return null;
      const reply = await readReply(this.#channel, request);
      if (ack && decodeU64(reply) !== 0n) throw new Error(`${requestName(request)} refused by the back-end`);
      return reply;
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
    if (this.#holds > 0 && this.#loop === undefined) this.#loop = this.#interruptLoop();
  }

  /** Device reset: stop every ring (GET_VRING_BASE); the back-end forgets them until restarted. */
  async #stopRings(): Promise<void> {
    if (!this.#started) return;
    this.#started = false;
    for (const index of [...this.#kickFds.keys()].sort((a, b) => a - b)) {
      const reply = await this.#send(VHOST_USER.GET_VRING_BASE, encodeVringState({ index, num: 0 }), [], true);
      if (reply === null || decodeVringState(reply).index !== index) throw new Error(`GET_VRING_BASE ${index}: bad reply`);
    }
  }

  async #interruptLoop(): Promise<void> {
    try {
      while (!this.#closed && !this.#failed && (this.#holds > 0 || this.#idleTimer !== undefined)) {
        const calls = [...this.#callFds.entries()];
        const revents = await pollAsync(
          [
            { fd: this.#wakeFd, events: POLLIN },
            { fd: this.#socket.fd, events: POLLRDHUP },
            ...calls.map(([, fd]) => ({ fd, events: POLLIN })),
          ],
          -1,
        );
        if ((revents[0] ?? 0) !== 0) drainEventFd(this.#wakeFd);
        if (this.#closed) return;
        if (((revents[1] ?? 0) & (POLLRDHUP | POLLHUP | POLLERR)) !== 0) {
          this.#failed = true;
          this.#failure?.(new Error(`${this.description}: the back-end closed the connection`));
          return;
        }
        calls.forEach(([index, fd], k) => {
          if ((revents[k + 2] ?? 0) === 0) return;
          drainEventFd(fd);
          this.#interrupt?.(index);
        });
      }
    } catch (err) {
      this.#failed = true;
      this.#failure?.(err instanceof Error ? err : new Error(String(err)));
    } finally {
      this.#loop = undefined;
      // A hold() that raced with the end of the loop restarts it.
      if (this.#holds > 0 && !this.#closed && !this.#failed && this.#started) this.#loop = this.#interruptLoop();
    }
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

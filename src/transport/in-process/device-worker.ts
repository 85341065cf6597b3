/**
 * The embedded virtio-crypto device: runs on a worker thread. Guest memory is the SharedArrayBuffer the
 * driver placed its rings and buffers in; the driver kicks by bumping the DOORBELL word, and this loop
 * sleeps in `Atomics.wait` on it (no CPU while idle). Completions are signalled by bumping INTERRUPT,
 * which the driver awaits with `Atomics.waitAsync` (its event loop is never blocked).
 *
 * The loop is synchronous: control messages are drained with `receiveMessageOnPort` after each wake-up,
 * so the worker's own event loop never needs to run. Following Firecracker, the transport owns the status
 * state machine; the device only learns "activate" (DRIVER_OK with the negotiated features and queues)
 * and "reset".
 */
import { receiveMessageOnPort, workerData } from 'node:worker_threads';
import { GuestMemory } from '../../memory/guest-memory.js';
import { VIRTIO_F_VERSION_1, VIRTIO_RING_F_EVENT_IDX, VIRTIO_RING_F_INDIRECT_DESC } from '../../spec/virtio.js';
import { DeviceQueue } from '../../virtqueue/device-queue.js';
import { checkRingAlignment, ringSizes } from '../../virtqueue/layout.js';
import { VirtioCryptoDevice } from '../../device/virtio-crypto-device.js';
import type { DeviceWorkerData, FromDevice, ToDevice } from './messages.js';
import { Register, raiseInterrupt } from './registers.js';

const data = workerData as DeviceWorkerData;
const regs = new Int32Array(data.registers);
const port = data.port;
const memory = new GuestMemory([{ guestPhysAddr: data.guestPhysAddr, bytes: new Uint8Array(data.memory) }]);
const device = new VirtioCryptoDevice({
  maxDataQueues: data.maxDataQueues,
  maxSessions: data.maxSessions,
  maxSize: Number(data.maxSize),
});

/** Feature bits this device offers (VIRTIO 1.2 §6). */
const TRANSPORT_FEATURES =
  (1n << BigInt(VIRTIO_F_VERSION_1)) | (1n << BigInt(VIRTIO_RING_F_INDIRECT_DESC)) | (1n << BigInt(VIRTIO_RING_F_EVENT_IDX));

/** Completions published per queue before the used index is made visible mid-batch. */
const PUBLISH_EVERY = 32;

const queueCount = data.maxDataQueues + 1; // §5.9.2: dataq 0..N-1, controlq N
const controlIndex = data.maxDataQueues;

/** The control queue first, then the data queues. */
const SERVE_ORDER = [controlIndex, ...Array.from({ length: controlIndex }, (_, i) => i)];

let queues: (DeviceQueue | null)[] = [];
let active = false;

function post(msg: FromDevice): void {
  port.postMessage(msg);
}

function fail(message: string): void {
  active = false;
  queues = [];
  post({ type: 'failure', message });
}

function activate(msg: Extract<ToDevice, { type: 'activate' }>): string | null {
  if (msg.queues.length > queueCount) return `${msg.queues.length} queues announced, the device has ${queueCount}`;
  const eventIdx = (msg.features & (1n << BigInt(VIRTIO_RING_F_EVENT_IDX))) !== 0n;
  const list: (DeviceQueue | null)[] = [];
  for (const q of msg.queues) {
    if (q === null) {
      list.push(null);
      continue;
    }
    try {
      // The ring addresses are untrusted: aligned (§2.7 table) and entirely inside guest memory.
      checkRingAlignment(q.descAddr, q.availAddr, q.usedAddr);
      const sizes = ringSizes(q.size);
      list.push(
        new DeviceQueue({
          size: q.size,
          desc: memory.view(q.descAddr, sizes.descBytes),
          avail: memory.view(q.availAddr, sizes.availBytes),
          used: memory.view(q.usedAddr, sizes.usedBytes),
          memory,
          eventIdx,
          // A request is at most max_size of source plus as much destination, plus headers.
          maxChainBytes: Number(data.maxSize) * 2 + 64 * 1024,
        }),
      );
    } catch (err) {
      return `queue ${list.length}: ${(err as Error).message}`;
    }
  }
  queues = list;
  active = true;
  return null;
}

function reset(): void {
  active = false;
  queues = [];
  device.reset();
  Atomics.store(regs, Register.KICK_PENDING, 0);
}

/** Drains control messages; returns false when asked to stop. */
function drainMessages(): boolean {
  for (;;) {
    const received = receiveMessageOnPort(port);
    if (received === undefined) return true;
    const msg = received.message as ToDevice;
    switch (msg.type) {
      case 'stop':
        return false;
      case 'activate': {
        let error: string | null;
        try {
          error = activate(msg);
        } catch (err) {
          error = (err as Error).message;
        }
        post({ type: 'reply', id: msg.id, error });
        break;
      }
      case 'reset':
        reset();
        post({ type: 'reply', id: msg.id, error: null });
        break;
    }
  }
}

/**
 * Serves queue `index` until it is empty with notifications enabled (VIRTIO 1.2 §2.7.10: re-check the
 * available ring after re-enabling notifications, or a kick can be lost). Returns true if the driver
 * should be interrupted. Never throws: a broken queue marks the device NEEDS_RESET.
 */
function serveQueue(index: number): boolean {
  const q = queues[index];
  if (!q) return false;
  const isControl = index === controlIndex;
  let interrupt = false;
  for (;;) {
    q.disableNotifications();
    let sincePublish = 0;
    for (;;) {
      let popped;
      try {
        popped = q.popChain();
      } catch {
        break; // queue-fatal (avail index jump, head out of range): q.broken is set
      }
      if (popped === null) break;
      let used = 0;
      if (popped.ok) {
        try {
          used = isControl ? device.processControl(popped.chain) : device.processData(popped.chain);
        } catch {
          used = 0; // the device model reports statuses itself; an exception here is a bug: 0 bytes, go on
        }
        q.addUsed(popped.chain.head, used);
      } else {
        q.addUsed(popped.head, 0); // malformed chain: complete with 0 bytes written and go on
      }
      if (++sincePublish === PUBLISH_EVERY) {
        sincePublish = 0;
        q.publishUsed();
        if (q.needsNotification()) {
          raiseInterrupt(regs, 1 << index); // let the driver start on this batch while we go on
        }
      }
    }
    q.publishUsed();
    if (q.broken) return true;
    if (q.needsNotification()) interrupt = true;
    if (!q.enableNotifications()) break; // nothing new arrived while notifications were off
  }
  return interrupt;
}

function serve(kicked: number): void {
  // Every active queue is looked at on a kick of any of them: cheap (one avail.idx read each) and it
  // makes a lost kick harmless. The control queue goes first so a session exists before its data.
  let mask = 0;
  for (const i of SERVE_ORDER) {
    if (!queues[i]) continue;
    if ((kicked & (1 << i)) === 0 && !queues[i]!.hasAvailable()) continue;
    if (serveQueue(i)) mask |= 1 << i;
    if (queues[i]!.broken) {
      if (mask !== 0) raiseInterrupt(regs, mask);
      fail(`queue ${i} is broken: the device needs a reset`);
      return;
    }
  }
  if (mask !== 0) raiseInterrupt(regs, mask);
}

post({
  type: 'ready',
  deviceFeatures: TRANSPORT_FEATURES, // no VIRTIO_CRYPTO_F_* bits: the fixed-size (legacy) request layouts
  config: device.configSpace(),
  queueMaxSizes: Array.from({ length: queueCount }, () => data.queueMaxSize),
});

// NOTE: polling the doorbell for a while before sleeping (to save the futex sleep and wake-up at
// depth 1) was measured and made things worse on a loaded 2-core machine: the polling thread takes
// the CPU from the driver it is waiting for.
let messagesSeen = -1;
for (;;) {
  const seq = Atomics.load(regs, Register.DOORBELL);
  // Control messages are rare: look at the port only when the driver says it posted one.
  const messages = Atomics.load(regs, Register.MESSAGES);
  if (messages !== messagesSeen) {
    messagesSeen = messages;
    if (!drainMessages()) break;
  }
  if (Atomics.load(regs, Register.STOP) !== 0) break;
  const kicked = Atomics.exchange(regs, Register.KICK_PENDING, 0);
  if (active) {
    try {
      serve(kicked);
    } catch (err) {
      fail(`device error: ${(err as Error).message}`);
    }
  }
  Atomics.wait(regs, Register.DOORBELL, seq);
}
port.close();

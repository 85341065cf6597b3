/**
 * The embedded virtio-crypto device: runs on worker threads. Guest memory is the SharedArrayBuffer the
 * driver placed its rings and buffers in; the driver kicks by bumping the doorbell word of the thread
 * that serves the queue, and that thread sleeps in `Atomics.wait` on it (no CPU while idle).
 * Completions are signalled by bumping INTERRUPT, which the driver awaits with `Atomics.waitAsync`
 * (its event loop is never blocked).
 *
 * Threads: thread 0 (started by the transport) serves the control queue and data queue 0; with
 * `threads` > 1 it starts threads 1.. itself, and data queue i is served by thread i mod threads, so
 * requests on different data queues are encrypted in parallel (like a multi-queue accelerator, or a
 * vhost-user back-end with a thread per queue). Sessions are created on thread 0 (the control
 * queue); each one is copied to every other thread (its fields and node:crypto KeyObjects, by
 * postMessage) and acknowledged BEFORE the create request completes, and destroyed the same way,
 * so a driver never sees a session id that a data queue does not know yet, or still knows after
 * destroy. Activation and reset are forwarded the same way; a thread whose queue breaks sets a flag
 * that thread 0 reports to the transport.
 *
 * The loop is synchronous: control messages are drained with `receiveMessageOnPort` after each wake-up,
 * so the worker's own event loop never needs to run. Following Firecracker, the transport owns the status
 * state machine; the device only learns "activate" (DRIVER_OK with the negotiated features and queues)
 * and "reset".
 */
import { MessageChannel, Worker, receiveMessageOnPort, workerData, type MessagePort } from 'node:worker_threads';
import { GuestMemory } from '../../memory/guest-memory.js';
import { VIRTIO_RING_F_EVENT_IDX } from '../../spec/virtio.js';
import { DeviceQueue } from '../../virtqueue/device-queue.js';
import { QueueServer, MALFORMED_CHAIN } from '../../virtqueue/serve-queue.js';
import { DEVICE_RING_FEATURES, featureBit } from '../../virtqueue/ring-features.js';
import { DeviceStats, STAT } from '../../device/device-stats.js';
import { checkRingAlignment, ringSizes } from '../../virtqueue/layout.js';
import { VirtioCryptoDevice } from '../../device/virtio-crypto-device.js';
import { copySession, sessionFromCopy } from '../../device/engine.js';
import type { QueueAddresses } from '../../driver/virtio-transport.js';
import type { DescriptorChain } from '../../virtqueue/chain.js';
import { PEER_REGISTER_WORDS, PeerRegister, type DeviceWorkerData, type FromDevice, type FromPeer, type ToDevice, type ToPeer } from './messages.js';
import { Register, doorbellWord, queueThread, raiseInterrupt } from './registers.js';
import { deviceWorkerEntry } from './worker-entry.js';
import { AdaptivePolling } from '../vhost-user/backend-polling.js';
import { POLL_MODE, cpuSpareFor } from '../spare-cpu.js';
import { MARK, installMarks, mark, marking } from '../../trace/latency-marks.js';

const data = workerData as DeviceWorkerData;
const regs = new Int32Array(data.registers);
const thread = data.thread;
const myDoorbell = doorbellWord(thread);
/** Threads 1..: the register block shared with thread 0 (PeerRegister words). */
const peerRegs = data.peer === undefined ? null : new Int32Array(data.peer.registers);
if (data.traceMarks !== undefined) installMarks(data.traceMarks);
const memory = new GuestMemory([{ guestPhysAddr: data.guestPhysAddr, bytes: new Uint8Array(data.memory) }]);

/**
 * This thread's statistics: its slice of the transport's shared block (read live by the API), or a
 * private block.
 */
const stats =
  data.stats === undefined ? new DeviceStats(new ArrayBuffer(DeviceStats.byteLength())) : new DeviceStats(data.stats, thread * DeviceStats.byteLength());

/** How long thread 0 waits for another device thread to start or to answer a message. */
const PEER_TIMEOUT_MS = 10_000;

const queueCount = data.maxDataQueues + 1; // §5.9.2: dataq 0..N-1, controlq N
const controlIndex = data.maxDataQueues;

/** The queues this thread serves, control queue first (a session exists before its data). */
const SERVE_ORDER = [controlIndex, ...Array.from({ length: controlIndex }, (_, i) => i)].filter(
  (i) => queueThread(i, controlIndex, data.threads) === thread,
);
let myQueues = 0;
for (const i of SERVE_ORDER) myQueues |= 1 << i;

// ---------------------------------------------------------------------------------------------
// Thread 0: the other device threads, and the copies of every session they get.

interface Peer {
  readonly thread: number;
  readonly worker: Worker;
  readonly port: MessagePort;
  readonly regs: Int32Array;
  sent: number;
}

const peers: Peer[] = [];
/** Set when a peer did not answer or refused a session copy: thread 0 fails the device. */
let peerError: string | null = null;

/** Sends `msg` to every other thread and waits until each has handled it; the first error, or null. */
function toPeers(msg: ToPeer): string | null {
  for (const p of peers) {
    p.port.postMessage(msg);
    p.sent++;
    Atomics.store(p.regs, PeerRegister.SENT, p.sent);
    const word = doorbellWord(p.thread);
    Atomics.add(regs, word, 1);
    Atomics.notify(regs, word, 1);
  }
  let error: string | null = null;
  for (const p of peers) {
    const deadline = Date.now() + PEER_TIMEOUT_MS;
    let done = Atomics.load(p.regs, PeerRegister.DONE);
    while (done !== p.sent) {
      const left = deadline - Date.now();
      if (left <= 0) return `device thread ${p.thread} did not answer within ${PEER_TIMEOUT_MS} ms`;
      Atomics.wait(p.regs, PeerRegister.DONE, done, left);
      done = Atomics.load(p.regs, PeerRegister.DONE);
    }
    const reply = receiveMessageOnPort(p.port)?.message as FromPeer | undefined;
    const e = reply === undefined ? 'no reply' : reply.error;
    if (e !== null && error === null) error = `device thread ${p.thread}: ${e}`;
  }
  return error;
}

/**
 * Starts threads 1..threads-1 and waits until each runs; an error message, or null. Waits on this
 * thread's event loop, not in Atomics.wait: a starting worker may need its parent's loop (loader
 * hooks under tsx). Once READY they have loaded everything they run.
 */
async function startPeers(): Promise<string | null> {
  const { entry, eval: isEval } = deviceWorkerEntry();
  for (let k = 1; k < data.threads; k++) {
    const channel = new MessageChannel();
    const regsOfPeer = new Int32Array(new SharedArrayBuffer(PEER_REGISTER_WORDS * Int32Array.BYTES_PER_ELEMENT));
    const { port: _transportPort, ...shared } = data; // that port stays with thread 0
    const peerData: DeviceWorkerData = { ...shared, thread: k, peer: { port: channel.port2, registers: regsOfPeer.buffer as SharedArrayBuffer } };
    const worker = new Worker(entry, { workerData: peerData, transferList: [channel.port2], eval: isEval });
    peers.push({ thread: k, worker, port: channel.port1, regs: regsOfPeer, sent: 0 });
  }
  const deadline = Date.now() + PEER_TIMEOUT_MS;
  for (const p of peers) {
    let exited = false;
    p.worker.once('exit', () => (exited = true));
    while (Atomics.load(p.regs, PeerRegister.READY) === 0) {
      if (exited) return `device thread ${p.thread} exited during start-up`;
      if (Date.now() > deadline) return `device thread ${p.thread} did not start within ${PEER_TIMEOUT_MS} ms`;
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  }
  return null;
}

const device = new VirtioCryptoDevice({
  maxDataQueues: data.maxDataQueues,
  maxSessions: data.maxSessions,
  maxSize: Number(data.maxSize),
  stats,
  sessionCopies: thread !== 0,
  ...(thread === 0 && data.threads > 1
    ? {
        sessionObserver: {
          created(id, session) {
            const e = toPeers({ type: 'session', id, copy: copySession(session) });
            if (e !== null) peerError ??= e;
          },
          destroyed(id) {
            const e = toPeers({ type: 'drop', id });
            if (e !== null) peerError ??= e;
          },
        },
      }
    : {}),
});

// ---------------------------------------------------------------------------------------------
// Every thread: its queues.

let queues: (QueueServer | null)[] = [];
let active = false;

function post(msg: FromDevice): void {
  data.port?.postMessage(msg);
}

function fail(message: string): void {
  active = false;
  queues = [];
  if (thread === 0) {
    post({ type: 'failure', message });
  } else {
    // Thread 0 reports it (it checks FAILED after every wake-up).
    Atomics.store(peerRegs!, PeerRegister.FAILED, 1);
    Atomics.add(regs, Register.DOORBELL, 1);
    Atomics.notify(regs, Register.DOORBELL, 1);
  }
}

/** Sets up this thread's queues (the others stay null here). */
function activate(features: bigint, announced: readonly (QueueAddresses | null)[]): string | null {
  if (announced.length > queueCount) return `${announced.length} queues announced, the device has ${queueCount}`;
  const eventIdx = (features & featureBit(VIRTIO_RING_F_EVENT_IDX)) !== 0n;
  const list: (QueueServer | null)[] = [];
  for (const q of announced) {
    if (q === null || (myQueues & (1 << list.length)) === 0) {
      list.push(null);
      continue;
    }
    try {
      // The ring addresses are untrusted: aligned (§2.7 table) and entirely inside guest memory.
      checkRingAlignment(q.descAddr, q.availAddr, q.usedAddr);
      const sizes = ringSizes(q.size);
      const queue = new DeviceQueue({
        size: q.size,
        desc: memory.view(q.descAddr, sizes.descBytes),
        avail: memory.view(q.availAddr, sizes.availBytes),
        used: memory.view(q.usedAddr, sizes.usedBytes),
        memory,
        eventIdx,
        // A request is at most max_size of source plus as much destination, plus headers.
        maxChainBytes: Number(data.maxSize) * 2 + 64 * 1024,
      });
      const bit = 1 << list.length;
      const serveChain: (chain: DescriptorChain) => number =
        list.length === controlIndex ? (chain) => device.processControl(chain) : (chain) => device.processData(chain);
      list.push(
        new QueueServer(queue, {
          process: marking()
            ? (chain) => {
                mark(MARK.PROCESS_START);
                const n = serveChain(chain);
                mark(MARK.PROCESS_END);
                return n;
              }
            : serveChain,
          // Each notification goes out at once: the driver starts on a batch while we go on.
          notify: marking()
            ? () => {
                raiseInterrupt(regs, bit);
                mark(MARK.INTERRUPT_RAISED);
              }
            : () => raiseInterrupt(regs, bit),
          // The driver shares this process: a malformed chain is its bug, completed with 0 bytes
          // (the request fails with EIO there) while the queue goes on.
          malformedChain: MALFORMED_CHAIN.COMPLETE_EMPTY,
          stats,
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
  Atomics.and(regs, Register.KICK_PENDING, ~myQueues);
}

/** Thread 0: drains the transport's messages; returns false when asked to stop. */
function drainMessages(): boolean {
  const port = data.port!;
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
          error = activate(msg.features, msg.queues);
        } catch (err) {
          error = (err as Error).message;
        }
        if (error === null && peers.length > 0) error = toPeers({ type: 'activate', features: msg.features, queues: msg.queues });
        if (error !== null) active = false;
        post({ type: 'reply', id: msg.id, error });
        break;
      }
      case 'reset': {
        reset();
        peerError = null;
        for (const p of peers) Atomics.store(p.regs, PeerRegister.FAILED, 0);
        const error = peers.length > 0 ? toPeers({ type: 'reset' }) : null;
        post({ type: 'reply', id: msg.id, error });
        break;
      }
    }
  }
}

/** Threads 1..: handles one message from thread 0; its outcome. */
function handlePeerMessage(msg: ToPeer): string | null {
  switch (msg.type) {
    case 'activate':
      return activate(msg.features, msg.queues);
    case 'reset':
      reset();
      Atomics.store(peerRegs!, PeerRegister.FAILED, 0);
      return null;
    case 'session':
      device.adoptSession(msg.id, sessionFromCopy(msg.copy));
      return null;
    case 'drop':
      device.dropSessionCopy(msg.id);
      return null;
  }
}

/**
 * Polling after a completion (backend-polling.ts, as the vhost-user back-end does it): the served
 * queues keep notifications disabled for a short adaptive window (twice the average gap between a
 * completion and the driver's next request, at most IN_PROCESS_POLL_MICROS), so a driver that
 * submits one request at a time needs no kick and this thread no wake-up. Nothing is polled while
 * idle or while requests come slower than the bound, and misses (a window that finds nothing, or
 * this thread descheduled on a busy machine) back off exponentially.
 */
export const IN_PROCESS_POLL_MICROS = 200;
/** Misses skip at most 2^this - 1 episodes. */
export const IN_PROCESS_POLL_BACKOFF = 2;
const polling = new AdaptivePolling(
  data.pollMode === POLL_MODE.NEVER ? 0 : IN_PROCESS_POLL_MICROS,
  { now: () => performance.now(), yieldCpu: () => undefined, cpuSpare: cpuSpareFor(data.pollMode ?? POLL_MODE.AUTO) },
  IN_PROCESS_POLL_BACKOFF,
);

/**
 * Serves queue `i` with `how` (drain: leave notifications disabled; serve: re-enable and re-check);
 * the chains completed, or -1 if the queue broke (the device then needs a reset).
 */
function serveQueue(i: number, server: QueueServer, how: 'drain' | 'serve'): number {
  try {
    return how === 'drain' ? server.drain() : server.serve(); // QueueServer: the one serve routine (src/virtqueue/serve-queue.ts)
  } catch (err) {
    // Queue-fatal (avail index jump, head out of range): completions so far are published.
    raiseInterrupt(regs, 1 << i);
    fail(`queue ${i} is broken: ${(err as Error).message}: the device needs a reset`);
    return -1;
  }
}

function findWork(): number {
  for (const i of SERVE_ORDER) if (queues[i]?.queue.hasAvailable()) return i;
  return -1;
}

function servePolled(i: number): number {
  const server = queues[i];
  if (!server) return 0;
  const n = serveQueue(i, server, 'drain');
  if (n > 0) {
    stats.add(STAT['polled-requests'], n);
    polling.noteCompletion();
  }
  return Math.max(n, 0);
}

function serve(kicked: number): void {
  // Every active queue is looked at on a kick of any of them: cheap (one avail.idx read each) and it
  // makes a lost kick harmless. The control queue goes first so a session exists before its data.
  let served = 0;
  for (const i of SERVE_ORDER) {
    const server = queues[i];
    if (!server) continue;
    if ((kicked & (1 << i)) !== 0) {
      stats.add(STAT.kicks);
      if (served === 0) polling.noteRequest();
    } else if (!server.queue.hasAvailable()) continue;
    const n = serveQueue(i, server, 'drain');
    if (n < 0) return;
    served += n;
  }
  if (served > 0) {
    polling.noteCompletion();
    polling.episode(findWork, servePolled);
    if (!active) return; // a queue broke while polling
  }
  // §2.7.10: re-enable notifications on the drained queues, then re-check, before sleeping.
  for (const i of SERVE_ORDER) {
    const server = queues[i];
    if (server?.quiet && serveQueue(i, server, 'serve') < 0) return;
  }
}

/** Takes this thread's kick bits and serves its queues; a bug thrown there fails the device. */
function serveKicks(): void {
  const kicked = Atomics.and(regs, Register.KICK_PENDING, ~myQueues) & myQueues;
  if (!active) return;
  mark(MARK.DEVICE_AWAKE);
  try {
    serve(kicked);
  } catch (err) {
    fail(`device error: ${(err as Error).message}`);
  }
}

/** Thread 0's loop: the transport's messages, its queues, the other threads' failures. */
async function runThread0(): Promise<void> {
  const startError = data.threads > 1 ? await startPeers() : null;
  if (startError !== null) {
    post({ type: 'failure', message: startError });
    stopPeers();
    return;
  }
  post({
    type: 'ready',
    deviceFeatures: DEVICE_RING_FEATURES, // no VIRTIO_CRYPTO_F_* bits: the fixed-size (legacy) request layouts
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
    serveKicks();
    if (active) {
      for (const p of peers) {
        if (Atomics.load(p.regs, PeerRegister.FAILED) !== 0) peerError ??= `device thread ${p.thread}: a queue is broken`;
      }
      if (peerError !== null) fail(`${peerError}: the device needs a reset`);
    }
    Atomics.wait(regs, Register.DOORBELL, seq);
  }
  stopPeers();
  data.port!.close();
}

/** Wakes the other threads to see STOP (set by the transport, or here); they exit on their own. */
function stopPeers(): void {
  Atomics.store(regs, Register.STOP, 1);
  for (const p of peers) {
    const word = doorbellWord(p.thread);
    Atomics.add(regs, word, 1);
    Atomics.notify(regs, word);
    p.port.close();
  }
}

/** The loop of threads 1..: thread 0's messages and this thread's queues. */
function runPeer(): void {
  const link = data.peer!;
  const words = peerRegs!;
  let handled = 0;
  Atomics.store(words, PeerRegister.READY, 1);
  Atomics.notify(words, PeerRegister.READY);
  try {
    for (;;) {
      const seq = Atomics.load(regs, myDoorbell);
      while (handled < Atomics.load(words, PeerRegister.SENT)) {
        const received = receiveMessageOnPort(link.port);
        if (received === undefined) {
          Atomics.wait(words, PeerRegister.READY, 1, 0.05); // posted but not delivered yet: 50 µs
          continue;
        }
        let error: string | null;
        try {
          error = handlePeerMessage(received.message as ToPeer);
        } catch (err) {
          error = (err as Error).message;
        }
        link.port.postMessage({ error } satisfies FromPeer);
        handled++;
        Atomics.store(words, PeerRegister.DONE, handled);
        Atomics.notify(words, PeerRegister.DONE);
      }
      if (Atomics.load(regs, Register.STOP) !== 0) break;
      serveKicks();
      Atomics.wait(regs, myDoorbell, seq);
    }
  } catch (err) {
    fail(`device thread ${thread}: ${(err as Error).message}`);
  } finally {
    device.reset();
    link.port.close();
  }
}

if (thread === 0) await runThread0();
else runPeer();

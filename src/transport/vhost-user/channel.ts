/**
 * vhost-user message framing over a non-blocking Unix socket (src/sys/unix-socket.ts): read exactly a
 * 12-byte header and then exactly `size` payload bytes, however the kernel splits them, collecting
 * the SCM_RIGHTS fds attached to any part of the message; write a whole message with its fds.
 *
 * Waiting is poll(2): `readMessageSync` blocks the calling thread (the back-end's connection worker);
 * the front-end first awaits readability with `pollAsync` and then reads. Once a message has started,
 * the rest must arrive within `partTimeoutMs` (a peer that stalls mid-message is a violation, not a
 * hang). Every error path closes the fds received so far.
 */
import { VHOST_USER_HEADER_SIZE, VHOST_USER_REPLY_FLAGS } from '../../spec/vhost-user.js';
import { decodeHeader, type VhostUserHeader } from '../../wire/vhost-user.js';
import { POLLIN, POLLOUT, pollSync, pollAsync, closeFds } from '../../sys/fd.js';
import type { UnixSocket } from '../../sys/unix-socket.js';
import { checkHeader, MAX_MESSAGE_FDS, MAX_PAYLOAD_SIZE, VhostUserProtocolError, requestName } from './message-table.js';

/** Who we are reading from: a front-end's requests, or a back-end's replies. */
export type Direction = 'request' | 'reply';

function checkReplyHeader(h: VhostUserHeader): void {
  const name = requestName(h.request);
  // The back-end answers with flags exactly REPLY|VERSION (what QEMU enforces; we do the same).
  if (h.flags !== VHOST_USER_REPLY_FLAGS) throw new VhostUserProtocolError(`${name} reply: flags 0x${h.flags.toString(16)} instead of 0x5`);
  if (h.size > MAX_PAYLOAD_SIZE) throw new VhostUserProtocolError(`${name} reply: payload size ${h.size} exceeds ${MAX_PAYLOAD_SIZE}`);
}

export interface VhostUserMessage {
  readonly header: VhostUserHeader;
  readonly payload: Uint8Array;
  /** Owned by the receiver: hand them to a handler or close them. */
  readonly fds: number[];
}

/** The peer closed the connection (at a message boundary). */
export class ConnectionClosed extends Error {
  override readonly name = 'ConnectionClosed';
}

export const DEFAULT_PART_TIMEOUT_MS = 5000;

export class VhostUserChannel {
  constructor(
    readonly socket: UnixSocket,
    private readonly partTimeoutMs = DEFAULT_PART_TIMEOUT_MS,
  ) {}

  /** Reads exactly `n` bytes; `first` = nothing of this message has been read yet. */
  private readExact(n: number, fds: number[], what: string, first: boolean): Uint8Array {
    const out = new Uint8Array(n);
    let got = 0;
    while (got < n) {
      const r = this.socket.recv(n - got);
      if (r === null) {
        const [ev = 0] = pollSync([{ fd: this.socket.fd, events: POLLIN }], this.partTimeoutMs);
        if (ev === 0) throw new VhostUserProtocolError(`${what}: incomplete message (${got} of ${n} bytes after ${this.partTimeoutMs} ms)`);
        continue;
      }
      fds.push(...r.fds);
      if (r.controlTruncated) throw new VhostUserProtocolError(`${what}: more file descriptors than any message may carry`);
      if (fds.length > MAX_MESSAGE_FDS) throw new VhostUserProtocolError(`${what}: ${fds.length} file descriptors attached (max ${MAX_MESSAGE_FDS})`);
      if (r.data.length === 0) {
        if (first && got === 0) throw new ConnectionClosed('peer closed the connection');
        throw new VhostUserProtocolError(`${what}: connection closed mid-message (${got} of ${n} bytes)`);
      }
      out.set(r.data, got);
      got += r.data.length;
    }
    return out;
  }

  /**
   * Reads one whole message (blocking the thread, bounded by the part timeout once it started).
   * Throws ConnectionClosed at EOF on a message boundary, VhostUserProtocolError on a violation.
   */
  readMessageSync(direction: Direction = 'request'): VhostUserMessage {
    const fds: number[] = [];
    try {
      const header = decodeHeader(this.readExact(VHOST_USER_HEADER_SIZE, fds, 'header', true));
      if (direction === 'request') checkHeader(header);
      else checkReplyHeader(header);
      const payload = header.size === 0 ? new Uint8Array(0) : this.readExact(header.size, fds, requestName(header.request), false);
      return { header, payload, fds };
    } catch (err) {
      closeFds(fds);
      throw err;
    }
  }

  /** Awaits readability without blocking the event loop (timeout → VhostUserProtocolError), then reads. */
  async readMessage(timeoutMs: number, what: string, direction: Direction = 'reply'): Promise<VhostUserMessage> {
    const [ev = 0] = await pollAsync([{ fd: this.socket.fd, events: POLLIN }], timeoutMs);
    if (ev === 0) throw new VhostUserProtocolError(`${what}: no reply within ${timeoutMs} ms`);
    return this.readMessageSync(direction);
  }

  /** Writes a whole message; `fds` (borrowed) travel with its first byte. */
  writeSync(message: Uint8Array, fds: readonly number[] = []): void {
    let sent = 0;
    let pendingFds = fds;
    while (sent < message.length) {
      const n = this.socket.send(message.subarray(sent), pendingFds);
      if (n === 0) {
        const [ev = 0] = pollSync([{ fd: this.socket.fd, events: POLLOUT }], this.partTimeoutMs);
        if (ev === 0) throw new VhostUserProtocolError(`peer does not read (send blocked for ${this.partTimeoutMs} ms)`);
        continue;
      }
      pendingFds = [];
      sent += n;
    }
  }
}

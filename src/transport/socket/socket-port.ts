/**
 * `SocketPort`: a Unix stream socket as an `RpcPort` (transport/message-port/protocol.ts), so the one
 * `serveDevice` / `connectDevice` pair serves worker threads and processes alike. Messages travel as
 * frames (socket-wire.ts); a framing violation or an undecodable payload is reported once through
 * `onProtocolError` and closes this socket only.
 *
 * Flow control (service side, `maxUnanswered`): each message received is a request that gets exactly
 * one answer with the same `id`; while `maxUnanswered` requests or `maxUnansweredBytes` bytes of them
 * are unanswered, or the answers not yet taken by the peer pass `maxWriteBuffer` bytes, the socket is
 * not read. A client that floods or sends without reading stalls itself, not the service's memory. An
 * id reused while its request is unanswered is a protocol error (it would defeat the accounting).
 *
 * `refWhileBusy` (client side): the socket keeps the process alive only while requests are
 * unanswered, like the other devices (an idle, unclosed device does not hold the process).
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import { CryptoError } from '../../driver/api.js';
import type { RpcPort } from '../message-port/protocol.js';
import { decodePayload, encodeFrame, FrameDecoder, FrameError, MAX_FRAME_PAYLOAD } from './socket-wire.js';
import { ValueCodecError, ValueTooLargeError } from './value-codec.js';

export interface SocketPortOptions {
  /** Largest frame payload accepted and sent. Default MAX_FRAME_PAYLOAD. */
  maxPayload?: number;
  /** Service side: stop reading while this many received messages are unanswered. */
  maxUnanswered?: number;
  /** Service side: stop reading while the unanswered requests' frames pass this many bytes. Default 128 MiB. */
  maxUnansweredBytes?: number;
  /** Service side: stop reading while more than this many answer bytes wait for the peer. Default 64 MiB. */
  maxWriteBuffer?: number;
  /** Client side: ref the socket only while messages sent are unanswered. */
  refWhileBusy?: boolean;
  /** Called once when the peer breaks the framing (then the port closes). */
  onProtocolError?: (err: FrameError) => void;
}

/** The numeric `id` of an RPC message, if it has one. */
function idOf(message: unknown): number | undefined {
  const id = typeof message === 'object' && message !== null ? (message as { id?: unknown }).id : undefined;
  return typeof id === 'number' ? id : undefined;
}

export class SocketPort extends EventEmitter implements RpcPort {
  readonly #socket: Socket;
  readonly #decoder: FrameDecoder;
  readonly #opts: SocketPortOptions;
  /** Messages received that are requests (service side) or answers to ours (client side). */
  #received = 0;
  /** Messages sent that are answers (service side) or requests (client side). */
  #sent = 0;
  /** No more traffic: close() was called or the socket closed. */
  #closed = false;
  #closeEmitted = false;
  #paused = false;
  #corked = false;
  /** Service side: frame bytes of each unanswered request, by id, and their sum. */
  readonly #unansweredSizes = new Map<number, number>();
  #unansweredBytes = 0;

  constructor(socket: Socket, opts: SocketPortOptions = {}) {
    super();
    this.#socket = socket;
    this.#opts = opts;
    this.#decoder = new FrameDecoder(opts.maxPayload ?? MAX_FRAME_PAYLOAD);
    socket.on('data', (chunk: Buffer) => this.#onData(chunk));
    socket.on('drain', () => this.#flow());
    // ECONNRESET and the like (a killed peer): the 'close' that follows ends the port.
    socket.on('error', () => undefined);
    socket.once('close', () => this.#onClose());
    this.#updateRef();
  }

  /** True once the socket has closed (or close() was called). */
  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Sends one message. Throws CryptoError: ENOSPC when it exceeds the frame limit, EINVAL when it holds
   * something the codec cannot carry, EBADF when closed.
   */
  postMessage(message: unknown): void {
    if (this.#closed) throw new CryptoError('EBADF', 'connection is closed');
    let frame: Buffer;
    try {
      frame = encodeFrame(message, this.#decoder.maxPayload);
    } catch (err) {
      if (err instanceof ValueTooLargeError) throw new CryptoError('ENOSPC', err.message, { cause: err });
      if (err instanceof ValueCodecError) throw new CryptoError('EINVAL', `cannot send this request: ${err.message}`, { cause: err });
      throw err;
    }
    // Service side, the hello answers nothing; client side, every message is a request.
    if (this.#opts.maxUnanswered === undefined || this.#received > this.#sent) this.#sent++;
    const id = idOf(message);
    const size = id === undefined ? undefined : this.#unansweredSizes.get(id);
    if (size !== undefined) {
      this.#unansweredSizes.delete(id!);
      this.#unansweredBytes -= size;
    }
    if (!this.#corked) {
      // Every message posted in this tick (e.g. a batch of completions) leaves in one writev.
      this.#corked = true;
      this.#socket.cork();
      process.nextTick(() => {
        this.#corked = false;
        this.#socket.uncork();
      });
    }
    // The encoded copy may hold keys or plaintext: wipe it once the socket is done with it.
    this.#socket.write(frame, () => frame.fill(0));
    this.#flow();
    this.#updateRef();
  }

  /** Closes the socket (pending output is dropped); 'close' follows. Idempotent. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.#socket.destroy();
  }

  #onData(chunk: Buffer): void {
    if (this.#closed) return;
    let payloads: Uint8Array[];
    try {
      payloads = this.#decoder.push(chunk);
    } catch (err) {
      this.#protocolError(err);
      return;
    }
    for (const payload of payloads) {
      let message: unknown;
      try {
        message = decodePayload(payload);
      } catch (err) {
        this.#protocolError(err);
        return;
      }
      // Client side, the hello (or anything unasked for) is no answer.
      if (!this.#opts.refWhileBusy || this.#sent > this.#received) this.#received++;
      const id = this.#opts.maxUnanswered === undefined ? undefined : idOf(message);
      if (id !== undefined) {
        if (this.#unansweredSizes.has(id)) {
          this.#protocolError(new FrameError(`request id ${id} reused while unanswered`));
          return;
        }
        this.#unansweredSizes.set(id, payload.length);
        this.#unansweredBytes += payload.length;
      }
      this.emit('message', message);
      if (this.#closed) return;
    }
    this.#flow();
    this.#updateRef();
  }

  #protocolError(err: unknown): void {
    if (this.#closed) return;
    this.#opts.onProtocolError?.(err instanceof FrameError ? err : new FrameError(String(err)));
    this.close();
  }

  /** Service side: pause reading while too much is unanswered or unsent (see the file comment). */
  #flow(): void {
    const { maxUnanswered } = this.#opts;
    if (maxUnanswered === undefined || this.#closed) return;
    const unanswered = this.#received - this.#sent;
    const congested =
      unanswered >= maxUnanswered ||
      this.#unansweredBytes > (this.#opts.maxUnansweredBytes ?? 128 * 1024 * 1024) ||
      this.#socket.writableLength > (this.#opts.maxWriteBuffer ?? 64 * 1024 * 1024);
    if (congested && !this.#paused) {
      this.#paused = true;
      this.#socket.pause();
    } else if (!congested && this.#paused) {
      this.#paused = false;
      this.#socket.resume();
    }
  }

  #updateRef(): void {
    if (!this.#opts.refWhileBusy || this.#closed) return;
    if (this.#sent > this.#received) this.#socket.ref();
    else this.#socket.unref();
  }

  #onClose(): void {
    this.#closed = true;
    if (this.#closeEmitted) return;
    this.#closeEmitted = true;
    this.emit('close');
  }
}

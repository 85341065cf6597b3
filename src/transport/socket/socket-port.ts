/**
 * A stream socket as an `RpcPort` (the channel serveDevice/connectDevice speak over): framed
 * structured-clone messages (frame-codec.ts). A framing error, or a message `accept` refuses, closes
 * the socket: a malformed peer loses its own connection and nothing else. 'close' is emitted once.
 */
import { EventEmitter } from 'node:events';
import type { Socket } from 'node:net';
import type { RpcPort } from '../message-port/protocol.js';
import { encodeFrame, FrameDecoder } from './frame-codec.js';

export interface SocketPortOptions {
  /** Decides whether a decoded message may reach the RPC; false closes the connection. */
  readonly accept?: (message: unknown) => boolean;
  /** Told why the connection is being closed for bad input. */
  readonly onProtocolError?: (why: string) => void;
}

export class SocketPort extends EventEmitter implements RpcPort {
  readonly socket: Socket;
  readonly #decoder = new FrameDecoder();
  #closed = false;

  constructor(socket: Socket, opts: SocketPortOptions = {}) {
    super();
    this.socket = socket;
    socket.on('data', (chunk: Buffer) => {
      if (this.#closed) return;
      let messages: unknown[];
      try {
        messages = this.#decoder.push(chunk);
      } catch (err) {
        opts.onProtocolError?.((err as Error).message);
        this.close();
        return;
      }
      for (const m of messages) {
        if (this.#closed) return;
        if (opts.accept !== undefined && !opts.accept(m)) {
          opts.onProtocolError?.('malformed request');
          this.close();
          return;
        }
        this.emit('message', m);
      }
    });
    socket.on('error', () => undefined); // 'close' follows
    socket.on('close', () => this.#finish());
  }

  postMessage(message: unknown): void {
    if (this.#closed) throw new Error('connection closed');
    this.socket.write(encodeFrame(message));
  }

  close(): void {
    if (this.#closed) return;
    this.socket.end(); // flushes what was written, then closes
    this.#finish();
  }

  get closed(): boolean {
    return this.#closed;
  }

  #finish(): void {
    if (this.#closed) return;
    this.#closed = true;
    this.emit('close');
  }
}

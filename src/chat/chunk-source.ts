/**
 * A pull-based reader over a Readable (the chat's stdin) that survives across connections.
 *
 * The server reads stdin for one peer after another. A read that is still pending when a peer
 * leaves must not lose its chunk: the chunk is kept and handed to the next reader. Reads stop while
 * a chunk is held (the stream's own buffer fills and the producer is back-pressured), so at most
 * one chunk plus the stream's high-water mark is buffered, whatever the input size.
 */
import type { Readable } from 'node:stream';

/** Returned by `next()` when its AbortSignal fired first; any chunk that arrives later is kept. */
export const ABORTED: unique symbol = Symbol('aborted');

export class ChunkSource {
  readonly #iterator: AsyncIterator<unknown>;
  readonly #held: Uint8Array[] = [];
  #pending: Promise<void> | undefined;
  #eof = false;
  #error: unknown = undefined;

  constructor(readonly stream: Readable) {
    this.#iterator = stream[Symbol.asyncIterator]();
  }

  /**
   * The next chunk, `null` at end of input, or `ABORTED` if `signal` fired before a chunk came.
   * Rejects with the stream's error if reading failed.
   */
  async next(signal?: AbortSignal): Promise<Uint8Array | null | typeof ABORTED> {
    for (;;) {
      if (signal?.aborted) return ABORTED;
      const chunk = this.#held.shift();
      if (chunk !== undefined) return chunk;
      if (this.#error !== undefined) throw this.#error;
      if (this.#eof) return null;
      this.#pending ??= this.#iterator.next().then(
        (result) => {
          this.#pending = undefined;
          if (result.done) this.#eof = true;
          else this.#held.push(toBytes(result.value));
        },
        (err: unknown) => {
          this.#pending = undefined;
          this.#error = err ?? new Error('read failed');
        },
      );
      await raceAbort(this.#pending, signal);
    }
  }

  /** Gives a chunk back: the next `next()` returns it first. */
  unshift(chunk: Uint8Array): void {
    this.#held.unshift(chunk);
  }

  /** Stops reading and releases the stream (so an idle stdin does not keep the process alive). */
  close(): void {
    this.#held.length = 0;
    this.stream.destroy();
  }
}

function toBytes(value: unknown): Uint8Array {
  if (value instanceof Uint8Array) return value;
  if (typeof value === 'string') return Buffer.from(value);
  throw new TypeError('ChunkSource: the stream must yield bytes');
}

/** Resolves when `promise` settles or `signal` fires, whichever is first; never rejects. */
function raceAbort(promise: Promise<void>, signal: AbortSignal | undefined): Promise<void> {
  if (signal === undefined) return promise;
  return new Promise<void>((resolve) => {
    const onAbort = () => resolve();
    signal.addEventListener('abort', onAbort, { once: true });
    void promise.then(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    });
  });
}

/**
 * The device's session table: bounded, ids are u64 (bigint), never reused while the device
 * lives (a stale id from a destroyed session is INVSESS, not someone else's session).
 * Destroying a session or resetting the table wipes the session's key material.
 */

/** What the table stores: anything that can drop its secrets. */
export interface Wipeable {
  wipe(): void;
}

/** Default bound (DPDK's vhost-crypto uses 1024 too). */
export const DEFAULT_MAX_SESSIONS = 1024;

const MAX_ID = (1n << 63n) - 1n;

export class SessionTable<T extends Wipeable> {
  readonly #sessions = new Map<bigint, T>();
  /** Ids start at 1 (0 stays free, as in DPDK; QEMU accepts any id >= 0). */
  #nextId = 1n;

  /** `firstId`: the first id handed out (1..2^63-1; default 1). */
  constructor(readonly maxSessions: number = DEFAULT_MAX_SESSIONS, firstId = 1n) {
    if (!Number.isInteger(maxSessions) || maxSessions < 1) throw new RangeError(`maxSessions must be a positive integer, got ${maxSessions}`);
    if (firstId < 1n || firstId > MAX_ID) throw new RangeError(`firstId must be 1..2^63-1, got ${firstId}`);
    this.#nextId = firstId;
  }

  get size(): number {
    return this.#sessions.size;
  }

  get full(): boolean {
    return this.#sessions.size >= this.maxSessions;
  }

  /** Adds a session; null when the table is full (the caller answers NOSPC and wipes `s`). */
  add(s: T): bigint | null {
    if (this.full) return null;
    let id = this.#nextId;
    // Ids stay below 2^63 so they are also valid non-negative int64s (vhost-user's session_id);
    // after a (theoretical) wrap, ids still in use are skipped. The table is not full, so this ends.
    while (this.#sessions.has(id)) id = id >= MAX_ID ? 1n : id + 1n;
    this.#nextId = id >= MAX_ID ? 1n : id + 1n;
    this.#sessions.set(id, s);
    return id;
  }

  /**
   * Stores `s` under a given id (a copy of another table's session), wiping any session it
   * replaces. Not bounded by maxSessions: the table that assigned the id enforced it.
   */
  put(id: bigint, s: T): void {
    const old = this.#sessions.get(id);
    this.#sessions.set(id, s);
    if (old !== undefined && old !== s) old.wipe();
  }

  get(id: bigint): T | undefined {
    return this.#sessions.get(id);
  }

  /** Removes and wipes a session; false if the id is unknown. */
  destroy(id: bigint): boolean {
    const s = this.#sessions.get(id);
    if (s === undefined) return false;
    this.#sessions.delete(id);
    s.wipe();
    return true;
  }

  /** Wipes and removes every session. */
  reset(): void {
    for (const s of this.#sessions.values()) s.wipe();
    this.#sessions.clear();
  }
}

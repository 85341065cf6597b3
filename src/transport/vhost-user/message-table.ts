/**
 * The back-end's dispatch table (after QEMU libvhost-user and rust-vmm vhost): for every request the
 * back-end serves, the payload shape, the fds it may carry, where its vring index is, and what it
 * replies. `checkMessage` applies the table BEFORE any handler runs; a violation closes the
 * connection (tier 1). Requests not in the table are read, their fds closed, and ignored (or
 * NACKed when NEED_REPLY is set), as vhost-user.rst asks of a back-end that does not know them.
 */
import {
  VHOST_USER,
  VHOST_USER_VERSION,
  VHOST_USER_VERSION_MASK,
  VHOST_USER_REPLY_MASK,
  VHOST_USER_NEED_REPLY_MASK,
  VHOST_MEMORY_BASELINE_NREGIONS,
  VHOST_USER_CRYPTO_SESSION_SIZE_V71,
  VHOST_USER_CRYPTO_SESSION_SIZE_V81,
} from '../../spec/vhost-user.js';
import { MEMORY_REGION_SIZE, type VhostUserHeader } from '../../wire/vhost-user.js';

/** The largest payload we ever read (the 8.1+ crypto session); anything larger closes the connection. */
export const MAX_PAYLOAD_SIZE = VHOST_USER_CRYPTO_SESSION_SIZE_V81;
/** The most fds one message may carry (SET_MEM_TABLE with 8 regions). */
export const MAX_MESSAGE_FDS = VHOST_MEMORY_BASELINE_NREGIONS;

export type PayloadShape = { kind: 'exact'; size: number } | { kind: 'memory-table' } | { kind: 'crypto-session' };
/** Where the vring index is: vring state/addr (u32 @0) or vring file (bits 0-7 of the u64). */
export type VringIndexAt = 'none' | 'u32' | 'file';
export type ReplyShape = 'none' | 'u64' | 'vring-state' | 'crypto-session';

export interface MessageSpec {
  readonly name: string;
  readonly payload: PayloadShape;
  readonly vringIndex: VringIndexAt;
  readonly reply: ReplyShape;
}

const exact = (size: number): PayloadShape => ({ kind: 'exact', size });

export const MESSAGE_TABLE: ReadonlyMap<number, MessageSpec> = new Map<number, MessageSpec>([
  [VHOST_USER.GET_FEATURES, { name: 'GET_FEATURES', payload: exact(0), vringIndex: 'none', reply: 'u64' }],
  [VHOST_USER.SET_FEATURES, { name: 'SET_FEATURES', payload: exact(8), vringIndex: 'none', reply: 'none' }],
  [VHOST_USER.SET_OWNER, { name: 'SET_OWNER', payload: exact(0), vringIndex: 'none', reply: 'none' }],
  [VHOST_USER.RESET_OWNER, { name: 'RESET_OWNER', payload: exact(0), vringIndex: 'none', reply: 'none' }],
  [VHOST_USER.SET_MEM_TABLE, { name: 'SET_MEM_TABLE', payload: { kind: 'memory-table' }, vringIndex: 'none', reply: 'none' }],
  [VHOST_USER.SET_VRING_NUM, { name: 'SET_VRING_NUM', payload: exact(8), vringIndex: 'u32', reply: 'none' }],
  [VHOST_USER.SET_VRING_ADDR, { name: 'SET_VRING_ADDR', payload: exact(40), vringIndex: 'u32', reply: 'none' }],
  [VHOST_USER.SET_VRING_BASE, { name: 'SET_VRING_BASE', payload: exact(8), vringIndex: 'u32', reply: 'none' }],
  [VHOST_USER.GET_VRING_BASE, { name: 'GET_VRING_BASE', payload: exact(8), vringIndex: 'u32', reply: 'vring-state' }],
  [VHOST_USER.SET_VRING_KICK, { name: 'SET_VRING_KICK', payload: exact(8), vringIndex: 'file', reply: 'none' }],
  [VHOST_USER.SET_VRING_CALL, { name: 'SET_VRING_CALL', payload: exact(8), vringIndex: 'file', reply: 'none' }],
  [VHOST_USER.SET_VRING_ERR, { name: 'SET_VRING_ERR', payload: exact(8), vringIndex: 'file', reply: 'none' }],
  [VHOST_USER.GET_PROTOCOL_FEATURES, { name: 'GET_PROTOCOL_FEATURES', payload: exact(0), vringIndex: 'none', reply: 'u64' }],
  [VHOST_USER.SET_PROTOCOL_FEATURES, { name: 'SET_PROTOCOL_FEATURES', payload: exact(8), vringIndex: 'none', reply: 'none' }],
  [VHOST_USER.GET_QUEUE_NUM, { name: 'GET_QUEUE_NUM', payload: exact(0), vringIndex: 'none', reply: 'u64' }],
  [VHOST_USER.SET_VRING_ENABLE, { name: 'SET_VRING_ENABLE', payload: exact(8), vringIndex: 'u32', reply: 'none' }],
  [VHOST_USER.CREATE_CRYPTO_SESSION, { name: 'CREATE_CRYPTO_SESSION', payload: { kind: 'crypto-session' }, vringIndex: 'none', reply: 'crypto-session' }],
  [VHOST_USER.CLOSE_CRYPTO_SESSION, { name: 'CLOSE_CRYPTO_SESSION', payload: exact(8), vringIndex: 'none', reply: 'none' }],
]);

export function requestName(request: number): string {
  return MESSAGE_TABLE.get(request)?.name ?? `request ${request}`;
}

/** A front-end broke the protocol: the connection is closed with this one-line reason. */
export class VhostUserProtocolError extends Error {
  override readonly name = 'VhostUserProtocolError';
}

/** Checks done on the header alone, before the payload is read. */
export function checkHeader(h: VhostUserHeader): void {
  const name = requestName(h.request);
  if ((h.flags & VHOST_USER_VERSION_MASK) !== VHOST_USER_VERSION) {
    throw new VhostUserProtocolError(`${name}: unsupported version ${h.flags & VHOST_USER_VERSION_MASK} in flags 0x${h.flags.toString(16)}`);
  }
  if ((h.flags & VHOST_USER_REPLY_MASK) !== 0) {
    throw new VhostUserProtocolError(`${name}: a front-end request has the REPLY flag set (flags 0x${h.flags.toString(16)})`);
  }
  if (h.size > MAX_PAYLOAD_SIZE) {
    throw new VhostUserProtocolError(`${name}: payload size ${h.size} exceeds ${MAX_PAYLOAD_SIZE}`);
  }
}

export function needsReply(h: VhostUserHeader): boolean {
  return (h.flags & VHOST_USER_NEED_REPLY_MASK) !== 0;
}

/**
 * The table check for a fully read message: payload size, fd count and vring index. Returns the spec
 * (undefined for a request we do not serve). Throws VhostUserProtocolError naming the violation.
 */
export function checkMessage(h: VhostUserHeader, payload: Uint8Array, fdCount: number, vringCount: number): MessageSpec | undefined {
  const spec = MESSAGE_TABLE.get(h.request);
  if (spec === undefined) return undefined;
  const dv = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  switch (spec.payload.kind) {
    case 'exact':
      if (payload.length !== spec.payload.size) {
        throw new VhostUserProtocolError(`${spec.name}: payload is ${payload.length} bytes, expected ${spec.payload.size}`);
      }
      break;
    case 'memory-table': {
      if (payload.length < 8) throw new VhostUserProtocolError(`${spec.name}: payload is ${payload.length} bytes, expected at least 8`);
      const n = dv.getUint32(0, true);
      if (n === 0 || n > VHOST_MEMORY_BASELINE_NREGIONS) {
        throw new VhostUserProtocolError(`${spec.name}: ${n} regions (1-${VHOST_MEMORY_BASELINE_NREGIONS} allowed)`);
      }
      if (payload.length !== 8 + MEMORY_REGION_SIZE * n) {
        throw new VhostUserProtocolError(`${spec.name}: payload is ${payload.length} bytes for ${n} regions, expected ${8 + MEMORY_REGION_SIZE * n}`);
      }
      if (fdCount !== n) throw new VhostUserProtocolError(`${spec.name}: ${n} regions but ${fdCount} fds`);
      break;
    }
    case 'crypto-session':
      if (payload.length !== VHOST_USER_CRYPTO_SESSION_SIZE_V71 && payload.length !== VHOST_USER_CRYPTO_SESSION_SIZE_V81) {
        throw new VhostUserProtocolError(
          `${spec.name}: payload is ${payload.length} bytes, expected ${VHOST_USER_CRYPTO_SESSION_SIZE_V71} or ${VHOST_USER_CRYPTO_SESSION_SIZE_V81}`,
        );
      }
      break;
  }
  if (spec.vringIndex === 'file') {
    const raw = dv.getBigUint64(0, true);
    if ((raw & ~0x1ffn) !== 0n) throw new VhostUserProtocolError(`${spec.name}: reserved bits set in 0x${raw.toString(16)}`);
    const noFd = (raw & 0x100n) !== 0n;
    const expected = noFd ? 0 : 1;
    if (fdCount !== expected) {
      throw new VhostUserProtocolError(`${spec.name}: ${fdCount} fds with the NOFD flag ${noFd ? 'set' : 'clear'} (expected ${expected})`);
    }
    const index = Number(raw & 0xffn);
    if (index >= vringCount) throw new VhostUserProtocolError(`${spec.name}: vring index ${index} out of range (0-${vringCount - 1})`);
  } else {
    if (spec.payload.kind !== 'memory-table' && fdCount !== 0) {
      throw new VhostUserProtocolError(`${spec.name}: carries ${fdCount} fds, expected none`);
    }
    if (spec.vringIndex === 'u32') {
      const index = dv.getUint32(0, true);
      if (index >= vringCount) throw new VhostUserProtocolError(`${spec.name}: vring index ${index} out of range (0-${vringCount - 1})`);
    }
  }
  return spec;
}

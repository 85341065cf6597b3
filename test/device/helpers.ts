/**
 * Test helpers for the device model: build DescriptorChains straight from byte arrays (the
 * shapes Linux produces: byte-granular splits, duplicated sg entries, in-place aliasing), and a
 * tiny "driver" that speaks the controlq/dataq layouts through src/wire encoders.
 */
import assert from 'node:assert/strict';
import type { DescriptorChain } from '../../src/virtqueue/chain.js';
import type { VirtioCryptoDevice } from '../../src/device/virtio-crypto-device.js';
import {
  decodeCreateSessionInput,
  encodeAeadDataReq,
  encodeCipherDataReq,
  encodeHashDataReq,
} from '../../src/wire/virtio-crypto.js';

export const hex = (s: string): Uint8Array => new Uint8Array(Buffer.from(s.replace(/[\s|]/g, ''), 'hex'));
export const toHex = (b: Uint8Array): string => Buffer.from(b.buffer, b.byteOffset, b.byteLength).toString('hex');
export const concat = (...parts: Uint8Array[]): Uint8Array => new Uint8Array(Buffer.concat(parts));

export function makeChain(readable: Uint8Array[], writable: Uint8Array[], head = 0): DescriptorChain {
  let r = 0;
  for (const b of readable) r += b.length;
  let w = 0;
  for (const b of writable) w += b.length;
  return { head, readable, writable, readableLength: r, writableLength: w };
}

/** Views of `buf` cut at the given offsets (ascending). */
export function split(buf: Uint8Array, cuts: number[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  let prev = 0;
  for (const c of cuts) {
    out.push(buf.subarray(prev, c));
    prev = c;
  }
  out.push(buf.subarray(prev));
  return out;
}

/** Linux's virtqueue_add_sgs on per-entry sg pointers: e1..en, e2..en, ..., en (docs/qemu-vhost-user-crypto.md §5). */
export function linuxDup(entries: Uint8Array[]): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (let i = 0; i < entries.length; i++) out.push(...entries.slice(i));
  return out;
}

/** The status byte: last byte of the writable stream. */
export function statusOf(writable: Uint8Array[]): number {
  for (let i = writable.length - 1; i >= 0; i--) {
    const b = writable[i]!;
    if (b.length > 0) return b[b.length - 1]!;
  }
  return -1;
}

/** Runs one controlq create request; returns the decoded session_input. */
export function ctrlCreate(dev: VirtioCryptoDevice, req: Uint8Array, ...keys: Uint8Array[]): { sessionId: bigint; status: number; written: number } {
  const input = new Uint8Array(16).fill(0xee);
  const written = dev.processControl(makeChain([req, ...keys], [input]));
  const { sessionId, status } = decodeCreateSessionInput(input);
  return { sessionId, status, written };
}

export function ctrlCreateOk(dev: VirtioCryptoDevice, req: Uint8Array, ...keys: Uint8Array[]): bigint {
  const r = ctrlCreate(dev, req, ...keys);
  assert.equal(r.status, 0, `create session status ${r.status}`);
  assert.equal(r.written, 16);
  return r.sessionId;
}

export interface DataResult {
  status: number;
  out: Uint8Array;
  written: number;
}

/** A cipher request: header, iv, src readable; dst (+ status) writable, optionally split/duplicated. */
export function cipherReq(
  dev: VirtioCryptoDevice,
  opcode: number,
  id: bigint,
  iv: Uint8Array,
  src: Uint8Array,
  shape: { srcCuts?: number[]; dstCuts?: number[]; dup?: boolean; hdrCut?: number } = {},
): DataResult {
  const hdr = encodeCipherDataReq(opcode, id, { ivLen: iv.length, srcDataLen: src.length, dstDataLen: src.length });
  const dst = new Uint8Array(src.length).fill(0xaa);
  const status = new Uint8Array(1).fill(0xff);
  const srcParts = split(src, shape.srcCuts ?? []);
  const dstParts = split(dst, shape.dstCuts ?? []);
  const hdrParts = shape.hdrCut === undefined ? [hdr] : split(hdr, [shape.hdrCut]);
  const readable = [...hdrParts, iv, ...(shape.dup ? linuxDup(srcParts) : srcParts)];
  const writable = [...(shape.dup ? linuxDup(dstParts) : dstParts), status];
  const written = dev.processData(makeChain(readable, writable));
  return { status: status[0]!, out: dst, written };
}

export function hashReq(dev: VirtioCryptoDevice, opcode: number, id: bigint, src: Uint8Array, resultLen: number): DataResult {
  const hdr = encodeHashDataReq(opcode, id, { srcDataLen: src.length, hashResultLen: resultLen });
  const out = new Uint8Array(resultLen);
  const status = new Uint8Array(1).fill(0xff);
  const written = dev.processData(makeChain([hdr, src], [out, status]));
  return { status: status[0]!, out, written };
}

export function aeadReq(
  dev: VirtioCryptoDevice,
  opcode: number,
  id: bigint,
  iv: Uint8Array,
  src: Uint8Array,
  aad: Uint8Array,
  dstLen: number,
): DataResult {
  const hdr = encodeAeadDataReq(opcode, id, { ivLen: iv.length, aadLen: aad.length, srcDataLen: src.length, dstDataLen: dstLen, tagLen: 0 });
  const out = new Uint8Array(dstLen).fill(0xaa);
  const status = new Uint8Array(1).fill(0xff);
  const written = dev.processData(makeChain([hdr, iv, src, aad], [out, status]));
  return { status: status[0]!, out, written };
}

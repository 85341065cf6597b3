/**
 * Where each microsecond of a depth-1 round trip goes: one AES-128-CBC encryption at a time
 * through the session API, with every stage timestamped (src/trace/latency-marks.ts: CLOCK_MONOTONIC
 * nanoseconds written by the driver's thread and the device threads into one shared array), and
 * the median of each stage-to-stage segment printed.
 *
 *   node --import tsx bench/breakdown.ts [--device virtio|vhost-user:PATH] [--size 64] [--seconds 2]
 *
 * `virtio`: every stage, the device threads' included. `vhost-user:PATH` (a running `vcrypto device
 * --socket PATH`): the device is another process, so its stages show as one segment, kick to
 * completion seen. The same run also times the round trip with the marks off in this thread (the
 * cost of marking), and a raw node:crypto operation of the same size (the crypto alone).
 */
import { createCipheriv, randomBytes } from 'node:crypto';
import { parseArgs } from 'node:util';
import type { CryptoDevice } from '../src/driver/api.js';
import { createInProcessDevice } from '../src/transport/in-process/create-in-process-device.js';
import { openDevice } from '../src/transport/open-device.js';
import { MARK, MARK_SLOTS, createMarkBuffer, installMarks, mark } from '../src/trace/latency-marks.js';

const { values } = parseArgs({ options: { device: { type: 'string', default: 'virtio' }, size: { type: 'string', default: '64' }, seconds: { type: 'string', default: '2' } } });
const spec = values.device;
const size = Number(values.size);
const seconds = Number(values.seconds);
if (!(size > 0 && size % 16 === 0) || !(seconds > 0)) throw new Error('--size: a multiple of 16; --seconds: > 0');

const NAMES: Record<number, string> = Object.fromEntries(Object.entries(MARK).map(([k, v]) => [v, k]));
/** What happens between a stage and the next one present (by the later stage). */
const MEANING: Record<number, string> = {
  [MARK.SUBMITTED]: 'driver submit (session API, request built, copied into guest memory, descriptors)',
  [MARK.FLUSH]: 'to the batching microtask',
  [MARK.KICKED]: 'doorbell (avail.idx published, kick sent)',
  [MARK.DEVICE_AWAKE]: 'device wake-up (kick to device thread running)',
  [MARK.PROCESS_START]: 'device pops the chain',
  [MARK.PROCESS_END]: 'device processes it (parse, crypto, result, status)',
  [MARK.INTERRUPT_RAISED]: 'completion (used element, used.idx, interrupt)',
  [MARK.COMPLETION_SEEN]: 'driver wake-up (interrupt to driver running)',
  [MARK.RESOLVED]: 'driver completion (result decoded, promise resolved)',
  [MARK.RETURNED]: 'promise resolution (to the caller running again)',
};

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s.length === 0 ? NaN : s[Math.floor((s.length - 1) / 2)]!;
}

const buffer = createMarkBuffer();
const marks = new Float64Array(buffer);
installMarks(buffer);
const device: CryptoDevice = spec === 'virtio' ? await createInProcessDevice({ traceMarks: buffer }) : await openDevice(spec);
const handle = await device.open();
const key = randomBytes(16);
const session = await handle.createSession({ kind: 'cipher', cipher: 'aes-cbc', key });
const iv = randomBytes(16);
const data = new Uint8Array(randomBytes(size));
const op = { op: 'encrypt', src: data, iv } as const;

// Warm-up (JIT, pages of guest memory, adaptive windows).
for (let i = 0; i < 2000; i++) await handle.crypt(session, op);

/** Segment (by its later stage) -> durations in µs; and the whole round trips. */
const segments = new Map<number, { from: Set<number>; us: number[] }>();
const traced: number[] = [];
/** Stage -> its time after CALL in µs (the timeline: threads overlap, e.g. the device runs during the kick syscall). */
const offsets = new Map<number, number[]>();
const untraced: number[] = [];
const end = performance.now() + seconds * 1000;
let round = 0;
while (performance.now() < end) {
  // Alternate traced and untraced round trips, so both see the same machine.
  if (round++ % 2 === 0) {
    marks.fill(NaN);
    mark(MARK.CALL);
    await handle.crypt(session, op);
    mark(MARK.RETURNED);
    const got = Array.from(marks.subarray(0, MARK_SLOTS));
    traced.push((got[MARK.RETURNED]! - got[MARK.CALL]!) / 1000);
    let prev = MARK.CALL as number;
    for (let m = 1; m <= MARK.RETURNED; m++) {
      if (Number.isNaN(got[m]!)) continue;
      const list = offsets.get(m) ?? [];
      list.push((got[m]! - got[MARK.CALL]!) / 1000);
      offsets.set(m, list);
      const seg = segments.get(m) ?? { from: new Set<number>(), us: [] };
      seg.from.add(prev);
      seg.us.push((got[m]! - got[prev]!) / 1000);
      segments.set(m, seg);
      prev = m;
    }
  } else {
    installMarks(null);
    const t0 = process.hrtime.bigint();
    await handle.crypt(session, op);
    untraced.push(Number(process.hrtime.bigint() - t0) / 1000);
    installMarks(buffer);
  }
}
await handle.closeSession(session);
await handle.close();
await device.close();

// The crypto alone: node:crypto on this thread, the operation the device runs.
const rawUs: number[] = [];
for (let i = 0; i < 20000; i++) {
  const t0 = process.hrtime.bigint();
  const c = createCipheriv('aes-128-cbc', key, iv);
  c.setAutoPadding(false);
  c.update(data);
  c.final();
  rawUs.push(Number(process.hrtime.bigint() - t0) / 1000);
}

const out = (s: string): boolean => process.stdout.write(`${s}\n`);
out(`depth-1 round trip, AES-128-CBC encrypt ${size} B, --device ${spec}: ${traced.length} traced + ${untraced.length} untraced round trips`);
out('segment (median µs; a segment counted only in round trips that passed both stages)');
let sum = 0;
for (let m = 1; m <= MARK.RETURNED; m++) {
  const seg = segments.get(m);
  if (!seg) continue;
  const med = median(seg.us);
  sum += med;
  const from = [...seg.from].map((f) => NAMES[f]).join('|');
  out(`  ${med.toFixed(1).padStart(7)}  ${`${from} -> ${NAMES[m]}`.padEnd(40)} ${MEANING[m]}${seg.us.length < traced.length ? ` (${seg.us.length} of ${traced.length})` : ''}`);
}
out(`  ${sum.toFixed(1).padStart(7)}  sum of the medians`);
out('timeline (median µs after CALL at which each stage is reached; the driver and the device threads run at once)');
for (let m = 1; m <= MARK.RETURNED; m++) {
  const list = offsets.get(m);
  if (list) out(`  ${median(list).toFixed(1).padStart(7)}  ${NAMES[m]}`);
}
const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
out(`  ${mean(untraced).toFixed(1).padStart(7)}  mean round trip, marks off (1e6 / this = depth-1 ops/s)`);
out(`  ${median(traced).toFixed(1).padStart(7)}  median round trip, traced`);
out(`  ${median(untraced).toFixed(1).padStart(7)}  median round trip, marks off in this thread`);
out(`  ${median(rawUs).toFixed(1).padStart(7)}  raw node:crypto operation alone (createCipheriv/update/final)`);

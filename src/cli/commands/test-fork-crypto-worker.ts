/**
 * One user of test-fork-crypto, on a worker thread: opens ITS OWN handle on the main thread's device
 * through the MessagePort proxy, runs the lab's test, reports lines and the verdict to the parent.
 */
import { parentPort, workerData, type MessagePort } from 'node:worker_threads';
import type { DeviceInfo } from '../../driver/api.js';
import { connectDevice } from '../../transport/message-port/connect-device.js';
import { runLabTest } from './crypto-common.js';

export interface ForkWorkerData {
  port: MessagePort;
  info: DeviceInfo;
  keyBits: number;
}

export type ForkWorkerMessage = { type: 'line'; line: string } | { type: 'done'; ok: boolean };

const post = (m: ForkWorkerMessage): void => parentPort?.postMessage(m);
const { port, info, keyBits } = workerData as ForkWorkerData;
const device = connectDevice(port, info);
let ok = false;
try {
  const handle = await device.open();
  try {
    ok = await runLabTest(handle, keyBits, (line) => post({ type: 'line', line }));
  } finally {
    await handle.close();
  }
} catch (err) {
  post({ type: 'line', line: `FAILED: ${err instanceof Error ? err.message : String(err)}` });
} finally {
  await device.close();
}
post({ type: 'done', ok });

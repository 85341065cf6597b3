/**
 * `vcrypto test-fork-crypto`: the lab's test_fork_crypto.c, generalised to N concurrent users of one
 * device, each with its own handle, sessions and verification.
 *  - host / virtio (the device lives in this process): N worker threads; the main thread owns the device
 *    and serves each worker over its own MessagePort (transport/message-port/).
 *  - vhost-user:PATH or socket:PATH (the device is another process): N child processes, each running
 *    `vcrypto test-crypto --device SPEC` with its own connection (socket: its own sessions in the
 *    driver service, freed if the child dies).
 */
import { spawn } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { MessageChannel, Worker } from 'node:worker_threads';
import type { CryptoDevice } from '../../driver/api.js';
import { DEFAULT_DEVICE_SPEC, DEVICE_OPTION_HELP, parseDeviceSpec } from '../../transport/open-device.js';
import { serveDevice } from '../../transport/message-port/serve-device.js';
import { type Command, formatHelp, parseCommandArgs, parsePositiveInt, UsageError } from '../command.js';
import { checkDeviceSpec, parseKeyBits, withDevice } from './crypto-common.js';
import { LAB_DEFAULT_KEY_BITS } from './test-crypto.js';
import type { ForkWorkerData, ForkWorkerMessage } from './test-fork-crypto-worker.js';

/** A sibling script of this module: compiled .js in dist/, or .ts under tsx (then tsx is loaded too). */
function siblingScript(relativeJs: string): { file: string; execArgv: string[] } {
  const fromSource = import.meta.url.endsWith('.ts');
  const url = new URL(fromSource ? relativeJs.replace(/\.js$/, '.ts') : relativeJs, import.meta.url);
  return { file: fileURLToPath(url), execArgv: fromSource ? ['--import', 'tsx'] : [] };
}

type Print = (line: string) => void;

/** One worker thread: a MessagePort served by this thread, the worker opens its own handle through it. */
async function runWorkerChild(device: CryptoDevice, index: number, keyBits: number, print: Print): Promise<boolean> {
  const { port1, port2 } = new MessageChannel();
  const server = serveDevice(device, port1);
  const { file, execArgv } = siblingScript('./test-fork-crypto-worker.js');
  const data: ForkWorkerData = { port: port2, info: device.info, keyBits };
  let verdict = false;
  try {
    const options = { workerData: data, transferList: [port2], stdout: false, stderr: false };
    // From source (under tsx), a worker needs tsx's loader registered before it imports the .ts script.
    const worker =
      execArgv.length === 0
        ? new Worker(file, options)
        : new Worker(`import('tsx/esm/api').then((tsx) => { tsx.register(); return import(${JSON.stringify(pathToFileURL(file).href)}); });`, { ...options, eval: true });
    worker.on('message', (m: ForkWorkerMessage) => {
      if (m.type === 'line') print(`[child ${index}] ${m.line}`);
      else if (m.type === 'done') verdict = m.ok;
    });
    const exitCode = await new Promise<number>((resolve) => {
      worker.once('error', (err) => print(`[child ${index}] FAILED: ${err.message}`));
      worker.once('exit', resolve);
    });
    return verdict && exitCode === 0;
  } finally {
    await server.close();
  }
}

/** One child process: `vcrypto test-crypto --device SPEC`, its own connection to the device. */
async function runProcessChild(spec: string, index: number, keyBits: number, print: Print): Promise<boolean> {
  const { file, execArgv } = siblingScript('../main.js');
  const child = spawn(process.execPath, [...execArgv, file, 'test-crypto', '--device', spec, '--key-bits', String(keyBits)], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const lines = (stream: NodeJS.ReadableStream, tag: string): Promise<void> =>
    new Promise((resolve) => {
      const rl = createInterface({ input: stream });
      rl.on('line', (l) => print(`[child ${index}]${tag} ${l}`));
      rl.once('close', resolve);
    });
  const [code] = await Promise.all([
    new Promise<number | null>((resolve) => {
      child.once('error', (err) => {
        print(`[child ${index}] FAILED: ${err.message}`);
        resolve(null);
      });
      child.once('close', (c) => resolve(c));
    }),
    lines(child.stdout, ''),
    lines(child.stderr, ' stderr:'),
  ]);
  return code === 0;
}

export const testForkCryptoCommand: Command = {
  name: 'test-fork-crypto',
  summary: 'N concurrent users of one device, each with its own sessions (test_fork_crypto)',
  help: formatHelp({
    usage: ['vcrypto test-fork-crypto [--device SPEC] [--children N] [--key-bits 128|192|256] [--mode threads|processes]'],
    description: [
      "The lab's test_fork_crypto: N users share one device concurrently, each opening its own handle,",
      'creating its own session, and encrypting/decrypting/verifying 16384 random bytes. Each line is',
      'prefixed by "[child K]".',
      'host/virtio: worker threads using the device owned by the main thread (over MessagePorts);',
      'vhost-user:PATH and socket:PATH: N child processes, each with its own connection to the device.',
    ],
    options: [
      DEVICE_OPTION_HELP,
      '  --children N       concurrent users, 1-256 (default 2: the lab forked once)',
      `  --key-bits BITS    AES key size (default ${LAB_DEFAULT_KEY_BITS})`,
      "  --mode MODE        threads: workers sharing this process's device; processes: one `vcrypto test-crypto`",
      '                     per child, each opening the device itself (default: processes for vhost-user and socket, else threads)',
    ],
    exitCodes: [[0, 'every child succeeded'], [1, 'a child failed']],
    examples: ['vcrypto test-fork-crypto --children 8', 'vcrypto test-fork-crypto --device vhost-user:./vc.sock --children 4'],
  }),

  async run(argv) {
    const { values } = parseCommandArgs(argv, {
      device: { type: 'string' },
      children: { type: 'string' },
      'key-bits': { type: 'string' },
      mode: { type: 'string' },
    });
    const spec = checkDeviceSpec(values.device ?? DEFAULT_DEVICE_SPEC);
    const children = values.children === undefined ? 2 : parsePositiveInt('--children', values.children, 256);
    const keyBits = parseKeyBits(values['key-bits'], LAB_DEFAULT_KEY_BITS);
    const print: Print = (line) => void process.stdout.write(line + '\n');
    const indices = Array.from({ length: children }, (_, i) => i + 1);
    let results: boolean[];
    if (values.mode !== undefined && values.mode !== 'threads' && values.mode !== 'processes') {
      throw new UsageError(`invalid --mode '${values.mode}': expected threads or processes`);
    }
    const mode = values.mode ?? (['vhost-user', 'socket'].includes(parseDeviceSpec(spec).kind) ? 'processes' : 'threads');
    if (mode === 'processes') {
      results = await Promise.all(indices.map((i) => runProcessChild(spec, i, keyBits, print)));
    } else {
      results = await withDevice(spec, (device) => Promise.all(indices.map((i) => runWorkerChild(device, i, keyBits, print))));
    }
    const ok = results.filter(Boolean).length;
    print(`${ok}/${children} children succeeded`);
    return ok === children ? 0 : 1;
  },
};

/**
 * `vcrypto vm`: boots a real Linux guest (Debian kernel, cached initramfs) on stock QEMU under
 * TCG with a virtio-crypto-pci device served by our `vcrypto device` (vhost-user) or by QEMU's
 * builtin back-end, runs the guest probe or a command, and exits with the guest's status.
 * `--bench` runs the probe's throughput mode with builtin and ours and prints both.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { CliError, UsageError, formatHelp, parseCommandArgs, parsePositiveInt, type Command } from '../command.js';
import { formatBenchTable, medianSamples, type BenchColumn } from '../../vm/bench.js';
import { ensureGuestImage, KERNEL_SOURCES, PACKAGE_ROOT, type GuestImage, type KernelSource } from '../../vm/guest-image.js';
import { VmError } from '../../vm/host-tools.js';
import { parseProbeOutput, type BenchSample } from '../../vm/probe-report.js';
import { MAX_GUEST_COMMAND_BYTES } from '../../vm/qemu.js';
import { ensureBackportsQemu, qemuAtPath } from '../../vm/qemu-backports.js';
import { formatQemuVersion, systemQemu, vhostUserNeedsVectorsZero, type QemuRuntime } from '../../vm/qemu-version.js';
import { runGuestSession, type BackendChoice, type SessionResult } from '../../vm/session.js';
import { formatGuestBench, runGuestBench } from '../../vm/guest-bench.js';
import { DEFAULT_POLL_MICROS } from '../../transport/vhost-user/backend-connection.js';
import { parsePollMicros } from './device.js';

const HELP = formatHelp({
  usage: [
    'vcrypto vm [--backend ours|builtin] --cmd "CMD" [--share DIR] [--forward HOSTPORT:GUESTPORT]...',
    '           [--dma vfio|uio] [--service on|off] [--qemu PATH|10] [--kernel system|backports]',
    '           [--cpus N] [--timeout S] [--verbose]',
    'vcrypto vm --frontend linux [--backend ours|builtin] [--probe-args "..." | --cmd "CMD"] [--msix on|off]',
    'vcrypto vm --bench [--seconds S] [--sizes 16,4096,...] [--rounds N] [--poll-us N] [--timeout S] [--qemu PATH|10]',
    'vcrypto vm --bench-guest [--seconds S] [--warmup S] [--rounds N] [--timeout S] [--qemu PATH|10]',
  ],
  description: [
    'Boots a Linux guest (Debian\'s linux-image-amd64 kernel and a busybox initramfs, built once and',
    'cached) on qemu-system-x86_64 -accel tcg with a virtio-crypto-pci device, runs CMD in it and exits',
    'with CMD\'s exit code. CMD\'s stdout and stderr come back apart, without kernel log lines.',
    '',
    'The lab\'s VM (--frontend ours, the default with --cmd): the guest hands the device to user space',
    '(vfio-pci behind a virtual Intel IOMMU, or uio_pci_generic) and starts our driver as a service,',
    '`vcrypto driver --pci --socket /run/vcrypto.sock` (its pid in /run/vcrypto-driver.pid). `vcrypto`',
    'is on the guest\'s PATH (Node and this package come from a read-only 9p share of the host\'s root).',
    'In CMD, `--device socket:/run/vcrypto.sock` uses the service; `--device pci` drives the device',
    'directly (boot with --service off, or stop the service first).',
    '',
    '--frontend linux runs Linux\'s own virtio_crypto driver instead, with the AF_ALG probe (the',
    'default without --cmd): /proc/crypto "selftest : passed" for virtio_crypto_aes_cbc, NIST SP 800-38A',
    'CBC known answers (one-shot, multi-part, misaligned, in place), larger buffers against',
    'cbc(aes-generic), and concurrent processes.',
    '',
    'QEMU: the system\'s qemu-system-x86_64 (Debian 12: 7.2) by default; --qemu 10 fetches QEMU 10.0 and',
    'Linux 6.12 from Debian bookworm-backports into the cache once (a private apt configuration: the',
    'system\'s apt sources and its QEMU are not changed) and boots the 6.12 guest on it. Our vhost-user',
    'device gets MSI-X on QEMU 9.1 and later, vectors=0 (INTx) before (QEMU 7.2 under TCG segfaults',
    'with MSI-X and vhost-user); the version comes from `--version`.',
  ],
  options: [
    '  --backend ours|builtin  ours: our `vcrypto device` over vhost-user (default); builtin: QEMU\'s',
    '                          cryptodev-backend-builtin (a device we did not write)',
    '  --cmd "CMD"             shell command to run in the guest (busybox sh)',
    '  --frontend ours|linux   the guest\'s driver: ours in user space (default with --cmd) or Linux\'s',
    '  --dma vfio|uio          ours: how the device reaches user space (default: vfio for builtin, uio for',
    '                          ours: a vhost-user back-end sees guest-physical addresses, no IOMMU)',
    '  --service on|off        ours: start the driver service at boot (default on)',
    '  --share DIR             share the host folder DIR read-write at /share in the guest',
    '  --forward H:G           forward TCP port H on the host\'s 127.0.0.1 to port G in the guest',
    '                          (QEMU user networking; repeatable)',
    '  --qemu PATH|10          the QEMU binary (default qemu-system-x86_64 on PATH); 10: QEMU 10.0 from',
    '                          bookworm-backports, fetched into the cache on first use (~13 MB). A QEMU',
    '                          unpacked from .debs (PREFIX/usr/bin/qemu-system-x86_64) runs with its',
    '                          PREFIX\'s data (-L) and modules (QEMU_MODULE_DIR)',
    '  --kernel SOURCE         the guest kernel: system = linux-image-amd64 of the host\'s apt sources',
    '                          (Debian 12: 6.1); backports = bookworm-backports\' (6.12, ~100 MB once).',
    '                          Default: backports with --qemu 10 and Linux\'s driver, else system (our',
    '                          driver in a 6.12 guest needs the device taken from the built-in',
    '                          virtio_pci first). Each kernel has its own cached image',
    '  --socket PATH           use a running \'vcrypto device --socket PATH\' instead of starting one (ours)',
    '  --probe-args="..."      --frontend linux: arguments for the probe, e.g. --probe-args="--forks 8"',
    '  --timeout S             fail if the guest has not finished after S seconds (default 180)',
    '  --msix on|off           builtin: MSI-X interrupts (default on) or vectors=0 (INTx); ours: MSI-X',
    '                          on QEMU 9.1+, vectors=0 before (QEMU 7.2 TCG + vhost-user + MSI-X segfaults)',
    '  --cpus N                guest vCPUs (default 1)',
    `  --poll-us N             ours: the polling window of the device vcrypto vm starts (default ${DEFAULT_POLL_MICROS})`,
    '  --verbose               show the boot log and the device\'s output on stderr (ours: vcrypto device',
    '                          --verbose, one line per vhost-user message)',
    '  --bench                 Linux driver throughput: builtin (MSI-X), builtin (vectors=0), ours (npm run bench:vm)',
    '  --bench-guest           our driver in the guest (depth 1, 32) vs Linux\'s AF_ALG on both devices',
    '                          (npm run bench:guest)',
    '  --seconds S             seconds per measurement in --bench/--bench-guest (default 1 / 2)',
    '  --warmup S              --bench-guest: seconds of uncounted requests before the warm measurements',
    '                          of our driver (default 5; a fresh Node process under TCG needs seconds to',
    '                          compile its request path: the cold depth-1 figure is shown as well)',
    '  --sizes LIST            --bench request sizes (default 16,256,4096,16384,65536)',
    '  --rounds N              boots per back-end, interleaved; medians (default 3 / 1)',
  ],
  exitCodes: [[1, 'the guest or QEMU failed (or CMD exited 1)'], [130, 'interrupted']],
  examples: [
    'vcrypto vm --cmd "vcrypto test-crypto --device socket:/run/vcrypto.sock"',
    'vcrypto vm --backend builtin --cmd "vcrypto test-fork-crypto --children 8 --device socket:/run/vcrypto.sock"',
    'vcrypto vm --service off --cmd "vcrypto test-crypto --device pci"',
    'vcrypto vm --share /tmp/vmshare --forward 35002:35001 --cmd "vcrypto crypto-server --host 0.0.0.0 --psk-file /share/chat.key --device socket:/run/vcrypto.sock"',
    'vcrypto vm --frontend linux                       # the AF_ALG probe on Linux\'s driver',
    'vcrypto vm --frontend linux --cmd "grep -A8 virtio_crypto_aes_cbc /proc/crypto"',
    'vcrypto vm --qemu 10                              # the probe on QEMU 10.0 + Linux 6.12, MSI-X',
    'npm run bench:vm -- --qemu 10                     # the --bench table on QEMU 10.0',
    '',
    'Environment: VCRYPTO_CACHE_DIR overrides the image cache (default $XDG_CACHE_HOME/virtio-cryptodev).',
    'VCRYPTO_DEBIAN_MIRROR overrides the mirror for bookworm-backports (default: the host\'s Debian mirror).',
    'Needs (Debian packages): qemu-system-x86, busybox-static, gcc + libc6-dev, apt/dpkg (the first run',
    'downloads the kernel package).',
  ],
});

const DEFAULT_BENCH_SIZES = '16,256,4096,16384,65536';

/** --qemu values that mean "QEMU 10 from bookworm-backports, cached". */
const BACKPORTS_QEMU_NAMES = new Set(['10', 'backports']);

/**
 * Checks --qemu and --kernel before anything is built; returns the kernel source. `--qemu 10`
 * brings the 6.12 kernel (6.12 has virtio_pci built in: guest/init.sh takes the device back from it
 * before handing it to user space).
 */
function checkQemuOptions(qemu: string | undefined, kernel: string | undefined): KernelSource {
  if (qemu !== undefined && !BACKPORTS_QEMU_NAMES.has(qemu) && !existsSync(qemu)) throw new UsageError(`--qemu ${qemu}: no such file (a path, or 10 for QEMU 10.0 from bookworm-backports)`);
  if (kernel !== undefined && !(KERNEL_SOURCES as readonly string[]).includes(kernel)) throw new UsageError(`invalid --kernel '${kernel}': expected ${KERNEL_SOURCES.join(' or ')}`);
  return (kernel as KernelSource | undefined) ?? (qemu !== undefined && BACKPORTS_QEMU_NAMES.has(qemu) ? 'backports' : 'system');
}

/** The QEMU --qemu names, with its version (which decides vectors=0 for our device). */
async function resolveQemu(qemu: string | undefined): Promise<QemuRuntime> {
  const log = (line: string) => process.stderr.write(`${line}\n`);
  if (qemu !== undefined && BACKPORTS_QEMU_NAMES.has(qemu)) return ensureBackportsQemu({ log });
  return qemu === undefined ? systemQemu() : qemuAtPath(qemu);
}

function describeQemu(q: QemuRuntime): string {
  return `QEMU ${formatQemuVersion(q.version)}, ours with ${vhostUserNeedsVectorsZero(q.version) ? 'vectors=0' : 'MSI-X'}`;
}
/** Guest RAM with our driver in the guest (--frontend ours). */
const GUEST_MEMORY_OURS_MIB = 1024;

function parseSizes(text: string): string {
  const sizes = text.split(',');
  for (const s of sizes) {
    if (!/^\d+$/.test(s) || Number(s) < 16 || Number(s) > 65536 || Number(s) % 16 !== 0) {
      throw new UsageError(`invalid --sizes entry '${s}': expected multiples of 16 from 16 to 65536`);
    }
  }
  return sizes.join(',');
}

/** Shell-quotes one argument for busybox sh. */
function shellQuote(arg: string): string {
  return /^[\w@%+=:,./-]+$/.test(arg) ? arg : `'${arg.replaceAll("'", "'\\''")}'`;
}

function describeFailure(result: SessionResult, label: string): string {
  const lines: string[] = [];
  if (result.timedOut) lines.push(`${label}: the guest did not finish in time (QEMU killed)`);
  else if (result.deviceExit) lines.push(`${label}: our device process exited during the run (${result.deviceExit.signal ?? `code ${result.deviceExit.code}`})`);
  else if (result.exitCode === undefined) lines.push(`${label}: the guest reported no result (QEMU exit ${result.qemuExit.signal ?? result.qemuExit.code})`);
  const qemuErr = result.qemuStderr.trim();
  if (qemuErr) lines.push(`QEMU stderr: ${qemuErr.split('\n').slice(-5).join(' | ')}`);
  if (result.deviceLog.trim()) lines.push(`device output (last lines):\n  ${result.deviceLog.trim().split('\n').slice(-10).join('\n  ')}`);
  if (result.consoleTail.length) lines.push(`guest console (last lines):\n  ${result.consoleTail.slice(-25).join('\n  ')}`);
  return lines.join('\n');
}

interface BenchRun {
  readonly label: string;
  readonly backend: BackendChoice;
  readonly samples: (readonly BenchSample[])[];
  readonly errors: string[];
  /** Per round: size -> our device's CPU seconds per request (warm-up request included). */
  readonly cpuPerRequest: Map<number, number>[];
}

async function bench(image: GuestImage, qemu: QemuRuntime, seconds: number, sizes: string, rounds: number, timeoutMs: number, verbose: boolean, deviceArgs: readonly string[], signal: AbortSignal): Promise<number> {
  const runs: BenchRun[] = [
    { label: 'builtin', backend: { kind: 'builtin', msix: true }, samples: [], errors: [], cpuPerRequest: [] },
    { label: 'builtin-vec0', backend: { kind: 'builtin', msix: false }, samples: [], errors: [], cpuPerRequest: [] },
    { label: 'ours', backend: { kind: 'ours', deviceArgs }, samples: [], errors: [], cpuPerRequest: [] },
  ];
  // Rounds interleave the back-ends, so a burst of load on the host hits all of them alike.
  for (let round = 1; round <= rounds; round++) {
    for (const run of runs) {
      if (signal.aborted) throw new CliError('interrupted', 130);
      process.stderr.write(`vm: bench round ${round}/${rounds} with ${run.label} (${sizes.split(',').length} sizes x ${seconds} s)\n`);
      try {
        const result = await runGuestSession({
          image,
          backend: run.backend,
          command: `/bin/probe bench --seconds ${seconds} --sizes ${sizes}`,
          timeoutMs,
          onEvent: verbose ? (e) => { if (e.kind === 'boot' || e.kind === 'output') process.stderr.write(`${e.line}\n`); } : undefined,
          onDeviceOutput: verbose ? (t) => process.stderr.write(t) : undefined,
          signal,
          qemu,
        });
        const report = parseProbeOutput(result.output);
        if (result.exitCode !== 0 || report.bench.length === 0) {
          const notOk = report.checks.filter((c) => !c.ok).map((c) => c.text).join('; ');
          process.stderr.write(`${describeFailure(result, run.label)}\n`);
          run.errors.push(notOk || `guest exit ${result.exitCode ?? 'unknown'}`);
        } else {
          run.samples.push(report.bench);
          if (result.outputDeviceCpu.length === result.output.length) {
            // CPU between consecutive bench lines = that size's warm-up + timed requests.
            const perSize = new Map<number, number>();
            let previous = 0;
            for (const sample of report.bench) {
              const cpu = result.outputDeviceCpu[sample.line ?? -1];
              if (cpu === undefined) break;
              perSize.set(sample.size, (cpu - previous) / (sample.ops + 1));
              previous = cpu;
            }
            run.cpuPerRequest.push(perSize);
          }
        }
      } catch (err) {
        if (!(err instanceof VmError)) throw err;
        run.errors.push(err.message);
      }
    }
  }
  const columns: BenchColumn[] = runs.map((run) => ({
    label: run.label,
    samples: medianSamples(run.samples),
    ...(run.errors.length ? { error: `${run.errors.length} of ${rounds} runs failed: ${[...new Set(run.errors)].join('; ')}` } : {}),
  }));
  process.stdout.write(`AF_ALG AES-128-CBC encrypt through virtio_crypto_aes_cbc, TCG guest (${describeQemu(qemu)}, kernel ${image.kernelVersion}), one process; median of ${rounds} round(s) x ${seconds} s per size\n`);
  process.stdout.write(`${formatBenchTable(columns)}\n`);
  for (const run of runs) {
    if (run.cpuPerRequest.length === 0) continue;
    const sizesSeen = [...new Set(run.cpuPerRequest.flatMap((m) => [...m.keys()]))].sort((a, b) => a - b);
    const cells = sizesSeen.map((size) => {
      const values = run.cpuPerRequest.flatMap((m) => (m.has(size) ? [m.get(size) as number] : [])).sort((a, b) => a - b);
      return `${size >= 1024 ? `${size / 1024} KiB` : `${size} B`} ${((values[Math.floor((values.length - 1) / 2)] ?? 0) * 1e6).toFixed(0)}`;
    });
    process.stdout.write(`${run.label}: device process CPU us/request (median; /proc utime+stime, 10 ms ticks): ${cells.join(', ')}\n`);
  }
  return runs.some((r) => r.errors.length > 0) ? 1 : 0;
}

/**
 * Runs `fn` with SIGINT/SIGTERM turned into an abort (so QEMU and our device, our children, are
 * stopped before we exit) and VmErrors turned into one-line CliErrors.
 */
async function withInterrupt(fn: (signal: AbortSignal) => Promise<number>): Promise<number> {
  const interrupted = new AbortController();
  const onSignal = () => interrupted.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  try {
    return await fn(interrupted.signal);
  } catch (err) {
    if (err instanceof VmError) throw new CliError(err.hint ? `${err.message}: ${err.hint}` : err.message, 1, { cause: err });
    throw err;
  } finally {
    process.removeListener('SIGINT', onSignal);
    process.removeListener('SIGTERM', onSignal);
  }
}

export const vmCommand: Command = {
  name: 'vm',
  summary: 'boot a Linux guest on QEMU with a virtio-crypto device; run commands through our driver inside it',
  help: HELP,
  async run(argv) {
    const { values } = parseCommandArgs(argv, {
      backend: { type: 'string' },
      socket: { type: 'string' },
      cmd: { type: 'string' },
      'probe-args': { type: 'string' },
      timeout: { type: 'string' },
      msix: { type: 'string' },
      verbose: { type: 'boolean' },
      bench: { type: 'boolean' },
      seconds: { type: 'string' },
      warmup: { type: 'string' },
      sizes: { type: 'string' },
      rounds: { type: 'string' },
      cpus: { type: 'string' },
      'poll-us': { type: 'string' },
      frontend: { type: 'string' },
      dma: { type: 'string' },
      service: { type: 'string' },
      share: { type: 'string' },
      forward: { type: 'string', multiple: true },
      qemu: { type: 'string' },
      kernel: { type: 'string' },
      'bench-guest': { type: 'boolean' },
    });
    if (values['bench-guest']) {
      const allowed = new Set(['bench-guest', 'seconds', 'warmup', 'rounds', 'timeout', 'qemu', 'kernel']);
      const extra = Object.keys(values).filter((k) => !allowed.has(k));
      if (extra.length > 0) throw new UsageError(`--bench-guest takes only --seconds, --warmup, --rounds, --timeout, --qemu, --kernel (not --${extra[0]})`);
      const seconds = parsePositiveInt('--seconds', values.seconds ?? '2', 60);
      const warmupSeconds = parsePositiveInt('--warmup', values.warmup ?? '5', 120);
      const rounds = parsePositiveInt('--rounds', values.rounds ?? '1', 20);
      const timeoutMs = parsePositiveInt('--timeout', values.timeout ?? '300', 3600) * 1000;
      const kernel = checkQemuOptions(values.qemu, values.kernel);
      return withInterrupt(async (signal) => {
        const image = await ensureGuestImage({ kernel, log: (line) => process.stderr.write(`${line}\n`) });
        const qemu = await resolveQemu(values.qemu);
        const size = 4096;
        process.stderr.write(`vm: ${describeQemu(qemu)}, kernel ${image.kernelVersion}\n`);
        const rows = await runGuestBench({ image, seconds, warmupSeconds, rounds, size, timeoutMs, signal, log: (l) => process.stderr.write(`${l}\n`), qemu });
        if (signal.aborted) throw new CliError('interrupted', 130);
        process.stdout.write(`AES-128-CBC encrypt in a TCG guest (multi-threaded TCG, 1 vCPU): Linux's virtio_crypto through AF_ALG (one process, one request at a time) vs our user-space PCI driver at depth 1 and 32, cold (a fresh process) and after ${warmupSeconds} s of warm-up; median of ${rounds} round(s) x ${seconds} s\n`);
        process.stdout.write(`${formatGuestBench(rows, size)}\n`);
        for (const r of rows) for (const e of r.errors) process.stderr.write(`vm: bench-guest ${r.backend}: ${e}\n`);
        return rows.some((r) => r.errors.length > 0) ? 1 : 0;
      });
    }
    const backendName = values.backend ?? 'ours';
    if (backendName !== 'ours' && backendName !== 'builtin') throw new UsageError(`invalid --backend '${backendName}': expected ours or builtin`);
    if (values.socket !== undefined && backendName !== 'ours') throw new UsageError('--socket needs --backend ours');
    if (values.socket !== undefined && values.socket.includes(',')) throw new UsageError("--socket path must not contain ',' (QEMU option syntax)");
    if (values.msix !== undefined && values.msix !== 'on' && values.msix !== 'off') throw new UsageError(`invalid --msix '${values.msix}': expected on or off`);
    if (values.msix === 'on' && backendName === 'ours') throw new UsageError('--msix on is only for --backend builtin: ours gets MSI-X where the QEMU allows it (9.1+), vectors=0 before');
    if (values.cmd !== undefined && values['probe-args'] !== undefined) throw new UsageError('--cmd and --probe-args exclude each other');
    const timeoutMs = parsePositiveInt('--timeout', values.timeout ?? '180', 3600) * 1000;
    const verbose = values.verbose === true;
    const cpus = parsePositiveInt('--cpus', values.cpus ?? '1', 8);
    if (values['poll-us'] !== undefined && (backendName !== 'ours' || values.socket !== undefined)) {
      throw new UsageError('--poll-us is for the device vcrypto vm starts itself (--backend ours without --socket, or --bench)');
    }
    const deviceArgs = [
      ...(values['poll-us'] === undefined ? [] : ['--poll-us', String(parsePollMicros(values['poll-us']))]),
      // --verbose: the device logs each vhost-user message (the session layout QEMU sends, vring indexes).
      ...(verbose ? ['--verbose'] : []),
    ];

    // Which driver runs the guest's device: ours (user space, through VFIO or uio) or Linux's.
    const frontend = values.frontend ?? (values.cmd !== undefined ? 'ours' : 'linux');
    if (frontend !== 'ours' && frontend !== 'linux') throw new UsageError(`invalid --frontend '${frontend}': expected ours or linux`);
    if (frontend === 'ours' && (values['probe-args'] !== undefined || values.bench)) throw new UsageError('the probe (--probe-args, --bench) runs on Linux\'s driver: use --frontend linux');
    if (frontend === 'ours' && values.cmd === undefined) throw new UsageError('--frontend ours needs --cmd "..." (the command to run against our driver in the guest)');
    const dma = values.dma ?? (backendName === 'builtin' ? 'vfio' : 'uio');
    if (dma !== 'vfio' && dma !== 'uio') throw new UsageError(`invalid --dma '${dma}': expected vfio or uio`);
    if (values.dma !== undefined && frontend !== 'ours') throw new UsageError('--dma is for --frontend ours');
    if (values.service !== undefined && values.service !== 'on' && values.service !== 'off') throw new UsageError(`invalid --service '${values.service}': expected on or off`);
    if (values.share !== undefined && (!existsSync(values.share) || values.share.includes(','))) throw new UsageError(`--share ${values.share}: no such folder (and no ',' in the path)`);
    const forwards = (values.forward ?? []).map((text) => {
      const m = /^(\d{1,5}):(\d{1,5})$/.exec(text);
      const hostPort = Number(m?.[1]);
      const guestPort = Number(m?.[2]);
      if (m === null || hostPort < 1 || hostPort > 65535 || guestPort < 1 || guestPort > 65535) throw new UsageError(`invalid --forward '${text}': expected HOSTPORT:GUESTPORT (1-65535)`);
      return { hostPort, guestPort };
    });
    const kernelSource = checkQemuOptions(values.qemu, values.kernel);
    const guestOptions = {
      ...(frontend === 'ours'
        ? {
            pci: dma as 'vfio' | 'uio',
            driverService: values.service !== 'off',
            separateStderr: true,
            hostRoot: { node: process.execPath, packageRoot: PACKAGE_ROOT },
            // Each Node process in the guest needs ~55 MB: room for the driver service and 8 clients.
            memoryMiB: GUEST_MEMORY_OURS_MIB,
            // Our driver polls the used ring while requests are in flight (see qemu.ts).
            mttcg: true,
          }
        : {}),
      ...(values.share !== undefined ? { share: resolve(values.share) } : {}),
      ...(forwards.length > 0 ? { forwards } : {}),
    };

    let command: string | undefined;
    if (values.cmd !== undefined) command = values.cmd;
    else if (values['probe-args'] !== undefined) command = ['/bin/probe', ...values['probe-args'].split(/\s+/).filter(Boolean).map(shellQuote)].join(' ');
    if (command !== undefined && (command.length === 0 || Buffer.byteLength(command) > MAX_GUEST_COMMAND_BYTES)) {
      throw new UsageError(`the guest command must be 1-${MAX_GUEST_COMMAND_BYTES} bytes (it travels on the kernel command line)`);
    }
    if (values.bench && (values.cmd !== undefined || values['probe-args'] !== undefined || values.backend !== undefined || values.socket !== undefined || values.cpus !== undefined)) {
      throw new UsageError('--bench runs builtin and ours itself: it takes only --seconds, --sizes, --rounds, --poll-us, --timeout, --verbose, --qemu, --kernel');
    }
    if (!values.bench && (values.seconds !== undefined || values.sizes !== undefined || values.rounds !== undefined)) throw new UsageError('--seconds, --sizes and --rounds are --bench options');
    if (values.warmup !== undefined) throw new UsageError('--warmup is a --bench-guest option');

    // SIGINT/SIGTERM: kill QEMU and our device before exiting (they are our children).
    return withInterrupt(async (signal) => {
      if (values.socket !== undefined && !existsSync(values.socket)) {
        throw new CliError(`no socket at ${values.socket}: start 'vcrypto device --socket ${values.socket}' first, or omit --socket to let vcrypto vm start one`);
      }
      // Every --bench option is checked before the (possibly downloading) image build.
      const benchArgs = values.bench
        ? {
            seconds: parsePositiveInt('--seconds', values.seconds ?? '1', 60),
            rounds: parsePositiveInt('--rounds', values.rounds ?? '3', 20),
            sizes: parseSizes(values.sizes ?? DEFAULT_BENCH_SIZES),
          }
        : undefined;
      const image = await ensureGuestImage({ kernel: kernelSource, log: (line) => process.stderr.write(`${line}\n`) });
      const qemu = await resolveQemu(values.qemu);
      if (benchArgs) {
        return await bench(image, qemu, benchArgs.seconds, benchArgs.sizes, benchArgs.rounds, timeoutMs, verbose, deviceArgs, signal);
      }
      const backend: BackendChoice = backendName === 'builtin' ? { kind: 'builtin', msix: values.msix !== 'off' } : { kind: 'ours', socketPath: values.socket, deviceArgs };
      const interrupts = (backend.kind === 'builtin' ? backend.msix : !vhostUserNeedsVectorsZero(qemu.version)) ? 'MSI-X' : 'vectors=0';
      process.stderr.write(
        `vm: booting the guest (kernel ${image.kernelVersion}, QEMU ${formatQemuVersion(qemu.version)} TCG, ${backendName} device with ${interrupts}, ${frontend === 'ours' ? `our driver over ${dma}` : "Linux's virtio_crypto"}); under TCG this takes ${frontend === 'ours' ? '15-40' : '5-10'} s\n`,
      );
      const result = await runGuestSession({
        image,
        backend,
        command,
        timeoutMs,
        cpus,
        logLevel: verbose ? 7 : 4,
        log: (line) => process.stderr.write(`${line}\n`),
        onEvent: (e) => {
          if (e.kind === 'output') process.stdout.write(`${e.line}\n`);
          else if (e.kind === 'boot' && verbose) process.stderr.write(`${e.line}\n`);
        },
        onDeviceOutput: verbose ? (t) => process.stderr.write(t) : undefined,
        signal: signal,
        guest: guestOptions,
        onStderr: (text) => process.stderr.write(text),
        qemu,
      });
      if (signal.aborted) throw new CliError('interrupted: QEMU stopped', 130);
      if (result.exitCode === undefined || result.deviceExit) {
        throw new CliError(describeFailure(result, `vm (${backendName})`));
      }
      process.stderr.write(`vm: guest exited with status ${result.exitCode} after ${result.seconds.toFixed(1)} s (${backendName})\n`);
      return result.exitCode;
    });
  },
};

/**
 * The cached guest image for `vcrypto vm`: a Debian kernel (`linux-image-amd64`'s current
 * dependency, fetched with `apt-get download` and unpacked with `dpkg-deb -x`), and an initramfs
 * holding static busybox, the virtio + AF_ALG modules (dependencies resolved from .modinfo), the
 * guest probe (guest/probe.c, `gcc -static`) and guest/init.sh as /init.
 *
 * The kernel comes from the system's apt sources (Debian 12: Linux 6.1), or with `kernel:
 * 'backports'` from bookworm-backports (Linux 6.12) through a private apt configuration (apt.ts).
 *
 * Built once per cache key = kernel package + version + probe source + init script + this
 * builder's format version; kept under <cache>/images/<key>/ (vmlinuz, initrd.gz, image.json).
 * A build happens in a private temporary directory renamed into place at the end, so concurrent
 * builders never see half an image.
 */
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rename, rm, stat, writeFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';
import { homedir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { backportsApt, candidate, debFileName, DownloadFailed, downloadDebs, systemApt, type Apt, type DebPackage } from './apt.js';
import { buildCpioNewc, type CpioEntry } from './cpio.js';
import { isStaticElf, runHost, VmError } from './host-tools.js';
import { ModuleResolutionError, moduleNameOfPath, readModuleDepends, resolveLoadOrder } from './module-deps.js';

/** Bump when the image layout changes, to invalidate old caches. */
const IMAGE_FORMAT = 2;
const KERNEL_METAPACKAGE = 'linux-image-amd64';
/**
 * The PCI transport, the virtio-crypto driver, and the AF_ALG skcipher interface (the kernel-driver
 * mode); 9p (the host's tree, for Node), VFIO and uio_pci_generic (the user-space driver modes) and
 * virtio-net (port forwarding). guest/init.sh loads only what the chosen mode needs.
 */
export const GUEST_MODULE_ROOTS = ['virtio_pci', 'virtio_crypto', 'algif_skcipher', '9p', '9pnet_virtio', 'vfio_pci', 'vfio_iommu_type1', 'uio_pci_generic', 'virtio_net'] as const;
const BUSYBOX_CANDIDATES = ['/bin/busybox', '/usr/bin/busybox'];

/** The package root (where guest/ and .cache/ live), from this file's place in src/vm or dist/vm. */
export const PACKAGE_ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The guest image cache: VCRYPTO_CACHE_DIR, else $XDG_CACHE_HOME/virtio-cryptodev (XDG Base Directory
 * spec: ignored unless absolute), else ~/.cache/virtio-cryptodev. Outside the installed package, so a
 * reinstall does not download the kernel again.
 */
export function defaultCacheDir(): string {
  if (process.env.VCRYPTO_CACHE_DIR) return process.env.VCRYPTO_CACHE_DIR;
  const xdg = process.env.XDG_CACHE_HOME;
  return join(xdg && isAbsolute(xdg) ? xdg : join(homedir(), '.cache'), 'virtio-cryptodev');
}

export interface GuestImage {
  readonly kernel: string;
  readonly initrd: string;
  readonly kernelPackage: string;
  readonly kernelVersion: string;
  readonly modules: readonly string[];
  /** True when this call built the image (false: taken from the cache). */
  readonly built: boolean;
}

/** Where the guest kernel comes from: the system's apt sources, or Debian bookworm-backports. */
export type KernelSource = 'system' | 'backports';
export const KERNEL_SOURCES: readonly KernelSource[] = ['system', 'backports'];

export interface ImageOptions {
  readonly cacheDir?: string;
  /** Default 'system'. */
  readonly kernel?: KernelSource;
  /** Progress lines ("downloading ..."), for the CLI's stderr. */
  readonly log?: (line: string) => void;
}

/** `apt-cache depends linux-image-amd64` -> "linux-image-6.1.0-NN-amd64", and its version. */
async function findKernelPackage(apt: Apt, log: (line: string) => void): Promise<DebPackage> {
  const query = async (): Promise<string | undefined> => {
    try {
      return /Depends:\s*(linux-image-[^\s<>]+)/.exec(await apt.cache(['depends', KERNEL_METAPACKAGE]))?.[1];
    } catch (err) {
      if (err instanceof VmError && err.hint) throw err;
      return undefined;
    }
  };
  let name = (await apt.hasLists()) ? await query() : undefined;
  if (name === undefined) {
    log(`vm: '${KERNEL_METAPACKAGE}' not in the package lists of ${apt.label}; running apt-get update`);
    await apt.update();
    name = await query();
  }
  if (name === undefined) {
    throw new VmError(`no kernel package: ${apt.label} knows no '${KERNEL_METAPACKAGE}'`, 'a Debian (bookworm) host with the main archive in its apt sources is needed');
  }
  const pkg = await candidate(apt, name);
  if (pkg === undefined) throw new VmError(`apt-cache show ${name}: no Version field`);
  return pkg;
}

async function findStaticBusybox(): Promise<string> {
  for (const path of BUSYBOX_CANDIDATES) {
    if (await isStaticElf(path)) return path;
  }
  throw new VmError('no statically linked busybox found (the guest has no libc)', 'install the Debian package busybox-static (apt-get install busybox-static)');
}

async function walk(dir: string, out: string[] = []): Promise<string[]> {
  for (const entry of await readdir(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) await walk(path, out);
    else if (/\.ko(\.xz)?$/.test(entry.name)) out.push(path);
  }
  return out;
}

/** A module's bytes; .ko.xz is decompressed on the host (busybox insmod may lack xz support). */
function readKoSync(path: string): Buffer {
  if (!path.endsWith('.xz')) return readFileSync(path);
  try {
    return execFileSync('xz', ['-dc', path], { maxBuffer: 64 * 1024 * 1024 });
  } catch (err) {
    throw new VmError(`cannot decompress ${path} with xz`, 'install the Debian package xz-utils', { cause: err });
  }
}

function cacheKey(pkg: DebPackage, probe: Buffer, init: Buffer): string {
  const h = createHash('sha256');
  h.update(`format=${IMAGE_FORMAT}\0kernel=${pkg.name}=${pkg.version}\0roots=${GUEST_MODULE_ROOTS.join(',')}\0`);
  h.update(createHash('sha256').update(probe).digest());
  h.update(createHash('sha256').update(init).digest());
  return h.digest('hex').slice(0, 16);
}

/** Returns the cached guest image, building it first if needed. */
export async function ensureGuestImage(options: ImageOptions = {}): Promise<GuestImage> {
  const apt = options.kernel === 'backports' ? await backportsApt(options.cacheDir ?? defaultCacheDir()) : systemApt;
  try {
    return await buildOrReuse(options, apt);
  } catch (err) {
    if (!(err instanceof DownloadFailed)) throw err;
    // Stale apt lists can name a version the mirror no longer has: refresh once, resolve again.
    options.log?.(`vm: ${err.message}; running apt-get update and retrying`);
    await apt.update();
    try {
      return await buildOrReuse(options, apt);
    } catch (again) {
      if (again instanceof DownloadFailed) {
        const reason = again.reason instanceof Error ? again.reason.message : String(again.reason);
        throw new VmError(`cannot download the kernel package: ${reason}`, 'the host needs network access to a Debian mirror (apt-get download linux-image-amd64)', { cause: again.reason });
      }
      throw again;
    }
  }
}

async function buildOrReuse(options: ImageOptions, apt: Apt): Promise<GuestImage> {
  const log = options.log ?? (() => {});
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const probeSource = join(PACKAGE_ROOT, 'guest', 'probe.c');
  const initSource = join(PACKAGE_ROOT, 'guest', 'init.sh');
  const [probe, init] = await Promise.all([readFile(probeSource), readFile(initSource)]).catch((err: unknown) => {
    throw new VmError(`guest sources missing (${(err as Error).message})`, 'reinstall the package: guest/probe.c and guest/init.sh ship with it', { cause: err });
  });
  const pkg = await findKernelPackage(apt, log);
  const key = cacheKey(pkg, probe, init);
  const imageDir = join(cacheDir, 'images', key);
  const metaPath = join(imageDir, 'image.json');
  if (existsSync(metaPath)) {
    const meta = JSON.parse(await readFile(metaPath, 'utf8')) as { modules: string[] };
    return { kernel: join(imageDir, 'vmlinuz'), initrd: join(imageDir, 'initrd.gz'), kernelPackage: pkg.name, kernelVersion: pkg.version, modules: meta.modules, built: false };
  }

  // Check every tool before the long steps, so a missing one is reported at once.
  const busybox = await findStaticBusybox();
  await runHost('gcc', ['--version']);
  await runHost('dpkg-deb', ['--version']);

  await mkdir(join(cacheDir, 'debs'), { recursive: true });
  const work = await mkdtemp(join(cacheDir, `build-${key}-`));
  try {
    // 1. The kernel package (kept: a probe change needs no new download).
    const debName = debFileName(pkg, 'amd64');
    const deb = join(cacheDir, 'debs', debName);
    if (!existsSync(deb)) {
      const [got] = await downloadDebs(apt, [pkg], join(cacheDir, 'debs'), log);
      if (got !== deb) await rename(got as string, deb);
    }

    // 2. Unpack; take vmlinuz and the modules.
    log(`vm: unpacking ${debName} (dpkg-deb -x)`);
    const root = join(work, 'pkg');
    await runHost('dpkg-deb', ['-x', deb, root]);
    const vmlinuz = (await readdir(join(root, 'boot'))).find((f) => f.startsWith('vmlinuz-'));
    if (vmlinuz === undefined) throw new VmError(`${pkg.name} has no /boot/vmlinuz-*`);
    const release = vmlinuz.slice('vmlinuz-'.length);
    const modDir = [join(root, 'lib', 'modules', release), join(root, 'usr', 'lib', 'modules', release)].find((d) => existsSync(d));
    if (modDir === undefined) throw new VmError(`${pkg.name} has no lib/modules/${release}`);
    const builtin = new Set(
      (await readFile(join(modDir, 'modules.builtin'), 'utf8').catch(() => '')).split('\n').filter(Boolean).map(moduleNameOfPath),
    );
    const paths = new Map((await walk(join(modDir, 'kernel'))).map((p) => [moduleNameOfPath(p), p] as const));
    const koBytes = new Map<string, Buffer>();
    let order: string[];
    try {
      order = resolveLoadOrder(GUEST_MODULE_ROOTS, (name) => {
        const path = paths.get(name);
        if (path === undefined) return builtin.has(name) ? null : undefined;
        const bytes = readKoSync(path);
        koBytes.set(name, bytes);
        return readModuleDepends(bytes);
      });
    } catch (err) {
      if (err instanceof ModuleResolutionError) throw new VmError(`${pkg.name}: ${err.message}`, undefined, { cause: err });
      throw err;
    }

    // 3. The probe, static: the guest has no libc.
    log('vm: compiling guest/probe.c (gcc -static)');
    const probeBin = join(work, 'probe');
    await runHost('gcc', ['-static', '-O2', '-Wall', '-o', probeBin, probeSource]).catch((err: unknown) => {
      throw new VmError(`gcc -static guest/probe.c failed: ${(err as Error).message}`, 'static linking needs the Debian package libc6-dev', { cause: err });
    });

    // 4. The initramfs.
    const entries: CpioEntry[] = [
      ...['bin', 'dev', 'etc', 'etc/vcrypto', 'lib', 'lib/modules', 'proc', 'sys', 'tmp'].map((path) => ({ type: 'dir' as const, path })),
      // The kernel opens /dev/console for /init's stdio before anything is mounted.
      { type: 'char', path: 'dev/console', major: 5, minor: 1 },
      { type: 'file', path: 'init', data: init, perm: 0o755 },
      { type: 'file', path: 'bin/busybox', data: await readFile(busybox), perm: 0o755 },
      { type: 'symlink', path: 'bin/sh', target: 'busybox' },
      // Dynamically linked host programs (node) run from the 9p share through the host's loader
      // and libraries (Debian's merged /usr): these resolve once /hostroot is mounted.
      { type: 'symlink', path: 'lib64', target: '/hostroot/usr/lib64' },
      { type: 'symlink', path: 'lib/x86_64-linux-gnu', target: '/hostroot/usr/lib/x86_64-linux-gnu' },
      { type: 'symlink', path: 'usr', target: '/hostroot/usr' },
      { type: 'file', path: 'bin/probe', data: await readFile(probeBin), perm: 0o755 },
      ...order.map((name) => ({ type: 'file' as const, path: `lib/modules/${name}.ko`, data: koBytes.get(name) as Buffer })),
      { type: 'file', path: 'etc/vcrypto/modules', data: Buffer.from(order.map((n) => `${n}.ko\n`).join('')) },
    ];
    const staged = join(work, 'image');
    await mkdir(staged);
    await copyFile(join(root, 'boot', vmlinuz), join(staged, 'vmlinuz'));
    await writeFile(join(staged, 'initrd.gz'), gzipSync(buildCpioNewc(entries), { level: 6 }));
    await writeFile(join(staged, 'image.json'), JSON.stringify({ kernelPackage: pkg.name, kernelVersion: pkg.version, release, modules: order }, null, 2) + '\n');
    await mkdir(join(cacheDir, 'images'), { recursive: true });
    try {
      await rename(staged, imageDir);
    } catch (err) {
      // Another builder won the race: its image is equivalent (same key).
      if (!existsSync(metaPath)) throw err;
    }
    const size = (await stat(join(imageDir, 'initrd.gz'))).size;
    log(`vm: guest image ${key} ready (kernel ${release}, initrd ${(size / 1024).toFixed(0)} KiB, modules ${order.join(' ')})`);
    return { kernel: join(imageDir, 'vmlinuz'), initrd: join(imageDir, 'initrd.gz'), kernelPackage: pkg.name, kernelVersion: pkg.version, modules: order, built: true };
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

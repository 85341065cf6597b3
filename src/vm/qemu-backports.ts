/**
 * QEMU 10.0 from Debian bookworm-backports, beside the system's QEMU 7.2 and without touching it:
 * qemu-system-x86, qemu-system-common and qemu-system-data are fetched with the private apt
 * configuration of apt.ts and unpacked with `dpkg-deb -x` into <cache>/qemu-backports/prefix.
 * Their libraries are bookworm's (the backport is built against bookworm), checked with ldd.
 *
 * Running it from there needs `-L <prefix>/usr/share/qemu` (its own option ROMs and data; the BIOS
 * still comes from the system's seabios through QEMU's firmware path), `-audio none`, and
 * QEMU_MODULE_DIR=<prefix>/usr/lib/x86_64-linux-gnu/qemu: the paths built into it are the system
 * 7.2's, whose data files and modules do not belong to 10.0.
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { backportsApt, candidate, debFileName, DownloadFailed, downloadDebs, type Apt, type DebPackage } from './apt.js';
import { defaultCacheDir } from './guest-image.js';
import { runHost, VmError } from './host-tools.js';
import { formatQemuVersion, probeQemuVersion, systemQemu, type QemuRuntime } from './qemu-version.js';

/** The packages that make up QEMU for x86 (its system libraries are the host's). */
export const BACKPORTS_QEMU_PACKAGES = ['qemu-system-x86', 'qemu-system-common', 'qemu-system-data'] as const;
/** The oldest major version we accept from backports (`--qemu 10`). */
const MIN_MAJOR = 10;

export interface BackportsQemuOptions {
  readonly cacheDir?: string;
  readonly log?: (line: string) => void;
}

/** The QEMU in `prefix` (an unpacked qemu-system-x86 tree) as it must be run. */
export function prefixRuntimeParts(prefix: string): Pick<QemuRuntime, 'binary' | 'extraArgs' | 'env'> {
  return {
    binary: join(prefix, 'usr', 'bin', 'qemu-system-x86_64'),
    extraArgs: ['-L', join(prefix, 'usr', 'share', 'qemu'), '-audio', 'none'],
    env: { QEMU_MODULE_DIR: join(prefix, 'usr', 'lib', 'x86_64-linux-gnu', 'qemu') },
  };
}

/**
 * The prefix of a QEMU unpacked from Debian packages elsewhere than / (PREFIX/usr/bin/qemu-system-*
 * beside PREFIX/usr/share/qemu), which then needs prefixRuntimeParts; undefined for any other path.
 */
export function unpackedPrefixOf(binary: string): string | undefined {
  const m = /^(.+)\/usr\/bin\/qemu-system-x86_64$/.exec(resolve(binary));
  if (m === null || m[1] === undefined) return undefined;
  return existsSync(join(m[1], 'usr', 'share', 'qemu')) ? m[1] : undefined;
}

/** `--qemu PATH`: that binary, with the options of its prefix when it was unpacked from a .deb. */
export async function qemuAtPath(binary: string): Promise<QemuRuntime> {
  const prefix = unpackedPrefixOf(binary);
  if (prefix === undefined) return systemQemu(resolve(binary));
  return runtimeOf(prefix, 0);
}

/** Sonames `ldd` reports as "not found". */
export function missingLibraries(lddOutput: string): string[] {
  return [...lddOutput.matchAll(/^\s*(\S+)\s+=>\s+not found/gm)].map((m) => m[1] as string);
}

async function runtimeOf(prefix: string, minMajor = MIN_MAJOR): Promise<QemuRuntime> {
  const parts = prefixRuntimeParts(prefix);
  const version = await probeQemuVersion(parts.binary, parts.env);
  if (version.major < minMajor) throw new VmError(`${parts.binary} is QEMU ${formatQemuVersion(version)}, not ${MIN_MAJOR}.x`);
  return { ...parts, version };
}

async function resolvePackages(apt: Apt, log: (line: string) => void): Promise<DebPackage[]> {
  if (!(await apt.hasLists())) {
    log(`vm: fetching the package lists of ${apt.label} (private to the cache; the system's apt is not changed)`);
    await apt.update();
  }
  const packages: DebPackage[] = [];
  for (const name of BACKPORTS_QEMU_PACKAGES) {
    const pkg = await candidate(apt, name);
    if (pkg === undefined) throw new VmError(`${apt.label} has no package ${name}`);
    packages.push(pkg);
  }
  const upstream = /^(?:\d+:)?(\d+)\./.exec(packages[0]!.version);
  if (upstream === null || Number(upstream[1]) < MIN_MAJOR) {
    throw new VmError(`${apt.label} offers qemu-system-x86 ${packages[0]!.version}, not QEMU ${MIN_MAJOR}.x`);
  }
  return packages;
}

/**
 * The cached QEMU 10 from bookworm-backports, fetched and unpacked first if needed (about 13 MB,
 * once). Delete <cache>/qemu-backports to fetch the newest again.
 */
export async function ensureBackportsQemu(options: BackportsQemuOptions = {}): Promise<QemuRuntime> {
  const log = options.log ?? (() => {});
  const cacheDir = options.cacheDir ?? defaultCacheDir();
  const home = join(cacheDir, 'qemu-backports');
  const prefix = join(home, 'prefix');
  if (existsSync(join(home, 'qemu.json'))) return runtimeOf(prefix);

  await runHost('dpkg-deb', ['--version']);
  const apt = await backportsApt(cacheDir);
  let packages = await resolvePackages(apt, log);
  const debDir = join(cacheDir, 'debs');
  const fetch = async (): Promise<string[]> => {
    const missing = packages.filter((p) => !existsSync(join(debDir, debFileName(p, p.name === 'qemu-system-data' ? 'all' : 'amd64'))));
    if (missing.length > 0) await downloadDebs(apt, missing, debDir, log);
    return packages.map((p) => join(debDir, debFileName(p, p.name === 'qemu-system-data' ? 'all' : 'amd64')));
  };
  let debs: string[];
  try {
    debs = await fetch();
  } catch (err) {
    if (!(err instanceof DownloadFailed)) throw err;
    // Stale lists can name a version the mirror no longer has: refresh once, resolve again.
    log(`vm: ${err.message}; refreshing the ${apt.label} lists and retrying`);
    await apt.update();
    packages = await resolvePackages(apt, log);
    try {
      debs = await fetch();
    } catch (again) {
      if (again instanceof DownloadFailed) throw new VmError(`cannot download QEMU from ${apt.label}: ${again.message}`, 'the host needs access to a Debian mirror (VCRYPTO_DEBIAN_MIRROR names another one)', { cause: again });
      throw again;
    }
  }
  for (const deb of debs) if (!existsSync(deb)) throw new VmError(`apt-get download left no ${deb}`);

  await mkdir(cacheDir, { recursive: true });
  // Built in a private folder renamed into place at the end: concurrent callers never see half a tree.
  const work = await mkdtemp(join(cacheDir, 'qemu-backports-build-'));
  try {
    const staged = join(work, 'home');
    log(`vm: unpacking ${packages.map((p) => p.name).join(', ')} (dpkg-deb -x) into ${home}`);
    await mkdir(join(staged, 'prefix'), { recursive: true });
    for (const deb of debs) await runHost('dpkg-deb', ['-x', deb, join(staged, 'prefix')]);
    const parts = prefixRuntimeParts(join(staged, 'prefix'));
    const ldd = await runHost('ldd', [parts.binary]).catch((err: unknown) => {
      throw new VmError(`ldd ${parts.binary} failed: ${(err as Error).message}`, undefined, { cause: err });
    });
    const missing = missingLibraries(ldd.stdout);
    if (missing.length > 0) {
      throw new VmError(
        `QEMU ${packages[0]!.version} needs libraries this host lacks: ${missing.join(', ')}`,
        'install the Debian packages that provide them (the system QEMU 7.2 is not changed by that)',
      );
    }
    const version = await probeQemuVersion(parts.binary, parts.env);
    const meta = { version: version.text, packages: packages.map((p) => ({ name: p.name, version: p.version })), fetchedAt: new Date().toISOString() };
    await writeFile(join(staged, 'qemu.json'), JSON.stringify(meta, null, 2) + '\n');
    try {
      await rename(staged, home);
    } catch (err) {
      // Another caller won the race (its tree is equivalent); anything else is an error.
      if (!existsSync(join(home, 'qemu.json'))) throw err;
    }
    const runtime = await runtimeOf(prefix);
    log(`vm: ${runtime.version.text} ready in ${home}`);
    return runtime;
  } finally {
    await rm(work, { recursive: true, force: true });
  }
}

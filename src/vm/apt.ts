/**
 * apt for `vcrypto vm`: the system's configuration (the default kernel), or a PRIVATE one under the
 * cache for Debian bookworm-backports (QEMU 10.0, Linux 6.12) that never touches the system's
 * sources, lists or packages: `apt-get -o Dir::Etc::SourceList=<ours> -o Dir::Etc::SourceParts=<empty>
 * -o Dir::State::Lists=<ours> -o Dir::Cache=<ours> update|download` (apt.conf(5) Dir:: options).
 * Only downloads happen; nothing is installed (debs are unpacked with `dpkg-deb -x`).
 */
import { existsSync } from 'node:fs';
import { mkdir, mkdtemp, readdir, readFile, rename, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { runHost, VmError } from './host-tools.js';

export interface DebPackage {
  readonly name: string;
  readonly version: string;
  /** The .deb's size in bytes (apt-cache's Size field), when known. */
  readonly size?: number;
}

export interface Apt {
  /** What the progress lines call it: "apt" or "apt (bookworm-backports)". */
  readonly label: string;
  /** `apt-get update` (only the private lists, for a private configuration). */
  update(): Promise<void>;
  /** `apt-cache ARGS` with this configuration. */
  cache(args: readonly string[]): Promise<string>;
  /** `apt-get download NAME=VERSION...` into `dir`. */
  download(specs: readonly string[], dir: string): Promise<void>;
  /** True when this configuration has package lists (a private one starts without). */
  hasLists(): Promise<boolean>;
}

/** The system's apt, as configured by the host (the default kernel comes from here). */
export const systemApt: Apt = {
  label: 'apt',
  async update() {
    try {
      await runHost('apt-get', ['update', '-qq']);
    } catch (err) {
      throw new VmError(`apt-get update failed (${(err as Error).message})`, 'run `apt-get update` as root, with access to a Debian mirror', { cause: err });
    }
  },
  async cache(args) {
    return (await runHost('apt-cache', args)).stdout;
  },
  async download(specs, dir) {
    await runHost('apt-get', ['download', '-qq', ...specs], { cwd: dir });
  },
  async hasLists() {
    return true;
  },
};

export const BACKPORTS_SUITE = 'bookworm-backports';
const DEFAULT_MIRROR = 'http://deb.debian.org/debian';
const DEBIAN_KEYRING = '/usr/share/keyrings/debian-archive-keyring.gpg';

/**
 * The Debian archive the host already uses: the first `deb` source of its main archive (a suite
 * named bookworm, bookworm-updates, ...; not the security archive), from the one-line
 * sources.list format and the deb822 .sources format (sources.list(5)). VCRYPTO_DEBIAN_MIRROR
 * overrides it; without any, deb.debian.org.
 */
export function findDebianMirror(files: readonly { readonly name: string; readonly text: string }[]): string | undefined {
  const candidates: string[] = [];
  // A Debian suite (not a third-party one such as nodesource's "nodistro").
  const isMain = (suites: readonly string[]) =>
    suites.some((s) => /^(buster|bullseye|bookworm|trixie|forky|sid|oldstable|stable|testing|unstable)(-updates|-backports)?$/.test(s));
  for (const { name, text } of files) {
    if (name.endsWith('.sources')) {
      for (const stanza of text.split(/\n\s*\n/)) {
        const field = (key: string) => new RegExp(`^${key}:[ \\t]*(.*)$`, 'mi').exec(stanza)?.[1]?.trim().split(/\s+/) ?? [];
        if (/^enabled:\s*no\b/im.test(stanza)) continue;
        if (!field('Types').includes('deb') || !isMain(field('Suites'))) continue;
        candidates.push(...field('URIs').filter((u) => /^https?:\/\//.test(u)));
      }
    } else {
      for (const raw of text.split('\n')) {
        const line = raw.replace(/#.*$/, '').trim();
        // deb [options] URI suite components...
        const m = /^deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)/.exec(line);
        if (m !== null && /^https?:\/\//.test(m[1]!) && isMain([m[2]!])) candidates.push(m[1]!);
      }
    }
  }
  return candidates.find((u) => !/security/.test(u))?.replace(/\/+$/, '');
}

async function systemSourceFiles(): Promise<{ name: string; text: string }[]> {
  const files: { name: string; text: string }[] = [];
  const read = async (path: string) => {
    const text = await readFile(path, 'utf8').catch(() => undefined);
    if (text !== undefined) files.push({ name: path, text });
  };
  await read('/etc/apt/sources.list');
  const dir = '/etc/apt/sources.list.d';
  for (const f of (await readdir(dir).catch(() => [] as string[])).sort()) {
    if (f.endsWith('.list') || f.endsWith('.sources')) await read(join(dir, f));
  }
  return files;
}

/** The mirror for the private backports configuration (see findDebianMirror). */
export async function debianMirror(): Promise<string> {
  const env = process.env.VCRYPTO_DEBIAN_MIRROR;
  if (env !== undefined && env !== '') return env.replace(/\/+$/, '');
  return findDebianMirror(await systemSourceFiles()) ?? DEFAULT_MIRROR;
}

/** The `-o` options of a private configuration rooted at `dir`. */
export function privateAptOptions(dir: string): string[] {
  const options = [
    `Dir::Etc::SourceList=${join(dir, 'sources.list')}`,
    `Dir::Etc::SourceParts=${join(dir, 'sources.list.d')}`,
    `Dir::State::Lists=${join(dir, 'lists')}`,
    `Dir::Cache=${join(dir, 'cache')}`,
  ];
  // As root apt fetches as the user _apt, who cannot write into the cache (a warning each time).
  if (process.getuid?.() === 0) options.push('APT::Sandbox::User=root');
  return options.flatMap((o) => ['-o', o]);
}

/**
 * A private apt configuration under `<cacheDir>/apt-backports` with one source,
 * `deb <mirror> bookworm-backports main`; its lists are fetched on first use.
 */
export async function backportsApt(cacheDir: string): Promise<Apt> {
  const dir = join(cacheDir, 'apt-backports');
  const mirror = await debianMirror();
  const signedBy = existsSync(DEBIAN_KEYRING) ? ` [signed-by=${DEBIAN_KEYRING}]` : '';
  const sourceLine = `deb${signedBy} ${mirror} ${BACKPORTS_SUITE} main\n`;
  for (const sub of ['sources.list.d', 'lists/partial', 'cache/archives/partial']) await mkdir(join(dir, sub), { recursive: true });
  const sourcesPath = join(dir, 'sources.list');
  const previous = await readFile(sourcesPath, 'utf8').catch(() => '');
  if (previous !== sourceLine) {
    await writeFile(sourcesPath, sourceLine);
    // A different mirror: its lists are stale.
    for (const f of await readdir(join(dir, 'lists'))) if (f !== 'partial' && f !== 'lock') await rm(join(dir, 'lists', f), { force: true });
  }
  const options = privateAptOptions(dir);
  const unreachable = (err: unknown) =>
    new VmError(
      `cannot fetch the ${BACKPORTS_SUITE} package lists from ${mirror} (${(err as Error).message})`,
      `the host needs access to a Debian mirror (set VCRYPTO_DEBIAN_MIRROR=http://HOST/debian to use another one); the system's apt sources are not used or changed`,
      { cause: err },
    );
  const hasLists = async () => (await readdir(join(dir, 'lists')).catch(() => [] as string[])).some((f) => /_Packages(\.\w+)?$/.test(f));
  return {
    label: `apt (${BACKPORTS_SUITE}, ${mirror})`,
    async update() {
      try {
        const { stderr } = await runHost('apt-get', [...options, 'update', '-qq'], { timeoutMs: 300_000 });
        // apt-get update exits 0 when a source could not be fetched (W: Failed to fetch ...).
        if (/^(W|E): (Failed to fetch|Some index files failed)/m.test(stderr)) throw new Error(stderr.trim().split('\n')[0]);
      } catch (err) {
        throw unreachable(err);
      }
      if (!(await hasLists())) throw unreachable(new Error('no Packages list after apt-get update'));
    },
    async cache(args) {
      return (await runHost('apt-cache', [...options, ...args])).stdout;
    },
    async download(specs, dir) {
      await runHost('apt-get', [...options, 'download', '-qq', ...specs], { cwd: dir });
    },
    hasLists,
  };
}

/** `apt-cache show --no-all-versions NAME`: its candidate's version and size. */
export async function candidate(apt: Apt, name: string): Promise<DebPackage | undefined> {
  const stdout = await apt.cache(['show', '--no-all-versions', name]).catch(() => '');
  const version = /^Version:\s*(\S+)/m.exec(stdout)?.[1];
  if (version === undefined) return undefined;
  const size = Number(/^Size:\s*(\d+)/m.exec(stdout)?.[1] ?? Number.NaN);
  return { name, version, ...(Number.isSafeInteger(size) && { size }) };
}

/** The file name apt-get download gives a package ("%3a" for the epoch's colon). */
export function debFileName(pkg: DebPackage, arch: string): string {
  return `${pkg.name}_${pkg.version.replaceAll(':', '%3a')}_${arch}.deb`;
}

export class DownloadFailed extends Error {
  constructor(readonly reason: unknown) {
    super(`apt-get download failed: ${reason instanceof Error ? reason.message : String(reason)}`);
  }
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

/**
 * Downloads `packages` with `apt` into `destDir` (each as the file apt names it), logging the size,
 * progress every 5 s and the time taken. Returns the paths, in order. A failed download is a
 * DownloadFailed (the caller may refresh the lists and retry).
 */
export async function downloadDebs(apt: Apt, packages: readonly DebPackage[], destDir: string, log: (line: string) => void): Promise<string[]> {
  await mkdir(destDir, { recursive: true });
  const total = packages.every((p) => p.size !== undefined) ? packages.reduce((a, p) => a + (p.size ?? 0), 0) : undefined;
  const names = packages.map((p) => `${p.name} ${p.version}`).join(', ');
  log(`vm: downloading ${names}${total !== undefined ? ` (${mb(total)})` : ''} with ${apt.label}, once: later runs use the cache`);
  const dl = await mkdtemp(join(destDir, 'dl-'));
  const started = Date.now();
  // Progress: what has arrived in the download folder so far (apt writes there as it fetches).
  const progress = setInterval(() => {
    void (async () => {
      let got = 0;
      for (const f of await readdir(dl, { recursive: true }).catch(() => [] as string[])) got += (await stat(join(dl, f)).catch(() => null))?.size ?? 0;
      log(`vm: downloading: ${mb(got)}${total !== undefined ? ` of ${mb(total)}` : ''} after ${Math.round((Date.now() - started) / 1000)} s`);
    })();
  }, 5000);
  progress.unref();
  try {
    await apt.download(packages.map((p) => `${p.name}=${p.version}`), dl).catch((err: unknown) => {
      throw new DownloadFailed(err);
    });
    const got = await readdir(dl);
    const paths: string[] = [];
    for (const p of packages) {
      const file = got.find((f) => f.startsWith(`${p.name}_`) && f.endsWith('.deb'));
      if (file === undefined) throw new VmError(`apt-get download ${p.name} produced no .deb`);
      await rename(join(dl, file), join(destDir, file));
      paths.push(join(destDir, file));
    }
    log(`vm: downloaded ${packages.map((p) => p.name).join(', ')} in ${Math.round((Date.now() - started) / 1000)} s`);
    return paths;
  } finally {
    clearInterval(progress);
    await rm(dl, { recursive: true, force: true });
  }
}

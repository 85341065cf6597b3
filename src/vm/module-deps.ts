/**
 * Kernel module dependencies without depmod: a Debian linux-image package ships the .ko files
 * but not modules.dep (its postinst runs depmod). Each module names its dependencies in the
 * "depends=" string of its .modinfo ELF section (the same field `modinfo -F depends` prints);
 * modinfo strings are NUL-separated, so "\0depends=" locates it.
 */

/** Module names compare with '-' and '_' equal (the kernel does the same). */
export function normalizeModuleName(name: string): string {
  return name.replaceAll('-', '_');
}

/** The module name of a path such as ".../virtio_pci.ko" or ".../virtio-rng.ko.xz". */
export function moduleNameOfPath(path: string): string {
  const base = path.slice(path.lastIndexOf('/') + 1);
  return normalizeModuleName(base.replace(/\.ko(\.(xz|zst|gz))?$/, ''));
}

/** Reads the "depends=" field of a module's .modinfo; [] when the field is empty or absent. */
export function readModuleDepends(ko: Uint8Array): string[] {
  const needle = Buffer.from('\0depends=', 'latin1');
  const buf = Buffer.from(ko.buffer, ko.byteOffset, ko.byteLength);
  const at = buf.indexOf(needle);
  if (at < 0) return [];
  const start = at + needle.length;
  const end = buf.indexOf(0, start);
  const text = buf.subarray(start, end < 0 ? buf.length : end).toString('latin1');
  return text === '' ? [] : text.split(',').map(normalizeModuleName);
}

export class ModuleResolutionError extends Error {
  override readonly name = 'ModuleResolutionError';
}

/**
 * Load order for `roots` and everything they depend on: dependencies before dependents, each
 * module once. `depsOf(name)` returns the module's dependencies, or null when the module is
 * built into the kernel (nothing to load). Throws on unknown modules and dependency cycles.
 */
export function resolveLoadOrder(roots: readonly string[], depsOf: (name: string) => readonly string[] | null | undefined): string[] {
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const visit = (raw: string, chain: readonly string[]) => {
    const name = normalizeModuleName(raw);
    const seen = state.get(name);
    if (seen === 'done') return;
    if (seen === 'visiting') throw new ModuleResolutionError(`module dependency cycle: ${[...chain, name].join(' -> ')}`);
    const deps = depsOf(name);
    if (deps === undefined) {
      throw new ModuleResolutionError(`kernel module '${name}' not found${chain.length ? ` (needed by ${chain.join(' -> ')})` : ''}`);
    }
    state.set(name, 'visiting');
    for (const d of deps ?? []) visit(d, [...chain, name]);
    state.set(name, 'done');
    if (deps !== null) order.push(name);
  };
  for (const r of roots) visit(r, []);
  return order;
}

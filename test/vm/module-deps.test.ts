/**
 * Module load order from .modinfo "depends=" fields, as the Debian 6.1 kernel's modules declare
 * them (values copied from `modinfo -F depends` of linux-image-6.1.0-*-amd64).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ModuleResolutionError, moduleNameOfPath, readModuleDepends, resolveLoadOrder } from '../../src/vm/module-deps.js';

const DEBIAN_61: Record<string, string[]> = {
  virtio_pci: ['virtio_ring', 'virtio_pci_modern_dev', 'virtio_pci_legacy_dev', 'virtio'],
  virtio_pci_modern_dev: [],
  virtio_pci_legacy_dev: [],
  virtio_ring: [],
  virtio: ['virtio_ring'],
  virtio_crypto: ['virtio', 'crypto_engine', 'virtio_ring'],
  crypto_engine: [],
  af_alg: [],
  algif_skcipher: ['af_alg'],
};

test('dependencies load before dependents, each module once', () => {
  const order = resolveLoadOrder(['virtio_pci', 'virtio_crypto', 'algif_skcipher'], (n) => DEBIAN_61[n]);
  assert.deepEqual(order, ['virtio_ring', 'virtio_pci_modern_dev', 'virtio_pci_legacy_dev', 'virtio', 'virtio_pci', 'crypto_engine', 'virtio_crypto', 'af_alg', 'algif_skcipher']);
  for (const [name, deps] of Object.entries(DEBIAN_61)) {
    for (const d of deps) assert.ok(order.indexOf(d) < order.indexOf(name), `${d} before ${name}`);
  }
});

test('built-in modules (null) are skipped, unknown ones and cycles are errors', () => {
  const graph: Record<string, string[] | null> = { virtio_crypto: ['virtio', 'crypto_engine'], virtio: null, crypto_engine: [] };
  assert.deepEqual(resolveLoadOrder(['virtio_crypto'], (n) => graph[n]), ['crypto_engine', 'virtio_crypto']);
  assert.throws(() => resolveLoadOrder(['a'], (n) => ({ a: ['b'] })[n]), (e: unknown) => e instanceof ModuleResolutionError && /'b' not found \(needed by a\)/.test(e.message));
  assert.throws(() => resolveLoadOrder(['a'], (n) => ({ a: ['b'], b: ['a'] })[n]), /cycle: a -> b -> a/);
});

test('readModuleDepends finds the NUL-separated modinfo field; names normalise - to _', () => {
  const modinfo = Buffer.from('\x7fELF....\0license=GPL\0depends=virtio,crypto-engine,virtio_ring\0retpoline=Y\0intree=Y\0', 'latin1');
  assert.deepEqual(readModuleDepends(modinfo), ['virtio', 'crypto_engine', 'virtio_ring']);
  assert.deepEqual(readModuleDepends(Buffer.from('\0license=GPL\0depends=\0intree=Y\0', 'latin1')), []);
  assert.deepEqual(readModuleDepends(Buffer.from('no modinfo here', 'latin1')), []);
  assert.equal(moduleNameOfPath('/lib/modules/6.1.0/kernel/drivers/char/hw_random/virtio-rng.ko'), 'virtio_rng');
  assert.equal(moduleNameOfPath('kernel/crypto/af_alg.ko.xz'), 'af_alg');
});

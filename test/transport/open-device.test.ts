/**
 * Device specs (transport/open-device.ts): pci[:BDF] with its PCI address forms, socket:PATH, and the
 * errors for everything else.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CryptoError } from '../../src/driver/api.js';
import { normalizePciAddress, parseDeviceSpec } from '../../src/transport/open-device.js';

const isInvalid = (err: unknown) => err instanceof CryptoError && err.code === 'EINVAL';

test('pci and pci:BDF: DDDD:BB:DD.F or BB:DD.F, normalised to lower-case DDDD:BB:DD.F', () => {
  assert.deepEqual(parseDeviceSpec('pci'), { kind: 'pci' });
  assert.deepEqual(parseDeviceSpec('pci:0000:00:04.0'), { kind: 'pci', bdf: '0000:00:04.0' });
  assert.deepEqual(parseDeviceSpec('pci:00:04.0'), { kind: 'pci', bdf: '0000:00:04.0' });
  assert.deepEqual(parseDeviceSpec('pci:00AB:FF:1F.7'), { kind: 'pci', bdf: '00ab:ff:1f.7' });
  // Device numbers are 5 bits (0-1f), functions 3 bits (0-7).
  for (const bad of ['pci:', 'pci:00:20.0', 'pci:00:04.8', 'pci:0:4.0', 'pci:00:04', 'pci:00000:00:04.0', 'pci:00:04.0 ', 'pci:gg:04.0']) {
    assert.throws(() => parseDeviceSpec(bad), isInvalid, bad);
  }
  assert.equal(normalizePciAddress('1:2.3'), undefined);
});

test('socket:PATH; an empty path or an unknown spec is EINVAL naming every form', () => {
  assert.deepEqual(parseDeviceSpec('socket:/run/vcrypto.sock'), { kind: 'socket', path: '/run/vcrypto.sock' });
  assert.deepEqual(parseDeviceSpec('socket:rel/x:y.sock'), { kind: 'socket', path: 'rel/x:y.sock' });
  assert.throws(() => parseDeviceSpec('socket:'), (e: unknown) => isInvalid(e) && /socket:PATH/.test((e as Error).message));
  assert.throws(() => parseDeviceSpec('pcie'), (e: unknown) => isInvalid(e) && /host, virtio, vhost-user:PATH, pci\[:BDF\] or socket:PATH/.test((e as Error).message));
});

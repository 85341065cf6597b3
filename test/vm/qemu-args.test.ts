/** The QEMU command line for each back-end (docs/qemu-vhost-user-crypto.md §1: vectors=0). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildQemuArgs, kernelCommandLine, MAX_GUEST_COMMAND_BYTES } from '../../src/vm/qemu.js';

function option(args: readonly string[], name: string): string[] {
  return args.flatMap((a, i) => (a === name ? [args[i + 1] ?? ''] : []));
}

const base = { kernel: 'k', initrd: 'i' };

test('always TCG, serial console on stdio, no reboot', () => {
  const args = buildQemuArgs({ ...base, backend: { kind: 'builtin', msix: true } });
  assert.deepEqual(option(args, '-accel'), ['tcg']);
  assert.deepEqual(option(args, '-serial'), ['stdio']);
  assert.ok(args.includes('-no-reboot'));
  assert.deepEqual(option(args, '-kernel'), ['k']);
  assert.deepEqual(option(args, '-initrd'), ['i']);
  assert.match(option(args, '-append')[0]!, /console=ttyS0/);
  assert.deepEqual(option(args, '-smp'), ['1']);
  assert.deepEqual(option(buildQemuArgs({ ...base, cpus: 2, backend: { kind: 'builtin', msix: true } }), '-smp'), ['2']);
});

test('builtin: cryptodev-backend-builtin, MSI-X by default, vectors=0 on request', () => {
  const msix = buildQemuArgs({ ...base, backend: { kind: 'builtin', msix: true } });
  assert.deepEqual(option(msix, '-object'), ['cryptodev-backend-builtin,id=cd0']);
  assert.deepEqual(option(msix, '-device'), ['virtio-crypto-pci,id=crypto0,cryptodev=cd0']);
  const intx = buildQemuArgs({ ...base, backend: { kind: 'builtin', msix: false } });
  assert.deepEqual(option(intx, '-device'), ['virtio-crypto-pci,id=crypto0,cryptodev=cd0,vectors=0']);
});

test('vhost-user: shared memfd RAM of the guest size, chardev socket, vectors=0', () => {
  const args = buildQemuArgs({ ...base, memoryMiB: 256, backend: { kind: 'vhost-user', socketPath: '/run/x/vc.sock' } });
  assert.deepEqual(option(args, '-m'), ['256M']);
  assert.deepEqual(option(args, '-object'), ['memory-backend-memfd,id=mem,size=256M,share=on', 'cryptodev-vhost-user,id=cd0,chardev=c0']);
  assert.deepEqual(option(args, '-machine'), ['memory-backend=mem']);
  assert.deepEqual(option(args, '-chardev'), ['socket,id=c0,path=/run/x/vc.sock']);
  assert.deepEqual(option(args, '-device'), ['virtio-crypto-pci,id=crypto0,cryptodev=cd0,vectors=0']);
  assert.throws(() => buildQemuArgs({ ...base, backend: { kind: 'vhost-user', socketPath: '/a,b' } }), RangeError);
});

test('the guest command travels base64 on the kernel command line and decodes back', () => {
  const cmd = `grep -A8 'virtio_crypto' /proc/crypto; echo "a b" && exit 3`;
  const line = kernelCommandLine({ command: cmd });
  assert.ok(!line.includes(' -A8'), 'no raw command text');
  const b64 = /vcrypto\.cmd=(\S+)/.exec(line)?.[1];
  assert.equal(Buffer.from(b64!, 'base64').toString('utf8'), cmd);
  assert.doesNotMatch(kernelCommandLine({}), /vcrypto\.cmd/);
  assert.ok(kernelCommandLine({ command: 'x'.repeat(MAX_GUEST_COMMAND_BYTES) }).length < 2048);
  assert.throws(() => kernelCommandLine({ command: 'x'.repeat(MAX_GUEST_COMMAND_BYTES + 1) }), RangeError);
  assert.throws(() => kernelCommandLine({ command: '' }), RangeError);
});

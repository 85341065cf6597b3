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

test('our driver in the guest over VFIO: q35 + virtual Intel IOMMU before the devices, iommu_platform=on, intel_iommu=on', () => {
  const args = buildQemuArgs({ ...base, backend: { kind: 'builtin', msix: true }, pci: 'vfio', hostRoot: { node: '/usr/bin/node', packageRoot: '/opt/vc/' }, mttcg: true });
  assert.deepEqual(option(args, '-accel'), ['tcg,thread=multi']);
  assert.deepEqual(option(args, '-machine'), ['q35']);
  const devices = option(args, '-device');
  assert.equal(devices[0], 'intel-iommu,intremap=off', 'the IOMMU is created before the devices it translates for');
  assert.equal(devices.at(-1), 'virtio-crypto-pci,id=crypto0,cryptodev=cd0,iommu_platform=on');
  assert.deepEqual(option(args, '-virtfs'), ['local,path=/,mount_tag=hostroot,security_model=none,readonly=on']);
  const cmdline = option(args, '-append')[0]!;
  for (const word of ['vcrypto.pci=vfio', 'intel_iommu=on', 'vcrypto.node=/usr/bin/node', 'vcrypto.pkg=/opt/vc']) assert.ok(cmdline.split(' ').includes(word), word);
  assert.doesNotMatch(cmdline, /vcrypto\.driver=0/);
});

test('our driver in the guest over uio with our vhost-user device: no IOMMU, vectors=0; share, forwards, stderr socket', () => {
  const args = buildQemuArgs({
    ...base,
    backend: { kind: 'vhost-user', socketPath: '/run/vc.sock' },
    pci: 'uio',
    driverService: false,
    share: '/tmp/share',
    forwards: [{ hostPort: 35002, guestPort: 35001 }, { hostPort: 8080, guestPort: 80 }],
    separateStderr: true,
    stderrSocket: '/tmp/q/stderr.sock',
  });
  assert.deepEqual(option(args, '-accel'), ['tcg']);
  assert.deepEqual(option(args, '-machine'), ['memory-backend=mem']);
  assert.ok(option(args, '-device').includes('virtio-crypto-pci,id=crypto0,cryptodev=cd0,vectors=0'));
  assert.ok(!option(args, '-device').some((d) => d.startsWith('intel-iommu')));
  assert.deepEqual(option(args, '-virtfs'), ['local,path=/tmp/share,mount_tag=share,security_model=none']);
  assert.deepEqual(option(args, '-netdev'), ['user,id=n0,hostfwd=tcp:127.0.0.1:35002-:35001,hostfwd=tcp:127.0.0.1:8080-:80']);
  assert.ok(option(args, '-device').includes('virtio-net-pci,netdev=n0'));
  assert.ok(option(args, '-chardev').includes('socket,id=gerr,path=/tmp/q/stderr.sock'));
  assert.ok(option(args, '-device').includes('isa-serial,chardev=gerr'));
  const cmdline = option(args, '-append')[0]!.split(' ');
  for (const word of ['vcrypto.pci=uio', 'vcrypto.driver=0', 'vcrypto.share=1', 'vcrypto.net=1', 'vcrypto.stderr=1']) assert.ok(cmdline.includes(word), word);
  assert.ok(!cmdline.includes('intel_iommu=on'));
  assert.throws(() => buildQemuArgs({ ...base, backend: { kind: 'builtin', msix: true }, separateStderr: true }), RangeError);
  assert.throws(() => buildQemuArgs({ ...base, backend: { kind: 'builtin', msix: true }, hostRoot: { node: '/usr/bin/no de', packageRoot: '/x' } }), RangeError);
});

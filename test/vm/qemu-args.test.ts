/**
 * The QEMU command line for each back-end (docs/qemu-vhost-user-crypto.md §1: vectors=0 where the
 * QEMU needs it), and which QEMU needs it, from `--version` lines copied from the real binaries.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { buildQemuArgs, kernelCommandLine, MAX_GUEST_COMMAND_BYTES, vhostUserQemuArgs } from '../../src/vm/qemu.js';
import { formatQemuVersion, parseQemuVersion, vhostUserNeedsVectorsZero } from '../../src/vm/qemu-version.js';
import { missingLibraries, prefixRuntimeParts, unpackedPrefixOf } from '../../src/vm/qemu-backports.js';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

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

test('vhost-user: shared memfd RAM of the guest size, chardev socket, vectors=0 unless msix', () => {
  const args = buildQemuArgs({ ...base, memoryMiB: 256, backend: { kind: 'vhost-user', socketPath: '/run/x/vc.sock' } });
  assert.deepEqual(option(args, '-m'), ['256M']);
  assert.deepEqual(option(args, '-object'), ['memory-backend-memfd,id=mem,size=256M,share=on', 'cryptodev-vhost-user,id=cd0,chardev=c0']);
  assert.deepEqual(option(args, '-machine'), ['memory-backend=mem']);
  assert.deepEqual(option(args, '-chardev'), ['socket,id=c0,path=/run/x/vc.sock']);
  assert.deepEqual(option(args, '-device'), ['virtio-crypto-pci,id=crypto0,cryptodev=cd0,vectors=0']);
  assert.throws(() => buildQemuArgs({ ...base, backend: { kind: 'vhost-user', socketPath: '/a,b' } }), RangeError);
  const msix = buildQemuArgs({ ...base, memoryMiB: 256, backend: { kind: 'vhost-user', socketPath: '/run/x/vc.sock', msix: true } });
  assert.deepEqual(option(msix, '-device'), ['virtio-crypto-pci,id=crypto0,cryptodev=cd0']);
  assert.deepEqual(option(msix, '-object')[0], 'memory-backend-memfd,id=mem,size=256M,share=on');
});

/** First lines of `qemu-system-x86_64 --version`, as the Debian binaries print them. */
const QEMU_72 = 'QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\nCopyright (c) 2003-2022 Fabrice Bellard and the QEMU Project developers\n';
const QEMU_100 = 'QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-2+deb13u1~bpo12+1)\nCopyright (c) 2003-2025 Fabrice Bellard and the QEMU Project developers\n';

test('QEMU versions from --version; vectors=0 for vhost-user before 9.1 (upstream a8e63ff289), and when unknown', () => {
  const v72 = parseQemuVersion(QEMU_72);
  assert.deepEqual(v72 && { ...v72, text: undefined }, { major: 7, minor: 2, micro: 22, text: undefined });
  assert.equal(v72?.text, 'QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)');
  const v100 = parseQemuVersion(QEMU_100);
  assert.equal(v100 && formatQemuVersion(v100), '10.0.2');
  assert.equal(vhostUserNeedsVectorsZero(v72), true);
  assert.equal(vhostUserNeedsVectorsZero(v100), false);
  // The boundary: 9.1.0 is the first release with the guard; every 9.0.x and 8.x stays on vectors=0.
  const v = (text: string) => parseQemuVersion(`QEMU emulator version ${text}`);
  assert.equal(vhostUserNeedsVectorsZero(v('9.0.4')), true);
  assert.equal(vhostUserNeedsVectorsZero(v('8.2.7')), true);
  assert.equal(vhostUserNeedsVectorsZero(v('9.1.0')), false);
  assert.equal(vhostUserNeedsVectorsZero(v('9.2')), false);
  assert.equal(v('9.2')?.micro, 0);
  assert.equal(vhostUserNeedsVectorsZero(undefined), true, 'unknown QEMU: vectors=0 works everywhere');
  for (const bad of ['', 'qemu-system-x86_64: command not found', 'QEMU emulator version x.y']) assert.equal(parseQemuVersion(bad), undefined, bad);
});

test('vhostUserQemuArgs (vcrypto device --print-qemu-args): memfd size = -m, queues, vectors=0 only without msix', () => {
  assert.deepEqual(vhostUserQemuArgs({ socketPath: '/run/vc.sock', memory: '2G', msix: true, queues: 2 }), [
    '-object', 'memory-backend-memfd,id=mem,size=2G,share=on',
    '-machine', 'memory-backend=mem',
    '-chardev', 'socket,id=c0,path=/run/vc.sock',
    '-object', 'cryptodev-vhost-user,id=cd0,chardev=c0,queues=2',
    '-device', 'virtio-crypto-pci,id=crypto0,cryptodev=cd0',
  ]);
  assert.equal(vhostUserQemuArgs({ socketPath: '/run/vc.sock', memory: '512M', msix: false }).at(-1), 'virtio-crypto-pci,id=crypto0,cryptodev=cd0,vectors=0');
  assert.throws(() => vhostUserQemuArgs({ socketPath: '/run/a b.sock', memory: '512M', msix: false }), RangeError);
});

test('QEMU 10 from an unpacked prefix: -L its data, -audio none, QEMU_MODULE_DIR its modules; ldd\'s missing libraries', () => {
  const parts = prefixRuntimeParts('/c/qemu-backports/prefix');
  assert.equal(parts.binary, '/c/qemu-backports/prefix/usr/bin/qemu-system-x86_64');
  assert.deepEqual(parts.extraArgs, ['-L', '/c/qemu-backports/prefix/usr/share/qemu', '-audio', 'none']);
  assert.deepEqual(parts.env, { QEMU_MODULE_DIR: '/c/qemu-backports/prefix/usr/lib/x86_64-linux-gnu/qemu' });
  const ldd = [
    '\tlinux-vdso.so.1 (0x00007ffd5a3f2000)',
    '\tlibpixman-1.so.0 => /lib/x86_64-linux-gnu/libpixman-1.so.0 (0x00007f2a1c000000)',
    '\tlibfoo.so.3 => not found',
    '\tlibbar-2.0.so.1 => not found',
  ].join('\n');
  assert.deepEqual(missingLibraries(ldd), ['libfoo.so.3', 'libbar-2.0.so.1']);
  assert.deepEqual(missingLibraries('\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x1)'), []);
});

test('--qemu PATH: a QEMU unpacked from .debs is recognised by PREFIX/usr/bin beside PREFIX/usr/share/qemu', (t) => {
  const root = mkdtempSync(join(tmpdir(), 'vcrypto-prefix-'));
  t.after(() => rmSync(root, { recursive: true, force: true }));
  mkdirSync(join(root, 'usr', 'bin'), { recursive: true });
  const binary = join(root, 'usr', 'bin', 'qemu-system-x86_64');
  assert.equal(unpackedPrefixOf(binary), undefined, 'no usr/share/qemu beside it');
  mkdirSync(join(root, 'usr', 'share', 'qemu'), { recursive: true });
  assert.equal(unpackedPrefixOf(binary), root);
  assert.equal(unpackedPrefixOf(join(root, 'usr', 'bin', 'qemu-system-aarch64')), undefined);
  assert.equal(unpackedPrefixOf('/usr/bin/qemu-system-x86_64'), undefined, 'the system QEMU needs no options');
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

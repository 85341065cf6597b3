/**
 * The real guest: `vcrypto vm` boots a Debian Linux kernel on stock qemu-system-x86_64 (TCG) with
 * a virtio-crypto-pci device, and the guest's own virtio_crypto driver runs the probe: the
 * kernel's crypto self-tests (/proc/crypto "selftest : passed"), NIST SP 800-38A CBC known answers
 * through AF_ALG with multi-part, misaligned and in-place buffers, large buffers against the
 * kernel's cbc(aes-generic), and concurrent guest processes (half of them sharing one session).
 *
 * The matrix, one boot each:
 *   - the system's QEMU 7.2 + Linux 6.1, OUR back-end (`vcrypto device`, vhost-user): vectors=0,
 *     so the guest's virtio0 interrupt is an IO-APIC line; QEMU sends 632-byte sessions;
 *   - QEMU 10.0 + Linux 6.12 from bookworm-backports (`--qemu 10`), OUR back-end: MSI-X
 *     (virtio0-config and virtio0-virtqueues vectors); QEMU sends 1072-byte sessions;
 *   - QEMU 10.0 + Linux 6.12 with QEMU's builtin back-end, MSI-X: the same checks on a device we
 *     did not write.
 *
 * It FAILS (never skips) when QEMU, busybox-static, gcc, the kernel packages or QEMU 10 cannot be
 * had: `vcrypto vm` then exits non-zero naming what is missing or unreachable.
 * Needs `npm run build` first (it runs the built CLI).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { runVcrypto, type CliRun } from './spawn-cli.js';

/** The CLI kills QEMU itself after this; the test waits a bit longer (first run also fetches and builds). */
const GUEST_TIMEOUT_S = 150;

const started: CliRun[] = [];
// SIGTERM first: `vcrypto vm` then stops QEMU and its device (a SIGKILL would orphan them).
after(() => Promise.all(started.map((run) => run.stop())));

interface Case {
  readonly name: string;
  readonly args: readonly string[];
  readonly backend: 'ours' | 'builtin';
  /** The booting line's QEMU and kernel versions. */
  readonly qemu: RegExp;
  readonly kernel: RegExp;
  readonly msix: boolean;
  /** The CREATE_CRYPTO_SESSION payload our device logs (ours only). */
  readonly sessionLayout?: string;
}

const CASES: readonly Case[] = [
  {
    name: 'QEMU 7.2 + Linux 6.1, ours over vhost-user with vectors=0',
    args: ['--backend', 'ours'],
    backend: 'ours',
    qemu: /QEMU 7\.2\.\d+ TCG/,
    kernel: /kernel 6\.1\./,
    msix: false,
    sessionLayout: 'session layout QEMU 7.1-8.0 (632 bytes)',
  },
  {
    name: 'QEMU 10.0 + Linux 6.12 (bookworm-backports), ours over vhost-user with MSI-X',
    args: ['--qemu', '10', '--backend', 'ours'],
    backend: 'ours',
    qemu: /QEMU 10\.0\.\d+ TCG/,
    kernel: /kernel 6\.12\./,
    msix: true,
    sessionLayout: 'session layout QEMU 8.1+ (1072 bytes) op_code 0x0002',
  },
  {
    name: 'QEMU 10.0 + Linux 6.12 (bookworm-backports), builtin with MSI-X',
    args: ['--qemu', '10', '--backend', 'builtin'],
    backend: 'builtin',
    qemu: /QEMU 10\.0\.\d+ TCG/,
    kernel: /kernel 6\.12\./,
    msix: true,
  },
];

for (const c of CASES) {
  test(`vcrypto vm: a Linux guest passes the AF_ALG probe on virtio_crypto_aes_cbc: ${c.name}`, { timeout: (GUEST_TIMEOUT_S + 120) * 1000 }, async () => {
    // The probe, then the guest's interrupt table (which shows MSI-X or INTx for virtio0).
    const vm = runVcrypto(['vm', ...c.args, '--frontend', 'linux', '--verbose', '--timeout', String(GUEST_TIMEOUT_S), '--cmd', '/bin/probe && cat /proc/interrupts'], {
      timeoutMs: (GUEST_TIMEOUT_S + 100) * 1000,
    });
    started.push(vm);
    const { code, stdout, stderr, timedOut } = await vm.done;
    const context = `\n--- stdout ---\n${stdout}\n--- stderr (last 6000) ---\n${stderr.slice(-6000)}`;
    assert.ok(!timedOut, `vcrypto vm did not exit in time${context}`);
    assert.equal(code, 0, `vcrypto vm exit ${code}${context}`);
    const lines = stdout.split('\n');

    // The kernel's testmgr ran the driver's self-tests at registration and they passed.
    assert.ok(lines.some((l) => /^ok selftest driver=virtio_crypto_aes_cbc name=cbc\(aes\) selftest=passed$/.test(l)), `selftest${context}`);
    // NIST SP 800-38A F.2.1-F.2.6: 3 key sizes x 4 buffer shapes x encrypt/decrypt.
    for (const vector of ['F.2.1/F.2.2 CBC-AES128', 'F.2.3/F.2.4 CBC-AES192', 'F.2.5/F.2.6 CBC-AES256']) {
      for (const shape of ['one-shot', 'multi-part', 'misaligned', 'in-place']) {
        for (const dir of ['encrypt', 'decrypt']) {
          const line = `ok kat ${vector} ${dir} ${shape}`;
          assert.ok(lines.includes(line), `missing "${line}"${context}`);
        }
      }
    }
    // Up to 64 KiB (the 292-descriptor requests), page-crossing offsets, against cbc(aes-generic).
    assert.equal(lines.filter((l) => /^ok oracle len=\d+ /.test(l)).length, 7, `oracle checks${context}`);
    assert.ok(lines.includes('ok forks processes=4 rounds=8 bytes=16384 concurrent shared-session=2'), `forks${context}`);
    assert.ok(!lines.some((l) => l.startsWith('not ok')), `a check failed${context}`);
    assert.equal(lines.filter((l) => l === 'probe: PASS').length, 1, `verdict${context}`);

    // The QEMU and kernel that ran, and the interrupt mode the device really had in the guest.
    const booting = stderr.split('\n').find((l) => l.startsWith('vm: booting the guest')) ?? '';
    assert.match(booting, c.qemu, `QEMU version${context}`);
    assert.match(booting, c.kernel, `kernel version${context}`);
    assert.match(booting, new RegExp(`${c.backend} device with ${c.msix ? 'MSI-X' : 'vectors=0'}`), `interrupt mode announced${context}`);
    const virtioIrqs = lines.filter((l) => /^\s*\d+:.*\bvirtio0/.test(l));
    if (c.msix) {
      // Linux's virtio_pci: one vector for config changes, one shared by the virtqueues.
      assert.ok(virtioIrqs.some((l) => /PCI-MSIX?-.*virtio0-config$/.test(l)), `MSI-X config vector${context}`);
      assert.ok(virtioIrqs.some((l) => /PCI-MSIX?-.*virtio0-(virtqueues|dataq|controlq)/.test(l)), `MSI-X queue vector${context}`);
    } else {
      assert.ok(virtioIrqs.length > 0 && virtioIrqs.every((l) => /IO-APIC/.test(l) && !/MSI/.test(l)), `INTx only${context}`);
    }
    if (c.sessionLayout !== undefined) assert.ok(stderr.includes(c.sessionLayout), `our device saw "${c.sessionLayout}"${context}`);
    assert.match(stderr, new RegExp(`guest exited with status 0 after [\\d.]+ s \\(${c.backend}\\)`));
  });
}

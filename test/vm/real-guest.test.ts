/**
 * The real guest: `vcrypto vm` boots a Debian Linux 6.1 kernel on stock qemu-system-x86_64
 * (TCG) with a virtio-crypto-pci device served by OUR back-end (`vcrypto device`, vhost-user,
 * started by `vcrypto vm`), and the guest's own virtio_crypto driver runs the probe:
 * the kernel's crypto self-tests (/proc/crypto "selftest : passed"), NIST SP 800-38A CBC known
 * answers through AF_ALG with multi-part, misaligned and in-place buffers, large buffers against
 * the kernel's cbc(aes-generic), and concurrent guest processes (half of them sharing one session).
 *
 * One boot. It FAILS (never skips) when QEMU, busybox-static, gcc or the kernel package are
 * missing: `vcrypto vm` then exits non-zero with the package to install.
 * Needs `npm run build` first (it runs the built CLI).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { runVcrypto, type CliRun } from './spawn-cli.js';

/** Which back-end serves the guest's virtio-crypto device: ours = `vcrypto device` over vhost-user. */
const BACKEND = 'ours';
/** The CLI kills QEMU itself after this; the test waits a bit longer (first run also builds the image). */
const GUEST_TIMEOUT_S = 150;

const started: CliRun[] = [];
// SIGTERM first: `vcrypto vm` then stops QEMU and its device (a SIGKILL would orphan them).
after(() => Promise.all(started.map((run) => run.stop())));

test(`vcrypto vm: a Linux guest passes the AF_ALG probe on virtio_crypto_aes_cbc (${BACKEND} back-end)`, { timeout: (GUEST_TIMEOUT_S + 120) * 1000 }, async () => {
  const vm = runVcrypto(['vm', '--backend', BACKEND, '--timeout', String(GUEST_TIMEOUT_S)], { timeoutMs: (GUEST_TIMEOUT_S + 100) * 1000 });
  started.push(vm);
  const { code, stdout, stderr, timedOut } = await vm.done;
  const context = `\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}`;
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
  assert.match(stderr, new RegExp(`guest exited with status 0 after [\\d.]+ s \\(${BACKEND}\\)`));
});

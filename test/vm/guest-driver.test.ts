/**
 * The lab's part 3 for real: our TypeScript virtio-crypto driver runs INSIDE a Linux guest (stock
 * QEMU, TCG) on a virtio-crypto-pci device handed to user space, and the lab's programs run in the
 * guest through it — against QEMU's own builtin device (the independent check of our driver, over
 * VFIO behind a virtual Intel IOMMU) and against our `vcrypto device` (vhost-user, over
 * uio_pci_generic + a hugepage).
 *
 * One boot per back-end runs guest/… checks written to the --share folder:
 *  - the driver service `vcrypto driver --pci` started at boot (the guest's /dev/cryptodevN);
 *  - test-crypto and test-fork-crypto (8 guest processes) through `--device socket:/run/vcrypto.sock`;
 *  - enc/dec in the guest against `openssl` on the host (files through --share); dgst refused with
 *    ENOTSUP (QEMU's device offers the guest AES-CBC only);
 *  - the encrypted chat between a guest crypto-server and a host crypto-client over --forward;
 *  - a PCI address that is not virtio-crypto, and `--device pci` while the service holds the device
 *    (busy), each a clear error; then, with the service stopped, test-crypto --device pci directly.
 * The guest's stdout and stderr arrive apart (no kernel lines mixed in).
 * FAILS (never skips) when QEMU or the kernel package are missing. Needs `npm run build` first.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CLI_MAIN, REPO_ROOT, runVcrypto, type CliRun } from './spawn-cli.js';

const GUEST_TIMEOUT_S = 400;
const KEY = '2b7e151628aed2a6abf7158809cf4f3c';
const IV = '000102030405060708090a0b0c0d0e0f';
const started: CliRun[] = [];
const dirs: string[] = [];
after(async () => {
  await Promise.all(started.map((run) => run.stop()));
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

const COMMON_CHECKS = `
D="--device socket:/run/vcrypto.sock"
echo "== driver"; cat /tmp/driver.log
echo "== test-crypto"; vcrypto test-crypto $D; echo "rc=$?"
echo "== test-fork-crypto"; vcrypto test-fork-crypto --children 8 $D; echo "rc=$?"
echo "== enc"; vcrypto enc --cipher aes-128-cbc --key ${KEY} --iv ${IV} $D < /share/plain.bin > /share/guest.enc; echo "rc=$?"
echo "== dec"; vcrypto dec --cipher aes-128-cbc --key ${KEY} --iv ${IV} $D < /share/guest.enc > /share/guest.dec; echo "rc=$?"
echo "== dgst"; vcrypto dgst --digest sha256 $D /share/plain.bin 2>&1; echo "rc=$?"
`;

/**
 * The encrypted chat across the VM boundary over --forward, its crypto through the guest's PCI device
 * (the driver service). QEMU's virtio-crypto device offers the guest AES-CBC only (builtin implements
 * nothing else; for a vhost-user back-end QEMU 7.2 forwards only AES-CBC sessions; dgst shows the
 * driver refusing SHA-256), so both peers use the suite cbc-hmac: every chat message AES-256-CBC on
 * the device, HMAC-SHA256 and the handshake on node:crypto.
 */
const CHAT_CHECKS = `
echo "== chat"
( echo "hello from the guest"; while [ ! -e /tmp/chat.done ]; do sleep 0.2; done ) | vcrypto crypto-server --host 0.0.0.0 --port 35001 --psk-file /share/chat.key --device socket:/run/vcrypto.sock --suite cbc-hmac > /tmp/chat.out 2> /tmp/chat.err &
server=$!
i=0; while ! grep -q listening /tmp/chat.err 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done
echo "== chat-ready"
i=0; while ! grep -q "hello from the host" /tmp/chat.out && [ $i -lt 900 ]; do sleep 0.1; i=$((i+1)); done
touch /tmp/chat.done; wait $server; echo "chat-server rc=$?"
echo "chat-out: $(cat /tmp/chat.out)"
echo "chat-err: $(tr '\\n' '|' < /tmp/chat.err)"
`;

const TAIL_CHECKS = `
echo "== not-crypto"; vcrypto test-crypto --device pci:00:00.0 2>&1; echo "rc=$?"
echo "== busy"; vcrypto test-crypto --device pci 2>&1; echo "rc=$?"
kill $(cat /run/vcrypto-driver.pid); i=0; while kill -0 $(cat /run/vcrypto-driver.pid) 2>/dev/null && [ $i -lt 300 ]; do sleep 0.1; i=$((i+1)); done
echo "== direct"; vcrypto test-crypto --device pci 2>&1; echo "rc=$?"
echo "guest-stderr-check" >&2
`;

/** The lines of section `name` (between "== name" and the next "== "). */
function section(stdout: string, name: string): string[] {
  const lines = stdout.split('\n');
  const start = lines.indexOf(`== ${name}`);
  if (start < 0) return [];
  const end = lines.findIndex((l, i) => i > start && l.startsWith('== '));
  return lines.slice(start + 1, end < 0 ? undefined : end);
}

/** QEMU 7.2 (the system's) with both back-ends; QEMU 10.0 + Linux 6.12 (bookworm-backports, fetched into the cache) with QEMU's own device, MSI-X through VFIO. */
const CONFIGS = [
  { backend: 'builtin', qemu: undefined },
  { backend: 'ours', qemu: undefined },
  { backend: 'builtin', qemu: '10' },
] as const;

for (const { backend, qemu } of CONFIGS) {
  test(`our driver in the guest (${backend} device${qemu === undefined ? '' : `, QEMU ${qemu} + Linux 6.12`}): service, lab programs, enc/dec vs openssl, ENOTSUP for what the device lacks, chat over --forward`, { timeout: (GUEST_TIMEOUT_S + 120) * 1000 }, async () => {
    const share = mkdtempSync(join(tmpdir(), `vcrypto-guest-${backend}-`));
    dirs.push(share);
    const plain = randomBytes(100_000 + 7);
    writeFileSync(join(share, 'plain.bin'), plain);
    writeFileSync(join(share, 'checks.sh'), COMMON_CHECKS + CHAT_CHECKS + TAIL_CHECKS);
    const psk = randomBytes(32).toString('hex');
    writeFileSync(join(share, 'chat.key'), `${psk}\n`, { mode: 0o600 });
    const hostPort = await freePort();

    const vm = runVcrypto(
      ['vm', '--backend', backend, ...(qemu === undefined ? [] : ['--qemu', qemu]), '--cpus', '2', '--share', share, '--forward', `${hostPort}:35001`, '--timeout', String(GUEST_TIMEOUT_S), '--cmd', 'sh /share/checks.sh'],
      { timeoutMs: (GUEST_TIMEOUT_S + 60) * 1000 },
    );
    started.push(vm);

    // The host peer of the chat: connects once the guest's server listens, says hello, and leaves
    // after it has read the guest's hello.
    let chatOut = '';
    let chatErr = '';
    let chatCode: number | null = null;
    let seen = '';
    const chatDone = new Promise<void>((resolve) => {
      vm.child.stdout!.on('data', (chunk: Buffer) => {
        seen += chunk.toString();
        if (!seen.includes('== chat-ready') || chatCode !== null || chatOut === '\0') return;
        chatOut = '\0';
        const client = spawn(process.execPath, [CLI_MAIN, 'crypto-client', '127.0.0.1', String(hostPort), '--psk-file', join(share, 'chat.key'), '--device', 'host', '--suite', 'cbc-hmac'], { cwd: REPO_ROOT, stdio: ['pipe', 'pipe', 'pipe'] });
        chatOut = '';
        client.stdin.write('hello from the host\n');
        client.stdout.setEncoding('utf8').on('data', (c: string) => {
          chatOut += c;
          if (chatOut.includes('hello from the guest')) client.stdin.end();
        });
        client.stderr.setEncoding('utf8').on('data', (c: string) => (chatErr += c));
        const timer = setTimeout(() => client.kill('SIGKILL'), 120_000);
        client.on('close', (code) => {
          clearTimeout(timer);
          chatCode = code;
          resolve();
        });
      });
    });

    const { code, stdout, stderr, timedOut } = await vm.done;
    const context = `\n--- stdout ---\n${stdout}\n--- stderr ---\n${stderr}\n--- host chat client ---\n${chatOut}\n${chatErr}`;
    assert.ok(!timedOut, `vcrypto vm did not exit in time${context}`);
    assert.equal(code, 0, `vcrypto vm exit ${code}${context}`);

    // The driver service came up on the PCI device (VFIO for builtin, uio for ours).
    assert.ok(section(stdout, 'driver').some((l) => l.startsWith('vcrypto driver: serving') && l.includes(backend === 'builtin' ? 'vfio' : 'uio')), `driver service${context}`);
    if (qemu !== undefined) {
      // QEMU 10 + 6.12: the device interrupts through MSI-X (VFIO), and the guest kernel is 6.12.
      assert.ok(section(stdout, 'driver').some((l) => l.includes('(vfio, MSI-X)')), `MSI-X${context}`);
      assert.match(stderr, /kernel 6\.12\..*QEMU 10\.0/, `QEMU 10 + Linux 6.12${context}`);
    }
    // The lab's programs through the service.
    const tc = section(stdout, 'test-crypto');
    assert.ok(tc.includes('Doing Verification of data... Success') && tc.includes('rc=0'), `test-crypto${context}`);
    const fork = section(stdout, 'test-fork-crypto');
    assert.ok(fork.includes('8/8 children succeeded') && fork.includes('rc=0'), `test-fork-crypto${context}`);
    // enc/dec/dgst in the guest = openssl on the host.
    const expectEnc = execFileSync('openssl', ['enc', '-aes-128-cbc', '-K', KEY, '-iv', IV], { input: plain });
    assert.ok(section(stdout, 'enc').includes('rc=0') && section(stdout, 'dec').includes('rc=0'), `enc/dec${context}`);
    assert.ok(readFileSync(join(share, 'guest.enc')).equals(expectEnc), `guest enc = openssl enc${context}`);
    assert.ok(readFileSync(join(share, 'guest.dec')).equals(plain), `guest dec = plaintext${context}`);
    // QEMU's device offers the guest AES-CBC only (see CHAT_CHECKS): the driver refuses SHA-256 from
    // the device's config, before sending anything.
    const dgst = section(stdout, 'dgst');
    assert.ok(dgst.some((l) => /ENOTSUP: the device does not offer sha256/.test(l)) && dgst.includes('rc=1'), `dgst: ENOTSUP${context}`);
    // The encrypted chat across the VM boundary, both ways, AES-CBC on the guest's device.
    await chatDone;
    assert.equal(chatCode, 0, `host chat client exit${context}`);
    assert.match(chatOut, /hello from the guest/);
    const chat = section(stdout, 'chat-ready');
    assert.ok(chat.some((l) => l.startsWith('chat-out:') && l.includes('hello from the host')), `guest server got the host's message${context}`);
    assert.ok(chat.some((l) => l.startsWith('chat-err:') && /CBC_HMAC.*AES-256-CBC by driver service \/run\/vcrypto\.sock/.test(l)), `guest chat crypto on the device service${context}`);
    // Bad addresses and a busy device are clear errors.
    const notCrypto = section(stdout, 'not-crypto');
    assert.ok(notCrypto.some((l) => /is not a virtio-crypto device/.test(l)) && notCrypto.includes('rc=1'), `not-crypto${context}`);
    const busy = section(stdout, 'busy').join('\n');
    assert.match(busy, /busy/, `busy${context}`);
    assert.ok(section(stdout, 'busy').includes('rc=1'), `busy exit${context}`);
    // With the service stopped, one process drives the device directly.
    const direct = section(stdout, 'direct');
    assert.ok(direct.includes('Doing Verification of data... Success') && direct.includes('rc=0'), `direct --device pci${context}`);
    // stderr travels apart from stdout.
    assert.match(stderr, /guest-stderr-check/);
    assert.doesNotMatch(stdout, /guest-stderr-check/);
  });
}

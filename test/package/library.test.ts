/**
 * The package as a library, as a consumer gets it: `npm pack` the built tree (run `npm run build`
 * first), check what the tarball ships, then compile a TypeScript consumer with `strict` (and the
 * package's declarations type-checked: no skipLibCheck) against the unpacked tarball and run it.
 * The consumer is the README's example; its output is checked against FIPS 180-2's "abc" digest.
 */
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../fixtures/cli.js';
import { FIPS180_ABC } from '../fixtures/fips180.js';

const tmp = mkdtempSync(join(tmpdir(), 'vcrypto-pack-'));
after(() => rmSync(tmp, { recursive: true, force: true }));

/** The README's library example, between its ```ts fence lines. */
function readmeExample(): string {
  const readme = readFileSync(join(REPO_ROOT, 'README.md'), 'utf8');
  const m = /```ts\n(import [^\n]* from 'virtio-cryptodev';\n[\s\S]*?)```/.exec(readme);
  assert.ok(m, 'README.md has a ```ts example importing virtio-cryptodev');
  return m[1]!;
}

test('npm pack ships dist with declarations, LICENSE and guest sources, no source maps; a strict TS consumer compiles and runs', () => {
  const packed = JSON.parse(execFileSync('npm', ['pack', '--ignore-scripts', '--json', '--pack-destination', tmp], { cwd: REPO_ROOT, encoding: 'utf8' })) as {
    filename: string;
    files: { path: string }[];
  }[];
  const files = packed[0]!.files.map((f) => f.path);
  for (const f of ['package.json', 'LICENSE', 'README.md', 'dist/index.js', 'dist/index.d.ts', 'dist/cli/main.js', 'guest/probe.c', 'guest/init.sh']) {
    assert.ok(files.includes(f), `${f} is in the tarball`);
  }
  assert.deepEqual(files.filter((f) => f.endsWith('.map')), [], 'no source maps (they would point at src/, which is not shipped)');
  assert.deepEqual(files.filter((f) => f.startsWith('src/') || f.startsWith('test/')), []);

  // A consumer project: the tarball unpacked as node_modules/virtio-cryptodev, its dependency and
  // @types/node linked from this checkout (no network).
  const app = join(tmp, 'app');
  const pkgDir = join(app, 'node_modules', 'virtio-cryptodev');
  mkdirSync(pkgDir, { recursive: true });
  execFileSync('tar', ['-xzf', join(tmp, packed[0]!.filename), '-C', pkgDir, '--strip-components=1']);
  mkdirSync(join(app, 'node_modules', '@types'), { recursive: true });
  symlinkSync(join(REPO_ROOT, 'node_modules', '@types', 'node'), join(app, 'node_modules', '@types', 'node'));
  symlinkSync(join(REPO_ROOT, 'node_modules', 'koffi'), join(app, 'node_modules', 'koffi'));
  writeFileSync(join(app, 'package.json'), JSON.stringify({ name: 'consumer', private: true, type: 'module' }));
  writeFileSync(
    join(app, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { strict: true, target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', types: ['node'], outDir: 'out', skipLibCheck: false },
      files: ['main.ts', 'types.ts'],
    }),
  );
  writeFileSync(join(app, 'main.ts'), readmeExample());
  // Every name the entry module promises, used as a consumer would.
  writeFileSync(
    join(app, 'types.ts'),
    [
      "import { openDevice, CryptoError, createHostDevice, createInProcessDevice, connectVhostUserDevice, listenVhostUserBackend, openPciDevice, connectSocketDevice, listenDriverService, parseDeviceSpec, DEFAULT_DEVICE_SPEC } from 'virtio-cryptodev';",
      "import type { CryptoDevice, CryptoHandle, Session, SessionOptions, DeviceInfo, CryptoErrorCode, CryptRequest, AeadRequest, ChainRequest } from 'virtio-cryptodev';",
      "export const spec: string = DEFAULT_DEVICE_SPEC;",
      "export const kind: 'host' | 'virtio' | 'vhost-user' | 'pci' | 'socket' = parseDeviceSpec('host').kind;",
      "export const code = (e: unknown): CryptoErrorCode | undefined => (e instanceof CryptoError ? e.code : undefined);",
      "export const opts: SessionOptions = { kind: 'cipher', cipher: 'aes-cbc', key: new Uint8Array(16) };",
      "export const req: CryptRequest = { op: 'encrypt', src: new Uint8Array(16), iv: new Uint8Array(16) };",
      "export type Unused = [CryptoDevice, CryptoHandle, Session, DeviceInfo, AeadRequest, ChainRequest];",
      'export const fns = [openDevice, createHostDevice, createInProcessDevice, connectVhostUserDevice, listenVhostUserBackend, openPciDevice, connectSocketDevice, listenDriverService];',
    ].join('\n'),
  );
  execFileSync(process.execPath, [join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', app], { cwd: app, stdio: 'pipe' });
  const out = execFileSync(process.execPath, [join(app, 'out', 'main.js')], { cwd: app, encoding: 'utf8' });
  assert.equal(out, `${FIPS180_ABC.sha256}\n`);
});

/**
 * Starts the independent vhost-user crypto back-end (vhost_user_crypto_backend.py: Python standard
 * library only, written from the vhost-user and VIRTIO specifications, no code shared with src/) on a
 * fresh socket, speaking one CREATE_CRYPTO_SESSION layout: 632 bytes (QEMU 7.1-8.0) or 1072 (8.1+).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { spawnProcess, type SpawnedProcess } from '../../fixtures/cli.js';

export const INDEPENDENT_BACKEND = fileURLToPath(new URL('./vhost_user_crypto_backend.py', import.meta.url));

export interface IndependentBackend {
  readonly path: string;
  readonly process: SpawnedProcess;
  stop(): Promise<void>;
}

export async function startIndependentBackend(layout: 632 | 1072, opts: { offerSessions?: boolean } = {}): Promise<IndependentBackend> {
  const dir = mkdtempSync(join(tmpdir(), 'vcrypto-indep-'));
  const path = join(dir, 'vc.sock');
  const args = [INDEPENDENT_BACKEND, path, String(layout), ...(opts.offerSessions === false ? ['no-crypto-session'] : [])];
  const proc = spawnProcess('python3', args, { stdin: 'ignore' });
  try {
    await proc.waitForStdout('listening');
  } catch (err) {
    await proc.kill();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
  return {
    path,
    process: proc,
    async stop() {
      await proc.kill();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

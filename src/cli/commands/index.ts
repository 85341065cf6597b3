/**
 * The registry of `vcrypto` sub-commands, in the order `vcrypto --help` lists them.
 * Add a command: create `commands/<name>.ts` exporting a `Command`, then add ONE line here.
 *
 * Each command's module is imported only when that command runs (or its help is shown): a process
 * that runs `vcrypto bench` does not load the VM, daemon and chat code. Loading every command made
 * the embedded device's depth-64 16 KiB rate ~20% lower in `vcrypto bench` (measured: a script using
 * only the library ran at the old rate, and fell once it imported every command module).
 */
import type { Command } from '../command.js';

export interface CommandEntry {
  readonly name: string;
  load(): Promise<Command>;
}

const entry = (name: string, load: () => Promise<Command>): CommandEntry => ({ name, load });

export const commands: readonly CommandEntry[] = [
  entry('server', async () => (await import('./server.js')).serverCommand),
  entry('client', async () => (await import('./client.js')).clientCommand),
  entry('crypto-server', async () => (await import('./crypto-server.js')).cryptoServerCommand),
  entry('crypto-client', async () => (await import('./crypto-client.js')).cryptoClientCommand),
  entry('keygen', async () => (await import('./keygen.js')).keygenCommand),
  entry('demo', async () => (await import('./demo.js')).demoCommand),
  entry('vm', async () => (await import('./vm.js')).vmCommand),
  entry('test-crypto', async () => (await import('./test-crypto.js')).testCryptoCommand),
  entry('test-fork-crypto', async () => (await import('./test-fork-crypto.js')).testForkCryptoCommand),
  entry('enc', async () => (await import('./enc.js')).encCommand),
  entry('dec', async () => (await import('./dec.js')).decCommand),
  entry('dgst', async () => (await import('./dgst.js')).dgstCommand),
  entry('bench', async () => (await import('./bench.js')).benchCommand),
  entry('device', async () => (await import('./device.js')).deviceCommand),
  entry('driver', async () => (await import('./driver.js')).driverCommand),
  entry('stats', async () => (await import('./stats.js')).statsCommand),
];

/** Loads a command by name; undefined for an unknown name. */
export async function loadCommand(name: string): Promise<Command | undefined> {
  return commands.find((c) => c.name === name)?.load();
}

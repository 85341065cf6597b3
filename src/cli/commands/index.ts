/**
 * The registry of `vcrypto` sub-commands, in the order `vcrypto --help` lists them.
 * Add a command: create `commands/<name>.ts` exporting a `Command`, then add ONE line here.
 */
import type { Command } from '../command.js';
import { deviceCommand } from './device.js';
import { driverCommand } from './driver.js';
import { vmCommand } from './vm.js';
import { clientCommand } from './client.js';
import { serverCommand } from './server.js';
import { cryptoServerCommand } from './crypto-server.js';
import { cryptoClientCommand } from './crypto-client.js';
import { keygenCommand } from './keygen.js';
import { demoCommand } from './demo.js';
import { testCryptoCommand } from './test-crypto.js';
import { testForkCryptoCommand } from './test-fork-crypto.js';
import { encCommand } from './enc.js';
import { decCommand } from './dec.js';
import { dgstCommand } from './dgst.js';
import { benchCommand } from './bench.js';
import { statsCommand } from './stats.js';

export const commands: readonly Command[] = [
  serverCommand,
  clientCommand,
  cryptoServerCommand,
  cryptoClientCommand,
  keygenCommand,
  demoCommand,
  vmCommand,
  testCryptoCommand,
  testForkCryptoCommand,
  encCommand,
  decCommand,
  dgstCommand,
  benchCommand,
  deviceCommand,
  driverCommand,
  statsCommand,
];

/**
 * The registry of `vcrypto` sub-commands, in the order `vcrypto --help` lists them.
 * Add a command: create `commands/<name>.ts` exporting a `Command`, then add ONE line here.
 */
import type { Command } from '../command.js';

export const commands: readonly Command[] = [
];

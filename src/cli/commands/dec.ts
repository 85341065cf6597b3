/** `vcrypto dec`: the decrypting twin of `vcrypto enc` (enc.ts). */
import { cipherCommand } from './enc.js';

export const decCommand = cipherCommand('decrypt');

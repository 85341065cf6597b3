/**
 * `vcrypto test-crypto`: the lab's test_crypto.c (and, with --iterations, its run-test.sh). 16384 random
 * bytes, random key and IV, AES-CBC encrypt, decrypt, verify, with the lab's output lines.
 */
import { type Command, formatHelp, parseCommandArgs, parsePositiveInt } from '../command.js';
import { DEFAULT_DEVICE_SPEC, DEVICE_OPTION_HELP } from '../../transport/open-device.js';
import { checkDeviceSpec, parseKeyBits, runLabTest, withDevice } from './crypto-common.js';

/** test_crypto.c used KEY_SIZE 24 (AES-192), though its comment says AES128. */
export const LAB_DEFAULT_KEY_BITS = 192;

export const testCryptoCommand: Command = {
  name: 'test-crypto',
  summary: "the lab's test: AES-CBC encrypt/decrypt/verify 16384 random bytes",
  help: formatHelp({
    usage: ['vcrypto test-crypto [--device SPEC] [--key-bits 128|192|256] [--iterations N]'],
    description: [
      "The lab's test_crypto: 16384 random bytes, a random key and IV, AES-CBC encrypt, decrypt and verify,",
      'each step on its own line ("...[OK]", "Doing Verification of data... Success"). With --iterations N',
      "the test runs N times (the lab's run-test.sh) and a last line \"SUCC = K\" counts the successful runs.",
    ],
    options: [
      DEVICE_OPTION_HELP,
      `  --key-bits BITS    AES key size (default ${LAB_DEFAULT_KEY_BITS}, as test_crypto.c's KEY_SIZE 24)`,
      '  --iterations N     run the test N times and print SUCC = <successes>',
    ],
    exitCodes: [[0, 'every run succeeded'], [1, 'a run failed']],
    examples: ['vcrypto test-crypto', 'vcrypto test-crypto --device host --iterations 1000 | tail -1'],
  }),

  async run(argv) {
    const { values } = parseCommandArgs(argv, {
      device: { type: 'string' },
      'key-bits': { type: 'string' },
      iterations: { type: 'string' },
    });
    const spec = checkDeviceSpec(values.device ?? DEFAULT_DEVICE_SPEC);
    const keyBits = parseKeyBits(values['key-bits'], LAB_DEFAULT_KEY_BITS);
    const iterations = values.iterations === undefined ? undefined : parsePositiveInt('--iterations', values.iterations, 1_000_000);
    const print = (line: string): void => void process.stdout.write(line + '\n');
    const successes = await withDevice(spec, async (device) => {
      let ok = 0;
      for (let i = 0; i < (iterations ?? 1); i++) {
        // Like the lab's program: every run opens the device afresh (its own handle and session).
        const handle = await device.open();
        try {
          if (await runLabTest(handle, keyBits, print)) ok++;
        } finally {
          await handle.close();
        }
      }
      return ok;
    });
    if (iterations !== undefined) print(`SUCC = ${successes}`);
    return successes === (iterations ?? 1) ? 0 : 1;
  },
};

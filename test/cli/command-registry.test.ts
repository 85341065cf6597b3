/** The lazily loaded command registry: every entry loads a command of its own name, in --help order. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { commands, loadCommand } from '../../src/cli/commands/index.js';

test('every registry entry loads the command it names; an unknown name loads nothing', async () => {
  assert.equal(new Set(commands.map((c) => c.name)).size, commands.length, 'names are unique');
  for (const entry of commands) {
    const cmd = await entry.load();
    assert.equal(cmd.name, entry.name);
    assert.ok(cmd.summary.length > 0 && cmd.help.includes(`vcrypto ${entry.name}`), entry.name);
  }
  assert.equal(await loadCommand('no-such-command'), undefined);
});

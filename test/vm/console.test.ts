/** The serial console reader: markers from guest/init.sh, lines cut anywhere, '\r\n' endings. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConsoleReader, type ConsoleEvent } from '../../src/vm/console.js';

const CONSOLE = '[    1.0] booting\r\nvcrypto-init: x\r\n@@vcrypto:begin@@\r\nok selftest\r\nprobe: PASS\r\n@@vcrypto:exit=0@@\r\n[    2.6] reboot: Power down\r\n';

function feed(chunks: readonly string[]): ConsoleEvent[] {
  const r = new ConsoleReader();
  return [...chunks.flatMap((c) => r.push(c)), ...r.end()];
}

test('boot lines, the command output between the markers, then the exit code', () => {
  assert.deepEqual(feed([CONSOLE]), [
    { kind: 'boot', line: '[    1.0] booting' },
    { kind: 'boot', line: 'vcrypto-init: x' },
    { kind: 'begin' },
    { kind: 'output', line: 'ok selftest' },
    { kind: 'output', line: 'probe: PASS' },
    { kind: 'exit', code: 0 },
    { kind: 'boot', line: '[    2.6] reboot: Power down' },
  ]);
});

test('the same events whatever the chunking (every split point, and byte by byte)', () => {
  const whole = feed([CONSOLE]);
  for (let i = 0; i <= CONSOLE.length; i++) assert.deepEqual(feed([CONSOLE.slice(0, i), CONSOLE.slice(i)]), whole, `split at ${i}`);
  assert.deepEqual(feed([...CONSOLE]), whole);
});

test('markers count only in order; a fake exit before begin is output-less boot noise', () => {
  const events = feed(['@@vcrypto:exit=3@@\n@@vcrypto:begin@@\nx\n@@vcrypto:exit=256@@\n@@vcrypto:exit=42@@\n@@vcrypto:exit=1@@\n']);
  assert.deepEqual(events, [
    { kind: 'boot', line: '@@vcrypto:exit=3@@' },
    { kind: 'begin' },
    { kind: 'output', line: 'x' },
    { kind: 'output', line: '@@vcrypto:exit=256@@' },
    { kind: 'exit', code: 42 },
    { kind: 'boot', line: '@@vcrypto:exit=1@@' },
  ]);
});

test('a final line without newline is flushed by end()', () => {
  assert.deepEqual(feed(['@@vcrypto:begin@@\npartial']), [{ kind: 'begin' }, { kind: 'output', line: 'partial' }]);
});

test('output without a final newline: the exit marker ends that line', () => {
  assert.deepEqual(feed(['@@vcrypto:begin@@\r\nno newline@@vcrypto:exit=7@@\r\nafter\n']), [
    { kind: 'begin' },
    { kind: 'output', line: 'no newline' },
    { kind: 'exit', code: 7 },
    { kind: 'boot', line: 'after' },
  ]);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { SessionTable } from '../../src/device/session-table.js';
import { EngineSession, SessionKind, newCipherSession, newMacSession, runCipher, runDigest } from '../../src/device/engine.js';

class Secret {
  readonly key = new Uint8Array([1, 2, 3, 4]);
  wipes = 0;
  wipe(): void {
    this.key.fill(0);
    this.wipes++;
  }
}

test('session table: bounded, bigint ids from 1, never reused; destroy and reset wipe the keys', () => {
  const t = new SessionTable<Secret>(2);
  const a = new Secret();
  const b = new Secret();
  const ia = t.add(a);
  const ib = t.add(b);
  assert.equal(ia, 1n);
  assert.equal(ib, 2n);
  assert.equal(t.add(new Secret()), null); // full
  assert.equal(t.full, true);
  assert.equal(t.get(1n), a);
  assert.equal(t.destroy(1n), true);
  assert.deepEqual([...a.key], [0, 0, 0, 0]);
  assert.equal(a.wipes, 1);
  assert.equal(t.destroy(1n), false); // unknown now
  assert.equal(t.get(1n), undefined);
  const c = new Secret();
  assert.equal(t.add(c), 3n); // id 1 is not reused
  t.reset();
  assert.equal(t.size, 0);
  assert.deepEqual([...b.key, ...c.key], [0, 0, 0, 0, 0, 0, 0, 0]);
  assert.equal(b.wipes, 1);
  assert.throws(() => new SessionTable(0), RangeError);
});

test('engine sessions drop their key objects on wipe and then refuse to run', () => {
  const s = newCipherSession(3, new Uint8Array(16).fill(9), 1);
  assert.ok(s instanceof EngineSession);
  assert.ok(s.cipherKey !== null);
  assert.equal(s.kind, SessionKind.CIPHER);
  assert.equal(runCipher(s, true, new Uint8Array(16), new Uint8Array(16)).length, 16);
  s.wipe();
  assert.equal(s.cipherKey, null);
  assert.throws(() => runCipher(s, true, new Uint8Array(16), new Uint8Array(16)));
  const m = newMacSession(4, 32, new Uint8Array(8).fill(1));
  assert.ok(m instanceof EngineSession);
  m.wipe();
  assert.equal(m.authKey, null);
  assert.throws(() => runDigest(m, new Uint8Array(1), null)); // never falls back to an unkeyed hash
});

test('session table: a first id other than 1 (a vhost-user connection starts at a random one), wrapping below 2^63', () => {
  const t = new SessionTable<Secret>(4, (1n << 63n) - 2n);
  assert.equal(t.add(new Secret()), (1n << 63n) - 2n);
  assert.equal(t.add(new Secret()), (1n << 63n) - 1n);
  assert.equal(t.add(new Secret()), 1n, 'ids stay valid non-negative int64s: after 2^63-1 comes 1');
  assert.throws(() => new SessionTable(4, 0n), RangeError);
  assert.throws(() => new SessionTable(4, 1n << 63n), RangeError);
});

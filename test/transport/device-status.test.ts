/** The device status rules every transport shares (VIRTIO 1.2 §2.1, §3.1.1), from the spec text. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { statusTransition, StatusError } from '../../src/transport/device-status.js';

// §2.1 bit values, written by hand: ACKNOWLEDGE 1, DRIVER 2, DRIVER_OK 4, FEATURES_OK 8, DEVICE_NEEDS_RESET 64, FAILED 128.
const ACK = 1, DRIVER = 2, DRIVER_OK = 4, FEATURES_OK = 8, NEEDS_RESET = 64, FAILED = 128;
const yes = () => true;
const no = () => false;

test('§3.1.1: the initialization sequence, step by step', () => {
  let s = 0;
  for (const add of [ACK, DRIVER, FEATURES_OK, DRIVER_OK]) {
    const t = statusTransition(s, s | add, yes);
    assert.equal(t.reset, false);
    assert.equal(t.activate, add === DRIVER_OK);
    s = t.next;
  }
  assert.equal(s, ACK | DRIVER | FEATURES_OK | DRIVER_OK);
});

test('writing 0 resets; FAILED may be added at any time', () => {
  assert.deepEqual(statusTransition(ACK | DRIVER | FEATURES_OK | DRIVER_OK, 0, yes), { reset: true, activate: false, next: 0 });
  assert.equal(statusTransition(ACK | DRIVER, ACK | DRIVER | FAILED, yes).next, ACK | DRIVER | FAILED);
});

test('§3.1.1 steps 5-6: FEATURES_OK stays clear when the device refuses the features; DRIVER_OK then fails', () => {
  const t = statusTransition(ACK | DRIVER, ACK | DRIVER | FEATURES_OK, no);
  assert.equal(t.next, ACK | DRIVER);
  assert.throws(() => statusTransition(t.next, t.next | DRIVER_OK, no), StatusError);
  assert.throws(() => statusTransition(ACK | DRIVER, ACK | DRIVER | DRIVER_OK, yes), /DRIVER_OK without FEATURES_OK/);
});

test('§2.1.2: the driver cannot clear bits (only a reset can); the device keeps its DEVICE_NEEDS_RESET', () => {
  assert.throws(() => statusTransition(ACK | DRIVER | FEATURES_OK, ACK | DRIVER, yes), /clears bits/);
  const t = statusTransition(ACK | DRIVER | FEATURES_OK | DRIVER_OK | NEEDS_RESET, ACK | DRIVER | FEATURES_OK | DRIVER_OK | FAILED, yes);
  assert.equal(t.next, ACK | DRIVER | FEATURES_OK | DRIVER_OK | FAILED | NEEDS_RESET);
  assert.equal(t.activate, false, 'DRIVER_OK was already set');
  for (const bad of [256, -1, 1.5]) assert.throws(() => statusTransition(0, bad, yes), /not a byte/);
});

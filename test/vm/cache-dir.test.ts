/** Where the guest image cache lives: outside the package (XDG Base Directory spec), overridable. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { homedir } from 'node:os';
import { join } from 'node:path';
import { defaultCacheDir } from '../../src/vm/guest-image.js';

function withEnv(env: Record<string, string | undefined>, fn: () => void): void {
  const saved = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  try {
    for (const [k, v] of Object.entries(env)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
    fn();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  }
}

test('the image cache is $XDG_CACHE_HOME/virtio-cryptodev, else ~/.cache/virtio-cryptodev; VCRYPTO_CACHE_DIR wins', () => {
  withEnv({ VCRYPTO_CACHE_DIR: undefined, XDG_CACHE_HOME: '/var/tmp/xdg' }, () => {
    assert.equal(defaultCacheDir(), '/var/tmp/xdg/virtio-cryptodev');
  });
  withEnv({ VCRYPTO_CACHE_DIR: undefined, XDG_CACHE_HOME: undefined }, () => {
    assert.equal(defaultCacheDir(), join(homedir(), '.cache', 'virtio-cryptodev'));
  });
  // The spec: a relative XDG_CACHE_HOME is invalid and ignored.
  withEnv({ VCRYPTO_CACHE_DIR: undefined, XDG_CACHE_HOME: 'relative/dir' }, () => {
    assert.equal(defaultCacheDir(), join(homedir(), '.cache', 'virtio-cryptodev'));
  });
  withEnv({ VCRYPTO_CACHE_DIR: '/srv/vc-cache', XDG_CACHE_HOME: '/var/tmp/xdg' }, () => {
    assert.equal(defaultCacheDir(), '/srv/vc-cache');
  });
});

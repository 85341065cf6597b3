/**
 * The virtio-pci transport and our driver against misbehaving devices: a device model of a
 * virtio-crypto-pci function written here from VIRTIO 1.2 §4.1.4 (common configuration, notify, ISR,
 * device configuration of §5.9.4, all by hand), behind the PciFunction seam, so faults a real
 * QEMU device never shows can be made at will:
 *  - a device that clears FEATURES_OK (§3.1.1 step 6): a clear error, and the device is reset;
 *  - a device that never completes a request: ETIMEDOUT after the deadline (not a hang), later calls
 *    EIO, and closing returns.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CryptoError } from '../../src/driver/api.js';
import { closeFd } from '../../src/sys/fd.js';
import { createMemfd, mapShared, type Mapping } from '../../src/sys/memfd.js';
import type { VirtioPciRegion } from '../../src/transport/virtio-pci/pci-capabilities.js';
import type { DmaMemory, PciFunction, RegisterWindow } from '../../src/transport/virtio-pci/pci-function.js';
import { openDeviceOnFunction } from '../../src/transport/virtio-pci/open-pci-device.js';

const le32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];

/** Config space: vendor 0x1af4, device 0x1054, capability list; common @BAR4+0, ISR @0x1000, device @0x2000, notify @0x3000 (multiplier 4). */
function configSpace(): Uint8Array {
  const c = new Uint8Array(256);
  c.set([0xf4, 0x1a, 0x54, 0x10], 0);
  c[0x06] = 0x10;
  c[0x34] = 0x40;
  // struct virtio_pci_cap: vndr 0x09, next, len, cfg_type, bar, id, pad[2], offset, length (+ notify_off_multiplier)
  const caps = [
    [0x40, 1, 0x0000, 0x38, []],
    [0x54, 3, 0x1000, 4, []],
    [0x68, 4, 0x2000, 56, []],
    [0x7c, 2, 0x3000, 0x10, le32(4)],
  ] as const;
  caps.forEach(([at, type, offset, length, extra], i) => {
    const next = caps[i + 1]?.[0] ?? 0;
    c.set([0x09, next, 16 + extra.length, type, 4, 0, 0, 0, ...le32(offset), ...le32(length), ...extra], at);
  });
  return c;
}

/** struct virtio_crypto_config (§5.9.4): HW_READY, 1 data queue, CIPHER with AES-CBC (3), keys up to 32, max_size 1 MiB. */
function cryptoConfig(): Uint8Array {
  const b = new Uint8Array(56);
  const dv = new DataView(b.buffer);
  dv.setUint32(0, 1, true); // status: VIRTIO_CRYPTO_S_HW_READY
  dv.setUint32(4, 1, true); // max_dataqueues
  dv.setUint32(8, 1 << 0, true); // crypto_services: CIPHER
  dv.setUint32(12, 1 << 3, true); // cipher_algo_l: AES_CBC
  dv.setUint32(36, 32, true); // max_cipher_key_len
  dv.setBigUint64(48, 1n << 20n, true); // max_size
  return b;
}

type Fault = 'clear-features-ok' | 'never-complete';

/** The device: registers as §4.1.4.3 describes them; notifications are recorded and never answered. */
class FakeCryptoPci implements PciFunction {
  readonly bdf = '0000:00:04.0';
  readonly kind = 'vfio' as const;
  readonly statusWrites: number[] = [];
  notifications = 0;
  closed = false;
  #config = configSpace();
  #deviceConfig = cryptoConfig();
  #status = 0;
  #deviceFeatureSelect = 0;
  #driverFeatureSelect = 0;
  readonly #driverFeatures = [0, 0];
  #queueSelect = 0;
  readonly #queues = [0, 1].map(() => ({ size: 64, enable: 0, addr: [0, 0, 0, 0, 0, 0] }));
  readonly #dma: { fd: number; mapping: Mapping }[] = [];

  constructor(private readonly fault: Fault) {}

  readConfig(offset: number, length: number): Uint8Array {
    return this.#config.slice(offset, offset + length);
  }
  writeConfig(offset: number, bytes: Uint8Array): void {
    this.#config.set(bytes, offset);
  }
  barSize(bar: number): number {
    return bar === 4 ? 0x4000 : 0;
  }
  mapBar(): Mapping {
    throw new Error('the device model has no memory BAR');
  }
  allocateDma(bytes: number): DmaMemory {
    const fd = createMemfd('pci-fault-dma', bytes);
    const mapping = mapShared(fd, bytes);
    this.#dma.push({ fd, mapping });
    return { mapping, busAddress: 0x1_0000_0000n };
  }
  enableInterrupts(): null {
    return null; // the transport polls the used rings
  }
  close(): void {
    this.closed = true;
    for (const { fd, mapping } of this.#dma) {
      mapping.unmap();
      closeFd(fd);
    }
  }

  registers(region: VirtioPciRegion): RegisterWindow {
    const none = () => 0;
    const ignore = () => {};
    const window = (r: Partial<RegisterWindow>): RegisterWindow => ({ region, r8: none, r16: none, r32: none, w8: ignore, w16: ignore, w32: ignore, ...r });
    if (region.offset === 0x0000) return this.#common(window);
    if (region.offset === 0x2000) {
      const dv = new DataView(this.#deviceConfig.buffer);
      return window({ r8: (o) => dv.getUint8(o), r16: (o) => dv.getUint16(o, true), r32: (o) => dv.getUint32(o, true) });
    }
    if (region.offset === 0x3000) return window({ w16: () => void this.notifications++ });
    return window({}); // ISR: nothing pending
  }

  #common(window: (r: Partial<RegisterWindow>) => RegisterWindow): RegisterWindow {
    const q = () => this.#queues[this.#queueSelect];
    return window({
      r8: (o) => (o === 0x14 ? this.#status : 0), // device_status; config_generation stays 0
      r16: (o) => {
        if (o === 0x12) return this.#queues.length; // num_queues
        if (o === 0x18) return q()?.size ?? 0; // queue_size (0: no such queue)
        if (o === 0x1a) return 0; // queue_msix_vector
        if (o === 0x1c) return q()?.enable ?? 0;
        if (o === 0x1e) return this.#queueSelect; // queue_notify_off
        return 0;
      },
      r32: (o) => {
        if (o === 0x04) return this.#deviceFeatureSelect === 1 ? 1 : 0; // VIRTIO_F_VERSION_1 (bit 32)
        if (o === 0x0c) return this.#driverFeatures[this.#driverFeatureSelect] ?? 0;
        return 0;
      },
      w8: (o, v) => {
        if (o !== 0x14) return;
        this.statusWrites.push(v);
        if (v === 0) {
          this.#status = 0;
          for (const queue of this.#queues) queue.enable = 0;
          return;
        }
        // §3.1.1 step 6: a device that does not accept the features leaves FEATURES_OK (8) clear.
        this.#status = this.fault === 'clear-features-ok' ? v & ~8 : v;
      },
      w16: (o, v) => {
        if (o === 0x16) this.#queueSelect = v;
        else if (o === 0x18 && q()) q()!.size = v;
        else if (o === 0x1c && q()) q()!.enable = v;
      },
      w32: (o, v) => {
        if (o === 0x00) this.#deviceFeatureSelect = v;
        else if (o === 0x08) this.#driverFeatureSelect = v;
        else if (o === 0x0c) this.#driverFeatures[this.#driverFeatureSelect] = v;
        else if (o >= 0x20 && o < 0x38 && q()) q()!.addr[(o - 0x20) / 4] = v;
      },
    });
  }
}

test('a device that clears FEATURES_OK: opening fails with a clear error, the device is reset and released', async () => {
  const fn = new FakeCryptoPci('clear-features-ok');
  await assert.rejects(openDeviceOnFunction(fn), (err: unknown) => {
    assert.ok(err instanceof CryptoError, String(err));
    assert.match(err.message, /did not accept the features/);
    return true;
  });
  assert.ok(fn.statusWrites.includes(0x0b), 'FEATURES_OK was written'); // ACKNOWLEDGE|DRIVER|FEATURES_OK
  assert.ok(!fn.statusWrites.includes(0x0f), 'never DRIVER_OK');
  assert.equal(fn.statusWrites.at(-1), 0, 'reset at the end');
  assert.ok(fn.closed, 'the function was released');
});

test('a device that never completes a request: ETIMEDOUT after the deadline, EIO afterwards, and closing returns', async () => {
  const fn = new FakeCryptoPci('never-complete');
  const device = await openDeviceOnFunction(fn, { requestTimeoutMs: 300 });
  assert.ok(fn.statusWrites.includes(0x0f), 'DRIVER_OK');
  const handle = await device.open();
  const started = performance.now();
  await assert.rejects(handle.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: new Uint8Array(16) }), (err: unknown) => {
    assert.ok(err instanceof CryptoError && err.code === 'ETIMEDOUT', String(err));
    assert.match(err.message, /did not complete a request on the control queue within 300 ms/);
    return true;
  });
  const took = performance.now() - started;
  assert.ok(took >= 300 && took < 5000, `failed after ${took.toFixed(0)} ms`);
  assert.ok(fn.notifications >= 1, 'the request was notified');
  await assert.rejects(handle.createSession({ kind: 'cipher', cipher: 'aes-cbc', key: new Uint8Array(16) }), (err: unknown) => err instanceof CryptoError && err.code === 'EIO');
  const closing = performance.now();
  await device.close();
  assert.ok(performance.now() - closing < 5000, 'close did not hang');
  assert.ok(fn.closed, 'the function was released');
});

test('ENOTSUP before anything is sent: the device model offers AES-CBC only', async () => {
  const fn = new FakeCryptoPci('never-complete');
  const device = await openDeviceOnFunction(fn, { requestTimeoutMs: 300 });
  try {
    const handle = await device.open();
    const before = fn.notifications;
    await assert.rejects(handle.createSession({ kind: 'hash', hash: 'sha256' }), (err: unknown) => err instanceof CryptoError && err.code === 'ENOTSUP');
    await assert.rejects(handle.createSession({ kind: 'cipher', cipher: 'aes-ctr', key: new Uint8Array(16) }), (err: unknown) => err instanceof CryptoError && err.code === 'ENOTSUP');
    assert.equal(fn.notifications, before, 'nothing was sent');
  } finally {
    await device.close();
  }
});

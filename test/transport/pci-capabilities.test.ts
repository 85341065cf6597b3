/**
 * The virtio-pci capability parser against configuration spaces built byte by byte from VIRTIO 1.2
 * §4.1.4 (struct virtio_pci_cap / virtio_pci_notify_cap) and PCI 3.0 (header, capability list,
 * MSI-X Message Control), shaped like QEMU's virtio-crypto-pci (all structures in a 16 KiB BAR4).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { parseVirtioPciCapabilities, PciCapabilityError } from '../../src/transport/virtio-pci/pci-capabilities.js';

interface Cap {
  at: number;
  bytes: number[];
}

const le32 = (v: number) => [v & 0xff, (v >>> 8) & 0xff, (v >>> 16) & 0xff, (v >>> 24) & 0xff];

/** struct virtio_pci_cap: cap_vndr 0x09, cap_next (patched), cap_len, cfg_type, bar, id, padding[2], offset, length. */
function virtioCap(at: number, cfgType: number, bar: number, offset: number, length: number, extra: number[] = []): Cap {
  const body = [0x09, 0, 16 + extra.length, cfgType, bar, 0, 0, 0, ...le32(offset), ...le32(length), ...extra];
  return { at, bytes: body };
}

function configSpace(caps: Cap[], opts: { capList?: boolean } = {}): Uint8Array {
  const c = new Uint8Array(256);
  c.set([0xf4, 0x1a, 0x54, 0x10], 0); // vendor 0x1af4, device 0x1054
  c[0x06] = opts.capList === false ? 0 : 0x10; // status: capabilities list
  c[0x34] = caps[0]?.at ?? 0;
  caps.forEach((cap, i) => {
    c.set(cap.bytes, cap.at);
    c[cap.at + 1] = caps[i + 1]?.at ?? 0;
  });
  return c;
}

/** QEMU 7.2's virtio-crypto-pci: MSI-X (2 vectors), common @0, ISR @0x1000, device @0x2000, notify @0x3000 (x4), pci_cfg. */
function qemuLike(): Cap[] {
  return [
    { at: 0x98, bytes: [0x11, 0, 0x01, 0x00, ...le32(1), ...le32(0x801)] }, // MSI-X, table size - 1 = 1
    virtioCap(0x88, 1, 4, 0x0000, 0x1000),
    virtioCap(0x78, 3, 4, 0x1000, 0x1000),
    virtioCap(0x68, 4, 4, 0x2000, 0x1000),
    virtioCap(0x54, 2, 4, 0x3000, 0x1000, le32(4)),
    virtioCap(0x40, 5, 0, 0, 0, le32(0)),
  ];
}
const bar4 = (bar: number) => (bar === 4 ? 0x4000 : 0);

test('QEMU-shaped config space: every structure found, notify multiplier and MSI-X size read', () => {
  const layout = parseVirtioPciCapabilities(configSpace(qemuLike()), bar4);
  assert.equal(layout.vendorId, 0x1af4);
  assert.equal(layout.deviceId, 0x1054);
  assert.deepEqual(layout.common, { bar: 4, offset: 0, length: 0x1000 });
  assert.deepEqual(layout.isr, { bar: 4, offset: 0x1000, length: 0x1000 });
  assert.deepEqual(layout.device, { bar: 4, offset: 0x2000, length: 0x1000 });
  assert.deepEqual(layout.notify, { bar: 4, offset: 0x3000, length: 0x1000, notifyOffMultiplier: 4 });
  assert.equal(layout.msixVectors, 2);
});

test('§4.1.4: the first capability of a type wins; unknown types and reserved BAR values are ignored', () => {
  const caps = qemuLike();
  caps.splice(1, 0, virtioCap(0xb0, 1, 7, 0x100, 0x1000)); // reserved BAR value: ignored
  caps.splice(1, 0, virtioCap(0xc0, 42, 4, 0, 0x10)); // unknown type: ignored
  caps.push(virtioCap(0xd0, 1, 4, 0x2000, 0x800)); // a second common cfg: ignored
  const layout = parseVirtioPciCapabilities(configSpace(caps), bar4);
  assert.deepEqual(layout.common, { bar: 4, offset: 0, length: 0x1000 });
});

test('a structure outside its BAR, in a missing BAR, or unaligned is refused', () => {
  const replace = (cap: Cap) => configSpace(qemuLike().map((c) => (c.at === cap.at ? cap : c)));
  assert.throws(() => parseVirtioPciCapabilities(replace(virtioCap(0x68, 4, 4, 0x3800, 0x1000)), bar4), /outside BAR4 \(16384 bytes\)/);
  assert.throws(() => parseVirtioPciCapabilities(replace(virtioCap(0x68, 4, 4, 0xffff_f000, 0x2000)), bar4), /outside BAR4/); // offset + length wraps u32
  assert.throws(() => parseVirtioPciCapabilities(replace(virtioCap(0x68, 4, 2, 0x0, 0x100)), bar4), /BAR2, which does not exist/);
  assert.throws(() => parseVirtioPciCapabilities(replace(virtioCap(0x68, 4, 4, 0x2002, 0x100)), bar4), /not 4-byte aligned/);
  assert.throws(() => parseVirtioPciCapabilities(replace(virtioCap(0x68, 4, 4, 0x2000, 0)), bar4), /outside BAR4/);
});

test('a broken capability list is refused: loop, pointer below 0x40, short caps, no list, missing structures', () => {
  const loop = configSpace(qemuLike());
  loop[0x40 + 1] = 0x98; // the last cap points back to the first
  assert.throws(() => parseVirtioPciCapabilities(loop, bar4), /loops/);
  const low = configSpace(qemuLike());
  low[0x34] = 0x20;
  assert.throws(() => parseVirtioPciCapabilities(low, bar4), /outside 0x40\.\.0xff/);
  const shortNotify = qemuLike().map((c) => (c.at === 0x54 ? virtioCap(0x54, 2, 4, 0x3000, 0x1000) : c));
  assert.throws(() => parseVirtioPciCapabilities(configSpace(shortNotify), bar4), /notify capability of 16 bytes/);
  const tooLong = configSpace(qemuLike());
  tooLong[0x88 + 2] = 0xf0; // cap_len runs past the end of config space
  assert.throws(() => parseVirtioPciCapabilities(tooLong, bar4), /cap_len 240 out of range/);
  assert.throws(() => parseVirtioPciCapabilities(configSpace(qemuLike(), { capList: false }), bar4), /no capability list/);
  const noCommon = qemuLike().filter((c) => c.at !== 0x88);
  assert.throws(() => parseVirtioPciCapabilities(configSpace(noCommon), bar4), /no usable common configuration/);
  const smallCommon = qemuLike().map((c) => (c.at === 0x88 ? virtioCap(0x88, 1, 4, 0, 0x30) : c));
  assert.throws(() => parseVirtioPciCapabilities(configSpace(smallCommon), bar4), /common configuration of 48 bytes/);
  assert.throws(() => parseVirtioPciCapabilities(new Uint8Array(64), bar4), /64 bytes/);
});

test('property: any config space gives a layout inside its BARs or a PciCapabilityError, nothing else', () => {
  fc.assert(
    fc.property(fc.uint8Array({ minLength: 256, maxLength: 256 }), fc.array(fc.nat(0x10000), { minLength: 6, maxLength: 6 }), (bytes, sizes) => {
      const size = (bar: number) => sizes[bar] ?? 0;
      try {
        const layout = parseVirtioPciCapabilities(bytes, size);
        for (const r of [layout.common, layout.notify, layout.isr, layout.device]) {
          assert.ok(r.bar <= 5 && r.offset % 4 === 0 && r.length > 0 && r.offset + r.length <= size(r.bar));
        }
      } catch (err) {
        if (!(err instanceof PciCapabilityError)) throw err;
      }
    }),
    { numRuns: 2000 },
  );
});

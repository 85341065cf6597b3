/**
 * virtio-cryptodev as a library: the package's one entry module (`import … from 'virtio-cryptodev'`).
 *
 *   - `openDevice(spec)` opens any device by the same spec string the CLI's `--device` takes
 *     ('virtio', 'vhost-user:PATH', 'host', 'pci[:BDF]', 'socket:PATH'); or construct one directly with
 *     `createInProcessDevice`, `connectVhostUserDevice`, `openPciDevice`, `connectSocketDevice` or
 *     `createHostDevice`.
 *   - The session API (`CryptoDevice` → `CryptoHandle` → sessions), modelled on cryptodev's ioctls;
 *     every failure is a `CryptoError` with an errno-style `code`.
 *   - `listenVhostUserBackend` serves the virtio-crypto device to QEMU (or to `connectVhostUserDevice`)
 *     over a vhost-user socket, as `vcrypto device` does.
 *
 * Importing this module loads neither worker threads nor native code: the virtio and vhost-user
 * back-ends are imported when first used (as `openDevice` does), so `host`-only users never load koffi.
 */
import type { CryptoDevice } from './driver/api.js';
import type { InProcessDeviceOptions } from './transport/in-process/create-in-process-device.js';
import type { VhostUserDeviceOptions } from './transport/vhost-user/connect.js';
import type { BackendServerOptions, VhostUserBackendServer } from './transport/vhost-user/backend-server.js';
import type { PciDeviceOptions } from './transport/virtio-pci/open-pci-device.js';
import type { SocketDeviceService, SocketServiceOptions } from './transport/socket/serve-device-on-socket.js';

export { CryptoError } from './driver/api.js';
export type {
  AeadAlgorithm,
  AeadRequest,
  AeadResult,
  ChainRequest,
  ChainResult,
  CipherAlgorithm,
  CryptoDevice,
  CryptoErrorCode,
  CryptoHandle,
  CryptRequest,
  CryptResult,
  DeviceInfo,
  HashAlgorithm,
  Session,
  SessionOptions,
} from './driver/api.js';
export { openDevice, parseDeviceSpec, DEFAULT_DEVICE_SPEC, type DeviceSpec } from './transport/open-device.js';
export { createHostDevice } from './driver/host-device.js';
export type { InProcessDeviceOptions, VhostUserDeviceOptions, BackendServerOptions, VhostUserBackendServer, PciDeviceOptions, SocketDeviceService, SocketServiceOptions };

/** `--device virtio`: our driver + the virtio-crypto device on worker threads of this process. */
export async function createInProcessDevice(opts: InProcessDeviceOptions = {}): Promise<CryptoDevice> {
  return (await import('./transport/in-process/create-in-process-device.js')).createInProcessDevice(opts);
}

/** `--device vhost-user:PATH`: our driver as a vhost-user front-end to a back-end listening on `path`. */
export async function connectVhostUserDevice(path: string, opts: VhostUserDeviceOptions = {}): Promise<CryptoDevice> {
  return (await import('./transport/vhost-user/connect.js')).connectVhostUserDevice(path, opts);
}

/**
 * Serves the virtio-crypto device on a vhost-user socket (what `vcrypto device --socket PATH` runs):
 * each connection (QEMU, or `connectVhostUserDevice`) gets its own device on a worker thread.
 * `close()` the server to stop listening and end every connection.
 */
export async function listenVhostUserBackend(path: string, opts: BackendServerOptions): Promise<VhostUserBackendServer> {
  return (await import('./transport/vhost-user/backend-server.js')).VhostUserBackendServer.listen(path, opts);
}

/**
 * `--device pci[:BDF]`: our driver on a virtio-crypto PCI function handed to user space (vfio-pci
 * behind an IOMMU, or uio_pci_generic), e.g. inside a VM. Needs root.
 */
export async function openPciDevice(bdf?: string, opts: PciDeviceOptions = {}): Promise<CryptoDevice> {
  return (await import('./transport/virtio-pci/open-pci-device.js')).openPciDevice(bdf, opts);
}

/** `--device socket:PATH`: the session API of a driver service (`vcrypto driver`) on `path`. */
export async function connectSocketDevice(path: string): Promise<CryptoDevice> {
  return (await import('./transport/socket/connect-socket-device.js')).connectSocketDevice(path);
}

/**
 * Serves `device` to local processes on the Unix socket `path` (what `vcrypto driver` runs): each
 * connection owns its sessions, which are destroyed when it goes away.
 */
export async function listenDriverService(device: CryptoDevice, path: string, opts: SocketServiceOptions = {}): Promise<SocketDeviceService> {
  return (await import('./transport/socket/serve-device-on-socket.js')).serveDeviceOnSocket(device, path, opts);
}

/**
 * vhost-user protocol constants (QEMU docs/interop/vhost-user.rst; numbers as in QEMU 7.2
 * hw/virtio/vhost-user.c and DPDK lib/vhost/vhost_user.h). No logic here.
 * All vhost-user numbers travel in the machine's native byte order (little-endian on x86-64/aarch64).
 */

/** Front-end requests ("master" messages in QEMU 7.2). */
export const VHOST_USER = {
  GET_FEATURES: 1,
  SET_FEATURES: 2,
  SET_OWNER: 3,
  RESET_OWNER: 4,
  SET_MEM_TABLE: 5,
  SET_LOG_BASE: 6,
  SET_LOG_FD: 7,
  SET_VRING_NUM: 8,
  SET_VRING_ADDR: 9,
  SET_VRING_BASE: 10,
  GET_VRING_BASE: 11,
  SET_VRING_KICK: 12,
  SET_VRING_CALL: 13,
  SET_VRING_ERR: 14,
  GET_PROTOCOL_FEATURES: 15,
  SET_PROTOCOL_FEATURES: 16,
  GET_QUEUE_NUM: 17,
  SET_VRING_ENABLE: 18,
  SEND_RARP: 19,
  NET_SET_MTU: 20,
  SET_SLAVE_REQ_FD: 21,
  IOTLB_MSG: 22,
  SET_VRING_ENDIAN: 23,
  GET_CONFIG: 24,
  SET_CONFIG: 25,
  CREATE_CRYPTO_SESSION: 26,
  CLOSE_CRYPTO_SESSION: 27,
  POSTCOPY_ADVISE: 28,
  POSTCOPY_LISTEN: 29,
  POSTCOPY_END: 30,
  GET_INFLIGHT_FD: 31,
  SET_INFLIGHT_FD: 32,
  GPU_SET_SOCKET: 33,
  RESET_DEVICE: 34,
  VRING_KICK: 35,
  GET_MAX_MEM_SLOTS: 36,
  ADD_MEM_REG: 37,
  REM_MEM_REG: 38,
  SET_STATUS: 39,
  GET_STATUS: 40,
} as const;
export type VhostUserRequest = (typeof VHOST_USER)[keyof typeof VHOST_USER];

/** Header flags (vhost-user.rst "Header"). */
export const VHOST_USER_VERSION = 0x1;
export const VHOST_USER_VERSION_MASK = 0x3;
export const VHOST_USER_REPLY_MASK = 0x4;
export const VHOST_USER_NEED_REPLY_MASK = 0x8;
/** QEMU accepts a reply only with flags exactly REPLY | VERSION (hw/virtio/vhost-user.c:296-300). */
export const VHOST_USER_REPLY_FLAGS = VHOST_USER_REPLY_MASK | VHOST_USER_VERSION;

/** u32 request, u32 flags, u32 size. */
export const VHOST_USER_HEADER_SIZE = 12;

/** Virtio feature bit 30: the back-end speaks protocol features (vhost-user.rst). */
export const VHOST_USER_F_PROTOCOL_FEATURES = 30;

/** Protocol feature bits (vhost-user.rst "Protocol features"). */
export const VHOST_USER_PROTOCOL_F = {
  MQ: 0,
  LOG_SHMFD: 1,
  RARP: 2,
  REPLY_ACK: 3,
  MTU: 4,
  SLAVE_REQ: 5,
  CROSS_ENDIAN: 6,
  CRYPTO_SESSION: 7,
  PAGEFAULT: 8,
  CONFIG: 9,
  SLAVE_SEND_FD: 10,
  HOST_NOTIFIER: 11,
  INFLIGHT_SHMFD: 12,
  RESET_DEVICE: 13,
  INBAND_NOTIFICATIONS: 14,
  CONFIGURE_MEM_SLOTS: 15,
  STATUS: 16,
} as const;

/** vring file payload (SET_VRING_KICK/CALL/ERR): index in bits 0-7, "no fd" flag in bit 8. */
export const VHOST_USER_VRING_IDX_MASK = 0xff;
export const VHOST_USER_VRING_NOFD_MASK = 0x100;

/** SET_MEM_TABLE carries at most this many regions (VHOST_MEMORY_BASELINE_NREGIONS). */
export const VHOST_MEMORY_BASELINE_NREGIONS = 8;

/** vhost_vring_addr.flags bit 0: log used-ring writes (migration; we never offer LOG_ALL). */
export const VHOST_VRING_F_LOG = 0;

/** CREATE_CRYPTO_SESSION payload: QEMU 7.1-8.0 (VhostUserCryptoSession) and 8.1+ layouts. */
export const VHOST_USER_CRYPTO_SESSION_SIZE_V71 = 632;
export const VHOST_USER_CRYPTO_SESSION_SIZE_V81 = 1072;
/** VHOST_CRYPTO_SYM_CIPHER_MAX_KEY_LEN / VHOST_CRYPTO_SYM_HMAC_MAX_KEY_LEN. */
export const VHOST_CRYPTO_SYM_CIPHER_MAX_KEY_LEN = 64;
export const VHOST_CRYPTO_SYM_HMAC_MAX_KEY_LEN = 512;
/** 8.1+ asym key buffer (VHOST_CRYPTO_ASYM_MAX_KEY_LEN). */
export const VHOST_CRYPTO_ASYM_MAX_KEY_LEN = 1024;

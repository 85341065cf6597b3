/**
 * virtio-crypto constants, from the VIRTIO 1.2 specification (cs01), §5.9 "Crypto Device"
 * (virtio-crypto.tex), plus the one status code Linux's uapi header adds
 * (include/uapi/linux/virtio_crypto.h: VIRTIO_CRYPTO_KEY_REJECTED). Constants only, no logic.
 *
 * The request layouts are the fixed-size ones used when VIRTIO_CRYPTO_F_REVISION_1 is NOT
 * negotiated (what Linux 6.1 and QEMU 7.2 speak): 72-byte controlq and dataq request headers.
 */

/** §5.9.1 Device ID. */
export const VIRTIO_ID_CRYPTO = 20;

/** §5.9.3 Feature bits (this device offers none of them: fixed-size request format). */
export const VIRTIO_CRYPTO_F = {
  VIRTIO_CRYPTO_F_REVISION_1: 0,
  VIRTIO_CRYPTO_F_CIPHER_STATELESS_MODE: 1,
  VIRTIO_CRYPTO_F_HASH_STATELESS_MODE: 2,
  VIRTIO_CRYPTO_F_MAC_STATELESS_MODE: 3,
  VIRTIO_CRYPTO_F_AEAD_STATELESS_MODE: 4,
} as const;

/** §5.9.4 Supported crypto services (bit numbers in `crypto_services`). */
export const VIRTIO_CRYPTO_SERVICE = {
  CIPHER: 0,
  HASH: 1,
  MAC: 2,
  AEAD: 3,
  /** Linux uapi only (not in 1.2 cs01). */
  AKCIPHER: 4,
} as const;

/** §5.9.4.1 CIPHER algorithms (values, and bit numbers in cipher_algo_l/_h). */
export const VIRTIO_CRYPTO_CIPHER = {
  VIRTIO_CRYPTO_NO_CIPHER: 0,
  VIRTIO_CRYPTO_CIPHER_ARC4: 1,
  VIRTIO_CRYPTO_CIPHER_AES_ECB: 2,
  VIRTIO_CRYPTO_CIPHER_AES_CBC: 3,
  VIRTIO_CRYPTO_CIPHER_AES_CTR: 4,
  VIRTIO_CRYPTO_CIPHER_DES_ECB: 5,
  VIRTIO_CRYPTO_CIPHER_DES_CBC: 6,
  VIRTIO_CRYPTO_CIPHER_3DES_ECB: 7,
  VIRTIO_CRYPTO_CIPHER_3DES_CBC: 8,
  VIRTIO_CRYPTO_CIPHER_3DES_CTR: 9,
  VIRTIO_CRYPTO_CIPHER_KASUMI_F8: 10,
  VIRTIO_CRYPTO_CIPHER_SNOW3G_UEA2: 11,
  VIRTIO_CRYPTO_CIPHER_AES_F8: 12,
  VIRTIO_CRYPTO_CIPHER_AES_XTS: 13,
  VIRTIO_CRYPTO_CIPHER_ZUC_EEA3: 14,
} as const;

/** §5.9.4.2 HASH algorithms (values, and bit numbers in hash_algo). */
export const VIRTIO_CRYPTO_HASH = {
  VIRTIO_CRYPTO_NO_HASH: 0,
  VIRTIO_CRYPTO_HASH_MD5: 1,
  VIRTIO_CRYPTO_HASH_SHA1: 2,
  VIRTIO_CRYPTO_HASH_SHA_224: 3,
  VIRTIO_CRYPTO_HASH_SHA_256: 4,
  VIRTIO_CRYPTO_HASH_SHA_384: 5,
  VIRTIO_CRYPTO_HASH_SHA_512: 6,
  VIRTIO_CRYPTO_HASH_SHA3_224: 7,
  VIRTIO_CRYPTO_HASH_SHA3_256: 8,
  VIRTIO_CRYPTO_HASH_SHA3_384: 9,
  VIRTIO_CRYPTO_HASH_SHA3_512: 10,
  VIRTIO_CRYPTO_HASH_SHA3_SHAKE128: 11,
  VIRTIO_CRYPTO_HASH_SHA3_SHAKE256: 12,
} as const;

/** §5.9.4.3 MAC algorithms (values, and bit numbers in mac_algo_l/_h). */
export const VIRTIO_CRYPTO_MAC = {
  VIRTIO_CRYPTO_NO_MAC: 0,
  VIRTIO_CRYPTO_MAC_HMAC_MD5: 1,
  VIRTIO_CRYPTO_MAC_HMAC_SHA1: 2,
  VIRTIO_CRYPTO_MAC_HMAC_SHA_224: 3,
  VIRTIO_CRYPTO_MAC_HMAC_SHA_256: 4,
  VIRTIO_CRYPTO_MAC_HMAC_SHA_384: 5,
  VIRTIO_CRYPTO_MAC_HMAC_SHA_512: 6,
  VIRTIO_CRYPTO_MAC_CMAC_3DES: 25,
  VIRTIO_CRYPTO_MAC_CMAC_AES: 26,
  VIRTIO_CRYPTO_MAC_KASUMI_F9: 27,
  VIRTIO_CRYPTO_MAC_SNOW3G_UIA2: 28,
  VIRTIO_CRYPTO_MAC_GMAC_AES: 41,
  VIRTIO_CRYPTO_MAC_GMAC_TWOFISH: 42,
  VIRTIO_CRYPTO_MAC_CBCMAC_AES: 49,
  VIRTIO_CRYPTO_MAC_CBCMAC_KASUMI_F9: 50,
  VIRTIO_CRYPTO_MAC_XCBC_AES: 53,
  VIRTIO_CRYPTO_MAC_ZUC_EIA3: 54,
} as const;

/** §5.9.4.4 AEAD algorithms (values, and bit numbers in aead_algo). */
export const VIRTIO_CRYPTO_AEAD = {
  VIRTIO_CRYPTO_NO_AEAD: 0,
  VIRTIO_CRYPTO_AEAD_GCM: 1,
  VIRTIO_CRYPTO_AEAD_CCM: 2,
  VIRTIO_CRYPTO_AEAD_CHACHA20_POLY1305: 3,
} as const;

/** §5.9.5 `status` bits of the device configuration. */
export const VIRTIO_CRYPTO_S_HW_READY = 1 << 0;

/** §5.9.5 struct virtio_crypto_config: field byte offsets (all little-endian). */
export const VIRTIO_CRYPTO_CONFIG_OFFSET = {
  status: 0,
  max_dataqueues: 4,
  crypto_services: 8,
  cipher_algo_l: 12,
  cipher_algo_h: 16,
  hash_algo: 20,
  mac_algo_l: 24,
  mac_algo_h: 28,
  aead_algo: 32,
  max_cipher_key_len: 36,
  max_auth_key_len: 40,
  /** `reserved` in 1.2 cs01; Linux/QEMU name it akcipher_algo. */
  reserved: 44,
  /** le64 */
  max_size: 48,
} as const;
/** §5.9.5 sizeof(struct virtio_crypto_config). */
export const VIRTIO_CRYPTO_CONFIG_SIZE = 56;

/** §5.9.7.1 enum VIRTIO_CRYPTO_STATUS (+ KEY_REJECTED from the Linux uapi header). */
export const VIRTIO_CRYPTO_STATUS = {
  VIRTIO_CRYPTO_OK: 0,
  VIRTIO_CRYPTO_ERR: 1,
  /** Authentication failed (AEAD decryption). */
  VIRTIO_CRYPTO_BADMSG: 2,
  /** Operation or algorithm unsupported. */
  VIRTIO_CRYPTO_NOTSUPP: 3,
  /** Invalid session id. */
  VIRTIO_CRYPTO_INVSESS: 4,
  /** No free session id. */
  VIRTIO_CRYPTO_NOSPC: 5,
  /** Linux uapi: key (or signature) rejected. */
  VIRTIO_CRYPTO_KEY_REJECTED: 6,
} as const;
export type VirtioCryptoStatus = (typeof VIRTIO_CRYPTO_STATUS)[keyof typeof VIRTIO_CRYPTO_STATUS];

/** §5.9.7.2 VIRTIO_CRYPTO_OPCODE(service, op) = (service << 8) | op. */
export function VIRTIO_CRYPTO_OPCODE(service: number, op: number): number {
  return ((service << 8) | op) >>> 0;
}

/** §5.9.7.2 Control virtqueue opcodes (struct virtio_crypto_ctrl_header.opcode). */
export const VIRTIO_CRYPTO_CTRL_OPCODE = {
  VIRTIO_CRYPTO_CIPHER_CREATE_SESSION: 0x0002,
  VIRTIO_CRYPTO_CIPHER_DESTROY_SESSION: 0x0003,
  VIRTIO_CRYPTO_HASH_CREATE_SESSION: 0x0102,
  VIRTIO_CRYPTO_HASH_DESTROY_SESSION: 0x0103,
  VIRTIO_CRYPTO_MAC_CREATE_SESSION: 0x0202,
  VIRTIO_CRYPTO_MAC_DESTROY_SESSION: 0x0203,
  VIRTIO_CRYPTO_AEAD_CREATE_SESSION: 0x0302,
  VIRTIO_CRYPTO_AEAD_DESTROY_SESSION: 0x0303,
  /** Linux uapi only. */
  VIRTIO_CRYPTO_AKCIPHER_CREATE_SESSION: 0x0404,
  VIRTIO_CRYPTO_AKCIPHER_DESTROY_SESSION: 0x0405,
} as const;

/** §5.9.7.3 Data virtqueue opcodes (struct virtio_crypto_op_header.opcode). */
export const VIRTIO_CRYPTO_DATA_OPCODE = {
  VIRTIO_CRYPTO_CIPHER_ENCRYPT: 0x0000,
  VIRTIO_CRYPTO_CIPHER_DECRYPT: 0x0001,
  VIRTIO_CRYPTO_HASH: 0x0100,
  VIRTIO_CRYPTO_MAC: 0x0200,
  VIRTIO_CRYPTO_AEAD_ENCRYPT: 0x0300,
  VIRTIO_CRYPTO_AEAD_DECRYPT: 0x0301,
  /** Linux uapi only. */
  VIRTIO_CRYPTO_AKCIPHER_ENCRYPT: 0x0400,
  VIRTIO_CRYPTO_AKCIPHER_DECRYPT: 0x0401,
  VIRTIO_CRYPTO_AKCIPHER_SIGN: 0x0402,
  VIRTIO_CRYPTO_AKCIPHER_VERIFY: 0x0403,
} as const;

/** §5.9.7.2.1.3 struct virtio_crypto_cipher_session_flf.op. */
export const VIRTIO_CRYPTO_OP = {
  VIRTIO_CRYPTO_OP_ENCRYPT: 1,
  VIRTIO_CRYPTO_OP_DECRYPT: 2,
} as const;

/** §5.9.7.2.1.3 struct virtio_crypto_sym_create_session_flf.op_type (also in sym data requests). */
export const VIRTIO_CRYPTO_SYM_OP = {
  VIRTIO_CRYPTO_SYM_OP_NONE: 0,
  VIRTIO_CRYPTO_SYM_OP_CIPHER: 1,
  VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING: 2,
} as const;

/** §5.9.7.2.1.3 struct virtio_crypto_alg_chain_session_flf.alg_chain_order. */
export const VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER = {
  VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER_HASH_THEN_CIPHER: 1,
  VIRTIO_CRYPTO_SYM_ALG_CHAIN_ORDER_CIPHER_THEN_HASH: 2,
} as const;

/** §5.9.7.2.1.3 struct virtio_crypto_alg_chain_session_flf.hash_mode. */
export const VIRTIO_CRYPTO_SYM_HASH_MODE = {
  VIRTIO_CRYPTO_SYM_HASH_MODE_PLAIN: 1,
  VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH: 2,
  VIRTIO_CRYPTO_SYM_HASH_MODE_NESTED: 3,
} as const;

/** §5.9.7.3 struct virtio_crypto_op_header.flag (only meaningful with REVISION_1). */
export const VIRTIO_CRYPTO_FLAG_SESSION_MODE = 1;

/** Fixed sizes from the spec's #defines (legacy, non-REVISION_1 layouts). */
export const VIRTIO_CRYPTO_CTRLQ_OP_SPEC_HDR_LEGACY = 56;
export const VIRTIO_CRYPTO_DATAQ_OP_SPEC_HDR_LEGACY = 48;
export const VIRTIO_CRYPTO_SYM_SESS_OP_SPEC_HDR_SIZE = 48;
export const VIRTIO_CRYPTO_ALG_CHAIN_SESS_OP_SPEC_HDR_SIZE = 16;
export const VIRTIO_CRYPTO_SYM_DATA_REQ_HDR_SIZE = 40;

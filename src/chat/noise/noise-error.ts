/**
 * The one error type of the Noise layer (Noise Protocol Framework, revision 34).
 * `code` says which rule was broken; the message never contains key material.
 */
export const NoiseErrorCode = {
  /** §5.1 DecryptWithAd: the AEAD tag did not verify (wrong PSK, bit flip, replay, reorder, drop). */
  DECRYPT_FAILED: 'DECRYPT_FAILED',
  /** §5.3 ReadMessage: the message is shorter than its tokens need, or longer than 65535 bytes (§3). */
  BAD_MESSAGE: 'BAD_MESSAGE',
  /** §4.2 DH: the peer's public key gave an all-zero (low-order) shared secret. */
  BAD_KEY: 'BAD_KEY',
  /** §5.1: the nonce 2^64-1 is reserved; a CipherState must not be used past it. */
  NONCE_EXHAUSTED: 'NONCE_EXHAUSTED',
  /** Calling WriteMessage/ReadMessage out of turn, or using a destroyed state. */
  INVALID_STATE: 'INVALID_STATE',
} as const;
export type NoiseErrorCode = (typeof NoiseErrorCode)[keyof typeof NoiseErrorCode];

export class NoiseError extends Error {
  override readonly name = 'NoiseError';
  constructor(
    readonly code: NoiseErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

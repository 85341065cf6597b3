/**
 * The front-end's half of QEMU's session contract (vhost-user.rst "Crypto session"; QEMU 7.2
 * hw/virtio/virtio-crypto.c virtio_crypto_handle_ctrl + backends/cryptodev-vhost-user.c): a vhost-user
 * crypto back-end never sees the control queue. The front-end (QEMU, or our transport) serves it
 * itself and turns each control request into a message:
 *
 *   CIPHER_CREATE_SESSION (op_type CIPHER, or ALGORITHM_CHAINING with hash_mode PLAIN/AUTH)
 *       -> VHOST_USER_CREATE_CRYPTO_SESSION (26), reply session_id: >= 0 the id, < 0 a failure
 *   HASH/MAC/AEAD_CREATE_SESSION -> answered VIRTIO_CRYPTO_NOTSUPP here (QEMU does the same: the
 *       message has no way to carry them)
 *   *_DESTROY_SESSION -> VHOST_USER_CLOSE_CRYPTO_SESSION (27), no reply; the guest is told OK
 *
 * This file maps one control request's bytes (§5.9.7.2: the 72-byte virtio_crypto_op_ctrl_req, then
 * the cipher key and the authentication key) onto what to send; it is pure and never trusts lengths.
 */
import {
  VIRTIO_CRYPTO_CTRL_OPCODE as CTRL,
  VIRTIO_CRYPTO_STATUS,
  VIRTIO_CRYPTO_SYM_HASH_MODE,
  VIRTIO_CRYPTO_SYM_OP,
} from '../../spec/virtio-crypto.js';
import { VHOST_CRYPTO_SYM_CIPHER_MAX_KEY_LEN, VHOST_CRYPTO_SYM_HMAC_MAX_KEY_LEN } from '../../spec/vhost-user.js';
import {
  OP_CTRL_REQ_SIZE,
  decodeAlgChainSessionFlf,
  decodeCipherSessionFlf,
  decodeCtrlHeader,
  decodeDestroySessionFlf,
  decodeSymCreateSessionOpType,
} from '../../wire/virtio-crypto.js';
import type { SymSessionParams } from '../../wire/vhost-user.js';

export type SessionAction =
  /** Send CREATE_CRYPTO_SESSION with these parameters (the caller zeroes the keys afterwards). */
  | { readonly kind: 'create'; readonly sym: Omit<SymSessionParams, 'keyLen' | 'authKeyLen'> }
  /** Send CLOSE_CRYPTO_SESSION for this id. */
  | { readonly kind: 'close'; readonly sessionId: bigint }
  /** Answer at once with this status, nothing is sent (`create`: a session_input, else one status byte). */
  | { readonly kind: 'answer'; readonly create: boolean; readonly status: number };

const S = VIRTIO_CRYPTO_STATUS;

/** Maps one control request (its device-readable bytes) onto the session message to send. */
export function sessionActionFor(req: Uint8Array): SessionAction {
  if (req.length < OP_CTRL_REQ_SIZE) return { kind: 'answer', create: true, status: S.VIRTIO_CRYPTO_ERR };
  const { opcode } = decodeCtrlHeader(req);
  switch (opcode) {
    case CTRL.VIRTIO_CRYPTO_CIPHER_DESTROY_SESSION:
    case CTRL.VIRTIO_CRYPTO_HASH_DESTROY_SESSION:
    case CTRL.VIRTIO_CRYPTO_MAC_DESTROY_SESSION:
    case CTRL.VIRTIO_CRYPTO_AEAD_DESTROY_SESSION:
      return { kind: 'close', sessionId: decodeDestroySessionFlf(req).sessionId };
    case CTRL.VIRTIO_CRYPTO_HASH_CREATE_SESSION:
    case CTRL.VIRTIO_CRYPTO_MAC_CREATE_SESSION:
    case CTRL.VIRTIO_CRYPTO_AEAD_CREATE_SESSION:
      // QEMU answers these itself with NOTSUPP: CREATE_CRYPTO_SESSION carries only sym sessions.
      return { kind: 'answer', create: true, status: S.VIRTIO_CRYPTO_NOTSUPP };
    case CTRL.VIRTIO_CRYPTO_CIPHER_CREATE_SESSION:
      return symCreate(req);
    default:
      return { kind: 'answer', create: false, status: S.VIRTIO_CRYPTO_NOTSUPP };
  }
}

/** The key bytes that follow the 72-byte request, or undefined if the request is shorter. */
function keyAt(req: Uint8Array, offset: number, len: number, max: number): Uint8Array | undefined {
  if (len > max || OP_CTRL_REQ_SIZE + offset + len > req.length) return undefined;
  return req.slice(OP_CTRL_REQ_SIZE + offset, OP_CTRL_REQ_SIZE + offset + len);
}

function symCreate(req: Uint8Array): SessionAction {
  const err: SessionAction = { kind: 'answer', create: true, status: S.VIRTIO_CRYPTO_ERR };
  const opType = decodeSymCreateSessionOpType(req);
  if (opType === VIRTIO_CRYPTO_SYM_OP.VIRTIO_CRYPTO_SYM_OP_CIPHER) {
    const c = decodeCipherSessionFlf(req);
    const key = keyAt(req, 0, c.keyLen, VHOST_CRYPTO_SYM_CIPHER_MAX_KEY_LEN);
    if (key === undefined) return err;
    return {
      kind: 'create',
      sym: { cipherAlg: c.algo, hashAlg: 0, hashResultLen: 0, aadLen: 0, opType, direction: c.op, hashMode: 0, algChainOrder: 0, key, authKey: new Uint8Array(0) },
    };
  }
  if (opType === VIRTIO_CRYPTO_SYM_OP.VIRTIO_CRYPTO_SYM_OP_ALGORITHM_CHAINING) {
    const ch = decodeAlgChainSessionFlf(req);
    // QEMU 7.2 (virtio_crypto_create_sym_session) forwards PLAIN and AUTH; NESTED is NOTSUPP.
    if (ch.hashMode !== VIRTIO_CRYPTO_SYM_HASH_MODE.VIRTIO_CRYPTO_SYM_HASH_MODE_PLAIN && ch.hashMode !== VIRTIO_CRYPTO_SYM_HASH_MODE.VIRTIO_CRYPTO_SYM_HASH_MODE_AUTH) {
      return { kind: 'answer', create: true, status: S.VIRTIO_CRYPTO_NOTSUPP };
    }
    // §5.9.7.2.1.3: the cipher key, then the authentication key.
    const key = keyAt(req, 0, ch.cipher.keyLen, VHOST_CRYPTO_SYM_CIPHER_MAX_KEY_LEN);
    const authKey = keyAt(req, ch.cipher.keyLen, ch.authKeyLen, VHOST_CRYPTO_SYM_HMAC_MAX_KEY_LEN);
    if (key === undefined || authKey === undefined) return err;
    return {
      kind: 'create',
      sym: {
        cipherAlg: ch.cipher.algo,
        hashAlg: ch.hashAlgo,
        hashResultLen: ch.hashResultLen,
        aadLen: ch.aadLen,
        opType,
        direction: ch.cipher.op,
        hashMode: ch.hashMode,
        algChainOrder: ch.algChainOrder,
        key,
        authKey,
      },
    };
  }
  return { kind: 'answer', create: true, status: S.VIRTIO_CRYPTO_NOTSUPP };
}

/**
 * The virtio-crypto status for a CREATE_CRYPTO_SESSION reply: OK for an id >= 0; for a negative one,
 * the status it names if it is one (our back-end answers -status), else ERR (QEMU maps every failure
 * to ERR).
 */
export function statusForSessionReply(sessionId: bigint): number {
  if (sessionId >= 0n) return S.VIRTIO_CRYPTO_OK;
  const status = -sessionId;
  return status >= 1n && status <= 6n ? Number(status) : S.VIRTIO_CRYPTO_ERR;
}

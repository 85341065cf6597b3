#!/usr/bin/env python3
"""A minimal vhost-user virtio-crypto back-end that is NOT ours: written for the tests from the
specifications only, sharing no code with src/ (Python standard library, its own AES).

It follows QEMU's contract for a vhost-user crypto back-end, as DPDK's vhost_crypto does:
  - vhost-user (QEMU docs/interop/vhost-user.rst): GET/SET_FEATURES, GET/SET_PROTOCOL_FEATURES
    (REPLY_ACK, CRYPTO_SESSION), SET_OWNER, SET_MEM_TABLE, SET_VRING_NUM/BASE/ADDR/KICK/CALL/ERR,
    GET_VRING_BASE, CREATE_CRYPTO_SESSION (26), CLOSE_CRYPTO_SESSION (27). No control queue: the
    front-end serves it and sends sessions as messages 26/27.
  - the CREATE_CRYPTO_SESSION payload in ONE layout, chosen on the command line: 632 bytes
    (QEMU 7.1-8.0 VhostUserCryptoSession: int64 session_id @0, CryptoDevBackendSymSessionInfo @8
    {cipher_alg @8, key_len @12, hash_alg @16, hash_result_len @20, auth_key_len @24, add_len @28,
    op_type @32, direction @33, hash_mode @34, alg_chain_order @35}, key[64] @56, auth_key[512] @120)
    or 1072 bytes (QEMU 8.1+: u64 op_code @0, the same sym info @8, key @56, int64 session_id @1064).
    A payload of the other size gets session_id -1 (an error) in its own size.
  - split virtqueues (VIRTIO 1.2 §2.7): descriptors (direct and indirect), avail and used rings.
  - virtio-crypto data requests (VIRTIO 1.2 §5.9.7.3, no REVISION_1): the 72-byte
    virtio_crypto_op_data_req (opcode @0, session_id @8, cipher_para {iv_len @24, src_data_len @28,
    dst_data_len @32}, op_type @64), then iv and src readable; dst then the 1-byte status writable.
    Only AES-CBC cipher sessions (FIPS 197 + NIST SP 800-38A), like QEMU 7.2's vhost-user device.

Usage: vhost_user_crypto_backend.py SOCKET_PATH 632|1072 [no-crypto-session]
(no-crypto-session: do not offer VHOST_USER_PROTOCOL_F_CRYPTO_SESSION, as a back-end without sessions.)
Prints "listening" once the socket accepts connections; one thread per connection; logs to stderr.
"""
import mmap
import os
import select
import socket
import struct
import sys
import threading

# ---- vhost-user (docs/interop/vhost-user.rst) ------------------------------------------------
GET_FEATURES, SET_FEATURES, SET_OWNER, RESET_OWNER, SET_MEM_TABLE = 1, 2, 3, 4, 5
SET_VRING_NUM, SET_VRING_ADDR, SET_VRING_BASE, GET_VRING_BASE = 8, 9, 10, 11
SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR = 12, 13, 14
GET_PROTOCOL_FEATURES, SET_PROTOCOL_FEATURES, GET_QUEUE_NUM, SET_VRING_ENABLE = 15, 16, 17, 18
CREATE_CRYPTO_SESSION, CLOSE_CRYPTO_SESSION = 26, 27
VERSION, REPLY_FLAG, NEED_REPLY_FLAG = 0x1, 0x4, 0x8
F_PROTOCOL_FEATURES = 1 << 30
VIRTIO_F_VERSION_1 = 1 << 32
PROTOCOL_F_REPLY_ACK = 1 << 3
PROTOCOL_F_CRYPTO_SESSION = 1 << 7
VRING_NOFD = 0x100

# ---- split virtqueue (VIRTIO 1.2 §2.7.5) -----------------------------------------------------
VRING_DESC_F_NEXT, VRING_DESC_F_WRITE, VRING_DESC_F_INDIRECT = 1, 2, 4

# ---- virtio-crypto (VIRTIO 1.2 §5.9) ---------------------------------------------------------
CIPHER_ENCRYPT, CIPHER_DECRYPT = 0x0000, 0x0001
CIPHER_AES_CBC = 3
SYM_OP_CIPHER = 1
S_OK, S_ERR, S_BADMSG, S_NOTSUPP, S_INVSESS = 0, 1, 2, 3, 4
OP_DATA_REQ_SIZE = 72

# ---- AES (FIPS 197), byte-oriented -----------------------------------------------------------
def _xtime(b):
    b <<= 1
    return (b ^ 0x1B) & 0xFF if b & 0x100 else b

def _gmul(a, b):
    r = 0
    while b:
        if b & 1:
            r ^= a
        a = _xtime(a)
        b >>= 1
    return r

def _sbox():
    # §5.1.1: the multiplicative inverse in GF(2^8) followed by the affine transformation.
    inv = [0] * 256
    for a in range(1, 256):
        for b in range(1, 256):
            if _gmul(a, b) == 1:
                inv[a] = b
                break
    box = []
    for a in range(256):
        x = inv[a]
        s = x
        for _ in range(4):
            x = ((x << 1) | (x >> 7)) & 0xFF
            s ^= x
        box.append(s ^ 0x63)
    return box

SBOX = _sbox()
INV_SBOX = [0] * 256
for _i, _v in enumerate(SBOX):
    INV_SBOX[_v] = _i
MUL = {k: [_gmul(x, k) for x in range(256)] for k in (2, 3, 9, 11, 13, 14)}

def expand_key(key):
    """§5.2 KeyExpansion: the round keys as lists of 16 bytes."""
    nk = len(key) // 4
    nr = nk + 6
    w = [list(key[4 * i:4 * i + 4]) for i in range(nk)]
    rcon = 1
    for i in range(nk, 4 * (nr + 1)):
        t = list(w[i - 1])
        if i % nk == 0:
            t = [SBOX[b] for b in t[1:] + t[:1]]
            t[0] ^= rcon
            rcon = _xtime(rcon)
        elif nk > 6 and i % nk == 4:
            t = [SBOX[b] for b in t]
        w.append([a ^ b for a, b in zip(w[i - nk], t)])
    return [sum(w[4 * r:4 * r + 4], []) for r in range(nr + 1)]

def encrypt_block(rk, block):
    s = [b ^ k for b, k in zip(block, rk[0])]
    nr = len(rk) - 1
    m2, m3 = MUL[2], MUL[3]
    for r in range(1, nr + 1):
        s = [SBOX[b] for b in s]
        # ShiftRows: the state is column-major (s[r + 4c]); row r rotates left by r.
        s = [s[(i + 4 * (i % 4)) % 16] for i in range(16)]
        if r != nr:
            t = []
            for c in range(4):
                a0, a1, a2, a3 = s[4 * c:4 * c + 4]
                t += [m2[a0] ^ m3[a1] ^ a2 ^ a3, a0 ^ m2[a1] ^ m3[a2] ^ a3, a0 ^ a1 ^ m2[a2] ^ m3[a3], m3[a0] ^ a1 ^ a2 ^ m2[a3]]
            s = t
        s = [b ^ k for b, k in zip(s, rk[r])]
    return bytes(s)

def decrypt_block(rk, block):
    nr = len(rk) - 1
    s = [b ^ k for b, k in zip(block, rk[nr])]
    m9, m11, m13, m14 = MUL[9], MUL[11], MUL[13], MUL[14]
    for r in range(nr - 1, -1, -1):
        s = [s[(i - 4 * (i % 4)) % 16] for i in range(16)]  # InvShiftRows
        s = [INV_SBOX[b] for b in s]
        s = [b ^ k for b, k in zip(s, rk[r])]
        if r != 0:
            t = []
            for c in range(4):
                a0, a1, a2, a3 = s[4 * c:4 * c + 4]
                t += [m14[a0] ^ m11[a1] ^ m13[a2] ^ m9[a3], m9[a0] ^ m14[a1] ^ m11[a2] ^ m13[a3],
                      m13[a0] ^ m9[a1] ^ m14[a2] ^ m11[a3], m11[a0] ^ m13[a1] ^ m9[a2] ^ m14[a3]]
            s = t
    return bytes(s)

def cbc(rk, iv, data, encrypt):
    """NIST SP 800-38A §6.2."""
    out = bytearray()
    prev = iv
    for i in range(0, len(data), 16):
        block = data[i:i + 16]
        if encrypt:
            prev = encrypt_block(rk, bytes(a ^ b for a, b in zip(block, prev)))
            out += prev
        else:
            out += bytes(a ^ b for a, b in zip(decrypt_block(rk, block), prev))
            prev = block
    return bytes(out)

# ---- one front-end connection ----------------------------------------------------------------
def log(msg):
    sys.stderr.write(f"[independent back-end] {msg}\n")
    sys.stderr.flush()

class Vring:
    def __init__(self):
        self.num = 0
        self.desc = self.avail = self.used = None  # (mmap, offset)
        self.last_avail = 0
        self.kick = -1
        self.call = -1
        self.running = False

class Connection:
    def __init__(self, sock, layout, offer_sessions):
        self.sock = sock
        self.layout = layout
        self.offer_sessions = offer_sessions
        self.regions = []  # (gpa, size, uaddr, mmap object, offset)
        self.vrings = {}
        self.protocol_features = 0
        self.sessions = {}
        self.next_session = 1

    # -- memory
    def _region_for(self, addr, length, user):
        for gpa, size, uaddr, mm, off in self.regions:
            base = uaddr if user else gpa
            if base <= addr and addr + length <= base + size:
                return mm, off + (addr - base)
        raise ValueError(f"address {addr:#x}+{length} is not in guest memory")

    def read(self, gpa, length):
        mm, off = self._region_for(gpa, length, False)
        return mm[off:off + length]

    def write(self, gpa, data):
        mm, off = self._region_for(gpa, len(data), False)
        mm[off:off + len(data)] = data

    # -- messages
    def recv_message(self):
        hdr, anc, _flags, _addr = self.sock.recvmsg(12, socket.CMSG_SPACE(8 * 4))
        if len(hdr) == 0:
            return None
        fds = []
        for level, kind, data in anc:
            if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                fds += list(struct.unpack(f"{len(data) // 4}i", data[:len(data) - len(data) % 4]))
        request, flags, size = struct.unpack("<III", hdr)
        payload = b""
        while len(payload) < size:
            chunk = self.sock.recv(size - len(payload))
            if not chunk:
                return None
            payload += chunk
        return request, flags, payload, fds

    def reply(self, request, payload):
        self.sock.sendall(struct.pack("<III", request, VERSION | REPLY_FLAG, len(payload)) + payload)

    def handle(self, request, flags, payload, fds):
        """Returns False to close the connection."""
        acked = False
        if request == GET_FEATURES:
            self.reply(request, struct.pack("<Q", F_PROTOCOL_FEATURES | VIRTIO_F_VERSION_1))
            acked = True
        elif request == GET_PROTOCOL_FEATURES:
            self.reply(request, struct.pack("<Q", PROTOCOL_F_REPLY_ACK | (PROTOCOL_F_CRYPTO_SESSION if self.offer_sessions else 0)))
            acked = True
        elif request == SET_PROTOCOL_FEATURES:
            (self.protocol_features,) = struct.unpack("<Q", payload[:8])
        elif request in (SET_FEATURES, SET_OWNER, RESET_OWNER, SET_VRING_ENABLE):
            pass
        elif request == SET_MEM_TABLE:
            nregions, _pad = struct.unpack("<II", payload[:8])
            for r in self.regions:
                r[3].close()
            self.regions = []
            for i in range(nregions):
                gpa, size, uaddr, mmap_offset = struct.unpack("<QQQQ", payload[8 + 32 * i:40 + 32 * i])
                mm = mmap.mmap(fds[i], size + mmap_offset, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
                self.regions.append((gpa, size, uaddr, mm, mmap_offset))
            for fd in fds:
                os.close(fd)
            fds = []
        elif request in (SET_VRING_NUM, SET_VRING_BASE):
            index, num = struct.unpack("<II", payload[:8])
            v = self.vrings.setdefault(index, Vring())
            if request == SET_VRING_NUM:
                v.num = num
            else:
                v.last_avail = num
        elif request == SET_VRING_ADDR:
            index, _flags, desc, used, avail, _log = struct.unpack("<IIQQQQ", payload[:40])
            v = self.vrings.setdefault(index, Vring())
            # Ring addresses are the front-end's user addresses (vhost-user.rst "Vring address description").
            v.desc = self._region_for(desc, 16 * v.num, True)
            v.avail = self._region_for(avail, 6 + 2 * v.num, True)
            v.used = self._region_for(used, 6 + 8 * v.num, True)
        elif request in (SET_VRING_KICK, SET_VRING_CALL, SET_VRING_ERR):
            (u,) = struct.unpack("<Q", payload[:8])
            index = u & 0xFF
            fd = -1 if (u & VRING_NOFD) else fds.pop(0)
            v = self.vrings.setdefault(index, Vring())
            if request == SET_VRING_KICK:
                if v.kick >= 0:
                    os.close(v.kick)
                v.kick = fd
                v.running = fd >= 0
            elif request == SET_VRING_CALL:
                if v.call >= 0:
                    os.close(v.call)
                v.call = fd
            elif fd >= 0:
                os.close(fd)
        elif request == GET_VRING_BASE:
            index, _ = struct.unpack("<II", payload[:8])
            v = self.vrings.get(index, Vring())
            v.running = False  # "stop the ring" before replying
            self.reply(request, struct.pack("<II", index, v.last_avail))
            acked = True
        elif request == CREATE_CRYPTO_SESSION:
            self.reply(request, self.create_session(payload))
            acked = True
        elif request == CLOSE_CRYPTO_SESSION:
            (sid,) = struct.unpack("<q", payload[:8])
            self.sessions.pop(sid, None)  # unknown ids are ignored (QEMU never reads an answer)
        else:
            log(f"unsupported request {request}: closing")
            return False
        for fd in fds:
            os.close(fd)
        if (flags & NEED_REPLY_FLAG) and (self.protocol_features & PROTOCOL_F_REPLY_ACK) and not acked:
            self.reply(request, struct.pack("<Q", 0))
        return True

    def create_session(self, payload):
        size = len(payload)
        out = bytearray(size)
        sid_at = 0 if size == 632 else 1064 if size == 1072 else None
        if sid_at is None:
            return bytes(out)
        if size != self.layout:
            log(f"CREATE_CRYPTO_SESSION of {size} bytes, but this back-end speaks the {self.layout}-byte layout")
            struct.pack_into("<q", out, sid_at, -S_ERR)
            return bytes(out)
        if size == 1072:
            struct.pack_into("<Q", out, 0, struct.unpack_from("<Q", payload, 0)[0])
        cipher_alg, key_len = struct.unpack_from("<II", payload, 8)
        op_type, direction = payload[32], payload[33]
        if op_type != SYM_OP_CIPHER or cipher_alg != CIPHER_AES_CBC:
            sid = -S_NOTSUPP
        elif key_len not in (16, 24, 32):
            sid = -S_ERR
        else:
            sid = self.next_session
            self.next_session += 1
            self.sessions[sid] = (expand_key(bytes(payload[56:56 + key_len])), direction)
            log(f"session {sid}: AES-{key_len * 8}-CBC ({size}-byte CREATE_CRYPTO_SESSION)")
        struct.pack_into("<q", out, sid_at, sid)
        return bytes(out)

    # -- data queue
    def serve(self, v):
        dmm, doff = v.desc
        amm, aoff = v.avail
        umm, uoff = v.used
        while v.running:
            (avail_idx,) = struct.unpack_from("<H", amm, aoff + 2)
            if v.last_avail == avail_idx:
                break
            (head,) = struct.unpack_from("<H", amm, aoff + 4 + 2 * (v.last_avail % v.num))
            written = self.request(dmm, doff, v.num, head)
            (used_idx,) = struct.unpack_from("<H", umm, uoff + 2)
            struct.pack_into("<II", umm, uoff + 4 + 8 * (used_idx % v.num), head, written)
            struct.pack_into("<H", umm, uoff + 2, (used_idx + 1) & 0xFFFF)  # after the element (x86: stores in order)
            v.last_avail = (v.last_avail + 1) & 0xFFFF
        if v.call >= 0:
            os.write(v.call, struct.pack("<Q", 1))

    def chain(self, dmm, doff, num, head):
        """(readable bytes, [(gpa, len) writable]) of the chain at `head` (§2.7.5, §2.7.5.3)."""
        readable = bytearray()
        writable = []
        table, base, size, i = dmm, doff, num, head
        for _ in range(4096):
            addr, length, flags, nxt = struct.unpack_from("<QIHH", table, base + 16 * i)
            if flags & VRING_DESC_F_INDIRECT:
                mm, off = self._region_for(addr, length, False)
                table, base, size, i = mm, off, length // 16, 0
                continue
            if flags & VRING_DESC_F_WRITE:
                writable.append((addr, length))
            else:
                readable += self.read(addr, length)
            if not flags & VRING_DESC_F_NEXT:
                break
            i = nxt
            if i >= size:
                raise ValueError("descriptor next out of range")
        return bytes(readable), writable

    def request(self, dmm, doff, num, head):
        readable, writable = self.chain(dmm, doff, num, head)
        wlen = sum(n for _, n in writable)
        if wlen < 1:
            return 0
        status, dst = S_ERR, b""
        if len(readable) >= OP_DATA_REQ_SIZE:
            opcode, _algo, sid = struct.unpack_from("<IIQ", readable, 0)
            iv_len, src_len, dst_len = struct.unpack_from("<III", readable, 24)
            (op_type,) = struct.unpack_from("<I", readable, 64)
            session = self.sessions.get(sid)
            if opcode not in (CIPHER_ENCRYPT, CIPHER_DECRYPT) or op_type != SYM_OP_CIPHER:
                status = S_NOTSUPP
            elif session is None:
                status = S_INVSESS
            elif iv_len != 16 or src_len % 16 or dst_len < src_len or OP_DATA_REQ_SIZE + iv_len + src_len > len(readable) or dst_len + 1 > wlen:
                status = S_ERR
            else:
                iv = readable[OP_DATA_REQ_SIZE:OP_DATA_REQ_SIZE + 16]
                src = readable[OP_DATA_REQ_SIZE + 16:OP_DATA_REQ_SIZE + 16 + src_len]
                dst = cbc(session[0], iv, src, opcode == CIPHER_ENCRYPT)
                status = S_OK
        # dst into the first writable bytes, the status into the last one (§5.9.7.3).
        data = dst
        for addr, n in writable:
            if not data:
                break
            self.write(addr, data[:n])
            data = data[n:]
        last_addr, last_len = writable[-1]
        self.write(last_addr + last_len - 1, bytes([status]))
        return len(dst) + 1

    def run(self):
        try:
            while True:
                kicks = {v.kick: v for v in self.vrings.values() if v.kick >= 0 and v.running}
                poller = select.poll()
                poller.register(self.sock.fileno(), select.POLLIN)
                for fd in kicks:
                    poller.register(fd, select.POLLIN)
                for fd, _ev in poller.poll():
                    if fd == self.sock.fileno():
                        msg = self.recv_message()
                        if msg is None or not self.handle(*msg):
                            return
                    elif fd in kicks:
                        os.read(fd, 8)
                        self.serve(kicks[fd])
        except Exception as err:  # a broken front-end closes its connection, never the server
            log(f"connection closed: {err!r}")
        finally:
            self.sock.close()
            for v in self.vrings.values():
                for fd in (v.kick, v.call):
                    if fd >= 0:
                        os.close(fd)
            for r in self.regions:
                r[3].close()

def main():
    path, layout = sys.argv[1], int(sys.argv[2])
    offer_sessions = sys.argv[3:] != ["no-crypto-session"]
    if layout not in (632, 1072):
        sys.exit("layout must be 632 or 1072")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(path)
    server.listen(16)
    print("listening", flush=True)
    while True:
        conn, _ = server.accept()
        threading.Thread(target=Connection(conn, layout, offer_sessions).run, daemon=True).start()

if __name__ == "__main__":
    main()

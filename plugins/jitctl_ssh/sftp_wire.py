"""SFTP version 3 on the wire (draft-ietf-secsh-filexfer-02, what OpenSSH speaks): packet
types, flags, status codes, a reader for a packet's fields, and the status packet the gateway
sends when it answers a request itself. Pure.
"""

from __future__ import annotations

import struct

from jitctl.plugin import RemoteProtocolError

MAX_PACKET = 1 << 20  # OpenSSH sends at most 256 KiB + headers

INIT, VERSION, OPEN, CLOSE, READ, WRITE, LSTAT, FSTAT, SETSTAT, FSETSTAT = (
    1,
    2,
    3,
    4,
    5,
    6,
    7,
    8,
    9,
    10,
)
OPENDIR, READDIR, REMOVE, MKDIR, RMDIR, REALPATH, STAT, RENAME, READLINK, SYMLINK = range(11, 21)
STATUS, HANDLE, DATA, NAME, ATTRS, EXTENDED, EXTENDED_REPLY = 101, 102, 103, 104, 105, 200, 201

FXF_READ, FXF_WRITE, FXF_APPEND, FXF_CREAT, FXF_TRUNC, FXF_EXCL = 1, 2, 4, 8, 0x10, 0x20
FX_OK, FX_EOF, FX_PERMISSION_DENIED, FX_FAILURE, FX_OP_UNSUPPORTED = 0, 1, 3, 4, 8
STATUS_NAMES = {
    0: "OK", 1: "EOF", 2: "NO_SUCH_FILE", 3: "PERMISSION_DENIED", 4: "FAILURE",
    5: "BAD_MESSAGE", 6: "NO_CONNECTION", 7: "CONNECTION_LOST", 8: "OP_UNSUPPORTED",
}  # fmt: skip


class Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: memoryview, pos: int) -> None:
        self.data, self.pos = data, pos

    def u32(self) -> int:
        if self.pos + 4 > len(self.data):
            raise RemoteProtocolError("sftp packet too short")
        (value,) = struct.unpack_from(">I", self.data, self.pos)
        self.pos += 4
        return int(value)

    def u64(self) -> int:
        if self.pos + 8 > len(self.data):
            raise RemoteProtocolError("sftp packet too short")
        (value,) = struct.unpack_from(">Q", self.data, self.pos)
        self.pos += 8
        return int(value)

    def string(self) -> memoryview:
        size = self.u32()
        if self.pos + size > len(self.data):
            raise RemoteProtocolError("sftp string runs past its packet")
        value = self.data[self.pos : self.pos + size]
        self.pos += size
        return value

    def text(self) -> str:
        return bytes(self.string()).decode("utf-8", "surrogateescape")


def string(value: bytes) -> bytes:
    return struct.pack(">I", len(value)) + value


def status_packet(request_id: int, code: int, message: str) -> bytes:
    body = (
        struct.pack(">BII", STATUS, request_id, code)
        + string(message.encode("utf-8", "replace"))
        + string(b"en")
    )
    return struct.pack(">I", len(body)) + body

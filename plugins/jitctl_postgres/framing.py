"""Split one direction's byte stream into typed messages, and say what to forward.

Rules (notes §8, §11):
- 5-byte headers (type + int32 length) are scanned in place; a length below 4 or above 1 GB (the
  server's own limit) is a `RemoteProtocolError`.
- The sink sees each complete message once, in order, and answers `None` (forward the bytes as
  they are) or replacement bytes (`b""` drops the message). Only the kinds in the sink's
  `inspected` set are copied out for it; the rest are forwarded without a copy per message.
- All complete messages of a chunk go out in one piece (one `Forward`). A partial message stays
  buffered (one growable `bytearray`, not copied again while it grows), except a *streamable*
  one (a DataRow or CopyData the sink does not inspect) larger than `STREAM_FROM`: its header
  and the bytes so far go out at once and the rest of its body passes through as it arrives, so
  a 1 GB row never sits in memory.
- A partial message the sink inspects and that is larger than the sink's `limit` raises
  `TooLarge` (fail closed: the core decides what the client is told).
- A sink may answer `HOLD` (notes §6): the framer forwards what came before, keeps the bytes
  behind that message (the sink keeps the message itself) and forwards nothing more until
  `resume()`, which scans what waited (and may hold again).
"""

from __future__ import annotations

import struct
from collections.abc import Container
from typing import Protocol

from jitctl.plugin import RemoteProtocolError

from .messages import MAX_MESSAGE

STREAM_FROM = 256 * 1024
_HEADER = struct.Struct("!BI").unpack_from  # type byte, int32 length: one call, no slice


class _Hold(bytes):
    pass


HOLD: bytes = _Hold()  # a sink's answer: "this message and everything behind it wait"


class TooLarge(Exception):
    def __init__(self, kind: int, length: int) -> None:
        super().__init__(f"{chr(kind)!r} message of {length} bytes")
        self.kind, self.length = kind, length


class Sink(Protocol):
    @property
    def inspected(self) -> Container[int]:
        """The message kinds whose bodies `message` needs."""

    def message(self, kind: int, body: bytes | None, length: int) -> bytes | None:
        """One complete message (`length`: its int32 length field); the return value
        replaces it (None: forward unchanged)."""

    def stream_start(self, kind: int, length: int) -> bool:
        """A large partial message of a kind not inspected: may it be streamed?"""

    def limit(self, kind: int) -> int:
        """The largest body this kind may have while it is inspected."""


class Frames:
    """One direction's framer (see the module docstring)."""

    def __init__(self, sink: Sink) -> None:
        self.sink = sink
        self.buf = bytearray()
        self.remaining = 0  # body bytes of a streamed message still to pass through
        self.paused = False  # a message is held: later bytes wait in `buf`

    def _partial(self, kind: int, length: int, have: int) -> bool:
        """An incomplete message: True if it starts streaming (else it waits)."""
        if length < 4 or length > MAX_MESSAGE:
            raise RemoteProtocolError(f"message {chr(kind)!r} with impossible length {length}")
        sink = self.sink
        if kind in sink.inspected:
            if length - 4 > sink.limit(kind):
                raise TooLarge(kind, length)
            return False
        if length > STREAM_FROM and sink.stream_start(kind, length):
            self.remaining = 1 + length - have
            return True
        return False

    def feed(self, data: bytes) -> bytes:
        """Take a chunk; return what to forward now."""
        if self.paused:
            self.buf += data
            return b""
        head = b""
        if self.remaining:
            take = min(self.remaining, len(data))
            self.remaining -= take
            head, data = data[:take], data[take:]
            if self.remaining or not data:
                return head
        if self.buf:
            buf = self.buf
            buf += data
            if len(buf) >= 5:
                length = int.from_bytes(buf[1:5], "big")
                if len(buf) < 1 + length:
                    if self._partial(buf[0], length, len(buf)):
                        out = head + bytes(buf)
                        buf.clear()
                        return out
                    return head
            data = bytes(buf)
            buf.clear()
        return head + self._scan(data)

    def _scan(self, data: bytes) -> bytes:
        size = len(data)
        pieces: list[bytes | memoryview] = []
        pos = run = 0  # run: start of the current unchanged stretch
        changed = False
        view = memoryview(data)  # over immutable bytes: slices never pin a resizable buffer
        header = _HEADER
        while size - pos >= 5:
            sink = self.sink  # may change between messages (the core switches phases)
            kind, length = header(data, pos)
            end = pos + 1 + length
            if end > size or length < 4:
                if self._partial(kind, length, size - pos):
                    pos = size
                break
            body = data[pos + 5 : end] if kind in sink.inspected else None
            replacement = sink.message(kind, body, length)
            if replacement is HOLD:
                self.paused = True
                self.buf += view[end:]
                if pos > run:
                    pieces.append(view[run:pos])
                return b"".join(pieces)
            if replacement is not None:
                changed = True
                if pos > run:
                    pieces.append(view[run:pos])
                if replacement:
                    pieces.append(replacement)
                run = end
            pos = end
        if pos < size:
            self.buf += view[pos:]
        if not changed:
            return data if pos == size else data[:pos]
        if pos > run:
            pieces.append(view[run:pos])
        return b"".join(pieces)

    def resume(self) -> bytes:
        """Go on after a hold: what to forward of the bytes that waited."""
        self.paused = False
        if not self.buf:
            return b""
        data = bytes(self.buf)
        self.buf.clear()
        return self._scan(data)

    @property
    def pending(self) -> int:
        """Bytes of a partial message held back."""
        return len(self.buf)

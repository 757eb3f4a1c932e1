"""Split one direction's byte stream into typed messages, and say what to forward.

Rules (notes §8, §11):
- One growable `bytearray` per direction; 5-byte headers (type + int32 length) are scanned in
  place; a length below 4 or above 1 GB (the server's own limit) is a `RemoteProtocolError`.
- The sink sees each complete message once, in order, and answers `None` (forward the bytes as
  they are) or replacement bytes (`b""` drops the message). Only the messages the sink asks to
  inspect are copied out of the buffer; the rest are forwarded from the buffer without a copy
  per message.
- All complete messages of a chunk go out in one piece (one `Forward`). A partial message stays
  buffered, except a *streamable* one (a DataRow or CopyData the sink does not need to see)
  larger than `STREAM_FROM`: its header and the bytes so far go out at once and the rest of its
  body is passed through as it arrives, so a 1 GB row never sits in memory.
- A partial message the sink must inspect and that is larger than the sink's limit raises
  `TooLarge` (fail closed: the core decides what the client is told).
"""

from __future__ import annotations

from typing import Protocol

from jitctl.plugin import RemoteProtocolError

from .messages import MAX_MESSAGE

STREAM_FROM = 256 * 1024


class TooLarge(Exception):
    def __init__(self, kind: int, length: int) -> None:
        super().__init__(f"{chr(kind)!r} message of {length} bytes")
        self.kind, self.length = kind, length


class Sink(Protocol):
    def inspect(self, kind: int) -> bool:
        """Does `message` need this kind's body?"""

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

    def feed(self, data: bytes) -> bytes:
        """Take a chunk; return what to forward now."""
        buf = self.buf
        buf += data
        size = len(buf)
        pieces: list[bytes | tuple[int, int]] = []
        pos = 0
        run = 0  # start of the current unchanged run
        changed = False
        if self.remaining:
            pos = min(self.remaining, size)
            self.remaining -= pos
        from_bytes = int.from_bytes
        while not self.remaining and size - pos >= 5:
            sink = self.sink  # may change between messages (the core switches phases)
            kind = buf[pos]
            length = from_bytes(buf[pos + 1 : pos + 5], "big")
            if length < 4 or length > MAX_MESSAGE:
                raise RemoteProtocolError(f"message {chr(kind)!r} with impossible length {length}")
            end = pos + 1 + length
            inspect = sink.inspect(kind)
            if end > size:
                if inspect:
                    if length - 4 > sink.limit(kind):
                        raise TooLarge(kind, length)
                elif length > STREAM_FROM and sink.stream_start(kind, length):
                    self.remaining = end - size
                    pos = size
                break
            replacement = sink.message(kind, bytes(buf[pos + 5 : end]) if inspect else None, length)
            if replacement is not None:
                changed = True
                if pos > run:
                    pieces.append((run, pos))
                if replacement:
                    pieces.append(replacement)
                run = end
            pos = end
        if not changed and pos == size:
            out = bytes(buf)
            buf.clear()
            return out
        if pos > run:
            pieces.append((run, pos))
        with memoryview(buf) as view:
            out = b"".join(p if isinstance(p, bytes) else view[p[0] : p[1]] for p in pieces)
        del buf[:pos]
        return out

    @property
    def pending(self) -> int:
        """Bytes of a partial message held back."""
        return len(self.buf)

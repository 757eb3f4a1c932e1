"""The tunnel's wire format between `jitctl` (client) and the broker, sans-I/O.

After TLS, the client sends the magic line `JITCTL-TUNNEL/1\\n` and one JSON line (the
preamble: token, target, reason, agent, command, correlation id, op). The broker answers one
JSON line: `{"ok": true, "session_id": ...}` or `{"ok": false, "code": ..., "error": ...,
"hint": ...}`. Then both sides exchange frames:

    type (1 byte) | length (4 bytes, big-endian) | payload

    D  data          payload = bytes of the stream
    E  end of data   length 0; a half-close of the sender's direction
    C  close         payload = JSON {"reason": str, "error": bool}; the session is over

Frames exist so the broker can say *why* it ended a session (an audit store failure, a max
session length, a revoked grant) instead of just dropping the connection.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

from jitctl.plugin import RemoteProtocolError

MAGIC = b"JITCTL-TUNNEL/1\n"
MAX_PREAMBLE = 64 * 1024
MAX_FRAME = 1 << 20
_HEADER = struct.Struct(">cI")
DATA, EOF, CLOSE = b"D", b"E", b"C"


@dataclass(frozen=True, slots=True)
class Data:
    data: bytes


@dataclass(frozen=True, slots=True)
class Eof:
    pass


@dataclass(frozen=True, slots=True)
class CloseFrame:
    reason: str
    error: bool


Event = Data | Eof | CloseFrame


def data_frame(data: bytes) -> bytes:
    return _HEADER.pack(DATA, len(data)) + data


def eof_frame() -> bytes:
    return _HEADER.pack(EOF, 0)


def close_frame(reason: str, error: bool = False) -> bytes:
    payload = json.dumps({"reason": reason, "error": error}).encode()
    return _HEADER.pack(CLOSE, len(payload)) + payload


class FrameDecoder:
    """Bytes in, events out. Any malformed input raises RemoteProtocolError.

    Each payload is copied once, straight out of what arrived: input that holds only whole
    frames (the usual case: one read, one frame) is never buffered, and a partial frame is
    kept until the rest of it comes."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Event]:
        buffer = self._buffer
        if not buffer:
            events, used = _parse(data, data)
            if used < len(data):
                buffer += memoryview(data)[used:]
            return events
        buffer += data
        view = memoryview(buffer)  # slices of a view copy once; of a bytearray, twice
        try:
            events, used = _parse(buffer, view)
        finally:
            view.release()  # a bytearray with an exported view cannot be resized
        del buffer[:used]
        return events

    def take_pending(self) -> bytes:
        """The bytes of an incomplete frame, handed back (the decoder starts afresh)."""
        pending = bytes(self._buffer)
        self._buffer.clear()
        return pending

    @property
    def pending(self) -> int:
        return len(self._buffer)


def _parse(wire: bytes | bytearray, source: bytes | memoryview) -> tuple[list[Event], int]:
    """The whole frames at the start of `wire` (payloads sliced from `source`, the same bytes)
    and how many bytes they took."""
    events: list[Event] = []
    start, size = 0, len(wire)
    while size - start >= _HEADER.size:
        kind, length = _HEADER.unpack_from(wire, start)
        if kind not in (DATA, EOF, CLOSE):
            raise RemoteProtocolError(f"unknown frame type {kind!r}")
        if length > MAX_FRAME:
            raise RemoteProtocolError(f"frame of {length} bytes exceeds {MAX_FRAME}")
        if kind == EOF and length:
            raise RemoteProtocolError("end-of-data frame with a payload")
        end = start + _HEADER.size + length
        if size < end:
            break
        if kind == DATA:
            events.append(Data(bytes(source[start + _HEADER.size : end])))
        elif kind == EOF:
            events.append(Eof())
        else:
            events.append(_close(bytes(source[start + _HEADER.size : end])))
        start = end
    return events, start


def _close(payload: bytes) -> CloseFrame:
    try:
        body = json.loads(payload)
        return CloseFrame(str(body.get("reason", "")), bool(body.get("error", False)))
    except (ValueError, AttributeError):
        raise RemoteProtocolError("close frame is not a JSON object") from None


def encode_line(document: dict[str, object]) -> bytes:
    return json.dumps(document, separators=(",", ":")).encode() + b"\n"


def decode_line(line: bytes) -> dict[str, object]:
    if len(line) > MAX_PREAMBLE:
        raise RemoteProtocolError("preamble too long")
    try:
        document = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        raise RemoteProtocolError("preamble is not JSON") from None
    if not isinstance(document, dict):
        raise RemoteProtocolError("preamble is not a JSON object")
    return document

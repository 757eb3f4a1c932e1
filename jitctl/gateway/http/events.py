"""The events of the http shell's HTTP/1.1 layer: what `readers` make of bytes and what
`writers` turn back into bytes (RFC 9112 unless another is named).

- `Request` or `Response`: a message's head. Field names keep the peer's case, values lose
  the whitespace around them (§5.5); `framing` is how the head says its body is delimited.
- `Data`: body bytes, chunked framing removed. `END`: the message is complete (trailer fields
  are dropped). `CLOSED`: the peer closed between messages.
- `NEED_DATA`: the bytes so far end mid-message. `PAUSED`: a request asked to switch protocols
  (`Upgrade`, CONNECT); the bytes after it wait in the reader's `trailing`.
- `RemoteProtocolError`: the peer broke HTTP/1.1; it carries the status a client is answered
  with (400, 431, 501, 505).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

Headers = list[tuple[bytes, bytes]]


class RemoteProtocolError(Exception):
    """The peer broke HTTP/1.1; `status` is the answer a client gets for it."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class Framing(enum.Enum):
    """How a message's body is delimited (§6.3)."""

    NONE = "none"  # no body
    LENGTH = "length"  # Content-Length
    CHUNKED = "chunked"  # Transfer-Encoding: chunked
    CLOSE = "close"  # until the connection closes (responses only)


@dataclass(slots=True)
class Request:
    method: bytes  # as llhttp names it: upper case
    target: bytes
    headers: Headers
    http11: bool  # HTTP/1.1, else HTTP/1.0
    keep_alive: bool
    framing: Framing  # NONE, LENGTH or CHUNKED
    upgrade: bool = False  # `Connection: upgrade` with `Upgrade`, or CONNECT
    expect_continue: bool = False  # `Expect: 100-continue` on HTTP/1.1


@dataclass(slots=True)
class Response:
    status_code: int  # 1xx responses come before the final one
    reason: bytes
    headers: Headers
    framing: Framing  # what the head declares (HEAD, 204 and 304 still have no body)
    keep_alive: bool


@dataclass(slots=True)
class Data:
    data: bytes


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


END = _Marker("END")
CLOSED = _Marker("CLOSED")
NEED_DATA = _Marker("NEED_DATA")
PAUSED = _Marker("PAUSED")

Event = Request | Response | Data | _Marker

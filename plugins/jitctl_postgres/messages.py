"""Postgres wire messages: the parsers and builders the core needs, nothing else.

Rules (protocol-message-formats, https://www.postgresql.org/docs/current/protocol-message-formats.html):
- A typed message is one type byte, an int32 length that counts itself but not the type byte,
  then the body. Every parser here reads a *body* (without type and length).
- Parsers take untrusted bytes: any short read, missing NUL terminator, negative count or bad
  length raises `RemoteProtocolError`, never `IndexError`/`ValueError`/`UnicodeDecodeError`.
- Builders return whole messages (type byte, length, body) as `bytes`.
- Integers are network byte order; `int.from_bytes` is used over `struct` for the hot paths
  (notes §11).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TypeVar

from jitctl.plugin import RemoteProtocolError

# Untyped first packets (protocol-flow §55.2.1 / message formats: StartupMessage & co).
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3_0 = 196608  # 3 << 16
MAX_STARTUP_PACKET = 10000  # the server's own MAX_STARTUP_PACKET_LENGTH

T = TypeVar("T")

# The server accepts messages up to PQ_LARGE_MESSAGE_LIMIT (1 GB - 1); so do we.
MAX_MESSAGE = 0x3FFFFFFF


class Reader:
    """A bounds-checked cursor over one message body."""

    __slots__ = ("data", "pos")

    def __init__(self, data: bytes | memoryview) -> None:
        self.data = bytes(data)
        self.pos = 0

    def _take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise RemoteProtocolError("message shorter than its contents claim")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def byte(self) -> int:
        return self._take(1)[0]

    def int16(self) -> int:
        return int.from_bytes(self._take(2), "big", signed=True)

    def int32(self) -> int:
        return int.from_bytes(self._take(4), "big", signed=True)

    def uint32(self) -> int:
        return int.from_bytes(self._take(4), "big")

    def raw(self, n: int) -> bytes:
        return self._take(n)

    def cstring(self) -> bytes:
        end = self.data.find(b"\0", self.pos)
        if end < 0:
            raise RemoteProtocolError("string without its NUL terminator")
        out = self.data[self.pos : end]
        self.pos = end + 1
        return out

    def text(self) -> str:
        return decode(self.cstring())

    def count(self) -> int:
        """An int16 element count; negative counts are protocol errors."""
        n = self.int16()
        if n < 0:
            raise RemoteProtocolError("negative element count")
        return n

    def rest(self) -> bytes:
        out = self.data[self.pos :]
        self.pos = len(self.data)
        return out

    def at_end(self) -> bool:
        return self.pos == len(self.data)


def decode(raw: bytes) -> str:
    """Strict UTF-8: the connection is forced to UTF8 (notes §9), so anything else is an attack
    or a broken peer."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise RemoteProtocolError(f"text is not valid UTF-8 ({exc.reason})") from None


def message(kind: bytes, body: bytes = b"") -> bytes:
    return kind + (len(body) + 4).to_bytes(4, "big") + body


def cstr(value: str | bytes) -> bytes:
    raw = value.encode() if isinstance(value, str) else value
    if b"\0" in raw:
        raise ValueError("NUL inside a C string")
    return raw + b"\0"


# -- frontend builders ------------------------------------------------------------------------


def startup_message(params: Mapping[str, str]) -> bytes:
    body = PROTOCOL_3_0.to_bytes(4, "big")
    body += b"".join(cstr(k) + cstr(v) for k, v in params.items()) + b"\0"
    return (len(body) + 4).to_bytes(4, "big") + body


def cancel_request(key: bytes) -> bytes:
    """CancelRequest with a 3.0 key (int32 pid + int32 secret)."""
    return (16).to_bytes(4, "big") + CANCEL_REQUEST.to_bytes(4, "big") + key


def password_message(payload: bytes) -> bytes:
    return message(b"p", payload)


def sasl_initial_response(mechanism: str, data: bytes) -> bytes:
    return message(b"p", cstr(mechanism) + len(data).to_bytes(4, "big") + data)


def query(text: str | bytes) -> bytes:
    return message(b"Q", cstr(text))


# -- backend builders -------------------------------------------------------------------------


def authentication_ok() -> bytes:
    return message(b"R", (0).to_bytes(4, "big"))


def ready_for_query(status: bytes = b"I") -> bytes:
    return message(b"Z", status)


def negotiate_protocol_version(minor: int, unknown: Iterable[str]) -> bytes:
    names = list(unknown)
    body = minor.to_bytes(4, "big") + len(names).to_bytes(4, "big")
    return message(b"v", body + b"".join(cstr(n) for n in names))


def backend_key_data(key: bytes) -> bytes:
    return message(b"K", key)


def error_response(fields: Mapping[str, str], kind: bytes = b"E") -> bytes:
    """ErrorResponse (or NoticeResponse with kind=b"N"): (code byte + cstring)* + NUL
    (protocol-error-fields)."""
    body = b"".join(code.encode() + cstr(value.replace("\0", "")) for code, value in fields.items())
    return message(kind, body + b"\0")


def error(
    sqlstate: str, text: str, *, severity: str = "ERROR", detail: str = "", hint: str = ""
) -> bytes:
    """Our own error: S and V (non-localized, 9.6+) both carry the severity (notes §5)."""
    fields = {"S": severity, "V": severity, "C": sqlstate, "M": text}
    if detail:
        fields["D"] = detail
    if hint:
        fields["H"] = hint
    return error_response(fields)


def fatal(sqlstate: str, text: str, *, detail: str = "") -> bytes:
    return error(sqlstate, text, severity="FATAL", detail=detail)


# -- body parsers -----------------------------------------------------------------------------


def error_fields(body: bytes | memoryview) -> dict[str, str]:
    """ErrorResponse / NoticeResponse fields by code; later duplicates win."""
    reader = Reader(body)
    fields: dict[str, str] = {}
    while True:
        code = reader.byte()
        if code == 0:
            return fields
        fields[chr(code)] = reader.cstring().decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class Column:
    """One RowDescription field (protocol-message-formats: RowDescription)."""

    name: str
    table_oid: int
    attnum: int
    type_oid: int
    typlen: int
    typmod: int
    format: int


_FIELD = struct.Struct("!IhIhih")  # RowDescription: table, attnum, type, typlen, typmod, format


def _guarded(parser: Callable[[bytes], T]) -> Callable[[bytes], T]:
    """Hot-path parsers index and unpack directly; a short body surfaces as struct.error or a
    negative count, both turned into RemoteProtocolError here."""

    def guarded(body: bytes) -> T:
        try:
            return parser(body)
        except (struct.error, IndexError, OverflowError) as exc:
            raise RemoteProtocolError(f"malformed message body ({exc})") from None

    guarded.__doc__ = parser.__doc__
    return guarded


def _nul(body: bytes, pos: int) -> int:
    end = body.find(b"\0", pos)
    if end < 0:
        raise RemoteProtocolError("string without its NUL terminator")
    return end


def _count(body: bytes, pos: int) -> int:
    n: int = _INT16.unpack_from(body, pos)[0]
    if n < 0:
        raise RemoteProtocolError("negative element count")
    return n


_INT16 = struct.Struct("!h")
_INT32 = struct.Struct("!i")


@_guarded
def row_description(body: bytes) -> list[Column]:
    columns = []
    pos = 2
    for _ in range(_count(body, 0)):
        end = _nul(body, pos)
        name = body[pos:end].decode("utf-8", "replace")
        columns.append(Column(name, *_FIELD.unpack_from(body, end + 1)))
        pos = end + 19
    return columns


@_guarded
def data_row(body: bytes) -> list[bytes | None]:
    values: list[bytes | None] = []
    pos = 2
    unpack = _INT32.unpack_from
    for _ in range(_count(body, 0)):
        size = unpack(body, pos)[0]
        pos += 4
        if size == -1:
            values.append(None)
            continue
        if size < 0 or pos + size > len(body):
            raise RemoteProtocolError("DataRow value longer than the message")
        values.append(body[pos : pos + size])
        pos += size
    return values


def build_data_row(values: Iterable[bytes | None]) -> bytes:
    items = list(values)
    parts = [len(items).to_bytes(2, "big")]
    for value in items:
        parts.append(
            b"\xff\xff\xff\xff" if value is None else len(value).to_bytes(4, "big") + value
        )
    return message(b"D", b"".join(parts))


@dataclass(frozen=True, slots=True)
class Bind:
    portal: str
    statement: str
    param_formats: tuple[int, ...]
    params: tuple[bytes | None, ...]
    result_formats: tuple[int, ...]


@_guarded
def bind(body: bytes) -> Bind:
    end = _nul(body, 0)
    portal = decode(body[:end])
    pos = _nul(body, end + 1)
    statement = decode(body[end + 1 : pos])
    pos += 1
    n = _count(body, pos)
    param_formats = struct.unpack_from(f"!{n}h", body, pos + 2)
    pos += 2 + 2 * n
    params: list[bytes | None] = []
    count = _count(body, pos)
    pos += 2
    for _ in range(count):
        size = _INT32.unpack_from(body, pos)[0]
        pos += 4
        if size == -1:
            params.append(None)
            continue
        if size < 0 or pos + size > len(body):
            raise RemoteProtocolError("Bind parameter longer than the message")
        params.append(body[pos : pos + size])
        pos += size
    n = _count(body, pos)
    result_formats = struct.unpack_from(f"!{n}h", body, pos + 2)
    return Bind(portal, statement, param_formats, tuple(params), result_formats)


@_guarded
def parse(body: bytes) -> tuple[str, str, bytes]:
    """Parse: (statement name, query text, the raw parameter-type tail)."""
    end = _nul(body, 0)
    name = decode(body[:end])
    stop = _nul(body, end + 1)
    tail = body[stop + 1 :]
    n = _count(tail, 0)  # the parameter-type count must be there, with its OIDs
    if len(tail) < 2 + 4 * n:
        raise RemoteProtocolError("Parse shorter than its parameter types")
    return name, decode(body[end + 1 : stop]), tail


def build_parse(name: str, text: str, tail: bytes) -> bytes:
    return message(b"P", cstr(name) + cstr(text) + tail)


def target(body: bytes) -> tuple[str, str]:
    """Describe / Close: ('S' or 'P', name)."""
    which = body[:1]
    if which not in (b"S", b"P") or not which:
        raise RemoteProtocolError(f"Describe/Close of unknown kind {which!r}")
    end = _nul(body, 1)
    return which.decode(), decode(body[1:end])


def execute(body: bytes) -> tuple[str, int]:
    end = _nul(body, 0)
    if len(body) < end + 5:
        raise RemoteProtocolError("Execute without its row limit")
    return decode(body[:end]), int.from_bytes(body[end + 1 : end + 5], "big", signed=True)


def parameter_status(body: bytes | memoryview) -> tuple[str, str]:
    reader = Reader(body)
    return reader.cstring().decode("utf-8", "replace"), reader.cstring().decode("utf-8", "replace")


def notification(body: bytes | memoryview) -> tuple[int, str, str]:
    reader = Reader(body)
    return reader.int32(), reader.text(), reader.text()


def build_notification(pid: int, channel: str, payload: str) -> bytes:
    return message(b"A", pid.to_bytes(4, "big", signed=True) + cstr(channel) + cstr(payload))


def copy_response(body: bytes | memoryview) -> tuple[int, tuple[int, ...]]:
    """CopyInResponse / CopyOutResponse: (overall format, per-column formats)."""
    reader = Reader(body)
    overall = reader.byte()
    return overall, tuple(reader.int16() for _ in range(reader.count()))


def command_tag(body: bytes) -> tuple[str, int | None]:
    """CommandComplete: the tag and its row count, when it has one ("SELECT 3", "INSERT 0 3")."""
    tag = body[: _nul(body, 0)].decode("utf-8", "replace")
    last = tag.rsplit(" ", 1)[-1]
    return tag, int(last) if last.isdigit() and " " in tag else None


def function_call_oid(body: bytes | memoryview) -> int:
    return Reader(body).uint32()

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
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from jitctl.plugin import RemoteProtocolError

# Untyped first packets (protocol-flow §55.2.1 / message formats: StartupMessage & co).
SSL_REQUEST = 80877103
GSSENC_REQUEST = 80877104
CANCEL_REQUEST = 80877102
PROTOCOL_3_0 = 196608  # 3 << 16
MAX_STARTUP_PACKET = 10000  # the server's own MAX_STARTUP_PACKET_LENGTH

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


def row_description(body: bytes | memoryview) -> list[Column]:
    reader = Reader(body)
    columns = []
    for _ in range(reader.count()):
        name = reader.cstring().decode("utf-8", "replace")
        table_oid, attnum, type_oid = reader.uint32(), reader.int16(), reader.uint32()
        typlen, typmod, fmt = reader.int16(), reader.int32(), reader.int16()
        columns.append(Column(name, table_oid, attnum, type_oid, typlen, typmod, fmt))
    return columns


def data_row(body: bytes | memoryview) -> list[bytes | None]:
    reader = Reader(body)
    values: list[bytes | None] = []
    for _ in range(reader.count()):
        size = reader.int32()
        values.append(None if size == -1 else reader.raw(size))
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


def bind(body: bytes | memoryview) -> Bind:
    reader = Reader(body)
    portal, statement = reader.text(), reader.text()
    param_formats = tuple(reader.int16() for _ in range(reader.count()))
    params: list[bytes | None] = []
    for _ in range(reader.count()):
        size = reader.int32()
        params.append(None if size == -1 else reader.raw(size))
    result_formats = tuple(reader.int16() for _ in range(reader.count()))
    return Bind(portal, statement, param_formats, tuple(params), result_formats)


def parse(body: bytes | memoryview) -> tuple[str, str, bytes]:
    """Parse: (statement name, query text, the raw parameter-type tail)."""
    reader = Reader(body)
    name = reader.text()
    raw_query = reader.cstring()
    if b"\0" in raw_query:  # cannot happen (cstring), kept for the rule's sake: no NUL in text
        raise RemoteProtocolError("NUL inside a query")
    tail = reader.rest()
    Reader(tail).count()  # the parameter-type count must at least be there
    return name, decode(raw_query), tail


def build_parse(name: str, text: str, tail: bytes) -> bytes:
    return message(b"P", cstr(name) + cstr(text) + tail)


def target(body: bytes | memoryview) -> tuple[str, str]:
    """Describe / Close: ('S' or 'P', name)."""
    reader = Reader(body)
    which = chr(reader.byte())
    if which not in "SP":
        raise RemoteProtocolError(f"Describe/Close of unknown kind {which!r}")
    return which, reader.text()


def execute(body: bytes | memoryview) -> tuple[str, int]:
    reader = Reader(body)
    return reader.text(), reader.int32()


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


def command_tag(body: bytes | memoryview) -> tuple[str, int | None]:
    """CommandComplete: the tag and its row count, when it has one ("SELECT 3", "INSERT 0 3")."""
    tag = Reader(body).cstring().decode("utf-8", "replace")
    last = tag.rsplit(" ", 1)[-1]
    return tag, int(last) if last.isdigit() and " " in tag else None


def function_call_oid(body: bytes | memoryview) -> int:
    return Reader(body).uint32()


INT32 = struct.Struct("!i")

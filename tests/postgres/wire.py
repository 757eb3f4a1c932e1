"""Helpers for the postgres core's tests: message builders for both sides, stand-in services,
and a harness that runs a core and collects what it forwards, records and closes.

The stand-ins are deliberately simple (the classifier and the policy have their own tests):
- `classify` splits on ';' and takes each statement's first word as its kind;
- `Policy` denies the kinds in `deny` and asks approval for those in `approve`;
- `Masks` masks columns by (optionally table-qualified) name and replaces any word with '@'
  in it by `[EMAIL]`, like jitctl.masking.MaskPolicy does with its detectors.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

from jitctl.plugin import Close, Command, Forward, Record, SessionContext, Shutdown
from jitctl_postgres.core import PostgresCore
from jitctl_postgres.messages import cstr, message
from jitctl_postgres.state import Services

# -- stand-in services --------------------------------------------------------------------------


@dataclass(frozen=True)
class Info:
    text: str
    kind: str
    kinds: frozenset[str]
    tables: frozenset[str] = frozenset()
    functions: frozenset[str] = frozenset()
    flags: frozenset[str] = frozenset()


@dataclass(frozen=True)
class Classification:
    statements: tuple[Info, ...]
    error: str | None = None

    @property
    def kinds(self) -> frozenset[str]:
        return frozenset().union(*(s.kinds for s in self.statements))

    tables = functions = flags = property(lambda self: frozenset())


def classify(text: str) -> Classification:
    infos = []
    for part in text.split(";"):
        words = part.split()
        if words:
            kind = words[0].lower()
            infos.append(Info(part.strip(), kind, frozenset({kind})))
    return Classification(tuple(infos))


def classify_function_call(oid: int) -> Classification:
    return Classification(
        (Info(f"FunctionCall({oid})", "function_call", frozenset({"function_call"})),)
    )


@dataclass(frozen=True)
class Decision:
    action: str
    rule: str
    reason: str
    statement: str = ""


@dataclass
class Policy:
    deny: frozenset[str] = frozenset({"delete", "drop", "truncate", "function_call"})
    approve: frozenset[str] = frozenset({"vacuum"})

    def decide(
        self, classification: Classification, groups: Sequence[str], families: object = None
    ) -> Decision:
        for info in classification.statements:
            if info.kind in self.deny:
                return Decision("deny", "no-destroy", f"{info.kind.upper()} is denied", info.text)
            if info.kind in self.approve:
                return Decision("approve", "ask", f"{info.kind.upper()} needs approval", info.text)
        return Decision("allow", "default", "allowed")


def _scan(value: bytes) -> tuple[bytes, Counter[str]]:
    words = value.split(b" ")
    counts: Counter[str] = Counter()
    for i, word in enumerate(words):
        if b"@" in word:
            words[i] = b"[EMAIL]"
            counts["EMAIL_ADDRESS"] += 1
    return b" ".join(words), counts


@dataclass
class RowMasker:
    masked: list[bool]
    names: Sequence[str] = ()

    def mask_row(self, values: Sequence[bytes | None]) -> tuple[list[bytes | None], Counter[str]]:
        counts: Counter[str] = Counter()
        out: list[bytes | None] = []
        for i, (flag, value) in enumerate(zip(self.masked, values, strict=True)):
            if value is None:
                out.append(None)
            elif flag:
                out.append(b"[MASKED]")
                counts[f"COLUMN:{self.names[i]}" if self.names else "COLUMN"] += 1
            else:
                new, found = _scan(value)
                out.append(new)
                counts.update(found)
        return out, counts


@dataclass
class Masks:
    columns: set[str] = field(default_factory=lambda: {"email"})
    rules: tuple[str, ...] = ("email",)
    marker: bytes = b"[MASKED]"
    active: bool = True

    def columns_masked(self, cols: Sequence[tuple[str | None, str]]) -> list[bool]:
        out = []
        for table, column in cols:
            qualified = {f"{table.split('.')[-1]}.{column}"} if table else set()
            unknown = (
                {c for c in self.columns if c.endswith("." + column)} if table is None else set()
            )
            out.append(column in self.columns or bool(qualified & self.columns) or bool(unknown))
        return out

    def row_masker(self, cols: Sequence[tuple[str | None, str]]) -> RowMasker:
        return RowMasker(self.columns_masked(cols))

    def mask_text(self, text: str) -> tuple[str, Counter[str]]:
        new, counts = _scan(text.encode())
        return new.decode(), counts

    def mask_copy_line(
        self,
        line: bytes,
        fmt: str,
        masked: Sequence[bool],
        *,
        names: Sequence[str] = (),
        delimiter: bytes | None = None,
        null: bytes | None = None,
    ) -> tuple[bytes, Counter[str]]:
        sep = delimiter or (b"," if fmt == "csv" else b"\t")
        fields = line.rstrip(b"\n").split(sep)
        if len(fields) != len(masked):
            return sep.join(b"[WITHHELD]" for _ in masked) + b"\n", Counter(WITHHELD=1)
        values, counts = RowMasker(list(masked), names).mask_row(fields)
        return sep.join(v or b"" for v in values) + b"\n", counts


def services(*, masks: Masks | None = None, policy: Policy | None = None) -> Services:
    return Services(classify, classify_function_call, policy or Policy(), masks)


# -- frontend messages --------------------------------------------------------------------------


def startup(**params: str) -> bytes:
    body = (196608).to_bytes(4, "big") + b"".join(cstr(k) + cstr(v) for k, v in params.items())
    body += b"\0"
    return (len(body) + 4).to_bytes(4, "big") + body


def untyped(code: int, extra: bytes = b"") -> bytes:
    return (8 + len(extra)).to_bytes(4, "big") + code.to_bytes(4, "big") + extra


SSL = untyped(80877103)
GSSENC = untyped(80877104)


def q(text: str) -> bytes:
    return message(b"Q", cstr(text))


def parse(text: str, name: str = "", types: Sequence[int] = ()) -> bytes:
    tail = len(types).to_bytes(2, "big") + b"".join(t.to_bytes(4, "big") for t in types)
    return message(b"P", cstr(name) + cstr(text) + tail)


def bind(
    statement: str = "",
    portal: str = "",
    params: Sequence[bytes | None] = (),
    formats: Sequence[int] = (),
    results: Sequence[int] = (),
) -> bytes:
    body = cstr(portal) + cstr(statement) + len(formats).to_bytes(2, "big")
    body += b"".join(f.to_bytes(2, "big") for f in formats) + len(params).to_bytes(2, "big")
    for p in params:
        body += b"\xff\xff\xff\xff" if p is None else len(p).to_bytes(4, "big") + p
    body += len(results).to_bytes(2, "big") + b"".join(r.to_bytes(2, "big") for r in results)
    return message(b"B", body)


def describe(which: str, name: str = "") -> bytes:
    return message(b"D", which.encode() + cstr(name))


def execute(portal: str = "", max_rows: int = 0) -> bytes:
    return message(b"E", cstr(portal) + max_rows.to_bytes(4, "big"))


def close(which: str, name: str = "") -> bytes:
    return message(b"C", which.encode() + cstr(name))


SYNC = message(b"S")
FLUSH = message(b"H")
TERMINATE = message(b"X")
COPY_DONE = message(b"c")


def copy_data(data: bytes) -> bytes:
    return message(b"d", data)


def function_call(oid: int, args: Sequence[bytes] = ()) -> bytes:
    body = oid.to_bytes(4, "big") + (0).to_bytes(2, "big") + len(args).to_bytes(2, "big")
    body += b"".join(len(a).to_bytes(4, "big") + a for a in args) + (0).to_bytes(2, "big")
    return message(b"F", body)


# -- backend messages ---------------------------------------------------------------------------


def auth(code: int, extra: bytes = b"") -> bytes:
    return message(b"R", code.to_bytes(4, "big") + extra)


AUTH_OK = auth(0)


def param(name: str, value: str) -> bytes:
    return message(b"S", cstr(name) + cstr(value))


def key(pid: int = 4242, secret: int = 0x01020304) -> bytes:
    return message(b"K", pid.to_bytes(4, "big") + secret.to_bytes(4, "big"))


def ready(status: str = "I") -> bytes:
    return message(b"Z", status.encode())


def row_description(*columns: str | tuple[str, int, int, int]) -> bytes:
    """Columns as names (text, no table) or (name, table_oid, type_oid, format)."""
    body = len(columns).to_bytes(2, "big")
    for column in columns:
        name, table, type_oid, fmt = (column, 0, 25, 0) if isinstance(column, str) else column
        body += cstr(name) + table.to_bytes(4, "big") + (1).to_bytes(2, "big")
        body += type_oid.to_bytes(4, "big") + (-1).to_bytes(2, "big", signed=True)
        body += (-1).to_bytes(4, "big", signed=True) + fmt.to_bytes(2, "big")
    return message(b"T", body)


def data_row(*values: bytes | None) -> bytes:
    body = len(values).to_bytes(2, "big")
    for v in values:
        body += b"\xff\xff\xff\xff" if v is None else len(v).to_bytes(4, "big") + v
    return message(b"D", body)


def complete(tag: str) -> bytes:
    return message(b"C", cstr(tag))


def error(code: str, text: str, severity: str = "ERROR", **more: str) -> bytes:
    fields = {"S": severity, "V": severity, "C": code, "M": text, **more}
    return message(b"E", b"".join(k.encode() + cstr(v) for k, v in fields.items()) + b"\0")


def message_a(pid: int, channel: str, payload: str) -> bytes:
    """NotificationResponse."""
    return message(b"A", pid.to_bytes(4, "big") + cstr(channel) + cstr(payload))


def notice(text: str) -> bytes:
    return message(b"N", b"SNOTICE\0VNOTICE\0C00000\0M" + cstr(text) + b"\0")


PARSE_OK = message(b"1")
BIND_OK = message(b"2")
CLOSE_OK = message(b"3")
NO_DATA = message(b"n")
EMPTY = message(b"I")
SUSPENDED = message(b"s")
SERVER_COPY_DONE = message(b"c")


def copy_response(kind: bytes, ncols: int, fmt: int = 0) -> bytes:
    return message(kind, bytes([fmt]) + ncols.to_bytes(2, "big") + bytes(2 * ncols))


def error_fields(msg: bytes) -> dict[str, str]:
    from jitctl_postgres.messages import error_fields as parse_fields

    return parse_fields(msg[5:])


def split_messages(data: bytes) -> list[bytes]:
    out, pos = [], 0
    while pos < len(data):
        length = int.from_bytes(data[pos + 1 : pos + 5], "big")
        out.append(data[pos : pos + 1 + length])
        pos += 1 + length
    return out


# -- the harness --------------------------------------------------------------------------------

CREDENTIAL = {"user": "broker", "password": "s3cret", "database": "app"}


class Harness:
    """One core and everything it has said, in order."""

    def __init__(
        self,
        svc: Services | None = None,
        *,
        credential: dict[str, str] | None = None,
        registry: dict[bytes, Any] | None = None,
        target: str = "pg",
        record_rows: int = 0,
        write_ahead: str = "all",
        bytewise: bool = False,
    ) -> None:
        self.registry = {} if registry is None else registry
        self.time = 100.0
        options = SimpleNamespace(write_ahead=write_ahead)
        context = SessionContext(
            session_id="sess-1",
            target=SimpleNamespace(name=target, record_rows=record_rows, postgres=options),
            groups=("agents",),
            settings={
                "credential": credential or dict(CREDENTIAL),
                "cancel_registry": self.registry,
            },
        )
        self.core = PostgresCore(context, svc or services(), clock=lambda: self.time)
        self.bytewise = bytewise
        self.up = bytearray()
        self.down = bytearray()
        self.records: list[Record] = []
        self.commands: list[Command] = []
        self.closed: Close | None = None
        self.shutdowns: list[str] = []

    def _run(self, commands: Iterable[Command]) -> None:
        for command in commands:
            self.commands.append(command)
            if isinstance(command, Forward):
                (self.up if command.direction.value == "up" else self.down).extend(command.data)
            elif isinstance(command, Record):
                self.records.append(command)
            elif isinstance(command, Close):
                self.closed = command
            elif isinstance(command, Shutdown):
                self.shutdowns.append(command.direction.value)

    def client(self, *parts: bytes) -> Harness:
        data = b"".join(parts)
        chunks = [data[i : i + 1] for i in range(len(data))] if self.bytewise else [data]
        for chunk in chunks:
            self._run(self.core.client_data(chunk))
        return self

    def server(self, *parts: bytes) -> Harness:
        data = b"".join(parts)
        chunks = [data[i : i + 1] for i in range(len(data))] if self.bytewise else [data]
        for chunk in chunks:
            self._run(self.core.upstream_data(chunk))
        return self

    def take_up(self) -> bytes:
        out, self.up = bytes(self.up), bytearray()
        return out

    def take_down(self) -> bytes:
        out, self.down = bytes(self.down), bytearray()
        return out

    def kinds(self) -> list[str]:
        return [r.kind for r in self.records]

    def last(self, kind: str) -> dict[str, Any]:
        return dict([r for r in self.records if r.kind == kind][-1].payload)

    def connect(self, **params: str) -> Harness:
        """Startup and a trusting upstream: the session is READY, buffers emptied."""
        self.client(startup(user="alice", database="app", **params))
        self.server(
            AUTH_OK,
            param("client_encoding", "UTF8"),
            param("standard_conforming_strings", "on"),
            key(),
            ready(),
        )
        self.take_up()
        self.take_down()
        return self

    def connect_masked(
        self,
        tables: Sequence[tuple[int, str, str]] = (),
        attrs: Sequence[tuple[int, int, str]] = (),
    ) -> Harness:
        """Startup on a masked target: answers jitctl's catalog query too."""
        self.client(startup(user="alice", database="app"))
        self.server(AUTH_OK, param("client_encoding", "UTF8"), key(), ready())
        assert b"pg_class" in self.take_up()
        self.server(
            row_description("oid", "nspname", "relname"),
            *(data_row(str(o).encode(), n.encode(), r.encode()) for o, n, r in tables),
            complete(f"SELECT {len(tables)}"),
            row_description("attrelid", "attnum", "attname"),
            *(data_row(str(o).encode(), str(n).encode(), a.encode()) for o, n, a in attrs),
            complete(f"SELECT {len(attrs)}"),
            row_description("oid"),
            complete("SELECT 0"),
            ready(),
        )
        self.take_down()
        return self

"""What the core remembers between messages: prepared statements, portals, and the FIFO of
responses the server still owes.

Rules (protocol-flow #PROTOCOL-FLOW-EXT-QUERY, #PROTOCOL-FLOW-PIPELINING; notes §4, §5):
- Every client message that the server answers pushes one `Pending` in send order; server
  messages are attributed to the head. Flush, CopyData and Terminate owe nothing; CopyDone and
  CopyFail push a `COPY_END` marker the head-of-queue logic skips (it only delimits which
  Syncs a COPY IN swallows: the server ignores Sync and Flush during COPY IN, sql-copy /
  protocol-flow #PROTOCOL-FLOW-COPY).
- After an error in an extended-query message the server discards every message until Sync
  (protocol-flow §53.2.3): `discard_until_sync` drops those entries, and while no Sync is queued
  new entries are dropped as they come (`skipping`). Query and FunctionCall errors do not start
  a skip; Sync clears it.
- A statement name blocked once stays blocked (notes §5): `blocked` maps it to the decision, so
  a later Bind/Describe's "does not exist" error is rewritten and a later Parse cannot recreate
  it. The unnamed statement is unblocked by the next allowed unnamed Parse.
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any

from .messages import Column


class Expect(enum.Enum):
    QUERY = "query"  # results of each statement, then ReadyForQuery
    PARSE = "parse"
    BIND = "bind"
    DESCRIBE = "describe"
    EXECUTE = "execute"
    CLOSE = "close"
    SYNC = "sync"
    FUNCTION = "function"
    COPY_END = "copy_end"  # no response: a marker
    INTERNAL = "internal"  # jitctl's own catalog query


Z_OWNERS = (Expect.QUERY, Expect.SYNC, Expect.FUNCTION, Expect.INTERNAL)
_SYNC, _COPY_END = Expect.SYNC, Expect.COPY_END  # hot paths: a global, not an enum lookup


@dataclass(slots=True)
class Prepared:
    name: str
    text: str
    classification: Any
    decision: Any
    seq: int
    columns: list[Column] | None = None  # from Describe S
    # What every Execute of it records besides the execution's own fields (text,
    # classification, decision), and the whole text when it is cut: built at the first one.
    fields: dict[str, Any] | None = None
    data: bytes = b""


@dataclass(slots=True)
class Portal:
    name: str
    statement: str
    prepared: Prepared | None
    params: list[Any]
    result_formats: tuple[int, ...]
    columns: list[Column] | None = None  # from Describe P (with the real formats)
    blocked: Any = None  # bound from a blocked statement


@dataclass(slots=True)
class Result:
    """One statement's result as it streams by."""

    seq: int
    index: int = 0
    started: float = 0.0
    shape: Any = None  # results.Shape
    columns: list[str] = field(default_factory=list)
    formats: list[int] = field(default_factory=list)
    types: list[int] = field(default_factory=list)
    rows: int = 0
    masked: Counter[str] | None = None  # made on the first masked value (most results have none)
    sample: list[Any] = field(default_factory=list)
    copy_bytes: int = 0
    copy_messages: int = 0
    copy_out: Any = None  # results.CopyOut

    def count_masked(self, counts: Counter[str]) -> None:
        if counts:
            if self.masked is None:
                self.masked = Counter()
            self.masked.update(counts)


@dataclass(slots=True)
class Pending:
    expect: Expect
    seq: int = 0  # the statement record it belongs to (0: none)
    name: str = ""  # statement or portal name
    which: str = ""  # Describe/Close: "S" or "P"
    blocked: Any = None  # the Decision that blocked it: its error is rewritten
    text: str = ""
    result: Result | None = None
    portal: Portal | None = None
    copy_specs: list[Any] | None = None
    copy_in: bool = False
    used: bool = False  # COPY_END: already matched to a CopyInResponse
    previous: Prepared | None = None  # PARSE: the statement this name had before, if any
    described: Prepared | Portal | None = None  # DESCRIBE: the object as of the Describe
    started: float = 0.0
    done: int = 0  # QUERY: statements of the string answered so far


class Book:
    def __init__(self) -> None:
        self.fifo: deque[Pending] = deque()
        self.statements: dict[str, Prepared] = {}
        self.portals: dict[str, Portal] = {}
        self.blocked: dict[str, Any] = {}
        self.skipping = False
        self.copy_in_open = False
        self.copy_in_bytes = 0
        self.copy_in_messages = 0  # COPY IN running and the client's CopyDone/Fail not seen yet
        self.seq = 0
        self.tx_status = "I"
        # The session sent something that can create or drop prepared statements or portals
        # behind the protocol's back (SQL PREPARE, DEALLOCATE, DECLARE, ..., or code the text
        # does not show): from then on `statements`/`portals` may not be the server's names.
        self.names_unsure = False

    def parse_creates(self, name: str) -> bool:
        """Whether a Parse into `name` takes effect as far as the book can tell: the server
        refuses a name it already has (42P05) and goes on running the first statement under
        it. Once SQL may have moved names (`names_unsure`) the book cannot tell: it takes the
        Parse, as the server would if the old name is gone."""
        return not name or name not in self.statements or self.names_unsure

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def push(self, pending: Pending) -> bool:
        """Queue an expected response; False if the server will discard the message."""
        if pending.expect is _SYNC:
            self.skipping = False
        elif self.skipping and pending.expect is not _COPY_END:
            return False
        self.fifo.append(pending)
        return True

    def head(self) -> Pending | None:
        fifo = self.fifo
        while fifo and fifo[0].expect is _COPY_END:
            fifo.popleft()
        return fifo[0] if fifo else None

    def pop(self) -> Pending:
        return self.fifo.popleft()

    def discard_until_sync(self) -> list[Pending]:
        """Drop what the server will skip after an extended-query error; returns it."""
        dropped = []
        while self.fifo and self.fifo[0].expect is not Expect.SYNC:
            dropped.append(self.fifo.popleft())
        if not self.fifo:
            self.skipping = True
        return [p for p in dropped if p.expect is not Expect.COPY_END]

    def copy_in_started(self) -> None:
        """The head started COPY IN: the server ignores Syncs until CopyDone/CopyFail, so the
        Syncs queued before the client's end-of-copy owe nothing; if that end has not been
        sent yet, Syncs that come before it are not queued at all (`copy_in_open`)."""
        items = list(self.fifo)
        kept: deque[Pending] = deque(items[:1])
        marker_seen = False
        for item in items[1:]:
            if not marker_seen and item.expect is Expect.COPY_END and not item.used:
                item.used = marker_seen = True
            elif not marker_seen and item.expect is Expect.SYNC:
                continue
            kept.append(item)
        self.fifo = kept
        self.copy_in_open = not marker_seen

    def forget_all_prepared(self) -> None:
        """DISCARD ALL / DEALLOCATE ALL removed every statement and portal server-side."""
        self.statements.clear()
        self.portals.clear()

"""Server -> client once the session is ready: attribute, mask, record, rewrite blocked errors.

Rules (protocol-flow #PROTOCOL-FLOW-EXT-QUERY, #PROTOCOL-FLOW-PIPELINING, #PROTOCOL-FLOW-COPY,
#PROTOCOL-ASYNC; notes §4, §5, §7, §8):
- Every response is attributed to the head of the FIFO (statements.py). A response the head
  cannot own means the core lost track of the server: `RemoteProtocolError` (the session ends)
  rather than masking or rewriting the wrong statement's data.
- ErrorResponse to a blocked message becomes 42501 "jitctl: statement denied by policy: ..."
  (or "approval required"); the server's ReadyForQuery passes through untouched.
- After an extended-query error the server discards until Sync; so does the FIFO. Executions
  discarded that way are recorded as `skipped`.
- NoticeResponse, NotificationResponse and ParameterStatus are not attributed (notices.py).
- Masking happens before bytes are forwarded *and* before they are recorded. DataRow and COPY
  OUT messages bigger than `MASK_CAP` on a masked target end the session (fail closed, notes §8).
  Binary COPY OUT on a masked target is refused up front (copyspec) and, should one start
  anyway, ends the session.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from typing import Any

from jitctl.plugin import RemoteProtocolError

from . import copyspec, notices
from .enforcement import denial_fields
from .messages import (
    MAX_MESSAGE,
    Column,
    command_tag,
    copy_response,
    error_fields,
    error_response,
    message,
    parameter_status,
    row_description,
)
from .results import CopyOut, Shape, mask_data_row, mask_fields, result_formats, sample
from .state import Kill, SessionState, result_fields
from .statements import Z_OWNERS, Expect, Pending, Result

MASK_CAP = 32 * 1024 * 1024
COLUMNS_CACHE = 64
ALWAYS = frozenset(b"TCEnNASZGHVtIs123Kc")
ROWS = (Expect.QUERY, Expect.EXECUTE, Expect.INTERNAL)


class Backend:
    """framing.Sink for the server's messages."""

    def __init__(
        self, state: SessionState, internal: Callable[[Pending, int, bytes | None], None]
    ) -> None:
        self.state = state
        self.book = state.book
        self.internal = internal  # the core's handler for its own catalog query's messages
        self.held_ready: bytes = b""  # the first ReadyForQuery, released after the catalog query
        self.parameters = notices.Parameters(state)
        # Parsed RowDescriptions by body; the lists are shared, never changed.
        self._columns: dict[bytes, list[Column]] = {}
        self.inspected = self._inspected()

    def _inspected(self) -> frozenset[int]:
        """DataRows are copied out only to mask or sample them (and while jitctl's catalog
        query runs: `hold_ready`); CopyData only to mask it."""
        state = self.state
        rows = {0x44} if state.masks is not None or state.record_rows > 0 else set()
        return ALWAYS | rows | ({0x64} if state.masks is not None else set())

    def hold_ready(self, ready: bytes) -> None:
        """jitctl's catalog query (catalog.py) is on its way: hold the client's first
        ReadyForQuery until the query's own, and read its rows meanwhile."""
        self.held_ready = ready
        self.inspected = self.inspected | {0x44}

    # -- Sink ---------------------------------------------------------------------------------

    def limit(self, kind: int) -> int:
        return MASK_CAP if kind in (0x44, 0x64) and self.state.masks is not None else MAX_MESSAGE

    def stream_start(self, kind: int, length: int) -> bool:
        if kind in (0x44, 0x64):
            self.message(kind, None, length)
            return True
        return False

    def message(self, kind: int, body: bytes | None, length: int) -> bytes | None:
        handler = _HANDLERS.get(kind)
        if handler is None:
            raise RemoteProtocolError(f"unexpected message type {chr(kind)!r} from the server")
        result: bytes | None = handler(self, body, length)
        return result

    # -- attribution --------------------------------------------------------------------------

    def _head(self, *expected: Expect) -> Pending:
        head = self.book.head()
        if head is None or head.expect not in expected:
            got = head.expect.value if head else "nothing"
            raise RemoteProtocolError(
                f"server response does not match the request pipeline "
                f"(expected {'/'.join(e.value for e in expected)}, had {got})"
            )
        return head

    def _result(self, head: Pending) -> Result:
        if head.result is None:
            result = Result(seq=head.seq, index=head.done, started=head.started)
            portal = head.portal
            if head.expect is Expect.EXECUTE and portal is not None:
                columns = portal.columns
                if columns is None and portal.prepared is not None:
                    columns = portal.prepared.columns
                if columns is not None:
                    formats = result_formats(portal.result_formats, len(columns))
                    self._shape(result, columns, formats)
            head.result = result
        return head.result

    def _shape(self, result: Result, columns: list[Any], formats: list[int]) -> None:
        result.columns = [c.name for c in columns]
        result.formats = formats
        result.types = [c.type_oid for c in columns]
        if self.state.masks is not None:
            result.shape = Shape(
                self.state.masks,
                columns,
                formats,
                self.state.tables,
                self.state.text_types,
                self.state.attnames,
            )

    def _finish(self, head: Pending, tag: str, **extra: Any) -> None:
        result = self._result(head)
        now = self.state.clock()
        copy_in = (self.book.copy_in_bytes, self.book.copy_in_messages) if head.copy_in else None
        payload = result_fields(result, tag, now, copy_in)
        payload.update(extra)
        if head.expect is not Expect.INTERNAL:
            self.state.record("pg.result", payload)
        head.result = None
        head.copy_in = False
        head.done += 1
        head.started = now

    # -- handlers -----------------------------------------------------------------------------

    def _data_row(self, body: bytes | None, length: int) -> bytes | None:
        head = self._head(*ROWS)
        if head.expect is Expect.INTERNAL:
            self.internal(head, 0x44, body)
            return b""
        result = self._result(head)
        result.rows += 1
        if body is None:
            return None
        masks = self.state.masks
        if masks is not None:
            replacement, counts, values = mask_data_row(result.shape, body, masks.marker)
            result.count_masked(counts)
        else:
            replacement, values = None, None
        if len(result.sample) < self.state.record_rows:
            from .messages import data_row

            result.sample.append(
                sample(
                    values if values is not None else data_row(body),
                    result.formats,
                    result.types,
                    self.state.text_types,
                )
            )
        return replacement

    def _row_description(self, body: bytes | None, length: int) -> bytes | None:
        assert body is not None
        columns = self._columns.get(body)
        if columns is None:  # a session sees the same few result shapes again and again
            columns = row_description(body)
            if len(self._columns) >= COLUMNS_CACHE:
                self._columns.clear()
            self._columns[body] = columns
        head = self._head(Expect.QUERY, Expect.INTERNAL, Expect.DESCRIBE)
        if head.expect is Expect.DESCRIBE:
            self._described(head, columns)
            return None
        result = self._result(head)
        self._shape(result, columns, [c.format for c in columns])
        return b"" if head.expect is Expect.INTERNAL else None

    def _described(self, head: Pending, columns: list[Any]) -> None:
        if head.described is not None:
            head.described.columns = columns
        self.book.pop()

    def _no_data(self, body: bytes | None, length: int) -> bytes | None:
        self._described(self._head(Expect.DESCRIBE), [])
        return None

    def _parameter_description(self, body: bytes | None, length: int) -> bytes | None:
        head = self._head(Expect.DESCRIBE)
        if head.which != "S":
            raise RemoteProtocolError("ParameterDescription for a portal")
        return None

    def _command_complete(self, body: bytes | None, length: int) -> bytes | None:
        assert body is not None
        head = self._head(*ROWS)
        tag, _ = command_tag(body)
        if head.expect is Expect.INTERNAL:
            self.internal(head, 0x43, body)
        self._finish(head, tag)
        if head.expect is Expect.EXECUTE:
            self.book.pop()
        return b"" if head.expect is Expect.INTERNAL else None

    def _empty_query(self, body: bytes | None, length: int) -> bytes | None:
        head = self._head(Expect.QUERY, Expect.EXECUTE)
        self._finish(head, "")
        if head.expect is Expect.EXECUTE:
            self.book.pop()
        return None

    def _portal_suspended(self, body: bytes | None, length: int) -> bytes | None:
        head = self._head(Expect.EXECUTE)
        self._finish(head, "", suspended=True)
        self.book.pop()
        return None

    def _simple_complete(self, expect: Expect) -> bytes | None:
        self._head(expect)
        self.book.pop()
        return None

    def _ready(self, body: bytes | None, length: int) -> bytes | None:
        assert body is not None
        if len(body) != 1 or body not in (b"I", b"T", b"E"):
            raise RemoteProtocolError("ReadyForQuery with an unknown transaction status")
        owner = None
        while self.book.fifo:
            item = self.book.fifo.popleft()
            if item.expect in Z_OWNERS:
                owner = item
                break
            self._skipped(item)
        if owner is None:
            raise RemoteProtocolError("ReadyForQuery the client did not ask for")
        self.book.tx_status = body.decode()
        if not self.book.fifo:
            self.state.inflight(None)
        if owner.expect is Expect.INTERNAL:
            self.internal(owner, 0x5A, body)
            self.inspected = self._inspected()
            ready, self.held_ready = self.held_ready, b""
            return ready
        return None

    def _skipped(self, item: Pending) -> None:
        if item.expect is Expect.EXECUTE and item.blocked is None:
            self.state.record("pg.result", {"statement": item.seq, "skipped": True})
        elif item.expect is Expect.PARSE:
            self._restore(item)

    def _restore(self, item: Pending) -> None:
        """A Parse that failed does not create (or replace, if named) its statement."""
        if item.name and item.previous is not None:
            self.book.statements[item.name] = item.previous
        elif item.blocked is None:
            self.book.statements.pop(item.name, None)

    def _error(self, body: bytes | None, length: int) -> bytes | None:
        assert body is not None
        fields = error_fields(body)
        head = self.book.head()
        masks = self.state.masks
        self.book.copy_in_open = False
        counts: Counter[str] = Counter()
        if head is not None and head.blocked is not None:
            shown = {k: fields[k] for k in ("S", "V") if k in fields} | denial_fields(head.blocked)
            replacement: bytes | None = error_response(shown)
        elif masks is not None:
            shown, counts = mask_fields(masks, fields)
            replacement = error_response(shown) if shown != fields else None
        else:
            shown, replacement = fields, None
        if head is None or fields.get("V", fields.get("S")) in ("FATAL", "PANIC"):
            return replacement
        error = {"sqlstate": shown.get("C", ""), "message": shown.get("M", "")}
        if head.expect is Expect.INTERNAL:
            self.internal(head, 0x45, body)
            return b""
        if head.expect in (Expect.QUERY, Expect.EXECUTE, Expect.FUNCTION):
            extra: dict[str, Any] = {"blocked": True} if head.blocked else {}
            if counts:
                extra["error_masked"] = dict(counts)
            self._finish(head, "", error=error, **extra)
        elif head.blocked is None:
            self.state.record("pg.error", {"stage": head.expect.value, "name": head.name, **error})
        if head.expect in (Expect.QUERY, Expect.FUNCTION, Expect.SYNC):
            return replacement  # one ReadyForQuery still follows (protocol-flow §53.2.2)
        self.book.pop()
        dropped = [head, *self.book.discard_until_sync()]  # protocol-flow §53.2.3
        for item in dropped[1:]:
            if item.expect is Expect.EXECUTE and item.blocked is None:
                self.state.record("pg.result", {"statement": item.seq, "skipped": True})
        for item in reversed(dropped):  # the earliest failed Parse decides what a name holds
            if item.expect is Expect.PARSE:
                self._restore(item)
        return replacement

    def _notice(self, body: bytes | None, length: int) -> bytes | None:
        return notices.notice(self.state, body) if body is not None else None

    def _notification(self, body: bytes | None, length: int) -> bytes | None:
        assert body is not None
        return notices.notification(self.state, body)

    def _parameter_status(self, body: bytes | None, length: int) -> bytes | None:
        assert body is not None
        self.parameters.check(*parameter_status(body))
        return None

    def _copy_in(self, body: bytes | None, length: int) -> bytes | None:
        head = self._head(Expect.QUERY, Expect.EXECUTE)
        self._result(head)
        head.copy_in = True
        self.book.copy_in_bytes = self.book.copy_in_messages = 0
        self.book.copy_in_started()
        return None

    def _copy_out(self, body: bytes | None, length: int) -> bytes | None:
        assert body is not None
        head = self._head(Expect.QUERY, Expect.EXECUTE)
        result = self._result(head)
        overall, formats = copy_response(body)
        masks = self.state.masks
        if masks is None:
            return None
        if overall != 0:
            raise Kill("42501", "jitctl: binary COPY output cannot be masked on this target")
        specs = head.copy_specs or []
        spec = specs[head.done] if head.done < len(specs) else None
        relations = self.state.relations
        flags = copyspec.masked_fields(spec, len(formats), masks, relations)
        result.copy_out = CopyOut(
            masks,
            spec.fmt if spec else "text",
            flags,
            copyspec.field_names(spec, len(formats), relations),
            spec.delimiter if spec else None,
            spec.null if spec else None,
            spec.header if spec else False,
        )
        return None

    def _copy_data(self, body: bytes | None, length: int) -> bytes | None:
        head = self._head(Expect.QUERY, Expect.EXECUTE)
        result = self._result(head)
        result.copy_bytes += length - 4
        result.copy_messages += 1
        if body is None:
            return None
        if result.copy_out is None:
            raise Kill("42501", "jitctl: COPY data without a CopyOutResponse on a masked target")
        line, counts = result.copy_out.line(body)
        result.count_masked(counts)
        return None if line == body else message(b"d", line)

    def _copy_done(self, body: bytes | None, length: int) -> bytes | None:
        self._head(Expect.QUERY, Expect.EXECUTE)
        return None

    def _function_result(self, body: bytes | None, length: int) -> bytes | None:
        head = self._head(Expect.FUNCTION)
        masked = self.state.masks is not None
        self._finish(head, "FUNCTION", **({"masked": {"WITHHELD": 1}} if masked else {}))
        return message(b"V", b"\xff\xff\xff\xff") if masked else None  # NULL: fail closed

    def _unexpected(self, body: bytes | None, length: int) -> bytes | None:
        raise RemoteProtocolError("authentication or key message after the session started")


_HANDLERS: dict[int, Callable[[Backend, bytes | None, int], bytes | None]] = {
    ord("D"): Backend._data_row,
    ord("T"): Backend._row_description,
    ord("n"): Backend._no_data,
    ord("t"): Backend._parameter_description,
    ord("C"): Backend._command_complete,
    ord("I"): Backend._empty_query,
    ord("s"): Backend._portal_suspended,
    ord("1"): lambda self, body, length: self._simple_complete(Expect.PARSE),
    ord("2"): lambda self, body, length: self._simple_complete(Expect.BIND),
    ord("3"): lambda self, body, length: self._simple_complete(Expect.CLOSE),
    ord("Z"): Backend._ready,
    ord("E"): Backend._error,
    ord("N"): Backend._notice,
    ord("A"): Backend._notification,
    ord("S"): Backend._parameter_status,
    ord("G"): Backend._copy_in,
    ord("H"): Backend._copy_out,
    ord("d"): Backend._copy_data,
    ord("c"): Backend._copy_done,
    ord("V"): Backend._function_result,
    ord("K"): Backend._unexpected,
    ord("R"): Backend._unexpected,
    ord("v"): Backend._unexpected,
}

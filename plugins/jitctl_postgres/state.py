"""The state both directions of a session share, and the record payload helpers.

Rules:
- Records go to `out` in the order the core produces them; the core appends its `Forward`
  after a chunk's records, so a durable record (write-ahead) is on disk before the bytes of the
  same chunk leave (jitctl.plugin: a durable record holds back later commands of its batch).
- Payloads are plain JSON: lists, not sets; rule objects reduced to their names; statement
  text over `TEXT_CAP` is cut in the payload and kept whole in the record's `data`.
- `clock` is `time.monotonic` in production: the only "I/O" the core does is reading it for
  durations, and tests inject their own.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from jitctl.plugin import Command, Record

from .families import NONE, Families
from .statements import Book

TEXT_CAP = 64 * 1024
PARAM_CAP = 1024


class Phase(enum.Enum):
    """Where a session is (core.py and opening.py say what each phase does)."""

    STARTUP = "startup"
    AUTH = "auth"
    CONNECTING = "connecting"
    READY = "ready"
    CANCEL = "cancel"
    CLOSED = "closed"


class Kill(Exception):
    """End the session now: the client gets a FATAL with this SQLSTATE and text, then Close."""

    def __init__(self, sqlstate: str, message: str) -> None:
        super().__init__(message)
        self.sqlstate, self.message = sqlstate, message


@dataclass
class Services:
    """What the core calls out to; pure objects (see __init__.py for the real ones)."""

    classify: Callable[[str], Any]
    classify_function_call: Callable[[int], Any]
    policy: Any  # .decide(classification, groups, families) -> Decision; .needs_families
    masks: Any = None  # jitctl.masking MaskPolicy with .active, or None


@dataclass
class SessionState:
    services: Services
    groups: tuple[str, ...] = ()
    target: str = ""
    record_rows: int = 0
    reads_wait: bool = True  # False: `postgres.write_ahead = "changes"` (plain reads do not wait)
    clock: Callable[[], float] = time.monotonic
    book: Book = field(default_factory=Book)
    out: list[Command] = field(default_factory=list)
    tables: dict[int, str] = field(default_factory=dict)  # table OID -> "schema.table"
    relations: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict)
    attnames: dict[int, dict[int, str]] = field(default_factory=dict)  # table OID -> attnum -> name
    text_types: frozenset[int] = frozenset({25, 1043, 1042, 19, 114})
    cancel_entry: dict[str, Any] | None = None
    # Inheritance links (families.py): catalog.py sets them, frontend.py adds the session's own.
    families: Families = NONE
    family_rows: list[tuple[str, str, str, str]] = field(default_factory=list)
    catalog_parts: tuple[str, ...] = ()  # the statements of jitctl's catalog query (catalog.py)

    @property
    def masks(self) -> Any:
        masks = self.services.masks
        return masks if masks is not None and masks.active else None

    def record(
        self, kind: str, payload: dict[str, Any], *, durable: bool = False, data: bytes = b""
    ) -> None:
        self.out.append(Record(kind, payload, data, durable))

    def inflight(self, seq: int | None) -> None:
        """Tell the cancel registry which statement a cancel would hit (notes §3)."""
        if self.cancel_entry is not None:
            self.cancel_entry["statement"] = seq


def rule_name(decision: Any) -> str | None:
    rule = getattr(decision, "rule", None)
    if rule is None or isinstance(rule, str):
        return rule
    return str(getattr(rule, "name", "") or rule)


def _names(values: Any) -> list[str]:
    try:
        return sorted(str(v) for v in values or ())
    except TypeError:
        return []


_FIELDS: dict[int, tuple[Any, dict[str, Any]]] = {}


def classification_fields(classification: Any) -> dict[str, Any]:
    """The payload fields describing a classification (cached: classifications are cached by
    text upstream, so repeated statements reuse one object; a copy made from a template
    (templates.py) differs from it only in its text, which is not among these fields)."""
    classification = getattr(classification, "template", None) or classification
    cached = _FIELDS.get(id(classification))
    if cached is not None and cached[0] is classification:
        return cached[1]
    fields = _classification_fields(classification)
    if len(_FIELDS) > 4096:
        _FIELDS.clear()
    _FIELDS[id(classification)] = (classification, fields)
    return fields


def _classification_fields(classification: Any) -> dict[str, Any]:
    """One pass over the statements (the Classification's own union properties are cached
    properties, slow to touch once per new object: most texts with inlined literals are new)."""
    statements: Sequence[Any] = getattr(classification, "statements", ()) or ()
    if len(statements) == 1:
        kind = str(getattr(statements[0], "kind", ""))
    else:
        kind = "multi" if statements else "empty"
    kinds: set[str] = set()
    tables: set[str] = set()
    functions: set[str] = set()
    flags: set[str] = set()
    for info in statements:
        kinds.update(getattr(info, "kinds", ()))
        read = getattr(info, "tables_read", None)
        tables.update(getattr(info, "tables", ()) if read is None else read)
        tables.update(getattr(info, "tables_written", ()))
        functions.update(getattr(info, "functions", ()))
        flags.update(getattr(info, "flags", ()))
    fields = {
        "kind": kind,
        "kinds": _names(kinds),
        "tables": _names(tables),
        "functions": _names(functions),
        "flags": _names(flags),
        "statements": len(statements),
    }
    error = getattr(classification, "error", None)
    if error:
        fields["parse_error"] = str(error)
    return fields


def text_fields(text: str) -> tuple[dict[str, Any], bytes]:
    """The statement text for a payload, and the whole text as `data` when it is cut."""
    if len(text) <= TEXT_CAP:
        return {"text": text}, b""
    return {"text": text[:TEXT_CAP], "text_truncated": True}, text.encode()


def param_values(params: Sequence[bytes | None], formats: Sequence[int]) -> list[Any]:
    """Bind parameters for the trail: text as text, binary as `\\x` hex, each cut at PARAM_CAP."""
    out: list[Any] = []
    for i, value in enumerate(params):
        if value is None:
            out.append(None)
            continue
        fmt = formats[0] if len(formats) == 1 else (formats[i] if i < len(formats) else 0)
        raw = value[:PARAM_CAP]
        text = "\\x" + raw.hex() if fmt == 1 else raw.decode("utf-8", "replace")
        out.append(text + ("…" if len(value) > PARAM_CAP else ""))
    return out


def result_fields(
    result: Any, tag: str, now: float, copy_in: tuple[int, int] | None
) -> dict[str, Any]:
    """A `pg.result` payload (values already masked: the samples come from forwarded rows)."""
    payload: dict[str, Any] = {
        "statement": result.seq,
        "index": result.index,
        "tag": tag,
        "rows": result.rows,
        "columns": result.columns,
        "duration_ms": round((now - result.started) * 1000, 3),
    }
    if result.masked:
        payload["masked"] = dict(result.masked)
    if result.sample:
        payload["rows_sample"] = result.sample
    if copy_in is not None:
        payload["copy"] = {"direction": "in", "bytes": copy_in[0], "messages": copy_in[1]}
    elif result.copy_messages:
        payload["copy"] = {
            "direction": "out",
            "bytes": result.copy_bytes,
            "messages": result.copy_messages,
        }
    return payload


def decision_fields(decision: Any) -> dict[str, Any]:
    return {
        "decision": str(getattr(decision, "action", "allow")),
        "rule": rule_name(decision),
        "reason": str(getattr(decision, "reason", "") or ""),
    }

"""What a COPY statement will send: its table, columns and format, for masking COPY OUT.

Rules (sql-copy, "File Formats"; notes §7):
- Only consulted on a masked target, and only for text that contains "copy": pglast parses it
  (one entry per statement of a simple Query), so this module loads pglast lazily.
- `COPY ... TO STDOUT` on a masked target is refused when its bytes could not be masked
  faithfully: FORMAT binary (no text to scan), ENCODING (not UTF-8), a QUOTE or ESCAPE other
  than `"` (the masker's csv reader supports only the default). `COPY ... TO PROGRAM`/file is
  the classifier's business (denied always).
- The column list comes from the statement's own column list, else from the catalog read at
  session start; an unknown table gives `columns = None` (the caller then masks every field:
  more, never less). For `COPY (query)` the output names are not derived (aliases and
  subqueries would hide them); instead every column name the query references is collected,
  and if any is masked, or the query selects `*`, every field is masked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class CopySpec:
    to_stdout: bool
    schema: str | None
    table: str | None
    columns: tuple[str, ...] | None  # the statement's column list, if it has one
    fmt: str  # "text" | "csv" | "binary"
    delimiter: bytes | None
    null: bytes | None
    header: bool
    refusal: str  # why this COPY cannot be masked ("" if it can)
    query_refs: frozenset[str] | None = None  # COPY (query): every column name it references
    query_star: bool = False  # COPY (query): it selects `*` somewhere


def _value(arg: Any) -> Any:
    if not isinstance(arg, dict):
        return True
    for key, inner in arg.items():
        if key == "String":
            return inner.get("sval", "")
        if key == "Boolean":
            return bool(inner.get("boolval", False))
        if key == "Integer":
            return inner.get("ival", 0)
    return True


def _refs(node: Any, names: set[str]) -> bool:
    """Collect every ColumnRef name under `node`; True if a `*` appears anywhere."""
    star = False
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            ref = item.get("ColumnRef")
            if isinstance(ref, dict):
                for part in ref.get("fields", []):
                    if "A_Star" in part:
                        star = True
                    elif "String" in part:
                        names.add(str(part["String"].get("sval", "")).lower())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return star


def _spec(node: dict[str, Any]) -> CopySpec:
    options = {}
    for item in node.get("options") or []:
        elem = item.get("DefElem", {})
        options[str(elem.get("defname", "")).lower()] = _value(elem.get("arg"))
    fmt = str(options.get("format", "text")).lower()
    relation = node.get("relation") or {}
    attlist = node.get("attlist")
    columns = tuple(a.get("String", {}).get("sval", "") for a in attlist) if attlist else None
    refusal = ""
    if fmt == "binary":
        refusal = "binary COPY output cannot be masked"
    elif "encoding" in options:
        refusal = "COPY with ENCODING cannot be masked (the session is UTF8)"
    elif options.get("quote", '"') != '"' or options.get("escape", '"') != '"':
        refusal = "COPY with a QUOTE or ESCAPE other than '\"' cannot be masked"
    elif fmt not in ("text", "csv"):
        refusal = f"COPY format {fmt!r} cannot be masked"
    delimiter = options.get("delimiter")
    null = options.get("null")
    header = options.get("header", False)
    refs: set[str] = set()
    star = _refs(node["query"], refs) if node.get("query") else False
    return CopySpec(
        to_stdout=not node.get("is_from")
        and not node.get("filename")
        and not node.get("is_program"),
        schema=relation.get("schemaname"),
        table=relation.get("relname"),
        columns=columns,
        fmt=fmt,
        delimiter=delimiter.encode() if isinstance(delimiter, str) else None,
        null=null.encode() if isinstance(null, str) else None,
        header=header is True
        or (isinstance(header, str) and header.lower() in ("true", "on", "1")),
        refusal=refusal,
        query_refs=frozenset(refs) if node.get("query") else None,
        query_star=star,
    )


def copy_specs(text: str) -> list[CopySpec | None]:
    """Per statement of `text`: its CopySpec if it is a COPY, else None. [] if unparseable."""
    from pglast import parser

    try:
        tree = json.loads(parser.parse_sql_json(text))
    except Exception:  # the classifier denies unparseable text; should it run, no spec means
        return []  # every COPY field is masked
    out: list[CopySpec | None] = []
    try:
        for raw in tree.get("stmts", []):
            node = raw.get("stmt", {}).get("CopyStmt")
            out.append(_spec(node) if node is not None else None)
    except (AttributeError, TypeError, KeyError, ValueError):  # a tree shape not foreseen:
        return []  # no spec: every field masked; a binary COPY OUT ends the session at start
    return out


def refusal(text: str) -> str:
    """Why a statement in `text` is a COPY TO STDOUT that masking cannot handle ("" if none)."""
    if "copy" not in text.lower():
        return ""
    for spec in copy_specs(text):
        if spec is not None and spec.to_stdout and spec.refusal:
            return spec.refusal
    return ""


def masked_fields(
    spec: CopySpec | None,
    count: int,
    masks: Any,
    relations: Mapping[str, Sequence[tuple[str, Sequence[str]]]],
) -> list[bool]:
    """Which of a COPY OUT row's `count` fields column masks hide (see the module rules)."""
    if not getattr(masks, "rules", True):
        return [False] * count  # detectors only
    if spec is not None and spec.query_refs is not None:
        refs = [(None, name) for name in sorted(spec.query_refs)]
        return [spec.query_star or any(masks.columns_masked(refs))] * count
    table, names = _table_columns(spec, relations)
    if names is None or len(names) != count:
        return [True] * count  # unknown columns: every field (more, never less)
    return list(masks.columns_masked([(table, name) for name in names]))


def field_names(
    spec: CopySpec | None,
    count: int,
    relations: Mapping[str, Sequence[tuple[str, Sequence[str]]]],
) -> tuple[str, ...]:
    """The names of a COPY OUT row's `count` fields, for the record's counts (`COLUMN:email`);
    empty when they are not known (a `COPY (query)`, an unknown table): counts then name
    fields by position (`COLUMN:#3`)."""
    if spec is not None and spec.query_refs is not None:
        return ()
    _, names = _table_columns(spec, relations)
    return tuple(names) if names is not None and len(names) == count else ()


def _table_columns(
    spec: CopySpec | None, relations: Mapping[str, Sequence[tuple[str, Sequence[str]]]]
) -> tuple[str | None, list[str] | None]:
    """A `COPY table [(columns)]`'s table (when the catalog names one) and field names."""
    names: list[str] | None = None
    table: str | None = None
    if spec is not None and spec.table:
        candidates = list(relations.get(spec.table.lower(), []))
        if spec.schema:
            candidates = [c for c in candidates if c[0].split(".")[0] == spec.schema]
        if len(candidates) == 1:
            table, names = candidates[0][0], list(candidates[0][1])
        if spec.columns is not None:
            names = list(spec.columns)
    return table, names

"""Classify SQL text with Postgres's own parser (pglast / libpg_query), for policy.

`classify(sql)` returns what every statement in the text does: its kind and every kind hidden
inside it, the tables it reads and writes, the functions it calls, pgaudit-like classes and risk
flags. Pure: no I/O, no sessions; the policy (policy.py) turns this into allow/deny/approve.
This module parses, splits and caches; sqlwalk.py walks one statement's tree (sqlstatements.py
records what each statement node does, sqlcalls.py the functions it calls, sqlbodies.py reads
the code it carries as text, sqlsettings.py the settings it changes), plpgsql.py reads
PL/pgSQL bodies, sqlkinds.py holds the result types and the vocabulary (kinds, classes, flags).

Rules (notes/postgres-wire.md §9, §10):
- Parse, never pattern-match: comments (nested too), case, whitespace, `$tag$` quoting, `E''`
  and `U&` escapes are resolved by the same grammar the server uses. `parse_sql_json` and a walk
  over plain dicts (≈16x cheaper than building pglast AST objects).
- Walk everything, recursively: writable CTEs, EXPLAIN's query, PREPARE's query, CREATE TABLE AS,
  rule actions, MERGE actions, SQL-standard function bodies. So `kinds` holds every statement
  kind found anywhere (`WITH d AS (DELETE …) SELECT` has kinds {"select", "delete"}).
- PL/pgSQL bodies (DO blocks and `CREATE FUNCTION … LANGUAGE plpgsql`) are parsed with
  `parse_plpgsql_json`; their static SQL is classified recursively and merged into the
  statement. Dynamic `EXECUTE` is undecidable: kind "unknown" + flag "dynamic_sql". So are DO
  blocks and function bodies in other languages (except `sql`, parsed like any SQL, and C/internal
  which name a symbol). A body is classified at CREATE time because a later `SELECT f()` is opaque.
- Fail closed: text that does not parse, contains NUL, cannot be encoded, nests bodies deeper than
  `MAX_DEPTH`, or trips any unexpected error is one statement of kind "unknown" with flag
  "unparseable" and `error` set. `classify` never raises.
- Lexing: pglast always lexes as if `standard_conforming_strings=on`; it has no switch for it.
  With the setting off the server reads `'a\\''` differently and can run a statement we never saw
  (§9). The parse is only trustworthy because the gateway refuses every statement flagged
  "lexing_change" (SET/RESET/set_config/ALTER … SET of standard_conforming_strings,
  client_encoding, escape_string_warning, backslash_quote, and writes to pg_settings) and kills
  the session if the server ever reports standard_conforming_strings=off in a ParameterStatus.
  `SET client_encoding` to UTF8 itself is not flagged (libpq's PQsetClientEncoding sends it).
- Results are cached by exact text (bounded LRU); texts over `MAX_CACHED_CHARS` are not cached,
  so the cache stays bounded in bytes as well as entries.
- A text the exact cache has not seen may still reuse the classification of a statement whose
  parse tree differs from its own only in constants (templates.py, which says why that is
  exactly as safe), if that statement's walk proved it never read a constant: one statement,
  plain DML, no `set_config`, no bodies. Its result is then a copy with its own text (and
  `template` set).
"""

from __future__ import annotations

import functools
import json

from . import templates
from .sqlkinds import (
    DANGEROUS_FUNCTIONS,
    DANGEROUS_PATTERN,
    LEXING_SETTINGS,
    STATEMENT_KINDS,
    Classification,
    StatementInfo,
)
from .sqlwalk import StatementWalker

__all__ = [
    "CACHE_SIZE",
    "DANGEROUS_FUNCTIONS",
    "DANGEROUS_PATTERN",
    "LEXING_SETTINGS",
    "MAX_CACHED_CHARS",
    "MAX_DEPTH",
    "STATEMENT_KINDS",
    "Classification",
    "StatementInfo",
    "classify",
    "classify_function_call",
    "clear_caches",
]

MAX_DEPTH = 8  # nested bodies (DO inside DO, function bodies) classified before giving up
CACHE_SIZE = 4096
MAX_CACHED_CHARS = 8192


def classify(sql: str) -> Classification:
    """Classify every statement of `sql`; never raises (see the module docstring)."""
    if len(sql) > MAX_CACHED_CHARS:
        return _classify(sql, 0)
    return _cached(sql)


def classify_function_call(oid: int) -> Classification:
    """The legacy FunctionCall message (protocol-flow §53.2.9): a function by OID, no SQL."""
    info = StatementInfo(
        text=f"FunctionCall(oid={oid})",
        kind="function_call",
        kinds=frozenset({"function_call"}),
        functions=frozenset({f"oid:{oid}"}),
        classes=frozenset({"FUNCTION"}),
        flags=frozenset({"fastpath_function_call"}),
    )
    return Classification((info,))


def _unparseable(text: str, error: str) -> Classification:
    info = StatementInfo(text, "unknown", frozenset({"unknown"}), flags=frozenset({"unparseable"}))
    return Classification((info,), error)


def _classify(sql: str, depth: int) -> Classification:
    try:
        return _parse(sql, depth)
    except Exception as exc:  # encoding errors, recursion limits, our own bugs: fail closed
        return _unparseable(sql, f"{type(exc).__name__}: {exc}")


def _parse(sql: str, depth: int) -> Classification:
    if "\x00" in sql:
        return _unparseable(sql, "text contains a NUL character")
    if depth > MAX_DEPTH:
        return _unparseable(sql, f"bodies nested more than {MAX_DEPTH} deep")
    from pglast import parser  # heavy import (≈40 ms), only where SQL is classified

    try:
        tree_json = parser.parse_sql_json(sql)
    except parser.ParseError as exc:
        message, location = (*exc.args, None)[:2]
        where = f" at character {location + 1}" if isinstance(location, int) else ""
        return _unparseable(sql, f"{message}{where}")
    encoded = None if sql.isascii() else sql.encode()
    shape = None
    if depth == 0 and len(sql) <= MAX_CACHED_CHARS:
        shape = templates.shape(tree_json)
        if shape is not None:
            found = templates.find(shape, _cut(sql, encoded, shape.start, shape.length))
            if found is not None:
                return found
    tree = json.loads(tree_json)
    infos, error, literal_free = [], None, True
    for raw in tree.get("stmts", ()):
        text = _cut(sql, encoded, raw.get("stmt_location", 0), raw.get("stmt_len", 0))
        walker = StatementWalker(text, depth, _classify)
        info, stmt_error = walker.run(raw["stmt"])
        infos.append(info)
        error = error or stmt_error
        literal_free = literal_free and walker.literal_free
    result = Classification(tuple(infos), error)
    if shape is not None and len(infos) == 1 and error is None and literal_free:
        templates.keep(shape, result)
    return result


def _cut(sql: str, encoded: bytes | None, start: int, length: int) -> str:
    """One statement's text: libpg_query's offsets count bytes (`encoded`: the UTF-8 text when
    it is not ASCII); a length of 0 runs to the end."""
    end = start + length if length else None
    return (sql[start:end] if encoded is None else encoded[start:end].decode()).strip()


@functools.lru_cache(maxsize=CACHE_SIZE)
def _cached(sql: str) -> Classification:
    return _classify(sql, 0)


def clear_caches() -> None:
    """Forget every cached result (benchmarks measure cold caches with it)."""
    _cached.cache_clear()
    templates.clear()

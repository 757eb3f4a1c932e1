"""Reuse a classification for a text whose parse tree differs from a classified one's only in
its constants: literal-insensitive caching, restricted to what the walk proves it may share.

Why: clients that inline literals (`pgbench -M simple`, ORMs without bind parameters) send a
new text for every statement, so the exact-text cache misses and each text costs a parse, a
`json.loads` of its tree and a walk (≈20 µs and ≈50 short-lived objects). A text that hits a
template costs its parse (`parse_sql_json`, ≈3 µs) and a few regular-expression passes over
the tree's JSON text (≈3 µs), and gets the template's classification with its own statement
text.

Why a hit is exactly what classifying the text from scratch would give (each point is pinned
by tests/postgres/test_classify_templates.py):
- The key is the parse tree, never the text: `parse_sql_json`'s JSON with only (a) every
  `A_Const` node (a constant: its value and location) and (b) the value of every character
  offset (`location`, `*_location`, `*list_start`, `*list_end`, the statement's own
  `stmt_location`/`stmt_len`) replaced by a control character. Everything else stays in the
  key byte for byte: node types, keywords, identifiers, operators, and strings that are not
  `A_Const` constants (a DO or function body, a COPY file name, SET's setting and value, a
  LANGUAGE name). The tree comes from the server's own grammar (libpg_query) with
  standard_conforming_strings on, as for every classification (classify.py, "Lexing"): this
  adds no lexing assumption of its own. Two texts share a key only if the parser built the same
  tree for both up to (a) and (b) — however their literals, comments, whitespace or escapes
  were written.
- The patterns cannot misfire: JSON strings never hold an unescaped `"` and never a raw control
  character, so `{"A_Const":{` and `"location":` only match real objects and keys (never the
  inside of a string), each `A_Const` pattern matches one whole constant or nothing (an
  unexpected shape stays in the key and simply never matches another text), and the
  placeholders cannot be confused with anything else in the key.
- A classification becomes a template only if its walk is literal-free
  (`StatementWalker.literal_free`): the walker reads constants only through `constant()` and
  never reads offsets, and a walk that called `constant()`, read the statement text, or ran a
  handler other than the plain DML / transaction / function-call ones is never shared. So
  `set_config(…)`, `SET`/`RESET`, DO and function bodies, dblink/query_to_xml arguments, COPY,
  EXPLAIN options and every DDL statement are classified from scratch, every time.
- Only one top-level statement per text, parsed without error. Its text (the one part of a
  classification taken from the text rather than the tree) is cut from the new text at the new
  text's own offsets, by the same function classify.py uses.
- Nothing is reused for a text that does not parse: the parse comes first (`float(5)` may be a
  template; `float(0)` is still unparseable).
"""

from __future__ import annotations

import re
from typing import NamedTuple

from .sqlkinds import Classification, StatementInfo

CACHE_SIZE = 1024  # distinct statement shapes; cleared when full
MAX_KEY_CHARS = 16 * 1024  # a tree's JSON is ≈10x its text: bounds the cache's memory

_STRING = r'"(?:[^"\\]|\\.)*"'
_VALUE_KINDS = "ival|fval|sval|bsval|boolval"
_LOCATION = re.compile(r'"location":-?\d+')
_OTHER_OFFSETS = re.compile(r'"((?:[a-z]+_)?list_(?:start|end)|[a-z]+_location)":-?\d+')
# One constant, after _LOCATION: {"A_Const":{"ival":{"ival":5},"location":\x01}} and its kin
# (a zero or empty value is written as {}; NULL as "isnull":true).
_A_CONST = re.compile(
    r'\{"A_Const":\{(?:"(?:' + _VALUE_KINDS + r')":\{(?:"(?:' + _VALUE_KINDS + r')":'
    r"(?:-?\d+|true|" + _STRING + r'))?\}|"isnull":true)(?:,"location":\x01)?\}\}'
)
# The single RawStmt's offsets, at the very end of the JSON text.
_TAIL = re.compile(r'(?:,"stmt_location":(\d+))?(?:,"stmt_len":(\d+))?\}\]\}')

_templates: dict[str, Classification] = {}


class Shape(NamedTuple):
    """One statement's tree with its constants and offsets blanked, and where it sits."""

    key: str
    start: int  # stmt_location
    length: int  # stmt_len (0: to the end of the text)


def shape(tree_json: str) -> Shape | None:
    """The shape of a one-statement text's `parse_sql_json` output (None: not one statement,
    or not in the form this module knows)."""
    if len(tree_json) > MAX_KEY_CHARS or not tree_json.endswith("}]}"):
        return None
    if tree_json.count('{"stmt":') != 1:
        return None
    cut = tree_json.rfind('},"stmt_', len(tree_json) - 64)
    if cut < 0:
        end, start, length = len(tree_json) - 3, 0, 0
    else:
        tail = _TAIL.fullmatch(tree_json, cut + 1)
        if tail is None:
            return None
        end, start, length = cut + 1, int(tail.group(1) or 0), int(tail.group(2) or 0)
    key = _LOCATION.sub('"location":\x01', tree_json[:end])
    if "list_" in key or '_location"' in key:
        key = _OTHER_OFFSETS.sub('"\\1":\x01', key)
    return Shape(_A_CONST.sub("\x00", key), start, length)


def find(found: Shape, text: str) -> Classification | None:
    """The template's classification for a text of this shape, with the text's own statement
    text (`text`: already cut, as classify.py cuts it); None when no template has the shape."""
    template = _templates.get(found.key)
    if template is None:
        return None
    (info,) = template.statements
    retexted = StatementInfo(
        text,
        info.kind,
        info.kinds,
        info.tables_read,
        info.tables_written,
        info.functions,
        info.classes,
        info.flags,
        info.tables_only,
    )
    return Classification((retexted,), None, template=template)


def keep(found: Shape, classification: Classification) -> None:
    """Remember a literal-free, one-statement, error-free classification for its shape."""
    if len(_templates) >= CACHE_SIZE:
        _templates.clear()
    _templates[found.key] = classification


def clear() -> None:
    _templates.clear()

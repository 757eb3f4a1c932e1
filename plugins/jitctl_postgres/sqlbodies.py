"""SQL hidden inside a statement's text: DO blocks, function bodies, queries passed as strings.

The walker (sqlwalk.py) calls these handlers for the nodes that carry code as text; each reads
that text and merges what it does into the statement being walked.

Rules (notes/postgres-wire.md §10):
- PL/pgSQL (DO bodies, `CREATE FUNCTION … LANGUAGE plpgsql`) goes through plpgsql.py; every
  embedded SQL text is classified through the walker's `nested` callback at `depth + 1` (which
  bounds the depth) and merged (`absorb`). Dynamic EXECUTE makes the statement opaque; an
  EXECUTE of a string literal also merges what the literal does, so reasons can name it.
- `CREATE FUNCTION` is classified at CREATE time: a later `SELECT f()` is opaque. A `sql` body is
  classified like any SQL; C and internal functions name a symbol and run nothing we could
  read; any other language is opaque. So is a PL/pgSQL body libpg_query's compiler rejects
  though the server would not (e.g. `VARIADIC r int[]`): opaque rather than unparseable, since
  it does not run yet. A DO body that does not parse fails the statement (it runs now).
- Query functions (`dblink_exec(conn, 'DROP …')`, `query_to_xml('SELECT …', …)`): every string
  literal that parses as SQL is classified (connection strings do not parse); none does → the
  call is opaque.
- Opaque code may do anything: kind "unknown" and flag "dynamic_sql".
- Every handler here reads constants or the statement's text, so none is literal-free
  (sqlwalk.py's `LITERAL_FREE`): results of statements holding code are never shared.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from . import plpgsql
from .sqlkinds import Classification

if TYPE_CHECKING:
    from .sqlwalk import StatementWalker


def do(walker: StatementWalker, body: dict[str, Any]) -> None:
    walker.add_kind("do")
    options = _def_elems(body.get("args", ()))
    language = str(walker.read_constant(options.get("language")) or "plpgsql").lower()
    source = walker.read_constant(options.get("as"))
    if language != "plpgsql" or source is None:
        opaque(walker)
    else:
        _plpgsql(walker, plpgsql.do_block(source))


def create_function(walker: StatementWalker, body: dict[str, Any]) -> None:
    walker.add_kind("create")
    if "sql_body" in body:  # BEGIN ATOMIC …: already parsed, the walk visits it
        return
    walker.literal_free = False  # the body is read from the statement's text
    options = _def_elems(body.get("options", ()))
    language = str(walker.read_constant(options.get("language")) or "").lower()
    items = options.get("as", {}).get("List", {}).get("items", [])
    if language == "plpgsql":
        _plpgsql(walker, walker.text, unreadable=lambda: opaque(walker))
    elif language == "sql" and items:
        text = str(walker.read_constant(items[0]) or "")
        result = walker.nested(text, walker.depth + 1)
        if result.error:
            opaque(walker)
        else:
            absorb(walker, result)
    elif language not in ("c", "internal"):
        opaque(walker)


def query_arguments(walker: StatementWalker, args: list[dict[str, Any]]) -> None:
    """Classify every string literal argument that parses as SQL; none → the call is opaque."""
    readable = False
    for arg in args:
        text = walker.read_constant(arg)
        if text:
            result = walker.nested(text, walker.depth + 1)
            if result.error is None and result.statements:
                absorb(walker, result)
                readable = True
    if not readable:
        opaque(walker)


def opaque(walker: StatementWalker) -> None:
    """Code we cannot read (dynamic SQL, other languages): it may do anything."""
    walker.kinds.add("unknown")
    walker.flags.add("dynamic_sql")


def absorb(walker: StatementWalker, result: Classification) -> None:
    """Add what a body's SQL does to the statement being walked."""
    for info in result.statements:
        walker.kinds |= info.kinds
        walker.absorb_tables(info)
        walker.functions |= info.functions
        walker.classes |= info.classes
        walker.flags |= info.flags
    if result.error:
        walker.error = walker.error or result.error


def _plpgsql(
    walker: StatementWalker, create_function: str, unreadable: Callable[[], None] | None = None
) -> None:
    try:
        body = plpgsql.read(create_function)
    except plpgsql.BodyError as exc:
        if unreadable is not None:
            unreadable()
        else:
            _fail(walker, f"PL/pgSQL body: {exc}")
        return
    for sql in body.sql:
        absorb(walker, walker.nested(sql, walker.depth + 1))
    for kind in body.kinds:
        walker.add_kind(kind)
    if body.dynamic:
        opaque(walker)


def _fail(walker: StatementWalker, error: str) -> None:
    walker.kinds.add("unknown")
    walker.flags.add("unparseable")
    walker.error = walker.error or error


def _def_elems(items: Iterable[dict[str, Any]]) -> dict[str, Any]:
    elems = (item.get("DefElem", {}) for item in items)
    return {e.get("defname"): e.get("arg") for e in elems}

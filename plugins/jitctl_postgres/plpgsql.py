"""Read a PL/pgSQL body: the SQL texts it runs, and whether it also runs SQL the text hides.

Rules (notes/postgres-wire.md §10):
- `parse_plpgsql_json` reads a whole `CREATE FUNCTION`; a DO body is wrapped in a throwaway
  `CREATE FUNCTION jitctl_do() RETURNS void LANGUAGE plpgsql` (a DO block returns nothing),
  quoted with a dollar tag that cannot occur in the body, so the body is read unchanged.
- Every `PLpgSQL_expr` is SQL: statements (parseMode 0) as they are, expressions as
  `SELECT expr`, assignments (`target := value`) as `SELECT target` and `SELECT value`, so a
  function call hidden in an array subscript is seen too. Type names (mode 1) are skipped.
- EXECUTE, FOR … IN EXECUTE, OPEN … FOR EXECUTE and RETURN QUERY EXECUTE are dynamic. When the
  query is one string literal its text is returned as well: it is what will run.
- COMMIT and ROLLBACK inside a procedure or DO are reported as kinds.
- A body that does not parse raises `BodyError`; the caller fails closed.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .sqlkinds import constant

_DYNAMIC = ("PLpgSQL_stmt_dynexecute", "PLpgSQL_stmt_dynfors")
_MAYBE_DYNAMIC = ("PLpgSQL_stmt_open", "PLpgSQL_stmt_return_query")  # with `dynquery`
_TRANSACTION = {"PLpgSQL_stmt_commit": "commit", "PLpgSQL_stmt_rollback": "rollback"}


class BodyError(Exception):
    """The body does not parse (the message is libpg_query's)."""


@dataclass
class Body:
    sql: list[str] = field(default_factory=list)  # texts to classify, in no particular order
    dynamic: bool = False  # runs SQL built at run time
    kinds: set[str] = field(default_factory=set)  # transaction control


def do_block(body: str) -> str:
    """The `CREATE FUNCTION` that `parse_plpgsql_json` needs to read a DO block's body."""
    tag = "$jitctl$"
    while (body + tag).find(tag) != len(body):  # the tag must only close the body
        tag = tag[:-1] + "_$"
    return f"CREATE FUNCTION jitctl_do() RETURNS void LANGUAGE plpgsql AS {tag}{body}{tag}"


def read(create_function: str) -> Body:
    """What the plpgsql function defined by `create_function` runs."""
    from pglast import parser

    try:
        tree = json.loads(parser.parse_plpgsql_json(create_function))
    except parser.ParseError as exc:
        raise BodyError(exc.args[0] if exc.args else str(exc)) from None
    body = Body()
    stack: list[Any] = [tree]
    while stack:
        node = stack.pop()
        if type(node) is list:
            stack.extend(item for item in node if type(item) in (dict, list))
            continue
        for key, value in node.items():
            if key == "PLpgSQL_expr":
                body.sql.extend(_expression_sql(value))
            elif key in _DYNAMIC or (key in _MAYBE_DYNAMIC and "dynquery" in value):
                body.dynamic = True
                expr = value.get("query") or value.get("dynquery") or {}
                body.sql.extend(_literal(expr.get("PLpgSQL_expr", {}).get("query", "")))
            elif key in _TRANSACTION:
                body.kinds.add(_TRANSACTION[key])
            if type(value) in (dict, list):
                stack.append(value)
    return body


def _expression_sql(expr: dict[str, Any]) -> list[str]:
    query, mode = expr.get("query", ""), expr.get("parseMode", 0)
    if mode == 0:  # RAW_PARSE_DEFAULT: a whole statement
        return [query]
    if mode in (3, 4, 5):  # RAW_PARSE_PLPGSQL_ASSIGNn: "target := value" (or "=")
        target, op, value = query.partition(":=")
        if not op:
            target, op, value = query.partition("=")
        return [f"SELECT {target}", f"SELECT {value}"]
    if mode == 1:  # RAW_PARSE_TYPE_NAME
        return []
    return [f"SELECT {query}"]  # RAW_PARSE_PLPGSQL_EXPR, and anything newer: an expression


def _literal(expr: str) -> list[str]:
    """The text of EXECUTE's query when it is one string literal (else nothing)."""
    from pglast import parser

    try:
        stmts = json.loads(parser.parse_sql_json(f"SELECT {expr}"))["stmts"]
        targets = stmts[0]["stmt"]["SelectStmt"]["targetList"]
    except (parser.ParseError, KeyError, IndexError):
        return []
    if len(stmts) != 1 or len(targets) != 1:
        return []
    text = constant(targets[0]["ResTarget"].get("val"))
    return [] if text is None else [text]

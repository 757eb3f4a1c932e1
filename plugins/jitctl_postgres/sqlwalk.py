"""Walk one statement's JSON parse tree (pglast `parse_sql_json`) and collect what it does.

This module holds the walk (scopes, table reads, the dispatch of nodes and fields to their
handlers) and what the handlers record into (`StatementWalker`); the handlers live by concern
in the modules named below.

Rules (notes/postgres-wire.md §9, §10):
- Plain dicts, walked iteratively (deep expressions cannot exhaust Python's stack). Every dict is
  visited; a node's handler runs before its children are, so a handler can claim the RangeVar
  it writes before the walk reaches it (every other RangeVar is a table read).
- Some typed fields are stored unwrapped (`relation`, `setstmt`, `funccall`, `intoClause`):
  handlers read them by field name.
- `ONLY t` (a RangeVar whose `inh` is false; libpg_query's JSON omits a false value) reaches
  t's own rows, not its descendants'. Read where every RangeVar is read (`FROM ONLY t`, `LOCK
  ONLY t`), and where a handler asks for it (`write(…, only=True)`: UPDATE, DELETE, MERGE,
  TRUNCATE). A table the statement also names without ONLY, or through any other path,
  reaches its whole family: `tables_only` holds the names whose every reference says ONLY.
  ALTER TABLE ONLY and CREATE INDEX ON ONLY are written whole: the server
  still reaches the partitions for some subcommands (sqlstatements.py, `statement`); and
  CREATE/ALTER TYPE's RangeVars, built with `inh` false, are claimed or written whole.
- CTE names are scoped as Postgres scopes them: a CTE body sees the CTEs before it (all of them
  under RECURSIVE); the statement sees them all; nothing outside sees any. A CTE reference is not
  a table, but a same-named table outside that scope is.
- What a statement node records (its kind, the tables it writes, its flags) is
  sqlstatements.py's; code carried as text (DO bodies, function bodies, query strings passed
  to dblink and kin) is sqlbodies.py's; settings a statement changes (SET, set_config) are
  sqlsettings.py's; function calls, those in the text and those without a function call in it
  (operators, casts, TABLESAMPLE methods), and DDL naming a type as casts name a built-in
  one, are sqlcalls.py's. Their handlers sit in one dispatch table (`_HANDLERS`, `_FIELDS`)
  and take the walker as their first argument.
- `literal_free` says whether the result may be shared with texts whose trees differ only in
  constants and offsets (templates.py). Constants are `A_Const` nodes, a leaf the walk never
  enters: a handler reads one only through `read_constant()`, which clears the flag. No
  handler reads offsets (`location` and kin). Handlers outside `LITERAL_FREE` clear it too, as
  does reading the statement's text: only what is known not to depend on either is shared.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from . import sqlbodies, sqlcalls, sqlsettings, sqlstatements
from .sqlkinds import (
    KIND_CLASSES,
    LEAF_NODES,
    NODE_KINDS,
    ROLE_NODES,
    TYPE_NAMING_NODES,
    Classification,
    StatementInfo,
    constant,
)

Nested = Callable[[str, int], Classification]  # classify(text, depth): a body's SQL
Action = Callable[["StatementWalker", dict[str, Any]], None]  # a node's or a field's handler


class StatementWalker:
    """Collects what one top-level statement does by walking its JSON parse tree."""

    def __init__(self, text: str, depth: int, nested: Nested) -> None:
        self.text, self.depth, self.nested = text, depth, nested
        self.kind = ""
        self.kinds: set[str] = set()
        self.read: set[str] = set()
        self.written: set[str] = set()
        self.only: set[str] = set()  # tables some reference names with ONLY
        self.whole: set[str] = set()  # tables some reference reaches in full (descendants too)
        self.functions: set[str] = set()
        self.classes: set[str] = set()
        self.flags: set[str] = set()
        self.error: str | None = None
        self.literal_free = True  # see the module docstring
        self._claimed: set[int] = set()  # ids of RangeVar dicts that are no table read
        self.table_column_types: set[int] = set()  # ids of table columns' TypeName dicts

    def run(self, stmt: dict[str, Any]) -> tuple[StatementInfo, str | None]:
        self.walk(stmt)
        if any(t.rpartition(".")[2] == "pg_settings" for t in self.written):
            # UPDATE pg_settings is SET in disguise (its rule calls set_config).
            self.flags |= {"lexing_change", "set_role"}
        info = StatementInfo(
            self.text,
            self.kind or "unknown",
            frozenset(self.kinds or {"unknown"}),
            frozenset(self.read),
            frozenset(self.written),
            frozenset(self.functions),
            frozenset(self.classes),
            frozenset(self.flags),
            frozenset(self.only - self.whole),
        )
        return info, self.error

    def add_kind(self, kind: str, node: str = "") -> None:
        self.kind = self.kind or kind
        self.kinds.add(kind)
        cls = "ROLE" if node in ROLE_NODES else KIND_CLASSES.get(kind, "MISC")
        if cls:
            self.classes.add(cls)

    # -- the walk -----------------------------------------------------------------------------

    def walk(self, root: Any, scope: frozenset[str] = frozenset()) -> None:
        """Visit every dict below `root`; `scope` holds the CTE names visible there."""
        stack: list[tuple[Any, frozenset[str]]] = [(root, scope)]
        pop, push, actions = stack.pop, stack.append, _ACTIONS
        while stack:
            node, scope = pop()
            if type(node) is list:
                for item in node:
                    if type(item) is dict or type(item) is list:
                        push((item, scope))
                continue
            if "relname" in node:  # a RangeVar, bare or unwrapped
                self._range_var(node, scope)
                continue
            if "withClause" in node:
                scope = self._with(node["withClause"], scope, stack)
            for key, value in node.items():
                kind = type(value)
                if kind is dict:
                    action = actions.get(key)
                    if action is None:
                        action = actions[key] = _action(key)
                    if action is _SKIP:
                        continue
                    if action is not _DESCEND:
                        if action not in LITERAL_FREE:
                            self.literal_free = False
                        action(self, value)
                    push((value, scope))
                elif kind is list:
                    push((value, scope))

    def _with(
        self,
        clause: dict[str, Any],
        scope: frozenset[str],
        stack: list[tuple[Any, frozenset[str]]],
    ) -> frozenset[str]:
        """Scope CTE names like Postgres: a CTE body sees earlier CTEs (all if RECURSIVE)."""
        ctes = [c["CommonTableExpr"] for c in clause.get("ctes", ())]
        names = [c.get("ctename", "") for c in ctes]
        recursive = clause.get("recursive", False)
        for i, cte in enumerate(ctes):
            query = cte.get("ctequery", {})
            if query.keys() & {"InsertStmt", "UpdateStmt", "DeleteStmt", "MergeStmt"}:
                self.flags.add("writable_cte")
            visible = names if recursive else names[:i]
            stack.append((query, scope.union(visible)))
        return scope.union(names)

    def _range_var(self, node: dict[str, Any], scope: frozenset[str]) -> None:
        if id(node) in self._claimed:
            return
        schema = node.get("schemaname")
        if schema is None and node["relname"] in scope:
            return  # a CTE reference, not a table
        name = _qualified(schema, node["relname"])
        self.read.add(name)
        self._reach(name, only=not node.get("inh"))

    def write(self, node: dict[str, Any] | None, *, only: bool = False) -> None:
        """Record the RangeVar `node` (bare or wrapped) as written, and claim it before the walk
        reaches it, so it does not count as read too. `only`: the statement honours its ONLY."""
        if node is not None:
            node = self.claim(node)
            name = _qualified(node.get("schemaname"), node["relname"])
            self.written.add(name)
            self._reach(name, only=only and not node.get("inh"))

    def write_name(self, name: str) -> None:
        """Record a table named by a name list (DROP, COMMENT) as written: there is no ONLY."""
        self.written.add(name)
        self.whole.add(name)

    def absorb_tables(self, info: StatementInfo) -> None:
        """Add the tables a body's statement reads and writes, with what ONLY it says."""
        self.read |= info.tables_read
        self.written |= info.tables_written
        self.only |= info.tables_only
        self.whole |= info.tables - info.tables_only

    def _reach(self, name: str, *, only: bool) -> None:
        (self.only if only else self.whole).add(name)

    def claim(self, node: dict[str, Any]) -> dict[str, Any]:
        """Keep the RangeVar `node` (bare or wrapped) out of the tables read: it is written, or
        it names no table (a composite type). Returns the bare RangeVar."""
        node = node.get("RangeVar", node)
        self._claimed.add(id(node))
        return node

    def read_constant(self, node: Any) -> str | None:
        """`constant(node)`, the only way a handler may read a constant: the result now
        depends on it, so it is never shared with other literal values (templates.py)."""
        self.literal_free = False
        return constant(node)


_HANDLERS: dict[str, Action] = {
    "SelectStmt": sqlstatements.select,
    "InsertStmt": sqlstatements.insert,
    "UpdateStmt": sqlstatements.update,
    "DeleteStmt": sqlstatements.delete,
    "MergeStmt": sqlstatements.merge,
    "TruncateStmt": sqlstatements.truncate,
    "DropStmt": sqlstatements.drop,
    "CopyStmt": sqlstatements.copy,
    "ExplainStmt": sqlstatements.explain,
    "TransactionStmt": sqlstatements.transaction,
    "GrantStmt": sqlstatements.grant,
    "GrantRoleStmt": sqlstatements.grant_role,
    "CommentStmt": sqlstatements.comment,
    "SecLabelStmt": sqlstatements.security_label,
    "DiscardStmt": sqlstatements.discard,
    "VariableSetStmt": sqlsettings.variable_set,
    "FuncCall": sqlcalls.func_call,
    "DoStmt": sqlbodies.do,
    "CreateFunctionStmt": sqlbodies.create_function,
    "CreateTableAsStmt": sqlstatements.create_table_as,
    "CreateForeignTableStmt": sqlstatements.create_foreign_table,
    "VacuumStmt": sqlstatements.vacuum,
    "AlterTableCmd": sqlcalls.added_column,  # before the walk reaches the column's type
    "CreateOpClassItem": sqlcalls.opclass_item,  # FUNCTION n f(…) in an operator class
    "FetchStmt": sqlstatements.fetch,
    "ReturnStmt": sqlstatements.ignore,  # RETURN inside a BEGIN ATOMIC body
    "PrepareStmt": sqlcalls.prepare,
    "A_Expr": sqlcalls.operator_expr,
    "SubLink": sqlcalls.sublink,
    "SortBy": sqlcalls.sort_by,
    "RangeTableSample": sqlcalls.table_sample,
}
# Handlers whose result depends on the tree's node types, keywords and names only (never on a
# constant's value, an offset or the statement's text), so the result may be shared with
# texts whose trees differ only in those (templates.py). `func_call` reads constants only for
# set_config and the query functions, through `read_constant`, which clears `literal_free`.
# sqlcalls.py's read operator and type names, which templates.py keeps in the key.
LITERAL_FREE: frozenset[Action] = frozenset(
    {
        sqlstatements.select,
        sqlstatements.insert,
        sqlstatements.update,
        sqlstatements.delete,
        sqlstatements.merge,
        sqlstatements.transaction,
        sqlcalls.func_call,
        sqlcalls.operator_expr,
        sqlcalls.sublink,
        sqlcalls.sort_by,
        sqlcalls.table_sample,
        sqlcalls.type_name,
    }
)


def _skip(walker: StatementWalker, body: dict[str, Any]) -> None:
    """Marker: do not descend (constants, column names; `withClause` is walked by `_with`)."""


def _descend(walker: StatementWalker, body: dict[str, Any]) -> None:
    """Marker: nothing to record here; walk the children."""


_SKIP: Action = _skip
_DESCEND: Action = _descend
_FIELDS: dict[str, Action] = {
    "withClause": _SKIP,
    "setstmt": sqlsettings.variable_set,  # ALTER ROLE/DATABASE/SYSTEM … SET: unwrapped
    "funccall": sqlcalls.func_call,  # CALL: an unwrapped FuncCall
    "typeName": sqlcalls.type_name,  # casts, column lists, RETURNING: an unwrapped TypeName
}


def _action(key: str) -> Action:
    """What a dict key means: a field name, or a node type (`{"DeleteStmt": {...}}`)."""
    if key in _FIELDS:
        return _FIELDS[key]
    if not key[0].isupper():
        return _DESCEND
    if key in LEAF_NODES:
        return _SKIP
    if key in _HANDLERS:
        return _HANDLERS[key]
    if key in TYPE_NAMING_NODES:  # DDL, so never literal-free: templates.py shares no DDL
        return functools.partial(sqlstatements.names_type, name=key)
    if key.endswith("Stmt") and (NODE_KINDS.get(key) or sqlstatements.prefix_kind(key)):
        return functools.partial(sqlstatements.statement, name=key)
    return _DESCEND


_ACTIONS: dict[str, Action] = {}  # filled as keys are first seen (a few hundred at most)


def _qualified(schema: str | None, relname: str) -> str:
    return f"{schema}.{relname}".lower() if schema else relname.lower()

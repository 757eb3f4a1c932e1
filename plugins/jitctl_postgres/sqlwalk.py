"""Walk one statement's JSON parse tree (pglast `parse_sql_json`) and collect what it does.

Rules (notes/postgres-wire.md §9, §10):
- Plain dicts, walked iteratively (deep expressions cannot exhaust Python's stack). Every dict is
  visited; a node's handler runs before its children are, so a handler can claim the RangeVar
  it writes before the walk reaches it (every other RangeVar is a table read).
- Some typed fields are stored unwrapped (`relation`, `setstmt`, `funccall`, `intoClause`):
  handlers read them by field name.
- CTE names are scoped as Postgres scopes them: a CTE body sees the CTEs before it (all of them
  under RECURSIVE); the statement sees them all; nothing outside sees any. A CTE reference is not
  a table, but a same-named table outside that scope is.
- Code carried as text (DO bodies, function bodies, query strings passed to dblink and kin) is
  sqlbodies.py's; settings a statement changes (SET, set_config) are sqlsettings.py's; calls
  with no function call in the text (operators, casts, TABLESAMPLE methods), and DDL naming a
  type as casts name a built-in one, are sqlcalls.py's.
  Their handlers sit in the same dispatch table and take the walker as their first argument.
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

from . import sqlbodies, sqlcalls, sqlsettings
from .sqlkinds import (
    DANGEROUS_FUNCTIONS,
    DANGEROUS_PATTERN,
    KIND_CLASSES,
    LEAF_NODES,
    NODE_KINDS,
    QUERY_FUNCTIONS,
    ROLE_NODES,
    TABLE_OBJECTS,
    TRANSACTION_KINDS,
    TYPE_NAMING_NODES,
    WRITE_FIELDS,
    Classification,
    StatementInfo,
    constant,
)

Nested = Callable[[str, int], Classification]  # classify(text, depth): a body's SQL


class StatementWalker:
    """Collects what one top-level statement does by walking its JSON parse tree."""

    def __init__(self, text: str, depth: int, nested: Nested) -> None:
        self.text, self.depth, self.nested = text, depth, nested
        self.kind = ""
        self.kinds: set[str] = set()
        self.read: set[str] = set()
        self.written: set[str] = set()
        self.functions: set[str] = set()
        self.classes: set[str] = set()
        self.flags: set[str] = set()
        self.error: str | None = None
        self.literal_free = True  # see the module docstring
        self._claimed: set[int] = set()  # ids of RangeVar dicts already recorded as written
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
        self.read.add(_qualified(schema, node["relname"]))

    def _write(self, node: dict[str, Any] | None) -> None:
        if node is not None:
            node = node.get("RangeVar", node)
            self._claimed.add(id(node))
            self.written.add(_qualified(node.get("schemaname"), node["relname"]))

    def _statement(self, body: dict[str, Any], name: str = "") -> None:
        """A statement node without a handler of its own: its kind, and what it changes."""
        self.add_kind(NODE_KINDS.get(name) or _prefix_kind(name), name)
        if name in WRITE_FIELDS:
            self._write(body.get(WRITE_FIELDS[name]))

    def _names_type(self, body: dict[str, Any], name: str) -> None:
        """A statement that creates, renames or moves a type or a relation (sqlcalls.py)."""
        self._statement(body, name)
        sqlcalls.new_type(self, body, name)
        if name == "CreateStmt":  # before the walk reaches the columns' types
            sqlcalls.table_columns(self, body.get("tableElts", ()))

    # -- node handlers ------------------------------------------------------------------------

    def _select(self, body: dict[str, Any]) -> None:
        if "valuesLists" not in body or not self.kind:  # VALUES inside INSERT reads nothing
            self.add_kind("select")
        into = body.get("intoClause")
        if into is not None:
            self.add_kind("create")
            self.flags.add("select_into")
            self._write(into.get("rel"))
            sqlcalls.new_row_type(self, into.get("rel"))
        if "lockingClause" in body:
            self.flags.add("row_lock")

    def _insert(self, body: dict[str, Any]) -> None:
        self.add_kind("insert")
        self._write(body.get("relation"))
        if body.get("onConflictClause", {}).get("action") == "ONCONFLICT_UPDATE":
            self.add_kind("update")

    def _update(self, body: dict[str, Any]) -> None:
        self.add_kind("update")
        self._write(body.get("relation"))
        if "whereClause" not in body:
            self.flags.add("no_where")

    def _delete(self, body: dict[str, Any]) -> None:
        self.add_kind("delete")
        self._write(body.get("relation"))
        if "whereClause" not in body:
            self.flags.add("no_where")

    def _merge(self, body: dict[str, Any]) -> None:
        self.add_kind("merge")
        self._write(body.get("relation"))
        for clause in body.get("mergeWhenClauses", ()):
            action = clause.get("MergeWhenClause", {}).get("commandType", "")
            if action in ("CMD_INSERT", "CMD_UPDATE", "CMD_DELETE"):
                self.add_kind(action[4:].lower())

    def _truncate(self, body: dict[str, Any]) -> None:
        self.add_kind("truncate")
        for relation in body.get("relations", ()):
            self._write(relation)

    def _drop(self, body: dict[str, Any]) -> None:
        self.add_kind("drop")
        if body.get("removeType") in TABLE_OBJECTS:
            for obj in body.get("objects", ()):
                parts = [item["String"]["sval"] for item in obj.get("List", {}).get("items", ())]
                if parts:
                    self.written.add(".".join(parts[-2:]).lower())

    def _copy(self, body: dict[str, Any]) -> None:
        self.add_kind("copy")
        if body.get("is_program"):
            self.flags.add("copy_program")
        elif "filename" in body:
            self.flags.add("copy_file")
        if body.get("is_from"):
            self.flags.add("copy_from")
            self.classes.add("WRITE")
            self._write(body.get("relation"))
        else:
            self.flags.add("copy_to")
            self.classes.add("READ")
        for option in body.get("options", ()):
            opt = option.get("DefElem", {})
            if opt.get("defname") == "format" and self.read_constant(opt.get("arg")) == "binary":
                self.flags.add("copy_binary")

    def _explain(self, body: dict[str, Any]) -> None:
        self.add_kind("explain")
        for option in body.get("options", ()):
            opt = option.get("DefElem", {})
            if opt.get("defname") == "analyze" and self._truthy(opt.get("arg")):
                self.flags.add("explain_analyze")

    def _transaction(self, body: dict[str, Any]) -> None:
        self.add_kind(TRANSACTION_KINDS.get(body.get("kind", ""), "unknown"))

    def _grant(self, body: dict[str, Any], node: str = "GrantStmt") -> None:
        self.add_kind("grant" if body.get("is_grant") else "revoke", node)
        if body.get("objtype") in TABLE_OBJECTS:
            for obj in body.get("objects", ()):
                if "RangeVar" in obj:
                    self._write(obj)

    def _grant_role(self, body: dict[str, Any]) -> None:
        self._grant(body, "GrantRoleStmt")

    def _create_table_as(self, body: dict[str, Any]) -> None:
        self.add_kind("create")
        self._write(body.get("into", {}).get("rel"))
        sqlcalls.new_row_type(self, body.get("into", {}).get("rel"))

    def _create_foreign_table(self, body: dict[str, Any]) -> None:
        self.add_kind("create")
        self._write(body.get("base", {}).get("relation"))
        sqlcalls.new_row_type(self, body.get("base", {}).get("relation"))

    def _vacuum(self, body: dict[str, Any]) -> None:
        self.add_kind("vacuum" if body.get("is_vacuumcmd") else "analyze")

    def _fetch(self, body: dict[str, Any]) -> None:
        self.add_kind("move" if body.get("ismove") else "fetch")

    def _ignore(self, body: dict[str, Any]) -> None:
        pass

    def _discard(self, body: dict[str, Any]) -> None:
        self.add_kind("discard")
        if body.get("target") == "DISCARD_ALL":
            # DISCARD ALL runs SET SESSION AUTHORIZATION DEFAULT, undoing any role the broker set.
            self.flags.add("session_authorization")

    def _func_call(self, body: dict[str, Any]) -> None:
        parts = [p.get("String", {}).get("sval", "") for p in body.get("funcname", ())]
        name = ".".join(parts).lower()
        base = parts[-1].lower() if parts else ""
        self.functions.add(name)
        self.classes.add("FUNCTION")
        if base in DANGEROUS_FUNCTIONS or DANGEROUS_PATTERN.fullmatch(base):
            self.flags.add("dangerous_function")
        if base == "set_config":
            sqlsettings.set_config(self, body.get("args", ()))
        elif base in QUERY_FUNCTIONS:
            sqlbodies.query_arguments(self, body.get("args", ()))

    def read_constant(self, node: Any) -> str | None:
        """`constant(node)`, the only way a handler may read a constant: the result now
        depends on it, so it is never shared with other literal values (templates.py)."""
        self.literal_free = False
        return constant(node)

    def _truthy(self, arg: Any) -> bool:
        """A DefElem option's value: absent means true (EXPLAIN ANALYZE); false/off/no/0 are
        false."""
        value = self.read_constant(arg)
        return value is None or value.lower() not in ("false", "off", "no", "0")


_HANDLERS: dict[str, Callable[[StatementWalker, dict[str, Any]], None]] = {
    "SelectStmt": StatementWalker._select,
    "InsertStmt": StatementWalker._insert,
    "UpdateStmt": StatementWalker._update,
    "DeleteStmt": StatementWalker._delete,
    "MergeStmt": StatementWalker._merge,
    "TruncateStmt": StatementWalker._truncate,
    "DropStmt": StatementWalker._drop,
    "CopyStmt": StatementWalker._copy,
    "ExplainStmt": StatementWalker._explain,
    "TransactionStmt": StatementWalker._transaction,
    "GrantStmt": StatementWalker._grant,
    "GrantRoleStmt": StatementWalker._grant_role,
    "DiscardStmt": StatementWalker._discard,
    "VariableSetStmt": sqlsettings.variable_set,
    "FuncCall": StatementWalker._func_call,
    "DoStmt": sqlbodies.do,
    "CreateFunctionStmt": sqlbodies.create_function,
    "CreateTableAsStmt": StatementWalker._create_table_as,
    "CreateForeignTableStmt": StatementWalker._create_foreign_table,
    "VacuumStmt": StatementWalker._vacuum,
    "AlterTableCmd": sqlcalls.added_column,  # before the walk reaches the column's type
    "FetchStmt": StatementWalker._fetch,
    "ReturnStmt": StatementWalker._ignore,  # RETURN inside a BEGIN ATOMIC body
    "PrepareStmt": sqlcalls.prepare,
    "A_Expr": sqlcalls.operator_expr,
    "SubLink": sqlcalls.sublink,
    "SortBy": sqlcalls.sort_by,
    "RangeTableSample": sqlcalls.table_sample,
}
# Handlers whose result depends on the tree's node types, keywords and names only (never on a
# constant's value, an offset or the statement's text), so the result may be shared with
# texts whose trees differ only in those (templates.py). `_func_call` reads constants only for
# set_config and the query functions, through `read_constant`, which clears `literal_free`.
# sqlcalls.py's read operator and type names, which templates.py keeps in the key.
LITERAL_FREE: frozenset[Callable[[StatementWalker, dict[str, Any]], None]] = frozenset(
    {
        StatementWalker._select,
        StatementWalker._insert,
        StatementWalker._update,
        StatementWalker._delete,
        StatementWalker._merge,
        StatementWalker._func_call,
        StatementWalker._transaction,
        sqlcalls.operator_expr,
        sqlcalls.sublink,
        sqlcalls.sort_by,
        sqlcalls.table_sample,
        sqlcalls.type_name,
    }
)


def _prefix_kind(name: str) -> str:
    for prefix in ("Create", "Alter", "Drop"):
        if name.startswith(prefix):
            return prefix.lower()
    return ""


Action = Callable[[StatementWalker, dict[str, Any]], None]


def _skip(walker: StatementWalker, body: dict[str, Any]) -> None:
    """Marker: do not descend (constants, column names; `withClause` is walked by `_with`)."""


def _descend(walker: StatementWalker, body: dict[str, Any]) -> None:
    """Marker: nothing to record here; walk the children."""


_SKIP: Action = _skip
_DESCEND: Action = _descend
_FIELDS: dict[str, Action] = {
    "withClause": _SKIP,
    "setstmt": sqlsettings.variable_set,  # ALTER ROLE/DATABASE/SYSTEM … SET: unwrapped
    "funccall": StatementWalker._func_call,  # CALL: an unwrapped FuncCall
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
        return functools.partial(StatementWalker._names_type, name=key)
    if key.endswith("Stmt") and (NODE_KINDS.get(key) or _prefix_kind(key)):
        return functools.partial(StatementWalker._statement, name=key)
    return _DESCEND


_ACTIONS: dict[str, Action] = {}  # filled as keys are first seen (a few hundred at most)


def _qualified(schema: str | None, relname: str) -> str:
    return f"{schema}.{relname}".lower() if schema else relname.lower()

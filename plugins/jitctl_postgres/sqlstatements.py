"""What each statement node records: its kind, the tables it writes, and its flags.

The walker (sqlwalk.py) calls these handlers for statement nodes, before it walks their
children; each takes the walker as its first argument. Rules (notes/postgres-wire.md §9, §10):
- A handler claims the RangeVar its statement writes (`walker.write`) before the walk reaches
  it, so it is not also counted as read; every other RangeVar is a table read.
- A statement without a handler of its own (`statement`) gets its kind from NODE_KINDS or its
  node's prefix (Create…, Alter…, Drop…), writes the object WRITE_FIELDS names, and calls
  the functions FUNCTION_FIELDS name (sqlcalls.bound_functions) or its options bind
  (sqlcalls.OPTION_FIELDS, sqlcalls.definition). One that
  creates, renames or moves a type or a relation with a row type (`names_type`) also has its
  new name checked by sqlcalls.py.
- DROP, COMMENT and SECURITY LABEL name a table by a name list, not a RangeVar; each writes
  the table it names, or the table of the trigger, rule or policy (DROP, COMMENT), the
  constraint (COMMENT) or the column (COMMENT, SECURITY LABEL) it names (`… ON t`, `t.c`):
  all change the table's catalog entry, as ALTER TABLE does.
- A RangeVar can name a composite type rather than a table: CREATE TYPE x AS (…) and ALTER
  TYPE x ADD/ALTER/DROP ATTRIBUTE. It is claimed, so it is neither read nor written, like
  the enum, range and base forms, which have no RangeVar; the composite's column types still
  count as casts (sqlcalls.type_name).
- A statement that changes tables its text does not name is flagged `unnamed_tables` (fail
  closed: policy.py fits it to every table rule): every CASCADE, and the statements that drop
  or give away objects by owner or membership (`unnamed_tables`).
- UPDATE, DELETE, MERGE and TRUNCATE honour `ONLY t` (`write(…, only=True)`): the server
  reaches t's own rows, not its descendants' (sqlwalk.py). Statements that `statement`
  handles write whole, ONLY or not: under `ALTER TABLE ONLY`, PostgreSQL 15.18 still drops
  (DROP CONSTRAINT) and alters (ALTER CONSTRAINT) a partitioned table's foreign key in its
  partitions, so ONLY there does not keep the partitions out.
- A statement that makes or breaks an inheritance or partition link is flagged `inheritance`
  (`inheritance`): the session joins the tables it names into one family (families.py).
- DML (SELECT, INSERT, UPDATE, DELETE, MERGE) and transaction control read only the tree's node
  types, keywords and names: they are literal-free (sqlwalk.py's `LITERAL_FREE`). The others
  are not, or read a constant (COPY's format, EXPLAIN's options) through `read_constant`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import sqlcalls
from .sqlkinds import (
    FUNCTION_FIELDS,
    NODE_KINDS,
    ON_TABLE_OBJECTS,
    TABLE_OBJECTS,
    TRANSACTION_KINDS,
    UNNAMED_TABLE_NODES,
    WRITE_FIELDS,
)

if TYPE_CHECKING:
    from .sqlwalk import StatementWalker


def statement(walker: StatementWalker, body: dict[str, Any], name: str = "") -> None:
    """A statement node without a handler of its own: its kind, and what it changes."""
    walker.add_kind(NODE_KINDS.get(name) or prefix_kind(name), name)
    if name in UNNAMED_TABLE_NODES or cascades(body):
        unnamed_tables(walker)
    if name in ("CreateStmt", "AlterTableStmt"):
        inheritance(walker, body)
    if name == "CompositeTypeStmt":  # CREATE TYPE x AS (…): its RangeVar names the new type
        walker.claim(body["typevar"])
    elif name in WRITE_FIELDS:
        target = body.get(WRITE_FIELDS[name])
        if target is not None and body.get("objtype") == "OBJECT_TYPE":
            # ALTER TYPE x ADD/ALTER/DROP ATTRIBUTE: ALTER TABLE's node, but the server refuses
            # it unless x is a composite type. Not RENAME ATTRIBUTE (a RenameStmt), which
            # renames a table's or a view's column as well: that one stays written.
            walker.claim(target)
        else:
            walker.write(target)
    if name in FUNCTION_FIELDS:  # CREATE TRIGGER … EXECUTE FUNCTION f(), CREATE CAST, …
        sqlcalls.bound_functions(walker, body, FUNCTION_FIELDS[name])
    elif name in sqlcalls.OPTION_FIELDS:  # CREATE AGGREGATE … (sfunc = f), ALTER TYPE … SET
        sqlcalls.definition(walker, body, name)


def cascades(body: dict[str, Any]) -> bool:
    """Whether the statement, or one of its ALTER TABLE subcommands, says CASCADE."""
    if body.get("behavior") == "DROP_CASCADE":
        return True
    commands = (cmd.get("AlterTableCmd", {}) for cmd in body.get("cmds", ()))
    return any(cmd.get("behavior") == "DROP_CASCADE" for cmd in commands)


INHERITANCE_COMMANDS = frozenset(
    {"AT_AttachPartition", "AT_DetachPartition", "AT_DetachPartitionFinalize"}
    | {"AT_AddInherit", "AT_DropInherit"}
)


def inheritance(walker: StatementWalker, body: dict[str, Any]) -> None:
    """CREATE [FOREIGN] TABLE … PARTITION OF / INHERITS, ALTER TABLE … ATTACH/DETACH PARTITION,
    INHERIT, NO INHERIT: flag `inheritance`, so the session links the tables the statement
    names from then on (a link made in the session is not in its catalog snapshot)."""
    commands = (cmd.get("AlterTableCmd", {}) for cmd in body.get("cmds", ()))
    if (
        body.get("inhRelations")
        or body.get("partbound")
        or any(cmd.get("subtype") in INHERITANCE_COMMANDS for cmd in commands)
    ):
        walker.flags.add("inheritance")


def unnamed_tables(walker: StatementWalker) -> None:
    """The statement changes tables its text does not name. The classifier sees no catalog
    and cannot name them: flag `unnamed_tables`, which policy.py fits to every table rule
    (fail closed). PostgreSQL 15 (sql-droptype, sql-altertable, sql-truncate, ddl-depend):

    - CASCADE, wherever it is written: "Automatically drop objects that depend on" what is
      dropped, "and in turn all objects that depend on those objects". Dropping a type,
      domain or collation drops the table columns of that type (and the tables created `OF`
      a type); a function, operator, cast or sequence, the defaults, constraints, indexes
      and triggers that use it; a table, column, constraint or index, the foreign keys of
      other tables that reference it and the views that read it; a schema, server or
      extension, every table in it. TRUNCATE … CASCADE empties "all tables that have
      foreign-key references to any of the named tables"; ALTER TYPE … ATTRIBUTE …
      CASCADE alters the type's typed tables. Without CASCADE (RESTRICT, the default) the
      server refuses while such dependents exist (a partitioned table's partitions are
      not such dependents: DROP TABLE drops them, unflagged; the session's inheritance
      families make a rule on a partition fit it instead, families.py). Flagged
      even where the server documents CASCADE as having no effect (DROP POLICY, DROP
      SUBSCRIPTION): one rule, no list to get wrong.
    - DROP OWNED drops every object the roles own, tables included; REASSIGN OWNED gives
      them to another role; DROP EXTENSION drops the extension's member objects (tables its
      script created among them) even without CASCADE (UNNAMED_TABLE_NODES, `drop`)."""
    walker.flags.add("unnamed_tables")


def names_type(walker: StatementWalker, body: dict[str, Any], name: str) -> None:
    """A statement that creates, renames or moves a type or a relation (sqlcalls.py)."""
    statement(walker, body, name)
    sqlcalls.new_type(walker, body, name)
    if name == "CreateStmt":  # before the walk reaches the columns' types
        sqlcalls.table_columns(walker, body.get("tableElts", ()))


def prefix_kind(name: str) -> str:
    """The kind a node named Create…, Alter… or Drop… has ("create", …); "" for others."""
    for prefix in ("Create", "Alter", "Drop"):
        if name.startswith(prefix):
            return prefix.lower()
    return ""


def select(walker: StatementWalker, body: dict[str, Any]) -> None:
    if "valuesLists" not in body or not walker.kind:  # VALUES inside INSERT reads nothing
        walker.add_kind("select")
    into = body.get("intoClause")
    if into is not None:
        walker.add_kind("create")
        walker.flags.add("select_into")
        walker.write(into.get("rel"))
        sqlcalls.new_row_type(walker, into.get("rel"))
    if "lockingClause" in body:
        walker.flags.add("row_lock")


def insert(walker: StatementWalker, body: dict[str, Any]) -> None:
    walker.add_kind("insert")
    walker.write(body.get("relation"))
    if body.get("onConflictClause", {}).get("action") == "ONCONFLICT_UPDATE":
        walker.add_kind("update")


def update(walker: StatementWalker, body: dict[str, Any]) -> None:
    walker.add_kind("update")
    walker.write(body.get("relation"), only=True)
    if "whereClause" not in body:
        walker.flags.add("no_where")


def delete(walker: StatementWalker, body: dict[str, Any]) -> None:
    walker.add_kind("delete")
    walker.write(body.get("relation"), only=True)
    if "whereClause" not in body:
        walker.flags.add("no_where")


def merge(walker: StatementWalker, body: dict[str, Any]) -> None:
    walker.add_kind("merge")
    walker.write(body.get("relation"), only=True)
    for clause in body.get("mergeWhenClauses", ()):
        action = clause.get("MergeWhenClause", {}).get("commandType", "")
        if action in ("CMD_INSERT", "CMD_UPDATE", "CMD_DELETE"):
            walker.add_kind(action[4:].lower())


def truncate(walker: StatementWalker, body: dict[str, Any]) -> None:
    walker.add_kind("truncate")
    if cascades(body):  # the tables whose foreign keys reference these are emptied too
        unnamed_tables(walker)
    for relation in body.get("relations", ()):
        walker.write(relation, only=True)


def drop(walker: StatementWalker, body: dict[str, Any]) -> None:
    walker.add_kind("drop")
    if cascades(body) or body.get("removeType") == "OBJECT_EXTENSION":
        unnamed_tables(walker)
    kind = body.get("removeType")
    if kind in TABLE_OBJECTS or kind in ON_TABLE_OBJECTS:
        for obj in body.get("objects", ()):
            # DROP TRIGGER x ON s.t: [s, t, x], the table is s.t
            _write_named(walker, obj, on_table=kind in ON_TABLE_OBJECTS)


def comment(walker: StatementWalker, body: dict[str, Any], node: str = "CommentStmt") -> None:
    """COMMENT ON TABLE t / COLUMN t.c / TRIGGER, RULE, POLICY or CONSTRAINT x ON t: the
    table's catalog entry changes (pg_description)."""
    walker.add_kind(NODE_KINDS[node], node)
    kind = body.get("objtype")
    on_table = kind in ON_TABLE_OBJECTS or kind in ("OBJECT_COLUMN", "OBJECT_TABCONSTRAINT")
    if kind in TABLE_OBJECTS or on_table:
        # COMMENT ON COLUMN s.t.c / TRIGGER x ON s.t: [s, t, c|x], the table is s.t. Not a
        # domain's constraint (OBJECT_DOMCONSTRAINT): its list holds a type, no table.
        _write_named(walker, body.get("object", {}), on_table=on_table)


def security_label(walker: StatementWalker, body: dict[str, Any]) -> None:
    """SECURITY LABEL ON TABLE t / COLUMN t.c: as COMMENT (pg_seclabel)."""
    comment(walker, body, "SecLabelStmt")


def _write_named(walker: StatementWalker, obj: dict[str, Any], *, on_table: bool) -> None:
    """Record the table a name list (`{"List": {"items": [String, …]}}`) names as written; with
    `on_table`, the list names something on the table, whose name is the last part. A catalog
    part in front of the schema is the current database's, so it is dropped."""
    parts = [item["String"]["sval"] for item in obj.get("List", {}).get("items", ())]
    if on_table:
        parts = parts[:-1]
    if parts:
        walker.write_name(".".join(parts[-2:]).lower())


def copy(walker: StatementWalker, body: dict[str, Any]) -> None:
    walker.add_kind("copy")
    if body.get("is_program"):
        walker.flags.add("copy_program")
    elif "filename" in body:
        walker.flags.add("copy_file")
    if body.get("is_from"):
        walker.flags.add("copy_from")
        walker.classes.add("WRITE")
        walker.write(body.get("relation"))
    else:
        walker.flags.add("copy_to")
        walker.classes.add("READ")
    for option in body.get("options", ()):
        opt = option.get("DefElem", {})
        if opt.get("defname") == "format" and walker.read_constant(opt.get("arg")) == "binary":
            walker.flags.add("copy_binary")


def explain(walker: StatementWalker, body: dict[str, Any]) -> None:
    walker.add_kind("explain")
    for option in body.get("options", ()):
        opt = option.get("DefElem", {})
        if opt.get("defname") == "analyze" and _truthy(walker, opt.get("arg")):
            walker.flags.add("explain_analyze")


def transaction(walker: StatementWalker, body: dict[str, Any]) -> None:
    walker.add_kind(TRANSACTION_KINDS.get(body.get("kind", ""), "unknown"))


def grant(walker: StatementWalker, body: dict[str, Any], node: str = "GrantStmt") -> None:
    walker.add_kind("grant" if body.get("is_grant") else "revoke", node)
    if body.get("objtype") in TABLE_OBJECTS:
        for obj in body.get("objects", ()):
            if "RangeVar" in obj:
                walker.write(obj)


def grant_role(walker: StatementWalker, body: dict[str, Any]) -> None:
    grant(walker, body, "GrantRoleStmt")


def create_table_as(walker: StatementWalker, body: dict[str, Any]) -> None:
    walker.add_kind("create")
    walker.write(body.get("into", {}).get("rel"))
    sqlcalls.new_row_type(walker, body.get("into", {}).get("rel"))


def create_foreign_table(walker: StatementWalker, body: dict[str, Any]) -> None:
    walker.add_kind("create")
    walker.write(body.get("base", {}).get("relation"))
    sqlcalls.new_row_type(walker, body.get("base", {}).get("relation"))
    inheritance(walker, body.get("base", {}))


def vacuum(walker: StatementWalker, body: dict[str, Any]) -> None:
    walker.add_kind("vacuum" if body.get("is_vacuumcmd") else "analyze")


def fetch(walker: StatementWalker, body: dict[str, Any]) -> None:
    walker.add_kind("move" if body.get("ismove") else "fetch")


def ignore(walker: StatementWalker, body: dict[str, Any]) -> None:
    pass


def discard(walker: StatementWalker, body: dict[str, Any]) -> None:
    walker.add_kind("discard")
    if body.get("target") == "DISCARD_ALL":
        # DISCARD ALL runs SET SESSION AUTHORIZATION DEFAULT, undoing any role the broker set.
        walker.flags.add("session_authorization")


def _truthy(walker: StatementWalker, arg: Any) -> bool:
    """A DefElem option's value: absent means true (EXPLAIN ANALYZE); false/off/no/0 are
    false."""
    value = walker.read_constant(arg)
    return value is None or value.lower() not in ("false", "off", "no", "0")

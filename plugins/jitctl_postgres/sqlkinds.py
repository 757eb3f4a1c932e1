"""The classifier's vocabulary: the result types, statement kinds, classes and flags, and what
each libpg_query parse-tree node means for them (notes/postgres-wire.md §9, §10).

Kinds are lower-case statement keywords ("select", "delete", "drop", …, "unknown"); DESIGN §4's
rule words (`statement = ["drop", "truncate"]`) are these. Classes follow pgaudit's `pgaudit.log`
(READ, WRITE, FUNCTION, ROLE, DDL, MISC, MISC_SET). Functions are named as called (`lower`,
`pg_catalog.now`), plus the calls the text hides (sqlcalls.py): `operator(===)`,
`tablesample(system_rows)`, `cast(status)`, `myschema.cast(status)`. Flags name risks:

- copy_program, copy_file, copy_to, copy_from, copy_binary: COPY's direction and endpoint;
- dynamic_sql: code the text does not show (EXECUTE, DO or function bodies in other languages);
- explain_analyze (the statement runs), select_into, writable_cte, no_where, row_lock;
- set_role, session_authorization: the session's identity changes (DISCARD ALL included);
- lexing_change: how the server lexes text changes (standard_conforming_strings,
  client_encoding other than UTF8, escape_string_warning, backslash_quote, pg_settings writes);
- search_path, replication_role: hints for settings that change what names and triggers mean;
- dangerous_function: a call to one of DANGEROUS_FUNCTIONS / DANGEROUS_PATTERN;
- shadows_builtin_type: DDL gives a type, in any schema, a name casts take for a built-in type
  (BUILTIN_TYPE_NAMES): CREATE DOMAIN/TYPE, a table or view (its row type takes its name),
  RENAME TO, SET SCHEMA (sqlcalls.py);
- unnamed_tables: the statement changes tables its text does not name (any CASCADE:
  TRUNCATE … CASCADE empties the tables whose foreign keys reference it, DROP TYPE … CASCADE
  drops columns of that type, ALTER TYPE … ATTRIBUTE … CASCADE alters the type's typed
  tables; DROP OWNED, REASSIGN OWNED, DROP EXTENSION); every table rule fits it (policy.py);
- inheritance: the statement makes or breaks an inheritance or partition link (CREATE TABLE …
  PARTITION OF / INHERITS, ALTER TABLE … ATTACH/DETACH PARTITION, INHERIT, NO INHERIT); the
  session joins the tables it names into one family (families.py);
- unparseable: the text (or a body inside it) could not be parsed;
- fastpath_function_call: the legacy FunctionCall message.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

LEXING_SETTINGS = frozenset(
    {"standard_conforming_strings", "client_encoding", "escape_string_warning", "backslash_quote"}
)
DANGEROUS_FUNCTIONS = frozenset(
    {
        # backend control
        *("pg_terminate_backend", "pg_cancel_backend", "pg_reload_conf", "pg_rotate_logfile"),
        *("pg_promote", "pg_switch_wal", "pg_create_restore_point", "pg_drop_replication_slot"),
        *("pg_create_logical_replication_slot", "pg_logical_emit_message"),
        # large objects
        *("lo_import", "lo_export", "lo_from_bytea", "lo_put", "lo_unlink", "lo_truncate"),
        # server files
        *("pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_ls_logdir", "pg_ls_waldir"),
        "pg_stat_file",
        # config, remote, string-as-query
        *("set_config", "dblink", "dblink_exec", "dblink_connect", "cursor_to_xml"),
        *("table_to_xml", "pg_notify"),
        # disguised writes
        *("nextval", "setval"),
    }
)
# query_to_xml*, pg_advisory_*lock*, pg_sleep* (notes §9). generate_series is left out: psql's
# own `\d` uses it, and only a huge one is a problem, which the text cannot tell.
DANGEROUS_PATTERN = re.compile(r"query_to_xml.*|pg_advisory_.*lock.*|pg_sleep.*")
# Functions that run SQL given as a string argument (here, or on a dblink connection).
QUERY_FUNCTIONS = frozenset(
    {"dblink", "dblink_exec", "dblink_open", "dblink_send_query", "query_to_xml"}
    | {"query_to_xmlschema", "query_to_xml_and_xmlschema"}
)

# Names the server resolves to code without a function call in the text (sqlcalls.py): the
# built-in ones, from a PostgreSQL 15.18 server (`SELECT DISTINCT oprname FROM pg_operator WHERE
# oprnamespace = 'pg_catalog'::regnamespace`; `SELECT typname FROM pg_type WHERE typnamespace =
# 'pg_catalog'::regnamespace AND typtype <> 'c' AND typname NOT LIKE '\\_%'`, which leaves out
# the catalogs' row types and the `_name` array types; tsm_handler functions). A newer server may
# add some: a name missing here counts as a call (fail-closed) until it is added.
BUILTIN_OPERATORS = frozenset(
    {
        "!!", "!~", "!~*", "!~~", "!~~*", "#", "##", "#-", "#>", "#>>", "%", "&", "&&",
        "&<", "&<|", "&>", "*", "*<", "*<=", "*<>", "*=", "*>", "*>=", "+", "-", "->",
        "->>", "-|-", "/", "<", "<->", "<<", "<<=", "<<|", "<=", "<>", "<@", "<^", "=",
        ">", ">=", ">>", ">>=", ">^", "?", "?#", "?&", "?-", "?-|", "?|", "?||", "@",
        "@-@", "@>", "@?", "@@", "@@@", "^", "^@", "|", "|&>", "|/", "|>>", "||", "||/",
        "~", "~*", "~<=~", "~<~", "~=", "~>=~", "~>~", "~~", "~~*",
    }
)  # fmt: skip
BUILTIN_TYPES = frozenset(
    {
        "aclitem", "any", "anyarray", "anycompatible", "anycompatiblearray",
        "anycompatiblemultirange", "anycompatiblenonarray", "anycompatiblerange",
        "anyelement", "anyenum", "anymultirange", "anynonarray", "anyrange", "bit", "bool",
        "box", "bpchar", "bytea", "char", "cid", "cidr", "circle", "cstring", "date",
        "datemultirange", "daterange", "event_trigger", "fdw_handler", "float4", "float8",
        "gtsvector", "index_am_handler", "inet", "int2", "int2vector", "int4",
        "int4multirange", "int4range", "int8", "int8multirange", "int8range", "internal",
        "interval", "json", "jsonb", "jsonpath", "language_handler", "line", "lseg",
        "macaddr", "macaddr8", "money", "name", "numeric", "nummultirange", "numrange",
        "oid", "oidvector", "path", "pg_brin_bloom_summary",
        "pg_brin_minmax_multi_summary", "pg_ddl_command", "pg_dependencies", "pg_lsn",
        "pg_mcv_list", "pg_ndistinct", "pg_node_tree", "pg_snapshot", "point", "polygon",
        "record", "refcursor", "regclass", "regcollation", "regconfig", "regdictionary",
        "regnamespace", "regoper", "regoperator", "regproc", "regprocedure", "regrole",
        "regtype", "table_am_handler", "text", "tid", "time", "timestamp", "timestamptz",
        "timetz", "trigger", "tsm_handler", "tsmultirange", "tsquery", "tsrange",
        "tstzmultirange", "tstzrange", "tsvector", "txid_snapshot", "unknown", "uuid",
        "varbit", "varchar", "void", "xid", "xid8", "xml",
    }
)  # fmt: skip
# Column types CREATE TABLE turns into an int column, a sequence and a nextval default.
SERIAL_TYPES = frozenset({"serial", "serial2", "serial4", "serial8", "smallserial", "bigserial"})
# information_schema's domains (initdb creates them; their CHECKs use built-in operators).
INFORMATION_SCHEMA_TYPES = frozenset(
    {"cardinal_number", "character_data", "sql_identifier", "time_stamp", "yes_or_no"}
)
# Names an unqualified cast takes for a built-in type (sqlcalls.type_name): a type created
# under one in the session's temporary schema, which is searched for types before pg_catalog,
# or in a schema a search_path lists first, is what `'x'::text` runs instead. Serial names are
# no type at all, so a type of that name in any schema on the search_path is what `'1'::serial`
# runs. information_schema's domain names are left out: a cast to one is free only qualified
# with information_schema, and a qualified name finds no other schema's type.
BUILTIN_TYPE_NAMES = frozenset(
    {*BUILTIN_TYPES, *(f"_{name}" for name in BUILTIN_TYPES), *SERIAL_TYPES}
)
BUILTIN_TABLESAMPLE_METHODS = frozenset({"bernoulli", "system"})

NODE_KINDS = {
    "SelectStmt": "select", "InsertStmt": "insert", "UpdateStmt": "update",
    "DeleteStmt": "delete", "MergeStmt": "merge", "TruncateStmt": "truncate",
    "CopyStmt": "copy", "DoStmt": "do", "CallStmt": "call", "PrepareStmt": "prepare",
    "ExecuteStmt": "execute", "DeallocateStmt": "deallocate", "ExplainStmt": "explain",
    "VariableShowStmt": "show", "ConstraintsSetStmt": "set", "ListenStmt": "listen",
    "UnlistenStmt": "unlisten", "NotifyStmt": "notify", "DiscardStmt": "discard",
    "LockStmt": "lock", "DeclareCursorStmt": "declare", "ClosePortalStmt": "close",
    "CheckPointStmt": "checkpoint", "LoadStmt": "load", "ClusterStmt": "cluster",
    "ReindexStmt": "reindex", "RefreshMatViewStmt": "refresh", "CommentStmt": "comment",
    "SecLabelStmt": "security_label", "DefineStmt": "create", "CompositeTypeStmt": "create",
    "ImportForeignSchemaStmt": "create", "IndexStmt": "create", "RuleStmt": "create",
    "ViewStmt": "create", "CreatedbStmt": "create", "DropdbStmt": "drop",
    "RenameStmt": "alter", "ReassignOwnedStmt": "alter", "ReplicaIdentityStmt": "alter",
}  # fmt: skip
TRANSACTION_KINDS = {
    "TRANS_STMT_BEGIN": "begin", "TRANS_STMT_START": "begin", "TRANS_STMT_COMMIT": "commit",
    "TRANS_STMT_ROLLBACK": "rollback", "TRANS_STMT_SAVEPOINT": "savepoint",
    "TRANS_STMT_RELEASE": "release", "TRANS_STMT_ROLLBACK_TO": "rollback",
    "TRANS_STMT_PREPARE": "prepare_transaction", "TRANS_STMT_COMMIT_PREPARED": "commit",
    "TRANS_STMT_ROLLBACK_PREPARED": "rollback",
}  # fmt: skip
# What `Classification.reads_only` admits (`postgres.write_ahead = "changes"`).
READ_ONLY_KINDS = frozenset({"select", "show"})
# Statements that change the server's prepared-statement and portal names by SQL, or run code
# that could (`Classification.may_touch_names`).
NAME_KINDS = frozenset(
    {"prepare", "deallocate", "discard", "declare", "close", "execute", "do", "call"}
    | {"function_call", "unknown"}
)
_OTHER_KINDS = {"set", "reset", "grant", "revoke", "move", "analyze", "vacuum"}
STATEMENT_KINDS = frozenset(
    {*NODE_KINDS.values(), *TRANSACTION_KINDS.values(), *_OTHER_KINDS}
    | {"create", "alter", "drop", "unknown", "function_call"}
)
ROLE_NODES = {
    "GrantStmt", "GrantRoleStmt", "CreateRoleStmt", "AlterRoleStmt", "AlterRoleSetStmt",
    "DropRoleStmt", "ReassignOwnedStmt", "AlterDefaultPrivilegesStmt",
}  # fmt: skip
KIND_CLASSES = {
    "select": "READ", "insert": "WRITE", "update": "WRITE", "delete": "WRITE", "merge": "WRITE",
    "truncate": "WRITE", "do": "FUNCTION", "call": "FUNCTION", "grant": "ROLE", "revoke": "ROLE",
    "create": "DDL", "alter": "DDL", "drop": "DDL", "comment": "DDL", "security_label": "DDL",
    "refresh": "DDL", "set": "MISC_SET", "reset": "MISC_SET", "copy": "",  # COPY: by direction
    "unknown": "",
}  # fmt: skip
TABLE_OBJECTS = {
    "OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_FOREIGN_TABLE", "OBJECT_SEQUENCE",
    "OBJECT_INDEX",
}  # fmt: skip
# Statements that change tables they do not name, whatever they say (sqlstatements.py's
# `unnamed_tables`): the roles' objects, tables among them.
UNNAMED_TABLE_NODES = {"DropOwnedStmt", "ReassignOwnedStmt"}
# Objects DROP names with their table (DROP TRIGGER x ON t), which it changes: CREATE writes it.
ON_TABLE_OBJECTS = {"OBJECT_TRIGGER", "OBJECT_RULE", "OBJECT_POLICY"}
# Statements whose `relation` (or named field) is the object they change.
WRITE_FIELDS = {
    "CreateStmt": "relation", "AlterTableStmt": "relation", "IndexStmt": "relation",
    "RuleStmt": "relation", "CreateTrigStmt": "relation", "RefreshMatViewStmt": "relation",
    "RenameStmt": "relation", "AlterObjectSchemaStmt": "relation", "ClusterStmt": "relation",
    "ReindexStmt": "relation", "ViewStmt": "view", "CreateSeqStmt": "sequence",
    "AlterSeqStmt": "sequence", "CreatePolicyStmt": "table", "AlterPolicyStmt": "table",
}  # fmt: skip
# DDL that binds functions by name in fields of its own, which the server runs later with no
# call in the text (sqlcalls.bound_functions): a trigger's function on every row or statement,
# a cast's on every conversion. A field holds a name list or an ObjectWithArgs.
FUNCTION_FIELDS = {
    "CreateTrigStmt": ("funcname",), "CreateEventTrigStmt": ("funcname",),
    "CreateCastStmt": ("func",), "CreateTransformStmt": ("fromsql", "tosql"),
    "CreateConversionStmt": ("func_name",), "CreateAmStmt": ("handler_name",),
    "CreatePLangStmt": ("plhandler", "plinline", "plvalidator"),
}  # fmt: skip
# Statements that create, rename or move a type, or a relation with a row type of its name
# (sqlcalls.new_type; CREATE TABLE AS, SELECT INTO, CREATE FOREIGN TABLE: new_row_type).
TYPE_NAMING_NODES = {
    "CreateDomainStmt", "DefineStmt", "CompositeTypeStmt", "CreateEnumStmt", "CreateRangeStmt",
    "RenameStmt", "AlterObjectSchemaStmt", "CreateStmt", "ViewStmt",
}  # fmt: skip
LEAF_NODES = {"A_Const", "ColumnRef", "ParamRef", "String", "Integer", "Float", "A_Star", "Boolean"}
UTF8_NAMES = {"utf8", "unicode"}
_CONSTANT_FIELDS = (
    ("sval", "sval"), ("String", "sval"), ("ival", "ival"), ("Integer", "ival"),
    ("fval", "fval"), ("Float", "fval"), ("boolval", "boolval"), ("Boolean", "boolval"),
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class StatementInfo:
    text: str
    kind: str
    kinds: frozenset[str]
    tables_read: frozenset[str] = frozenset()
    tables_written: frozenset[str] = frozenset()
    functions: frozenset[str] = frozenset()
    classes: frozenset[str] = frozenset()
    flags: frozenset[str] = frozenset()
    # Those of its tables that every reference names with ONLY (`SELECT * FROM ONLY t`,
    # `TRUNCATE ONLY t`): it reaches their own rows, not their descendants' (policy.py).
    # Not recorded: the trail's `tables` stays the names, ONLY or not.
    tables_only: frozenset[str] = frozenset()

    @property
    def tables(self) -> frozenset[str]:
        return self.tables_read | self.tables_written


@dataclass(frozen=True)
class Classification:
    statements: tuple[StatementInfo, ...]
    error: str | None = None
    # The classification this one was copied from, for a text whose parse tree differs from
    # that one's only in its constants (templates.py): the same in everything but the
    # statement's text. Not part of equality: it says how the result was found, not what it is.
    template: Classification | None = field(default=None, compare=False, repr=False)

    @functools.cached_property
    def kinds(self) -> frozenset[str]:
        return _union(s.kinds for s in self.statements)

    @functools.cached_property
    def tables(self) -> frozenset[str]:
        return _union(s.tables for s in self.statements)

    @functools.cached_property
    def functions(self) -> frozenset[str]:
        return _union(s.functions for s in self.statements)

    @functools.cached_property
    def flags(self) -> frozenset[str]:
        return _union(s.flags for s in self.statements)

    @functools.cached_property
    def may_touch_names(self) -> bool:
        """Whether running this may create or drop prepared statements or portals by SQL
        (PREPARE, DEALLOCATE, DISCARD, DECLARE, CLOSE), or runs code the text does not show
        (a function, DO, CALL, dynamic SQL, anything unparseable) that could."""
        return bool(
            self.error is not None
            or self.kinds & NAME_KINDS
            or self.functions
            or self.flags & {"dynamic_sql", "unparseable"}
        )

    @functools.cached_property
    def reads_only(self) -> bool:
        """Every statement is a plain read as far as the text shows: SELECT or SHOW, calling
        no function (any function may write, a user's above all; that includes operators,
        casts and TABLESAMPLE methods that are not built in, sqlcalls.py), with no flag (no INTO, no
        locking clause, no writable CTE, nothing unparseable) and no table written. What
        the text cannot show stays possible: a view or row-level policy that calls a writing
        function (docs/postgres.md, `postgres.write_ahead`)."""
        return (
            self.error is None
            and bool(self.statements)
            and all(
                s.kinds <= READ_ONLY_KINDS and not (s.functions or s.flags or s.tables_written)
                for s in self.statements
            )
        )


def _union(sets: Iterable[frozenset[str]]) -> frozenset[str]:
    return frozenset().union(*sets)


def constant(node: Any) -> str | None:
    """The text of a constant node (`{"A_Const": {"sval": {"sval": "x"}}}`, `{"String": …}`,
    integers, floats, booleans), or None when `node` is not a constant."""
    if not isinstance(node, dict):
        return None
    node = node.get("A_Const", node)
    for wrapper, key in _CONSTANT_FIELDS:
        inner = node.get(wrapper)
        if isinstance(inner, dict):
            value = inner.get(key)  # libpg_query's JSON omits empty and zero values
            if key == "boolval":
                return "true" if value else "false"
            if value is None:
                return "" if key == "sval" else "0"
            return str(value)
    return None

"""Function calls a statement makes: those its text writes as calls (FuncCall, CALL's unwrapped
`funccall`), and those without a function call in its text: operators, casts and TABLESAMPLE
methods that are not built in.

A call in the text is recorded under its name as written (`lower`, `pg_catalog.now`) and
flagged `dangerous_function` when it is one of DANGEROUS_FUNCTIONS / DANGEROUS_PATTERN; the
SQL-carrying ones hand their arguments on: set_config to sqlsettings.py, QUERY_FUNCTIONS (dblink
and kin) to sqlbodies.py, both reading constants, so those calls are never literal-free.

Calls the text hides, and why: `SELECT a === b` runs the function bound to `===` by CREATE
OPERATOR, which anyone with CREATE on a schema can write in plpgsql (it may DELETE, or be
pg_terminate_backend itself); `'x'::status` runs a user-defined CAST's function or a domain's
CHECK expressions, which may call anything; `TABLESAMPLE system_rows (10)` runs the method's
handler function. Policy rules match on `StatementInfo.functions` and
`Classification.reads_only` admits only statements that call nothing, so each of these is
recorded as a call (and the FUNCTION class), under a name that says what it is:

- `operator(===)`, `myschema.operator(===)`: an operator not in BUILTIN_OPERATORS, or any
  operator qualified with a schema other than pg_catalog (`OPERATOR(myschema.=)`). Read from
  every A_Expr (binary, prefix, `ANY`/`ALL`, `IS DISTINCT FROM`, NULLIF, IN lists, LIKE/ILIKE
  (`~~`, `~~*`), SIMILAR TO (`~`)), from `x === ANY (SELECT …)` (SubLink) and from
  `ORDER BY x USING >>>` (SortBy). BETWEEN names its keywords, not an operator: the server
  compares with `>=` and `<=`.
- `tablesample(system_rows)`, `ext.tablesample(system_rows)`: a method other than the built-in
  `bernoulli` and `system` (pg_catalog's, unqualified or qualified with pg_catalog).
- `cast(status)`, `myschema.cast(status)`: a type not in BUILTIN_TYPES (unqualified or
  qualified with pg_catalog; an array's element type, `int4[]` and `_int4`, counts as that type)
  nor one of information_schema's domains. Read from every `typeName` field the walker meets:
  `::` and CAST, `type 'literal'`, XMLTABLE and ROWS FROM column lists, XMLSERIALIZE, JSON
  RETURNING clauses, and also the column types of CREATE/ALTER TABLE (DDL: a column default is
  converted to that type; `serial` and kin are not types but built in there) and PREPARE's
  parameter types (EXECUTE converts to them). Enums and
  domains are user types, so they count too (fail-closed): a policy allows `cast(status)`.
  The SQL-standard spellings (`int`, `double precision`, `varchar(3)`, `timestamp with time
  zone`) reach us as `pg_catalog.int4` and kin, all built in.

DDL that binds functions by name as options (CREATE AGGREGATE's `sfunc`, CREATE OPERATOR's
`function` and ALTER OPERATOR's `restrict` and `join`, CREATE TYPE's `input` and ALTER TYPE
… SET's `send` and kin, a range's `canonical` and `subtype_diff`, TEXT SEARCH PARSER and
TEMPLATE, a FOREIGN DATA WRAPPER's HANDLER and VALIDATOR: OPTION_FIELDS), in fields of its
own (CREATE TRIGGER and EVENT TRIGGER's `EXECUTE FUNCTION f()`, CREATE CAST's `WITH
FUNCTION f(…)`, CONVERSION, TRANSFORM, ACCESS METHOD and LANGUAGE:
sqlkinds.FUNCTION_FIELDS) or as an operator class's or family's `FUNCTION n f(…)` records
each as a call under its name, as CREATE DOMAIN's CHECK records the calls in it: the server
runs them later with no call in the text (`definition`, `bound_functions`,
`opclass_item`). The types
those options name (a range's `subtype`, an aggregate's `stype`, an operator's `leftarg`)
count as casts, as a composite's attribute types do.

The schema goes in front of the name, as for functions, so policy.py's matching applies as it
is: the pattern `operator(===)` fits the operator in every schema, `myschema.operator(===)` one
schema. Operator names hold fnmatch's `*` and `?`: match them literally as `[*]`, `[?]`.

Names only, never types: the classifier cannot see argument types, so a built-in name stays free
even where a user type overloads it (`=` on a user type runs the user's function), and so does
an unqualified built-in type name shadowed by a user's type: the session's temporary schema is
searched for types before pg_catalog (`CREATE DOMAIN pg_temp.text … CHECK (f(VALUE))` makes
`'x'::text` call f), and so is any schema a search_path lists before pg_catalog. So DDL that
gives a type such a name (BUILTIN_TYPE_NAMES), in any schema, is flagged `shadows_builtin_type`
(`new_type`, `new_row_type`), and policy.py denies it whatever the rules say: CREATE DOMAIN and
CREATE TYPE of every form (a range's `multirange_type_name` too), RENAME TO and SET SCHEMA of a
type or domain, and the same for tables, views, materialized views and foreign tables, whose
row type takes their name (`'(…)'::text` reads a temporary table `text`'s row, running its
columns' domain CHECKs). Sequences and indexes have no row type (PostgreSQL 14 and later).
A type that exists before the session, or that DDL the classifier cannot read creates
(dynamic SQL, an extension's script), is not seen (docs/postgres.md, Limits). Names are
compared as written, after the parser's case folding: a quoted `"Text"` is a user's type,
not `text`.

The hidden-call handlers read operator and type names, never a constant, an offset or the
text: they are literal-free (sqlwalk.py's `LITERAL_FREE`; operator and type names stay in
templates.py's key).
A_Expr is the commonest node they see, so its built-in case is one frozenset lookup.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from . import sqlbodies, sqlsettings
from .sqlkinds import (
    BUILTIN_OPERATORS,
    BUILTIN_TABLESAMPLE_METHODS,
    BUILTIN_TYPE_NAMES,
    BUILTIN_TYPES,
    DANGEROUS_FUNCTIONS,
    DANGEROUS_PATTERN,
    INFORMATION_SCHEMA_TYPES,
    QUERY_FUNCTIONS,
    SERIAL_TYPES,
)

if TYPE_CHECKING:
    from .sqlwalk import StatementWalker

_BUILTIN_SCHEMAS = (None, "pg_catalog")


def func_call(walker: StatementWalker, body: dict[str, Any]) -> None:
    """A FuncCall: `f(…)` anywhere, and CALL's procedure."""
    parts = [p.get("String", {}).get("sval", "") for p in body.get("funcname", ())]
    name = ".".join(parts).lower()
    base = parts[-1].lower() if parts else ""
    walker.functions.add(name)
    walker.classes.add("FUNCTION")
    if base in DANGEROUS_FUNCTIONS or DANGEROUS_PATTERN.fullmatch(base):
        walker.flags.add("dangerous_function")
    if base == "set_config":
        sqlsettings.set_config(walker, body.get("args", ()))
    elif base in QUERY_FUNCTIONS:
        sqlbodies.query_arguments(walker, body.get("args", ()))


def operator_expr(walker: StatementWalker, body: dict[str, Any]) -> None:
    """An A_Expr: `a OP b`, `OP a`, and the forms the grammar turns into an operator."""
    name = body.get("name", ())
    if len(name) == 1 and name[0].get("String", {}).get("sval") in BUILTIN_OPERATORS:
        return
    if "BETWEEN" not in body.get("kind", ""):
        operator(walker, name)


def sublink(walker: StatementWalker, body: dict[str, Any]) -> None:
    """`x OP ANY (SELECT …)`, `(a, b) OP (SELECT …)`: a SubLink with an operator."""
    if "operName" in body:
        operator(walker, body["operName"])


def sort_by(walker: StatementWalker, body: dict[str, Any]) -> None:
    """`ORDER BY x USING OP`."""
    if "useOp" in body:
        operator(walker, body["useOp"])


def operator(walker: StatementWalker, names: list[dict[str, Any]]) -> None:
    schema, name = _split(names)
    if not (name in BUILTIN_OPERATORS and schema in _BUILTIN_SCHEMAS):
        _call(walker, schema, "operator", name)


def table_sample(walker: StatementWalker, body: dict[str, Any]) -> None:
    """`FROM t TABLESAMPLE method (args)`: the method is a handler function."""
    schema, name = _split(body.get("method", ()))
    if not (name in BUILTIN_TABLESAMPLE_METHODS and schema in _BUILTIN_SCHEMAS):
        _call(walker, schema, "tablesample", name)


def table_columns(walker: StatementWalker, items: Any) -> None:
    """The columns of CREATE TABLE and ALTER TABLE … ADD COLUMN: the only places where `serial`
    and kin are built in (shorthand for an integer with a sequence). Anywhere else, a column
    definition list (`f() AS t(a serial)`, a composite type) or a cast, `serial` names a
    user's type of that name, whose CHECKs run (`type_name`)."""
    for item in items:
        column = item.get("ColumnDef")
        if column is not None and "typeName" in column:
            walker.table_column_types.add(id(column["typeName"]))


def added_column(walker: StatementWalker, body: dict[str, Any]) -> None:
    """One ALTER TABLE subcommand."""
    if body.get("subtype") == "AT_AddColumn":
        table_columns(walker, [body.get("def", {})])


def type_name(walker: StatementWalker, body: dict[str, Any]) -> None:
    """A TypeName (stored unwrapped as `typeName`, wrapped in PREPARE's `argtypes`)."""
    schema, name = _split(body.get("names", ()))
    if schema in _BUILTIN_SCHEMAS:
        if name in BUILTIN_TYPES or (name[:1] == "_" and name[1:] in BUILTIN_TYPES):
            return
        if schema is None and name in SERIAL_TYPES and id(body) in walker.table_column_types:
            return
    elif schema == "information_schema" and name in INFORMATION_SCHEMA_TYPES:
        return
    _call(walker, schema, "cast", name)


def prepare(walker: StatementWalker, body: dict[str, Any]) -> None:
    """PREPARE name (types) AS …: EXECUTE converts its arguments to those types."""
    walker.add_kind("prepare", "PrepareStmt")
    for item in body.get("argtypes", ()):
        type_name(walker, item.get("TypeName", {}))


# Objects that are types, and relations that have a row type of their own name.
_TYPE_OBJECTS = frozenset({"OBJECT_TYPE", "OBJECT_DOMAIN"})
_ROW_TYPE_OBJECTS = frozenset(
    {"OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_MATVIEW", "OBJECT_FOREIGN_TABLE"}
)


def new_type(walker: StatementWalker, body: dict[str, Any], node: str) -> None:
    """DDL that creates, renames or moves a type, or a relation with a row type (`node` names
    the statement): flag a resulting name that casts take for a built-in type."""
    if node == "RenameStmt":
        kind = body.get("renameType")
        names = [body.get("newname", "")] if kind in _TYPE_OBJECTS | _ROW_TYPE_OBJECTS else []
    elif node == "AlterObjectSchemaStmt":
        kind = body.get("objectType")
        if kind in _TYPE_OBJECTS:
            names = [_split(body.get("object", {}).get("List", {}).get("items", ()))[1]]
        else:
            names = [body["relation"]["relname"]] if kind in _ROW_TYPE_OBJECTS else []
    elif node == "DefineStmt":  # CREATE TYPE t (…) and the shell CREATE TYPE t
        names = [_split(body["defnames"])[1]] if body.get("kind") == "OBJECT_TYPE" else []
    elif node == "CompositeTypeStmt":
        names = [body["typevar"]["relname"]]
    elif node == "CreateDomainStmt":
        names = [_split(body["domainname"])[1]]
    elif node in ("CreateEnumStmt", "CreateRangeStmt"):
        names = [_split(body["typeName"])[1]]
        for param in body.get("params", ()):  # a range's multirange type may be named too
            option = param.get("DefElem", {})
            if option.get("defname") == "multirange_type_name":
                arg = option.get("arg", {})
                names.append(
                    _split(arg["TypeName"]["names"])[1] if "TypeName" in arg else _sval(arg)
                )
    else:  # CreateStmt, ViewStmt: a relation, and its row type
        names = [body.get("relation", body.get("view", {})).get("relname", "")]
    if any(name in BUILTIN_TYPE_NAMES for name in names):
        walker.flags.add("shadows_builtin_type")


# Where a statement keeps its options: CREATE AGGREGATE, OPERATOR, TYPE (base) and TEXT SEARCH
# PARSER and TEMPLATE (DefineStmt), CREATE TYPE … AS RANGE, ALTER OPERATOR and ALTER TYPE …
# SET (…), and CREATE and ALTER FOREIGN DATA WRAPPER's HANDLER and VALIDATOR.
OPTION_FIELDS = {
    "DefineStmt": "definition", "CreateRangeStmt": "params", "AlterOperatorStmt": "options",
    "AlterTypeStmt": "options", "CreateFdwStmt": "func_options", "AlterFdwStmt": "func_options",
}  # fmt: skip
# The options that name a function the server runs later, without a call in the text, or a
# type, by DefineStmt's kind or the statement's node.
_FUNCTION_OPTIONS = {
    "OBJECT_AGGREGATE": {"sfunc", "finalfunc", "combinefunc", "serialfunc", "deserialfunc"}
    | {"msfunc", "minvfunc", "mfinalfunc"},
    "OBJECT_OPERATOR": {"function", "procedure", "restrict", "join"},
    "OBJECT_TYPE": {"input", "output", "receive", "send", "typmod_in", "typmod_out", "analyze"}
    | {"subscript"},
    "OBJECT_TSPARSER": {"start", "gettoken", "end", "headline", "lextypes"},
    "OBJECT_TSTEMPLATE": {"init", "lexize"},
    "CreateRangeStmt": {"canonical", "subtype_diff"},
    "AlterOperatorStmt": {"restrict", "join"},
    "AlterTypeStmt": {"receive", "send", "typmod_in", "typmod_out", "analyze", "subscript"},
    "CreateFdwStmt": {"handler", "validator"},
    "AlterFdwStmt": {"handler", "validator"},
}
_TYPE_OPTIONS = {
    "OBJECT_AGGREGATE": {"stype", "mstype", "basetype"},
    "OBJECT_OPERATOR": {"leftarg", "rightarg"},
    "OBJECT_TYPE": {"element", "like"},
    "CreateRangeStmt": {"subtype"},
}


def definition(walker: StatementWalker, body: dict[str, Any], node: str) -> None:
    """CREATE AGGREGATE, OPERATOR, TYPE (base, RANGE), TEXT SEARCH …, ALTER OPERATOR and ALTER
    TYPE … SET (…), CREATE and ALTER FOREIGN DATA WRAPPER (OPTION_FIELDS): each function an
    option binds counts as a call, as CREATE DOMAIN's CHECK records what it calls (the server
    runs them later unseen: an operator's function on every `a === b`, a range's canonical
    function on every value built, a type's send function on every binary result, a
    wrapper's handler on every scan of its foreign tables), and each type it names as a cast,
    as a composite's attribute types do. An option's value is a TypeName, a name list
    (`HANDLER s.h`), or a string holding the name; `NONE` and `NO HANDLER` have none."""
    kind = body.get("kind", "") if node == "DefineStmt" else node
    functions, types = _FUNCTION_OPTIONS.get(kind, ()), _TYPE_OPTIONS.get(kind, ())
    for item in body.get(OPTION_FIELDS[node], ()):
        option = item.get("DefElem", {})
        name, arg = option.get("defname"), option.get("arg", {})
        if "TypeName" in arg:
            names = arg["TypeName"].get("names", ())
        else:
            names = arg["List"].get("items", ()) if "List" in arg else _from_string(arg)
        if name in functions and names:
            func_call(walker, {"funcname": names})
        elif name in types and names:
            type_name(walker, {"names": names})


def bound_functions(walker: StatementWalker, body: dict[str, Any], fields: tuple[str, ...]) -> None:
    """CREATE TRIGGER … EXECUTE FUNCTION f(), CREATE CAST … WITH FUNCTION f(…) and kin
    (sqlkinds.FUNCTION_FIELDS): each function a field names counts as a call, as
    `definition`'s options do (the server runs a trigger's function on every row or event
    it fires for, a cast's on every conversion). A field holds the name, or an
    ObjectWithArgs (`{"objname": […], "objargs": […]}`) whose argument types are not read."""
    for field in fields:
        names = body.get(field)
        if isinstance(names, dict):
            names = names.get("objname")
        if names:
            func_call(walker, {"funcname": names})


# CreateOpClassItem's itemtype for `FUNCTION n f(…)` (OPCLASS_ITEM_FUNCTION in parsenodes.h).
_OPCLASS_ITEM_FUNCTION = 2


def opclass_item(walker: StatementWalker, body: dict[str, Any]) -> None:
    """One item of CREATE OPERATOR CLASS or ALTER OPERATOR FAMILY … ADD: `FUNCTION n f(…)`
    binds a support function the index method runs on every insert and scan (a btree's
    comparison function also sorts ORDER BY, DISTINCT and merge joins on the type), so it
    counts as a call, as `bound_functions`' do. DROP FUNCTION n names no function."""
    if body.get("itemtype") == _OPCLASS_ITEM_FUNCTION:
        bound_functions(walker, body, ("name",))


def _from_string(arg: dict[str, Any]) -> list[dict[str, Any]]:
    """`sfunc = 's.f'`: the server reads the string as a qualified name, folding unquoted
    parts to lower case; an unquoted part is folded here too, a quoted one kept as it is."""
    text = _sval(arg)
    parts = [p[1:-1] if p[:1] == '"' == p[-1:] else p.lower() for p in text.split(".")]
    return [{"String": {"sval": part}} for part in parts if part]


def new_row_type(walker: StatementWalker, relation: dict[str, Any] | None) -> None:
    """CREATE TABLE AS, SELECT INTO, CREATE FOREIGN TABLE: the relation's row type."""
    if relation is not None and relation.get("relname") in BUILTIN_TYPE_NAMES:
        walker.flags.add("shadows_builtin_type")


def _split(names: Any) -> tuple[str | None, str]:
    """(schema or None, name) of a qualified name list (`[{"String": {"sval": …}}, …]`); a
    catalog part in front of the schema is the current database's, so it is dropped."""
    parts = [_sval(part) for part in names]
    if not parts:
        return None, ""
    return (parts[-2] if len(parts) > 1 else None), parts[-1]


def _sval(node: dict[str, Any]) -> str:
    return str(node.get("String", {}).get("sval", ""))


def _call(walker: StatementWalker, schema: str | None, what: str, name: str) -> None:
    called = f"{what}({name})"
    walker.functions.add(f"{schema}.{called}".lower() if schema else called.lower())
    walker.classes.add("FUNCTION")

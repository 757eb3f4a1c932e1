"""Type DDL that reaches past its text: ALTER TYPE … CASCADE changes the type's typed tables,
CREATE TYPE … AS RANGE binds functions and names a subtype (sqlstatements.py, sqlcalls.py)."""

from __future__ import annotations

import pytest

from jitctl_postgres.classify import classify

# ALTER TYPE t ADD/DROP/ALTER/RENAME ATTRIBUTE … CASCADE also alters every table created
# `OF t` (and their children): tables its text never names. (sql, tables written)
CASCADES = [
    ("ALTER TYPE t ADD ATTRIBUTE b int CASCADE", set()),
    ("ALTER TYPE s.t DROP ATTRIBUTE b CASCADE", set()),
    ("ALTER TYPE t DROP ATTRIBUTE IF EXISTS b CASCADE", set()),
    ("ALTER TYPE t ALTER ATTRIBUTE b TYPE text CASCADE", set()),
    ('ALTER TYPE t ALTER ATTRIBUTE b SET DATA TYPE bigint COLLATE "C" CASCADE', set()),
    # one subcommand is enough: the others fail without it, or run with it
    ("ALTER TYPE t ADD ATTRIBUTE b int, DROP ATTRIBUTE c CASCADE", set()),
    ("ALTER TYPE t ADD ATTRIBUTE b int CASCADE, DROP ATTRIBUTE c", set()),
    # RENAME ATTRIBUTE also renames a table's column in PostgreSQL 15: `t` stays written
    ("ALTER TYPE t RENAME ATTRIBUTE a TO b CASCADE", {"t"}),
]


@pytest.mark.parametrize(("sql", "written"), CASCADES, ids=[c[0][:60] for c in CASCADES])
def test_alter_type_cascade_changes_tables_its_text_does_not_name(
    sql: str, written: set[str]
) -> None:
    (info,) = classify(sql).statements
    assert (info.kind, info.kinds, info.classes) == ("alter", {"alter"}, {"DDL"})
    assert "unnamed_tables" in info.flags
    assert (info.tables_read, info.tables_written) == (set(), written)


# Without CASCADE (RESTRICT is the default) the server refuses to alter a type that has typed
# tables, so these change the type alone. (sql, tables written)
RESTRICTS = [
    ("ALTER TYPE t ADD ATTRIBUTE b int", set()),
    ("ALTER TYPE t ADD ATTRIBUTE b int RESTRICT", set()),
    ("ALTER TYPE t DROP ATTRIBUTE b", set()),
    ("ALTER TYPE t DROP ATTRIBUTE b RESTRICT", set()),
    ("ALTER TYPE t ALTER ATTRIBUTE b TYPE text", set()),
    ("ALTER TYPE t ALTER ATTRIBUTE b TYPE text RESTRICT", set()),
    ("ALTER TYPE t RENAME ATTRIBUTE a TO b", {"t"}),
    ("ALTER TYPE t RENAME ATTRIBUTE a TO b RESTRICT", {"t"}),
    # other ALTER TYPE forms have no CASCADE and change no table's columns
    ("ALTER TYPE t RENAME TO u", set()),
    ("ALTER TYPE e ADD VALUE 'c'", set()),
]


@pytest.mark.parametrize(("sql", "written"), RESTRICTS, ids=[r[0][:60] for r in RESTRICTS])
def test_alter_type_without_cascade_names_every_table_it_changes(
    sql: str, written: set[str]
) -> None:
    (info,) = classify(sql).statements
    assert "unnamed_tables" not in info.flags
    assert (info.tables_read, info.tables_written) == (set(), written)


# DDL that binds functions by name, as options, records each as a call (the server runs them
# later, unseen: a range's canonical function on every value built, an operator's function on
# every `a === b`), as CREATE DOMAIN's CHECK records the functions it calls; every type it names
# that is not built in counts as a cast, as a composite's attribute types do. (sql, functions)
DEFINITIONS = [
    (
        "CREATE TYPE r AS RANGE (subtype = float8, canonical = f, subtype_diff = s.g)",
        {"f", "s.g"},
    ),
    ("CREATE TYPE r AS RANGE (subtype = mytype)", {"cast(mytype)"}),
    ("CREATE TYPE r AS RANGE (subtype = s.mytype, subtype_opclass = ops)", {"s.cast(mytype)"}),
    ("CREATE TYPE r AS RANGE (subtype = int4, multirange_type_name = m)", set()),
    ("CREATE AGGREGATE a (int) (sfunc = f, stype = int, finalfunc = g)", {"f", "g"}),
    (
        "CREATE AGGREGATE a (int) (sfunc = f, stype = s.acc, combinefunc = c)",
        {"f", "c", "s.cast(acc)"},
    ),
    ("CREATE AGGREGATE a (int) (sfunc = 'S.F', stype = int8)", {"s.f"}),
    ("CREATE AGGREGATE a (BASETYPE = mytype, sfunc = f, stype = int8)", {"f", "cast(mytype)"}),
    ("CREATE OPERATOR === (leftarg = int, rightarg = int, function = f)", {"f"}),
    (
        "CREATE OPERATOR === (rightarg = mytype, procedure = s.f, restrict = eqsel)",
        {"s.f", "eqsel", "cast(mytype)"},
    ),
    ("CREATE TYPE b (input = b_in, output = b_out)", {"b_in", "b_out"}),
    (
        "CREATE TYPE b (input = b_in, output = b_out, element = mytype)",
        {"b_in", "b_out", "cast(mytype)"},
    ),
    ("CREATE TEXT SEARCH TEMPLATE tt (init = i, lexize = l)", {"i", "l"}),
]


@pytest.mark.parametrize(("sql", "functions"), DEFINITIONS, ids=[d[0][:60] for d in DEFINITIONS])
def test_functions_a_definition_binds_are_calls(sql: str, functions: set[str]) -> None:
    (info,) = classify(sql).statements
    assert info.functions == functions
    assert info.classes == ({"DDL", "FUNCTION"} if functions else {"DDL"})
    assert (info.tables_read, info.tables_written) == (set(), set())


def test_binding_a_dangerous_function_to_an_operator_is_flagged() -> None:
    """`SELECT !! 1` would later run it as `operator(!!)`: the CREATE names it."""
    (info,) = classify(
        "CREATE OPERATOR !! (rightarg = int, function = pg_terminate_backend)"
    ).statements
    assert "dangerous_function" in info.flags
    assert info.functions == {"pg_terminate_backend"}

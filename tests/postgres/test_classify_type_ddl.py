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

"""Statements that change tables their text does not name are flagged `unnamed_tables`: every
CASCADE, DROP OWNED, REASSIGN OWNED and DROP EXTENSION (sqlstatements.py's `unnamed_tables`).
ALTER TYPE … ATTRIBUTE … CASCADE: test_classify_type_ddl.py."""

from __future__ import annotations

import pytest

from jitctl_postgres.classify import classify

# What the CASCADE reaches (PostgreSQL 15) in a comment. (sql, kind, tables written)
CASCADES = [
    # the tables whose foreign keys reference orders are emptied too
    ("TRUNCATE orders CASCADE", "truncate", {"orders"}),
    (
        "TRUNCATE TABLE ONLY s.orders, items RESTART IDENTITY CASCADE",
        "truncate",
        {"s.orders", "items"},
    ),
    # other tables' foreign keys to it, views that read it
    ("DROP TABLE orders CASCADE", "drop", {"orders"}),
    ("DROP TABLE IF EXISTS a, b CASCADE", "drop", {"a", "b"}),
    ("DROP VIEW v CASCADE", "drop", {"v"}),
    ("DROP MATERIALIZED VIEW m CASCADE", "drop", {"m"}),
    ("DROP FOREIGN TABLE f CASCADE", "drop", {"f"}),
    ("DROP INDEX orders_pkey CASCADE", "drop", {"orders_pkey"}),  # foreign keys use it
    # columns defaulting to nextval('seq')
    ("DROP SEQUENCE seq CASCADE", "drop", {"seq"}),
    # columns of the type or domain, tables created OF the type
    ("DROP TYPE t CASCADE", "drop", set()),
    ("DROP TYPE IF EXISTS s.t, u CASCADE", "drop", set()),
    ("DROP DOMAIN d CASCADE", "drop", set()),
    ("DROP COLLATION c CASCADE", "drop", set()),
    # every table in it, and other tables' foreign keys to those
    ("DROP SCHEMA s CASCADE", "drop", set()),
    ("DROP EXTENSION e CASCADE", "drop", set()),
    ("DROP SERVER srv CASCADE", "drop", set()),
    ("DROP FOREIGN DATA WRAPPER w CASCADE", "drop", set()),
    # defaults, constraints, indexes, triggers and views that use it
    ("DROP FUNCTION f(int) CASCADE", "drop", set()),
    ("DROP FUNCTION f CASCADE", "drop", set()),
    ("DROP PROCEDURE p() CASCADE", "drop", set()),
    ("DROP ROUTINE r CASCADE", "drop", set()),
    ("DROP AGGREGATE a(int) CASCADE", "drop", set()),
    ("DROP OPERATOR === (int, int) CASCADE", "drop", set()),
    ("DROP OPERATOR CLASS oc USING btree CASCADE", "drop", set()),
    ("DROP CAST (text AS status) CASCADE", "drop", set()),
    ("DROP LANGUAGE plperl CASCADE", "drop", set()),
    # the roles' objects and what depends on them
    ("DROP OWNED BY bob CASCADE", "drop", set()),
    # other tables' foreign keys to the column or constraint, views that read the column
    ("ALTER TABLE orders DROP COLUMN id CASCADE", "alter", {"orders"}),
    ("ALTER TABLE orders DROP id CASCADE", "alter", {"orders"}),
    ("ALTER TABLE orders DROP CONSTRAINT orders_pkey CASCADE", "alter", {"orders"}),
    ("ALTER TABLE IF EXISTS ONLY orders DROP CONSTRAINT IF EXISTS k CASCADE", "alter", {"orders"}),
    ("ALTER FOREIGN TABLE f DROP COLUMN c CASCADE", "alter", {"f"}),
    # one subcommand is enough
    ("ALTER TABLE orders ADD COLUMN n int, DROP COLUMN id CASCADE", "alter", {"orders"}),
    ("ALTER DOMAIN d DROP CONSTRAINT k CASCADE", "alter", set()),
]


@pytest.mark.parametrize(("sql", "kind", "written"), CASCADES, ids=[c[0][:60] for c in CASCADES])
def test_cascade_changes_tables_its_text_does_not_name(
    sql: str, kind: str, written: set[str]
) -> None:
    (info,) = classify(sql).statements
    assert info.kind == kind
    assert "unnamed_tables" in info.flags
    assert info.tables_written == written


# Dropped or given away by owner or membership, whatever the text says.
UNNAMED = [
    "DROP OWNED BY bob",
    "DROP OWNED BY bob RESTRICT",
    "REASSIGN OWNED BY bob TO alice",
    # an extension's member objects (tables its script created among them) go without CASCADE
    "DROP EXTENSION e",
    "DROP EXTENSION IF EXISTS e RESTRICT",
]


@pytest.mark.parametrize("sql", UNNAMED)
def test_owned_objects_and_extension_members_are_tables_the_text_does_not_name(sql: str) -> None:
    (info,) = classify(sql).statements
    assert "unnamed_tables" in info.flags


# Without CASCADE (RESTRICT is the default) the server refuses while anything depends on what
# is dropped, so these change only what they name. (sql, tables written)
RESTRICTS = [
    ("TRUNCATE orders", {"orders"}),
    ("TRUNCATE orders RESTRICT", {"orders"}),
    ("DROP TABLE orders", {"orders"}),
    ("DROP TABLE orders RESTRICT", {"orders"}),
    ("DROP SEQUENCE seq", {"seq"}),
    ("DROP TYPE t", set()),
    ("DROP DOMAIN d RESTRICT", set()),
    ("DROP SCHEMA s", set()),
    ("DROP FUNCTION f(int)", set()),
    ("DROP COLLATION c", set()),
    ("DROP OPERATOR === (int, int)", set()),
    ("ALTER TABLE orders DROP COLUMN id", {"orders"}),
    ("ALTER TABLE orders DROP CONSTRAINT k RESTRICT", {"orders"}),
    ("ALTER TABLE orders ALTER COLUMN id TYPE bigint", {"orders"}),
    ("ALTER DOMAIN d DROP CONSTRAINT k", set()),
]


@pytest.mark.parametrize(("sql", "written"), RESTRICTS, ids=[r[0][:60] for r in RESTRICTS])
def test_without_cascade_a_statement_names_every_table_it_changes(
    sql: str, written: set[str]
) -> None:
    (info,) = classify(sql).statements
    assert "unnamed_tables" not in info.flags
    assert info.tables_written == written


def test_a_cascade_inside_a_do_body_is_flagged() -> None:
    (info,) = classify("DO $$BEGIN TRUNCATE orders CASCADE; END$$").statements
    assert "unnamed_tables" in info.flags

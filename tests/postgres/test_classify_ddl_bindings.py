"""DDL the earlier binding tests left out (test_classify_bound_functions.py,
test_classify_type_ddl.py): a foreign-data wrapper's handler and validator, an operator class's
or family's support functions, and the functions ALTER OPERATOR and ALTER TYPE … SET (…) bind
are calls (the server runs them later, with no call in the text); COMMENT and SECURITY LABEL
on a table or one of its columns, and COMMENT on a trigger, rule, policy or constraint on a
table, write that table (they change its catalog entry)."""

from __future__ import annotations

import pytest

from jitctl_postgres.classify import classify

# (sql, kind, functions)
BINDINGS = [
    ("CREATE FOREIGN DATA WRAPPER w HANDLER h VALIDATOR s.v", "create", {"h", "s.v"}),
    ("CREATE FOREIGN DATA WRAPPER w VALIDATOR V OPTIONS (debug 'true')", "create", {"v"}),
    ("CREATE FOREIGN DATA WRAPPER w", "create", set()),
    ("ALTER FOREIGN DATA WRAPPER w HANDLER s.h VALIDATOR v", "alter", {"s.h", "v"}),
    ("ALTER FOREIGN DATA WRAPPER w NO HANDLER VALIDATOR v", "alter", {"v"}),
    ("ALTER FOREIGN DATA WRAPPER w NO HANDLER NO VALIDATOR", "alter", set()),
    (
        "CREATE OPERATOR CLASS c DEFAULT FOR TYPE int USING btree "
        "AS OPERATOR 1 <, FUNCTION 1 f(int, int)",
        "create",
        {"f"},
    ),
    (
        "CREATE OPERATOR CLASS c FOR TYPE int USING gist "
        "AS FUNCTION 1 (int, int) s.f(int, int), FUNCTION 2 g, STORAGE int",
        "create",
        {"s.f", "g"},
    ),
    ("ALTER OPERATOR FAMILY fam USING btree ADD FUNCTION 1 (int, int) f(int, int)", "alter", {"f"}),
    ("ALTER OPERATOR FAMILY fam USING btree DROP FUNCTION 1 (int, int)", "alter", set()),
    ("ALTER OPERATOR === (int, int) SET (RESTRICT = r, JOIN = s.j)", "alter", {"r", "s.j"}),
    ("ALTER OPERATOR === (int, int) SET (JOIN = 'S.J')", "alter", {"s.j"}),
    ("ALTER OPERATOR === (int, int) SET (RESTRICT = NONE, JOIN = NONE)", "alter", set()),
    (
        "ALTER TYPE t SET (RECEIVE = r, SEND = s, TYPMOD_IN = ti, TYPMOD_OUT = x.to, "
        "ANALYZE = a, SUBSCRIPT = sub)",
        "alter",
        {"r", "s", "ti", "x.to", "a", "sub"},
    ),
    ("ALTER TYPE t SET (SEND = NONE, STORAGE = plain)", "alter", set()),
]


@pytest.mark.parametrize(("sql", "kind", "functions"), BINDINGS, ids=[b[0][:60] for b in BINDINGS])
def test_a_function_ddl_binds_is_a_call(sql: str, kind: str, functions: set[str]) -> None:
    (info,) = classify(sql).statements
    assert info.kind == kind
    assert info.functions == functions
    assert info.classes == ({"DDL", "FUNCTION"} if functions else {"DDL"})
    assert (info.tables_read, info.tables_written) == (set(), set())


def test_binding_a_dangerous_function_to_a_foreign_data_wrapper_is_flagged() -> None:
    (info,) = classify("CREATE FOREIGN DATA WRAPPER w HANDLER pg_terminate_backend").statements
    assert "dangerous_function" in info.flags


# (sql, kind, tables written)
COMMENTS = [
    ("COMMENT ON TABLE t IS 'x'", "comment", {"t"}),
    ("COMMENT ON TABLE db.s.t IS NULL", "comment", {"s.t"}),
    ("COMMENT ON COLUMN t.c IS 'x'", "comment", {"t"}),
    ("COMMENT ON COLUMN s.t.c IS 'x'", "comment", {"s.t"}),
    ("COMMENT ON VIEW v IS 'x'", "comment", {"v"}),
    ("COMMENT ON MATERIALIZED VIEW s.m IS 'x'", "comment", {"s.m"}),
    ("COMMENT ON FOREIGN TABLE f IS 'x'", "comment", {"f"}),
    ("COMMENT ON SEQUENCE q IS 'x'", "comment", {"q"}),
    ("COMMENT ON INDEX i IS 'x'", "comment", {"i"}),
    ("COMMENT ON FUNCTION f(int) IS 'x'", "comment", set()),
    ("COMMENT ON SCHEMA s IS 'x'", "comment", set()),
    ("COMMENT ON TRIGGER x ON t IS 'x'", "comment", {"t"}),  # as DROP TRIGGER x ON t
    ("COMMENT ON TRIGGER x ON db.s.t IS NULL", "comment", {"s.t"}),
    ("COMMENT ON RULE r ON s.t IS 'x'", "comment", {"s.t"}),
    ("COMMENT ON POLICY p ON t IS 'x'", "comment", {"t"}),
    ("COMMENT ON CONSTRAINT c ON s.t IS 'x'", "comment", {"s.t"}),
    ("COMMENT ON CONSTRAINT c ON DOMAIN d IS 'x'", "comment", set()),  # a type, no table
    ("SECURITY LABEL ON TABLE t IS 'x'", "security_label", {"t"}),
    ("SECURITY LABEL FOR selinux ON TABLE s.t IS 'x'", "security_label", {"s.t"}),
    ("SECURITY LABEL ON COLUMN s.t.c IS 'x'", "security_label", {"s.t"}),
    ("SECURITY LABEL ON ROLE r IS 'x'", "security_label", set()),
]


@pytest.mark.parametrize(("sql", "kind", "written"), COMMENTS, ids=[c[0] for c in COMMENTS])
def test_comment_and_security_label_on_a_table_or_what_is_on_it_write_the_table(
    sql: str, kind: str, written: set[str]
) -> None:
    (info,) = classify(sql).statements
    assert (info.kind, info.classes, info.functions) == (kind, {"DDL"}, set())
    assert (info.tables_read, info.tables_written) == (set(), written)

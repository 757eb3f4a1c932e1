"""DDL that binds a function in a field of its own (CREATE TRIGGER … EXECUTE FUNCTION f(),
CREATE CAST … WITH FUNCTION f(…), and kin) records it as a call: the server runs it later,
with no call in the text (sqlcalls.bound_functions). Options such as CREATE OPERATOR's
`function = f`: test_classify_type_ddl.py."""

from __future__ import annotations

import pytest

from jitctl_postgres.classify import classify

# (sql, functions, tables written)
BINDINGS = [
    ("CREATE TRIGGER x BEFORE INSERT ON t FOR EACH ROW EXECUTE FUNCTION f()", {"f"}, {"t"}),
    ("CREATE OR REPLACE TRIGGER x BEFORE UPDATE ON t EXECUTE FUNCTION f()", {"f"}, {"t"}),
    ("CREATE TRIGGER x AFTER DELETE ON s.t EXECUTE PROCEDURE s.f('a', 1)", {"s.f"}, {"s.t"}),
    (
        "CREATE CONSTRAINT TRIGGER x AFTER UPDATE ON t DEFERRABLE "
        "FOR EACH ROW WHEN (NEW.a IS NOT NULL) EXECUTE FUNCTION F()",
        {"f"},
        {"t"},
    ),
    ("CREATE EVENT TRIGGER e ON ddl_command_start EXECUTE FUNCTION f()", {"f"}, set()),
    (
        "CREATE EVENT TRIGGER e ON sql_drop WHEN TAG IN ('DROP TABLE') EXECUTE PROCEDURE s.f()",
        {"s.f"},
        set(),
    ),
    ("CREATE CAST (text AS status) WITH FUNCTION f(text)", {"f"}, set()),
    ("CREATE CAST (int AS status) WITH FUNCTION s.f AS IMPLICIT", {"s.f"}, set()),
    ("CREATE CAST (text AS status) WITHOUT FUNCTION", set(), set()),
    ("CREATE CAST (text AS status) WITH INOUT AS ASSIGNMENT", set(), set()),
    ("CREATE CONVERSION c FOR 'LATIN1' TO 'UTF8' FROM s.f", {"s.f"}, set()),
    ("CREATE ACCESS METHOD am TYPE TABLE HANDLER h", {"h"}, set()),
    (
        "CREATE TRANSFORM FOR t LANGUAGE plpython3u "
        "(FROM SQL WITH FUNCTION a(internal), TO SQL WITH FUNCTION b(internal))",
        {"a", "b"},
        set(),
    ),
    ("CREATE LANGUAGE l HANDLER h INLINE i VALIDATOR v", {"h", "i", "v"}, set()),
]


@pytest.mark.parametrize(
    ("sql", "functions", "written"), BINDINGS, ids=[b[0][:60] for b in BINDINGS]
)
def test_a_function_ddl_binds_is_a_call(sql: str, functions: set[str], written: set[str]) -> None:
    (info,) = classify(sql).statements
    assert info.kind == "create"
    assert info.functions == functions
    assert info.classes == ({"DDL", "FUNCTION"} if functions else {"DDL"})
    assert info.tables_written == written


def test_binding_a_dangerous_function_to_a_trigger_is_flagged() -> None:
    (info,) = classify(
        "CREATE TRIGGER x AFTER INSERT ON t EXECUTE FUNCTION pg_terminate_backend()"
    ).statements
    assert "dangerous_function" in info.flags

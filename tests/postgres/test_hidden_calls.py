"""Operators, casts and sampling methods that run functions the text never calls by name
(sqlcalls.py), as policy sees them: the rules, then psycopg -> `jitctl connect` -> the broker
(a subprocess) -> a real PostgreSQL, whose table the operator's function writes to is the
ground truth."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jitctl.testing.broker import BrokerProcess
from jitctl.testing.issuer import TokenIssuer
from jitctl.testing.postgres import PostgresServer, postgres_available
from jitctl.testing.postgres_broker import TARGET, postgres_broker, tunnel_dsn
from jitctl_postgres.policy import Policy

from .test_policy import decide, rule

needs_postgres = pytest.mark.skipif(
    postgres_available() is not None, reason=f"{postgres_available()}"
)

CONFIG = (
    TARGET
    + """
[[targets.rules]]
name = "no-triple-equals"
match = {{ functions = ["operator(===)"] }}
action = "deny"
"""
)

# `+++` cannot be an operator: a name ending in + or - is cut there (sql-syntax §4.1.3), so
# `1 +++ 2` is `1 + (+(+2))`. `===` can.
SETUP = """
CREATE TABLE side_effects (note text);
CREATE FUNCTION leave_a_mark(a int, b int) RETURNS int LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO side_effects VALUES (a || ' === ' || b);
    RETURN a + b;
END $$;
CREATE OPERATOR === (leftarg = int, rightarg = int, function = leave_a_mark);
"""


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    psycopg = pytest.importorskip("psycopg")
    with PostgresServer() as server:
        with psycopg.connect(server.dsn, autocommit=True) as conn:
            conn.execute(SETUP)
        yield server


@pytest.fixture(scope="module")
def broker(
    pg: PostgresServer, token_issuer: TokenIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    state_dir = tmp_path_factory.mktemp("broker")
    with postgres_broker(CONFIG, pg, token_issuer, state_dir=state_dir) as process:
        process.login_with_token(token_issuer.mint(sub="agent-7", groups=["agents"]))
        yield process


@pytest.fixture(scope="module")
def dsn(broker: BrokerProcess) -> Iterator[str]:
    """Where psycopg connects: the local end of `jitctl connect pg`."""
    with broker.tunnel("pg", "--reason", "hidden calls") as tunnel:
        yield tunnel_dsn(tunnel.port, "postgres")


def test_rules_name_hidden_calls_as_they_name_functions() -> None:
    """Unqualified patterns fit every schema; `*` is a wildcard, `[*]` a literal star; an
    allow rule listing functions must list the casts to user types too."""
    deny = Policy([rule("deny", "ops", functions=["operator(*)", "tablesample(*)"])])
    assert decide(deny, "SELECT a OPERATOR(s.===) b").action == "deny"
    assert decide(deny, "SELECT * FROM t TABLESAMPLE system_rows (1)").action == "deny"
    assert decide(deny, "SELECT a = b, a * b FROM t").action == "allow"
    power = Policy([rule("deny", "power", functions=["operator([*][*])"])])
    assert decide(power, "SELECT a ** b").action == "deny"
    assert decide(power, "SELECT a *** b").action == "allow"
    listed = Policy([rule("allow", "ok", functions=["lower", "cast(status)"]), rule("deny")])
    assert decide(listed, "SELECT lower(x) FROM t WHERE s = 'a'::status").action == "allow"
    assert decide(listed, "SELECT lower(x) FROM t WHERE s = 'a'::mood").action == "deny"


def marks(pg: PostgresServer) -> list[tuple[str]]:
    return pg.execute("SELECT note FROM side_effects")


@needs_postgres
def test_a_deny_rule_on_a_user_defined_operator_keeps_its_function_from_running(
    pg: PostgresServer, broker: BrokerProcess, dsn: str
) -> None:
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(dsn, autocommit=True) as conn:
        for sql in ("SELECT 1 === 2", "SELECT 1 OPERATOR(public.===) 2"):
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="no-triple-equals"):
                conn.execute(sql)
        assert conn.execute("SELECT 1 +++ 2, 1 = 2").fetchone() == (3, False)
    assert marks(pg) == []
    blocked = broker.records("pg.blocked")
    assert [r.payload["rule"] for r in blocked] == ["no-triple-equals"] * 2
    assert pg.execute("SELECT 1 === 2") == [(3,)]  # directly: the operator does write
    assert marks(pg) == [("1 === 2",)]


@needs_postgres
def test_a_temporary_type_named_like_a_built_in_one_is_refused_with_the_guards_reason(
    pg: PostgresServer, broker: BrokerProcess, dsn: str
) -> None:
    """`'x'::text` stays pg_catalog's text, whose cast calls nothing the classifier must see."""
    psycopg = pytest.importorskip("psycopg")
    shadow = (
        "CREATE DOMAIN pg_temp.text AS pg_catalog.text "
        "CHECK (leave_a_mark(pg_catalog.length(VALUE), 0) > 0)"
    )
    pg.execute("DELETE FROM side_effects")
    with psycopg.connect(dsn, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
            conn.execute(shadow)
        assert "names a type like a built-in type" in str(refused.value)
        assert conn.execute("SELECT 'x'::text, pg_typeof('x'::text)").fetchone() == ("x", "text")
    assert marks(pg) == []
    blocked = broker.records("pg.blocked")
    assert blocked[-1].payload["rule"] == "builtin: shadows_builtin_type"
    with psycopg.connect(pg.dsn, autocommit=True) as conn:  # directly: the cast would call it
        conn.execute(shadow)
        assert conn.execute("SELECT 'x'::text").fetchone() == ("x",)
    assert marks(pg) == [("1 === 0",)]

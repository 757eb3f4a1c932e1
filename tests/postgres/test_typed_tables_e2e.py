"""A table created `OF` a type, behind the gateway: altering the type with CASCADE alters the
table without naming it, so a rule protecting the table refuses it (psycopg -> `jitctl
connect` -> the broker -> a real PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jitctl.testing.issuer import TokenIssuer
from jitctl.testing.postgres import PostgresServer, postgres_available
from jitctl.testing.postgres_broker import TARGET, agent_tunnels, tunnel_dsn

pytestmark = pytest.mark.skipif(postgres_available() is not None, reason=f"{postgres_available()}")
psycopg = pytest.importorskip("psycopg")

CONFIG = (
    TARGET
    + """
[[targets.rules]]
name = "payments-frozen"
match = {{ tables = ["payments"] }}
action = "deny"
"""
)

COLUMNS = (
    "SELECT attname FROM pg_attribute WHERE attrelid = 'payments'::regclass "
    "AND attnum > 0 AND NOT attisdropped ORDER BY attnum"
)


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        server.execute("CREATE TYPE payment AS (id int, amount numeric)")
        server.execute("CREATE TABLE payments OF payment")
        yield server


@pytest.fixture(scope="module")
def port(
    pg: PostgresServer, token_issuer: TokenIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[int]:
    state_dir = tmp_path_factory.mktemp("pgbroker")
    with agent_tunnels(CONFIG, pg, token_issuer, state_dir=state_dir) as ports:
        yield ports["pg"]


@pytest.mark.parametrize(
    "text",
    [
        "ALTER TYPE payment ADD ATTRIBUTE note text CASCADE",
        "ALTER TYPE payment DROP ATTRIBUTE amount CASCADE",
        "ALTER TYPE payment ALTER ATTRIBUTE amount TYPE text CASCADE",
        "ALTER TYPE payment RENAME ATTRIBUTE amount TO total CASCADE",
    ],
)
def test_altering_a_type_with_cascade_is_refused_by_a_rule_on_its_typed_table(
    port: int, pg: PostgresServer, text: str
) -> None:
    with (
        psycopg.connect(tunnel_dsn(port, "postgres"), autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="payments-frozen"),
    ):
        conn.execute(text)
    assert pg.execute(COLUMNS) == [("id",), ("amount",)]


def test_without_cascade_the_gateway_lets_it_through_and_the_server_refuses_it(
    port: int, pg: PostgresServer
) -> None:
    """RESTRICT, the default: the server will not alter a type that has typed tables."""
    with (
        psycopg.connect(tunnel_dsn(port, "postgres"), autocommit=True) as conn,
        pytest.raises(psycopg.errors.DependentObjectsStillExist, match="typed table"),
    ):
        conn.execute("ALTER TYPE payment ADD ATTRIBUTE note text")
    assert pg.execute(COLUMNS) == [("id",), ("amount",)]

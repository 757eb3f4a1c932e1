"""A table whose foreign key references another, behind the gateway: a CASCADE on the
referenced table reaches the referencing one without naming it, so a rule protecting that one
refuses it (psycopg -> `jitctl connect` -> the broker -> a real PostgreSQL)."""

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

PAYMENTS = "SELECT order_id FROM payments ORDER BY order_id"
FOREIGN_KEYS = "SELECT conname FROM pg_constraint WHERE conrelid = 'payments'::regclass"


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        server.execute("CREATE TABLE orders (id int PRIMARY KEY)")
        server.execute("CREATE TABLE payments (order_id int CONSTRAINT paid REFERENCES orders)")
        server.execute("INSERT INTO orders VALUES (1), (2)")
        server.execute("INSERT INTO payments VALUES (1), (2)")
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
        "TRUNCATE orders CASCADE",  # would empty payments too
        "DROP TABLE orders CASCADE",  # would drop payments' foreign key
        "ALTER TABLE orders DROP COLUMN id CASCADE",
        "ALTER TABLE orders DROP CONSTRAINT orders_pkey CASCADE",
    ],
)
def test_a_cascade_is_refused_by_a_rule_on_the_table_it_reaches(
    port: int, pg: PostgresServer, text: str
) -> None:
    with (
        psycopg.connect(tunnel_dsn(port, "postgres"), autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match="payments-frozen"),
    ):
        conn.execute(text)
    assert pg.execute(PAYMENTS) == [(1,), (2,)]
    assert pg.execute(FOREIGN_KEYS) == [("paid",)]


def test_without_cascade_the_gateway_lets_it_through_and_the_server_refuses_it(
    port: int, pg: PostgresServer
) -> None:
    """RESTRICT, the default: the server will not truncate a table another one references."""
    with (
        psycopg.connect(tunnel_dsn(port, "postgres"), autocommit=True) as conn,
        pytest.raises(psycopg.errors.FeatureNotSupported, match="foreign key"),
    ):
        conn.execute("TRUNCATE orders")
    assert pg.execute(PAYMENTS) == [(1,), (2,)]

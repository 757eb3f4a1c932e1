"""Partitions and inheritance children behind the gateway: a rule on a parent refuses
statements on its partitions and children, and a rule on a partition or child refuses
statements on its parent, which reach its rows (psycopg -> `jitctl connect` -> the broker ->
a real PostgreSQL). The broker learns the links from the server's catalog at session start."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jitctl.testing.issuer import TokenIssuer
from jitctl.testing.postgres import PostgresServer, postgres_available
from jitctl.testing.postgres_broker import TARGET, agent_tunnels, tunnel_dsn

pytestmark = pytest.mark.skipif(postgres_available() is not None, reason=f"{postgres_available()}")
psycopg = pytest.importorskip("psycopg")

# Target "pg" protects the parents; target "pg-child" (same server) the partition and child.
CONFIG = (
    TARGET
    + """
[[targets.rules]]
name = "parents-frozen"
match = {{ tables = ["payments", "ledger"] }}
action = "deny"

[[targets]]
name = "pg-child"
protocol = "postgres"
address = "127.0.0.1:{port}"
allow_groups = ["agents"]
credential = {{ user = "{user}", password_env = "PG_TEST_PASSWORD", database = "postgres" }}

[[targets.rules]]
name = "children-frozen"
match = {{ tables = ["public.payments_2024", "ledger_eu"] }}
action = "deny"
"""
)

COUNTS = (
    "SELECT (SELECT count(*) FROM payments_2024), (SELECT count(*) FROM payments_2023), "
    "(SELECT count(*) FROM ONLY ledger), (SELECT count(*) FROM ledger_eu)"
)


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresServer]:
    with PostgresServer() as server:
        server.execute("CREATE TABLE payments (year int, amount int) PARTITION BY LIST (year)")
        server.execute("CREATE TABLE payments_2024 PARTITION OF payments FOR VALUES IN (2024)")
        server.execute("CREATE TABLE payments_2023 PARTITION OF payments FOR VALUES IN (2023)")
        server.execute("INSERT INTO payments VALUES (2024, 1), (2023, 2)")
        server.execute("CREATE TABLE ledger (amount int)")
        server.execute("CREATE TABLE ledger_eu () INHERITS (ledger)")
        server.execute("INSERT INTO ledger VALUES (3)")
        server.execute("INSERT INTO ledger_eu VALUES (4)")
        server.execute("CREATE TABLE users (name text)")
        yield server


@pytest.fixture(scope="module")
def ports(
    pg: PostgresServer, token_issuer: TokenIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, int]]:
    state_dir = tmp_path_factory.mktemp("pgbroker")
    targets = ("pg", "pg-child")
    with agent_tunnels(CONFIG, pg, token_issuer, state_dir=state_dir, targets=targets) as ports:
        yield ports


def refused(port: int, text: str, rule: str) -> None:
    with (
        psycopg.connect(tunnel_dsn(port, "postgres"), autocommit=True) as conn,
        pytest.raises(psycopg.errors.InsufficientPrivilege, match=rule),
    ):
        conn.execute(text)


@pytest.mark.parametrize(
    "text",
    [
        "SELECT * FROM payments_2024",  # (a) a partition of the partitioned parent
        "DELETE FROM public.payments_2023",
        "SELECT * FROM ledger_eu",  # (c) a child made with INHERITS
        "DELETE FROM ledger_eu",
        "DELETE FROM ONLY ledger_eu",  # ONLY: its rows are still the parent's
    ],
)
def test_a_rule_on_a_parent_refuses_its_partitions_and_children(
    ports: dict[str, int], pg: PostgresServer, text: str
) -> None:
    refused(ports["pg"], text, "parents-frozen")
    assert pg.execute(COUNTS) == [(1, 1, 1, 1)]


@pytest.mark.parametrize(
    "text",
    [
        "SELECT * FROM payments",  # (b) reads the partition's rows
        "DELETE FROM payments",  # empties the partition too
        "TRUNCATE payments",
        "DROP TABLE payments",  # drops its partitions without CASCADE
        "SELECT * FROM ledger",  # (c) reads the child's rows
        "DELETE FROM ledger",
        "SELECT * FROM ONLY ledger UNION ALL SELECT * FROM ledger",  # ONLY once is not enough
    ],
)
def test_a_rule_on_a_partition_or_child_refuses_its_parent(
    ports: dict[str, int], pg: PostgresServer, text: str
) -> None:
    refused(ports["pg-child"], text, "children-frozen")
    assert pg.execute(COUNTS) == [(1, 1, 1, 1)]


@pytest.mark.parametrize(
    ("target", "text"),
    [
        ("pg", "SELECT * FROM users"),  # (d) unrelated
        ("pg-child", "SELECT * FROM users"),
        ("pg-child", "SELECT year FROM payments_2023"),  # a sibling holds none of its rows
    ],
)
def test_tables_outside_the_family_still_pass(
    ports: dict[str, int], target: str, text: str
) -> None:
    with psycopg.connect(tunnel_dsn(ports[target], "postgres"), autocommit=True) as conn:
        conn.execute(text).fetchall()


def test_only_on_a_parent_passes_a_rule_on_its_partition_or_child(ports: dict[str, int]) -> None:
    """`ONLY` reaches the parent's own rows: none of its partitions' or children's."""
    with psycopg.connect(tunnel_dsn(ports["pg-child"], "postgres"), autocommit=True) as conn:
        assert conn.execute("SELECT amount FROM ONLY ledger").fetchall() == [(3,)]
        assert conn.execute("SELECT count(*) FROM ONLY payments").fetchall() == [(0,)]

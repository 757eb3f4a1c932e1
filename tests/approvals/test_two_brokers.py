"""Two brokers on one PostgreSQL store: a statement held on broker A is released by an approval
given through broker B. Polling is set to 30 s, so only LISTEN/NOTIFY can release it in time."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jitctl.testing.broker import BrokerProcess
from jitctl.testing.issuer import TokenIssuer
from jitctl.testing.postgres import PostgresServer
from jitctl.testing.postgres_broker import postgres_broker, tunnel_dsn

from .conftest import Person

psycopg = pytest.importorskip("psycopg")

CONFIG = """
[broker]
store = "{store}"

[approvals]
poll_interval = "30s"

[[identity.issuers]]
issuer = "{issuer}"

[[targets]]
name = "pg"
protocol = "postgres"
address = "127.0.0.1:{port}"
allow_groups = ["agents"]
credential = {{ user = "{user}", password_env = "PG_TEST_PASSWORD", database = "{db}" }}

[targets.access]
approvers = ["dba"]
approval_timeout = "50s"

[[targets.rules]]
name = "schema-changes"
match = {{ statement = ["alter"] }}
action = "approve"
"""


@pytest.fixture(scope="module")
def brokers(
    pg_server: PostgresServer, token_issuer: TokenIssuer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BrokerProcess, BrokerProcess, str]]:
    db = pg_server.create_database()
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("CREATE TABLE items (id int)")
    fields = {"store": pg_server.create_database(), "db": db.rsplit("/", 1)[1]}
    root = tmp_path_factory.mktemp("brokers")
    with (
        postgres_broker(CONFIG, pg_server, token_issuer, state_dir=root / "a", **fields) as a,
        postgres_broker(CONFIG, pg_server, token_issuer, state_dir=root / "b", **fields) as b,
    ):
        yield a, b, db


def test_a_statement_held_on_broker_a_is_released_by_an_approval_through_broker_b(
    brokers: tuple[BrokerProcess, BrokerProcess, str], people_root: Path, token_issuer: TokenIssuer
) -> None:
    a, b, db = brokers
    agent = Person(people_root, token_issuer, "agent-9", ["agents"])
    bob = Person(people_root, token_issuer, "bob-b", ["dba"])
    notices: list[str] = []
    outcome: dict[str, Any] = {}
    with agent.tunnel(a, "pg") as tunnel:
        dsn = tunnel_dsn(tunnel.port, "app")

        def client() -> None:
            with psycopg.connect(dsn, autocommit=True) as conn:
                conn.add_notice_handler(lambda n: notices.append(n.message_primary))
                outcome["status"] = conn.execute(
                    "ALTER TABLE items ADD COLUMN b text"
                ).statusmessage
                outcome["at"] = time.monotonic()

        thread = threading.Thread(target=client, daemon=True)
        thread.start()
        for _ in range(200):
            if notices:
                break
            time.sleep(0.05)
        match = re.search(r"request ([0-9a-f]{12})", notices[0] if notices else "")
        assert match, notices
        approve = bob.jitctl(b, "request", "approve", match.group(1), "--reason", "via B")
        assert approve.returncode == 0, approve.stderr
        approved_at = time.monotonic()
        thread.join(15)
        assert outcome.get("status") == "ALTER TABLE"
        assert outcome["at"] - approved_at < 3  # NOTIFY, not the 30 s poll
    with psycopg.connect(db) as conn:
        found = conn.execute(
            "SELECT count(*) FROM information_schema.columns WHERE column_name = 'b'"
        ).fetchone()
    assert found == (1,)

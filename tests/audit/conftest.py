"""Fixtures for the audit tests: one throwaway PostgreSQL for the session, a fresh database
per test, the store suite's backend parameter, and a small realistic trail."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from jitctl.audit.chain import Signer, prepare
from jitctl.audit.checkpoint_file import write_checkpoint_file
from jitctl.audit.keys import SigningKey
from jitctl.audit.records import Actor, NewRecord, Record
from jitctl.audit.store import AuditStore, open_store
from jitctl.testing.postgres import PostgresServer, postgres_available

ALICE = Actor(
    subject="alice",
    email="alice@example.com",
    groups=("eng", "dba"),
    issuer="https://idp.example.com",
    agent="claude",
    command="python agent.py --fix",
    reason="INC-42",
    correlation_id="corr-1",
    client_addr="127.0.0.1:50000",
)
BOB = Actor(subject="bob", email="bob@example.com", groups=("eng",))


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for every audit test (start-up is the expensive part)."""
    reason = postgres_available()
    if reason is not None:
        pytest.skip(f"PostgreSQL unavailable: {reason}")
    with PostgresServer() as server:
        yield server


@pytest.fixture
def pg_url(postgres_server: PostgresServer) -> str:
    """A fresh, empty database on the shared server."""
    return postgres_server.create_database()


@dataclass
class Backend:
    """A store URL plus raw SQL access to the same database, for tampering."""

    name: str
    url: str

    def raw(self, sql: str, *params: Any) -> list[tuple[Any, ...]]:
        if self.name == "sqlite":
            db = sqlite3.connect(self.url[len("sqlite://") :], isolation_level=None)
            try:
                return db.execute(sql, params).fetchall()
            finally:
                db.close()
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(sql.replace("?", "%s"), params)  # type: ignore[arg-type]
            return list(cursor.fetchall()) if cursor.description else []


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", f"sqlite://{tmp_path / 'audit.db'}")
    return Backend("postgresql", request.getfixturevalue("pg_url"))


@pytest.fixture
def store(backend: Backend) -> Iterator[AuditStore]:
    opened = open_store(backend.url)
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def key() -> SigningKey:
    return SigningKey.generate()


def session_records(
    session_id: str, actor: Actor = ALICE, target: str = "pg-prod"
) -> list[NewRecord]:
    """start, two data chunks each way, end: what a short tunnel leaves behind."""

    def new(kind: str, payload: dict[str, Any], data: bytes = b"") -> NewRecord:
        return NewRecord(kind, session_id, target, actor, payload, data)

    return [
        new("session.start", {"protocol": "postgres", "upstream": "10.0.0.5:5432"}),
        new("tcp.data", {"dir": "up", "offset": 0, "len": 12}, b"SELECT 1;\x00\x01\x02"),
        new("tcp.data", {"dir": "down", "offset": 0, "len": 5}, b"\xff\x00ok\n"),
        new("tcp.data", {"dir": "up", "offset": 12, "len": 4}, b"\\q\r\n"),
        new(
            "session.end",
            {"bytes_up": 16, "bytes_down": 5, "status": "closed", "reason": "client closed"},
        ),
    ]


def make_trail(
    store: AuditStore, key: Signer, checkpoint_file: Path | None = None, sessions: int = 3
) -> list[Record]:
    """`sessions` sessions, each followed by a signed checkpoint (as the gateway does)."""
    records: list[Record] = []
    for number in range(sessions):
        records += store.append_batch(session_records(f"s{number}"))
        records += store.append_prepared(
            [prepare(NewRecord("policy.reload", payload={"n": number}))], key
        )
    if checkpoint_file is not None:
        write_checkpoint_file(checkpoint_file, records[-1])
    return records

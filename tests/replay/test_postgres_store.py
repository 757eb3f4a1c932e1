"""The reader, the picker's flags, the chain verdict and the terminal on a PostgreSQL trail:
the same SQL as on SQLite, through psycopg."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from jitctl.audit.store import AuditStore, open_store
from jitctl.replay.catalog import Filter, find_sessions
from jitctl.replay.chain import verify_session
from jitctl.replay.reader import SessionReader
from jitctl.replay.terminal import TerminalModel
from jitctl.testing.postgres import PostgresServer, postgres_available

from .conftest import KEY, fill


@pytest.fixture(scope="module")
def pg_store() -> Iterator[AuditStore]:
    reason = postgres_available()
    if reason is not None:
        pytest.skip(f"PostgreSQL unavailable: {reason}")
    with PostgresServer() as server:
        store = open_store(server.create_database())
        fill(store)
        yield store
        store.close()


def test_reader_pages_and_indexes_on_postgresql(pg_store: AuditStore) -> None:
    reader = SessionReader(pg_store, "ssh-demo", page=16)
    reader.build()
    records = list(pg_store.iter_records(session_id="ssh-demo"))
    assert reader.count == len(records)
    assert [r for _, r in reader.records(0, reader.count)] == records
    enter = reader.next_command(0)
    assert enter is not None and reader.record(enter).data == b"\r"
    model = TerminalModel(reader)
    model.seek(reader.count - 1)
    assert model.exact and "logout" in "\n".join(model.lines())


def test_flags_and_chain_on_postgresql(pg_store: AuditStore) -> None:
    flags = {r.summary.id: r.flag_text() for r in find_sessions(pg_store, Filter())}
    assert flags == {"tcp-demo": "···", "pg-demo": "B·M", "ssh-demo": "·A·"}
    reader = SessionReader(pg_store, "pg-demo")
    seqs = reader.index.seqs
    state = verify_session(pg_store, KEY.trusted(), seqs[0], seqs[reader.count - 1])
    assert state.status == "verified", state.text

"""The shared audit store: PostgreSQL through psycopg, for several brokers on one trail.

Rules:
- A batch is one transaction: lock the head row (`SELECT ... FOR UPDATE`), read the head, seal the
  batch, COPY it in, move the head, commit. The row lock serialises appenders across processes
  and machines, so the chain stays contiguous; the commit makes the batch durable (with the
  server's default synchronous_commit=on).
- Schema creation takes a transaction-scoped advisory lock, so brokers starting together do
  not trip over each other's CREATE TABLE.
- One connection in autocommit mode (each read is its own snapshot), guarded by a lock. A lost
  connection is an `AuditUnavailable`; the writer then fails closed rather than reconnecting
  behind the operator's back.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import psycopg

from jitctl.audit.chain import GENESIS, Prepared, Signer, seal_rows
from jitctl.audit.errors import AuditUnavailable
from jitctl.audit.records import Record
from jitctl.audit.store import COLUMNS, AuditStore, redact

_SCHEMA_LOCK = 0x6A697463746C  # "jitctl": the advisory lock id for schema creation
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS audit_records (
        seq BIGINT PRIMARY KEY,
        time_us BIGINT NOT NULL,
        session_id TEXT NOT NULL,
        kind TEXT NOT NULL,
        actor TEXT,
        target TEXT NOT NULL,
        payload TEXT NOT NULL,
        data BYTEA NOT NULL,
        data_sha256 TEXT NOT NULL,
        prev_hash TEXT NOT NULL,
        hash TEXT NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS audit_records_session ON audit_records (session_id)",
    "CREATE INDEX IF NOT EXISTS audit_records_kind ON audit_records (kind)",
    "CREATE INDEX IF NOT EXISTS audit_records_time ON audit_records (time_us)",
    """CREATE TABLE IF NOT EXISTS audit_head (
        id INTEGER PRIMARY KEY CHECK (id = 1),
        seq BIGINT NOT NULL,
        hash TEXT NOT NULL
    )""",
    f"INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS}') ON CONFLICT DO NOTHING",
]


class PgStore(AuditStore):
    def __init__(self, dsn: str) -> None:
        self.url = redact(dsn)
        self._lock = threading.Lock()
        try:
            self._db = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                for statement in SCHEMA:
                    self._db.execute(statement)
        except psycopg.Error as exc:
            raise AuditUnavailable(f"audit store {self.url}: cannot open: {exc}") from None

    def append_prepared(
        self, items: Sequence[Prepared], signer: Signer | None = None
    ) -> list[Record]:
        if not items and signer is None:
            return []
        with self._lock:
            try:
                with self._db.transaction(), self._db.cursor() as cur:
                    cur.execute("SELECT seq, hash FROM audit_head WHERE id = 1 FOR UPDATE")
                    row = cur.fetchone()
                    assert row is not None, "audit_head lost its row"
                    records, rows = seal_rows(items, int(row[0]), str(row[1]), signer)
                    with cur.copy(f"COPY audit_records ({COLUMNS}) FROM STDIN") as copy:
                        for values in rows:
                            copy.write_row(values)
                    cur.execute(
                        "UPDATE audit_head SET seq = %s, hash = %s WHERE id = 1",
                        (records[-1].seq, records[-1].hash),
                    )
            except psycopg.Error as exc:
                raise AuditUnavailable(f"audit store {self.url}: append failed: {exc}") from None
        return records

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                cursor = self._db.execute(sql.replace("?", "%s"), list(params))
                return list(cursor.fetchall())
            except psycopg.Error as exc:
                raise AuditUnavailable(f"audit store {self.url}: read failed: {exc}") from None

    def delete_before(self, seq: int) -> int:
        with self._lock:
            try:
                cursor = self._db.execute("DELETE FROM audit_records WHERE seq < %s", (seq,))
                return cursor.rowcount
            except psycopg.Error as exc:
                raise AuditUnavailable(f"audit store {self.url}: prune failed: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

"""The embedded audit store: one SQLite file in WAL mode with synchronous=FULL.

Rules:
- WAL + synchronous=FULL fsyncs the WAL at every commit, so a batch is durable when
  `append_prepared` returns, even across power loss (sqlite.org/wal.html); group commit makes
  that affordable.
- `BEGIN IMMEDIATE` takes the write lock before the head is read, so several processes (a broker
  and `jitctl audit prune`, say) append one contiguous chain; `busy_timeout` makes them wait.
- One connection, guarded by a lock: the writer thread and readers in other threads take turns.
- A commit reads the head only when another process moved it since our last commit (the head
  move's WHERE tells): one statement fewer per commit.
- Before each append the file must still be the one that was opened (same device and inode):
  in WAL mode SQLite keeps writing happily into a deleted or replaced file, which would record
  into nowhere.
- Indexes: `session_id` (a session's records, in seq order) and kind for `MARK_KINDS` records
  only (a partial index; queries state its condition, see `store`). A commit dirties one more
  page per index it touches, so the data records pay for one index, not three.
- The schema's version is `PRAGMA user_version`; opening an older file migrates it in the
  transaction that creates what is missing (`MIGRATIONS`).
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jitctl.audit.chain import GENESIS, Prepared, Signer, seal_rows
from jitctl.audit.errors import AuditUnavailable
from jitctl.audit.records import Record
from jitctl.audit.store import MARKS, AuditStore

SCHEMA_VERSION = 1
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS audit_records (
    seq INTEGER PRIMARY KEY,
    time_us INTEGER NOT NULL,
    session_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    actor TEXT,
    target TEXT NOT NULL,
    payload TEXT NOT NULL,
    data BLOB NOT NULL,
    data_sha256 TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_records_session ON audit_records (session_id);
CREATE INDEX IF NOT EXISTS audit_records_marks ON audit_records (kind) WHERE {MARKS};
CREATE TABLE IF NOT EXISTS audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT OR IGNORE INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS}');
"""

# From version N to N + 1, run after SCHEMA (so what N lacked exists by then).
MIGRATIONS = {
    # Version 0 indexed every record's kind and time: two more pages dirtied per commit, and
    # no query used the time index (SQLite preferred the primary key). The partial kind index
    # that replaces them is built by SCHEMA (one scan of the table).
    0: ["DROP INDEX IF EXISTS audit_records_kind", "DROP INDEX IF EXISTS audit_records_time"],
}

_HEAD = "SELECT seq, hash FROM audit_head WHERE id = 1"
_MOVE = "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1"
_MOVE_FROM = f"{_MOVE} AND seq = ? AND hash = ?"
_INSERT = "INSERT INTO audit_records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


class SqliteStore(AuditStore):
    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        self.url = f"sqlite://{self.path}"
        self._lock = threading.Lock()
        self._head: tuple[int, str] | None = None  # as our last commit left it
        if not create and not self.path.exists():
            raise AuditUnavailable(
                f"no audit store at {self.path}",
                "point --state-dir or --config at the broker's state directory",
            )
        try:
            if create:
                self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                self.path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._create()
            self._identity = self._file_identity()
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"audit store {self.url}: cannot open: {exc}") from None

    def _create(self) -> None:
        """Create what is missing and migrate an older schema, in one transaction."""
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            for statement in SCHEMA.split(";"):
                if statement.strip():
                    db.execute(statement)
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            while version < SCHEMA_VERSION:
                for statement in MIGRATIONS[version]:
                    db.execute(statement)
                version += 1
                db.execute(f"PRAGMA user_version = {version:d}")
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise

    def append_prepared(
        self, items: Sequence[Prepared], signer: Signer | None = None
    ) -> list[Record]:
        if not items and signer is None:
            return []
        with self._lock:
            db = self._db
            try:
                if self._file_identity() != self._identity:
                    raise sqlite3.OperationalError("the database file was deleted or replaced")
                db.execute("BEGIN IMMEDIATE")
                try:
                    records, rows = self._seal_and_move_head(items, signer)
                    db.executemany(_INSERT, rows)
                    db.execute("COMMIT")
                except BaseException:
                    self._head = None
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise AuditUnavailable(f"audit store {self.url}: append failed: {exc}") from None
            self._head = records[-1].seq, records[-1].hash
        return records

    def _seal_and_move_head(
        self, items: Sequence[Prepared], signer: Signer | None
    ) -> tuple[list[Record], list[tuple[Any, ...]]]:
        """Seal `items` after the head and move the head past them (in the open transaction).

        After our own commit the head is known: one UPDATE moves it and, by its WHERE, checks
        that nobody moved it since (another process appending: `jitctl audit prune`, a second
        broker). Only when somebody did is the head read and the batch sealed again.
        """
        db = self._db
        if self._head is not None:
            records, rows = seal_rows(items, *self._head, signer)
            moved = db.execute(_MOVE_FROM, (records[-1].seq, records[-1].hash, *self._head))
            if moved.rowcount == 1:
                return records, rows
        seq, head = db.execute(_HEAD).fetchone()
        records, rows = seal_rows(items, seq, head, signer)
        db.execute(_MOVE, (records[-1].seq, records[-1].hash))
        return records, rows

    def _file_identity(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_dev, stat.st_ino

    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            try:
                return self._db.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise AuditUnavailable(f"audit store {self.url}: read failed: {exc}") from None

    def delete_before(self, seq: int) -> int:
        with self._lock:
            try:
                cursor = self._db.execute("DELETE FROM audit_records WHERE seq < ?", (seq,))
                return cursor.rowcount
            except sqlite3.Error as exc:
                raise AuditUnavailable(f"audit store {self.url}: prune failed: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

"""The embedded audit store: one SQLite file in WAL mode with synchronous=FULL.

Rules:
- WAL + synchronous=FULL fsyncs the WAL at every commit, so a batch is durable when
  `append_prepared` returns, even across power loss (sqlite.org/wal.html); group commit makes
  that affordable.
- `BEGIN IMMEDIATE` takes the write lock before the head is read, so several processes (a broker
  and `jitctl audit prune`, say) append one contiguous chain; `busy_timeout` makes them wait.
- One connection, guarded by a lock: the writer thread and readers in other threads take turns.
- Before each append the file must still be the one that was opened (same device and inode):
  in WAL mode SQLite keeps writing happily into a deleted or replaced file, which would record
  into nowhere.
"""

from __future__ import annotations

import os
import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jitctl.audit.chain import GENESIS, Prepared, Signer, seal
from jitctl.audit.errors import AuditUnavailable
from jitctl.audit.records import Record
from jitctl.audit.store import AuditStore, prepared_row

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
CREATE INDEX IF NOT EXISTS audit_records_kind ON audit_records (kind);
CREATE INDEX IF NOT EXISTS audit_records_time ON audit_records (time_us);
CREATE TABLE IF NOT EXISTS audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT OR IGNORE INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS}');
"""

_HEAD = "SELECT seq, hash FROM audit_head WHERE id = 1"
_INSERT = "INSERT INTO audit_records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"


class SqliteStore(AuditStore):
    def __init__(self, path: str | Path, *, create: bool = True) -> None:
        self.path = Path(path)
        self.url = f"sqlite://{self.path}"
        self._lock = threading.Lock()
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
            self._db.executescript(f"BEGIN IMMEDIATE; {SCHEMA} COMMIT;")
            self._identity = self._file_identity()
        except sqlite3.Error as exc:
            raise AuditUnavailable(f"audit store {self.url}: cannot open: {exc}") from None

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
                    seq, head = db.execute(
                        "SELECT seq, hash FROM audit_head WHERE id = 1"
                    ).fetchone()
                    records, sealed = seal(items, seq, head, signer)
                    db.executemany(_INSERT, map(prepared_row, records, sealed))
                    db.execute(
                        "UPDATE audit_head SET seq = ?, hash = ? WHERE id = 1",
                        (records[-1].seq, records[-1].hash),
                    )
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise AuditUnavailable(f"audit store {self.url}: append failed: {exc}") from None
        return records

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

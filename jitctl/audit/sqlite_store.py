"""The embedded audit store: one SQLite file in WAL mode with synchronous=FULL.

Rules:
- WAL + synchronous=FULL fsyncs the WAL at every commit, so a batch is durable when
  `append_prepared` returns, even across power loss (sqlite.org/wal.html); group commit makes
  that affordable.
- One connection, guarded by a lock: the writer thread and readers in other threads take turns.
- A batch is one statement: a multi-row INSERT in autocommit mode (up to `FAST_ROWS` rows),
  sealed after the head our last commit left; a trigger of this connection's (`HEAD_TRIGGER`)
  moves the head with each row. Why one: the sqlite3 module lets go of the GIL around every
  statement, and each time the event loop's thread holds it then, the writer thread sleeps and
  must be woken again. With BEGIN, UPDATE, INSERT and COMMIT as four statements, the writer
  thread slept 2.4-2.6 times per HTTP request through the gateway (8 keep-alive connections,
  write-ahead), with one 1.8-2.0 times, and the broker spent ~50 µs less CPU per request. A
  batch of more rows (bulk uploads) takes the transaction below, with its hand-offs.
- When another process appended since (`jitctl audit prune`, a second broker), the first sealed
  seq is taken (PRIMARY KEY). Only then is the head read inside `BEGIN IMMEDIATE`, which takes
  the write lock first, and the batch sealed again: several processes append one contiguous
  chain, and `busy_timeout` makes them wait.
- Before each append the file must still be the one that was opened (same device and inode):
  in WAL mode SQLite keeps writing happily into a deleted or replaced file, which would record
  into nowhere.
- Indexes: kind for `MARK_KINDS` records only (a partial index; queries state its condition,
  see `store`). A commit dirties one more page per index it touches, so the data records pay
  for none.
- A session's records are found through `audit_session_seqs` (session, seq), filled behind the
  head: records up to `audit_session_upto` are in it, newer ones are found by a scan of seq
  above that mark (`_by_session`: the indexed part, then that tail). It is brought up to the
  head in the commit that seals a checkpoint (every `checkpoint_every` records or
  `checkpoint_interval` seconds, and at each session's end) or once `INDEX_LAG` records wait.
  Why: an index on `session_id` dirtied one page per session in every commit, and a commit
  carries the records of many sessions (one's request, the others' responses riding along):
  with 8 busy sessions, 8 of a commit's ~13 pages. Filled a thousand records at a time, each
  session's entries share pages: through the HTTP gateway (8 connections, write-ahead) 2.5-17%
  more GETs per second in 4 alternating pairs, the audit writer ~8% less CPU per GET.
  `session_index_problem` is what `jitctl audit verify` asks of it (the table is derived: a
  tamperer could drop entries to hide records from replay).
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

SCHEMA_VERSION = 2
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
CREATE INDEX IF NOT EXISTS audit_records_marks ON audit_records (kind) WHERE {MARKS};
CREATE TABLE IF NOT EXISTS audit_head (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL
);
INSERT OR IGNORE INTO audit_head (id, seq, hash) VALUES (1, 0, '{GENESIS}');
CREATE TABLE IF NOT EXISTS audit_session_seqs (
    sid TEXT NOT NULL,
    rseq INTEGER NOT NULL,
    PRIMARY KEY (sid, rseq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit_session_upto (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    seq INTEGER NOT NULL
);
INSERT OR IGNORE INTO audit_session_upto (id, seq) VALUES (1, 0);
"""
# A TEMP trigger: it exists only on the connection of the jitctl that opened the file, so a row
# written into the file by other means (sqlite3, a tamperer) does not move the head, and
# `jitctl audit verify` still finds it beyond the head (tests/audit/test_tamper.py). The head
# moves only forward: it stays the newest record whoever appended.
HEAD_TRIGGER = """
CREATE TEMP TRIGGER IF NOT EXISTS audit_records_head AFTER INSERT ON main.audit_records
WHEN NEW.seq > (SELECT seq FROM audit_head WHERE id = 1)
BEGIN UPDATE audit_head SET seq = NEW.seq, hash = NEW.hash WHERE id = 1; END
"""

# From version N to N + 1, run after SCHEMA (so what N lacked exists by then).
MIGRATIONS = {
    # Version 0 indexed every record's kind and time: two more pages dirtied per commit, and
    # no query used the time index (SQLite preferred the primary key). The partial kind index
    # that replaces them is built by SCHEMA (one scan of the table).
    0: ["DROP INDEX IF EXISTS audit_records_kind", "DROP INDEX IF EXISTS audit_records_time"],
    # Version 1 indexed session_id on every record; the session index that replaces it is
    # filled from the records (one scan), up to the head.
    1: [
        "DROP INDEX IF EXISTS audit_records_session",
        "INSERT OR IGNORE INTO audit_session_seqs SELECT session_id, seq FROM audit_records",
        "UPDATE audit_session_upto SET seq = (SELECT coalesce(max(seq), 0) FROM audit_records)",
    ],
}
INDEX_LAG = 4096  # records at most behind the head before a commit fills the session index
_FILL = (
    "INSERT OR IGNORE INTO audit_session_seqs SELECT session_id, seq FROM audit_records "
    "WHERE seq > ?"
)
_UPTO = "SELECT seq FROM audit_session_upto WHERE id = 1"

_HEAD = "SELECT seq, hash FROM audit_head WHERE id = 1"
_INSERT = "INSERT INTO audit_records VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
FAST_ROWS = 64  # the largest batch written as one statement; each row count is one cached shape
_INSERTS = [""] + [
    _INSERT + ", (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)" * (n - 1) for n in range(1, FAST_ROWS + 1)
]


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
                self.path,
                isolation_level=None,
                check_same_thread=False,
                timeout=30.0,
                cached_statements=2 * FAST_ROWS + 64,  # every INSERT shape, and the rest
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._create()
            self._db.execute(HEAD_TRIGGER)
            self._upto = int(self._db.execute(_UPTO).fetchone()[0])  # as our last fill left it
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
            try:
                if self._file_identity() != self._identity:
                    raise sqlite3.OperationalError("the database file was deleted or replaced")
                records = self._append_at_head(items, signer)
                if records is None:
                    records = self._append_after_reading_head(items, signer)
            except sqlite3.Error as exc:
                self._head = None
                raise AuditUnavailable(f"audit store {self.url}: append failed: {exc}") from None
            self._head = records[-1].seq, records[-1].hash
        return records

    def _append_at_head(
        self, items: Sequence[Prepared], signer: Signer | None
    ) -> list[Record] | None:
        """The batch as one statement after the head our last commit left; None when that
        head is unknown or another process moved it since, or the session index is to be
        filled in this commit (module rules)."""
        if self._head is None or len(items) >= FAST_ROWS:  # a checkpoint may add one row
            return None
        if signer is not None or self._head[0] - self._upto >= INDEX_LAG:
            return None
        records, rows = seal_rows(items, *self._head, signer)
        try:
            self._db.execute(_INSERTS[len(rows)], [value for row in rows for value in row])
        except sqlite3.IntegrityError:  # the first seq is taken: somebody appended
            return None
        return records

    def _append_after_reading_head(
        self, items: Sequence[Prepared], signer: Signer | None
    ) -> list[Record]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            seq, head = db.execute(_HEAD).fetchone()
            records, rows = seal_rows(items, seq, head, signer)
            db.executemany(_INSERT, rows)
            upto = records[-1].seq if records else seq
            fill = signer is not None or upto - self._upto >= INDEX_LAG
            if fill:
                db.execute(_FILL + " AND seq <= ?", (db.execute(_UPTO).fetchone()[0], upto))
                db.execute("UPDATE audit_session_upto SET seq = ? WHERE id = 1", (upto,))
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        if fill:
            self._upto = upto
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

    def _by_session(
        self,
        select: str,
        sessions: Sequence[str],
        where: str = "TRUE",
        params: Sequence[Any] = (),
        tail: str = "",
        tail_params: Sequence[Any] = (),
    ) -> list[tuple[Any, ...]]:
        """The indexed part (through `audit_session_seqs`), then the records above its mark."""
        marks = ", ".join("?" for _ in sessions)
        indexed = (
            f"SELECT {select} FROM audit_session_seqs JOIN audit_records ON seq = rseq "
            f"WHERE sid IN ({marks}) AND rseq <= ? AND {where.format(seq='rseq')} "
            f"{tail.format(seq='rseq')}"
        )
        recent = (
            f"SELECT {select} FROM audit_records WHERE seq > ? AND session_id IN ({marks}) "
            f"AND {where.format(seq='seq')} {tail.format(seq='seq')}"
        )
        with self._lock:
            try:
                upto = int(self._db.execute(_UPTO).fetchone()[0])
                rows = self._db.execute(
                    indexed, [*sessions, upto, *params, *tail_params]
                ).fetchall()
                rows += self._db.execute(
                    recent, [upto, *sessions, *params, *tail_params]
                ).fetchall()
                return rows
            except sqlite3.Error as exc:
                raise AuditUnavailable(f"audit store {self.url}: read failed: {exc}") from None

    def session_index_problem(self) -> tuple[int, str] | None:
        """The first record at or below the session index's mark that it does not name, or
        the first entry naming no such record (module rules)."""
        upto = int(self._rows(_UPTO)[0][0])
        missing = self._rows(
            "SELECT seq FROM audit_records AS r WHERE seq <= ? AND NOT EXISTS (SELECT 1 FROM "
            "audit_session_seqs WHERE sid = r.session_id AND rseq = r.seq) ORDER BY seq LIMIT 1",
            [upto],
        )
        if missing:
            seq = int(missing[0][0])
            return seq, "the session index leaves this record out (it would be hidden from replay)"
        stray = self._rows(
            "SELECT rseq FROM audit_session_seqs AS s WHERE rseq > ? OR NOT EXISTS (SELECT 1 "
            "FROM audit_records WHERE seq = s.rseq AND session_id = s.sid) ORDER BY rseq LIMIT 1",
            [upto],
        )
        if stray:
            return int(stray[0][0]), "the session index names a record that is not there"
        return None

    def delete_before(self, seq: int) -> int:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.execute("DELETE FROM audit_session_seqs WHERE rseq < ?", (seq,))
                cursor = self._db.execute("DELETE FROM audit_records WHERE seq < ?", (seq,))
                self._db.execute("COMMIT")
                return cursor.rowcount
            except sqlite3.Error as exc:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise AuditUnavailable(f"audit store {self.url}: prune failed: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()

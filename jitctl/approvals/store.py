"""Approval requests and votes in the broker's store database, beside the audit tables.

Rules:
- Two tables of our own, `approval_requests` and `approval_votes` (primary key (request,
  subject): an approver counts once), created on open. The audit tables are never touched.
- Same URL as the audit store (`sqlite:///...` or `postgresql://...`) but our own connection,
  so an approval never waits behind an audit batch.
- Every change is one transaction that first locks the request (SQLite `BEGIN IMMEDIATE`,
  PostgreSQL `SELECT ... FOR UPDATE`), re-reads it, lets a pure function (rules.py) decide, and
  writes; several brokers on one PostgreSQL store therefore never double-grant, and the second
  of two racing timeouts/approvals sees the first one's outcome.
- On PostgreSQL each change also sends `NOTIFY approval_changes, '<id>'` (delivered on commit)
  so other brokers wake at once (wakeups.py); SQLite brokers poll.
- The SQL is written once with `?` placeholders; the PostgreSQL side translates.
- Failures are `StoreUnavailable`; the service answers 503 and the gateway fails closed.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from jitctl.approvals.models import Kind, Request, Status, Vote
from jitctl.audit.records import Actor

CHANNEL = "approval_changes"
_SCHEMA_LOCK = 0x6A697461707072  # advisory lock id for creating our tables ("jitappr")
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS approval_requests (
        id TEXT PRIMARY KEY,
        kind TEXT NOT NULL,
        target TEXT NOT NULL,
        status TEXT NOT NULL,
        subject TEXT NOT NULL,
        requester TEXT NOT NULL,
        reason TEXT NOT NULL,
        duration DOUBLE PRECISION NOT NULL,
        text TEXT NOT NULL,
        details TEXT NOT NULL,
        approvers TEXT NOT NULL,
        min_approvals INTEGER NOT NULL,
        session_id TEXT NOT NULL,
        broker TEXT NOT NULL,
        created_at DOUBLE PRECISION NOT NULL,
        deadline DOUBLE PRECISION NOT NULL,
        decided_at DOUBLE PRECISION,
        expires_at DOUBLE PRECISION,
        decided_by TEXT NOT NULL,
        decision_reason TEXT NOT NULL,
        version INTEGER NOT NULL
    )""",
    "CREATE INDEX IF NOT EXISTS approval_requests_status ON approval_requests (status)",
    "CREATE INDEX IF NOT EXISTS approval_requests_subject ON approval_requests (subject, target)",
    """CREATE TABLE IF NOT EXISTS approval_votes (
        request_id TEXT NOT NULL,
        subject TEXT NOT NULL,
        email TEXT NOT NULL,
        vote TEXT NOT NULL,
        reason TEXT NOT NULL,
        at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (request_id, subject)
    )""",
]
_COLUMNS = (
    "id, kind, target, status, subject, requester, reason, duration, text, details, approvers, "
    "min_approvals, session_id, broker, created_at, deadline, decided_at, expires_at, "
    "decided_by, decision_reason, version"
)
_UPDATABLE = ("status", "decided_at", "expires_at", "decided_by", "decision_reason")

Run = Callable[[str, Sequence[Any]], list[tuple[Any, ...]]]


class StoreUnavailable(Exception):
    pass


def _row(request: Request) -> tuple[Any, ...]:
    return (
        request.id,
        request.kind.value,
        request.target,
        request.status.value,
        request.requester.subject,
        json.dumps(request.requester.to_dict(), sort_keys=True),
        request.reason,
        request.duration,
        request.text,
        json.dumps(request.details, sort_keys=True, default=str),
        json.dumps(list(request.approvers)),
        request.min_approvals,
        request.session_id,
        request.broker,
        request.created_at,
        request.deadline,
        request.decided_at,
        request.expires_at,
        request.decided_by,
        request.decision_reason,
        request.version,
    )


def _request(row: Sequence[Any], votes: Sequence[Vote]) -> Request:
    (rid, kind, target, status, _, requester, reason, duration, text, details, approvers) = row[:11]
    (minimum, session_id, broker, created, deadline, decided_at, expires_at) = row[11:18]
    decided_by, decision_reason, version = row[18:21]
    return Request(
        id=rid,
        kind=Kind(kind),
        target=target,
        status=Status(status),
        requester=Actor.from_dict(json.loads(requester)),
        reason=reason,
        created_at=float(created),
        deadline=float(deadline),
        approvers=tuple(json.loads(approvers)),
        min_approvals=int(minimum),
        duration=float(duration),
        text=text,
        details=json.loads(details),
        session_id=session_id,
        broker=broker,
        decided_at=None if decided_at is None else float(decided_at),
        expires_at=None if expires_at is None else float(expires_at),
        decided_by=decided_by,
        decision_reason=decision_reason,
        version=int(version),
        votes=tuple(votes),
    )


class ApprovalStore:
    """Synchronous and thread-safe; the service calls it through `asyncio.to_thread`."""

    url: str
    notifies = False  # True when other brokers hear about changes without polling

    def __init__(self) -> None:
        self._lock = threading.Lock()

    # -- the backend's part -------------------------------------------------------------------
    @contextlib.contextmanager
    def _transaction(self, lock: bool) -> Iterator[Run]:
        raise NotImplementedError
        yield  # pragma: no cover

    def _announce(self, run: Run, request_id: str) -> None:
        """Tell other brokers (inside the transaction)."""

    def close(self) -> None:
        raise NotImplementedError

    # -- shared ---------------------------------------------------------------------------------
    def insert(self, request: Request) -> None:
        with self._transaction(lock=True) as run:
            run(f"INSERT INTO approval_requests ({_COLUMNS}) VALUES ({_marks(21)})", _row(request))
            self._announce(run, request.id)

    def get(self, request_id: str) -> Request | None:
        with self._transaction(lock=False) as run:
            return self._load(run, request_id, lock=False)

    def find(
        self,
        *,
        status: Sequence[Status] = (),
        kind: Kind | None = None,
        subject: str | None = None,
        target: str | None = None,
        ids: Sequence[str] = (),
        due_before: float | None = None,
        limit: int = 500,
    ) -> list[Request]:
        """Requests matching every filter given, newest first."""
        where: list[str] = []
        params: list[Any] = []
        if status:
            where.append(f"status IN ({_marks(len(status))})")
            params += [s.value for s in status]
        if kind is not None:
            where.append("kind = ?")
            params.append(kind.value)
        if subject is not None:
            where.append("subject = ?")
            params.append(subject)
        if target is not None:
            where.append("target = ?")
            params.append(target)
        if ids:
            where.append(f"id IN ({_marks(len(ids))})")
            params += list(ids)
        if due_before is not None:  # pending past its deadline, or a grant past its end
            where.append(
                "((status = 'pending' AND deadline <= ?) OR "
                "(status = 'approved' AND kind = 'access' AND expires_at <= ?))"
            )
            params += [due_before, due_before]
        sql = f"SELECT {_COLUMNS} FROM approval_requests"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY created_at DESC LIMIT {int(limit)}"
        with self._transaction(lock=False) as run:
            rows = run(sql, params)
            votes = self._votes(run, [row[0] for row in rows])
        return [_request(row, votes.get(row[0], [])) for row in rows]

    def change(
        self, request_id: str, decide: Callable[[Request], tuple[dict[str, Any], Vote | None]]
    ) -> tuple[Request, Request]:
        """Lock the request, let `decide(request)` return (column changes, a vote to add),
        write them; returns (before, after). `decide` may raise to change nothing."""
        with self._transaction(lock=True) as run:
            before = self._load(run, request_id, lock=True)
            if before is None:
                raise LookupError(request_id)
            changes, vote = decide(before)
            if vote is not None:
                run(
                    "INSERT INTO approval_votes VALUES (?, ?, ?, ?, ?, ?)",
                    (request_id, vote.subject, vote.email, vote.vote, vote.reason, vote.at),
                )
            if changes or vote is not None:
                changes = {k: v for k, v in changes.items() if k in _UPDATABLE}
                sets = "".join(f"{k} = ?, " for k in changes)
                values = [v.value if isinstance(v, Status) else v for v in changes.values()]
                run(
                    f"UPDATE approval_requests SET {sets}version = version + 1 WHERE id = ?",
                    [*values, request_id],
                )
                self._announce(run, request_id)
            after = self._load(run, request_id, lock=False)
            assert after is not None
        return before, after

    def _load(self, run: Run, request_id: str, *, lock: bool) -> Request | None:
        sql = f"SELECT {_COLUMNS} FROM approval_requests WHERE id = ?"
        rows = run(sql + (self._for_update if lock else ""), [request_id])
        if not rows:
            return None
        return _request(rows[0], self._votes(run, [request_id]).get(request_id, []))

    _for_update = ""

    def _votes(self, run: Run, ids: Sequence[str]) -> dict[str, list[Vote]]:
        out: dict[str, list[Vote]] = {}
        for start in range(0, len(ids), 500):
            chunk = list(ids[start : start + 500])
            rows = run(
                "SELECT request_id, subject, email, vote, reason, at FROM approval_votes "
                f"WHERE request_id IN ({_marks(len(chunk))}) ORDER BY at",
                chunk,
            )
            for rid, subject, email, vote, reason, at in rows:
                out.setdefault(rid, []).append(Vote(subject, email, vote, reason, float(at)))
        return out


def _marks(count: int) -> str:
    return ", ".join("?" * count)


class SqliteApprovalStore(ApprovalStore):
    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.url = f"sqlite://{path}"
        try:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False, timeout=30.0
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")
            self._db.execute("PRAGMA busy_timeout=30000")
            self._db.execute("BEGIN IMMEDIATE")
            for statement in SCHEMA:
                self._db.execute(statement)
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StoreUnavailable(f"approval store {self.url}: cannot open: {exc}") from None

    @contextlib.contextmanager
    def _transaction(self, lock: bool) -> Iterator[Run]:
        with self._lock:
            db = self._db

            def run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
                return db.execute(sql, tuple(params)).fetchall()

            try:
                db.execute("BEGIN IMMEDIATE" if lock else "BEGIN")
                try:
                    yield run
                    db.execute("COMMIT")
                except BaseException:
                    if db.in_transaction:
                        db.execute("ROLLBACK")
                    raise
            except sqlite3.IntegrityError as exc:
                raise _integrity(exc) from None
            except sqlite3.Error as exc:
                raise StoreUnavailable(f"approval store {self.url}: {exc}") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()


class PgApprovalStore(ApprovalStore):
    notifies = True
    _for_update = " FOR UPDATE"

    def __init__(self, dsn: str) -> None:
        import psycopg

        from jitctl.audit.store import redact

        super().__init__()
        self.dsn, self.url = dsn, redact(dsn)
        try:
            self._db = psycopg.connect(dsn, autocommit=True, connect_timeout=10)
            with self._db.transaction():
                self._db.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
                for statement in SCHEMA:
                    self._db.execute(statement)
        except psycopg.Error as exc:
            raise StoreUnavailable(f"approval store {self.url}: cannot open: {exc}") from None

    @contextlib.contextmanager
    def _transaction(self, lock: bool) -> Iterator[Run]:
        import psycopg

        with self._lock:
            db = self._db

            def run(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
                cursor = db.execute(sql.replace("?", "%s"), list(params))
                return list(cursor.fetchall()) if cursor.description else []

            try:
                with db.transaction():
                    yield run
            except psycopg.errors.UniqueViolation as exc:
                raise _integrity(exc) from None
            except psycopg.Error as exc:
                raise StoreUnavailable(f"approval store {self.url}: {exc}") from None

    def _announce(self, run: Run, request_id: str) -> None:
        run("SELECT pg_notify(?, ?)", [CHANNEL, request_id])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class Duplicate(Exception):
    """A row with that key exists (the same approver twice, or an id reused)."""


def _integrity(exc: Exception) -> Exception:
    return Duplicate(str(exc))


def open_approval_store(url: str) -> ApprovalStore:
    if url.startswith("sqlite://"):
        path = url.removeprefix("sqlite://")
        return SqliteApprovalStore(path[1:] if path.startswith("//") else path)
    if url.startswith(("postgresql://", "postgres://")):
        return PgApprovalStore(url)
    raise StoreUnavailable(f"unsupported store URL {url!r}")

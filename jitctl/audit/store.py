"""The audit store interface, shared by the SQLite and PostgreSQL backends.

Rules:
- One table of records (`audit_records`) and a one-row head table (`audit_head`); both are
  created on open when missing. docs/audit-schema.md lists the columns.
- `append_prepared` seals and inserts a batch in one transaction under the store's write lock
  (SQLite `BEGIN IMMEDIATE`, PostgreSQL `SELECT ... FOR UPDATE` on the head row), so writers in
  several processes still produce one contiguous chain; it returns once the batch is durable.
- Reads are paged by seq and never load the whole trail.
- Every failure of the store is an `AuditUnavailable` naming the store and the operation.
- The SQL is written once with `?` placeholders; a backend translates it if it must.
- A query for one session's records (or a few sessions') goes through `_by_session`, whose
  `where` and `tail` write the seq column as `{seq}`: a backend may find a session's records
  another way than by an index on `session_id` (the SQLite store keeps a session index it
  fills behind the head, see sqlite_store) and return the rows in two parts, each in its
  own order; callers take the first n rows for a LIMIT n and add up aggregates.
- A query for structural kinds across the whole trail (session starts and ends, checkpoints,
  prune anchors: `MARK_KINDS`) also states `MARKS` word for word: the SQLite store indexes
  kinds only for those records (a partial index, whose condition SQLite's planner matches by
  its text), so the records on the hot path (data chunks) cost no kind index entry each.
"""

from __future__ import annotations

import abc
import json
from collections.abc import Iterator, Sequence
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from jitctl.audit.chain import CHECKPOINT, PRUNED, Prepared, Signer, prepare
from jitctl.audit.errors import AuditUnavailable
from jitctl.audit.records import Actor, NewRecord, Record, SessionSummary
from jitctl.audit.sessions import DENIED_PREFIX, END_KIND, START_KINDS, matches_user, summarize

COLUMNS = (
    "seq, time_us, session_id, kind, actor, target, payload, data, data_sha256, prev_hash, hash"
)
_CHUNK = 500  # ids per IN (...) list
MARK_KINDS = (*START_KINDS, END_KIND, CHECKPOINT, PRUNED)
MARKS = f"kind IN ({', '.join(repr(kind) for kind in MARK_KINDS)})"  # SQL: 'a' quotes


def redact(url: str) -> str:
    """`url` without its password, for messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit(parts._replace(netloc=netloc))


def row_to_record(row: Sequence[Any]) -> tuple[Record, str]:
    """A stored row as (Record, the stored data_sha256)."""
    seq, time_us, session_id, kind, actor, target, payload, data, data_sha, prev, digest = row
    return (
        Record(
            kind=kind,
            session_id=session_id,
            target=target,
            actor=Actor.from_dict(json.loads(actor)) if actor else None,
            payload=json.loads(payload),
            data=bytes(data or b""),
            time_us=int(time_us),
            seq=int(seq),
            prev_hash=prev,
            hash=digest,
        ),
        data_sha,
    )


class AuditStore(abc.ABC):
    """Where the trail lives. Synchronous and thread-safe; `AuditWriter` adds the async side."""

    url: str  # redacted, for messages

    # -- the backend's part -------------------------------------------------------------------
    @abc.abstractmethod
    def append_prepared(
        self, items: Sequence[Prepared], signer: Signer | None = None
    ) -> list[Record]:
        """Seal and insert `items` (plus a checkpoint when `signer` is given), durably."""

    @abc.abstractmethod
    def _rows(self, sql: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Run a read query written with `?` placeholders."""

    def _by_session(
        self,
        select: str,
        sessions: Sequence[str],
        where: str = "TRUE",
        params: Sequence[Any] = (),
        tail: str = "",
        tail_params: Sequence[Any] = (),
    ) -> list[tuple[Any, ...]]:
        """`SELECT select` over the records of `sessions` that fit `where`, then `tail`
        (ORDER BY, LIMIT, GROUP BY); `{seq}` in `where` and `tail` is the seq column. Rules in
        the module docstring: rows may come in parts."""
        marks = ", ".join("?" for _ in sessions)
        return self._rows(
            f"SELECT {select} FROM audit_records WHERE session_id IN ({marks}) "
            f"AND {where.format(seq='seq')} {tail.format(seq='seq')}",
            [*sessions, *params, *tail_params],
        )

    def session_index_problem(self) -> tuple[int, str] | None:
        """(seq, problem) when an index the backend derives from the records disagrees with
        them (`jitctl audit verify`); None when it agrees or there is none to check."""
        return None

    @abc.abstractmethod
    def delete_before(self, seq: int) -> int:
        """Delete every record below `seq` (prune); returns how many went."""

    @abc.abstractmethod
    def close(self) -> None: ...

    # -- shared ---------------------------------------------------------------------------------
    def append_batch(self, records: Sequence[NewRecord]) -> list[Record]:
        return self.append_prepared([prepare(record) for record in records])

    def head(self) -> tuple[int, str]:
        (row,) = self._rows("SELECT seq, hash FROM audit_head WHERE id = 1")
        return int(row[0]), str(row[1])

    def count(self) -> int:
        return int(self._rows("SELECT count(*) FROM audit_records")[0][0])

    def first_seq(self) -> int | None:
        value = self._rows("SELECT min(seq) FROM audit_records")[0][0]
        return None if value is None else int(value)

    def last_seq(self) -> int | None:
        """The highest seq stored (normally the head's; above it only if rows were slipped in)."""
        value = self._rows("SELECT max(seq) FROM audit_records")[0][0]
        return None if value is None else int(value)

    def first_seq_since(self, time_us: int) -> int | None:
        """The lowest seq whose time is at or after `time_us`: every record below is older."""
        value = self._rows("SELECT min(seq) FROM audit_records WHERE time_us >= ?", [time_us])
        return None if value[0][0] is None else int(value[0][0])

    def get(self, seq: int) -> Record | None:
        rows = self._rows(f"SELECT {COLUMNS} FROM audit_records WHERE seq = ?", [seq])
        return row_to_record(rows[0])[0] if rows else None

    def latest(self, kind: str = CHECKPOINT) -> Record | None:
        marks = f"{MARKS} AND " if kind in MARK_KINDS else ""
        rows = self._rows(
            f"SELECT {COLUMNS} FROM audit_records WHERE {marks}kind = ? ORDER BY seq DESC LIMIT 1",
            [kind],
        )
        return row_to_record(rows[0])[0] if rows else None

    def iter_records(
        self,
        *,
        from_seq: int = 1,
        to_seq: int | None = None,
        session_id: str | None = None,
        kinds: Sequence[str] | None = None,
        since_us: int | None = None,
        until_us: int | None = None,
        batch: int = 1000,
    ) -> Iterator[Record]:
        """Records in seq order, fetched `batch` at a time; `until_us` is exclusive."""
        stored = self.iter_stored(
            from_seq=from_seq,
            to_seq=to_seq,
            session_id=session_id,
            kinds=kinds,
            since_us=since_us,
            until_us=until_us,
            batch=batch,
        )
        for record, _ in stored:
            yield record

    def iter_stored(
        self,
        *,
        from_seq: int = 1,
        to_seq: int | None = None,
        session_id: str | None = None,
        kinds: Sequence[str] | None = None,
        since_us: int | None = None,
        until_us: int | None = None,
        batch: int = 1000,
    ) -> Iterator[tuple[Record, str]]:
        """Like `iter_records`, with each record's stored data_sha256 (for verification)."""
        where: list[str] = ["{seq} >= ?"]
        params: list[Any] = []
        if to_seq is not None:
            where.append("{seq} <= ?")
            params.append(to_seq)
        if kinds is not None:
            if not kinds:
                return
            if session_id is None and set(kinds) <= set(MARK_KINDS):
                where.append(MARKS)  # (with a session, its own index is the better path)
            where.append(f"kind IN ({', '.join('?' for _ in kinds)})")
            params.extend(kinds)
        if since_us is not None:
            where.append("time_us >= ?")
            params.append(since_us)
        if until_us is not None:
            where.append("time_us < ?")
            params.append(until_us)
        condition = " AND ".join(where)
        sql = f"SELECT {COLUMNS} FROM audit_records WHERE {condition.format(seq='seq')} "
        sql += "ORDER BY seq LIMIT ?"
        next_seq = from_seq
        while True:
            if session_id is None:
                rows = self._rows(sql, [next_seq, *params, batch])
            else:
                rows = self._by_session(
                    COLUMNS,
                    [session_id],
                    condition,
                    [next_seq, *params],
                    "ORDER BY {seq} LIMIT ?",
                    [batch],
                )[:batch]
            for row in rows:
                yield row_to_record(row)
            if len(rows) < batch:
                return
            next_seq = int(rows[-1][0]) + 1

    def sessions(
        self,
        *,
        target: str | None = None,
        user: str | None = None,
        since_us: int | None = None,
        limit: int | None = None,
    ) -> list[SessionSummary]:
        """Sessions newest first, from their start/denied records."""
        where = [MARKS, f"kind IN ({', '.join('?' for _ in START_KINDS)})"]
        params: list[Any] = list(START_KINDS)
        if target is not None:
            where.append("target = ?")
            params.append(target)
        if since_us is not None:
            where.append("time_us >= ?")
            params.append(since_us)
        sql = (
            f"SELECT {COLUMNS} FROM audit_records WHERE {' AND '.join(where)} AND seq < ? "
            "ORDER BY seq DESC LIMIT ?"
        )
        starts: dict[str, Record] = {}
        below = self.head()[0] + 1
        while limit is None or len(starts) < limit:
            rows = self._rows(sql, [*params, below, 500])
            for row in rows:
                record = row_to_record(row)[0]
                if not record.session_id:  # a refusal before any session existed
                    record = replace(record, session_id=f"{DENIED_PREFIX}{record.seq}")
                if user is None or matches_user(record, user):
                    # Walking backwards: a later duplicate start is replaced by the first one.
                    starts.pop(record.session_id, None)
                    starts[record.session_id] = record
            if len(rows) < 500:
                break
            below = int(rows[-1][0])
        ordered = sorted(starts.values(), key=lambda r: r.seq, reverse=True)[:limit]
        return self._summaries(ordered)

    def session(self, session_id: str) -> SessionSummary | None:
        if session_id.startswith(DENIED_PREFIX) and session_id[len(DENIED_PREFIX) :].isdigit():
            record = self.get(int(session_id[len(DENIED_PREFIX) :]))
            if record is None or record.kind != "session.denied" or record.session_id:
                return None
            return self._summaries([replace(record, session_id=session_id)])[0]
        kinds = ", ".join("?" for _ in START_KINDS)
        rows = self._by_session(
            COLUMNS, [session_id], f"kind IN ({kinds})", START_KINDS, "ORDER BY {seq} LIMIT 1"
        )
        return self._summaries([row_to_record(rows[0])[0]])[0] if rows else None

    def session_ids_starting(self, prefix: str, limit: int = 6) -> list[str]:
        """Up to `limit` session ids that start with `prefix` (a shortened id, as git takes
        one), from the start records (the MARKS index), oldest first."""
        kinds = ", ".join("?" for _ in START_KINDS)
        rows = self._rows(
            f"SELECT session_id FROM audit_records WHERE {MARKS} AND kind IN ({kinds}) "
            "AND substr(session_id, 1, ?) = ? ORDER BY seq LIMIT ?",
            [*START_KINDS, len(prefix), prefix, limit * 2],
        )
        return list(dict.fromkeys(str(row[0]) for row in rows if row[0]))[:limit]

    def _summaries(self, starts: Sequence[Record]) -> list[SessionSummary]:
        ends: dict[str, Record] = {}
        counts: dict[str, dict[str, int]] = {}
        ids = [record.session_id for record in starts]
        for offset in range(0, len(ids), _CHUNK):
            chunk = ids[offset : offset + _CHUNK]
            marks = ", ".join("?" for _ in chunk)
            for row in self._rows(
                f"SELECT {COLUMNS} FROM audit_records WHERE {MARKS} AND kind = ? "
                f"AND session_id IN ({marks}) "
                "ORDER BY seq",
                [END_KIND, *chunk],
            ):
                end = row_to_record(row)[0]
                ends.setdefault(end.session_id, end)
            for session_id, kind, number in self._by_session(
                "session_id, kind, count(*)", chunk, tail="GROUP BY session_id, kind"
            ):
                kept = counts.setdefault(session_id, {})
                kept[kind] = kept.get(kind, 0) + int(number)  # the parts of _by_session
        return [
            summarize(start, ends.get(start.session_id), counts.get(start.session_id, {}))
            for start in starts
        ]

    def __enter__(self) -> AuditStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_store(url: str, *, create: bool = True) -> AuditStore:
    """`sqlite:///abs/path/audit.db` or `postgresql://...`; `create=False` refuses a missing
    SQLite file instead of making an empty trail (readers such as `jitctl audit verify`)."""
    if url.startswith("sqlite://"):
        from jitctl.audit.sqlite_store import SqliteStore

        path = url[len("sqlite://") :]
        # sqlite:///abs/audit.db and SQLAlchemy's sqlite:////abs/audit.db both mean /abs/audit.db.
        return SqliteStore(path[1:] if path.startswith("//") else path, create=create)
    if url.startswith(("postgresql://", "postgres://")):
        from jitctl.audit.pg_store import PgStore

        return PgStore(url)
    raise AuditUnavailable(
        f"unknown audit store URL {redact(url)!r}",
        "use sqlite:///path/to/audit.db or postgresql://user@host/db",
    )

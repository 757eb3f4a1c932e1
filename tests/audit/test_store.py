"""One suite for both stores: what goes in comes out, in order, with sessions derived."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path

import pytest

from jitctl.audit import AuditUnavailable
from jitctl.audit.canonical import hash_of
from jitctl.audit.chain import GENESIS
from jitctl.audit.keys import SigningKey
from jitctl.audit.records import NewRecord
from jitctl.audit.sqlite_store import SCHEMA_VERSION
from jitctl.audit.store import MARK_KINDS, MARKS, AuditStore, open_store
from jitctl.audit.verify import verify_trail
from tests.audit.conftest import ALICE, BOB, Backend, make_trail, session_records


def test_empty_store_has_genesis_head(store: AuditStore) -> None:
    assert store.head() == (0, GENESIS)
    assert store.count() == 0 and store.first_seq() is None
    assert list(store.iter_records()) == []


def test_appended_records_come_back_identical_in_seq_order(store: AuditStore) -> None:
    written = store.append_batch(session_records("s1"))
    written += store.append_batch([NewRecord("note", payload={"unicode": "ü €", "n": [1, None]})])
    read = list(store.iter_records(batch=2))  # small pages: paging must not skip or repeat
    assert read == written
    assert [r.seq for r in read] == [1, 2, 3, 4, 5, 6]
    assert store.head() == (6, written[-1].hash)
    assert store.get(2) == written[1] and store.get(99) is None
    assert all(r.hash == hash_of(r) for r in read)
    assert read[1].data == b"SELECT 1;\x00\x01\x02"


def test_iter_records_filters_by_session_kind_seq_and_time(store: AuditStore) -> None:
    store.append_batch(session_records("s1"))
    store.append_batch(session_records("s2", actor=BOB))
    assert {r.session_id for r in store.iter_records(session_id="s2")} == {"s2"}
    assert [r.seq for r in store.iter_records(kinds=["session.end"])] == [5, 10]
    assert [r.seq for r in store.iter_records(from_seq=4, to_seq=6)] == [4, 5, 6]
    sixth = store.get(6)
    assert sixth is not None
    assert min(r.seq for r in store.iter_records(since_us=sixth.time_us)) == 6
    assert max(r.seq for r in store.iter_records(until_us=sixth.time_us)) == 5
    assert list(store.iter_records(kinds=[])) == []


def test_sessions_are_derived_from_start_and_end_records(store: AuditStore) -> None:
    store.append_batch(session_records("closed-one"))
    store.append_batch(session_records("still-open", actor=BOB, target="ssh-box")[:2])
    store.append_batch(
        [NewRecord("session.denied", "", "pg-prod", BOB, {"code": "denied", "error": "no group"})]
    )
    newest, open_one, closed = store.sessions()
    assert (closed.id, closed.status, closed.bytes_up, closed.bytes_down) == (
        "closed-one",
        "closed",
        16,
        5,
    )
    assert closed.protocol == "postgres" and closed.actor == ALICE and closed.record_count == 5
    assert closed.kind_counts == {"session.start": 1, "tcp.data": 3, "session.end": 1}
    assert closed.duration_s is not None and closed.duration_s >= 0
    assert (closed.end_reason, closed.end_us is not None) == ("client closed", True)
    assert (open_one.status, open_one.end_us, open_one.duration_s) == ("open", None, None)
    assert (newest.status, newest.end_reason) == ("denied", "no group")
    assert newest.id.startswith("denied-") and store.session(newest.id) == newest
    assert store.session("closed-one") == closed
    assert store.session("nope") is None


def test_sessions_filter_by_target_user_time_and_limit(store: AuditStore) -> None:
    store.append_batch(session_records("a1"))
    store.append_batch(session_records("b1", actor=BOB, target="ssh-box"))
    store.append_batch(session_records("a2"))
    assert [s.id for s in store.sessions(target="ssh-box")] == ["b1"]
    assert [s.id for s in store.sessions(user="alice@example.com")] == ["a2", "a1"]
    assert [s.id for s in store.sessions(user="claude")] == ["a2", "a1"]  # the agent label
    assert [s.id for s in store.sessions(limit=1)] == ["a2"]
    start_b1 = next(store.iter_records(session_id="b1"))
    assert [s.id for s in store.sessions(since_us=start_b1.time_us)] == ["a2", "b1"]


def test_session_ids_are_found_by_their_start(store: AuditStore) -> None:
    for session_id in ("abcd1234", "abcd5678", "ffff0000", "ab%_0000"):
        store.append_batch(session_records(session_id))
    assert store.session_ids_starting("abcd") == ["abcd1234", "abcd5678"]
    assert store.session_ids_starting("ffff") == ["ffff0000"]
    assert store.session_ids_starting("ab%_") == ["ab%_0000"]  # no LIKE: % and _ are literal
    assert store.session_ids_starting("abcd", limit=1) == ["abcd1234"]
    assert store.session_ids_starting("zzzz") == []


def test_reopening_keeps_the_trail_and_continues_the_chain(backend: Backend) -> None:
    with open_store(backend.url) as first:
        first.append_batch(session_records("s1"))
    with open_store(backend.url) as second:
        (record,) = second.append_batch([NewRecord("after.reopen")])
        assert record.seq == 6 and record.prev_hash == second.get(5).hash  # type: ignore[union-attr]


def test_a_missing_sqlite_trail_is_not_created_for_readers(tmp_path: Path) -> None:
    with pytest.raises(AuditUnavailable, match="no audit store at"):
        open_store(f"sqlite://{tmp_path / 'none' / 'audit.db'}", create=False)
    assert not (tmp_path / "none").exists()


def test_unreachable_postgres_is_audit_unavailable_without_the_password() -> None:
    with pytest.raises(AuditUnavailable) as caught:
        open_store("postgresql://jitctl:s3cret@127.0.0.1:9/audit?connect_timeout=1")
    assert "cannot open" in caught.value.message and "s3cret" not in caught.value.message


def test_unknown_store_scheme_is_refused() -> None:
    with pytest.raises(AuditUnavailable, match="unknown audit store URL"):
        open_store("mysql://x")


def test_sqlite_url_with_four_slashes_is_the_same_absolute_path(tmp_path: Path) -> None:
    with open_store(f"sqlite:///{tmp_path / 'a.db'}") as store:
        store.append_batch([NewRecord("x")])
    assert (tmp_path / "a.db").exists()


# The SQLite schema as the first release created it (user_version 0): kind and time indexed
# for every record.
_SCHEMA_V0_INDEXES = """
DROP TABLE audit_session_seqs;
DROP TABLE audit_session_upto;
CREATE INDEX audit_records_session ON audit_records (session_id);
CREATE INDEX audit_records_kind ON audit_records (kind);
CREATE INDEX audit_records_time ON audit_records (time_us);
"""


def _indexes(db: sqlite3.Connection) -> set[str]:
    rows = db.execute("SELECT name FROM sqlite_master WHERE type = 'index' AND sql IS NOT NULL")
    return {str(row[0]) for row in rows}


def _plan(db: sqlite3.Connection, sql: str, params: list[object]) -> str:
    return " | ".join(str(row[3]) for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", params))


def test_a_version_0_sqlite_trail_is_migrated_and_still_verifies(
    tmp_path: Path, key: SigningKey
) -> None:
    path = tmp_path / "audit.db"
    with open_store(f"sqlite://{path}") as store:
        before = make_trail(store, key)
    # Turn it into what the first release left behind: same tables, its indexes, version 0.
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(f"DROP INDEX audit_records_marks; {_SCHEMA_V0_INDEXES} PRAGMA user_version=0;")
    assert _indexes(db) == {"audit_records_session", "audit_records_kind", "audit_records_time"}
    db.close()

    with open_store(f"sqlite://{path}") as store:
        assert list(store.iter_records()) == before
        assert verify_trail(store, key.trusted()).ok
        more = store.append_batch(session_records("after-migration"))
        assert more[0].prev_hash == before[-1].hash
        assert [s.id for s in store.sessions()] == ["after-migration", "s2", "s1", "s0"]
        assert store.latest() == before[-1]
        assert verify_trail(store, key.trusted()).ok
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert _indexes(db) == {"audit_records_marks"}  # sessions: audit_session_seqs
    # The migration indexed what was there; the 5 appended since wait behind the head.
    assert db.execute("SELECT count(*) FROM audit_session_seqs").fetchone()[0] == len(before)
    db.close()
    with open_store(f"sqlite://{path}", create=False) as store:  # opening again changes nothing
        assert store.count() == len(before) + 5


def test_sqlite_indexes_kinds_only_for_structural_records(tmp_path: Path, key: SigningKey) -> None:
    path = tmp_path / "audit.db"
    with open_store(f"sqlite://{path}") as store:
        make_trail(store, key)
        marks = store._rows(
            f"SELECT count(*) FROM audit_records INDEXED BY audit_records_marks WHERE {MARKS}"
        )[0][0]
        assert marks == sum(1 for r in store.iter_records() if r.kind in MARK_KINDS) > 0
    db = sqlite3.connect(path)
    # The whole-trail lookups by kind that the store makes use that index...
    latest = f"SELECT seq FROM audit_records WHERE {MARKS} AND kind = ? ORDER BY seq DESC LIMIT 1"
    assert "audit_records_marks" in _plan(db, latest, ["audit.checkpoint"])
    starts = (
        f"SELECT seq FROM audit_records WHERE {MARKS} AND kind IN (?, ?) AND seq < ? "
        "ORDER BY seq DESC LIMIT ?"
    )
    assert "audit_records_marks" in _plan(db, starts, ["session.start", "session.denied", 9, 5])
    # ... and a session's records come from the session index, in seq order without a sort,
    # then from the records above its mark (a range of the primary key), also in order.
    indexed = (
        "SELECT seq FROM audit_session_seqs JOIN audit_records ON seq = rseq "
        "WHERE sid IN (?) AND rseq <= ? AND rseq >= ? ORDER BY rseq LIMIT ?"
    )
    plan = _plan(db, indexed, ["s1", 10, 1, 1000])
    assert "audit_session_seqs USING PRIMARY KEY" in plan and "TEMP B-TREE" not in plan
    recent = (
        "SELECT seq FROM audit_records WHERE seq > ? AND session_id IN (?) AND seq >= ? "
        "ORDER BY seq LIMIT ?"
    )
    plan = _plan(db, recent, [10, "s1", 1, 1000])
    assert "INTEGER PRIMARY KEY" in plan and "TEMP B-TREE" not in plan
    db.close()


def test_a_sessions_records_come_from_the_index_and_from_behind_it_once_each(
    tmp_path: Path, key: SigningKey
) -> None:
    """The session index is filled in the commit that seals a checkpoint; in between, a
    session's records are read from the index and from above its mark, never twice."""
    path = tmp_path / "audit.db"
    with open_store(f"sqlite://{path}") as store:
        first = store.append_batch(session_records("a") + session_records("b"))
        db = sqlite3.connect(path)
        indexed = "SELECT count(*) FROM audit_session_seqs"
        assert db.execute(indexed).fetchone()[0] == 0  # plain commits leave the index alone
        store.append_prepared([], key)  # a checkpoint commit fills it
        assert db.execute(indexed).fetchone()[0] == len(first) + 1
        later = store.append_batch(session_records("a"))
        wanted = [r.seq for r in first + later if r.session_id == "a"]
        assert [r.seq for r in store.iter_records(session_id="a")] == wanted
        assert [r.seq for r in store.iter_records(session_id="a", batch=2)] == wanted
        summary = store.session("a")
        assert summary is not None and sum(summary.kind_counts.values()) == len(wanted)
        assert verify_trail(store, key.trusted()).ok
        # An entry removed from the index would hide a record from replay: verify says so.
        db.execute("DELETE FROM audit_session_seqs WHERE rseq = ?", (wanted[1],))
        db.commit()
        report = verify_trail(store, key.trusted())
        assert not report.ok and report.first_break is not None
        assert report.first_break.seq == wanted[1]
        assert "session index" in report.first_break.problem
        db.close()


def test_sqlite_appends_notice_a_head_moved_by_another_connection(
    tmp_path: Path, key: SigningKey
) -> None:
    # Each store commits after the head it last left unless the head's move says another
    # process (here: another connection) appended in between; then it reads the head again.
    url = f"sqlite://{tmp_path / 'audit.db'}"
    with open_store(url) as one, open_store(url) as other:
        written = one.append_batch(session_records("a"))
        written += other.append_batch(session_records("b"))  # `one` has not seen these
        written += one.append_batch(session_records("c"))
        written += one.append_prepared([], key)
        written += other.append_batch(session_records("d"))
        assert [r.seq for r in written] == list(range(1, 22))
        for before, after in itertools.pairwise(written):
            assert after.prev_hash == before.hash
        assert list(one.iter_records()) == written and other.head() == (21, written[-1].hash)
        assert verify_trail(one, key.trusted()).ok


def test_sqlite_batches_of_every_size_chain_and_move_the_head(tmp_path: Path) -> None:
    # Batches after a known head are one INSERT whose trigger moves the head; a batch too big
    # for one statement takes the transaction (sqlite_store's rules). Both chain on.
    with open_store(f"sqlite://{tmp_path / 'audit.db'}") as store:
        written = store.append_batch(session_records("a"))  # the head is read once
        written += store.append_batch(session_records("b"))
        assert store.head() == (10, written[-1].hash)
        many = [r for n in range(20) for r in session_records(f"c{n}")]  # 100 > FAST_ROWS
        written += store.append_batch(many)
        written += store.append_batch(session_records("d"))
        assert [r.seq for r in written] == list(range(1, len(written) + 1))
        for before, after in itertools.pairwise(written):
            assert after.prev_hash == before.hash
        assert list(store.iter_records()) == written
        assert store.head() == (len(written), written[-1].hash)


def test_sqlite_rows_written_by_other_means_do_not_move_the_head(tmp_path: Path) -> None:
    # The head trigger is TEMP: only the connection of the jitctl that opened the file has it.
    path = tmp_path / "audit.db"
    with open_store(f"sqlite://{path}") as store:
        written = store.append_batch(session_records("a"))
        db = sqlite3.connect(path)
        with db:
            db.execute(
                "INSERT INTO audit_records SELECT 99, time_us, session_id, kind, actor, target, "
                "payload, data, data_sha256, prev_hash, hash FROM audit_records WHERE seq = 5"
            )
        db.close()
        assert store.head() == (5, written[-1].hash)

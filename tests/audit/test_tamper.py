"""Tampering through raw SQL, on both stores: verify names the first break, and only then."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from jitctl.audit.canonical import hash_of
from jitctl.audit.keys import SigningKey
from jitctl.audit.records import Record
from jitctl.audit.store import AuditStore
from jitctl.audit.verify import verify_trail
from tests.audit.conftest import Backend, make_trail

# make_trail: 3 x (5 session records + 1 policy.reload + 1 checkpoint) = 21 records;
# checkpoints at seq 7, 14 and 21; the checkpoint file points at 21.


@pytest.fixture
def trail(store: AuditStore, key: SigningKey, tmp_path: Path) -> tuple[list[Record], Path]:
    checkpoint = tmp_path / "audit-checkpoint.json"
    return make_trail(store, key, checkpoint), checkpoint


def _forge(record: Record, seq: int, prev_hash: str) -> str:
    return hash_of(record, seq=seq, prev_hash=prev_hash)


def test_an_untouched_trail_verifies(
    store: AuditStore, key: SigningKey, trail: tuple[list[Record], Path]
) -> None:
    report = verify_trail(store, key.trusted(), trail[1])
    assert report.ok and report.first_break is None
    assert (report.records_checked, report.checkpoints_checked, report.head_seq) == (21, 3, 21)
    assert report.signed_seq == 21


def _modify_payload_byte(backend: Backend, records: list[Record]) -> None:
    backend.raw(
        "UPDATE audit_records SET payload = replace(payload, '\"len\":12', '\"len\":13') "
        "WHERE seq = 2"
    )


def _modify_data_blob(backend: Backend, records: list[Record]) -> None:
    backend.raw("UPDATE audit_records SET data = ? WHERE seq = 10", b"\xff\x00OK\n")


def _delete_record(backend: Backend, records: list[Record]) -> None:
    backend.raw("DELETE FROM audit_records WHERE seq = 9")


def _insert_record(backend: Backend, records: list[Record]) -> None:
    """Make room after seq 10 and slip in a record whose own hash and link are perfect."""
    backend.raw("UPDATE audit_records SET seq = seq + 1000 WHERE seq > 10")
    backend.raw("UPDATE audit_records SET seq = seq - 999 WHERE seq > 1000")
    forged = records[9]
    digest = _forge(forged, 11, records[9].hash)
    backend.raw(
        "INSERT INTO audit_records SELECT 11, time_us, session_id, kind, actor, target, payload, "
        "data, data_sha256, ?, ? FROM audit_records WHERE seq = 10",
        records[9].hash,
        digest,
    )


def _swap_records(backend: Backend, records: list[Record]) -> None:
    backend.raw("UPDATE audit_records SET seq = -1 WHERE seq = 5")
    backend.raw("UPDATE audit_records SET seq = 5 WHERE seq = 6")
    backend.raw("UPDATE audit_records SET seq = 6 WHERE seq = -1")


def _truncate_tail(backend: Backend, records: list[Record]) -> None:
    """Drop the last session and fix up the head row, as a careful attacker would."""
    backend.raw("DELETE FROM audit_records WHERE seq > 14")
    backend.raw("UPDATE audit_head SET seq = 14, hash = ?", records[13].hash)


def _replace_record_with_rehash(backend: Backend, records: list[Record]) -> None:
    backend.raw("UPDATE audit_records SET target = 'pg-dev' WHERE seq = 16")
    changed = Record(**{**_fields(records[15]), "target": "pg-dev"})
    backend.raw(
        "UPDATE audit_records SET hash = ? WHERE seq = 16", _forge(changed, 16, changed.prev_hash)
    )


def _rewrite_tail_without_the_key(backend: Backend, records: list[Record]) -> None:
    """Change seq 16 and recompute every later hash and link; only signatures can tell."""
    prev = records[14].hash
    for record in records[15:]:
        fields = _fields(record)
        if record.seq == 16:
            fields["target"] = "pg-dev"
        forged = _forge(Record(**fields), record.seq, prev)
        backend.raw(
            "UPDATE audit_records SET target = ?, prev_hash = ?, hash = ? WHERE seq = ?",
            fields["target"],
            prev,
            forged,
            record.seq,
        )
        prev = forged
    backend.raw("UPDATE audit_head SET hash = ?", prev)


def _append_beyond_head(backend: Backend, records: list[Record]) -> None:
    last = records[-1]
    backend.raw(
        "INSERT INTO audit_records SELECT 22, time_us, session_id, kind, actor, target, payload, "
        "data, data_sha256, ?, ? FROM audit_records WHERE seq = 20",
        last.hash,
        _forge(records[19], 22, last.hash),
    )


def _fields(record: Record) -> dict[str, object]:
    return {name: getattr(record, name) for name in Record.__dataclass_fields__}


@pytest.mark.parametrize(
    ("tamper", "seq", "problem"),
    [
        (_modify_payload_byte, 2, "hash does not match contents (record modified)"),
        (_modify_data_blob, 10, "data does not match its recorded SHA-256 (data modified)"),
        (_delete_record, 9, "record missing (seq 9 deleted)"),
        (_insert_record, 12, "record belongs at seq 11 (records swapped, inserted or renumbered)"),
        (_swap_records, 5, "record belongs at seq 6"),
        (
            _truncate_tail,
            15,
            "trail ends at seq 14 but the checkpoint file vouches for seq 21 (records truncated)",
        ),
        (_replace_record_with_rehash, 17, "prev_hash does not link to seq 16"),
        (
            _rewrite_tail_without_the_key,
            21,
            "checkpoint signed seq 20 with a head hash the chain does not hold",
        ),
        (_append_beyond_head, 22, "record beyond the store's head"),
    ],
    ids=lambda value: value.__name__.strip("_") if callable(value) else None,
)
def test_tampering_is_found_and_the_first_break_named(
    store: AuditStore,
    backend: Backend,
    key: SigningKey,
    trail: tuple[list[Record], Path],
    tamper: Callable[[Backend, list[Record]], None],
    seq: int,
    problem: str,
) -> None:
    records, checkpoint = trail
    tamper(backend, records)
    report = verify_trail(store, key.trusted(), checkpoint)
    assert not report.ok and report.first_break is not None
    assert report.first_break.seq == seq
    assert problem in report.first_break.problem
    assert str(report.first_break).startswith(f"seq {seq}: ")


def test_truncation_without_checkpoint_file_is_still_caught_by_the_head_row(
    store: AuditStore, backend: Backend, key: SigningKey, trail: tuple[list[Record], Path]
) -> None:
    backend.raw("DELETE FROM audit_records WHERE seq > 18")
    report = verify_trail(store, key.trusted())
    assert report.first_break is not None and report.first_break.seq == 19
    assert "head is seq 21 but records end at seq 18" in report.first_break.problem


def test_checkpoints_signed_by_an_untrusted_key_fail(
    store: AuditStore, trail: tuple[list[Record], Path]
) -> None:
    stranger = SigningKey.generate()
    report = verify_trail(store, stranger.trusted(), trail[1])
    assert report.first_break is not None and report.first_break.seq == 7
    assert "not a trusted audit key" in report.first_break.problem


def test_deleting_the_first_records_without_an_anchor_fails(
    store: AuditStore, backend: Backend, key: SigningKey, trail: tuple[list[Record], Path]
) -> None:
    backend.raw("DELETE FROM audit_records WHERE seq < 4")
    report = verify_trail(store, key.trusted(), trail[1])
    assert report.first_break is not None and report.first_break.seq == 1
    assert (
        "seqs 1-3 deleted, and no signed prune anchor vouches for it" in report.first_break.problem
    )

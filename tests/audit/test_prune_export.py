"""Pruning leaves a trail that still verifies; exports verify offline and show tampering."""

from __future__ import annotations

import asyncio
import io
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from jitctl.audit.chain import CHECKPOINT, PRUNED
from jitctl.audit.export import export_jsonl, export_ocsf, verify_jsonl
from jitctl.audit.keys import SigningKey
from jitctl.audit.ocsf import to_ocsf
from jitctl.audit.prune import prune
from jitctl.audit.records import NewRecord, Record
from jitctl.audit.store import AuditStore
from jitctl.audit.verify import verify_trail
from jitctl.audit.writer import AuditWriter
from jitctl.errors import AuditBrokenError
from tests.audit.conftest import Backend, make_trail, session_records

OLD = 1_600_000_000_000_000  # 2020: older than any cut-off used here


def old_then_new(store: AuditStore, key: SigningKey, checkpoint: Path) -> list[Record]:
    """Two sessions from 2020 (seq 1-10), then two from now with their checkpoints."""
    aged = [
        NewRecord(r.kind, r.session_id, r.target, r.actor, r.payload, r.data, OLD + i)
        for i, r in enumerate(session_records("old-1") + session_records("old-2"))
    ]
    return store.append_batch(aged) + make_trail(store, key, checkpoint, sessions=2)


def test_prune_deletes_old_records_and_the_rest_still_verifies(
    store: AuditStore, key: SigningKey, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "cp.json"
    records = old_then_new(store, key, checkpoint)
    result = prune(store, key, OLD + 1_000_000, checkpoint_file=checkpoint)
    assert (result.first_kept_seq, result.deleted) == (11, 10)
    assert store.first_seq() == 11 and store.get(result.anchor_seq or 0).kind == PRUNED  # type: ignore[union-attr]
    report = verify_trail(store, key.trusted(), checkpoint)
    assert report.ok, report.first_break
    assert report.first_seq == 11 and report.head_seq == len(records) + 2  # + checkpoint + anchor
    again = prune(store, key, OLD + 1_000_000, checkpoint_file=checkpoint)
    assert again.deleted == 0 and again.anchor_seq is None
    assert verify_trail(store, key.trusted(), checkpoint).ok


def test_deleting_past_the_prune_anchor_is_still_caught(
    store: AuditStore, backend: Backend, key: SigningKey, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "cp.json"
    old_then_new(store, key, checkpoint)
    prune(store, key, OLD + 1_000_000, checkpoint_file=checkpoint)
    backend.raw("DELETE FROM audit_records WHERE seq < 14")
    report = verify_trail(store, key.trusted(), checkpoint)
    assert report.first_break is not None and report.first_break.seq == 1
    assert "no signed prune anchor" in report.first_break.problem


def test_prune_never_deletes_the_latest_checkpoint(
    store: AuditStore, key: SigningKey, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "cp.json"
    make_trail(store, key, checkpoint, sessions=2)
    result = prune(store, key, 2**62, checkpoint_file=checkpoint)  # "everything"
    remaining = list(store.iter_records())
    assert [r.kind for r in remaining] == [CHECKPOINT, PRUNED]
    assert result.first_kept_seq == remaining[0].seq
    assert verify_trail(store, key.trusted(), checkpoint).ok


def test_prune_refuses_a_trail_that_does_not_verify(
    store: AuditStore, backend: Backend, key: SigningKey, tmp_path: Path
) -> None:
    old_then_new(store, key, tmp_path / "cp.json")
    backend.raw("UPDATE audit_records SET target = 'x' WHERE seq = 3")
    with pytest.raises(AuditBrokenError, match="refusing to prune"):
        prune(store, key, OLD + 1_000_000, checkpoint_file=tmp_path / "cp.json")
    assert store.first_seq() == 1


def test_prune_through_a_running_writer_uses_its_key_and_checkpoint_file(
    store: AuditStore, key: SigningKey, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "cp.json"
    old_then_new(store, key, checkpoint)

    async def body() -> None:
        writer = AuditWriter(store, key, checkpoint)
        await writer.start()
        result = await asyncio.to_thread(prune, store, writer, OLD + 1_000_000)
        assert result.deleted == 10
        await writer.append(NewRecord("after.prune"))
        await writer.close()

    asyncio.run(body())
    assert verify_trail(store, key.trusted(), checkpoint).ok


def _export(store: AuditStore, path: Path, **filters: object) -> list[str]:
    with path.open("w") as out:
        export_jsonl(store.iter_records(**filters), out)
    return path.read_text().splitlines()


def test_jsonl_export_is_lossless_and_verifies_offline(
    store: AuditStore, key: SigningKey, tmp_path: Path
) -> None:
    records = make_trail(store, key, tmp_path / "cp.json")
    lines = _export(store, tmp_path / "trail.jsonl")
    assert len(lines) == len(records)
    first = json.loads(lines[1])
    assert first["data"] == "U0VMRUNUIDE7AAEC" and first["seq"] == 2  # base64 of the raw bytes
    report = verify_jsonl(
        tmp_path / "trail.jsonl", key.trusted(), checkpoint_file=tmp_path / "cp.json"
    )
    assert report.ok and report.records_checked == 21 and report.checkpoints_checked == 3


@pytest.mark.parametrize(
    ("edit", "seq", "problem"),
    [
        (lambda ls: ls.__setitem__(3, ls[3].replace('"len":4', '"len":5')), 4, "record modified"),
        (
            lambda ls: ls.__setitem__(1, ls[1].replace("U0VMRUNUIDE7AAEC", "U0VMRUNUIDI7AAEC")),
            2,
            "data modified",
        ),
        (lambda ls: ls.pop(9), 10, "record missing"),
        (lambda ls: ls.insert(5, ls[4]), 5, "appears twice"),
        (lambda ls: ls.__setitem__(6, "not json"), 7, "line 7 is not an audit record"),
    ],
    ids=["payload-byte", "data", "deleted-line", "duplicated-line", "garbled-line"],
)
def test_tampering_with_an_export_fails_offline_verification(
    store: AuditStore,
    key: SigningKey,
    tmp_path: Path,
    edit,
    seq: int,
    problem: str,  # type: ignore[no-untyped-def]
) -> None:
    make_trail(store, key)
    path = tmp_path / "trail.jsonl"
    lines = _export(store, path)
    edit(lines)
    path.write_text("\n".join(lines) + "\n")
    report = verify_jsonl(path, key.trusted())
    assert report.first_break is not None and report.first_break.seq == seq
    assert problem in report.first_break.problem


def test_exports_after_prune_and_of_a_range_verify_from_where_they_start(
    store: AuditStore, key: SigningKey, tmp_path: Path
) -> None:
    checkpoint = tmp_path / "cp.json"
    old_then_new(store, key, checkpoint)
    prune(store, key, OLD + 1_000_000, checkpoint_file=checkpoint)
    _export(store, tmp_path / "pruned.jsonl")
    assert verify_jsonl(tmp_path / "pruned.jsonl", key.trusted(), require_start=True).ok
    _export(store, tmp_path / "range.jsonl", from_seq=20)
    ranged = verify_jsonl(tmp_path / "range.jsonl", key.trusted())
    assert ranged.ok and ranged.first_seq == 20 and ranged.signed_seq > 20
    strict = verify_jsonl(tmp_path / "range.jsonl", key.trusted(), require_start=True)
    assert not strict.ok


def test_ocsf_maps_sessions_to_network_activity_and_the_rest_to_api_activity(
    store: AuditStore, key: SigningKey
) -> None:
    records = make_trail(store, key, sessions=1)
    store.append_batch([NewRecord("session.denied", "", "pg-prod", None, {"error": "no group"})])
    events = [to_ocsf(r) for r in store.iter_records()]
    assert [(e["class_uid"], e["activity_id"], e["type_uid"]) for e in events] == [
        (4001, 1, 400101),
        (4001, 6, 400106),
        (4001, 6, 400106),
        (4001, 6, 400106),
        (4001, 2, 400102),
        (6003, 99, 600399),
        (6003, 99, 600399),
        (4001, 5, 400105),
    ]
    start, up, down, _, end = events[:5]
    assert start["actor"]["user"]["email_addr"] == "alice@example.com"
    assert start["actor"]["app_name"] == "claude" and start["src_endpoint"]["port"] == 50000
    assert start["dst_endpoint"] == {"name": "pg-prod", "ip": "10.0.0.5", "port": 5432}
    assert (
        start["metadata"]["correlation_uid"] == "corr-1"
        and start["time"] == records[0].time_us // 1000
    )
    assert up["traffic"] == {"bytes_out": 12} and down["traffic"] == {"bytes_in": 5}
    assert end["traffic"] == {"bytes_out": 16, "bytes_in": 5}
    assert events[5]["api"]["operation"] == "policy.reload"
    assert (events[7]["status"], events[7]["disposition"]) == ("Failure", "Blocked")
    assert all(
        e["unmapped"]["jitctl"]["hash"] == r.hash
        for e, r in zip(events, store.iter_records(), strict=True)
    )
    out = io.StringIO()
    assert export_ocsf(store.iter_records(), out) == 8
    assert all(
        json.loads(line)["metadata"]["version"] == "1.1.0" for line in out.getvalue().splitlines()
    )


def test_the_offline_verifier_in_the_docs_accepts_an_export_and_rejects_tampering(
    store: AuditStore, key: SigningKey, tmp_path: Path
) -> None:
    doc = (Path(__file__).parents[2] / "docs" / "audit-schema.md").read_text()
    snippet = re.search(r"<!-- verify-snippet -->\n```python\n(.*?)```", doc, re.S)
    assert snippet is not None
    script = tmp_path / "verify_export.py"
    script.write_text(snippet.group(1))
    pub = tmp_path / "audit-signing.pub"
    pub.write_bytes(key.public_pem())
    make_trail(store, key)
    lines = _export(store, tmp_path / "trail.jsonl")
    ok = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "trail.jsonl"), str(pub)],
        capture_output=True,
        text=True,
    )
    assert ok.returncode == 0, ok.stderr
    assert "ok: records up to seq 21, signed through seq 21" in ok.stdout
    lines[4] = lines[4].replace('"bytes_up":16', '"bytes_up":1')
    (tmp_path / "trail.jsonl").write_text("\n".join(lines) + "\n")
    bad = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "trail.jsonl"), str(pub)],
        capture_output=True,
        text=True,
    )
    assert bad.returncode != 0 and "seq 5: record modified" in bad.stderr

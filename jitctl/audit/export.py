"""Exports of the trail, and offline verification of a JSONL export.

Rules:
- JSONL is lossless: one record per line, canonical JSON (sorted keys, no spaces) with every
  chained field plus `data` as base64 and `data_sha256`, so anyone can recompute every hash with
  the recipe in docs/audit-schema.md. Nothing is left out or reformatted.
- `verify_jsonl` applies the same checks as `jitctl audit verify` to an export. An export that
  starts above seq 1 links to a signed prune anchor in the file when there is one; otherwise (an
  export of a range, `--since`) its first record's prev_hash is taken as given, and only the
  checkpoints inside the range vouch for it: `VerifyReport.first_seq` and `signed_seq` say how
  much was covered. `require_start=True` refuses such ranges.
- OCSF is a lossy view for SIEMs (see `jitctl.audit.ocsf`).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from jitctl.audit.chain import PRUNED, TrustedKeys, data_digest, dumps
from jitctl.audit.checkpoint_file import read_checkpoint_file
from jitctl.audit.ocsf import export_ocsf
from jitctl.audit.records import Actor, Record
from jitctl.audit.verify import Break, ChainVerifier, VerifyReport, run, start_of

__all__ = ["export_jsonl", "export_ocsf", "record_from_json", "record_to_json", "verify_jsonl"]


def record_to_json(record: Record) -> dict[str, Any]:
    return {
        "seq": record.seq,
        "time_us": record.time_us,
        "session_id": record.session_id,
        "kind": record.kind,
        "actor": record.actor.to_dict() if record.actor is not None else None,
        "target": record.target,
        "payload": dict(record.payload),
        "data": base64.b64encode(record.data).decode("ascii"),
        "data_sha256": data_digest(record.data),
        "prev_hash": record.prev_hash,
        "hash": record.hash,
    }


def record_from_json(document: dict[str, Any]) -> tuple[Record, str]:
    """A record from an export line, with the data_sha256 the line claims."""
    actor = document["actor"]
    record = Record(
        kind=str(document["kind"]),
        session_id=str(document["session_id"]),
        target=str(document["target"]),
        actor=Actor.from_dict(actor) if actor is not None else None,
        payload=dict(document["payload"]),
        data=base64.b64decode(document["data"], validate=True),
        time_us=int(document["time_us"]),
        seq=int(document["seq"]),
        prev_hash=str(document["prev_hash"]),
        hash=str(document["hash"]),
    )
    return record, str(document["data_sha256"])


def export_jsonl(records: Iterable[Record], out: IO[str]) -> int:
    """Write `records` one per line; returns how many."""
    count = 0
    for record in records:
        out.write(dumps(record_to_json(record)) + "\n")
        count += 1
    return count


class _BadLine(Exception):
    pass


def _read(path: Path) -> Iterator[tuple[Record, str]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                yield record_from_json(json.loads(line))
            except (ValueError, KeyError, TypeError, binascii.Error) as exc:
                raise _BadLine(f"line {number} is not an audit record ({exc})") from None


def verify_jsonl(
    path: str | Path,
    trusted_keys: TrustedKeys,
    *,
    checkpoint_file: str | Path | None = None,
    require_start: bool = False,
) -> VerifyReport:
    """Re-verify a JSONL export offline (no store, no broker)."""
    path = Path(path)
    checkpoint = read_checkpoint_file(checkpoint_file) if checkpoint_file else None
    verifier = ChainVerifier(trusted_keys, checkpoint=checkpoint)
    try:
        first = next(_read(path), None)
        if first is None:
            return verifier.report(verifier.finish())
        first_seq = first[0].seq
        anchors = (r for r, _ in _read(path) if r.kind == PRUNED)
        start_prev, brk = start_of(first_seq, anchors, trusted_keys)
        if brk is not None and first_seq > 1 and not require_start:
            start_prev, brk = first[0].prev_hash, None  # a range export: take its first link
        verifier = ChainVerifier(
            trusted_keys, start_seq=first_seq, start_prev=start_prev, checkpoint=checkpoint
        )
        if brk is None:
            brk = run(verifier, _read(path)) or verifier.finish()
    except _BadLine as exc:
        brk = Break(verifier.next_seq, str(exc))
    return verifier.report(brk)

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
- asciicast v2 is a player's view of one terminal session (docs/replay.md maps the kinds).
"""

from __future__ import annotations

import base64
import binascii
import codecs
import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from jitctl.audit.canonical import data_digest, dumps
from jitctl.audit.chain import PRUNED, TrustedKeys
from jitctl.audit.checkpoint_file import read_checkpoint_file
from jitctl.audit.ocsf import export_ocsf
from jitctl.audit.records import Actor, Record
from jitctl.audit.verify import Break, ChainVerifier, VerifyReport, run, start_of

__all__ = [
    "export_asciicast",
    "export_jsonl",
    "export_ocsf",
    "record_from_json",
    "record_to_json",
    "verify_jsonl",
]


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


def _channel(record: Record) -> int:
    try:
        return int(record.payload.get("channel", 0))
    except (TypeError, ValueError):
        return 0


def _marker(record: Record) -> str | None:
    """The label of an asciicast marker for a policy decision, an approval or an exit."""
    p = record.payload
    decision = p.get("decision")
    if decision not in (None, "", "allow"):
        return f"{record.kind}: {decision} by {p.get('rule') or 'default action'}"
    if "approv" in record.kind:
        return f"{record.kind}" + (f" by {p['approver']}" if p.get("approver") else "")
    if record.kind == "term.exit":
        return f"exit status {p.get('status')}"
    if record.kind == "session.end":
        return f"session end ({p.get('status', 'closed')})"
    return None


def export_asciicast(records: Iterable[Record], out: IO[str], *, title: str = "") -> int:
    """One terminal session as asciicast v2 (docs/replay.md): the first channel's
    term.output/term.input/term.resize as "o"/"i"/"r", decisions, approvals and the exit as
    "m" markers; time is seconds since the first record. Returns the events written."""
    stream = iter(records)
    held: list[Record] = []
    width, height, term, channel = 80, 24, "", None
    for record in stream:
        held.append(record)
        if record.kind.startswith("term.") and channel is None:
            channel = _channel(record)
        if record.kind == "term.resize" and _channel(record) == channel:
            width = int(record.payload.get("cols") or width)
            height = int(record.payload.get("rows") or height)
            term = str(record.payload.get("term") or "")
            break
        if record.kind == "term.output":
            break
    if not held:
        return 0
    first = held[0]
    header: dict[str, Any] = {"version": 2, "width": width, "height": height}
    header["timestamp"] = first.time_us // 1_000_000
    if term:
        header["env"] = {"TERM": term}
    header["title"] = title or f"{first.target} session {first.session_id}"
    header["jitctl"] = {"session_id": first.session_id, "target": first.target}
    out.write(json.dumps(header, ensure_ascii=False) + "\n")
    decoders = {code: codecs.getincrementaldecoder("utf-8")("replace") for code in "oi"}
    size, last, count = (width, height), 0.0, 0
    for record in itertools.chain(held, stream):
        at = max(last, round((record.time_us - first.time_us) / 1e6, 6))
        event: tuple[str, str] | None = None
        mine = record.kind.startswith("term.") and _channel(record) == channel
        if mine and record.kind in ("term.output", "term.input"):
            code = "o" if record.kind == "term.output" else "i"
            event = (code, decoders[code].decode(record.data))
        elif mine and record.kind == "term.resize":
            new = (int(record.payload.get("cols") or 0), int(record.payload.get("rows") or 0))
            if new != size and min(new) > 0:
                size, event = new, ("r", f"{new[0]}x{new[1]}")
        elif (label := _marker(record)) is not None:
            event = ("m", label)
        if event is not None and (event[1] or event[0] == "m"):
            out.write(json.dumps([at, *event], ensure_ascii=False) + "\n")
            last, count = at, count + 1
    return count

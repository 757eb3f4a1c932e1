"""Verification of the trail: stream records, recompute every link, name the first break.

Rules:
- Records are checked one at a time in seq order (never all in memory). Per record, in order:
  seq continuity (deleted or duplicated records), the data blob against its data_sha256, the
  hash against the contents, the link to the previous hash, then checkpoint and prune-anchor
  signatures against the trusted keys.
- A trail starts at seq 1 after GENESIS, or, once pruned, at the `first_kept_seq` of a signed
  `audit.pruned` anchor whose `prev_hash_of_first_kept` gives the starting link.
- After the stream: the store's head row and the external checkpoint file must agree with the
  last record; a store that ends before the checkpoint file's seq has been truncated.
- Last, an index the store derives from the records (the SQLite store's session index) must
  agree with them: entries removed from it would hide records from replay, not break the chain.
- The first problem found wins and is reported as `Break(seq, problem)`; nothing after it is
  trusted, so checking stops there.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jitctl.audit.canonical import data_digest, hash_of
from jitctl.audit.chain import (
    CHECKPOINT,
    GENESIS,
    PRUNED,
    TrustedKeys,
    anchor_statement,
    check_signature,
    checkpoint_statement,
)
from jitctl.audit.checkpoint_file import CheckpointFile, read_checkpoint_file
from jitctl.audit.records import Record
from jitctl.audit.store import AuditStore


@dataclass(frozen=True, slots=True)
class Break:
    seq: int
    problem: str

    def __str__(self) -> str:
        return f"seq {self.seq}: {self.problem}"


@dataclass(frozen=True, slots=True)
class VerifyReport:
    ok: bool
    records_checked: int
    checkpoints_checked: int
    head_seq: int  # the last record checked
    first_seq: int  # where the checked trail starts (above 1 once pruned)
    signed_seq: int  # the last seq covered by a good checkpoint (0: none)
    first_break: Break | None

    def to_dict(self) -> dict[str, Any]:
        brk = self.first_break
        return {
            "ok": self.ok,
            "records": self.records_checked,
            "checkpoints": self.checkpoints_checked,
            "head": self.head_seq,
            "first_seq": self.first_seq,
            "signed_through": self.signed_seq,
            "break": {"seq": brk.seq, "problem": brk.problem} if brk else None,
        }


def anchor_problem(record: Record, trusted: TrustedKeys) -> str | None:
    p = record.payload
    try:
        statement = anchor_statement(
            int(p["first_kept_seq"]),
            str(p["prev_hash_of_first_kept"]),
            int(p["pruned_before_us"]),
            record.time_us,
            str(p["key_id"]),
        )
    except (KeyError, TypeError, ValueError):
        return "prune anchor payload is incomplete"
    problem = check_signature(p, statement, trusted)
    return f"prune anchor: {problem}" if problem else None


def _checkpoint_problem(record: Record, trusted: TrustedKeys) -> str | None:
    p = record.payload
    try:
        covers, head = int(p["covers_seq"]), str(p["head_hash"])
        statement = checkpoint_statement(covers, head, record.time_us, str(p["key_id"]))
    except (KeyError, TypeError, ValueError):
        return "checkpoint payload is incomplete"
    if covers != record.seq - 1 or head != record.prev_hash:
        return (
            f"checkpoint signed seq {covers} with a head hash the chain does not hold "
            "(records before it were rewritten)"
        )
    problem = check_signature(p, statement, trusted)
    return f"checkpoint {problem}" if problem else None


class ChainVerifier:
    """Feed records in seq order; `feed` and `finish` return the first break, if any."""

    def __init__(
        self,
        trusted: TrustedKeys,
        *,
        start_seq: int = 1,
        start_prev: str = GENESIS,
        checkpoint: CheckpointFile | None = None,
    ) -> None:
        self.trusted = trusted
        self.first_seq = start_seq
        self.next_seq = start_seq
        self.prev = start_prev
        self.checkpoint = checkpoint
        self.records = 0
        self.checkpoints = 0
        self.signed_seq = 0

    def feed(self, record: Record, stored_sha: str) -> Break | None:
        seq = record.seq
        if seq > self.next_seq:
            gap = (
                f"seq {self.next_seq}"
                if seq == self.next_seq + 1
                else f"seqs {self.next_seq}-{seq - 1}"
            )
            return Break(self.next_seq, f"record missing ({gap} deleted)")
        if seq < self.next_seq:
            return Break(seq, "record appears twice or out of order (record inserted)")
        if data_digest(record.data) != stored_sha:
            return Break(seq, "data does not match its recorded SHA-256 (data modified)")
        if hash_of(record, seq=seq) != record.hash:
            for other in (seq + 1, seq - 1, seq + 2, seq - 2):
                if other > 0 and hash_of(record, seq=other) == record.hash:
                    return Break(
                        seq,
                        f"record belongs at seq {other} (records swapped, inserted or renumbered)",
                    )
            return Break(seq, "hash does not match contents (record modified)")
        if record.prev_hash != self.prev:
            return Break(
                seq,
                f"prev_hash does not link to seq {seq - 1} "
                "(the record before it was replaced, or records were inserted or swapped)",
            )
        if record.kind == CHECKPOINT:
            problem = _checkpoint_problem(record, self.trusted)
            if problem:
                return Break(seq, problem)
            self.checkpoints += 1
            self.signed_seq = seq
        elif record.kind == PRUNED and (problem := anchor_problem(record, self.trusted)):
            return Break(seq, problem)
        cp = self.checkpoint
        if cp is not None and seq == cp.seq and record.hash != cp.hash:
            return Break(seq, "differs from the checkpoint file (trail rewritten after it)")
        self.records += 1
        self.prev = record.hash
        self.next_seq = seq + 1
        return None

    def finish(self, head: tuple[int, str] | None = None) -> Break | None:
        last = self.next_seq - 1
        cp = self.checkpoint
        if cp is not None:
            if problem := cp.problem(self.trusted):
                return Break(cp.seq, f"checkpoint file: {problem}")
            if cp.seq > last:
                return Break(
                    last + 1,
                    f"trail ends at seq {last} but the checkpoint file vouches for seq "
                    f"{cp.seq} (records truncated)",
                )
            if cp.seq < self.first_seq:
                return Break(cp.seq, "the checkpoint file's record is no longer in the store")
        if head is not None:
            head_seq, head_hash = head
            if head_seq > last:
                return Break(
                    last + 1,
                    f"the store's head is seq {head_seq} but records end at seq {last} "
                    "(records truncated)",
                )
            if head_seq < last:
                return Break(
                    head_seq + 1, "record beyond the store's head (appended outside the writer)"
                )
            if last and head_hash != self.prev:
                return Break(last, "the store's head hash differs from the last record's hash")
        return None

    def report(self, brk: Break | None) -> VerifyReport:
        return VerifyReport(
            ok=brk is None,
            records_checked=self.records,
            checkpoints_checked=self.checkpoints,
            head_seq=self.next_seq - 1,
            first_seq=self.first_seq,
            signed_seq=self.signed_seq,
            first_break=brk,
        )


def run(verifier: ChainVerifier, stored: Iterable[tuple[Record, str]]) -> Break | None:
    for record, stored_sha in stored:
        if brk := verifier.feed(record, stored_sha):
            return brk
    return None


def start_of(
    first: int, anchors: Iterable[Record], trusted: TrustedKeys
) -> tuple[str, Break | None]:
    """The prev hash a trail starting at `first` must link to, from GENESIS or an anchor."""
    if first == 1:
        return GENESIS, None
    found: Record | None = None
    for anchor in anchors:
        if _payload_int(anchor.payload, "first_kept_seq") == first:
            found = anchor  # the latest one wins
    if found is None:
        what = "seq 1" if first == 2 else f"seqs 1-{first - 1}"
        return GENESIS, Break(
            1, f"record missing ({what} deleted, and no signed prune anchor vouches for it)"
        )
    if problem := anchor_problem(found, trusted):
        return GENESIS, Break(found.seq, problem)
    return str(found.payload["prev_hash_of_first_kept"]), None


def _payload_int(payload: Mapping[str, Any], key: str) -> int | None:
    try:
        return int(payload[key])
    except (KeyError, TypeError, ValueError):
        return None


def verify_trail(
    store: AuditStore, trusted_keys: TrustedKeys, checkpoint_file: str | Path | None = None
) -> VerifyReport:
    """Check the whole trail in `store`; see the module docstring for what is checked."""
    # Order matters against a live broker: the checkpoint file is written after its commit and
    # the head moves in the same transaction as its records, so file <= head <= what is stored.
    try:
        checkpoint = read_checkpoint_file(checkpoint_file) if checkpoint_file else None
    except ValueError as exc:
        return ChainVerifier(trusted_keys).report(Break(0, str(exc)))
    head = store.head()
    first = store.first_seq() or 1
    anchors = store.iter_records(from_seq=first, kinds=[PRUNED]) if first > 1 else ()
    start_prev, found = start_of(first, anchors, trusted_keys)
    verifier = ChainVerifier(
        trusted_keys, start_seq=first, start_prev=start_prev, checkpoint=checkpoint
    )
    if found is not None:
        return verifier.report(found)
    stored = store.iter_stored(from_seq=first, to_seq=head[0])
    brk = run(verifier, stored) or verifier.finish(head)
    if brk is None:
        # Records appended since the snapshot moved the head with them; rows above the head
        # *now* were slipped in behind the writer's back (max(seq) is read first on purpose).
        top = store.last_seq() or 0
        now = store.head()[0]
        if top > now:
            brk = Break(now + 1, "record beyond the store's head (appended outside the writer)")
    if brk is None and (problem := store.session_index_problem()) is not None:
        brk = Break(*problem)
    return verifier.report(brk)

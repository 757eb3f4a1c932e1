"""The chain's verdict on one session's records: the verifier run over the session's seq range.

Rules:
- The range starts at the last signed checkpoint before the session's first record (its
  signature vouches for the link the range starts from), or at the trail's first record, and
  ends at the first checkpoint at or after the session's last record (which signs every record
  of the session), or at the head when none has been sealed yet.
- Every record in the range is checked, other sessions' too: they are links of the same chain.
- The verdict is one of: verified (and signed), verified but not yet signed, broken (first
  break named), or unknown (no trusted key, or the store could not be read).
- `jitctl audit verify` remains the check of the whole trail (truncation, the checkpoint file).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jitctl.audit.chain import CHECKPOINT
from jitctl.audit.errors import AuditUnavailable
from jitctl.audit.store import COLUMNS, MARKS, row_to_record
from jitctl.audit.verify import Break, ChainVerifier, start_of

if TYPE_CHECKING:
    from jitctl.audit.store import AuditStore


@dataclass(frozen=True)
class ChainState:
    status: str  # "verified" | "unsigned" | "broken" | "unknown" | "pending"
    text: str
    first_seq: int = 0
    last_seq: int = 0
    signed_seq: int = 0
    first_break: Break | None = None

    @property
    def badge(self) -> str:
        """A few characters for a header that may be cut short."""
        return {
            "verified": "chain ✓",
            "unsigned": "chain ✓ (tail unsigned)",
            "broken": f"chain ✗ BROKEN at seq {self.first_break.seq if self.first_break else '?'}",
            "pending": "chain …",
        }.get(self.status, "chain ?")

    @property
    def ok(self) -> bool:
        return self.status in ("verified", "unsigned")

    def to_dict(self) -> dict[str, object]:
        brk = self.first_break
        return {
            "status": self.status,
            "text": self.text,
            "first_seq": self.first_seq,
            "last_seq": self.last_seq,
            "signed_seq": self.signed_seq,
            "break": {"seq": brk.seq, "problem": brk.problem} if brk else None,
        }


PENDING = ChainState("pending", "chain: verifying…")


def verify_session(
    store: AuditStore,
    trusted: Mapping[str, bytes] | None,
    first_seq: int,
    last_seq: int,
    *,
    progress: Callable[[int, int], None] | None = None,
    stop: Callable[[], bool] = lambda: False,
    between: Callable[[], None] | None = None,
) -> ChainState:
    """Verify seqs around first_seq..last_seq (see the module docstring); `between` is called
    every 500 records."""
    if not trusted:
        return ChainState("unknown", "chain: not verified (no trusted audit key)")
    try:
        return _verify(store, dict(trusted), first_seq, last_seq, progress, stop, between)
    except AuditUnavailable as exc:
        return ChainState("unknown", f"chain: not verified ({exc})")


def _verify(
    store: AuditStore,
    trusted: dict[str, bytes],
    first_seq: int,
    last_seq: int,
    progress: Callable[[int, int], None] | None,
    stop: Callable[[], bool],
    between: Callable[[], None] | None,
) -> ChainState:
    rows = store._rows(
        f"SELECT {COLUMNS} FROM audit_records WHERE {MARKS} AND kind = ? AND seq < ? "
        "ORDER BY seq DESC LIMIT 1",  # {MARKS}: the store's partial index of checkpoints
        [CHECKPOINT, first_seq],
    )
    if rows:
        anchor = row_to_record(rows[0])[0]
        start, start_prev = anchor.seq, anchor.prev_hash
    else:
        start = store.first_seq() or 1
        anchors = store.iter_records(from_seq=start, kinds=["audit.pruned"]) if start > 1 else ()
        start_prev, brk = start_of(start, anchors, trusted)
        if brk is not None:
            return _broken(start, last_seq, brk)
    closing = next(iter(store.iter_records(from_seq=last_seq, kinds=[CHECKPOINT], batch=1)), None)
    end = closing.seq if closing is not None else store.head()[0]
    verifier = ChainVerifier(trusted, start_seq=start, start_prev=start_prev)
    for record, stored_sha in store.iter_stored(from_seq=start, to_seq=end):
        if stop():
            return PENDING
        brk = verifier.feed(record, stored_sha)
        if brk is not None:
            return _broken(start, end, brk)
        if verifier.records % 500 == 0:
            if between is not None:
                between()
            if progress is not None:
                progress(record.seq - start, end - start)
    if verifier.next_seq <= end:
        return _broken(start, end, Break(verifier.next_seq, "record missing (deleted)"))
    span = f"seq {start}-{end}"
    if closing is not None:
        return ChainState(
            "verified",
            f"chain ✓ verified {span}, signed at seq {closing.seq}",
            start,
            end,
            closing.seq,
        )
    signed = verifier.signed_seq
    return ChainState(
        "unsigned",
        f"chain ✓ verified {span}; records after seq {signed or start} not yet signed",
        start,
        end,
        signed,
    )


def _broken(first: int, last: int, brk: Break) -> ChainState:
    return ChainState("broken", f"chain ✗ BROKEN at {brk}", first, last, 0, brk)

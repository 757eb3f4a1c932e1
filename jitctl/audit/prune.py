"""Pruning: delete the oldest records and leave a signed anchor so the rest still verifies.

Rules:
- Only a prefix goes: the kept trail starts at the lowest seq whose time is at or after
  `before_us`, so every deleted record is older than that time.
- The trail must verify before anything is deleted: pruning never launders a broken trail.
- A fresh checkpoint is sealed first, and neither it nor the record the checkpoint file points
  at is ever deleted, so verification always has a signed head inside the store.
- The `audit.pruned` anchor (signed {first_kept_seq, prev_hash_of_first_kept, pruned_before_us,
  time_us, key_id}) is appended *before* the delete: a crash in between leaves an unneeded
  anchor, never an unanchored trail.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jitctl.audit.chain import Signer, TrustedKeys, anchor_record
from jitctl.audit.checkpoint_file import read_checkpoint_file, write_checkpoint_file
from jitctl.audit.errors import AuditUnavailable
from jitctl.audit.store import AuditStore
from jitctl.audit.verify import verify_trail
from jitctl.audit.writer import AuditWriter
from jitctl.errors import AuditBrokenError


@dataclass(frozen=True, slots=True)
class PruneResult:
    deleted: int
    first_kept_seq: int
    anchor_seq: int | None  # None when nothing was old enough to delete


def prune(
    store: AuditStore,
    writer_or_key: AuditWriter | Signer,
    before_us: int,
    *,
    checkpoint_file: str | Path | None = None,
    trusted_keys: TrustedKeys | None = None,
) -> PruneResult:
    """Delete records older than `before_us` (µs since the epoch). Blocking: from the event
    loop, run it in a thread. With a writer, its key and checkpoint file are used."""
    if isinstance(writer_or_key, AuditWriter):
        signer: Signer = writer_or_key.key
        checkpoint_file = checkpoint_file or writer_or_key.checkpoint_file
    else:
        signer = writer_or_key
    trusted = trusted_keys if trusted_keys is not None else {signer.key_id: signer.public_raw}

    report = verify_trail(store, trusted, checkpoint_file)
    if not report.ok:
        raise AuditBrokenError(
            f"refusing to prune a trail that does not verify: {report.first_break}",
            "run `jitctl audit verify` and investigate before pruning",
        )
    checkpoint = store.append_prepared([], signer)[-1]
    if checkpoint_file is not None:
        write_checkpoint_file(checkpoint_file, checkpoint)

    first_kept = store.first_seq_since(before_us) or checkpoint.seq
    first_kept = min(first_kept, checkpoint.seq)
    saved = read_checkpoint_file(checkpoint_file) if checkpoint_file else None
    if saved is not None:
        first_kept = min(first_kept, saved.seq)
    current_first = store.first_seq() or 1
    if first_kept <= current_first:
        return PruneResult(deleted=0, first_kept_seq=current_first, anchor_seq=None)

    kept = store.get(first_kept)
    if kept is None:
        raise AuditUnavailable(f"audit store {store.url}: seq {first_kept} vanished while pruning")
    (anchor,) = store.append_batch([anchor_record(signer, first_kept, kept.prev_hash, before_us)])
    deleted = store.delete_before(first_kept)
    return PruneResult(deleted=deleted, first_kept_seq=first_kept, anchor_seq=anchor.seq)

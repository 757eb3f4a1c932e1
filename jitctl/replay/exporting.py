"""Exports of one session, for `jitctl audit export --session` and the TUI's export key.

Rules:
- asciicast v2 for sessions with terminal records (`term.*`), JSONL (lossless, the audit
  export's own format) for any session; records are streamed, never held.
- A file is written next to its final name and renamed into place, so a failed export never
  leaves half a file behind under the name asked for.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

from jitctl.errors import UsageError
from jitctl.replay.kinds import TERM_KINDS

if TYPE_CHECKING:
    from jitctl.audit.store import AuditStore

FORMATS = ("asciicast", "jsonl")
SUFFIX = {"asciicast": ".cast", "jsonl": ".jsonl"}


def has_terminal(store: AuditStore, session_id: str) -> bool:
    found = store.iter_records(session_id=session_id, kinds=list(TERM_KINDS), batch=1)
    return next(iter(found), None) is not None


def write(store: AuditStore, session_id: str, format_: str, out: TextIO) -> int:
    """Write one session in `format_` to `out`; returns the events or records written."""
    from jitctl.audit.export import export_asciicast, export_jsonl

    summary = store.session(session_id)
    if summary is None:
        raise UsageError(f"no session {session_id!r} in the trail", "see `jitctl sessions ls`")
    records = store.iter_records(session_id=session_id)
    if format_ == "jsonl":
        return export_jsonl(records, out)
    if format_ != "asciicast":
        raise UsageError(f"unknown export format {format_!r}", "use asciicast or jsonl")
    if not has_terminal(store, session_id):
        raise UsageError(
            f"session {session_id} has no terminal records to play",
            "export it with --format jsonl",
        )
    who = (summary.actor.email or summary.actor.subject) if summary.actor else "?"
    return export_asciicast(records, out, title=f"{who} on {summary.target} ({session_id})")


def export_session(store: AuditStore, session_id: str, format_: str, output: Path | None) -> int:
    """Write to `output` (atomically), or to stdout when it is None."""
    if output is None:
        count = write(store, session_id, format_, sys.stdout)
        sys.stdout.flush()
        return count
    output = Path(output)
    partial = output.with_name(f".{output.name}.partial")
    try:
        with partial.open("w", encoding="utf-8") as handle:
            count = write(store, session_id, format_, handle)
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    return count


def default_path(session_id: str, format_: str, directory: Path | None = None) -> Path:
    return (directory or Path.cwd()) / f"jitctl-{session_id}{SUFFIX[format_]}"

"""`jitctl replay --print`: a session as readable text (or one JSON document), streamed.

Rules:
- Records are streamed from the store in seq order; nothing holds the whole session.
- Text: one line per event, `wall time  +offset  TAG  summary`; SQL statements keep their
  lines (indented); terminal output is coalesced into blocks of plain text (escape sequences
  dropped) under a `│` gutter; keystrokes are gathered into the line typed, shown at Enter.
- JSON: `{"session": summary, "events": [...]}`, each event {seq, time_us, offset_s, kind,
  tag, summary, payload} plus `data` (UTF-8 text) or `data_base64` when the record has data.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from datetime import tzinfo
from typing import IO, Any

from jitctl.audit.records import Record, SessionSummary
from jitctl.replay.kinds import (
    TERM_INPUT,
    TERM_OUTPUT,
    plain_output,
    summary,
    tag_and_category,
)
from jitctl.replay.timefmt import offset, wall


def header_lines(session: SessionSummary | None, tz: tzinfo | None = None) -> list[str]:
    if session is None:
        return []
    actor = session.actor
    who = (actor.email or actor.subject) if actor else "?"
    agent = f" (agent {actor.agent})" if actor and actor.agent else ""
    lines = [
        f"session {session.id}: {session.protocol or '?'} to {session.target} by {who}{agent}",
        f"started {wall(session.start_us, tz, date=True)}, status {session.status}"
        + (f" ({session.end_reason})" if session.end_reason else "")
        + f", {session.record_count} records",
    ]
    if actor and actor.reason:
        lines.append(f"reason: {actor.reason}")
    if actor and actor.command:
        lines.append(f"command: {actor.command}")
    return lines


class _Text:
    """Folds terminal records into readable blocks while streaming."""

    def __init__(self, out: IO[str], start_us: int, tz: tzinfo | None) -> None:
        self.out, self.start_us, self.tz = out, start_us, tz
        self.output = ""
        self.output_at: int | None = None
        self.typed = ""

    def _line(self, time_us: int, tag: str, text: str) -> None:
        stamp = f"{wall(time_us, self.tz)}  {offset(time_us - self.start_us):>11}"
        self.out.write(f"{stamp}  {tag:<5}  {text}\n")

    def flush_output(self) -> None:
        if self.output_at is None:
            return
        text = self.output.replace("\r\n", "\n").replace("\r", "\n")
        lines = text.split("\n")
        while lines and not lines[-1].strip():
            lines.pop()
        self._line(self.output_at, "OUT", f"{len(lines)} line(s)")
        for line in lines:
            self.out.write(f"{'':>38}│ {line}\n")
        self.output, self.output_at = "", None

    def record(self, record: Record) -> None:
        if record.kind == TERM_OUTPUT:
            if self.output_at is None:
                self.output_at = record.time_us
            self.output += plain_output(record.data)
            if b"\n" in record.data:
                self.typed = ""  # keys typed before this went to a program, not to a command line
            return
        if record.kind == TERM_INPUT:
            for char in record.data.decode("utf-8", "replace"):
                if char in "\r\n":
                    self.flush_output()
                    self._line(record.time_us, "CMD", self.typed)
                    self.typed = ""
                elif char in "\x7f\x08":
                    self.typed = self.typed[:-1]
                elif char == "\x03":
                    self.flush_output()
                    self._line(record.time_us, "IN", f"{self.typed}^C")
                    self.typed = ""
                elif char >= " ":
                    self.typed += char
            return
        self.flush_output()
        tag, _ = tag_and_category(record.kind, record.payload)
        text = record.payload.get("text")
        if record.kind in ("pg.statement", "pg.blocked") and isinstance(text, str) and "\n" in text:
            decision = summary(record).split(": ", 1)[0] if record.kind == "pg.blocked" else ""
            self._line(record.time_us, tag, decision)
            for line in text.strip("\n").split("\n"):
                self.out.write(f"{'':>38}│ {line}\n")
            return
        self._line(record.time_us, tag, summary(record))

    def close(self) -> None:
        self.flush_output()
        if self.typed:
            self.out.write(f"{'':>38}  (typed, no Enter: {self.typed})\n")


def print_text(
    records: Iterable[Record],
    out: IO[str],
    session: SessionSummary | None,
    tz: tzinfo | None = None,
) -> int:
    for line in header_lines(session, tz):
        out.write(line + "\n")
    out.write("\n")
    count = 0
    folder: _Text | None = None
    for record in records:
        if folder is None:
            folder = _Text(out, session.start_us if session else record.time_us, tz)
        folder.record(record)
        count += 1
    if folder is not None:
        folder.close()
    return count


def event_json(record: Record, start_us: int) -> dict[str, Any]:
    tag, category = tag_and_category(record.kind, record.payload)
    event: dict[str, Any] = {
        "seq": record.seq,
        "time_us": record.time_us,
        "offset_s": round((record.time_us - start_us) / 1e6, 6),
        "kind": record.kind,
        "tag": tag,
        "category": category,
        "summary": summary(record),
        "payload": dict(record.payload),
    }
    if record.data:
        try:
            event["data"] = record.data.decode("utf-8")
        except UnicodeDecodeError:
            event["data_base64"] = base64.b64encode(record.data).decode("ascii")
    return event


def print_json(
    records: Iterable[Record], out: IO[str], session: SessionSummary | None, extra: dict[str, Any]
) -> int:
    """One JSON document, written as the records stream by."""
    head = {"session": session.to_dict() if session else None, **extra}
    out.write(json.dumps(head, ensure_ascii=False, sort_keys=True)[:-1] + ', "events": [')
    count = 0
    start_us: int | None = session.start_us if session else None
    for record in records:
        if start_us is None:
            start_us = record.time_us
        out.write(("," if count else "") + "\n  ")
        out.write(json.dumps(event_json(record, start_us), ensure_ascii=False, sort_keys=True))
        count += 1
    out.write("\n]}\n")
    return count

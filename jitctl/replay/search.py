"""Search within a session: statements, commands, output, payloads. Plain Python, streamed.

Rules:
- Case-insensitive substring search over what a person reads: SQL text and decisions, result
  samples, payload strings, terminal output without escape sequences, tcp data as UTF-8.
- Terminal output is searched as one stream per channel: a match split across two records is
  found and reported at the record where it ends.
- Typed input is searched as command lines (keys gathered up to Enter, ⌫ applied), reported
  at the record holding the Enter.
- Matches come in session order; the caller decides how many to wait for.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from jitctl.audit.records import Record
from jitctl.replay.kinds import TERM_INPUT, TERM_OUTPUT, one_line, plain_output, searchable


@dataclass(frozen=True)
class Match:
    position: int
    seq: int
    snippet: str


def _snippet(text: str, at: int, size: int) -> str:
    return one_line(text[max(0, at - 30) : at + size + 30], 80)


def search(
    records: Iterable[tuple[int, Record]], needle: str, stop: Callable[[], bool] = lambda: False
) -> Iterator[Match]:
    wanted = needle.lower()
    if not wanted:
        return
    carry: dict[object, str] = {}
    lines: dict[object, str] = {}
    for position, record in records:
        if stop():
            return
        kind = record.kind
        channel = record.payload.get("channel", 0)
        if kind == TERM_OUTPUT:
            before = carry.get(channel, "")
            text = before + plain_output(record.data)
            found = text.lower().find(wanted)
            while found >= 0 and found + len(wanted) <= len(before):
                found = text.lower().find(wanted, found + 1)
            if found >= 0:
                yield Match(position, record.seq, _snippet(text, found, len(wanted)))
            carry[channel] = text[-(len(wanted) - 1) :] if len(wanted) > 1 else ""
            continue
        if kind == TERM_INPUT:
            line = lines.get(channel, "")
            for char in record.data.decode("utf-8", "replace"):
                if char in "\r\n":
                    if wanted in line.lower():
                        yield Match(position, record.seq, one_line(line, 80))
                        break
                    line = ""
                elif char in "\x7f\x08":
                    line = line[:-1]
                elif char >= " ":
                    line += char
            lines[channel] = "" if any(c in record.data for c in b"\r\n") else line
            continue
        text = searchable(record)
        found = text.lower().find(wanted)
        if found >= 0:
            yield Match(position, record.seq, _snippet(text, found, len(wanted)))

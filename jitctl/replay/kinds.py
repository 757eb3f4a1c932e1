"""What the replay knows about record kinds: a tag, a category, a one-line summary and the
details of each record. Pure functions, shared by the TUI, `--print` and `--json`.

Rules:
- Known kinds are shown richly (docs/audit-schema.md, docs/replay.md); any other kind is shown
  generically from its payload and data, so records added by later plugins never break replay.
- A few payload keys mean the same thing in every kind and are read wherever they appear:
  `decision`/`rule`/`reason` (a policy decision), `approver` (an approval), `masked`
  ({detector: count}), `command` (a command line).
- A "command" is what an actor asked for: a SQL statement (allowed or blocked), an SSH exec, a
  line typed into a terminal (a `term.input` holding Enter).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from jitctl.audit.records import Record

TERM_OUTPUT, TERM_INPUT, TERM_RESIZE, TERM_EXIT = (
    "term.output",
    "term.input",
    "term.resize",
    "term.exit",
)
TERM_KINDS = (TERM_OUTPUT, TERM_INPUT, TERM_RESIZE, TERM_EXIT)
ENTER = (b"\r", b"\n")

_TAGS = {
    "session.start": ("START", "session"),
    "session.end": ("END", "session"),
    "session.denied": ("DENY", "blocked"),
    "pg.statement": ("SQL", "command"),
    "pg.blocked": ("BLOCK", "blocked"),
    "pg.result": ("RES", "result"),
    "pg.error": ("ERR", "error"),
    "pg.notification": ("NOTE", "meta"),
    TERM_OUTPUT: ("OUT", "output"),
    TERM_INPUT: ("IN", "input"),
    TERM_RESIZE: ("SIZE", "meta"),
    TERM_EXIT: ("EXIT", "session"),
    "ssh.exec": ("EXEC", "command"),
    "ssh.shell": ("SHELL", "meta"),
    "ssh.subsystem": ("SUBSY", "meta"),
    "ssh.sftp": ("SFTP", "command"),
    "ssh.scp": ("SCP", "command"),
    "ssh.data": ("DATA", "data"),
    "ssh.exit": ("EXIT", "session"),
    "ssh.eof": ("EOF", "meta"),
    "ssh.forward": ("FWD", "meta"),
    "ssh.connection": ("CONN", "meta"),
    "ssh.host_key": ("HKEY", "meta"),
    "tcp.data": ("DATA", "data"),
    "http.ws.message": ("WS", "data"),
    "gcp.credential": ("CRED", "credential"),
    "gcp.credential.error": ("CRED!", "error"),
}
# Matches the escape sequences of a VT stream (CSI, OSC, two-byte ESC) for plain-text views.
ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_]|.)")
_CONTROL_NAMES = {"\r": "⏎", "\n": "⏎", "\t": "⇥", "\x7f": "⌫", "\x08": "⌫", "\x1b": "␛"}


def tag_and_category(kind: str, payload: Mapping[str, Any] | None = None) -> tuple[str, str]:
    """A short tag (≤ 5 characters) and a category (a style class) for a kind; any record
    whose payload carries a decision other than allow is in the "blocked" category."""
    if payload and str(payload.get("decision", "allow")) not in ("allow", "", "None"):
        return _TAGS.get(kind, ("BLOCK", ""))[0], "blocked"
    if kind in _TAGS:
        return _TAGS[kind]
    if "approv" in kind:
        return "APPR", "approval"
    if kind.endswith((".blocked", ".denied")):
        return "BLOCK", "blocked"
    if kind.endswith((".exec", ".command", ".statement")):
        return "CMD", "command"
    if kind.endswith(".error"):
        return "ERR", "error"
    if kind.startswith("http."):
        return "HTTP", "command"
    head = kind.split(".", 1)[0].upper()
    return head[:5] or "?", "other"


def is_command(record: Record) -> bool:
    kind = record.kind
    if kind == TERM_INPUT:
        return any(mark in record.data for mark in ENTER)
    if kind == "pg.statement":
        return not record.payload.get("internal")
    return tag_and_category(kind, record.payload)[1] in ("command", "blocked") and (
        kind not in ("session.denied",)
    )


def is_masked(record: Record) -> bool:
    return bool(record.payload.get("masked")) or record.kind.endswith(".masked")


def had_decision(record: Record) -> bool:
    return tag_and_category(record.kind, record.payload)[1] == "blocked"


# -- text helpers ---------------------------------------------------------------------------------


def one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def plain_output(data: bytes) -> str:
    """Terminal output as plain text: escape sequences dropped, UTF-8 decoded leniently."""
    return ANSI.sub("", data.decode("utf-8", "replace"))


def keystrokes(data: bytes) -> str:
    """Terminal input as the keys a person would name: ⏎ for Enter, ^C, ⌫, ␛[A ..."""
    out: list[str] = []
    for char in data.decode("utf-8", "replace"):
        if char in _CONTROL_NAMES:
            out.append(_CONTROL_NAMES[char])
        elif ord(char) < 0x20:
            out.append("^" + chr(ord(char) + 0x40))
        else:
            out.append(char)
    return "".join(out)


def printable(data: bytes, limit: int = 120) -> str:
    """Bytes as text for a one-line preview: printable ASCII kept, the rest as '.'."""
    chunk = data[:limit]
    text = "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk)
    return text + ("…" if len(data) > limit else "")


def hexdump(data: bytes, limit: int = 4096, width: int = 16) -> str:
    """`xxd`-like lines: offset, hex bytes, printable ASCII."""
    lines = []
    for offset in range(0, min(len(data), limit), width):
        chunk = data[offset : offset + width]
        hexes = " ".join(f"{b:02x}" for b in chunk).ljust(width * 3 - 1)
        lines.append(f"{offset:08x}  {hexes}  {printable(chunk, width)}")
    if len(data) > limit:
        lines.append(f"… {len(data) - limit} more bytes")
    return "\n".join(lines)


def masked_text(masked: Any) -> str:
    if isinstance(masked, Mapping):
        return ", ".join(f"{name}={count}" for name, count in sorted(masked.items()))
    return str(masked)


def _who(record: Record) -> str:
    actor = record.actor
    if actor is None:
        return ""
    who = actor.email or actor.subject
    return f"{who} (agent {actor.agent})" if actor.agent else who


def _compact(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)


def _decision(payload: Mapping[str, Any]) -> str:
    decision = payload.get("decision")
    if decision in (None, "", "allow"):
        return ""
    rule = payload.get("rule") or "default action"
    reason = payload.get("reason")
    return f"{decision} by {rule}" + (f" ({reason})" if reason else "")


# -- one-line summaries -------------------------------------------------------------------------


def summary(record: Record) -> str:
    """The event in one line (the timeline, `--print`)."""
    p = record.payload
    kind = record.kind
    if kind == "session.start":
        via = f" via {p['upstream']}" if p.get("upstream") else ""
        return f"{p.get('protocol') or '?'} session to {record.target}{via} by {_who(record)}"
    if kind == "session.end":
        reason = f" ({p['reason']})" if p.get("reason") else ""
        up, down = p.get("bytes_up"), p.get("bytes_down")
        return f"{p.get('status', 'closed')}{reason} · up {up} B / down {down} B"
    if kind == "session.denied":
        return f"{p.get('code', 'denied')}: {p.get('error') or p.get('reason') or ''}".strip()
    if kind in ("pg.statement", "pg.blocked"):
        text = one_line(str(p.get("text", "")))
        decision = _decision(p)
        internal = "(jitctl catalog) " if p.get("internal") else ""
        return f"{decision}: {text}" if decision else internal + text
    if kind == "pg.result":
        return _result_summary(p)
    if kind == "pg.error":
        return f"{p.get('sqlstate', '')} {p.get('message', '')}".strip()
    if kind == TERM_OUTPUT:
        return one_line(plain_output(record.data).replace("\r", " ").replace("\n", " ⏎ "))
    if kind == TERM_INPUT:
        return keystrokes(record.data)
    if kind == TERM_RESIZE:
        term = f" {p['term']}" if p.get("term") else ""
        return f"{p.get('cols')}x{p.get('rows')}{term}"
    if kind == TERM_EXIT:
        return f"exit status {p.get('status')}" + (
            f" signal {p['signal']}" if p.get("signal") else ""
        )
    if kind in ("ssh.exec", "ssh.shell"):
        decision = _decision(p)
        what = str(p.get("command", "")) if kind == "ssh.exec" else "interactive shell"
        return f"{decision}: {what}" if decision else one_line(what)
    if kind == "ssh.data":
        arrow = "→" if p.get("stream") == "stdin" else "←"
        size = p.get("len", len(record.data))
        return f"{arrow} {p.get('stream', '')} {size} B: {printable(record.data, 80)}"
    if kind == "tcp.data":
        arrow = "→" if p.get("dir") == "up" else "←"
        size = p.get("len", len(record.data))
        return f"{arrow} {size} B @{p.get('offset')}: {printable(record.data, 80)}"
    if kind == "http.ws.message":
        arrow = "→" if p.get("from") == "client" else "←"
        said = p.get("text")
        body = one_line(str(said), 80) if said is not None else printable(record.data, 80)
        cut = " (cut)" if p.get("truncated") else ""
        return f"{arrow} {p.get('type', '')} {p.get('size')} B{cut}: {body}"
    if kind == "gcp.credential":
        who = p.get("service_account") or p.get("federated_principal") or ""
        scopes = ",".join(str(s) for s in p.get("scopes") or [])
        return f"{who} scopes {scopes} until {p.get('expires_at')}"
    return _generic_summary(record)


def _result_summary(p: Mapping[str, Any]) -> str:
    if p.get("skipped"):
        return f"statement #{p.get('statement')} skipped (not run)"
    error = p.get("error")
    if isinstance(error, Mapping):
        head = "blocked" if p.get("blocked") else f"ERROR {error.get('sqlstate', '')}"
        return f"{head}: {error.get('message', '')}"
    parts = [str(p.get("tag") or "(no tag)")]
    if p.get("rows") is not None:
        parts.append(f"{p['rows']} rows")
    if p.get("duration_ms") is not None:
        parts.append(f"{p['duration_ms']} ms")
    if p.get("masked"):
        parts.append(f"masked {masked_text(p['masked'])}")
    return " · ".join(parts)


def _generic_summary(record: Record) -> str:
    p = record.payload
    decision = _decision(p)
    pieces = [decision] if decision else []
    first = ("command", "text", "approver", "reason", "method", "path", "status", "error")
    keys = [k for k in first if k in p and (k != "reason" or not decision)]
    keys += [k for k in p if k not in first and k not in ("decision", "rule", "channel")]
    pieces += [f"{key}={_compact(p[key])}" for key in keys[:5]]
    if record.data:
        pieces.append(f"{len(record.data)} B")
    return one_line(" ".join(pieces))


# -- details --------------------------------------------------------------------------------------


@dataclass
class Details:
    """Everything the detail pane shows about one record, renderer-neutral."""

    title: str
    fields: list[tuple[str, str]] = field(default_factory=list)
    sql: str | None = None  # shown syntax-highlighted
    columns: list[str] = field(default_factory=list)  # a recorded result sample
    rows: list[list[Any]] = field(default_factory=list)
    text: str | None = None  # plain text (terminal output, decoded data)
    hexdump: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # payload keys not shown above


_SHOWN = {"text", "rows_sample", "columns", "decision", "rule", "reason", "masked", "approver"}


def details(record: Record) -> Details:
    p = dict(record.payload)
    out = Details(title=f"{record.kind} · seq {record.seq}")
    decision = _decision(p)
    if decision:
        out.fields.append(("decision", decision))
    elif p.get("decision"):
        out.fields.append(
            ("decision", f"{p['decision']}" + (f" ({p['rule']})" if p.get("rule") else ""))
        )
    for key in ("approver", "reason"):
        if p.get(key) and not (key == "reason" and decision):
            out.fields.append((key, _compact(p[key])))
    if p.get("masked"):
        out.fields.append(("masked", masked_text(p["masked"])))
    shown = set(_SHOWN)
    if record.kind in ("pg.statement", "pg.blocked") or (
        isinstance(p.get("text"), str) and record.kind.endswith(("statement", "blocked"))
    ):
        out.sql = str(p.get("text", ""))
        for key in ("kind", "tables", "functions", "flags", "params", "decided_by"):
            if p.get(key) not in (None, "", [], {}):
                out.fields.append((key, _compact(p[key])))
                shown.add(key)
    elif record.kind == "pg.result":
        out.fields.insert(0, ("result", _result_summary(p)))
        out.columns = [str(c) for c in p.get("columns") or []]
        out.rows = [list(r) for r in p.get("rows_sample") or []]
        shown |= {"tag", "rows", "duration_ms", "error", "skipped", "blocked"}
    elif isinstance(p.get("text"), str):
        shown.discard("text")
    if record.kind == TERM_OUTPUT:
        out.text = plain_output(record.data)
    elif record.kind == TERM_INPUT:
        out.text = keystrokes(record.data)
    elif record.data:
        decoded = record.data.decode("utf-8", "replace")
        if "\ufffd" not in decoded and record.kind != "tcp.data":
            out.text = decoded
    if record.data:
        out.hexdump = hexdump(record.data)
    if record.actor is not None and record.kind in ("session.start", "session.denied"):
        actor = record.actor.to_dict()
        out.fields += [(f"actor.{k}", _compact(v)) for k, v in actor.items()]
    out.extra = {k: v for k, v in p.items() if k not in shown}
    out.fields += [(k, _compact(v)) for k, v in out.extra.items()]
    return out


def searchable(record: Record) -> str:
    """The text a search looks at for one record (output without escape sequences)."""
    kind = record.kind
    if kind == TERM_OUTPUT:
        return plain_output(record.data)
    if kind == TERM_INPUT:
        return record.data.decode("utf-8", "replace")
    if kind == "tcp.data":
        return record.data.decode("utf-8", "replace")
    parts = [summary(record)]
    for key, value in record.payload.items():
        if isinstance(value, str) and key != "text":
            parts.append(value)
    if isinstance(record.payload.get("text"), str):
        parts.append(record.payload["text"])
    rows = record.payload.get("rows_sample")
    if isinstance(rows, list):
        parts.append(json.dumps(rows, ensure_ascii=False, default=str))
    return "\n".join(parts)

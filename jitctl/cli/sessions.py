"""`jitctl sessions ls|show`: find and read recorded sessions (from the audit store)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from jitctl.cli._render import emit_json, kv, say, table

if TYPE_CHECKING:
    from jitctl.audit.records import SessionSummary

app = typer.Typer(help="Find and read recorded sessions.", no_args_is_help=True)

_CONFIG = typer.Option(None, "--config", help="Broker config (TOML) naming the store.")
_STATE_DIR = typer.Option(None, "--state-dir", help="Broker state dir (SQLite store, keys).")


def _duration(summary: SessionSummary) -> str:
    from jitctl.durations import format_duration

    return "open" if summary.duration_s is None else format_duration(summary.duration_s)


@app.command("ls")
def ls(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
    target: str | None = typer.Option(None, "--target", help="Only sessions to this target."),
    user: str | None = typer.Option(
        None, "--user", help="Only sessions of this subject, email or agent label."
    ),
    since: str | None = typer.Option(
        None, "--since", help="Only sessions started since WHEN (ISO time, or a duration: 1h)."
    ),
    limit: int | None = typer.Option(None, "--limit", help="At most this many, newest first."),
    config: Path | None = _CONFIG,
    state_dir: Path | None = _STATE_DIR,
) -> None:
    """List sessions, newest first."""
    from jitctl.cli._store import format_bytes, format_time, parse_when, resolve

    since_us = parse_when(since) if since else None
    with resolve(config, state_dir).open() as store:
        found = store.sessions(target=target, user=user, since_us=since_us, limit=limit)
    if json_out:
        emit_json([summary.to_dict() for summary in found])
        return
    if not found:
        # An empty table's frame reads like an error in the output; say what it means.
        filtered = target is not None or user is not None or since is not None
        say("No sessions match these filters." if filtered else "No sessions in this trail yet.")
        return
    rows = [
        (
            s.id,
            s.target,
            (s.actor.email or s.actor.subject) if s.actor else "",
            s.actor.agent if s.actor else "",
            format_time(s.start_us),
            _duration(s),
            f"{format_bytes(s.bytes_up)} / {format_bytes(s.bytes_down)}",
            s.status,
        )
        for s in found
    ]
    columns = ("id", "target", "user", "agent", "start", "duration", "up / down", "status")
    table(None, columns, rows)


@app.command("show")
def show(
    session_id: str = typer.Argument(
        ..., help="A session id from `jitctl sessions ls`, or a unique start of it."
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
    config: Path | None = _CONFIG,
    state_dir: Path | None = _STATE_DIR,
) -> None:
    """Show one session: who, what, when, how long, how much, and its records by kind."""
    from jitctl.cli._store import find_session, format_bytes, format_time, resolve

    with resolve(config, state_dir).open() as store:
        summary = find_session(store, session_id)
    if json_out:
        emit_json(summary.to_dict())
        return
    actor = summary.actor
    pairs: list[tuple[str, object]] = [("session", summary.id), ("target", summary.target)]
    if summary.protocol:
        pairs.append(("protocol", summary.protocol))
    if actor is not None:
        pairs += [
            ("subject", actor.subject),
            ("email", actor.email),
            ("groups", ", ".join(actor.groups)),
            ("issuer", actor.issuer),
            ("agent", actor.agent),
            ("command", actor.command),
            ("reason", actor.reason),
            ("correlation id", actor.correlation_id),
            ("client address", actor.client_addr),
        ]
    pairs += [
        ("started", format_time(summary.start_us)),
        ("ended", format_time(summary.end_us) or "(still open)"),
        ("duration", _duration(summary)),
        ("bytes up", f"{format_bytes(summary.bytes_up)} (client -> upstream)"),
        ("bytes down", f"{format_bytes(summary.bytes_down)} (upstream -> client)"),
        ("status", summary.status + (f" ({summary.end_reason})" if summary.end_reason else "")),
        ("records", str(summary.record_count)),
    ]
    pairs += [(f"  {kind}", str(n)) for kind, n in sorted(summary.kind_counts.items())]
    kv([(key, value) for key, value in pairs if value not in ("", None)])

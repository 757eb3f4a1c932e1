"""`jitctl replay [ID]`: the forensic TUI, or with `--print` a transcript for pipes and agents.

Textual and pyte are imported inside the command, so `jitctl --help` never pays for them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

if TYPE_CHECKING:
    from jitctl.audit.store import AuditStore
    from jitctl.cli._store import AuditSource

_CONFIG = typer.Option(None, "--config", help="Broker config (TOML) naming the store.")
_STATE_DIR = typer.Option(None, "--state-dir", help="Broker state dir (SQLite store, keys).")
HAS = ("blocks", "approvals", "masks")


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)


def replay(
    session_id: str | None = typer.Argument(
        None, help="A session id (or a unique start of it); none: pick one."
    ),
    print_: bool = typer.Option(False, "--print", help="Print a transcript instead of the TUI."),
    json_out: bool = typer.Option(
        False, "--json", help="A transcript as one JSON document (implies --print)."
    ),
    user: str | None = typer.Option(None, "--user", help="Picker: subject, email or agent."),
    target: str | None = typer.Option(None, "--target", help="Picker: only this target."),
    agent: str | None = typer.Option(None, "--agent", help="Picker: only this agent label."),
    since: str | None = typer.Option(None, "--since", help="Picker: started since WHEN."),
    until: str | None = typer.Option(None, "--until", help="Picker: started before WHEN."),
    has: list[str] | None = typer.Option(
        None,
        "--has",
        metavar="blocks|approvals|masks",
        help="Picker: only sessions with blocks, approvals or masks (repeatable).",
    ),
    key: list[Path] | None = typer.Option(
        None, "--key", metavar="FILE", help="Also trust this audit public key (repeatable)."
    ),
    config: Path | None = _CONFIG,
    state_dir: Path | None = _STATE_DIR,
) -> None:
    """Replay a recorded session: timeline, details, terminal, search, export."""
    from jitctl.cli._render import need_terminal
    from jitctl.cli._store import find_session, resolve
    from jitctl.errors import UsageError

    source = resolve(config, state_dir)
    if print_ or json_out:
        if session_id is None:
            raise UsageError("--print needs a session id", "see `jitctl sessions ls`")
        _print(source, session_id, json_out, key)
        return
    filters = _filters(user, target, agent, since, until, has or [])
    need_terminal("jitctl replay", "`jitctl replay --print ID` (or --json)")
    from jitctl.replay.app import ReplayApp

    trusted = _trusted(source, key)
    with source.open() as store:
        if session_id is not None:
            session_id = find_session(store, session_id).id
        ReplayApp(store, trusted, session_id=session_id, filters=filters).run()


def _filters(
    user: str | None,
    target: str | None,
    agent: str | None,
    since: str | None,
    until: str | None,
    has: list[str],
) -> str:
    """The picker's filter line, as a user would type it."""
    from jitctl.errors import UsageError

    parts = [
        f"{name}:{value}"
        for name, value in (
            ("user", user),
            ("target", target),
            ("agent", agent),
            ("since", since),
            ("until", until),
        )
        if value
    ]
    for item in has:
        for flag in item.split(","):
            if flag not in HAS:
                raise UsageError(f"--has {flag!r}?", "use blocks, approvals or masks")
            parts.append(f"has:{flag}")
    return " ".join(parts)


def _trusted(source: AuditSource, key: list[Path] | None) -> dict[str, bytes] | None:
    from jitctl.audit.errors import AuditUnavailable

    try:
        return source.trusted_keys(key)
    except AuditUnavailable:
        return None  # shown as "chain: not verified (no trusted audit key)"


def _print(source: AuditSource, session_id: str, json_out: bool, key: list[Path] | None) -> None:
    from jitctl.cli._store import find_session
    from jitctl.replay.transcript import print_json, print_text

    trusted = _trusted(source, key) if json_out else None
    with source.open() as store:
        summary = find_session(store, session_id)
        session_id = summary.id
        records: Any = store.iter_records(session_id=session_id)
        if summary.status == "denied" and session_id.startswith("denied-"):
            records = [store.get(int(session_id.split("-", 1)[1]))]
        if json_out:
            extra = {"chain": _chain(store, trusted, session_id)}
            print_json(records, sys.stdout, summary, extra)
        else:
            print_text(records, sys.stdout, summary)
    sys.stdout.flush()


def _chain(store: AuditStore, trusted: dict[str, bytes] | None, session_id: str) -> Any:
    from jitctl.replay.chain import verify_session
    from jitctl.replay.reader import SessionReader

    reader = SessionReader(store, session_id)
    reader.build()
    seqs = reader.index.seqs
    return verify_session(store, trusted, seqs[0], seqs[reader.count - 1]).to_dict()

"""`jitctl audit verify|export|prune`: prove the trail is whole; hand it on; shrink it.

Each command reads the store named by --config / --state-dir (see `jitctl.cli._store`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from jitctl.cli._render import emit_json, say

app = typer.Typer(help="Verify, export and prune the audit trail.", no_args_is_help=True)

_CONFIG = typer.Option(None, "--config", help="Broker config (TOML) naming the store.")
_STATE_DIR = typer.Option(None, "--state-dir", help="Broker state dir (SQLite store, keys).")


@app.command("verify")
def verify(
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
    key: list[Path] | None = typer.Option(
        None, "--key", metavar="FILE", help="Also trust this public key file (repeatable)."
    ),
    config: Path | None = _CONFIG,
    state_dir: Path | None = _STATE_DIR,
) -> None:
    """Check every link and checkpoint signature of the trail; exit 7 at the first break."""
    from jitctl.audit.verify import verify_trail
    from jitctl.cli._store import resolve
    from jitctl.errors import AuditBrokenError

    source = resolve(config, state_dir)
    with source.open() as store:  # first: a missing trail is the error to report, not its key
        report = verify_trail(store, source.trusted_keys(key), source.checkpoint_file)
    if json_out:
        emit_json(report.to_dict())
    if report.first_break is not None:
        raise AuditBrokenError(
            f"the audit trail is broken at {report.first_break}",
            f"records before seq {report.first_break.seq} verified; treat everything from there "
            "on as untrustworthy and restore the store from a backup",
        )
    if not json_out:
        span = f"seq {report.first_seq}-{report.head_seq}" if report.records_checked else "empty"
        print(
            f"audit trail verified: {report.records_checked} records ({span}), "
            f"{report.checkpoints_checked} signed checkpoints, signed through seq "
            f"{report.signed_seq}"
        )


@app.command("export")
def export(
    format_: str = typer.Option("jsonl", "--format", help="jsonl | ocsf | asciicast"),
    session: str | None = typer.Option(None, "--session", help="Only this session's records."),
    since: str | None = typer.Option(
        None, "--since", help="Only records since WHEN (ISO time, or a duration such as 1h)."
    ),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write here, not stdout."),
    config: Path | None = _CONFIG,
    state_dir: Path | None = _STATE_DIR,
) -> None:
    """Export records: JSONL (lossless, verifiable offline), OCSF (for a SIEM) or asciicast v2
    (one terminal session, for players)."""
    from jitctl.cli._store import find_session, parse_when, resolve
    from jitctl.errors import UsageError

    if format_ == "asciicast":
        from jitctl.replay.exporting import export_session

        if session is None:
            raise UsageError("--format asciicast exports one session", "add --session ID")
        with resolve(config, state_dir).open() as store:
            count = export_session(store, find_session(store, session).id, "asciicast", output)
        if output is not None:
            say(f"wrote {count} asciicast events to {output}")
        return
    if format_ not in ("jsonl", "ocsf"):
        raise UsageError(f"unknown export format {format_!r}", "use jsonl, ocsf or asciicast")
    from jitctl.audit.export import export_jsonl, export_ocsf

    writer = export_jsonl if format_ == "jsonl" else export_ocsf
    since_us = parse_when(since) if since else None
    source = resolve(config, state_dir)
    with source.open() as store:
        if session is not None:
            session = find_session(store, session).id
        records = store.iter_records(session_id=session, since_us=since_us)
        if output is None:
            count = writer(records, sys.stdout)
            sys.stdout.flush()
        else:
            with output.open("w", encoding="utf-8") as handle:
                count = writer(records, handle)
            say(f"wrote {count} records to {output}")
    if count == 0:
        say("no records matched")


@app.command("prune")
def prune(
    before: str = typer.Option(
        ..., "--before", help="Delete records older than this: ISO time, or a duration like 30d."
    ),
    config: Path | None = _CONFIG,
    state_dir: Path | None = _STATE_DIR,
) -> None:
    """Remove records older than DATE, leaving a signed anchor so the rest still verifies."""
    from jitctl.audit.keys import load_signing_key
    from jitctl.audit.prune import prune as prune_trail
    from jitctl.cli._store import format_time, parse_when, resolve

    before_us = parse_when(before)
    source = resolve(config, state_dir)
    with source.open() as store:  # first: a missing trail is the error to report, not its key
        key = load_signing_key(source.state_dir)
        result = prune_trail(
            store,
            key,
            before_us,
            checkpoint_file=source.checkpoint_file,
            trusted_keys=source.trusted_keys(),
        )
    if result.anchor_seq is None:
        say(f"nothing to prune: no record older than {format_time(before_us)} can go")
    else:
        say(
            f"pruned {result.deleted} records older than {format_time(before_us)}; the trail "
            f"now starts at seq {result.first_kept_seq} (signed anchor at seq {result.anchor_seq})"
        )

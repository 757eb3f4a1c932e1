"""`jitctl audit verify|export|prune`: prove the trail is whole; hand it on."""

from __future__ import annotations

from typing import Optional

import typer

from jitctl.errors import NotAvailableError

app = typer.Typer(help="Verify, export and prune the audit trail.", no_args_is_help=True)
_ISSUE = "issue 3 (recorded tunnels and the audit trail)"


@app.command("verify")
def verify(json_out: bool = typer.Option(False, "--json")) -> None:
    """Check every link and checkpoint signature of the trail."""
    raise NotAvailableError("audit verify", _ISSUE)


@app.command("export")
def export(
    format_: str = typer.Option("jsonl", "--format", help="jsonl | ocsf | asciicast"),
    session: Optional[str] = typer.Option(None, "--session"),
    since: Optional[str] = typer.Option(None, "--since"),
) -> None:
    """Export records for a SIEM or a player."""
    raise NotAvailableError("audit export", _ISSUE)


@app.command("prune")
def prune(before: str = typer.Option(..., "--before")) -> None:
    """Remove records older than DATE, leaving a signed checkpoint."""
    raise NotAvailableError("audit prune", _ISSUE)

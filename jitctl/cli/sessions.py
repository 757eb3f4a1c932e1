"""`jitctl sessions ls|show`: find and read recorded sessions."""

from __future__ import annotations

from typing import Optional

import typer

from jitctl.errors import NotAvailableError

app = typer.Typer(help="Find and read recorded sessions.", no_args_is_help=True)
_ISSUE = "issue 3 (recorded tunnels and the audit trail)"


@app.command("ls")
def ls(
    json_out: bool = typer.Option(False, "--json"),
    target: Optional[str] = typer.Option(None, "--target"),
    user: Optional[str] = typer.Option(None, "--user"),
    since: Optional[str] = typer.Option(None, "--since"),
) -> None:
    """List sessions."""
    raise NotAvailableError("sessions ls", _ISSUE)


@app.command("show")
def show(session_id: str = typer.Argument(...), json_out: bool = typer.Option(False, "--json")) -> None:
    """Show one session."""
    raise NotAvailableError("sessions show", _ISSUE)

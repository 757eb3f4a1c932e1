"""`jitctl request ...`: just-in-time access requests and statement approvals."""

from __future__ import annotations

import typer

from jitctl.errors import NotAvailableError

app = typer.Typer(help="Just-in-time access requests and approvals.", no_args_is_help=True)
_ISSUE = "issue 6 (approvals)"


@app.command("create")
def create(
    target: str = typer.Argument(...),
    reason: str = typer.Option(..., "--reason"),
    for_: str = typer.Option("30m", "--for", help="How long the grant should last."),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """Ask for access to TARGET."""
    raise NotAvailableError("request create", _ISSUE)


@app.command("ls")
def ls(
    mine: bool = typer.Option(False, "--mine"),
    pending: bool = typer.Option(False, "--pending"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """List requests."""
    raise NotAvailableError("request ls", _ISSUE)


@app.command("approve")
def approve(
    request_id: str = typer.Argument(...), reason: str = typer.Option("", "--reason")
) -> None:
    """Approve a request or a held statement."""
    raise NotAvailableError("request approve", _ISSUE)


@app.command("deny")
def deny(
    request_id: str = typer.Argument(...), reason: str = typer.Option(..., "--reason")
) -> None:
    """Deny a request or a held statement."""
    raise NotAvailableError("request deny", _ISSUE)


@app.command("revoke")
def revoke(request_id: str = typer.Argument(...)) -> None:
    """Revoke a grant; sessions riding on it end."""
    raise NotAvailableError("request revoke", _ISSUE)


@app.command("watch")
def watch() -> None:
    """Live view of pending requests for approvers."""
    raise NotAvailableError("request watch", _ISSUE)

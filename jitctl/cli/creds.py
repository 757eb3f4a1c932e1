"""`jitctl creds gcp`: short-lived GCP credentials through federation."""

from __future__ import annotations

from typing import Optional

import typer

from jitctl.errors import NotAvailableError

app = typer.Typer(help="Short-lived cloud credentials for the current identity.", no_args_is_help=True)


@app.command("gcp")
def gcp(
    target: Optional[str] = typer.Option(None, "--target"),
    format_: str = typer.Option("token", "--format", help="token | external-account"),
    json_out: bool = typer.Option(False, "--json"),
) -> None:
    """A short-lived GCP access token (or an external_account config) for the current identity."""
    raise NotAvailableError("creds gcp", "issue 4 (GCP federation)")

"""`jitctl login`, `logout`, `whoami`, `targets`: who am I, and what may I reach."""

from __future__ import annotations

from typing import Optional

import typer

from jitctl.errors import NotAvailableError


def register(app: typer.Typer) -> None:
    app.command("login")(login)
    app.command("logout")(logout)
    app.command("whoami")(whoami)
    app.command("targets")(targets)


def login(
    broker: Optional[str] = typer.Option(None, "--broker", help="Broker URL, remembered for later."),
    ca_file: Optional[str] = typer.Option(None, "--ca-file", help="CA bundle that signed the broker's certificate."),
    device: bool = typer.Option(False, "--device", help="Use the device grant (headless machines)."),
    token_file: Optional[str] = typer.Option(None, "--token-file", help="Use the workload token in this file (re-read on every use)."),
    token_env: Optional[str] = typer.Option(None, "--token-env", help="Use the workload token in this environment variable."),
    no_browser: bool = typer.Option(False, "--no-browser", help="Print the login URL instead of opening a browser."),
) -> None:
    """Get an identity: OIDC authorization code + PKCE (default), device grant, or a workload token."""
    raise NotAvailableError("login", "issue 2")


def logout() -> None:
    """Forget the stored identity."""
    raise NotAvailableError("logout", "issue 2")


def whoami(json_out: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """Show the identity the broker sees: subject, email, groups, issuer, expiry."""
    raise NotAvailableError("whoami", "issue 2")


def targets(json_out: bool = typer.Option(False, "--json", help="Print one JSON document.")) -> None:
    """List the targets this identity may reach, and under which rules."""
    raise NotAvailableError("targets", "issue 2")

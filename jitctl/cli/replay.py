"""`jitctl replay`: the forensic TUI."""

from __future__ import annotations

import typer

from jitctl.errors import NotAvailableError


def register(app: typer.Typer) -> None:
    app.command("replay")(replay)


def replay(
    session_id: str | None = typer.Argument(None),
    print_: bool = typer.Option(False, "--print", help="Print a transcript instead of the TUI."),
) -> None:
    """Replay a recorded session in the terminal."""
    raise NotAvailableError("replay", "issue 8 (replay TUI)")

"""`jitctl demo`: the whole product on this machine, on embedded defaults."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)


def demo(
    keep: bool = typer.Option(False, "--keep", help="Keep the temporary state dir afterwards."),
) -> None:
    """Start a dev broker, log in, and show what jitctl does, step by step."""
    from jitctl.demo import run_demo

    run_demo(keep=keep)

"""`jitctl connect` and `jitctl exec`: recorded tunnels for people and for agents."""

from __future__ import annotations

import typer

from jitctl.errors import NotAvailableError


def register(app: typer.Typer) -> None:
    app.command("connect", context_settings={"allow_extra_args": True})(connect)
    app.command("exec", context_settings={"allow_extra_args": True})(exec_)


def connect(
    ctx: typer.Context,
    target: str = typer.Argument(..., help="Target name (see `jitctl targets`)."),
    port: int = typer.Option(0, "--port", help="Local port to listen on (0: pick a free one)."),
    reason: str = typer.Option("", "--reason", help="Why you need access; recorded."),
    no_client: bool = typer.Option(False, "--no-client", help="Only keep the tunnel open."),
    json_out: bool = typer.Option(
        False, "--json", help="Print the listening address as one JSON line."
    ),
) -> None:
    """Open a recorded tunnel to TARGET on a local port (and start psql for Postgres targets)."""
    import asyncio

    from jitctl.client.connect import run_connect

    code = asyncio.run(
        run_connect(
            target,
            port=port,
            reason=reason,
            no_client=no_client,
            json_out=json_out,
            client_args=list(ctx.args),
        )
    )
    raise typer.Exit(code)


def exec_(
    ctx: typer.Context,
    target: list[str] = typer.Option(
        [], "--target", "-t", help="Target to open a tunnel for (repeatable)."
    ),
    reason: str = typer.Option("", "--reason", help="Why; recorded on every session."),
    agent: str = typer.Option("", "--agent", help="Agent label recorded beside the identity."),
    json_out: bool = typer.Option(
        False, "--json", help="Print the tunnels as JSON before running."
    ),
) -> None:
    """Run a command with tunnels open and its environment pointing at them."""
    raise NotAvailableError("exec", "issue 7 (jitctl exec)")

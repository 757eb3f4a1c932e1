"""`jitctl connect` and `jitctl exec`: recorded tunnels for people and for agents."""

from __future__ import annotations

import typer


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
    any_local_user: bool = typer.Option(
        False,
        "--any-local-user",
        help="Let programs of other users on this machine use the tunnel (Linux turns them "
        "away by default: the tunnel acts as you).",
    ),
    local_tls: bool = typer.Option(
        False,
        "--local-tls",
        help="Postgres: speak TLS with local clients that ask for it (sslmode=require or "
        "verify-*); --json names the CA file for sslrootcert.",
    ),
) -> None:
    """Open a recorded tunnel to TARGET on a local port (and start psql for Postgres targets)."""
    from jitctl import eventloop
    from jitctl.client.connect import run_connect

    code = eventloop.run(
        run_connect(
            target,
            port=port,
            reason=reason,
            no_client=no_client,
            json_out=json_out,
            client_args=list(ctx.args),
            any_local_user=any_local_user,
            local_tls=local_tls,
        )
    )
    raise typer.Exit(code)


def exec_(
    ctx: typer.Context,
    target: list[str] = typer.Option(
        [], "--target", "-t", metavar="TARGET", help="Target to open a tunnel for (repeatable)."
    ),
    reason: str = typer.Option("", "--reason", help="Why; recorded on every session."),
    agent: str = typer.Option("", "--agent", help="Agent label recorded beside the identity."),
    json_out: bool = typer.Option(
        False, "--json", help="Print the tunnels as one JSON line before running."
    ),
    token_file: str | None = typer.Option(
        None, "--token-file", help="Use the workload token in this file (re-read per session)."
    ),
    token_env: str | None = typer.Option(
        None, "--token-env", help="Use the workload token in this environment variable."
    ),
    audience: str | None = typer.Option(
        None, "--audience", help="Audience for the ambient GitHub Actions OIDC token."
    ),
    gcp: str | None = typer.Option(
        None, "--gcp", help="GCP target: give the command short-lived GCP credentials."
    ),
    local_tls: bool = typer.Option(
        False,
        "--local-tls",
        help="Postgres targets: speak TLS with local clients that ask for it, and export "
        "sslmode=verify-full and sslrootcert (in the URLs, PGSSLMODE, PGSSLROOTCERT), for "
        "commands whose config insists on TLS.",
    ),
) -> None:
    """Run a command with tunnels open and its environment pointing at them:
    jitctl exec -t pg-prod --agent triage-bot -- python agent.py"""
    from jitctl import eventloop
    from jitctl.client.execute import run_exec

    code = eventloop.run(
        run_exec(
            list(ctx.args),
            targets=target,
            reason=reason,
            agent=agent,
            json_out=json_out,
            token_file=token_file,
            token_env=token_env,
            audience=audience,
            gcp=gcp,
            local_tls=local_tls,
        )
    )
    raise typer.Exit(code)

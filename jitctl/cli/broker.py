"""`jitctl broker serve|check-config`: run the broker service, or check its config file."""

from __future__ import annotations

import typer

from jitctl.cli._render import emit_json, say

app = typer.Typer(help="Run the broker, or check its configuration.", no_args_is_help=True)


@app.command("serve")
def serve(
    config: str | None = typer.Option(None, "--config", "-c", help="Broker config file (TOML)."),
    dev: bool = typer.Option(
        False, "--dev", help="Development mode: local CA, keys, SQLite and a built-in OIDC issuer."
    ),
    state_dir: str | None = typer.Option(
        None,
        "--state-dir",
        help="With --dev: where to keep state (default: $JITCTL_HOME/dev-broker).",
    ),
    listen: str | None = typer.Option(None, "--listen", help="Override broker.listen (HOST:PORT)."),
) -> None:
    """Run the broker: TLS API and tunnel gateway in one process."""
    from jitctl.broker.run import serve as run_serve

    run_serve(config_path=config, dev=dev, state_dir=state_dir, listen=listen)


@app.command("check-config")
def check_config(
    path: str = typer.Argument(..., help="Config file to check."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
) -> None:
    """Validate a broker config file without starting anything."""
    from jitctl.broker.validate import identity_warnings, validate_targets
    from jitctl.config import load_config
    from jitctl.errors import ConfigError

    try:
        cfg = load_config(path)
        warnings = identity_warnings(cfg) + validate_targets(cfg, path)
    except ConfigError as exc:
        # A script asking for --json gets its one document for a bad file too; the message
        # and the exit code (8) stay as without --json.
        if json_out:
            emit_json({"file": path, "valid": False, "problems": exc.problems})
        raise
    for warning in warnings:
        say(f"warning: {warning}")
    summary = {
        "file": path,
        "valid": True,
        "warnings": warnings,
        "issuers": [i.issuer for i in cfg.identity.issuers],
        "targets": [{"name": t.name, "protocol": t.protocol} for t in cfg.targets],
    }
    if json_out:
        emit_json(summary)
    else:
        say(f"{path}: valid ({len(cfg.identity.issuers)} issuer(s), {len(cfg.targets)} target(s))")

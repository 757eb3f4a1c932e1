"""`jitctl creds gcp`: short-lived GCP credentials through federation (docs/gcp.md)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import typer

from jitctl.cli._render import emit_json, say

app = typer.Typer(
    help="Short-lived cloud credentials for the current identity.", no_args_is_help=True
)

FORMATS = ("token", "external-account")


def _write_private(path: Path, text: str) -> None:
    """Write `text` to `path` readable only by the user, atomically; the directory is left as
    it is (it may be the user's own, e.g. the working directory)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            out.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _until(epoch: int) -> str:
    from datetime import datetime

    from jitctl.durations import format_duration

    stamp = datetime.fromtimestamp(epoch).astimezone().isoformat(timespec="seconds")
    return f"{stamp} (in {format_duration(max(0, epoch - time.time()))})"


@app.command("gcp")
def gcp(
    target: str | None = typer.Option(
        None, "--target", help="The gcp target; may be left out when you may use only one."
    ),
    format_: str = typer.Option("token", "--format", help="token | external-account"),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document."),
    output: Path | None = typer.Option(
        None,
        "--output",
        "-o",
        help="Write the token (or the external_account config) to this file, mode 0600.",
    ),
) -> None:
    """A short-lived GCP access token (or an external_account config) for the current identity."""
    import json

    from jitctl.client import gcp as client
    from jitctl.client import settings
    from jitctl.client.tokens import current_token
    from jitctl.errors import UsageError

    if format_ not in FORMATS:
        raise UsageError(f"unknown --format {format_!r}", f"use one of: {', '.join(FORMATS)}")
    chosen = settings.resolve()
    token = current_token(chosen.url, chosen.ca_file)

    if format_ == "external-account":
        info = client.request_subject_token(chosen.url, chosen.ca_file, token, target)
        name = str(info["target"])
        command = client.executable_command(name, chosen.url, chosen.ca_file)
        config = client.external_account_config(info, command)
        from jitctl import paths

        path = (output or paths.home() / "gcp" / f"{name}.json").expanduser().resolve()
        _write_private(path, json.dumps(config, indent=2, sort_keys=True) + "\n")
        env = {"GOOGLE_APPLICATION_CREDENTIALS": str(path), client.ALLOW_EXECUTABLES: "1"}
        if json_out:
            emit_json(
                {
                    "path": str(path),
                    "target": name,
                    "env": env,
                    "service_account": info.get("service_account"),
                }
            )
        say(
            f"Wrote an external_account config for gcp target {name} to {path}.\n"
            "It holds no key and no token: client libraries run `jitctl creds gcp-subject-token`"
            " on each refresh, as you.\n"
            f"  export GOOGLE_APPLICATION_CREDENTIALS={path}\n"
            f"  export {client.ALLOW_EXECUTABLES}=1   "
            "# google-auth runs executable credential sources only when this is set"
        )
        return

    answer = client.request_credential(chosen.url, chosen.ca_file, token, target)
    document: dict[str, Any] = {
        key: answer.get(key)
        for key in (
            "access_token",
            "token_type",
            "expires_at",
            "expire_time",
            "principal",
            "scopes",
            "service_account",
            "boundary",
            "target",
            "grant_id",
        )
    }
    text = (
        json.dumps(document, indent=2, sort_keys=True) + "\n"
        if json_out
        else answer["access_token"] + "\n"
    )
    if output is not None:
        _write_private(output.expanduser(), text)
        say(f"Wrote the token to {output} (mode 0600).")
    elif json_out:
        emit_json(document)
    else:
        typer.echo(answer["access_token"])
    if not json_out:
        say(
            f"GCP access token for {answer['principal']} (gcp target {answer['target']}), "
            f"valid until {_until(int(answer['expires_at']))}"
        )


@app.command("gcp-subject-token", hidden=True)
def gcp_subject_token(
    target: str | None = typer.Option(None, "--target"),
    broker: str | None = typer.Option(None, "--broker"),
    ca_file: str | None = typer.Option(None, "--ca-file"),
) -> None:
    """The executable credential source of `--format external-account` configs: prints the
    broker's subject token as google-auth's executable-response JSON."""
    import contextlib
    import io
    import json
    import sys

    from jitctl.client import gcp as client
    from jitctl.client import settings
    from jitctl.client.tokens import current_token
    from jitctl.errors import ExitCode, JitctlError, UsageError

    status = 0
    # google-auth reads our stderr as part of stdout: nothing may be written there.
    with contextlib.redirect_stderr(io.StringIO()):
        try:
            chosen = settings.resolve(broker, ca_file)
            token = current_token(chosen.url, chosen.ca_file)
            info = client.request_subject_token(chosen.url, chosen.ca_file, token, target)
            wanted = os.environ.get("GOOGLE_EXTERNAL_ACCOUNT_AUDIENCE")
            if wanted and wanted != info["audience"]:
                raise UsageError(
                    f"the config asks for audience {wanted}, but gcp target {info['target']} "
                    f"uses {info['audience']}",
                    "write the config again with `jitctl creds gcp --format external-account`",
                )
            response = client.executable_success(info)
        except JitctlError as exc:
            response, status = client.executable_failure(exc), int(exc.exit_code)
        except Exception as exc:
            response = client.executable_failure(
                JitctlError(f"unexpected {type(exc).__name__}: {exc}")
            )
            status = int(ExitCode.ERROR)
    sys.stdout.write(json.dumps(response) + "\n")
    sys.stdout.flush()
    if status:
        raise typer.Exit(status)

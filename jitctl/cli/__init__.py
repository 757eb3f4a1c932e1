"""The `jitctl` command line: one module per command group, registered here.

Modules here parse arguments, call a service and render; they import heavy modules (httpx,
cryptography, fastapi, pglast, textual, ...) inside the command bodies so `jitctl --help`
stays quick.
Only `main()` turns a `JitctlError` into a message and an exit code.
"""

from __future__ import annotations

import os
import sys

import typer

from jitctl import __version__
from jitctl.cli import (
    audit,
    broker,
    connect,
    creds,
    demo,
    identity,
    replay,
    request,
    sessions,
)
from jitctl.cli._state import STATE

app = typer.Typer(
    name="jitctl",
    help="Just-in-time access to production for people and AI agents: verified identity, "
    "policy, inline masking and a tamper-evident record of everything.",
    rich_markup_mode=None,  # rich help costs ~100 ms of imports on every --help
    pretty_exceptions_enable=False,
    no_args_is_help=True,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"jitctl {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    verbose: bool = typer.Option(False, "--verbose", "-v", help="Show tracebacks on errors."),
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    STATE.verbose = verbose


identity.register(app)
connect.register(app)
app.add_typer(request.app, name="request")
app.add_typer(sessions.app, name="sessions")
replay.register(app)
app.add_typer(audit.app, name="audit")
app.add_typer(creds.app, name="creds")
app.add_typer(broker.app, name="broker")
demo.register(app)


def main() -> None:
    """Entry point: run the app and turn errors into one message and a documented exit code.

    Usage errors are click's own (message plus usage, exit 2); everything we raise is a
    `JitctlError` with its exit code; anything else is a bug and says how to report it.
    """
    from jitctl.errors import ExitCode, JitctlError

    try:
        app()
    except JitctlError as exc:
        if STATE.verbose:
            import traceback

            traceback.print_exc()
        print(exc.diagnostics(), file=sys.stderr)
        sys.exit(int(exc.exit_code))
    except BrokenPipeError:
        # The reader of our stdout went away (`jitctl ... | head`): nothing worth a message.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        sys.exit(int(ExitCode.ERROR))
    except Exception as exc:
        if STATE.verbose:
            raise
        print(
            f"error: unexpected {type(exc).__name__}: {exc}\n"
            "hint: run again with -v for the traceback, and report it",
            file=sys.stderr,
        )
        sys.exit(int(ExitCode.ERROR))

"""Rendering for the CLI: data to stdout, talk to stderr; `--json` prints one JSON document."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any


def emit_json(document: Any) -> None:
    sys.stdout.write(json.dumps(document, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def say(message: str) -> None:
    """Talk to the user (stderr), never mixed into data on stdout."""
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


# The width for output that is not a terminal: room for any row (a table takes only the width
# its cells need; nothing is padded out to this).
_UNBOUNDED = 100_000


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    tbl = Table(title=title, show_lines=False, header_style="bold")
    for column in columns:
        tbl.add_column(column)
    for row in rows:
        tbl.add_row(*("" if cell is None else str(cell) for cell in row))
    # On a terminal the table fits its width. Piped (grep, a file, an agent reading stdout), no
    # cell is cut short: rich would otherwise assume 80 columns and print "alice@e…".
    width = None if sys.stdout.isatty() else _UNBOUNDED
    Console(soft_wrap=True, width=width).print(tbl)


def kv(pairs: Sequence[tuple[str, Any]]) -> None:
    width = max((len(k) for k, _ in pairs), default=0)
    for key, value in pairs:
        sys.stdout.write(f"{key.ljust(width)}  {value}\n")


def need_terminal(command: str, instead: str) -> None:
    """Refuse a full-screen (Textual) command without a terminal on both ends: it could neither
    draw nor read keys, and would spin until killed. `instead`: what to run in a pipe."""
    if not (sys.stdin.isatty() and sys.stdout.isatty()):
        from jitctl.errors import UsageError

        raise UsageError(f"{command} needs a terminal", f"use {instead} in pipes and scripts")

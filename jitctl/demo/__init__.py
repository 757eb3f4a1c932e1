"""`jitctl demo`: the product on this machine, on embedded defaults, explained step by step.

Everything happens in a temporary directory (JITCTL_HOME included, so the user's own login and
state are never touched) and is removed afterwards, also on Ctrl-C. Each step runs the real
`jitctl` command a user would type, as a subprocess, and shows its output.

The story: a throwaway PostgreSQL with customer data (emails, card numbers, SSNs) sits behind a
dev broker whose policy masks PII, denies DROP and holds ALTER for a DBA's approval. An "agent"
runs through `jitctl exec`: its SELECT comes back masked, its DROP is blocked, its ALTER waits
until bob (a DBA) approves it. Then the record: sessions, a verified trail, a transcript.
Without PostgreSQL binaries the demo says so and shows a recorded tcp tunnel instead.

This module tells the story (the numbered steps and what each shows); stage.py starts and
drives the processes, world.py holds the configuration, data and agent script they use.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import textwrap
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.panel import Panel
from rich.syntax import Syntax

from jitctl.demo.stage import Stage, console
from jitctl.demo.world import AGENT


def _step(number: int, title: str, why: str) -> None:
    console.print()
    console.rule(f"[bold cyan]{number}. {title}")
    console.print(why, style="dim")


@contextmanager
def _interruptible() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so the cleanup below always runs."""

    def handler(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def run_demo(keep: bool = False) -> None:
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="jitctl-demo-"))
    if os.geteuid() == 0:
        root.chmod(0o755)  # the throwaway PostgreSQL runs as the postgres user
    demo = Stage(root)
    console.print(
        Panel(
            "jitctl verifies who you are, decides what you may do by parsing it, masks what you "
            "must not see, and records every statement — before it runs — in a hash-chained, "
            f"signed trail.\nEverything below runs in {root} and is removed at the end.",
            title="jitctl demo",
        )
    )
    try:
        with _interruptible():
            _step(
                1,
                "A database with customer PII",
                "A throwaway PostgreSQL from this machine's binaries.",
            )
            with_postgres = demo.start_postgres()
            _step(
                2,
                "Start a development broker",
                "One process: the TLS API, the tunnel gateway and, with --dev, an OIDC issuer. "
                "Its policy masks PII, denies DROP and holds ALTER for a DBA.",
            )
            demo.start_broker(with_postgres)
            _step(
                3,
                "Log in with the device grant",
                "How a person on a headless box — or an agent acting for them — logs in.",
            )
            demo.device_login("alice", demo.home)
            demo.jitctl("whoami")
            demo.jitctl("targets")
            if with_postgres:
                demo.device_login("bob", demo.bob_home, show=False)
                _step(
                    4,
                    "An agent runs through `jitctl exec`",
                    "It gets DATABASE_URL pointing at a recorded tunnel — no password. Its "
                    "SELECT is masked inline, its DROP is blocked by parsing, its ALTER waits "
                    "for bob's approval.",
                )
                console.print(
                    Syntax(
                        textwrap.dedent(AGENT).strip(),
                        "python",
                        theme="ansi_dark",
                        background_color="default",
                    )
                )
                session_id = demo.run_agent()
            else:
                _step(
                    4,
                    "A recorded tunnel",
                    "Each connection rides TLS to the broker, which records the bytes "
                    "durably and only then forwards them.",
                )
                session_id = demo.tunnel()
            _step(5, "The record", "Who, which target, when, how long, what happened.")
            state = ["--state-dir", str(demo.broker.state_dir)]
            demo.jitctl("sessions", "ls", *state)
            if session_id:
                demo.jitctl("replay", "--print", session_id, *state, check=False)
            _step(
                6,
                "Prove the trail is whole",
                "Every hash link and every signed checkpoint is checked; any edit, insertion, "
                "deletion, reordering or truncation is named.",
            )
            demo.jitctl("audit", "verify", *state)
        elapsed = time.monotonic() - started
        where = f"--state-dir {demo.broker.state_dir}" if keep else "--state-dir <dir>"
        console.print()
        console.print(
            Panel(
                f"Done in {elapsed:.1f}s.\n"
                f"Replay a session in the terminal UI: jitctl replay {session_id or '<id>'} "
                f"{where}\n"
                "(run `jitctl demo --keep` to keep the state dir and do that now)\n"
                "Try it yourself:\n"
                "  jitctl broker serve --dev          # terminal 1\n"
                "  jitctl login --device              # terminal 2\n"
                "  jitctl audit export --format jsonl # hand the trail to a SIEM",
                title="what next",
            )
        )
    except KeyboardInterrupt:
        console.print("\n[yellow]interrupted: cleaning up[/]")
        raise
    finally:
        demo.close()
        if keep:
            console.print(f"kept {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)

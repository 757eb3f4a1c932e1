"""`jitctl demo`: the product on this machine, on embedded defaults, explained step by step.

Everything happens in a temporary directory (JITCTL_HOME included, so the user's own login
and state are never touched) and is removed afterwards, also on Ctrl-C. Each step runs the
real `jitctl` command a user would type, as a subprocess, and shows its output.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax

from jitctl.errors import JitctlError

console = Console(stderr=True, highlight=False)

DEMO_CONFIG = """
# The demo broker's config: dev users, and one target reachable by the `agents` group.
[dev]
users = [
  {{ name = "alice", email = "alice@example.com", groups = ["eng", "agents"] }},
  {{ name = "bob", email = "bob@example.com", groups = ["dba", "approvers"] }},
]

[[targets]]
name = "echo"
protocol = "tcp"
address = "{echo}"
description = "a TCP echo service standing in for an internal system"
allow_groups = ["agents"]

[[targets]]
name = "billing-db"
protocol = "tcp"
address = "127.0.0.1:9"
description = "only the dba group may reach this one"
allow_groups = ["dba"]
"""


def _step(number: int, title: str, why: str) -> None:
    console.print()
    console.rule(f"[bold cyan]{number}. {title}")
    console.print(why, style="dim")


def _show(command: list[str], result: subprocess.CompletedProcess[str]) -> None:
    console.print(f"[bold green]$[/] {' '.join(['jitctl', *command])}")
    output = (result.stdout or "") + (result.stderr or "")
    if output.strip():
        console.print(output.rstrip(), markup=False, highlight=False)


class _Demo:
    def __init__(self, root: Path) -> None:
        from jitctl.testing.servers import EchoServer

        self.root = root
        self.home = root / "home"
        self.home.mkdir()
        self.echo = EchoServer()
        self.broker: Any = None
        self.env = {
            **os.environ,
            "JITCTL_HOME": str(self.home),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        }
        self.processes: list[subprocess.Popen[str]] = []

    def jitctl(
        self, *args: str, show: bool = True, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [sys.executable, "-m", "jitctl", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
        )
        if show:
            _show(list(args), result)
        if check and result.returncode != 0:
            raise JitctlError(
                f"demo step `jitctl {' '.join(args)}` failed with exit {result.returncode}",
                "run the demo with --keep and look at the broker log in the kept directory",
            )
        return result

    def start_broker(self) -> None:
        from jitctl.testing.broker import BrokerProcess

        config = DEMO_CONFIG.format(echo=self.echo.address)
        self.broker = BrokerProcess(config, state_dir=self.root / "broker", dev=True)
        self.broker.start()
        self.env["JITCTL_BROKER"] = self.broker.url
        self.env["JITCTL_CA_FILE"] = self.broker.ca_file
        console.print(
            f"[bold green]$[/] jitctl broker serve --dev --config broker.toml\n"
            f"broker listening on {self.broker.url} (TLS, CA {self.broker.ca_file})\n"
            "a development OIDC issuer runs inside it with users alice (eng, agents) "
            "and bob (dba, approvers)"
        )
        console.print(Syntax(config.strip(), "toml", theme="ansi_dark", background_color="default"))

    def login_with_device_grant(self) -> None:
        import httpx

        from jitctl.broker.tlsfiles import client_context

        console.print("[bold green]$[/] jitctl login --device")
        process = subprocess.Popen(
            [sys.executable, "-m", "jitctl", "login", "--device"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        self.processes.append(process)
        assert process.stderr is not None
        code = None
        seen: list[str] = []
        deadline = time.monotonic() + 30
        while code is None and time.monotonic() < deadline:
            line = process.stderr.readline()
            if not line:
                break
            seen.append(line)
            console.print(line.rstrip(), markup=False)
            match = re.search(r"\b([A-Z0-9]{4}-[A-Z0-9]{4})\b", line)
            if match:
                code = match.group(1)
        if code is None:
            process.kill()
            raise JitctlError("the device login did not print a user code:\n" + "".join(seen))
        console.print(
            f"[yellow]… the demo now plays alice in her browser: it opens the verification page "
            f"and approves code {code}[/]"
        )
        response = httpx.post(
            f"{self.broker.url}/dev/oidc/device",
            data={"user_code": code, "user": "alice", "action": "approve"},
            verify=client_context(self.broker.ca_file),
            timeout=10,
        )
        response.raise_for_status()
        out, err = process.communicate(timeout=30)
        console.print((out + err).rstrip(), markup=False)
        if process.returncode != 0:
            raise JitctlError(f"jitctl login --device failed with exit {process.returncode}")

    def tunnel(self) -> str:
        console.print("[bold green]$[/] jitctl connect echo --no-client --json --reason 'demo'")
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "jitctl",
                "connect",
                "echo",
                "--no-client",
                "--json",
                "--reason",
                "demo: show a recorded tunnel",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
        )
        self.processes.append(process)
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            raise JitctlError(
                "jitctl connect failed: " + (process.stderr.read() if process.stderr else "")
            )
        console.print(line.rstrip(), markup=False)
        port = json.loads(line)["port"]
        message = b"SELECT secret FROM vault; -- every byte of this is recorded before it is sent\n"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(message)
            sock.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
        console.print(
            f"sent {len(message)} bytes through the tunnel; the echo service answered: "
            f"{reply.decode().strip()!r}"
        )
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=10)
        console.print(err.rstrip(), markup=False)
        match = re.search(r"session ([0-9a-f]{32})", err)
        return match.group(1) if match else ""

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        if self.broker is not None:
            self.broker.stop()
        self.echo.close()


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
    demo = _Demo(root)
    console.print(
        Panel(
            "jitctl verifies who you are, decides what you may reach, and records every byte "
            "you send — before it is forwarded — in a hash-chained, signed trail.\n"
            f"Everything below runs in {root} and is removed at the end.",
            title="jitctl demo",
        )
    )
    try:
        with _interruptible():
            _step(
                1,
                "Start a development broker",
                "One process: the TLS API, the tunnel gateway and, with --dev, an OIDC issuer.",
            )
            demo.start_broker()
            _step(
                2,
                "Log in with the device grant",
                "The way a person on a headless box (or an agent acting for them) logs in.",
            )
            demo.login_with_device_grant()
            _step(3, "Who am I?", "The broker verified the token against the issuer's keys.")
            demo.jitctl("whoami")
            _step(
                4,
                "What may I reach?",
                "Only targets whose allow_groups meet your groups are listed.",
            )
            demo.jitctl("targets")
            demo.jitctl("connect", "billing-db", "--no-client", check=False)
            console.print(
                "[dim](refused: alice is not in the dba group — and the refusal is recorded)[/]"
            )
            _step(
                5,
                "A recorded tunnel",
                "Each connection to the local port rides TLS to the broker, which records "
                "the bytes durably and only then forwards them.",
            )
            session_id = demo.tunnel()
            _step(6, "The record", "Who, which target, when, how long, bytes each way.")
            demo.jitctl("sessions", "ls", "--state-dir", str(demo.broker.state_dir))
            if session_id:
                demo.jitctl(
                    "sessions", "show", session_id, "--state-dir", str(demo.broker.state_dir)
                )
            _step(
                7,
                "Prove the trail is whole",
                "Every hash link and every signed checkpoint is checked; any edit, insertion, "
                "deletion, reordering or truncation is named.",
            )
            demo.jitctl("audit", "verify", "--state-dir", str(demo.broker.state_dir))
        elapsed = time.monotonic() - started
        console.print()
        console.print(
            Panel(
                f"Done in {elapsed:.1f}s. Try it yourself:\n"
                "  jitctl broker serve --dev          # terminal 1\n"
                "  jitctl login --device              # terminal 2\n"
                "  jitctl audit export --format jsonl # hand the trail to a SIEM\n"
                "The Postgres gateway (parsing policy, inline masking), approvals, "
                "`jitctl exec` and `jitctl replay` are on the roadmap in the README.",
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

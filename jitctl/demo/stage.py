"""The demo's stage: the processes it starts, drives and stops, each a real `jitctl` command.

Rules:
- Everything lives under the demo's root directory: alice's and bob's JITCTL_HOME, the broker's
  state, the agent's script. The user's own login, keyring and state are never touched (the
  keyring is the failing backend, so tokens go to files under those homes).
- `jitctl` runs as a subprocess of this Python (`-m jitctl`), with the broker's URL and CA in
  its environment; a failing step raises `JitctlError` with where to look.
- The demo plays the people: it approves alice's device login in the dev issuer's page as a
  browser would, and runs bob's `request approve` for each request the agent is held on.
- `close()` stops every process it started, the broker, PostgreSQL and the echo service, also
  after a failure or Ctrl-C.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.syntax import Syntax

from jitctl.demo.world import AGENT, CUSTOMERS, PG_TARGET, TCP_TARGET, USERS
from jitctl.errors import JitctlError

# Piped output (CI logs) gets a readable width instead of rich's 80 columns.
console = Console(
    stderr=True,
    highlight=False,
    width=None if sys.stderr.isatty() else int(os.environ.get("COLUMNS", "110")),
)


def _show(command: list[str], result: subprocess.CompletedProcess[str]) -> None:
    console.print(f"[bold green]$[/] {' '.join(['jitctl', *command])}")
    output = (result.stdout or "") + (result.stderr or "")
    if output.strip():
        console.print(output.rstrip(), markup=False, highlight=False)


class Stage:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "alice"
        self.bob_home = root / "bob"
        self.home.mkdir()
        self.bob_home.mkdir()
        self.broker: Any = None
        self.pg: Any = None
        self.echo: Any = None
        self.env = {
            **os.environ,
            "JITCTL_HOME": str(self.home),
            "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
            "COLUMNS": str(console.width),
        }
        self.env.pop("PGPASSWORD", None)
        self.processes: list[subprocess.Popen[str]] = []

    # -- running jitctl ---------------------------------------------------------------------

    def jitctl(
        self, *args: str, show: bool = True, check: bool = True, home: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        env = dict(self.env)
        if home is not None:
            env["JITCTL_HOME"] = str(home)
        result = subprocess.run(
            [sys.executable, "-m", "jitctl", *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=90,
        )
        if show:
            _show(list(args), result)
        if check and result.returncode != 0:
            raise JitctlError(
                f"demo step `jitctl {' '.join(args)}` failed with exit {result.returncode}",
                "run `jitctl demo --keep` and read broker/broker.log in the kept directory",
            )
        return result

    # -- the pieces -------------------------------------------------------------------------

    def start_postgres(self) -> bool:
        from jitctl.testing.postgres import PostgresServer, postgres_available

        reason = postgres_available()
        if reason is not None:
            console.print(
                f"[yellow]No PostgreSQL here ({reason}): the demo falls back to a tcp "
                "target; install PostgreSQL to see masking, blocking and approvals.[/]"
            )
            return False
        import psycopg

        self.pg = PostgresServer(tls=True).start()  # TLS-only logins, as a production server
        with psycopg.connect(self.pg.dsn, autocommit=True) as conn:
            conn.execute("CREATE DATABASE shop")
        with psycopg.connect(self.pg.dsn_for("shop"), autocommit=True) as conn:
            conn.execute(
                "CREATE TABLE customers (id serial PRIMARY KEY, name text, email text, "
                "card_number text, ssn text)"
            )
            for customer in CUSTOMERS:
                conn.execute(
                    "INSERT INTO customers (name, email, card_number, ssn) VALUES (%s, %s, %s, %s)",
                    customer,
                )
        console.print(
            f"PostgreSQL {self.pg.port} (TLS-only logins; the broker verifies its certificate): "
            f"database shop, table customers with {len(CUSTOMERS)} rows of emails, card numbers "
            "and SSNs"
        )
        return True

    def start_broker(self, with_postgres: bool) -> None:
        from jitctl.testing.broker import BrokerProcess
        from jitctl.testing.servers import EchoServer

        if with_postgres:
            target = PG_TARGET.format(port=self.pg.port, user=self.pg.user, ca_file=self.pg.ca_file)
            env = {"DEMO_PG_PASSWORD": self.pg.password}
        else:
            self.echo = EchoServer()
            target = TCP_TARGET.format(echo=self.echo.address)
            env = {}
        config = USERS + target
        self.broker = BrokerProcess(config, state_dir=self.root / "broker", dev=True, env=env)
        self.broker.start()
        self.env["JITCTL_BROKER"] = self.broker.url
        self.env["JITCTL_CA_FILE"] = self.broker.ca_file
        console.print(
            "[bold green]$[/] jitctl broker serve --dev --config broker.toml\n"
            f"broker listening on {self.broker.url} (TLS; CA {self.broker.ca_file});\n"
            "a development OIDC issuer runs inside it with users alice (eng, agents) "
            "and bob (dba, approvers). The upstream password is in the broker's environment only."
        )
        shown = "\n".join(line for line in config.strip().splitlines() if "password" not in line)
        console.print(Syntax(shown, "toml", theme="ansi_dark", background_color="default"))

    def device_login(self, user: str, home: Path, show: bool = True) -> None:
        import httpx

        from jitctl.broker.tlsfiles import client_context

        env = {**self.env, "JITCTL_HOME": str(home)}
        if show:
            console.print("[bold green]$[/] jitctl login --device")
        process = subprocess.Popen(
            [sys.executable, "-m", "jitctl", "login", "--device"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
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
            if show:
                console.print(line.rstrip(), markup=False)
            match = re.search(r"\b([A-Z0-9]{4}-[A-Z0-9]{4})\b", line)
            if match:
                code = match.group(1)
        if code is None:
            process.kill()
            raise JitctlError("the device login did not print a user code:\n" + "".join(seen))
        if show:
            console.print(
                f"[yellow]… the demo plays {user} in a browser: it opens the "
                f"verification page and approves code {code}[/]"
            )
        response = httpx.post(
            f"{self.broker.url}/dev/oidc/device",
            data={"user_code": code, "user": user, "action": "approve"},
            verify=client_context(self.broker.ca_file),
            timeout=10,
        )
        response.raise_for_status()
        out, err = process.communicate(timeout=30)
        if show:
            console.print((out + err).rstrip(), markup=False)
        if process.returncode != 0:
            raise JitctlError(f"jitctl login --device failed with exit {process.returncode}")

    def approver(self, stop: threading.Event, approved: list[str]) -> None:
        """Bob watches for pending requests and approves what the agent asked for."""
        while not stop.is_set():
            result = self.jitctl(
                "request", "ls", "--pending", "--json", show=False, check=False, home=self.bob_home
            )
            if result.returncode == 0:
                try:
                    document = json.loads(result.stdout)
                except ValueError:
                    document = {}
                items = (
                    document.get("requests", document) if isinstance(document, dict) else document
                )
                for item in items if isinstance(items, list) else []:
                    request_id = str(item.get("id", ""))
                    if request_id and request_id not in approved:
                        decision = self.jitctl(
                            "request",
                            "approve",
                            request_id,
                            "--reason",
                            "reviewed: additive column, safe",
                            show=False,
                            check=False,
                            home=self.bob_home,
                        )
                        if decision.returncode == 0:
                            approved.append(request_id)
                            text = item.get("statement") or item.get("text") or ""
                            console.print(
                                f"[magenta]bob (dba) approved {request_id}: {text}[/]", markup=True
                            )
            stop.wait(0.5)

    def run_agent(self) -> str:
        script = self.root / "agent.py"
        script.write_text(textwrap.dedent(AGENT))
        stop = threading.Event()
        approved: list[str] = []
        watcher = threading.Thread(target=self.approver, args=(stop, approved), daemon=True)
        watcher.start()
        try:
            self.jitctl(
                "exec",
                "-t",
                "shop-db",
                "--agent",
                "demo-agent",
                "--reason",
                "DEMO-1: tidy up the customers table",
                "--",
                sys.executable,
                str(script),
            )
        finally:
            stop.set()
            if watcher.is_alive():
                watcher.join(5)
        return self.latest_session("shop-db")

    def tunnel(self) -> str:
        console.print("[bold green]$[/] jitctl connect echo --no-client --json --reason demo")
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
            stderr = process.stderr.read() if process.stderr else ""
            raise JitctlError("jitctl connect failed: " + stderr)
        console.print(line.rstrip(), markup=False)
        port = json.loads(line)["port"]
        message = b"SELECT secret FROM vault; -- recorded before it is sent\n"
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(message)
            sock.shutdown(socket.SHUT_WR)
            reply = b""
            while chunk := sock.recv(4096):
                reply += chunk
        console.print(f"the echo service answered: {reply.decode().strip()!r}")
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)
        return self.latest_session("echo")

    def latest_session(self, target: str) -> str:
        result = self.jitctl(
            "sessions",
            "ls",
            "--json",
            "--target",
            target,
            "--state-dir",
            str(self.broker.state_dir),
            show=False,
            check=False,
        )
        try:
            document = json.loads(result.stdout)
        except ValueError:
            return ""
        sessions = document.get("sessions", []) if isinstance(document, dict) else document
        opened = [s for s in sessions if s.get("status") != "denied"]
        return str(opened[0]["id"]) if opened else ""

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        if self.broker is not None:
            self.broker.stop()
        if self.pg is not None:
            self.pg.stop()
        if self.echo is not None:
            self.echo.close()

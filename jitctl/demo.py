"""`jitctl demo`: the product on this machine, on embedded defaults, explained step by step.

Everything happens in a temporary directory (JITCTL_HOME included, so the user's own login and
state are never touched) and is removed afterwards, also on Ctrl-C. Each step runs the real
`jitctl` command a user would type, as a subprocess, and shows its output.

The story: a throwaway PostgreSQL with customer data (emails, card numbers, SSNs) sits behind a
dev broker whose policy masks PII, denies DROP and holds ALTER for a DBA's approval. An "agent"
runs through `jitctl exec`: its SELECT comes back masked, its DROP is blocked, its ALTER waits
until bob (a DBA) approves it. Then the record: sessions, a verified trail, a transcript.
Without PostgreSQL binaries the demo says so and shows a recorded tcp tunnel instead.
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
import textwrap
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax

from jitctl.errors import JitctlError

# Piped output (CI logs) gets a readable width instead of rich's 80 columns.
console = Console(
    stderr=True,
    highlight=False,
    width=None if sys.stderr.isatty() else int(os.environ.get("COLUMNS", "110")),
)

USERS = """
[dev]
users = [
  { name = "alice", email = "alice@example.com", groups = ["eng", "agents"] },
  { name = "bob", email = "bob@example.com", groups = ["dba", "approvers"] },
]
"""

PG_TARGET = """
[[targets]]
name = "shop-db"
protocol = "postgres"
address = "127.0.0.1:{port}"
description = "production-like customer database (a throwaway copy)"
allow_groups = ["agents", "dba"]
record_rows = 3
credential = {{ user = "{user}", password_env = "DEMO_PG_PASSWORD", database = "shop" }}

[targets.access]
approvers = ["dba"]
approval_timeout = "45s"

[[targets.rules]]
name = "no-destruction"
match = {{ statement = ["drop", "truncate"] }}
action = "deny"

[[targets.rules]]
name = "schema-changes-need-a-dba"
match = {{ statement = ["alter", "create"] }}
action = "approve"
approvers = ["dba"]

[[targets.masks]]
columns = ["customers.email", "*.ssn", "customers.card_number"]
detectors = ["EMAIL_ADDRESS", "CREDIT_CARD_NUMBER", "US_SOCIAL_SECURITY_NUMBER"]
"""

TCP_TARGET = """
[[targets]]
name = "echo"
protocol = "tcp"
address = "{echo}"
description = "a TCP echo service standing in for an internal system"
allow_groups = ["agents"]
"""

CUSTOMERS = [
    ("Ada Lovelace", "ada@example.com", "4111 1111 1111 1111", "123-45-6789"),
    ("Grace Hopper", "grace@navy.example", "5555 5555 5555 4444", "234-56-7890"),
    ("Alan Turing", "alan@bletchley.example", "4012 8888 8888 1881", "345-67-8901"),
]

AGENT = '''
"""A tiny "AI agent": it only knows DATABASE_URL. It never sees a password."""
import os
import psycopg

conn = psycopg.connect(os.environ["DATABASE_URL"], autocommit=True)
print("agent> SELECT name, email, card_number, ssn FROM customers")
for row in conn.execute("SELECT name, email, card_number, ssn FROM customers ORDER BY id"):
    print("       ", row)
print("agent> DROP TABLE customers")
try:
    conn.execute("DROP TABLE customers")
    print("        dropped?!")
except psycopg.Error as exc:
    print("        blocked:", exc.diag.sqlstate, exc.diag.message_primary)
print("agent> ALTER TABLE customers ADD COLUMN loyalty_tier text   (needs a DBA)")
conn.add_notice_handler(lambda n: print("        notice:", n.message_primary))
try:
    conn.execute("ALTER TABLE customers ADD COLUMN loyalty_tier text")
    print("        done: the ALTER ran after approval")
except psycopg.Error as exc:
    print("        refused:", exc.diag.sqlstate, exc.diag.message_primary)
'''


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

        self.pg = PostgresServer().start()
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
            f"PostgreSQL {self.pg.port}: database shop, table customers with "
            f"{len(CUSTOMERS)} rows of emails, card numbers and SSNs"
        )
        return True

    def start_broker(self, with_postgres: bool) -> None:
        from jitctl.testing.broker import BrokerProcess
        from jitctl.testing.servers import EchoServer

        if with_postgres:
            target = PG_TARGET.format(port=self.pg.port, user=self.pg.user)
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
    demo = _Demo(root)
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

"""`jitctl broker serve` as a real subprocess, for tests and the demo.

    with BrokerProcess(config_text, state_dir=tmp) as broker:
        broker.url, broker.ca_file, broker.env   # env: for CLI subprocesses (JITCTL_HOME, ...)
        broker.jitctl("whoami", "--json")
        broker.records("session.start")          # its trail (the default SQLite store)
        broker.wait_for_records(lambda found: len(found) > 2, "tcp.data")  # lazy ones too
        with broker.tunnel("pg") as tunnel:      # `jitctl connect pg`, ended by Ctrl-C
            tunnel.port

Readiness is announced by the broker writing `<state_dir>/broker.json` with its pid; then
`/readyz` is polled over TLS with the broker's CA.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx


def check_config(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """`jitctl broker check-config PATH [ARGS]` as a user runs it (no broker needed)."""
    return subprocess.run(
        [sys.executable, "-m", "jitctl", "broker", "check-config", str(path), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


class BrokerStartError(RuntimeError):
    pass


@dataclass
class Tunnel:
    """A running `jitctl connect TARGET --no-client --json`: the process and the address it
    printed. Leaving the `with` block ends it as a person does, with Ctrl-C."""

    process: subprocess.Popen[str]
    address: dict[str, Any]
    stderr: str = ""  # what it said, once closed

    @property
    def port(self) -> int:
        return int(self.address["port"])

    def close(self) -> str:
        """Ctrl-C; returns what `jitctl connect` wrote to stderr."""
        self.process.send_signal(signal.SIGINT)
        _, self.stderr = self.process.communicate(timeout=15)
        return self.stderr

    def __enter__(self) -> Tunnel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BrokerProcess:
    def __init__(
        self,
        config: str | None = None,
        *,
        state_dir: Path,
        dev: bool = False,
        listen: str = "127.0.0.1:0",
        env: dict[str, str] | None = None,
        startup_timeout: float = 30.0,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.config_path: Path | None = None
        if config is not None:
            self.config_path = self.state_dir / "broker.toml"
            self.config_path.write_text(config)
        self.dev = dev
        self.listen = listen
        self.startup_timeout = startup_timeout
        self.extra_env = env or {}
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""
        self.ca_file = ""
        self.log_path = self.state_dir / "broker.log"
        self.home = self.state_dir / "client-home"
        self.home.mkdir(exist_ok=True)

    # -- lifecycle --------------------------------------------------------------------------

    def command(self) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "jitctl",
            "broker",
            "serve",
            "--state-dir",
            str(self.state_dir),
        ]
        if self.config_path:
            cmd += ["--config", str(self.config_path)]
        if self.dev:
            cmd.append("--dev")
        return [*cmd, "--listen", self.listen]

    def start(self) -> BrokerProcess:
        pointer = self.state_dir / "broker.json"
        pointer.unlink(missing_ok=True)
        env = {**os.environ, **self.extra_env}
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child for its lifetime
        self.proc = subprocess.Popen(self.command(), stdout=log, stderr=log, env=env)
        log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BrokerStartError(
                    f"broker exited with {self.proc.returncode}:\n{self.log_text()[-3000:]}"
                )
            try:
                info = json.loads(pointer.read_text())
            except (OSError, ValueError):
                time.sleep(0.05)
                continue
            if info.get("pid") != self.proc.pid:
                time.sleep(0.05)
                continue
            self.url, self.ca_file = info["url"], info.get("ca_file") or ""
            if self._ready():
                return self
            time.sleep(0.05)
        self.kill()
        raise BrokerStartError(
            f"broker not ready after {self.startup_timeout}s:\n{self.log_text()[-3000:]}"
        )

    def _ready(self) -> bool:
        try:
            response = httpx.get(self.url + "/readyz", verify=self.verify(), timeout=2)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def log_events(self) -> list[dict[str, Any]]:
        events = []
        for line in self.log_text().splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    events.append(json.loads(line))
        return events

    def __enter__(self) -> BrokerProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the CLI against this broker --------------------------------------------------------

    @property
    def env(self) -> dict[str, str]:
        """Environment for CLI subprocesses: a private JITCTL_HOME pointed at this broker.

        The broker's own extra environment (upstream secrets) is deliberately not in it.
        """
        return {
            **os.environ,
            "JITCTL_HOME": str(self.home),
            "JITCTL_BROKER": self.url,
            "JITCTL_CA_FILE": self.ca_file,
            "PYTHON_KEYRING_BACKEND": os.environ.get(
                "PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring"
            ),
        }

    def jitctl(
        self,
        *args: str,
        input: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "jitctl", *args],
            input=input,
            capture_output=True,
            text=True,
            env={**self.env, **(env or {})},
            timeout=timeout,
        )

    def connect(
        self, target: str, *args: str, env: dict[str, str] | None = None
    ) -> tuple[subprocess.Popen[str], dict[str, Any]]:
        """Start `jitctl connect TARGET --no-client --json`; returns the process and its address."""
        process = subprocess.Popen(
            [sys.executable, "-m", "jitctl", "connect", target, "--no-client", "--json", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**self.env, **(env or {})},
        )
        assert process.stdout is not None
        line = process.stdout.readline()
        if not line:
            process.wait(10)
            assert process.stderr is not None
            raise BrokerStartError(f"jitctl connect failed: {process.stderr.read()}")
        return process, json.loads(line)

    def tunnel(self, target: str, *args: str, env: dict[str, str] | None = None) -> Tunnel:
        """`connect(...)` as a `Tunnel`, for `with broker.tunnel("pg") as tunnel:`."""
        return Tunnel(*self.connect(target, *args, env=env))

    def login_with_token(self, token: str) -> None:
        """Store `token` in a file and `jitctl login --token-file` it."""
        path = self.home / "workload-token"
        path.write_text(token)
        result = self.jitctl("login", "--token-file", str(path))
        if result.returncode != 0:
            raise BrokerStartError(f"login failed: {result.stderr}")

    def get(self, path: str, token: str | None = None) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.get(self.url + path, headers=headers, verify=self.verify(), timeout=10)

    def verify(self) -> Any:
        """What httpx should verify the broker against (its CA when it made one)."""
        from jitctl.broker.tlsfiles import client_context

        return client_context(self.ca_file or None)

    # -- the trail ------------------------------------------------------------------------------

    def records(self, *kinds: str) -> list[Any]:
        """The records of `kinds` (all when none) in the broker's default store, in order."""
        from jitctl.audit.store import open_store

        with open_store(f"sqlite:///{self.state_dir / 'audit.db'}", create=False) as store:
            return list(store.iter_records(kinds=list(kinds) or None))

    def wait_for_records(self, predicate: Any, *kinds: str, timeout: float = 10.0) -> list[Any]:
        """`records(*kinds)` once `predicate` holds for them. Records that follow what a client
        sees (a lazy `session.end`, `approval.executed`) reach the store moments later."""
        deadline = time.monotonic() + timeout
        while not predicate(found := self.records(*kinds)):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {kinds or 'records'}: {found[-5:]}")
            time.sleep(0.05)
        return found

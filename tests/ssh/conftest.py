"""Real pieces for the ssh end-to-end tests: OpenSSH's sshd, the broker, `jitctl connect`."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jitctl.audit.records import Record
from jitctl.testing import broker as testing_broker
from jitctl.testing.broker import BrokerProcess
from jitctl.testing.issuer import TokenIssuer
from jitctl.testing.servers import EchoServer
from jitctl.testing.sshd import SshdServer, sshd_available

needs_sshd = pytest.mark.skipif(sshd_available() is not None, reason=str(sshd_available() or ""))

CONFIG = """
[approvals]
poll_interval = "200ms"

[[identity.issuers]]
issuer = "{issuer}"

[[targets]]
name = "web"
protocol = "ssh"
address = "{sshd}"
allow_groups = ["agents"]
credential = {{ user = "{user}", key_file = "{key}" }}

[[targets.rules]]
name = "no-rm"
match = {{ command = ["rm", "shutdown*"] }}
action = "deny"
message = "ask the on-call engineer"

[[targets.rules]]
name = "no-shadow"
match = {{ path = ["/etc/shadow*"] }}
action = "deny"

[[targets]]
name = "locked"
protocol = "ssh"
address = "{sshd}"
allow_groups = ["agents"]
credential = {{ user = "{user}", key_file = "{key}" }}
ssh = {{ shell = false, upload = false, forward = ["{echo}"] }}

[[targets]]
name = "masked"
protocol = "ssh"
address = "{sshd}"
allow_groups = ["agents"]
credential = {{ user = "{user}", key_file = "{key}" }}

[[targets.masks]]
detectors = ["EMAIL_ADDRESS"]

[[targets]]
name = "short"
protocol = "ssh"
address = "{sshd}"
allow_groups = ["agents"]
max_session = "3s"
credential = {{ user = "{user}", key_file = "{key}" }}
access = {{ approval_timeout = "1s" }}

[[targets]]
name = "guarded"
protocol = "ssh"
address = "{sshd}"
allow_groups = ["agents"]
credential = {{ user = "{user}", key_file = "{key}" }}
access = {{ approvers = ["dba"], approval_timeout = "20s" }}

[[targets.rules]]
name = "touching"
match = {{ command = ["touch"] }}
action = "approve"

[[targets]]
name = "impostor"
protocol = "ssh"
address = "{sshd}"
allow_groups = ["agents"]
credential = {{ user = "{user}", key_file = "{key}" }}
ssh = {{ host_keys = ["ssh-ed25519 {impostor_key}"] }}
"""


@pytest.fixture(scope="package")
def sshd() -> Iterator[SshdServer]:
    if sshd_available() is not None:
        pytest.skip(str(sshd_available()))
    with SshdServer() as server:
        yield server


@pytest.fixture(scope="package")
def echo() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


@pytest.fixture(scope="package")
def broker(
    token_issuer: TokenIssuer,
    sshd: SshdServer,
    echo: EchoServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BrokerProcess]:
    config = CONFIG.format(
        issuer=token_issuer.url,
        sshd=sshd.address,
        user=sshd.user,
        key=sshd.client_key,
        echo=echo.address,
        impostor_key="AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl",
    )
    with BrokerProcess(config, state_dir=tmp_path_factory.mktemp("ssh-broker")) as process:
        process.login_with_token(
            token_issuer.mint(
                sub="agent-7", groups=["agents"], email="a7@example.com", lifetime=3600
            )
        )
        yield process


class Tunnel(testing_broker.Tunnel):
    """`jitctl connect` to an ssh target, with the `ssh -F` config it wrote for the client."""

    @property
    def config(self) -> str:
        return str(self.address["ssh_config"])

    @property
    def host(self) -> str:
        return str(self.address["ssh_host"])

    def ssh(
        self, command: str | None, *options: str, input: str | None = None, timeout: float = 30
    ) -> subprocess.CompletedProcess[str]:
        """`ssh` through the tunnel: `ssh -F CONFIG OPTIONS... HOST [COMMAND]`."""
        argv = ["ssh", "-F", self.config, *options, self.host]
        return subprocess.run(
            [*argv, command] if command is not None else argv,
            capture_output=True,
            text=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )

    def run(self, tool: str, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """`scp`/`sftp` with this tunnel's config; `HOST` in an argument is the tunnel's host."""
        argv = [tool, "-F", self.config, *(a.replace("HOST", self.host) for a in args)]
        return subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
        )


@pytest.fixture(scope="package")
def tunnels(broker: BrokerProcess) -> Iterator[dict[str, Tunnel]]:
    opened: dict[str, Tunnel] = {}
    for name in ("web", "locked", "masked", "short", "guarded"):
        opened[name] = Tunnel(*broker.connect(name))
    yield opened
    for tunnel in opened.values():
        tunnel.close()


class Trail:
    """The broker's audit records, read straight from its SQLite store."""

    def __init__(self, state_dir: Path) -> None:
        self.url = f"sqlite:///{state_dir / 'audit.db'}"

    def records(self, **filters: Any) -> list[Record]:
        from jitctl.audit.store import open_store

        with open_store(self.url, create=False) as store:
            return list(store.iter_records(**filters))

    def session_of(self, kind: str, predicate: Any, timeout: float = 10) -> list[Record]:
        """The records of the session holding a `kind` record whose payload satisfies
        `predicate`, once that session has ended."""
        deadline = time.monotonic() + timeout
        while True:
            found = [r for r in self.records(kinds=[kind]) if predicate(r.payload)]
            if found:
                session = self.records(session_id=found[-1].session_id)
                if any(r.kind == "session.end" for r in session):
                    return session
            if time.monotonic() > deadline:
                raise AssertionError(f"no ended session with a matching {kind} record")
            time.sleep(0.1)


@pytest.fixture(scope="package")
def trail(broker: BrokerProcess) -> Trail:
    return Trail(broker.state_dir)


def kinds(records: list[Record]) -> list[str]:
    return [r.kind for r in records]


def payloads(records: list[Record], kind: str) -> list[dict[str, Any]]:
    return [dict(r.payload) for r in records if r.kind == kind]


def dumps(records: list[Record]) -> str:
    return "\n".join(f"{r.kind} {json.dumps(dict(r.payload))[:300]}" for r in records)

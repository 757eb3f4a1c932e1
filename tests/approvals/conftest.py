"""Shared by the approvals tests: people with their own logins, one throwaway PostgreSQL.

`Person` is one identity with its own JITCTL_HOME and workload-token file, so two processes
can act as two people against the same broker (`alice.jitctl(broker, "request", "ls")`).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# The postgres plugin as tests/postgres/conftest.py finds it.
import tests.postgres.conftest  # noqa: F401  (puts plugins/ on sys.path when needed)
from jitctl.testing.broker import BrokerProcess, Tunnel
from jitctl.testing.issuer import TokenIssuer
from jitctl.testing.postgres import PostgresServer, postgres_available


class Person:
    def __init__(self, root: Path, issuer: TokenIssuer, name: str, groups: list[str]) -> None:
        self.name, self.groups = name, groups
        self.home = root / f"home-{name}"
        self.home.mkdir(parents=True, exist_ok=True)
        self.token_file = self.home / "token"
        self.token_file.write_text(
            issuer.mint(sub=name, email=f"{name}@example.com", groups=groups, lifetime=3600)
        )
        self._logged_in: set[str] = set()

    def env(self, broker: BrokerProcess) -> dict[str, str]:
        return {**broker.env, "JITCTL_HOME": str(self.home)}

    def jitctl(
        self, broker: BrokerProcess, *args: str, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        if broker.url not in self._logged_in:
            login = subprocess.run(
                [sys.executable, "-m", "jitctl", "login", "--token-file", str(self.token_file)],
                capture_output=True,
                text=True,
                env=self.env(broker),
                timeout=timeout,
            )
            assert login.returncode == 0, login.stderr
            self._logged_in.add(broker.url)
        return subprocess.run(
            [sys.executable, "-m", "jitctl", *args],
            capture_output=True,
            text=True,
            env=self.env(broker),
            timeout=timeout,
        )

    def tunnel(self, broker: BrokerProcess, target: str) -> Tunnel:
        """`jitctl connect TARGET` as this person (`with alice.tunnel(broker, "pg") as t:`)."""
        self.jitctl(broker, "whoami")  # logs in
        return broker.tunnel(target, env=self.env(broker))

    def api(
        self, broker: BrokerProcess, method: str, path: str, body: dict[str, Any] | None = None
    ) -> Any:
        """The broker's API directly (no CLI start-up): the JSON answer; asserts success."""
        import httpx

        response = httpx.request(
            method,
            broker.url + path,
            json=body,
            headers={"Authorization": f"Bearer {self.token_file.read_text()}"},
            verify=broker.verify(),
            timeout=10,
        )
        assert response.is_success, response.text
        return response.json()

    def json(self, broker: BrokerProcess, *args: str) -> Any:
        result = self.jitctl(broker, *args, "--json")
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout)


@pytest.fixture(scope="package")
def people_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("people")


@pytest.fixture(scope="package")
def pg_server() -> Iterator[PostgresServer]:
    if postgres_available() is not None:
        pytest.skip(f"no PostgreSQL here: {postgres_available()}")
    with PostgresServer() as server:
        yield server

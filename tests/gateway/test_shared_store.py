"""Two brokers, one PostgreSQL store: concurrent sessions through both still form one chain."""

from __future__ import annotations

import json
import os
import signal
import threading
from pathlib import Path

import pytest

from jitctl.testing.broker import BrokerProcess
from jitctl.testing.issuer import TokenIssuer
from jitctl.testing.postgres import PostgresServer, postgres_available
from jitctl.testing.servers import EchoServer, roundtrip

pytestmark = pytest.mark.skipif(
    postgres_available() is not None, reason=f"no PostgreSQL here: {postgres_available()}"
)


def test_two_brokers_appending_concurrently_produce_one_valid_chain(
    token_issuer: TokenIssuer, tmp_path: Path
) -> None:
    with PostgresServer() as pg, EchoServer() as echo:
        store = pg.create_database()
        config = (
            f'[broker]\nstore = "{store}"\n'
            f'[[identity.issuers]]\nissuer = "{token_issuer.url}"\n'
            f'[[targets]]\nname = "echo"\nprotocol = "tcp"\naddress = "{echo.address}"\n'
            'allow_groups = ["agents"]\n'
        )
        with (
            BrokerProcess(config, state_dir=tmp_path / "a") as first,
            BrokerProcess(config, state_dir=tmp_path / "b") as second,
        ):
            tunnels = []
            for broker in (first, second):
                broker.login_with_token(token_issuer.mint(lifetime=3600))
                tunnels.append(broker.connect("echo"))

            def traffic(port: int, tag: bytes) -> None:
                for _ in range(5):
                    payload = tag + os.urandom(50_000)
                    assert roundtrip(port, payload) == payload

            threads = [
                threading.Thread(target=traffic, args=(address["port"], f"{i}".encode()))
                for i, (_, address) in enumerate(tunnels)
                for _ in range(3)
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)
            for process, _ in tunnels:
                process.send_signal(signal.SIGINT)
                process.communicate(timeout=10)

            keys = [
                "--key",
                str(tmp_path / "a" / "audit-signing.pub"),
                "--key",
                str(tmp_path / "b" / "audit-signing.pub"),
            ]
            verify = first.jitctl(
                "audit",
                "verify",
                "--json",
                "--config",
                str(first.config_path),
                *keys,
                env={"JITCTL_HOME": str(tmp_path / "verifier")},
            )
            assert verify.returncode == 0, verify.stdout + verify.stderr
            report = json.loads(verify.stdout)
            assert report["ok"] is True
            sessions = json.loads(
                first.jitctl("sessions", "ls", "--json", "--config", str(first.config_path)).stdout
            )
            sessions = sessions["sessions"] if isinstance(sessions, dict) else sessions
            assert len(sessions) == 30
            assert all(s["bytes_up"] == s["bytes_down"] > 50_000 for s in sessions)

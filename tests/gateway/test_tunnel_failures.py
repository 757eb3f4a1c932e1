"""What happens when things break: a killed broker, a lost audit store, a real psql client."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest

from jitctl.errors import ExitCode
from jitctl.testing.broker import BrokerProcess
from jitctl.testing.issuer import TokenIssuer
from jitctl.testing.postgres import PostgresServer, postgres_available
from jitctl.testing.servers import EchoServer, SinkServer

needs_postgres = pytest.mark.skipif(
    postgres_available() is not None, reason=f"no PostgreSQL here: {postgres_available()}"
)


def _config(issuer: TokenIssuer, name: str, address: str, store: str = "") -> str:
    broker = f'[broker]\nstore = "{store}"\n' if store else ""
    return (
        f'{broker}[[identity.issuers]]\nissuer = "{issuer.url}"\n'
        f'[[targets]]\nname = "{name}"\nprotocol = "tcp"\naddress = "{address}"\n'
        'allow_groups = ["agents"]\n'
    )


def _recorded_upstream_bytes(state_dir: Path) -> dict[str, bytes]:
    """Per session: the client->upstream bytes the trail holds, in stream order."""
    from jitctl.audit.store import open_store

    pieces: dict[str, list[tuple[int, bytes]]] = defaultdict(list)
    with open_store(f"sqlite:///{state_dir / 'audit.db'}") as store:
        for record in store.iter_records(kinds=["tcp.data"]):
            if record.payload["dir"] == "up":
                pieces[record.session_id].append((record.payload["offset"], record.data))
    return {sid: b"".join(d for _, d in sorted(parts)) for sid, parts in pieces.items()}


def test_kill_9_while_20_tunnels_stream_loses_no_forwarded_byte(
    token_issuer: TokenIssuer, tmp_path: Path
) -> None:
    """Every byte that reached the upstream is in the trail, and the trail still verifies."""
    with SinkServer() as sink:
        broker = BrokerProcess(_config(token_issuer, "sink", sink.address), state_dir=tmp_path)
        broker.start()
        broker.login_with_token(token_issuer.mint(lifetime=3600))
        connect, address = broker.connect("sink")
        stop = threading.Event()

        def stream(index: int) -> None:
            block = (f"conn-{index:02d}|".encode() + os.urandom(8192)) * 2
            try:
                with socket.create_connection(("127.0.0.1", address["port"]), timeout=5) as sock:
                    while not stop.is_set():
                        sock.sendall(block)
            except OSError:
                pass  # the broker died under us: expected

        threads = [threading.Thread(target=stream, args=(i,)) for i in range(20)]
        for thread in threads:
            thread.start()
        deadline = time.monotonic() + 20

        def streaming() -> bool:
            live = [c for c in sink.connections if c]
            return len(live) == 20 and sum(map(len, live)) >= 5_000_000

        while not streaming() and time.monotonic() < deadline:
            time.sleep(0.05)
        broker.kill()
        stop.set()
        for thread in threads:
            thread.join(10)
        connect.kill()
        connect.wait()
        time.sleep(0.3)  # let the sink drain what the kernel still held
        received = [bytes(c) for c in sink.connections if c]

    assert len(received) == 20
    assert sum(map(len, received)) >= 5_000_000
    restarted = BrokerProcess(_config(token_issuer, "sink", "127.0.0.1:9"), state_dir=tmp_path)
    with restarted:
        verify = restarted.jitctl("audit", "verify", "--json", "--state-dir", str(tmp_path))
        assert verify.returncode == 0, verify.stdout + verify.stderr
        recorded = _recorded_upstream_bytes(tmp_path)
        for data in received:
            header = data[:8]
            matches = [r for r in recorded.values() if r.startswith(header)]
            assert len(matches) == 1, f"no single session recorded {header!r}"
            assert matches[0][: len(data)] == data, "the upstream got bytes the trail lacks"
        sessions = json.loads(
            restarted.jitctl("sessions", "ls", "--json", "--state-dir", str(tmp_path)).stdout
        )
        sessions = sessions["sessions"] if isinstance(sessions, dict) else sessions
        assert len(sessions) == 20
        assert all(s["status"] != "open" for s in sessions), "interrupted sessions were not closed"


@needs_postgres
def test_lost_audit_store_stops_forwarding_and_refuses_new_sessions(
    token_issuer: TokenIssuer, tmp_path: Path
) -> None:
    with PostgresServer() as store_pg, EchoServer() as echo:
        config = _config(token_issuer, "echo", echo.address, store=store_pg.create_database())
        with BrokerProcess(config, state_dir=tmp_path) as broker:
            broker.login_with_token(token_issuer.mint(lifetime=3600))
            connect, address = broker.connect("echo")
            try:
                with socket.create_connection(("127.0.0.1", address["port"]), timeout=10) as sock:
                    sock.sendall(b"before")
                    assert sock.recv(100) == b"before"
                    store_pg.stop()
                    forwarded_after = b""
                    try:
                        for _ in range(50):
                            sock.sendall(b"after")
                            time.sleep(0.02)
                        sock.settimeout(5)
                        while chunk := sock.recv(100):
                            forwarded_after += chunk
                    except OSError:
                        pass
                assert forwarded_after != b"after" * 50  # forwarding stopped
                assert echo.connections[-1].count(b"after") < 50
                refused = broker.jitctl("connect", "echo", "--no-client")
                assert refused.returncode == ExitCode.UNREACHABLE
                assert "audit store unavailable" in refused.stderr
                assert broker.get("/readyz").status_code == 503
            finally:
                connect.send_signal(signal.SIGINT)
                _, err = connect.communicate(timeout=10)
            assert "audit store unavailable" in err
            assert any("audit store unavailable" in json.dumps(e) for e in broker.log_events())


@needs_postgres
def test_psql_works_through_a_tcp_tunnel(token_issuer: TokenIssuer, tmp_path: Path) -> None:
    with PostgresServer() as pg:
        config = _config(token_issuer, "pg", f"{pg.host}:{pg.port}")
        with BrokerProcess(config, state_dir=tmp_path) as broker:
            broker.login_with_token(token_issuer.mint(lifetime=3600))
            connect, address = broker.connect("pg")
            try:
                result = subprocess.run(
                    [
                        "psql",
                        "-h",
                        "127.0.0.1",
                        "-p",
                        str(address["port"]),
                        "-U",
                        pg.user,
                        "-d",
                        "postgres",
                        "-Atc",
                        "SELECT 40 + 2",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=30,
                    env={**os.environ, "PGPASSWORD": pg.password, "PGSSLMODE": "disable"},
                )
            finally:
                connect.send_signal(signal.SIGINT)
                connect.communicate(timeout=10)
            assert result.stdout.strip() == "42", result.stderr
            sessions = json.loads(
                broker.jitctl("sessions", "ls", "--json", "--state-dir", str(tmp_path)).stdout
            )
            sessions = sessions["sessions"] if isinstance(sessions, dict) else sessions
            assert sessions[0]["target"] == "pg"
            assert sessions[0]["bytes_up"] > 0 and sessions[0]["bytes_down"] > 0

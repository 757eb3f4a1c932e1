"""A client that stops reading must not make the broker buffer what the upstream keeps sending.

The relay pauses the upstream while the client does not take what it is sent (and while too
much upstream data waits for the audit writer); the memory of the broker process, not a
timer, is what these tests judge.
"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitctl.testing.broker import BrokerProcess
from jitctl.testing.issuer import TokenIssuer

SOURCE_MB = 256
GROWTH_LIMIT_MB = 96  # far below SOURCE_MB: what was not read stayed in the upstream

CONFIG = """
[[identity.issuers]]
issuer = "{issuer}"

[[targets]]
name = "source"
protocol = "tcp"
address = "127.0.0.1:{port}"
allow_groups = ["agents"]
"""


class SourceServer:
    """Sends SOURCE_MB of bytes to whoever connects, as fast as the socket takes them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.sent: list[int] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._send, args=(conn,), daemon=True).start()

    def _send(self, conn: socket.socket) -> None:
        block, total = b"s" * (1 << 20), 0
        with conn:
            try:
                for _ in range(SOURCE_MB):
                    conn.sendall(block)
                    total += len(block)
                conn.shutdown(socket.SHUT_WR)
                while conn.recv(65536):
                    pass
            except OSError:
                pass
        self.sent.append(total)


@pytest.fixture(scope="module")
def source() -> Iterator[SourceServer]:
    server = SourceServer()
    yield server
    server.sock.close()


@pytest.fixture(scope="module")
def broker(
    token_issuer: TokenIssuer, source: SourceServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    config = CONFIG.format(issuer=token_issuer.url, port=source.port)
    with BrokerProcess(config, state_dir=tmp_path_factory.mktemp("backpressure")) as process:
        process.login_with_token(token_issuer.mint(sub="agent-7", groups=["agents"]))
        yield process


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def test_a_client_that_stops_reading_pauses_the_upstream(
    broker: BrokerProcess, source: SourceServer
) -> None:
    assert broker.proc is not None
    process, address = broker.connect("source")
    try:
        before = _rss_mb(broker.proc.pid)
        with socket.create_connection(("127.0.0.1", address["port"]), timeout=30) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            first = sock.recv(1024)  # the session is up and bytes flow
            assert first
            time.sleep(3)  # the client reads nothing; the source would send all it has
            stalled = _rss_mb(broker.proc.pid)
            received = len(first)
            while chunk := sock.recv(1 << 20):
                received += len(chunk)
        assert received == SOURCE_MB << 20  # nothing lost once the client read again
        assert stalled - before < GROWTH_LIMIT_MB, (before, stalled)
    finally:
        process.send_signal(signal.SIGINT)
        process.communicate(timeout=10)


def test_the_trail_holds_every_byte_the_client_was_sent(broker: BrokerProcess) -> None:
    state = ("--state-dir", str(broker.state_dir))
    verify = broker.jitctl("audit", "verify", *state)
    assert verify.returncode == 0, verify.stderr
    shown = broker.jitctl("sessions", "ls", "--json", "--target", "source", *state)
    assert shown.returncode == 0, shown.stderr
    (session,) = json.loads(shown.stdout)
    assert session["bytes_down"] == SOURCE_MB << 20

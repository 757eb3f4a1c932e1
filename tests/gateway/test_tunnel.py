"""Recorded tunnels end to end: `jitctl connect`, the broker as a subprocess, real servers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitctl.errors import ExitCode
from jitctl.testing.broker import BrokerProcess
from jitctl.testing.issuer import TokenIssuer
from jitctl.testing.servers import EchoServer, roundtrip

CONFIG = """
[[identity.issuers]]
issuer = "{issuer}"

[[targets]]
name = "echo"
protocol = "tcp"
address = "{echo}"
allow_groups = ["agents"]

[[targets]]
name = "billing"
protocol = "tcp"
address = "{echo}"
allow_groups = ["dba"]

[[targets]]
name = "nocred"
protocol = "tcp"
address = "{echo}"
allow_groups = ["agents"]
credential = {{ user = "svc", password_env = "JITCTL_TEST_NEVER_SET" }}
"""


@pytest.fixture(scope="module")
def echo() -> Iterator[EchoServer]:
    with EchoServer() as server:
        yield server


@pytest.fixture(scope="module")
def broker(
    token_issuer: TokenIssuer, echo: EchoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    config = CONFIG.format(issuer=token_issuer.url, echo=echo.address)
    with BrokerProcess(config, state_dir=tmp_path_factory.mktemp("tunnel")) as process:
        process.login_with_token(
            token_issuer.mint(
                sub="agent-7", groups=["agents"], email="a7@example.com", lifetime=3600
            )
        )
        yield process


def test_socket_client_round_trips_and_the_session_is_attributed(broker: BrokerProcess) -> None:
    with broker.tunnel("echo", "--reason", "INC-42 debugging") as tunnel:
        payload = os.urandom(300_000)
        assert roundtrip(tunnel.port, payload) == payload
    err = tunnel.stderr
    assert "session" in err and "opened to echo" in err
    session_id = err.split("session ", 1)[1].split()[0]
    show = broker.jitctl(
        "sessions", "show", session_id, "--json", "--state-dir", str(broker.state_dir)
    )
    assert show.returncode == 0, show.stderr
    session = json.loads(show.stdout)
    text = json.dumps(session)
    assert "agent-7" in text and "a7@example.com" in text and "INC-42 debugging" in text
    assert session["target"] == "echo"
    assert session["bytes_up"] == 300_000
    assert session["bytes_down"] == 300_000


def test_connect_prints_the_port_as_one_json_line(broker: BrokerProcess) -> None:
    with broker.tunnel("echo") as tunnel:
        address = tunnel.address
        assert set(address) >= {"target", "host", "port", "protocol", "correlation_id"}
        assert address["host"] == "127.0.0.1" and address["port"] > 0


def test_unknown_target_is_a_usage_error(broker: BrokerProcess) -> None:
    result = broker.jitctl("connect", "nope", "--no-client")
    assert result.returncode == ExitCode.USAGE
    assert "no target named 'nope'" in result.stderr


def test_local_tls_is_for_postgres_targets(broker: BrokerProcess) -> None:
    result = broker.jitctl("connect", "echo", "--local-tls", "--no-client")
    assert result.returncode == ExitCode.USAGE
    assert "--local-tls is for postgres targets; echo is tcp" in result.stderr


def test_target_outside_the_callers_groups_is_denied(broker: BrokerProcess) -> None:
    result = broker.jitctl("connect", "billing", "--no-client")
    assert result.returncode == ExitCode.DENIED
    assert "may not reach 'billing'" in result.stderr
    assert "dba" in result.stderr


def test_expired_token_says_to_log_in(
    broker: BrokerProcess, token_issuer: TokenIssuer, tmp_path: Path
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(token_issuer.mint(lifetime=600))
    env = {"JITCTL_HOME": str(tmp_path / "home")}
    assert broker.jitctl("login", "--token-file", str(token_file), env=env).returncode == 0
    token_file.write_text(
        token_issuer.mint(iat=1, nbf=1, exp=100)
    )  # the file now holds a stale token
    result = broker.jitctl("connect", "echo", "--no-client", env=env)
    assert result.returncode == ExitCode.AUTH
    assert "expired" in result.stderr
    assert "jitctl login" in result.stderr


def test_unreachable_broker_is_exit_6(broker: BrokerProcess, tmp_path: Path) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead_port = sock.getsockname()[1]
    env = {"JITCTL_BROKER": f"https://127.0.0.1:{dead_port}"}
    result = broker.jitctl("connect", "echo", "--no-client", env=env)
    assert result.returncode == ExitCode.UNREACHABLE
    assert "cannot reach the broker" in result.stderr
    # The hint names where the URL is set, not a --broker flag connect does not take.
    assert "jitctl login --broker URL" in result.stderr


def test_refusals_are_recorded_in_the_trail(broker: BrokerProcess) -> None:
    broker.jitctl("connect", "billing", "--no-client")
    export = broker.jitctl(
        "audit", "export", "--format", "jsonl", "--state-dir", str(broker.state_dir)
    )
    assert export.returncode == 0, export.stderr
    kinds = [json.loads(line)["kind"] for line in export.stdout.splitlines() if line.strip()]
    assert "session.denied" in kinds


def test_trail_verifies_after_sessions(broker: BrokerProcess) -> None:
    result = broker.jitctl("audit", "verify", "--state-dir", str(broker.state_dir))
    assert result.returncode == 0, result.stdout + result.stderr


def test_a_secret_the_broker_cannot_find_refuses_clearly(broker: BrokerProcess) -> None:
    """An unset password_env is an operator error: say so, don't try the upstream without it."""
    with (
        broker.tunnel("nocred") as tunnel,
        socket.create_connection(("127.0.0.1", tunnel.port), timeout=10) as sock,
    ):
        sock.sendall(b"hello")
        assert sock.recv(100) == b""  # closed: nothing was forwarded
    assert "the broker has no credential for nocred" in tunnel.stderr
    assert "JITCTL_TEST_NEVER_SET is not set" in tunnel.stderr


# -- who may use a tunnel's port (jitctl.client.peers) ------------------------------------------


def _other_user() -> str | None:
    """A second local account to connect as (tests run as root in CI), or None."""
    import pwd
    import shutil

    if os.geteuid() != 0 or shutil.which("runuser") is None:
        return None
    for name in ("nobody", "postgres"):
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            continue
    return None


OTHER = _other_user()
needs_other = pytest.mark.skipif(
    OTHER is None or not Path("/proc/net/tcp").exists(),
    reason="needs root, runuser and a second account (nobody) on Linux to connect as another user",
)

# A client turned away may find its connection reset or already shut before it has sent (then
# `shutdown` says ENOTCONN): either is "nothing". A tunnel that hangs instead still fails.
CLIENT = (
    "import socket, sys\n"
    "s = socket.create_connection(('127.0.0.1', int(sys.argv[1])), timeout=10)\n"
    "got = b''\n"
    "try:\n"
    "    s.sendall(b'ping'); s.shutdown(socket.SHUT_WR)\n"
    "    while chunk := s.recv(100):\n"
    "        got += chunk\n"
    "except TimeoutError:\n"
    "    raise\n"
    "except OSError:\n"
    "    pass\n"
    "print(got.decode() or 'nothing')\n"
)


def _as_other_user(port: int) -> str:
    assert OTHER is not None
    result = subprocess.run(
        ["runuser", "-u", OTHER, "--", "python3", "-c", CLIENT, str(port)],
        capture_output=True,
        text=True,
        timeout=30,
        cwd="/",
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@needs_other
def test_another_local_user_is_turned_away_before_any_session(broker: BrokerProcess) -> None:
    sessions_before = len(broker.records("session.start"))
    with broker.tunnel("echo") as tunnel:
        assert _as_other_user(tunnel.port) == "nothing"
        assert roundtrip(tunnel.port, b"mine") == b"mine"  # its own user still gets in
    err = tunnel.stderr
    assert f"turned away a local connection from user {OTHER}" in err
    assert "this tunnel acts as root" in err and "--any-local-user" in err
    assert len(broker.records("session.start")) == sessions_before + 1  # only the owner's


@needs_other
def test_any_local_user_lets_other_users_in(broker: BrokerProcess) -> None:
    with broker.tunnel("echo", "--any-local-user") as tunnel:
        assert _as_other_user(tunnel.port) == "ping"
    assert "turned away" not in tunnel.stderr


def test_the_kernel_table_names_the_owner_of_a_client_socket(tmp_path: Path) -> None:
    """owner_uid reads /proc/net/tcp's rows (a real table's shape): the listener on
    127.0.0.1:8080 and its accepted socket (uid 0), and the client 127.0.0.1:50000 connected
    to it (uid 1001): the client's row, not the server's end of the same connection."""
    from jitctl.client.peers import owner_uid

    table = tmp_path / "tcp"
    table.write_text(
        "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  "
        "timeout inode\n"
        "   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0"
        "        0 1 1 0000000000000000 100 0 0 10 0\n"
        "   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0"
        "        0 4 1 0000000000000000 20 4 30 10 -1\n"
        "   2: 0100007F:C350 0100007F:1F90 01 00000000:00000000 00:00000000 00000000  1001"
        "        0 2 1 0000000000000000 20 4 30 10 -1\n"
    )
    six = tmp_path / "tcp6"
    six.write_text(
        "  sl  local_address                         remote_address                        st "
        "tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode\n"
        "   0: 0000000000000000FFFF00000100007F:C351 0000000000000000FFFF00000100007F:1F90 01 "
        "00000000:00000000 00:00000000 00000000  1002        0 3 1 0000000000000000 20 4 30 10 -1\n"
    )
    tables = (table, six)
    assert owner_uid(("127.0.0.1", 50000), ("127.0.0.1", 8080), tables) == 1001
    assert owner_uid(("127.0.0.1", 50001), ("127.0.0.1", 8080), tables) == 1002  # dual-stack
    assert owner_uid(("127.0.0.1", 50002), ("127.0.0.1", 8080), tables) is None
    assert owner_uid(("127.0.0.1", 50000), ("127.0.0.1", 8081), tables) is None  # other port


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="Linux only (sock_diag)")
def test_the_kernel_names_the_owner_by_netlink_as_its_table_does() -> None:
    from jitctl.client.peers import netlink_uid, owner_uid

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        with socket.create_connection(server.getsockname()) as client:
            accepted, peer = server.accept()
            with accepted:
                here = server.getsockname()
                assert netlink_uid(peer, here) == owner_uid(peer, here) == os.getuid()
                assert netlink_uid(("127.0.0.1", client.getsockname()[1] ^ 1), here) is None

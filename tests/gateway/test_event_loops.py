"""The whole path on each event loop jitctl can run on (jitctl.eventloop): the broker and
`jitctl connect` / `jitctl exec` as real subprocesses with `JITCTL_EVENT_LOOP` set, real TCP
servers behind them. The rest of the suite runs on the default loop (uvloop where installed);
this module holds the edges that differ between loops: half-closes, resets, signals, children.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jitctl.errors import ExitCode
from jitctl.testing.broker import BrokerProcess
from jitctl.testing.issuer import TokenIssuer
from jitctl.testing.servers import EchoServer, SinkServer, roundtrip

try:
    import uvloop  # noqa: F401

    LOOPS: list[Any] = ["asyncio", "uvloop"]
except ImportError:
    LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skip("uvloop not installed"))]

CONFIG = """
[broker]
shutdown_grace = "1s"

[[identity.issuers]]
issuer = "{issuer}"

[[targets]]
name = "echo"
protocol = "tcp"
address = "{echo}"
allow_groups = ["agents"]

[[targets]]
name = "sink"
protocol = "tcp"
address = "{sink}"
allow_groups = ["agents"]
"""


@pytest.fixture(scope="module")
def servers() -> Iterator[tuple[EchoServer, SinkServer]]:
    with EchoServer() as echo, SinkServer() as sink:
        yield echo, sink


def _broker(
    loop: str, issuer: TokenIssuer, servers: tuple[EchoServer, SinkServer], state: Path
) -> BrokerProcess:
    echo, sink = servers
    config = CONFIG.format(issuer=issuer.url, echo=echo.address, sink=sink.address)
    return BrokerProcess(config, state_dir=state, env={"JITCTL_EVENT_LOOP": loop})


@pytest.fixture(scope="module", params=LOOPS)
def broker(
    request: pytest.FixtureRequest,
    token_issuer: TokenIssuer,
    servers: tuple[EchoServer, SinkServer],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[BrokerProcess]:
    loop = request.param
    with _broker(loop, token_issuer, servers, tmp_path_factory.mktemp(f"loop-{loop}")) as process:
        process.login_with_token(token_issuer.mint(sub="agent-7", groups=["agents"], lifetime=3600))
        yield process


def _loop(broker: BrokerProcess) -> str:
    return broker.extra_env["JITCTL_EVENT_LOOP"]


def _cli_env(broker: BrokerProcess) -> dict[str, str]:
    """The CLI subprocesses run on the broker's loop too."""
    return {**broker.env, "JITCTL_EVENT_LOOP": _loop(broker)}


def _connect(broker: BrokerProcess, target: str) -> tuple[subprocess.Popen[str], int]:
    process, address = broker.connect(target, env=_cli_env(broker))
    return process, int(address["port"])


def _stop(process: subprocess.Popen[str], sig: int = signal.SIGINT) -> tuple[int, str]:
    process.send_signal(sig)
    _, err = process.communicate(timeout=15)
    return process.returncode, err


def _sessions(broker: BrokerProcess, target: str) -> list[dict[str, Any]]:
    shown = broker.jitctl(
        "sessions", "ls", "--json", "--target", target, "--state-dir", str(broker.state_dir)
    )
    assert shown.returncode == 0, shown.stderr
    listed = json.loads(shown.stdout)
    return listed["sessions"] if isinstance(listed, dict) else listed


def test_the_broker_runs_on_the_loop_it_was_given(broker: BrokerProcess) -> None:
    started = [e for e in broker.log_events() if e.get("event") == "broker.start"]
    assert started and started[-1]["event_loop"] == _loop(broker)


def test_a_client_half_close_reaches_the_upstream_and_its_answer_comes_back(
    broker: BrokerProcess,
) -> None:
    """The sink answers only after our end of data: EOF travels up, the reply down, then EOF."""
    process, port = _connect(broker, "sink")
    try:
        payload = os.urandom(2 << 20)
        assert roundtrip(port, payload, timeout=15) == str(len(payload)).encode()
    finally:
        code, err = _stop(process)
    assert code == 0, err


def test_echo_both_ways_then_eof(broker: BrokerProcess) -> None:
    process, port = _connect(broker, "echo")
    try:
        payload = os.urandom(1 << 20)
        with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        assert received == payload
    finally:
        _stop(process)


def test_a_client_that_resets_mid_stream_ends_its_session_and_others_go_on(
    broker: BrokerProcess,
) -> None:
    process, port = _connect(broker, "echo")
    try:
        before = {s["id"] for s in _sessions(broker, "echo")}
        sock = socket.create_connection(("127.0.0.1", port), timeout=15)
        sock.sendall(b"x" * 100_000)
        sock.recv(1000)  # the session is up and bytes flow
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.close()  # a reset, not a FIN
        with socket.create_connection(("127.0.0.1", port), timeout=15) as again:
            again.sendall(b"still here")
            assert again.recv(100) == b"still here"
    finally:
        _stop(process)
    deadline = time.monotonic() + 15
    while True:
        ours = [s for s in _sessions(broker, "echo") if s["id"] not in before]
        if len(ours) == 2 and all(s["status"] != "open" for s in ours):
            break
        assert time.monotonic() < deadline, f"not both ended: {ours}"
        time.sleep(0.2)
    verify = broker.jitctl("audit", "verify", "--state-dir", str(broker.state_dir))
    assert verify.returncode == 0, verify.stderr


def test_connect_to_a_broker_whose_certificate_is_not_trusted_says_so(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    from jitctl.broker.tlsfiles import ensure_tls_files

    other_ca, _, _ = ensure_tls_files(tmp_path, ["127.0.0.1"])  # not the broker's CA
    env = {**_cli_env(broker), "JITCTL_CA_FILE": str(other_ca)}
    result = broker.jitctl("connect", "echo", "--no-client", env=env)
    assert result.returncode == ExitCode.UNREACHABLE, result.stderr
    assert "--ca-file" in result.stderr and "Traceback" not in result.stderr


def test_connect_to_something_that_does_not_speak_tls_is_unreachable(
    broker: BrokerProcess, servers: tuple[EchoServer, SinkServer]
) -> None:
    echo, _ = servers  # answers our ClientHello with itself: not TLS
    env = {**_cli_env(broker), "JITCTL_BROKER": f"https://{echo.address}"}
    result = broker.jitctl("connect", "echo", "--no-client", env=env)
    assert result.returncode == ExitCode.UNREACHABLE, result.stderr
    assert "cannot reach the broker" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_connect_closes_cleanly_on_sigint_and_sigterm(broker: BrokerProcess, sig: int) -> None:
    process, port = _connect(broker, "echo")
    with socket.create_connection(("127.0.0.1", port), timeout=15) as sock:
        sock.sendall(b"ping")
        assert sock.recv(10) == b"ping"
        code, err = _stop(process, sig)
        assert sock.recv(10) == b""  # the open session was closed, not left hanging
    assert code == 0, err
    assert "Traceback" not in err


def test_exec_passes_status_and_keeps_signals_the_caller_ignored(
    broker: BrokerProcess, tmp_path: Path
) -> None:
    """nohup-style: SIGHUP ignored by whoever started jitctl stays ignored in the command."""
    out = tmp_path / "sigign"
    script = f"grep SigIgn /proc/self/status > {out}; exit 5"
    jitctl = [sys.executable, "-m", "jitctl", "exec", "-t", "echo", "--", "sh", "-c", script]
    result = subprocess.run(
        ["sh", "-c", 'trap "" HUP; exec "$@"', "sh", *jitctl],  # as nohup starts it
        env=_cli_env(broker),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 5, result.stderr
    ignored = int(out.read_text().split()[1], 16)
    assert ignored & (1 << (signal.SIGHUP - 1))


@pytest.mark.parametrize("loop", LOOPS)
def test_sigterm_stops_the_broker_and_ends_open_sessions_on_the_record(
    loop: str,
    token_issuer: TokenIssuer,
    servers: tuple[EchoServer, SinkServer],
    tmp_path: Path,
) -> None:
    process = _broker(loop, token_issuer, servers, tmp_path / "b").start()
    try:
        process.login_with_token(token_issuer.mint(sub="agent-7", groups=["agents"]))
        connect, address = process.connect("echo", env={"JITCTL_EVENT_LOOP": loop})
        with socket.create_connection(("127.0.0.1", int(address["port"])), timeout=15) as sock:
            sock.sendall(b"ping")
            assert sock.recv(10) == b"ping"
            assert process.stop(signal.SIGTERM) == 0
            assert sock.recv(10) == b""  # jitctl connect closed the local side too
        _, err = _stop(connect)
    finally:
        process.stop()
    assert "closed by the broker: the broker is shutting down" in err
    assert "broker.stop" in [e.get("event") for e in process.log_events()]
    assert "Traceback" not in process.log_text()
    (session,) = _sessions(process, "echo")
    assert session["end_reason"] == "the broker is shutting down"

"""The broker process: TLS only, health endpoints, OpenAPI, JSON logs, clean shutdown."""

from __future__ import annotations

import contextlib
import signal
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from jitctl.testing.broker import BrokerProcess


@pytest.fixture(scope="module")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BrokerProcess]:
    config = '[[targets]]\nname = "t"\nprotocol = "tcp"\naddress = "127.0.0.1:9"\n'
    with BrokerProcess(config, state_dir=tmp_path_factory.mktemp("srv")) as process:
        yield process


def _port(url: str) -> int:
    return int(url.rsplit(":", 1)[1])


def test_plain_http_gets_a_clear_refusal_not_a_hang(broker) -> None:
    with socket.create_connection(("127.0.0.1", _port(broker.url)), timeout=5) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        reply = b""
        while chunk := sock.recv(4096):
            reply += chunk
    assert reply.startswith(b"HTTP/1.1 400")
    assert b"speaks only HTTPS" in reply


def test_garbage_that_is_not_tls_is_closed(broker) -> None:
    with socket.create_connection(("127.0.0.1", _port(broker.url)), timeout=5) as sock:
        sock.sendall(b"\x00\x01\x02\x03")
        # Closed: EOF, or a reset when our bytes were left unread — just as final.
        with contextlib.suppress(ConnectionResetError):
            assert sock.recv(100) == b""


def test_health_readiness_and_openapi_over_tls(broker) -> None:
    assert broker.get("/healthz").json() == {"status": "ok"}
    assert broker.get("/readyz").json() == {"status": "ready"}
    schema = broker.get("/openapi.json").json()
    assert {"/healthz", "/readyz", "/v1/whoami", "/v1/targets", "/v1/info"} <= set(schema["paths"])


def test_info_says_not_dev_and_no_login_issuer_without_one(broker) -> None:
    info = broker.get("/v1/info").json()
    assert info["dev"] is False
    assert info["login"] is None


def test_logs_are_json_lines(broker) -> None:
    broker.get("/healthz")
    events = [e["event"] for e in broker.log_events() if "event" in e]
    assert "broker.start" in events
    assert "http.request" in events


def test_sigterm_shuts_down_cleanly_and_removes_the_pointer(tmp_path: Path) -> None:
    process = BrokerProcess(None, state_dir=tmp_path, dev=False)
    process.config_path = tmp_path / "b.toml"
    process.config_path.write_text("")
    process.start()
    assert process.stop(signal.SIGTERM) == 0
    assert not (tmp_path / "broker.json").exists()
    assert "broker.stop" in [e.get("event") for e in process.log_events()]


def test_bad_config_is_refused_at_start_naming_the_key(tmp_path: Path) -> None:
    process = BrokerProcess(
        '[[targets]]\nname = "a"\nprotocol = "smtp"\naddress = "h:1"\n', state_dir=tmp_path
    )
    with pytest.raises(Exception) as excinfo:
        process.start()
    assert "targets[0].protocol: unknown protocol 'smtp'" in str(excinfo.value)
    assert "Traceback" not in process.log_text()


def test_serve_without_config_or_dev_is_a_usage_error(tmp_path: Path) -> None:
    process = BrokerProcess(None, state_dir=tmp_path)
    result = process.jitctl("broker", "serve", "--state-dir", str(tmp_path))
    assert result.returncode == 2
    assert "no configuration given" in result.stderr

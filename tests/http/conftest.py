"""Real pieces for the http end-to-end tests: a threaded upstream, the broker, `jitctl connect`."""

from __future__ import annotations

import base64
import contextlib
import os
import socket
from collections.abc import Iterator

import pytest

from jitctl.testing import broker as testing_broker
from jitctl.testing.broker import BrokerProcess
from jitctl.testing.http_upstream import HttpUpstream
from jitctl.testing.issuer import TokenIssuer

TOKEN = "upstream-token-only-the-broker-knows"
API_KEY = "api-key-only-the-broker-knows"

CONFIG = """
[approvals]
poll_interval = "200ms"

[[identity.issuers]]
issuer = "{issuer}"

[[targets]]
name = "api"
protocol = "http"
address = "{url}"
allow_groups = ["agents"]
credential = {{ token_env = "API_TOKEN" }}

[[targets.rules]]
name = "no-deletes"
match = {{ method = ["DELETE"] }}
action = "deny"
message = "deletes go through the change process"

[[targets.rules]]
name = "no-admin"
match = {{ path = ["/admin*"] }}
action = "deny"

[[targets.rules]]
name = "no-prod-jobs"
match = {{ method = ["POST"], path = ["/jobs"], body = {{ "env" = ["prod*"] }} }}
action = "deny"

[[targets.masks]]
columns = ["ssn"]
detectors = ["EMAIL_ADDRESS"]

[[targets]]
name = "guarded"
protocol = "http"
address = "{url}"
allow_groups = ["agents"]
credential = {{ token_env = "API_TOKEN" }}
access = {{ approvers = ["dba"], approval_timeout = "20s" }}

[[targets.rules]]
match = {{ method = ["POST"], path = ["/deploy*"] }}
action = "approve"

[[targets]]
name = "jit"
protocol = "http"
address = "{url}"
allow_groups = ["agents"]
credential = {{ token_env = "API_TOKEN" }}
access = {{ require_request = true, approvers = ["dba"] }}

[[targets]]
name = "keyed"
protocol = "http"
address = "{address}"
allow_groups = ["agents"]
credential = {{ token_env = "API_KEY" }}
http = {{ auth_header = "X-Api-Key", auth_scheme = "", body_limit = 64 }}
"""


@contextlib.contextmanager
def upgraded(port: int, path: str) -> Iterator[socket.socket]:
    """A raw socket through the WebSocket handshake (the 101 checked), for frames a client
    library would not send, or bytes read exactly as they come."""
    with socket.create_connection(("127.0.0.1", port), 10) as sock:
        key = base64.b64encode(os.urandom(16))
        sock.sendall(
            b"GET " + path.encode() + b" HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
            b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: "
            + key
            + b"\r\n\r\n"
        )
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(1)
        assert head.startswith(b"HTTP/1.1 101"), head
        yield sock


class Tunnel(testing_broker.Tunnel):
    """`jitctl connect` to an http target, with the local URL it serves."""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


@pytest.fixture(scope="package")
def upstream() -> Iterator[HttpUpstream]:
    with HttpUpstream() as server:
        yield server


@pytest.fixture(scope="package")
def broker(
    token_issuer: TokenIssuer, upstream: HttpUpstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[BrokerProcess]:
    config = CONFIG.format(issuer=token_issuer.url, url=upstream.url, address=upstream.address)
    process = BrokerProcess(
        config,
        state_dir=tmp_path_factory.mktemp("http"),
        env={"API_TOKEN": TOKEN, "API_KEY": API_KEY},
    )
    with process:
        process.login_with_token(token_issuer.mint(sub="agent-7", groups=["agents"], lifetime=3600))
        yield process


@pytest.fixture(scope="package")
def tunnels(broker: BrokerProcess) -> Iterator[dict[str, Tunnel]]:
    opened = {name: Tunnel(*broker.connect(name)) for name in ("api", "keyed", "guarded")}
    yield opened
    for tunnel in opened.values():
        tunnel.close()

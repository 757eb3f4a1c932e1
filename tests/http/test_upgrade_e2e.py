"""Upgrades to a protocol other than WebSocket, end to end: a real broker, `jitctl connect` and
the threaded upstream, on a raw socket. `api` has masks: the gateway refuses such an upgrade
and the connection goes on as HTTP/1.1. `keyed` has none: the bytes are relayed, the broker's
API key replaced in what the upstream sends."""

from __future__ import annotations

import json
import socket

from jitctl.testing.broker import BrokerProcess
from jitctl.testing.http_upstream import HttpUpstream
from tests.http.conftest import API_KEY, Tunnel
from tests.http.test_http_e2e import wait_for


def read_answer(sock: socket.socket) -> tuple[bytes, bytes]:
    """One answer with a Content-Length: (head, body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        more = sock.recv(4096)
        assert more, data
        data += more
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.lower().split(b"\r\n")
        if line.startswith(b"content-length:")
    )
    while len(body) < length:
        more = sock.recv(4096)
        assert more, body
        body += more
    return head, body


def raw_upgrade(port: int, path: str) -> socket.socket:
    """A connection through the tunnel at `port` that asked to switch to `raw-echo` on `path`
    and read the 101's head: what follows is the upgraded protocol's."""
    sock = socket.create_connection(("127.0.0.1", port), 10)
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
        "Upgrade: raw-echo\r\n\r\n".encode()
    )
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)  # byte by byte: nothing after the head is read here
    assert head.startswith(b"HTTP/1.1 101"), head
    return sock


def test_a_masked_target_refuses_a_raw_upgrade_with_502_and_serves_the_next_request(
    tunnels: dict[str, Tunnel], broker: BrokerProcess, upstream: HttpUpstream
) -> None:
    with socket.create_connection(("127.0.0.1", tunnels["api"].address["port"]), 10) as sock:
        sock.sendall(
            b"GET /refused-socket HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\n"
            b"Upgrade: raw-echo\r\n\r\n"
        )
        head, body = read_answer(sock)
        assert head.startswith(b"HTTP/1.1 502")
        answer = json.loads(body)
        assert answer["protocol"] == "raw-echo" and "cannot mask" in answer["error"]
        sock.sendall(b"GET /users HTTP/1.1\r\nHost: x\r\n\r\n")  # same connection
        head, body = read_answer(sock)
        assert head.startswith(b"HTTP/1.1 200") and b"123-45-6789" not in body
    assert not [r for r in upstream.requests if r["path"] == "/refused-socket"]
    record = wait_for(broker, "http.response", lambda p: p["path"] == "/refused-socket")
    assert record["status"] == 502 and record["by"] == "broker"
    assert record["upgrade_refused"] == "raw-echo"


def test_a_target_without_masks_relays_a_raw_upgrade_with_the_api_key_replaced(
    tunnels: dict[str, Tunnel], broker: BrokerProcess
) -> None:
    """The upstream echoes the request's headers after its 101, the injected `X-Api-Key`
    cut in two writes: the client gets `*` in its place, and the trail counts it."""
    with raw_upgrade(tunnels["keyed"].address["port"], "/upgrade-headers") as sock:
        sock.sendall(b"end\n")  # echoed after the headers
        got = b""
        while not got.endswith(b"end\n"):
            more = sock.recv(4096)
            assert more, got
            got += more
    assert API_KEY.encode() not in got
    assert b"X-Api-Key: " + b"*" * len(API_KEY) + b"\r\n" in got
    ended = wait_for(broker, "http.upgrade.end", lambda p: p["path"] == "/upgrade-headers")
    assert ended["masked"] == {"BROKER_SECRET": 1} and API_KEY not in json.dumps(ended)


def test_connect_is_refused_on_every_target_and_never_reaches_the_upstream(
    tunnels: dict[str, Tunnel], broker: BrokerProcess, upstream: HttpUpstream
) -> None:
    """CONNECT asks the upstream to open a tunnel to another host: through a reverse proxy
    that injects credentials it would be a way around the rules and the masks. Its
    authority-form target is not a path, so no rule can fit it; the broker answers itself."""
    for name in ("api", "keyed"):
        port = tunnels[name].address["port"]
        with socket.create_connection(("127.0.0.1", port), 10) as sock:
            sock.sendall(
                b"CONNECT elsewhere.example:443 HTTP/1.1\r\nHost: elsewhere.example\r\n\r\n"
            )
            head, body = read_answer(sock)
            assert head.startswith(b"HTTP/1.1 400"), head
            answer = json.loads(body)
            assert answer["method"] == "CONNECT" and "origin-form" in answer["message"]
        record = wait_for(broker, "http.response", lambda p: p["method"] == "CONNECT")
        assert record["status"] == 400 and record["by"] == "broker"
        assert record["decision"] == "deny" and record["rule"] == "path"
    assert not [r for r in upstream.requests if r["method"] == "CONNECT"]
    assert not [r for r in upstream.requests if "elsewhere" in r["path"]]


def test_a_half_closed_raw_upgrade_still_gets_the_upstreams_last_bytes(
    tunnels: dict[str, Tunnel], broker: BrokerProcess
) -> None:
    """`shutdown(SHUT_WR)` after the 101 travels as an end of data through `jitctl connect`
    and the broker to the upstream, which then sends `bye ` and the injected API key, cut in
    two writes, and closes: the client reads all of it, the key replaced, up to the close."""
    with raw_upgrade(tunnels["keyed"].address["port"], "/upgrade-after-eof") as sock:
        sock.sendall(b"ping")
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while more := sock.recv(4096):
            got += more
    assert got == b"ping" + b"bye " + b"*" * len(API_KEY)
    ended = wait_for(broker, "http.upgrade.end", lambda p: p["path"] == "/upgrade-after-eof")
    assert ended["masked"] == {"BROKER_SECRET": 1} and ended["upstream_bytes"] == len(got)


def test_a_tunnel_closed_after_a_half_close_ends_the_relay(broker: BrokerProcess) -> None:
    """After the client's end of data the upstream stays silent (for 30 s). Then `jitctl
    connect` stops, which closes the tunnel: the broker ends the relay and records its end
    without waiting for the upstream. (A local client that closes its socket after a
    half-close cannot be told apart from one still reading until a write fails: TCP.)"""
    with broker.tunnel("keyed") as tunnel:
        sock = raw_upgrade(tunnel.port, "/upgrade-linger")
        sock.sendall(b"ping")
        sock.shutdown(socket.SHUT_WR)
        got = b""
        while got != b"ping":
            more = sock.recv(4096)
            assert more, got
            got += more
    sock.close()
    ended = wait_for(broker, "http.upgrade.end", lambda p: p["path"] == "/upgrade-linger")
    assert ended["client_bytes"] == 4 and ended["upstream_bytes"] == 4

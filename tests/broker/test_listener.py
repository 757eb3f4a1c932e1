"""The broker's one TLS listener (jitctl.broker.server), in process, on asyncio's loop and on
uvloop: what each kind of client gets, time limits, and what a tunnel's `Link` hears (bytes,
EOF, a reset, flow control) once the listener has handed the connection over.

The clients are plain blocking sockets in a thread, so only the listener runs on the loop
under test.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import ssl
import struct
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from jitctl import eventloop
from jitctl.broker.server import BrokerServer
from jitctl.broker.tlsfiles import client_context, ensure_tls_files, server_context
from jitctl.gateway.frames import MAGIC
from jitctl.gateway.link import Link

try:
    import uvloop  # noqa: F401

    LOOPS = ["asyncio", "uvloop"]
except ImportError:
    LOOPS = ["asyncio", pytest.param("uvloop", marks=pytest.mark.skip("uvloop not installed"))]

pytestmark = pytest.mark.parametrize("loop", LOOPS)


@pytest.fixture(autouse=True)
def _loop_from_the_test_not_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(eventloop.ENV, raising=False)  # it would override the parameter


async def _app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The smallest ASGI app: 200 `ok` to everything."""
    if scope["type"] != "http":
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


@dataclass
class Tunnels:
    """What the tunnel handler saw: each Link's first line, bytes and end."""

    lines: list[bytes] = field(default_factory=list)
    data: bytearray = field(default_factory=bytearray)
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    end: list[Exception | None] = field(default_factory=list)
    behaviour: Callable[[Link], Awaitable[None]] | None = None

    async def handle(self, link: Link) -> None:
        try:
            self.lines.append(await link.readline(timeout=5))
            if self.behaviour is not None:
                await self.behaviour(link)
                return

            def on_end(exc: Exception | None) -> None:
                self.end.append(exc)
                self.ended.set()

            link.divert(self.data.extend, on_end)
            await self.ended.wait()
        finally:
            await link.closed(timeout=1)


class Client:
    """Blocking sockets to the listener, run in a thread."""

    def __init__(self, port: int, ca: Path) -> None:
        self.port = port
        self.context = client_context(ca)

    def plain(self, rcvbuf: int = 0) -> socket.socket:
        sock = socket.socket()
        sock.settimeout(5)
        if rcvbuf:  # before connecting, so the window stays small
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.connect(("127.0.0.1", self.port))
        return sock

    def tls(self, rcvbuf: int = 0) -> ssl.SSLSocket:
        return self.context.wrap_socket(self.plain(rcvbuf), server_hostname="127.0.0.1")

    @staticmethod
    def read_all(sock: socket.socket) -> bytes:
        """Everything until EOF; a reset counts as the end too."""
        out = b""
        with contextlib.suppress(ConnectionResetError, ssl.SSLEOFError):
            while chunk := sock.recv(65536):
                out += chunk
        return out

    def https_get(self) -> bytes:
        with self.tls() as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return self.read_all(sock)


def run_listener(
    loop: str,
    tmp_path: Path,
    client: Callable[[Client, Tunnels], Any],
    *,
    tunnels: Tunnels | None = None,
    first_byte_timeout: float = 30.0,
    handshake_timeout: float = 10.0,
) -> tuple[Any, Tunnels]:
    """Serve on `loop` while `client(Client, Tunnels)` runs in a thread; its result."""
    ca, cert, key = ensure_tls_files(tmp_path, ["127.0.0.1"])

    async def main() -> tuple[Any, Tunnels]:
        assert eventloop.name(asyncio.get_running_loop()) == loop
        seen = tunnels or Tunnels()
        server = BrokerServer(server_context(cert, key), seen.handle)
        server.first_byte_timeout = first_byte_timeout
        server.handshake_timeout = handshake_timeout
        port = server.bind("127.0.0.1", 0)
        server.set_app(_app)
        stop = asyncio.Event()
        serving = asyncio.ensure_future(server.serve(stop))
        try:
            result = await asyncio.to_thread(client, Client(port, ca), seen)
            # Whatever went before, the listener still serves.
            assert (await asyncio.to_thread(Client(port, ca).https_get)).endswith(b"ok")
            return result, seen
        finally:
            stop.set()
            await serving
            await server.shutdown(1)

    return eventloop.run(main(), loop)


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset, as a crashed client's kernel does."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# -- what each kind of client gets ----------------------------------------------------------


def test_https_reaches_the_api(loop: str, tmp_path: Path) -> None:
    reply, _ = run_listener(loop, tmp_path, lambda c, t: c.https_get())
    assert reply.startswith(b"HTTP/1.1 200") and reply.endswith(b"ok")


def test_plain_http_on_the_tls_port_gets_a_readable_400(loop: str, tmp_path: Path) -> None:
    def client(c: Client, t: Tunnels) -> bytes:
        with c.plain() as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            return c.read_all(sock)

    reply, _ = run_listener(loop, tmp_path, client)
    assert reply.startswith(b"HTTP/1.1 400") and b"speaks only HTTPS" in reply


def test_bytes_that_are_neither_tls_nor_http_are_closed(loop: str, tmp_path: Path) -> None:
    def client(c: Client, t: Tunnels) -> bytes:
        with c.plain() as sock:
            sock.sendall(b"\x00\x01\x02\x03")
            return c.read_all(sock)

    reply, _ = run_listener(loop, tmp_path, client)
    assert reply == b""


def test_a_tls_record_header_followed_by_garbage_fails_the_handshake_only(
    loop: str, tmp_path: Path
) -> None:
    def client(c: Client, t: Tunnels) -> bytes:
        with c.plain() as sock:
            sock.sendall(b"\x16\x03\x01\x00\x20" + b"\xff" * 32)
            return c.read_all(sock)

    reply, _ = run_listener(loop, tmp_path, client)
    assert b"HTTP" not in reply  # a TLS alert at most, then the end


def test_garbage_after_the_handshake_goes_to_http_and_gets_400(loop: str, tmp_path: Path) -> None:
    def client(c: Client, t: Tunnels) -> bytes:
        with c.tls() as sock:
            sock.sendall(b"\x00\x01 not http at all\r\n\r\n")
            return c.read_all(sock)

    reply, _ = run_listener(loop, tmp_path, client)
    assert reply.startswith(b"HTTP/1.1 400")


def test_a_client_that_resets_during_the_handshake_leaves_the_listener_serving(
    loop: str, tmp_path: Path
) -> None:
    def client(c: Client, t: Tunnels) -> None:
        sock = c.plain()
        sock.sendall(b"\x16\x03\x01")  # the start of a ClientHello, then a reset
        _reset(sock)

    run_listener(loop, tmp_path, client)


# -- time limits ----------------------------------------------------------------------------


def test_a_connection_that_sends_nothing_is_closed(loop: str, tmp_path: Path) -> None:
    def client(c: Client, t: Tunnels) -> float:
        started = time.monotonic()
        with c.plain() as sock:
            assert c.read_all(sock) == b""
        return time.monotonic() - started

    waited, _ = run_listener(loop, tmp_path, client, first_byte_timeout=0.3)
    assert waited < 3


def test_a_handshake_that_stalls_is_closed(loop: str, tmp_path: Path) -> None:
    def client(c: Client, t: Tunnels) -> float:
        started = time.monotonic()
        with c.plain() as sock:
            sock.sendall(b"\x16")  # TLS, it says; then nothing more
            assert c.read_all(sock) == b""
        return time.monotonic() - started

    waited, _ = run_listener(loop, tmp_path, client, handshake_timeout=0.3)
    assert waited < 3


# -- tunnels: what the Link hears ---------------------------------------------------------


def test_tunnel_bytes_and_the_clients_close_reach_the_gateway_in_order(
    loop: str, tmp_path: Path
) -> None:
    payload = bytes(range(256)) * 2048

    def client(c: Client, t: Tunnels) -> None:
        with c.tls() as sock:
            for byte in MAGIC:  # the magic one byte per TLS record: still recognised
                sock.sendall(bytes([byte]))
            sock.sendall(b'{"op": "open"}\n' + payload)
            sock.unwrap()  # close_notify: the end of data, not an error

    _, seen = run_listener(loop, tmp_path, client)
    assert seen.lines == [b'{"op": "open"}\n']
    assert bytes(seen.data) == payload
    assert seen.end == [None]


def test_a_client_reset_mid_tunnel_ends_the_link_with_an_error(loop: str, tmp_path: Path) -> None:
    def client(c: Client, t: Tunnels) -> None:
        sock = c.tls()
        sock.sendall(MAGIC + b'{"op": "open"}\n' + b"x" * 1000)
        time.sleep(0.2)
        _reset(sock)
        deadline = time.monotonic() + 5
        while not t.end and time.monotonic() < deadline:
            time.sleep(0.02)

    _, seen = run_listener(loop, tmp_path, client)
    assert len(seen.end) == 1 and seen.end[0] is not None
    assert bytes(seen.data) == b"x" * 1000


def test_a_client_that_does_not_read_pauses_the_links_writer(loop: str, tmp_path: Path) -> None:
    """Flow control reaches the Link through the hand-over: pause_writing, then resume."""
    total = 8 << 20
    events: list[bool] = []

    async def flood(link: Link) -> None:
        link.on_writing_paused = events.append
        block, sent = b"d" * (256 << 10), 0
        while sent < total:
            link.write(block)
            sent += len(block)
            await link.drain()
        await link.closed(timeout=10)

    def client(c: Client, t: Tunnels) -> int:
        with c.tls(rcvbuf=64 << 10) as sock:
            sock.sendall(MAGIC + b'{"op": "open"}\n')
            time.sleep(0.5)  # read nothing: the broker must stop writing, not buffer it all
            assert events == [True]
            return len(c.read_all(sock))

    received, _ = run_listener(loop, tmp_path, client, tunnels=Tunnels(behaviour=flood))
    assert received == total
    assert events[:2] == [True, False]


def test_a_gateway_that_stops_reading_stalls_the_sending_client(loop: str, tmp_path: Path) -> None:
    """Link.pause_reading holds the client back (TCP pushes back); resume lets all through."""
    total = 16 << 20
    got = bytearray()
    held: list[int] = []

    async def slow(link: Link) -> None:
        done = asyncio.Event()
        link.divert(got.extend, lambda exc: done.set())
        link.pause_reading()
        await asyncio.sleep(0.8)
        held.append(len(got))
        link.resume_reading()
        await done.wait()

    def client(c: Client, t: Tunnels) -> None:
        with c.tls() as sock:
            sock.sendall(MAGIC + b'{"op": "open"}\n')
            sock.sendall(b"u" * total)
            sock.unwrap()

    run_listener(loop, tmp_path, client, tunnels=Tunnels(behaviour=slow))
    assert held and held[0] < total // 2, held  # what arrived while paused: little
    assert len(got) == total

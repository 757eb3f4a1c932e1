"""One TLS listener for the API and the tunnel gateway.

Why not plain uvicorn: the broker answers nothing but TLS, and a plain-HTTP request must get a
clear refusal rather than a reset or a hang; and the tunnel gateway shares the port with the
API (DESIGN.md §4 `broker.listen`). So the listener:

1. accepts a TCP connection and peeks (MSG_PEEK) at its first byte without consuming it;
2. not 0x16 (a TLS handshake record): answers a plain-text HTTP 400 saying "use https" and
   closes (anything else that is not TLS is just closed);
3. TLS: wraps the socket (`connect_accepted_socket(ssl=...)`) and peeks at the first decrypted
   bytes: the tunnel magic `JITCTL-TUNNEL/1` goes to the gateway as a `Link` (the gateway's
   protocol, jitctl.gateway.link), anything else goes to uvicorn's h11 protocol driving the
   ASGI app.

The hand-over is `transport.set_protocol()` on the TLS transport, which asyncio's and uvloop's
TLS transports both implement (jitctl.eventloop picks the loop). Time limits: a connection that
sends nothing is closed after `first_byte_timeout`, a TLS handshake that does not finish after
`handshake_timeout`; after that the preamble (gateway) and uvicorn have their own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, cast

log = logging.getLogger("jitctl.broker.server")

TUNNEL_MAGIC = b"JITCTL-TUNNEL/1\n"
PLAIN_HTTP_REFUSAL = (
    b"HTTP/1.1 400 Bad Request\r\n"
    b"Content-Type: text/plain; charset=utf-8\r\n"
    b"Connection: close\r\n"
    b"Content-Length: %d\r\n\r\n%s"
)
REFUSAL_TEXT = b"This is a jitctl broker. It speaks only HTTPS (TLS): use https:// in the URL.\n"

TunnelHandler = Callable[[Any], Awaitable[None]]  # given a jitctl.gateway.link.Link


class _Sniffer(asyncio.Protocol):
    """Reads the first decrypted bytes and hands the connection to HTTP or the gateway."""

    def __init__(self, server: BrokerServer) -> None:
        self._server = server
        self._buffer = b""
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it:
        # no isinstance check here (jitctl.eventloop).
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._buffer += data
        prefix = self._buffer[: len(TUNNEL_MAGIC)]
        if prefix == TUNNEL_MAGIC:
            self._server._start_tunnel(self._transport, self._buffer[len(TUNNEL_MAGIC) :])
        elif not TUNNEL_MAGIC.startswith(prefix):
            self._server._start_http(self._transport, self._buffer)
        # else: a prefix of the magic; wait for more bytes

    def connection_lost(self, exc: Exception | None) -> None:
        pass


class BrokerServer:
    def __init__(
        self, ssl_context: ssl.SSLContext, tunnel_handler: TunnelHandler | None = None
    ) -> None:
        from uvicorn.server import ServerState

        self._ssl = ssl_context
        self._tunnel_handler = tunnel_handler
        self._uv_config: Any = None
        self._server_state = ServerState()
        self._sock: socket.socket | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0
        self.first_byte_timeout = 30.0
        self.handshake_timeout = 10.0

    def bind(self, host: str, port: int) -> int:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(512)
        sock.setblocking(False)
        self._sock = sock
        self.port = sock.getsockname()[1]
        return self.port

    def set_app(self, app: Any) -> None:
        """The ASGI app; set after bind() because the app may need the bound port."""
        import uvicorn

        config = uvicorn.Config(
            app, lifespan="off", log_config=None, access_log=False, proxy_headers=False
        )
        config.load()
        self._uv_config = config

    async def serve(self, stop: asyncio.Event) -> None:
        assert self._sock is not None and self._uv_config is not None, "bind() and set_app() first"
        loop = asyncio.get_running_loop()
        accept = asyncio.ensure_future(self._accept_loop(loop))
        await stop.wait()
        accept.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await accept
        self._sock.close()

    async def shutdown(self, grace: float) -> None:
        """Finish in-flight HTTP requests, then cancel what is left."""
        for connection in list(self._server_state.connections):
            connection.shutdown()
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _accept_loop(self, loop: asyncio.AbstractEventLoop) -> None:
        assert self._sock is not None
        while True:
            try:
                conn, _ = await loop.sock_accept(self._sock)
            except OSError as exc:  # EMFILE and friends: log, breathe, go on
                log.warning("accept failed", extra={"event": "accept.error", "error": str(exc)})
                await asyncio.sleep(0.1)
                continue
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._spawn(self._handle(loop, conn))

    async def _peek(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> bytes:
        readable: asyncio.Future[None] = loop.create_future()

        def ready() -> None:
            if not readable.done():
                readable.set_result(None)

        loop.add_reader(conn.fileno(), ready)
        try:
            await asyncio.wait_for(readable, timeout=self.first_byte_timeout)
        finally:
            loop.remove_reader(conn.fileno())
        return conn.recv(16, socket.MSG_PEEK)

    async def _handle(self, loop: asyncio.AbstractEventLoop, conn: socket.socket) -> None:
        try:
            first = await self._peek(loop, conn)
        except (TimeoutError, OSError):
            conn.close()
            return
        if not first or first[0] != 0x16:
            await self._refuse_plain(loop, conn, first)
            return
        try:
            await loop.connect_accepted_socket(
                lambda: _Sniffer(self),
                conn,
                ssl=self._ssl,
                ssl_handshake_timeout=self.handshake_timeout,
            )
        except (OSError, ssl.SSLError, TimeoutError) as exc:
            log.info("tls handshake failed", extra={"event": "tls.error", "error": str(exc)})
            conn.close()

    async def _refuse_plain(
        self, loop: asyncio.AbstractEventLoop, conn: socket.socket, first: bytes
    ) -> None:
        if first[:1].isalpha():  # looks like an HTTP request line
            with contextlib.suppress(OSError):
                await loop.sock_sendall(
                    conn, PLAIN_HTTP_REFUSAL % (len(REFUSAL_TEXT), REFUSAL_TEXT)
                )
                conn.shutdown(socket.SHUT_WR)
            log.info("plain http refused", extra={"event": "tls.required"})
        conn.close()

    def _start_http(self, transport: asyncio.Transport, buffered: bytes) -> None:
        from uvicorn.protocols.http.h11_impl import H11Protocol

        protocol = H11Protocol(self._uv_config, self._server_state, app_state={})
        transport.set_protocol(protocol)
        protocol.connection_made(transport)
        protocol.data_received(buffered)

    def _start_tunnel(self, transport: asyncio.Transport, buffered: bytes) -> None:
        if self._tunnel_handler is None:
            transport.write(b'{"error": "tunnels are not enabled on this broker"}\n')
            transport.close()
            return
        from jitctl.gateway.link import Link

        link = Link()
        transport.set_protocol(link)
        link.connection_made(transport)
        if buffered:
            link.data_received(buffered)
        self._spawn(self._tunnel_handler(link))

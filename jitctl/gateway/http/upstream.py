"""The upstream leg of the http shell: where the target is, and one connection to it.

A connection carries one request at a time (no pipelining upstream): `send_request` and
`send_data` queue bytes that `flush` writes, `next_event` reads the response
(`readers.ResponseReader`). A connection is used again only while `ready`: new, or its last
response ended cleanly with keep-alive.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from jitctl.errors import ConfigError
from jitctl.gateway.http import writers
from jitctl.gateway.http.events import NEED_DATA, Event, Framing, Headers
from jitctl.gateway.http.readers import ResponseReader
from jitctl.plugin import per_target

READ_SIZE = 256 * 1024


@dataclass(frozen=True)
class Upstream:
    scheme: str
    host: str
    port: int
    prefix: str  # a path the target's URL names, prepended to every request's path
    context: ssl.SSLContext | None = None  # https: the target's (`http.tls_*`); for_target sets it

    @classmethod
    def parse(cls, address: str) -> Upstream:
        if "://" not in address:
            address = f"http://{address}"
        parts = urlsplit(address)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname or "", port, parts.path.rstrip("/"))

    @classmethod
    def for_target(cls, target: Any) -> Upstream:
        """`target`'s upstream, with its TLS context for https (built once per target object).
        Raises ConfigError for TLS files that do not load, or set for a plain http URL."""
        return _for_target(target)

    @property
    def host_header(self) -> bytes:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (host if self.port == default else f"{host}:{self.port}").encode()


@per_target
def _for_target(target: Any) -> Upstream:
    upstream = Upstream.parse(target.address)
    options = target.http
    if upstream.scheme == "https":
        from jitctl.broker.tlsfiles import upstream_context

        context = upstream_context(
            "http.tls_* files",
            ca_file=options.tls_ca_file,
            cert_file=options.tls_cert_file,
            key_file=options.tls_key_file,
        )
        return dataclasses.replace(upstream, context=context)
    if options.tls_ca_file or options.tls_cert_file:
        raise ConfigError(
            f"http.tls_* files are set but the address {target.address} is not https://",
            "use an https:// address, or drop the tls_* keys",
        )
    return upstream


class UpstreamConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.responses = ResponseReader()
        self.pending: list[bytes] = []
        self.used = False
        self._body = Framing.NONE

    @classmethod
    async def open(cls, upstream: Upstream) -> UpstreamConnection:
        context = upstream.context
        if upstream.scheme == "https" and context is None:  # never plain TCP to an https URL
            raise OSError("no TLS context for an https upstream (Upstream.for_target makes it)")
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                upstream.host,
                upstream.port,
                ssl=context,
                server_hostname=upstream.host if context else None,
                limit=READ_SIZE,
            ),
            timeout=10,
        )
        return cls(reader, writer)

    def tls_details(self) -> dict[str, Any]:
        """`session.start`'s `upstream_tls` for an https upstream (always verified, so the mode
        is Postgres's "verify-full"), nothing for plain http."""
        tls = self.writer.get_extra_info("ssl_object")
        if tls is None:
            return {}
        return {"upstream_tls": {"mode": "verify-full", "version": tls.version()}}

    def send_request(self, method: bytes, target: bytes, fields: Headers, body: Framing) -> None:
        """Queue a request's head; its body follows framed as `body` (the client's framing)."""
        self.used = True
        self.responses.expect(method)
        self._body = body
        self.pending.append(writers.request_head(method, target, fields))

    def send_data(self, data: bytes) -> None:
        if data:
            self.pending.append(writers.chunk(data) if self._body is Framing.CHUNKED else data)

    def end_request(self) -> None:
        if self._body is Framing.CHUNKED:
            self.pending.append(writers.LAST_CHUNK)

    async def flush(self) -> None:
        if self.pending:
            self.writer.write(b"".join(self.pending))
            self.pending.clear()
        await self.writer.drain()

    async def next_event(self, idle: Callable[[], Awaitable[None]] | None = None) -> Event:
        """The upstream's next event; `idle` runs before the connection waits for bytes (the
        shell writes what it holds for the client then, not once per event)."""
        while True:
            event = self.responses.next_event()
            if event is not NEED_DATA:
                return event
            if idle is not None:
                await idle()
            self.responses.receive_data(await self.reader.read(READ_SIZE))

    @property
    def ready(self) -> bool:
        """The connection can carry the next request."""
        return not self.used or self.responses.reusable

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Refusal(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error", ""))
        self.status, self.body = status, body

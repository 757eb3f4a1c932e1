"""The upstream leg of the http shell: where the target is, and one h11 client connection."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import h11

READ_SIZE = 256 * 1024


@dataclass(frozen=True)
class Upstream:
    scheme: str
    host: str
    port: int
    prefix: str  # a path the target's URL names, prepended to every request's path

    @classmethod
    def parse(cls, address: str) -> Upstream:
        if "://" not in address:
            address = f"http://{address}"
        parts = urlsplit(address)
        port = parts.port or (443 if parts.scheme == "https" else 80)
        return cls(parts.scheme, parts.hostname or "", port, parts.path.rstrip("/"))

    @property
    def host_header(self) -> bytes:
        default = 443 if self.scheme == "https" else 80
        host = f"[{self.host}]" if ":" in self.host else self.host
        return (host if self.port == default else f"{host}:{self.port}").encode()


class UpstreamConnection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.h11 = h11.Connection(h11.CLIENT)
        self.pending: list[bytes] = []

    @classmethod
    async def open(cls, upstream: Upstream) -> UpstreamConnection:
        context = ssl.create_default_context() if upstream.scheme == "https" else None
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

    def send(self, event: Any) -> None:
        """Queue `event` for the upstream; `flush` writes what is queued."""
        data = self.h11.send(event)
        if data:
            self.pending.append(data)

    async def flush(self) -> None:
        if self.pending:
            self.writer.write(b"".join(self.pending))
            self.pending.clear()
        await self.writer.drain()

    async def next_event(self, idle: Callable[[], Awaitable[None]] | None = None) -> Any:
        """The upstream's next h11 event; `idle` runs before the connection waits for bytes
        (the shell writes what it holds for the client then, not once per event)."""
        while True:
            event = self.h11.next_event()
            if event is not h11.NEED_DATA:
                return event
            if idle is not None:
                await idle()
            self.h11.receive_data(await self.reader.read(READ_SIZE))

    @property
    def reusable(self) -> bool:
        return self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.writer.close()


class Refusal(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body.get("error", ""))
        self.status, self.body = status, body

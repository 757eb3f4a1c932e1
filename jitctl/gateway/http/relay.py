"""Upgraded connections (WebSocket): after a 101 both legs are raw byte streams.

`upgraded` answers the client with the upstream's 101 (its `Upgrade` field kept: RFC 9110
§7.8), then `relay` pumps both legs until either side closes, starting with the bytes each
parser had already read past the heads. The first `limit` bytes of each direction are kept
for the trail (frames are not decoded), the rest counted; `http.upgrade.end` records them.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import jitctl_http.bodies as bodies
import jitctl_http.headers as headers

from jitctl.gateway.http.client import ClientConnection
from jitctl.gateway.http.events import Framing, Response
from jitctl.gateway.http.trail import Exchange, Trail
from jitctl.gateway.http.upstream import READ_SIZE, UpstreamConnection


async def upgraded(
    client: ClientConnection,
    up: UpstreamConnection,
    response: Response,
    trail: Trail,
    exchange: Exchange,
    limit: int,
) -> None:
    """The upstream accepted the client's upgrade: answer, relay, record."""
    fields = response.headers
    upgrade = [(b"upgrade", headers.header(fields, b"upgrade")), (b"connection", b"upgrade")]
    client.respond(101, response.reason, headers.to_client(fields) + upgrade, Framing.NONE)
    await client.flush()
    trail.response(exchange, 101, response_headers=trail.rules.for_record(fields))
    client_rest = client.reader.trailing or b""
    up_rest = up.responses.trailing or b""
    sent, received = await relay(client.io, up, client_rest, up_rest, limit)
    trail.upgrade_ended(exchange, sent, received)


async def relay(
    io: Any, up: UpstreamConnection, client_rest: bytes, up_rest: bytes, limit: int
) -> tuple[bodies.Capture, bodies.Capture]:
    """Bytes client -> upstream and back; (what the client sent, what the upstream sent)."""
    sent = bodies.Capture(limit)
    received = bodies.Capture(limit)

    async def client_to_up() -> None:
        data = client_rest
        while True:
            if data:
                sent.feed(data)
                up.writer.write(data)
                await up.writer.drain()
            data = await io.read()
            if not data:
                break
        with contextlib.suppress(OSError):
            up.writer.write_eof()

    async def up_to_client() -> None:
        data = up_rest
        while True:
            if data:
                received.feed(data)
                await io.write(data)
            data = await up.reader.read(READ_SIZE)
            if not data:
                return

    tasks = [asyncio.ensure_future(client_to_up()), asyncio.ensure_future(up_to_client())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return sent, received

"""Upgraded connections (WebSocket): after a 101 both legs are raw byte streams.

`relay` pumps them both ways until either side closes, keeping the first `limit` bytes of each
direction for the trail (frames are not decoded) and counting the rest.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import jitctl_http.bodies as bodies

from jitctl.gateway.http.upstream import READ_SIZE, UpstreamConnection


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

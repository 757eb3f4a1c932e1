"""Upgraded connections: after a 101 both legs are byte streams, relayed as they come.

`upgraded` answers the client with the upstream's 101 (its `Upgrade` field kept: RFC 9110
§7.8), then relays both legs until either side closes, starting with the bytes each parser had
already read past the heads.

- WebSocket (`Upgrade: websocket`): each direction's bytes go through a frame reader
  (`jitctl_http.websocket.Tap`) on their way, unchanged; except when the target masks or the
  broker injected a secret: then the upstream's go through a `jitctl_http.reframe.Reframer`,
  which masks its text messages (a text message over `mask_limit` closes the client's side
  with 1009 and ends the connection). Every message is recorded (`http.ws.message`, its first
  `limit` bytes, as the client got it); one from the client is durable before the bytes that
  end it go upstream (write-ahead, as for requests), one from the upstream rides the next
  commit. Bytes that break RFC 6455 (the gateway removed the extension offer, so frames must
  not be compressed) end the connection without being forwarded, and `http.upgrade.end` says
  which side sent them (fail closed).
- Any other upgrade (only on a target without masks: the proxy refuses it on one with
  masks): relayed raw, except that the broker's secrets are replaced in the upstream's bytes
  (`bodies.Scrub`, as in a streamed response body: a read's end that could start a secret
  waits for the next read, or the upstream's end) and counted (`masked`, BROKER_SECRET).
  The first `limit` bytes of each direction, as forwarded, are kept for the trail, the rest
  counted.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any

import jitctl_http.bodies as bodies
import jitctl_http.headers as headers
from jitctl.gateway.http.client import ClientConnection
from jitctl.gateway.http.events import Framing, Response
from jitctl.gateway.http.trail import Exchange, Trail
from jitctl.gateway.http.upstream import READ_SIZE, UpstreamConnection
from jitctl_http.reframe import Reframer, Refused
from jitctl_http.websocket import WS_CLIENT, WS_UPSTREAM, Message, Tap, WebSocketError


async def upgraded(
    client: ClientConnection,
    up: UpstreamConnection,
    response: Response,
    trail: Trail,
    exchange: Exchange,
    limit: int,
    *,
    scrub: bodies.Scrub,
    mask_limit: int,
) -> None:
    """The upstream accepted the client's upgrade: answer, relay, record. `limit`: the bytes
    of each message recorded; `scrub` and `mask_limit`: what a WebSocket masks with."""
    fields = response.headers
    upgrade = [(b"upgrade", headers.header(fields, b"upgrade")), (b"connection", b"upgrade")]
    client.respond(101, response.reason, headers.to_client(fields) + upgrade, Framing.NONE)
    await client.flush()
    trail.response(exchange, 101, response_headers=trail.rules.for_record(fields))
    client_rest = client.reader.trailing or b""
    up_rest = up.responses.trailing or b""
    if headers.header(fields, b"upgrade").lower() == b"websocket":
        reframer = None
        if trail.masks is not None or scrub.secrets:
            reframer = Reframer(
                limit=mask_limit,
                record_limit=limit,
                masks=trail.masks,
                fields=trail.fields,
                scrub=scrub,
            )
        ws = WebSocketRelay(client.io, up, trail, exchange, limit, reframer)
        await ws.run(client_rest, up_rest)
        trail.websocket_ended(exchange, (ws.sent, ws.received), ws.taps, ws.error)
        return
    scrub = scrub.fresh()
    sent, received = await relay(client.io, up, client_rest, up_rest, limit, scrub)
    trail.upgrade_ended(exchange, sent, received, scrub.found)


class WebSocketRelay:
    """Both legs of a WebSocket, each through its `Tap` (module docstring)."""

    def __init__(
        self,
        io: Any,
        up: UpstreamConnection,
        trail: Trail,
        exchange: Exchange,
        limit: int,
        reframer: Reframer | None = None,
    ) -> None:
        self.io, self.up, self.trail, self.exchange = io, up, trail, exchange
        self.reframer = reframer  # None: the upstream's bytes pass unchanged (the fast path)
        self.client_tap = Tap(WS_CLIENT, limit)
        # Re-framed, the upstream's bytes are read by the reframer's own tap.
        self.upstream_tap: Tap | None = None
        upstream: Tap | Reframer
        if reframer is None:
            self.upstream_tap = upstream = Tap(WS_UPSTREAM, limit)
        else:
            upstream = reframer
        self.taps: dict[str, Tap | Reframer] = {WS_CLIENT: self.client_tap, WS_UPSTREAM: upstream}
        self.sent = self.received = 0  # bytes each way
        self.error = ""  # what broke RFC 6455, and who sent it

    async def run(self, client_rest: bytes, up_rest: bytes) -> None:
        await until_either_ends(self._client_to_up(client_rest), self._up_to_client(up_rest))

    def _read(self, tap: Tap, data: bytes) -> list[Message] | None:
        """The messages `data` completes; None when it breaks the protocol."""
        sender = tap.sender
        try:
            done = tap.feed(data)
        except WebSocketError as exc:
            self.error = f"{sender}: {exc}"
            return None
        return [item for item in done if type(item) is Message]

    async def _client_to_up(self, data: bytes) -> None:
        up = self.up
        while True:
            if data:
                messages = self._read(self.client_tap, data)
                if messages is None:
                    return
                waits = [self.trail.ws_message(self.exchange, WS_CLIENT, m) for m in messages]
                for wait in waits:  # on record before the bytes that end them go upstream
                    await wait
                self.sent += len(data)
                up.writer.write(data)
                await up.writer.drain()
            data = await self.io.read()
            if not data:
                break
        with contextlib.suppress(OSError):
            up.writer.write_eof()

    def _reframe(self, reframer: Reframer, data: bytes) -> tuple[bytes, bool] | None:
        """What goes to the client for `data`, and whether the connection ends after it
        (a message refused); None when `data` breaks the protocol."""
        try:
            out, done = reframer.feed(data)
        except WebSocketError as exc:
            self.error = f"{WS_UPSTREAM}: {exc}"
            return None
        refused = False
        for item in done:
            if type(item) is Message:
                self.trail.ws_message(self.exchange, WS_UPSTREAM, item)
            elif type(item) is Refused:
                self.error, refused = f"{WS_UPSTREAM}: {item.reason}", True
        return out, refused

    async def _up_to_client(self, data: bytes) -> None:
        reframer = self.reframer
        while True:
            if data:
                refused = False
                if reframer is None:
                    assert self.upstream_tap is not None
                    messages = self._read(self.upstream_tap, data)
                    if messages is None:
                        return
                    for message in messages:
                        self.trail.ws_message(self.exchange, WS_UPSTREAM, message)
                    out = data
                else:
                    reframed = self._reframe(reframer, data)
                    if reframed is None:
                        return
                    out, refused = reframed
                self.received += len(data)
                if out:
                    await self.io.write(out)
                if refused:
                    return
            data = await self.up.reader.read(READ_SIZE)
            if not data:
                if reframer is not None:  # what it held back waiting for more comes out now
                    out, done = reframer.flush()
                    for item in done:
                        if type(item) is Message:
                            self.trail.ws_message(self.exchange, WS_UPSTREAM, item)
                    if out:
                        await self.io.write(out)
                return


async def relay(
    io: Any,
    up: UpstreamConnection,
    client_rest: bytes,
    up_rest: bytes,
    limit: int,
    scrub: bodies.Scrub,
) -> tuple[bodies.Capture, bodies.Capture]:
    """Bytes client -> upstream and back, the upstream's scrubbed of the broker's secrets;
    (what the client sent, what the client got). A client that ends its sending side (a
    half-close: `io.half_closed`) still gets what the upstream sends until the upstream
    ends, as through a `tcp` target; a client that went away whole (then or later:
    `io.gone`) ends the relay."""
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
        if io.half_closed:  # the client still reads: this leg stays up
            await io.gone()  # until the upstream's ends, or the client leaves whole

    async def up_to_client() -> None:
        data = up_rest
        while True:
            if data:
                data = scrub.feed(data)
                if data:
                    received.feed(data)
                    await io.write(data)
            data = await up.reader.read(READ_SIZE)
            if not data:
                rest = scrub.flush()  # the upstream is done: nothing more can complete a secret
                if rest:
                    received.feed(rest)
                    await io.write(rest)
                return

    await until_either_ends(client_to_up(), up_to_client())
    return sent, received


async def until_either_ends(*legs: Coroutine[Any, Any, None]) -> None:
    """Run the legs of a relay until one ends (a side closed, or broke the protocol); then
    the other is cancelled: an upgraded connection ends as a whole."""
    tasks = [asyncio.ensure_future(leg) for leg in legs]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

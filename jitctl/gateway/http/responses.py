"""The upstream's answer on its way to the client (step 4 in jitctl.gateway.http).

- `stream`: the head goes out as the upstream sent it, hop-by-hop fields dropped and framing
  redone for this client (`writers.for_client`); the body follows as it is read. Whatever the
  shell holds for the client is written whenever it waits for the upstream, so a stream of
  small events (server-sent events, a long poll) is not held back.
- `masked`: a body the target masks is read whole, up to `mask_limit` (beyond it: 502, fail
  closed), masked, and sent with its new `Content-Length`.

Both scrub the broker's own secrets from the body (`jitctl_http.bodies.Scrub`: a chunk's end
is held back only when a secret could start in it) and keep what the trail records of it in
`received`.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import jitctl_http.bodies as bodies
import jitctl_http.headers as headers
from jitctl.gateway.http.client import ClientConnection
from jitctl.gateway.http.events import END, Data, Framing, RemoteProtocolError, Response
from jitctl.gateway.http.upstream import Refusal, UpstreamConnection


async def stream(
    client: ClientConnection,
    up: UpstreamConnection,
    response: Response,
    scrub: bodies.Scrub,
    received: bodies.Capture,
    close: bool,
) -> None:
    """Relay `response` as it arrives; `close`: the client's connection ends after it."""
    fields = headers.to_client(response.headers)
    client.respond(response.status_code, response.reason, fields, response.framing, close)
    while True:
        event = await up.next_event(idle=client.flush)
        if type(event) is Data:
            data = scrub.feed(event.data)
            if data:
                received.feed(data)
                await client.send(data)
        elif event is END:
            data = scrub.flush()
            if data:
                received.feed(data)
                await client.send(data)
            await client.end()
            return
        else:
            raise RemoteProtocolError(f"unexpected {event!r}")


async def masked(
    client: ClientConnection,
    up: UpstreamConnection,
    response: Response,
    scrub: bodies.Scrub,
    received: bodies.Capture,
    close: bool,
    *,
    masks: Any,
    fields: set[str],
    limit: int,
) -> Counter[str]:
    """Read `response` whole, mask it, send it; what was masked. `masks`: the target's
    MaskPolicy; `fields`: the JSON field names it masks; `limit`: the target's mask_limit."""
    chunks: list[bytes] = []
    size = 0
    while True:
        event = await up.next_event()
        if type(event) is Data:
            chunks.append(event.data)
            size += len(event.data)
            if size > limit:
                error = (
                    f"the response is larger than this target's mask_limit ({limit} bytes), "
                    "so it cannot be masked"
                )
                raise Refusal(502, {"error": error})
        elif event is END:
            break
        else:
            raise RemoteProtocolError(f"unexpected {event!r}")
    content_type = headers.header(response.headers, b"content-type")
    whole = scrub.feed(b"".join(chunks)) + scrub.flush()
    counts: Counter[str]  # jitctl_http is Any to mypy here: say what it returns
    body, counts = bodies.mask_body(whole, content_type, masks, fields)
    received.feed(body)
    to_client = headers.to_client(response.headers, reframe=True)
    to_client.append((b"content-length", b"%d" % len(body)))
    client.respond(response.status_code, response.reason, to_client, Framing.LENGTH, close)
    await client.send(body)
    await client.end()
    return counts

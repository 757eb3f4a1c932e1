"""The client's leg of the http shell: requests in, responses out, over the tunnel (`io`).

- Requests are parsed by `readers.RequestReader`; the tunnel is read only when no event is
  left, so pipelined requests wait their turn and memory stays bounded.
- `Expect: 100-continue` (RFC 9110 §10.1.1) is answered when the shell first waits for the
  request's body, unless its final answer went out before.
- Bytes for the client are held until the shell is about to wait for I/O (or past
  FLUSH_SIZE): a response whose head and body arrived in one read leaves in one write (one
  tunnel frame), and a stream still leaves as it arrives.
- Responses are framed by `writers.for_client`. Once one ended, `reusable` says whether the
  next request may follow on this connection: the request was read to its end and neither
  it nor the shell asked to close.
"""

from __future__ import annotations

import json
from http import HTTPStatus
from typing import Any

from jitctl.gateway.http import writers
from jitctl.gateway.http.events import (
    END,
    NEED_DATA,
    Data,
    Event,
    Framing,
    Headers,
    RemoteProtocolError,
    Request,
)
from jitctl.gateway.http.readers import RequestReader

FLUSH_SIZE = 64 * 1024  # bytes for the client held back at most while more is already here


class ClientConnection:
    def __init__(self, io: Any) -> None:
        self.io = io
        self.reader = RequestReader()
        self.request: Request | None = None  # the request being answered
        self.read_all = False  # its body was read to the end
        self.responded = False  # its final answer's head is out
        self.ended = False  # ... and the whole answer
        self.closing = False  # the connection ends after that answer
        self._body = Framing.NONE  # how the answer's body is framed
        self._continue = False  # `100 Continue` is owed before the body is waited for
        self.pending: list[bytes] = []
        self.pending_size = 0

    # --- reading --------------------------------------------------------------------------

    async def next_event(self) -> Event:
        """The client's next event, reading the tunnel when none is left."""
        while True:
            event = self.reader.next_event()
            if event is not NEED_DATA:
                if event is END:
                    self.read_all = True
                elif type(event) is Request:
                    self.request = event
                    self._continue = event.expect_continue
                return event
            if self._continue:
                self._continue = False
                if not self.responded:
                    self.queue(writers.response_head(100, b"", ()))
            await self.flush()
            self.reader.receive_data(await self.io.read())

    async def read_body(self, limit: int) -> tuple[list[bytes], bool]:
        """The request body's chunks read so far, and whether that is all of it (≤ limit)."""
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            event = await self.next_event()
            if event is END:
                return chunks, True
            if type(event) is Data:
                chunks.append(event.data)
                size += len(event.data)
        return chunks, False

    def discard_body(self) -> bool:
        """Drop what is already here of a refused request's body; True if it all was."""
        try:
            while True:
                event = self.reader.next_event()
                if event is END:
                    self.read_all = True
                    return True
                if type(event) is not Data:
                    return False  # more is on its way: answer and close rather than read it all
        except RemoteProtocolError:
            return False

    # --- writing --------------------------------------------------------------------------

    def queue(self, data: bytes) -> None:
        self.pending.append(data)
        self.pending_size += len(data)

    async def flush(self) -> None:
        """Write what is pending for the client (before the shell waits for anything)."""
        if self.pending:
            out = b"".join(self.pending)  # one part: no copy
            self.pending.clear()
            self.pending_size = 0
            await self.io.write(out)

    def informational(self, status: int, fields: Headers) -> None:
        """A 1xx answer; never to an HTTP/1.0 client (RFC 9110 §15.2)."""
        if self.request is not None and self.request.http11:
            self.queue(writers.response_head(status, b"", fields))

    def respond(
        self, status: int, reason: bytes, fields: Headers, framing: Framing, close: bool = False
    ) -> None:
        """Queue the head of the final answer (or a 101) to the current request."""
        request = self.request
        keep_alive = request is not None and request.keep_alive
        fields, self._body, self.closing = writers.for_client(
            status,
            fields,
            framing,
            head=request is not None and request.method == b"HEAD",
            http11=request is not None and request.http11,
            close=close or not keep_alive,
        )
        self.responded = True
        self.queue(writers.response_head(status, reason, fields))

    async def send(self, data: bytes) -> None:
        """Part of the answer's body (dropped when the answer has none, e.g. to HEAD)."""
        body = self._body
        if body is Framing.CHUNKED:
            data = writers.chunk(data)
        elif body is Framing.NONE:
            return
        if data:
            self.queue(data)
            if self.pending_size >= FLUSH_SIZE:
                await self.flush()

    async def end(self) -> None:
        """The answer is complete: write it out."""
        if self._body is Framing.CHUNKED:
            self.queue(writers.LAST_CHUNK)
        self.ended = True
        await self.flush()

    async def json_reply(self, status: int, body: dict[str, Any], close: bool = False) -> None:
        data = json.dumps(body).encode()
        fields = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(data))]
        self.respond(status, _phrase(status), fields, Framing.LENGTH, close)
        await self.send(data)
        await self.end()

    # --- between requests -----------------------------------------------------------------

    @property
    def reusable(self) -> bool:
        return self.ended and self.read_all and not self.closing

    def start_next_cycle(self) -> None:
        self.request = None
        self.read_all = self.responded = self.ended = self.closing = False
        self._continue = False
        if self.reader.trailing is not None:  # an upgrade was asked for but did not happen
            self.reader.resume()


def _phrase(status: int) -> bytes:
    """The standard reason phrase for the broker's own answers ("Forbidden"): curl -i and
    logs show it; RFC 9112 §4 lets it be empty, but readers expect one."""
    try:
        return HTTPStatus(status).phrase.encode("ascii")
    except ValueError:
        return b""

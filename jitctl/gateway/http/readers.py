"""HTTP/1.1 messages as the http shell reads them: httptools (llhttp) parses, the readers turn
its callbacks into `events`. Sans-I/O: bytes in (`receive_data`, b"" for the peer's EOF),
events out (`next_event`); no sockets, no asyncio, so every edge case is a small synchronous
test.

Rules (RFC 9112 unless another is named):
- Arbitrary bytes yield events or `RemoteProtocolError`, nothing else. Events parsed before
  an error come first: a complete request pipelined ahead of garbage is still answered.
- llhttp is strict: CRLF line ends, no obs-fold (§5.2 lets a server refuse it), known methods
  only, and no `Content-Length` beside `Transfer-Encoding` nor two of them (§6.3: smuggling).
  Added here: `Transfer-Encoding` must be exactly `chunked` (the only coding the shell frames;
  501 for a request); an HTTP/1.1 request has exactly one `Host` (§3.2); versions other than
  1.0 and 1.1 get 505; a head (or trailer section) over `MAX_HEAD` bytes gets 431. httptools
  keeps a field whose line has not ended in memory, so bytes read without any progress (a
  head completed, body bytes) count towards that limit too: memory stays bounded whatever a
  peer sends.
- Keep-alive: a request keeps the connection open only when it is HTTP/1.1 without
  `Connection: close` (h11's rule: no HTTP/1.0 keep-alive); a response when llhttp says so.
- `RequestReader` keeps one parser for the connection, so pipelined requests queue as events.
  `ResponseReader` starts a fresh parser for each request sent (`expect`): llhttp cannot be
  told that a response answers HEAD (httptools keeps its skip-body flag for upgrades), so for
  HEAD the reader ends the message at the end of its head (RFC 9110 §9.3.2), and any bytes after
  a complete response (none are due) make the connection not reusable rather than being read
  as another response.
"""

from __future__ import annotations

from collections import deque

import httptools

from jitctl.gateway.http.events import (
    CLOSED,
    END,
    NEED_DATA,
    PAUSED,
    Data,
    Event,
    Framing,
    Headers,
    RemoteProtocolError,
    Request,
    Response,
)

MAX_HEAD = 16 * 1024  # h11's limit for an incomplete event, and Node's for a head


class _Stop(Exception):
    """Raised in a callback to stop llhttp; an error, if it is one, is in `_error`."""


_Parser = httptools.HttpRequestParser | httptools.HttpResponseParser


def _transfer_coding(values: list[bytes]) -> Framing:
    codings = [c.strip().lower() for v in values for c in v.split(b",") if c.strip()]
    if codings != [b"chunked"]:
        raise RemoteProtocolError("only Transfer-Encoding: chunked is supported", 501)
    return Framing.CHUNKED


class _Reader:
    """What both readers share: the event queue, errors, the limits on unread heads.

    The readers' callbacks run for every message, so the subclasses call these as
    `_Reader.on_body(self, ...)`: `super()` builds an object on every call (Python 3.11).
    """

    # No chunk callbacks. Declared all the same: httptools looks them up for every parser
    # (one per response) and a missing one costs it an AttributeError each time.
    on_chunk_header = None
    on_chunk_complete = None

    def __init__(self, max_head: int) -> None:
        self.max_head = max_head
        self._events: deque[Event] = deque()
        self._error: RemoteProtocolError | None = None
        self._headers: Headers = []
        self._head_size = 0  # the current head's (or trailers') bytes, as llhttp hands them
        self._quiet = 0  # bytes fed since the last sign of progress
        self._progress = False
        self._in_head = False
        self._in_message = False
        self._eof = False  # the peer closed: nothing more is read

    def _fail(self, error: RemoteProtocolError) -> None:
        self._error = error
        raise _Stop

    def next_event(self) -> Event:
        if self._events:
            return self._events.popleft()
        if self._error is not None:
            raise self._error
        return NEED_DATA

    def _feed(self, parser: _Parser, data: bytes) -> int | None:
        """Feed llhttp; the offset of the bytes after an upgrade, if it paused for one."""
        self._progress = False
        offset = None
        try:
            parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            offset = int(exc.args[0])
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if not isinstance(cause, _Stop | httptools.HttpParserError | None):
                raise  # a bug in a callback, not the peer's doing
            if self._error is None and not isinstance(cause, _Stop):
                self._error = RemoteProtocolError(f"invalid HTTP/1.1: {cause or exc}")
        except httptools.HttpParserError as exc:
            if self._error is None:
                self._error = RemoteProtocolError(f"invalid HTTP/1.1: {exc}")
        if self._progress:
            self._quiet = 0
        else:
            self._quiet += len(data)
            if self._quiet > self.max_head and self._error is None:
                self._error = RemoteProtocolError("the message's head is too large", 431)
        return offset

    # -- callbacks shared by both parsers -------------------------------------------------

    def on_message_begin(self) -> None:
        self._in_message = self._in_head = True
        self._headers = []
        self._head_size = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._head_size += len(name) + len(value)
        if self._in_head:
            self._headers.append((name, value.rstrip(b" \t")))
        if self._head_size > self.max_head:
            self._fail(RemoteProtocolError("the message's head is too large", 431))

    def on_body(self, body: bytes) -> None:
        self._progress = True
        if body:
            self._events.append(Data(body))


class RequestReader(_Reader):
    """A client connection's requests (see the module docstring)."""

    def __init__(self, max_head: int = MAX_HEAD) -> None:
        super().__init__(max_head)
        self._parser = httptools.HttpRequestParser(self)
        self._target = b""
        self.trailing: bytes | None = None  # set while PAUSED: the bytes after an upgrade

    def receive_data(self, data: bytes) -> None:
        if self.trailing is not None:
            self.trailing += data  # read as HTTP again only if the upgrade does not happen
            return
        if self._error is not None or self._eof:
            return
        if not data:
            self._eof = True
            if self._in_message:
                self._error = RemoteProtocolError("the client closed mid-request")
            else:
                self._events.append(CLOSED)
            return
        offset = self._feed(self._parser, data)
        if offset is not None:
            self.trailing = data[offset:]

    def next_event(self) -> Event:
        if self._events:  # the usual case (several times a request), without super()
            return self._events.popleft()
        event = super().next_event()
        if event is NEED_DATA and self.trailing is not None:
            return PAUSED
        return event

    def resume(self) -> None:
        """Read what followed an upgrade request as HTTP again (the upgrade did not happen)."""
        data, self.trailing = self.trailing, None
        if data:
            self.receive_data(data)

    def on_message_begin(self) -> None:
        _Reader.on_message_begin(self)
        self._target = b""

    def on_url(self, url: bytes) -> None:
        self._target += url
        self._head_size += len(url)

    def on_headers_complete(self) -> None:
        parser = self._parser
        self._in_head = False
        self._progress = True
        if self._head_size > self.max_head:
            self._fail(RemoteProtocolError("the request's head is too large", 431))
        version = parser.get_http_version()
        if version not in ("1.1", "1.0"):
            self._fail(RemoteProtocolError(f"HTTP/{version} is not supported", 505))
        hosts = 0
        framing = Framing.NONE
        codings: list[bytes] = []
        expect = False
        for name, value in self._headers:
            lower = name.lower()
            if lower == b"host":
                hosts += 1
            elif lower == b"content-length":  # llhttp checked: digits, only one
                framing = Framing.LENGTH if value.lstrip(b"0") else Framing.NONE
            elif lower == b"transfer-encoding":
                codings.append(value)
            elif lower == b"expect":
                expect = value.lower() == b"100-continue"
        http11 = version == "1.1"
        if hosts > 1 or (http11 and hosts == 0):
            self._fail(RemoteProtocolError("a request needs exactly one Host header"))
        if codings:
            try:
                framing = _transfer_coding(codings)
            except RemoteProtocolError as exc:
                self._fail(exc)
        upgrade = parser.should_upgrade()
        if upgrade and framing is not Framing.NONE:
            # llhttp hands what follows an upgrade's head over raw, body included.
            self._fail(RemoteProtocolError("an upgrade request must not have a body"))
        self._head_size = 0  # trailers, if any, have a budget of their own
        self._events.append(
            Request(
                parser.get_method(),
                self._target,
                self._headers,
                http11,
                http11 and parser.should_keep_alive(),
                framing,
                upgrade,
                expect and http11,
            )
        )

    def on_message_complete(self) -> None:
        self._in_message = False
        self._progress = True
        self._events.append(END)


class ResponseReader(_Reader):
    """The upstream's answer to each request sent (see the module docstring)."""

    def __init__(self, max_head: int = MAX_HEAD) -> None:
        super().__init__(max_head)
        self._parser = httptools.HttpResponseParser(self)
        self._head_only = False
        self._reason = b""
        self._framing = Framing.NONE
        self._keep_alive = False
        self._status = 0
        self.done = True  # the final response has ended (or none was asked for)
        self.extra = False  # bytes came after it
        self.trailing: bytes | None = None  # after a 101: the upstream's first raw bytes

    def expect(self, method: bytes) -> None:
        """A request was sent: read its response (with a fresh parser, see the docstring)."""
        if not self.done or self.extra or self._error is not None:
            raise RuntimeError("a response is still being read")
        self._parser = httptools.HttpResponseParser(self)
        self._head_only = method == b"HEAD"
        self._events.clear()
        self.trailing = None
        self._in_message = False
        self.done = False

    @property
    def reusable(self) -> bool:
        """The response ended and the connection can carry the next request."""
        return self.done and self._keep_alive and not self.extra and self._error is None

    def receive_data(self, data: bytes) -> None:
        if self._error is not None or self._eof:
            return
        if self.done:
            self.extra = True  # nothing was asked: the connection is not reused
            return
        if not data:
            self._eof = True
            if self._in_message and not self._in_head and self._framing is Framing.CLOSE:
                self._complete()
            elif self._in_message:
                self._error = RemoteProtocolError("the upstream closed mid-response")
            else:
                self._events.append(CLOSED)
            return
        offset = self._feed(self._parser, data)
        if offset is not None:
            self.trailing = data[offset:]

    def _complete(self) -> None:
        self._in_message = False
        self.done = True
        self._events.append(END)

    def on_message_begin(self) -> None:
        if self.done:
            self.extra = True
            raise _Stop  # not an error: what was asked for is complete
        _Reader.on_message_begin(self)
        self._reason = b""

    def on_status(self, reason: bytes) -> None:
        self._reason += reason
        self._head_size += len(reason)

    def on_headers_complete(self) -> None:
        parser = self._parser
        self._in_head = False
        self._progress = True
        status = parser.get_status_code()
        if status < 100:
            self._fail(RemoteProtocolError(f"invalid status {status}"))
        if parser.get_http_version() not in ("1.1", "1.0"):
            self._fail(RemoteProtocolError(f"HTTP/{parser.get_http_version()} is not supported"))
        framing = Framing.CLOSE if status >= 200 else Framing.NONE
        codings: list[bytes] = []
        for name, value in self._headers:
            lower = name.lower()
            if lower == b"content-length":
                framing = Framing.LENGTH
            elif lower == b"transfer-encoding":
                codings.append(value)
        if codings:
            try:
                framing = _transfer_coding(codings)
            except RemoteProtocolError as exc:
                self._fail(exc)
        if status == 101 and not parser.should_upgrade():
            self._fail(RemoteProtocolError("a 101 response without Upgrade"))
        self._status = status
        self._framing = framing
        self._keep_alive = parser.should_keep_alive()
        self._head_size = 0  # trailers, if any, have a budget of their own
        self._events.append(
            Response(status, self._reason, self._headers, framing, self._keep_alive)
        )
        if self._head_only and status >= 200:
            self._complete()  # RFC 9110 §9.3.2: no body, whatever the head declares

    def on_body(self, body: bytes) -> None:
        if self.done:
            self._progress = True
            self.extra = self.extra or bool(body)
            return
        _Reader.on_body(self, body)

    def on_message_complete(self) -> None:
        if self.done:
            return
        self._in_message = False
        self._progress = True
        if self._status >= 200 or self._status == 101:
            self._complete()

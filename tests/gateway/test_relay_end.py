"""How a core-based relay's session ends when both sides close at about the same time.

The relay (jitctl.gateway.relay) is driven here through its callbacks with stand-in transports,
so the order of events is fixed: a race that a real client and server hit now and then (psql's
Terminate, the server closing first, then the client's end-of-data) happens every time.
"""

from __future__ import annotations

import asyncio
from typing import Any

from jitctl.gateway import frames
from jitctl.gateway.relay import Relay, Upstream
from jitctl.plugin import Direction, Forward, Shutdown


class _Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closing = False
        self.eof_written = False

    def write(self, data: bytes) -> None:
        assert not self.closing, "written after the connection closed"
        self.written.append(data)

    def is_closing(self) -> bool:
        return self.closing

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        assert not self.closing, "end-of-data written after the connection closed"
        self.eof_written = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _Link:
    """The client's tunnel end: frames written to it are kept."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.on_writing_paused: Any = None

    def divert(self, on_data: Any, on_end: Any) -> None:
        self.on_data, self.on_end = on_data, on_end

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


class _Core:
    """Bytes pass; each end-of-data becomes a half-close toward the other side."""

    def client_data(self, data: bytes) -> list[Any]:
        return [Forward(Direction.UP, data)]

    def client_eof(self) -> list[Any]:
        return [Shutdown(Direction.UP)]

    def upstream_data(self, data: bytes) -> list[Any]:
        return [Forward(Direction.DOWN, data)]

    def upstream_eof(self) -> list[Any]:
        return [Shutdown(Direction.DOWN)]


class _Audit:
    healthy = True


class _Session(Relay):
    def __init__(self) -> None:
        self.session_id = "s1"
        self.audit = _Audit()
        self.link = _Link()  # type: ignore[assignment]
        self.core = _Core()
        self._init_relay()


def _relay() -> tuple[_Session, _Transport, Upstream]:
    session = _Session()
    upstream = Upstream()
    transport = _Transport()
    upstream.connection_made(transport)  # type: ignore[arg-type]
    session._start_relay(upstream)
    return session, transport, upstream


def test_the_client_ending_after_the_upstream_closed_is_a_clean_end() -> None:
    async def scenario() -> None:
        session, transport, upstream = _relay()
        session.link.on_data(frames.data_frame(b"bye"))  # type: ignore[attr-defined]
        assert transport.written == [b"bye"]
        upstream.eof_received()  # the server closes after the client's goodbye ...
        transport.closing = True  # ... and its connection is gone (a TLS upstream: at once)
        upstream.connection_lost(None)
        assert not session.stats.ended.is_set()  # the client has not said it is done yet
        session.link.on_data(frames.eof_frame())  # type: ignore[attr-defined]
        assert session.stats.ended.is_set()
        assert (session.stats.reason, session.stats.error) == ("both sides closed", False)
        assert not transport.eof_written  # nothing is written to a closed connection

    asyncio.run(scenario())


def test_bytes_for_an_upstream_that_closed_still_end_the_session_with_an_error() -> None:
    async def scenario() -> None:
        session, transport, upstream = _relay()
        upstream.eof_received()
        transport.closing = True
        upstream.connection_lost(None)
        session.link.on_data(frames.data_frame(b"lost"))  # type: ignore[attr-defined]
        assert session.stats.ended.is_set() and session.stats.error
        assert "upstream write failed" in session.stats.reason
        assert transport.written == []

    asyncio.run(scenario())


def test_the_usual_order_half_closes_the_upstream() -> None:
    async def scenario() -> None:
        session, transport, upstream = _relay()
        session.link.on_data(frames.data_frame(b"bye") + frames.eof_frame())  # type: ignore[attr-defined]
        assert transport.eof_written and not session.stats.ended.is_set()
        upstream.eof_received()
        assert (session.stats.reason, session.stats.error) == ("both sides closed", False)

    asyncio.run(scenario())

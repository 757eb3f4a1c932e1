"""One tunnel connection's end of the TLS transport, used by the broker and by `jitctl connect`.

Why not asyncio streams: relaying through streams costs, per chunk and per hop, a task
wake-up, a buffer copy and a `drain()`; with two extra hops each way that was most of the
tunnel's added round trip (docs/performance.md). A `Link` is a plain protocol:

- it starts *buffered*, so the preamble (broker) or the reply line (client) can be read with
  `readline()`;
- then either `divert(on_data, on_end)` hands every later byte straight to a callback (the
  relay's fast path: bytes are handled in `data_received`, without a task in between), or
  `streams()` turns it into a StreamReader/StreamWriter pair (plugins with their own shell);
- flow control stays with the caller: `pause_reading()`/`resume_reading()` for what arrives,
  and `on_writing_paused(paused)` when the peer stops taking what we write.

Whatever was buffered before a hand-over is passed on first, so no byte is lost or reordered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import cast

MAX_LINE = 64 * 1024  # the preamble and the reply are one JSON line each


class LinkClosed(ConnectionError):
    """The connection ended before the line we waited for."""


class Link(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self._buffer = bytearray()
        self._ended = False  # EOF or connection lost
        self._lost: Exception | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._on_data: Callable[[bytes], None] | None = None
        self._on_end: Callable[[Exception | None], None] | None = None
        self._writing_paused = False
        self._drain_waiters: list[asyncio.Future[None]] = []
        self.on_writing_paused: Callable[[bool], None] | None = None
        self._handed_off = False  # streams() gave the transport to a StreamReaderProtocol

    # -- asyncio.Protocol ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it:
        # no isinstance check here (jitctl.eventloop).
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        if self._on_data is not None:
            self._on_data(data)
            return
        self._buffer += data
        if len(self._buffer) > MAX_LINE and self.transport is not None:
            self.transport.pause_reading()  # nobody reads yet: let TCP push back
        self._wake()

    def eof_received(self) -> bool | None:
        self._end(None)
        return None  # close our side too: half-closes travel as frames, not as TCP EOF

    def connection_lost(self, exc: Exception | None) -> None:
        self._end(exc or ConnectionResetError("connection closed"))
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()

    def pause_writing(self) -> None:
        self._writing_paused = True
        if self.on_writing_paused is not None:
            self.on_writing_paused(True)

    def resume_writing(self) -> None:
        self._writing_paused = False
        for waiter in self._drain_waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters.clear()
        if self.on_writing_paused is not None:
            self.on_writing_paused(False)

    # -- reading --------------------------------------------------------------------------------

    def _end(self, exc: Exception | None) -> None:
        if self._ended:
            if exc is not None and self._lost is None:
                self._lost = exc
            return
        self._ended = True
        self._lost = exc
        self._wake()
        if self._on_end is not None:
            self._on_end(exc)

    def _wake(self) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def readline(self, timeout: float) -> bytes:
        """One line (with its newline). Raises ValueError for a line over MAX_LINE,
        LinkClosed when the connection ends first, TimeoutError after `timeout` seconds."""
        async with asyncio.timeout(timeout):
            while True:
                end = self._buffer.find(b"\n")
                if end >= 0:
                    line = bytes(self._buffer[: end + 1])
                    del self._buffer[: end + 1]
                    if self.transport is not None and not self._ended:
                        self.transport.resume_reading()
                    return line
                if len(self._buffer) > MAX_LINE:
                    raise ValueError(f"line longer than {MAX_LINE} bytes")
                if self._ended:
                    raise LinkClosed("the connection closed")
                await self._news()

    async def _news(self) -> None:
        """Wait for more bytes or the end (`_wake`)."""
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            await self._waiter
        finally:
            self._waiter = None

    def divert(
        self, on_data: Callable[[bytes], None], on_end: Callable[[Exception | None], None]
    ) -> None:
        """From now on every byte goes to `on_data`; the end (None for EOF, else the error) to
        `on_end`. What is buffered is handed over first."""
        self._on_data, self._on_end = on_data, on_end
        if self._buffer:
            pending = bytes(self._buffer)
            self._buffer.clear()
            on_data(pending)
        if self.transport is not None and not self._ended:
            self.transport.resume_reading()
        if self._ended:
            on_end(self._lost)

    def streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        """Hand the connection to asyncio streams (buffered bytes first)."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._handed_off = True
        reader = asyncio.StreamReader(limit=1 << 20)
        protocol = asyncio.StreamReaderProtocol(reader)
        self.transport.set_protocol(protocol)
        protocol.connection_made(self.transport)
        if self._buffer:
            reader.feed_data(bytes(self._buffer))
            self._buffer.clear()
        if self._ended:
            reader.feed_eof()
        elif not self.transport.is_closing():
            self.transport.resume_reading()
        return reader, asyncio.StreamWriter(self.transport, protocol, reader, loop)

    # -- writing --------------------------------------------------------------------------------

    @property
    def closing(self) -> bool:
        return self.transport is None or self.transport.is_closing()

    def write(self, data: bytes) -> None:
        if not self.closing:
            assert self.transport is not None
            self.transport.write(data)

    async def drain(self) -> None:
        if self._writing_paused and not self.closing:
            waiter = asyncio.get_running_loop().create_future()
            self._drain_waiters.append(waiter)
            await waiter

    def pause_reading(self) -> None:
        if not self.closing:
            assert self.transport is not None
            with contextlib.suppress(RuntimeError):
                self.transport.pause_reading()

    def resume_reading(self) -> None:
        if not self.closing:
            assert self.transport is not None
            with contextlib.suppress(RuntimeError):
                self.transport.resume_reading()

    def get_extra_info(self, name: str) -> object:
        return self.transport.get_extra_info(name) if self.transport is not None else None

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    async def closed(self, timeout: float) -> None:
        """Close, and wait (at most `timeout`) for what is written to leave."""
        self.close()
        if self._handed_off:  # the streams' protocol hears the end, not us
            return
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                while not self._ended:
                    await self._news()

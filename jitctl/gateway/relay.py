"""The callback-driven relay under a core-based session (session.py runs its lifecycle).

Bytes from the client (`Link.divert`) and from the upstream (`Upstream`) go through the core
inside `data_received`, and the core's commands run at once (`_apply`). Only a `Hold` needs to
await (filing an approval request); while it does, further client bytes wait their turn.

Write-ahead without stalling: a client->upstream record is appended without waiting; the
upstream-bound bytes queue behind it (`_pending`) and leave, in order, once each one's record
is durable (`_pump`). Reading the client and committing overlap, so commits group and
throughput holds. Memory is bounded: the client is paused while too much waits for the disk
or for the upstream, the upstream while the client does not take what we send or too much of
its data waits to be recorded. A core's Close waits behind the upstream bytes queued before it.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import logging
from dataclasses import dataclass, field
from typing import Any, cast

from jitctl.audit.errors import AuditUnavailable
from jitctl.gateway import frames
from jitctl.gateway.link import Link
from jitctl.plugin import (
    Close,
    Command,
    Direction,
    Forward,
    Hold,
    Record,
    RemoteProtocolError,
    Shutdown,
)

log = logging.getLogger("jitctl.gateway")

PENDING_HIGH = 64  # upstream-bound chunks waiting (for the disk or the upstream): pause client
UNRECORDED_HIGH = 16 << 20  # upstream bytes whose (lazy) records are not yet written
_CLIENT_GONE = object()


@dataclass
class Stats:
    up: int = 0
    down: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""
    error: bool = False
    eof_up: bool = False  # the upstream was told end-of-data
    eof_down: bool = False  # the client was told end-of-data


class Upstream(asyncio.Protocol):
    """The upstream connection: holds what arrives until the relay starts, then feeds it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.session: Relay | None = None
        self._early: list[bytes] = []
        self._end: tuple[bool, Exception | None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it:
        # no isinstance check here (jitctl.eventloop).
        self.transport = cast(asyncio.Transport, transport)

    def attach(self, session: Relay) -> None:
        self.session = session
        for data in self._early:
            session._from_upstream(data)
        self._early.clear()
        if self._end is not None:
            self._ended(*self._end)

    def data_received(self, data: bytes) -> None:
        if self.session is None:
            self._early.append(data)
        else:
            self.session._from_upstream(data)

    def eof_received(self) -> bool:
        self._ended(True, None)
        return True  # keep our side open: the client may still be sending

    def connection_lost(self, exc: Exception | None) -> None:
        self._ended(False, exc)

    def _ended(self, eof: bool, exc: Exception | None) -> None:
        if self.session is None:
            self._end = self._end or (eof, exc)
        elif eof:
            self.session._upstream_eof()
        else:
            self.session._upstream_lost(exc)

    def pause_writing(self) -> None:
        if self.session is not None:
            self.session._flow(upstream_full=True)

    def resume_writing(self) -> None:
        if self.session is not None:
            self.session._flow(upstream_full=False)


class Relay:
    """The relay's state and callbacks; `Session` (session.py) supplies the rest."""

    audit: Any
    link: Link
    core: Any = None
    holds: Any = None  # SessionApprovals: the grant it rides, its held statements
    session_id: str
    stats: Stats
    _barrier: Any = None  # the latest durable record: what upstream-bound bytes wait for
    _last_record: Any = None  # the latest record of any kind
    _upstream_eof_seen = False

    def _init_relay(self) -> None:
        self.stats = Stats()
        self._upstream: Upstream | None = None
        self._decoder = frames.FrameDecoder()
        # Upstream-bound work in order: (barrier or None, bytes | None (EOF) | Close | _CLIENT_GONE)
        self._pending: collections.deque[tuple[Any, Any]] = collections.deque()
        self._waiting_on: Any = None  # the barrier _pump waits for
        self._backlog: list[bytes] | None = None  # client bytes that arrived during a Hold
        self._unrecorded = 0  # upstream bytes whose records are queued, not yet written
        self._upstream_full = False
        self._client_full = False
        self._client_paused = False
        self._upstream_paused = False

    def _start_relay(self, upstream: Upstream) -> None:
        """Bytes flow from here on: the upstream's early bytes first, then both sides."""
        self._upstream = upstream
        self.link.on_writing_paused = self._client_writing_paused
        upstream.attach(self)
        self.link.divert(self._from_client, self._client_ended)

    def _new(self, kind: str, payload: dict[str, Any], data: bytes = b"") -> Any:
        raise NotImplementedError  # Session's: an audit NewRecord attributed to this session

    def _end(self, reason: str, error: bool) -> None:
        if not self.stats.ended.is_set():
            self.stats.reason, self.stats.error = reason, error
            self.stats.ended.set()
            if error:
                log.warning(
                    "session ended with an error",
                    extra={
                        "event": "session.error",
                        "session_id": self.session_id,
                        "reason": reason,
                    },
                )

    # -- running a core's commands --------------------------------------------------------------

    async def execute(self, commands: Any) -> None:
        """Run a core's commands, awaiting a Hold's filing (approvals resume through here)."""
        for command in commands:
            if isinstance(command, Hold):
                await self.holds.hold(self.core, command)  # filed before the batch goes on
            else:
                self._apply_one(command)

    def _apply(self, commands: Any) -> None:
        """Run commands now; from a Hold on, the rest (and later client bytes) wait for it."""
        if type(commands) is not list:
            commands = list(commands)
        for index, command in enumerate(commands):
            if isinstance(command, Hold):
                self._backlog = []
                task = asyncio.ensure_future(self._resume_after_hold(commands[index:]))
                task.add_done_callback(_retrieve)
                return
            self._apply_one(command)

    async def _resume_after_hold(self, commands: list[Command]) -> None:
        try:
            await self.execute(commands)
        except Exception as exc:
            self._end(str(exc) or type(exc).__name__, True)
            return
        backlog, self._backlog = self._backlog or [], None
        for index, data in enumerate(backlog):
            self._from_client(data)
            if self._backlog is not None:  # another Hold: it takes the rest
                self._backlog.extend(backlog[index + 1 :])
                return
        self._flow()

    def _apply_one(self, command: Command) -> None:
        if isinstance(command, Record):
            future = self.audit.append_nowait(
                self._new(command.kind, dict(command.payload), command.data),
                lazy=not command.durable,
            )
            self._last_record = future
            if command.durable:
                self._barrier = future
            else:
                future.add_done_callback(self._watch)
        elif isinstance(command, Forward):
            if command.direction is Direction.UP:
                self._queue_up(command.data)
            else:
                self.stats.down += len(command.data)
                self.link.write(frames.data_frame(command.data))
        elif isinstance(command, Shutdown):
            if command.direction is Direction.UP:
                self._queue_up(None)
            else:
                self.link.write(frames.eof_frame())
                self.stats.eof_down = True
                self._maybe_done()
        elif isinstance(command, Close):
            self._queue_up(command)  # behind any queued upstream bytes (a cancel request, say)

    def _queue_up(self, item: Any) -> None:
        self._pending.append((self._barrier, item))
        self._pump()

    def _pump(self, _: Any = None) -> None:
        """Send upstream-bound items whose records are durable, in order (write-ahead)."""
        pending = self._pending
        while pending:
            if self.stats.ended.is_set():
                pending.clear()
                return
            barrier, item = pending[0]
            if barrier is not None:
                if not barrier.done():
                    if self._waiting_on is not barrier:
                        self._waiting_on = barrier
                        barrier.add_done_callback(self._pump)
                    break
                if barrier.cancelled() or barrier.exception() is not None:
                    exc = barrier.exception() if not barrier.cancelled() else None
                    if isinstance(exc, AuditUnavailable) or exc is None:
                        self._end(f"audit store unavailable, forwarding stopped: {exc}", True)
                    else:
                        self._end(f"recording failed: {exc}", True)
                    pending.clear()
                    return
            pending.popleft()
            if not self._send_up(item):
                pending.clear()
                return
        self._flow()

    def _send_up(self, item: Any) -> bool:
        """One upstream-bound item; False when the session is over."""
        assert self._upstream is not None and self._upstream.transport is not None
        transport = self._upstream.transport
        if item is _CLIENT_GONE:
            self._end("client disconnected", False)
            return False
        if isinstance(item, Close):
            self._end(item.reason, item.error)
            return False
        if item is None:
            # An upstream that already closed (a server closes once the client says goodbye,
            # and a TLS connection closes whole) needs no end-of-data: that is no failure.
            if not transport.is_closing() and transport.can_write_eof():
                transport.write_eof()
            self.stats.eof_up = True
            self._maybe_done()
            return True
        if transport.is_closing():
            self._end("upstream write failed: the upstream connection is closed", True)
            return False
        self.stats.up += len(item)
        transport.write(item)
        return True

    def _watch(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self._end(f"audit store unavailable, forwarding stopped: {future.exception()}", True)

    def _maybe_done(self) -> None:
        if self.stats.eof_up and self.stats.eof_down:
            self._end("both sides closed", False)

    # -- the two sides ------------------------------------------------------------------------

    def _from_client(self, data: bytes) -> None:
        if self.stats.ended.is_set():
            return
        if self._backlog is not None:
            self._backlog.append(data)
            self._flow()
            return
        try:
            events = self._decoder.feed(data)
            for index, event in enumerate(events):
                if isinstance(event, frames.Data):
                    self._apply(self.core.client_data(event.data))
                elif isinstance(event, frames.Eof):
                    self._apply(self.core.client_eof())
                else:
                    self._end(event.reason or "client closed the tunnel", False)
                    return
                if self._backlog is not None:
                    # A Hold: the frames after it (and any partial one) wait, in order.
                    rest = _encode(events[index + 1 :]) + self._decoder.take_pending()
                    if rest:
                        self._backlog.append(rest)
                    break
        except RemoteProtocolError as exc:
            self._end(f"protocol error from the client: {exc}", True)
        except Exception as exc:
            self._end(str(exc) or type(exc).__name__, True)
        self._flow()

    def _client_ended(self, exc: Exception | None) -> None:
        # Let what is queued (already recorded) reach the upstream first.
        self._pending.append((None, _CLIENT_GONE))
        self._pump()

    def _from_upstream(self, data: bytes) -> None:
        if self.stats.ended.is_set():
            return
        if not self.audit.healthy:
            self._end(f"audit store unavailable, forwarding stopped: {self.audit.failed}", True)
            return
        try:
            self._apply(self.core.upstream_data(data))
        except RemoteProtocolError as exc:
            self._end(f"protocol error from the upstream: {exc}", True)
            return
        except Exception as exc:
            self._end(f"upstream read failed: {exc}", True)
            return
        last = self._last_record
        if last is not None and not last.done():  # bound what waits for the disk
            self._unrecorded += len(data)
            last.add_done_callback(functools.partial(self._recorded, len(data)))
            self._flow()

    def _recorded(self, size: int, _: Any) -> None:
        self._unrecorded -= size
        self._flow()

    def _upstream_eof(self) -> None:
        if self.stats.ended.is_set() or self._upstream_eof_seen:
            return
        self._upstream_eof_seen = True
        try:
            self._apply(self.core.upstream_eof())
        except Exception as exc:
            self._end(f"upstream read failed: {exc}", True)

    def _upstream_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            self._end(f"upstream read failed: {exc}", True)
        else:
            self._upstream_eof()

    # -- flow control ---------------------------------------------------------------------------

    def _client_writing_paused(self, paused: bool) -> None:
        self._client_full = paused
        self._flow()

    def _flow(self, *, upstream_full: bool | None = None) -> None:
        """Pause a side whose bytes have nowhere to go yet; resume it once they have."""
        if upstream_full is not None:
            self._upstream_full = upstream_full
        stop_client = (
            len(self._pending) >= PENDING_HIGH
            or self._upstream_full
            or (self._backlog is not None and len(self._backlog) >= PENDING_HIGH)
        )
        if stop_client != self._client_paused:
            self._client_paused = stop_client
            (self.link.pause_reading if stop_client else self.link.resume_reading)()
        stop_upstream = self._client_full or self._unrecorded >= UNRECORDED_HIGH
        transport = self._upstream.transport if self._upstream is not None else None
        if transport is not None and stop_upstream != self._upstream_paused:
            self._upstream_paused = stop_upstream
            if not transport.is_closing():
                (transport.pause_reading if stop_upstream else transport.resume_reading)()


def _encode(events: list[frames.Event]) -> bytes:
    """Frames back to bytes (what arrived behind a Hold, replayed once it is filed)."""
    out = []
    for event in events:
        if isinstance(event, frames.Data):
            out.append(frames.data_frame(event.data))
        elif isinstance(event, frames.Eof):
            out.append(frames.eof_frame())
        else:
            out.append(frames.close_frame(event.reason, event.error))
    return b"".join(out)


def _retrieve(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()

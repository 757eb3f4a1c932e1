"""One admitted tunnel: write `session.start`, relay through the target's plugin, write the end.

The relay is callback-driven (asyncio protocols, no task per direction): bytes from the client
(`Link.divert`) and from the upstream (`_Upstream`) go through the core inside
`data_received`, and the core's commands run at once (`_apply`). Only a `Hold` needs to await
(filing an approval request); while it does, further client bytes wait their turn.

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
import contextlib
import functools
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jitctl.broker.identity import Identity
from jitctl.gateway import frames
from jitctl.gateway.credentials import upstream_credential
from jitctl.gateway.link import Link
from jitctl.gateway.refusals import Refused, actor_of
from jitctl.plugin import (
    Close,
    Command,
    Direction,
    Forward,
    Hold,
    Record,
    RemoteProtocolError,
    SessionContext,
    Shutdown,
    UnknownProtocol,
    load_plugin,
)

if TYPE_CHECKING:
    from jitctl.gateway.tunnel import TunnelGateway

log = logging.getLogger("jitctl.gateway")

PENDING_HIGH = 64  # upstream-bound chunks waiting (for the disk or the upstream): pause client
UNRECORDED_HIGH = 16 << 20  # upstream bytes whose (lazy) records are not yet written
_CLIENT_GONE = object()


@dataclass
class _Stats:
    up: int = 0
    down: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""
    error: bool = False
    eof_up: bool = False  # the upstream was told end-of-data
    eof_down: bool = False  # the client was told end-of-data


class _Upstream(asyncio.Protocol):
    """The upstream connection: holds what arrives until the relay starts, then feeds it."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.session: Session | None = None
        self._early: list[bytes] = []
        self._end: tuple[bool, Exception | None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def attach(self, session: Session) -> None:
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


class Session:
    holds: Any = None  # SessionApprovals: the grant it rides, its held statements
    core: Any = None

    def __init__(
        self,
        gateway: TunnelGateway,
        identity: Identity,
        target: Any,
        preamble: dict[str, Any],
        peer: str,
        link: Link,
    ) -> None:
        self.gateway, self.identity, self.target = gateway, identity, target
        self.audit = gateway.runtime.audit
        self.actor = actor_of(identity, preamble, peer)
        self.session_id = uuid.uuid4().hex
        self.link = link
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.stats = _Stats()
        self._upstream: _Upstream | None = None
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

    # Plugins with their own shell (shell_io.py) talk to the client through asyncio streams.
    @property
    def client_reader(self) -> asyncio.StreamReader:
        return self._client_streams()[0]

    @property
    def client_writer(self) -> asyncio.StreamWriter:
        return self._client_streams()[1]

    def _client_streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._streams is None:
            self._streams = self.link.streams()
        return self._streams

    def _new(self, kind: str, payload: dict[str, Any], data: bytes = b"") -> Any:
        from jitctl.audit import NewRecord

        return NewRecord(
            kind=kind,
            session_id=self.session_id,
            target=self.target.name,
            actor=self.actor,
            payload=payload,
            data=data,
            time_us=time.time_ns() // 1000,
        )

    async def _refuse(self, refusal: Refused) -> None:
        """Before the session started: record why, and tell the client (code, error, hint)."""
        await self.gateway._record_refusal(
            refusal, self.identity, {"target": self.target.name}, self.actor.client_addr
        )
        self.link.write(
            frames.encode_line(
                {"ok": False, "code": refusal.code, "error": refusal.error, "hint": refusal.hint}
            )
        )

    async def run(self) -> None:
        from jitctl.audit import AuditUnavailable

        started = time.monotonic()
        try:
            plugin = load_plugin(self.target.protocol)
        except UnknownProtocol:
            await self._refuse(
                Refused(
                    "unavailable",
                    f"no plugin for protocol {self.target.protocol!r} is installed in this broker",
                )
            )
            return
        try:
            credential = await upstream_credential(
                self.gateway.runtime, self.target, self.identity, self.session_id
            )
        except Refused as refusal:
            await self._refuse(refusal)
            return
        if getattr(plugin, "run_session", None) is not None:
            # A custom shell (jitctl.plugin, ShellIO): the plugin dials and relays itself.
            from jitctl.gateway.shell_io import run_plugin_shell

            await run_plugin_shell(self, plugin, credential, started)
            return
        host, _, port = self.target.address.rpartition(":")
        loop = asyncio.get_running_loop()
        try:
            transport, upstream = await asyncio.wait_for(
                loop.create_connection(_Upstream, host.strip("[]"), int(port)), timeout=10
            )
        except (OSError, TimeoutError) as exc:
            reason = f"cannot reach {self.target.name} at {self.target.address}: {exc}"
            await self._refuse(Refused("upstream", reason))
            return
        try:
            await self.audit.append(
                self._new(
                    "session.start",
                    {
                        "protocol": self.target.protocol,
                        "upstream": self.target.address,
                        "broker": self.gateway.runtime.broker_id,
                        **({"grant": self.holds.grant.id} if self.holds.grant else {}),
                    },
                )
            )
        except AuditUnavailable as exc:
            transport.close()
            self.link.write(
                frames.encode_line({"ok": False, "code": "unavailable", "error": str(exc)})
            )
            return
        self.link.write(frames.encode_line({"ok": True, "session_id": self.session_id}))
        log.info(
            "session started",
            extra={
                "event": "session.start",
                "session_id": self.session_id,
                "target": self.target.name,
                "subject": self.identity.subject,
            },
        )
        self.core = plugin.new_core(
            SessionContext(
                session_id=self.session_id,
                target=self.target,
                subject=self.identity.subject,
                groups=self.identity.groups,
                chunk_size=self.gateway.runtime.config.audit.chunk_size,
                settings={
                    "credential": credential,
                    "cancel_registry": self.gateway.cancel_registry,
                    "broker_id": self.gateway.runtime.broker_id,
                    **self.holds.settings(),
                },
            )
        )
        self.gateway.sessions[self.session_id] = asyncio.current_task()  # type: ignore[assignment]
        self._upstream = upstream
        self.link.on_writing_paused = self._client_writing_paused
        upstream.attach(self)
        self.link.divert(self._from_client, self._client_ended)
        try:
            await asyncio.wait_for(self.stats.ended.wait(), timeout=self.target.max_session)
        except TimeoutError:
            self._end(
                f"session reached its maximum length ({int(self.target.max_session)}s)", False
            )
        except asyncio.CancelledError:
            self._end("the broker is shutting down", True)
        finally:
            self.gateway.sessions.pop(self.session_id, None)
            self._pending.clear()
            ended = getattr(self.core, "session_ended", None)
            if ended is not None:
                with contextlib.suppress(Exception):
                    await self.execute(ended())
            with contextlib.suppress(Exception):
                self.link.write(frames.close_frame(self.stats.reason, self.stats.error))
                await asyncio.wait_for(self.link.drain(), 2)
            transport.close()
            await self._finish(time.monotonic() - started)

    async def _finish(self, duration: float) -> None:
        from jitctl.audit import AuditUnavailable

        payload = {
            "bytes_up": self.stats.up,
            "bytes_down": self.stats.down,
            "duration_ms": int(duration * 1000),
            "status": "error" if self.stats.error else "closed",
            "reason": self.stats.reason,
        }
        log.info(
            "session ended",
            extra={"event": "session.end", "session_id": self.session_id, **payload},
        )
        with contextlib.suppress(AuditUnavailable):
            await self.audit.append(self._new("session.end", payload))
            await self.audit.checkpoint()

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

    _barrier: Any = None  # the latest durable record: what upstream-bound bytes wait for
    _last_record: Any = None  # the latest record of any kind
    _upstream_eof_seen = False

    def _queue_up(self, item: Any) -> None:
        self._pending.append((self._barrier, item))
        self._pump()

    def _pump(self, _: Any = None) -> None:
        """Send upstream-bound items whose records are durable, in order (write-ahead)."""
        from jitctl.audit import AuditUnavailable

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
        if transport.is_closing():
            self._end("upstream write failed: the upstream connection is closed", True)
            return False
        if item is None:
            if transport.can_write_eof():
                transport.write_eof()
            self.stats.eof_up = True
            self._maybe_done()
            return True
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

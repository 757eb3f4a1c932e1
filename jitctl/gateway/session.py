"""One admitted tunnel: write `session.start`, relay through the target's plugin, write the end.

Write-ahead without stalling: client->upstream bytes are appended without waiting, and the
forwarder task waits for each chunk's durability before it writes that chunk upstream. Reading
the client and committing overlap, so commits group and throughput holds; the queue between
them is bounded, so a slow disk slows the client instead of filling memory. A core's Close
waits behind the upstream bytes queued before it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from jitctl.broker.identity import Identity
from jitctl.gateway import frames
from jitctl.gateway.credentials import upstream_credential
from jitctl.gateway.refusals import Refused, actor_of
from jitctl.plugin import (
    Close,
    Core,
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

READ_SIZE = 256 * 1024
FORWARD_QUEUE = 64  # chunks in flight between the client reader and the upstream writer
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
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.gateway, self.identity, self.target = gateway, identity, target
        self.audit = gateway.runtime.audit
        self.actor = actor_of(identity, preamble, peer)
        self.session_id = uuid.uuid4().hex
        self.client_reader, self.client_writer = reader, writer
        self.stats = _Stats()
        self.queue: asyncio.Queue[tuple[Any, Any]] = asyncio.Queue(FORWARD_QUEUE)

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
        self.client_writer.write(
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
        try:
            up_reader, up_writer = await asyncio.wait_for(
                asyncio.open_connection(host.strip("[]"), int(port)), timeout=10
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
            up_writer.close()
            self.client_writer.write(
                frames.encode_line({"ok": False, "code": "unavailable", "error": str(exc)})
            )
            return
        self.client_writer.write(frames.encode_line({"ok": True, "session_id": self.session_id}))
        log.info(
            "session started",
            extra={
                "event": "session.start",
                "session_id": self.session_id,
                "target": self.target.name,
                "subject": self.identity.subject,
            },
        )
        core = plugin.new_core(
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
        self.core = core
        self.gateway.sessions[self.session_id] = asyncio.current_task()  # type: ignore[assignment]
        tasks = [
            asyncio.ensure_future(self._client_to_core(core)),
            asyncio.ensure_future(self._forward_up(up_writer)),
            asyncio.ensure_future(self._upstream_to_core(core, up_reader)),
        ]
        try:
            await asyncio.wait_for(self.stats.ended.wait(), timeout=self.target.max_session)
        except TimeoutError:
            self._end(
                f"session reached its maximum length ({int(self.target.max_session)}s)", False
            )
        except asyncio.CancelledError:
            self._end("the broker is shutting down", True)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            self.gateway.sessions.pop(self.session_id, None)
            ended = getattr(core, "session_ended", None)
            if ended is not None:
                with contextlib.suppress(Exception):
                    await self.execute(ended())
            with contextlib.suppress(Exception):
                self.client_writer.write(frames.close_frame(self.stats.reason, self.stats.error))
                await asyncio.wait_for(self.client_writer.drain(), 2)
            up_writer.close()
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

    # -- the three loops ----------------------------------------------------------------------

    async def execute(self, commands: Any) -> None:
        """Run a core's commands. UP forwards go through the write-ahead queue."""
        barrier: Any = None
        for command in commands:
            if isinstance(command, Record):
                future = self.audit.append_nowait(
                    self._new(command.kind, dict(command.payload), command.data),
                    lazy=not command.durable,
                )
                if command.durable:
                    barrier = future
                else:
                    future.add_done_callback(self._watch)
            elif isinstance(command, Forward):
                if command.direction is Direction.UP:
                    await self.queue.put((barrier, command.data))
                else:
                    self.stats.down += len(command.data)
                    self.client_writer.write(frames.data_frame(command.data))
                    await self.client_writer.drain()
            elif isinstance(command, Shutdown):
                if command.direction is Direction.UP:
                    await self.queue.put((barrier, None))
                else:
                    self.client_writer.write(frames.eof_frame())
                    self.stats.eof_down = True
                    self._maybe_done()
            elif isinstance(command, Close):
                # Behind any queued upstream bytes (a cancel request, say): they go out first.
                await self.queue.put((barrier, command))
            elif isinstance(command, Hold):
                await self.holds.hold(self.core, command)  # filed before the batch goes on

    def _watch(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self._end(f"audit store unavailable, forwarding stopped: {future.exception()}", True)

    def _maybe_done(self) -> None:
        if self.stats.eof_up and self.stats.eof_down:
            self._end("both sides closed", False)

    async def _client_to_core(self, core: Core) -> None:
        decoder = frames.FrameDecoder()
        try:
            while True:
                chunk = await self.client_reader.read(READ_SIZE)
                if not chunk:
                    # Let the forwarder drain what is queued (already recorded) first.
                    await self.queue.put((None, _CLIENT_GONE))
                    return
                for event in decoder.feed(chunk):
                    if isinstance(event, frames.Data):
                        await self.execute(core.client_data(event.data))
                    elif isinstance(event, frames.Eof):
                        await self.execute(core.client_eof())
                    else:
                        self._end(event.reason or "client closed the tunnel", False)
                        return
        except RemoteProtocolError as exc:
            self._end(f"protocol error from the client: {exc}", True)
        except Exception as exc:
            self._end(str(exc) or type(exc).__name__, True)

    async def _forward_up(self, up_writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                barrier, data = await self.queue.get()
                if barrier is not None:
                    await barrier  # write-ahead: the record is durable before the bytes leave
                if data is _CLIENT_GONE:
                    self._end("client disconnected", False)
                    return
                if isinstance(data, Close):
                    await up_writer.drain()
                    self._end(data.reason, data.error)
                    return
                if data is None:
                    if up_writer.can_write_eof():
                        up_writer.write_eof()
                    self.stats.eof_up = True
                    self._maybe_done()
                    continue
                self.stats.up += len(data)
                up_writer.write(data)
                await up_writer.drain()
        except Exception as exc:
            from jitctl.audit import AuditUnavailable

            if isinstance(exc, AuditUnavailable):
                self._end(f"audit store unavailable, forwarding stopped: {exc}", True)
            else:
                self._end(f"upstream write failed: {exc}", True)

    async def _upstream_to_core(self, core: Core, up_reader: asyncio.StreamReader) -> None:
        try:
            while True:
                chunk = await up_reader.read(READ_SIZE)
                if not chunk:
                    await self.execute(core.upstream_eof())
                    return
                if not self.audit.healthy:
                    self._end(
                        f"audit store unavailable, forwarding stopped: {self.audit.failed}", True
                    )
                    return
                await self.execute(core.upstream_data(chunk))
        except RemoteProtocolError as exc:
            self._end(f"protocol error from the upstream: {exc}", True)
        except Exception as exc:
            self._end(f"upstream read failed: {exc}", True)

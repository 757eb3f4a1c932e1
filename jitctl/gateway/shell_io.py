"""The gateway's side of a plugin that runs its own session shell (`Plugin.run_session`).

tunnel.py admits the tunnel and resolves the credential as for any plugin, then hands over
here instead of dialing the upstream and pumping bytes through a core. This module gives the
plugin a `ShellIO` (jitctl.plugin) and keeps the gateway's guarantees:

- `session.start` is durable before the client hears "ok"; a refusal is recorded as
  `session.denied` and answered like any other;
- the plugin's records go through the broker's audit writer in call order, stamped with the
  time the plugin gives (when the event happened, not when the loop got to it); a record that
  fails ends the session, and the plugin sees `io.ended` set (fail closed);
- `max_session`, broker shutdown and a crashed plugin end the session as they do for cores;
  `session.end` (with the tunnel's byte counts) and a checkpoint close it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from jitctl.gateway import frames
from jitctl.plugin import Hold, Record, Review, SessionContext, UnknownProtocol, load_plugin

log = logging.getLogger("jitctl.gateway")


def check_extras(runtime: Any, target: Any) -> dict[str, Any]:
    """What the target's plugin adds to a `check` reply (`Plugin.check_reply`)."""
    try:
        plugin = load_plugin(target.protocol)
    except UnknownProtocol:
        return {}
    extras = getattr(plugin, "check_reply", None)
    if extras is None:
        return {}
    try:
        return dict(extras(target, Path(runtime.state_dir)))
    except Exception:  # a check must never fail on an extra
        return {}


class GatewayShellIO:
    def __init__(self, session: Any, credential: dict[str, str]) -> None:
        self.session = session
        runtime = session.gateway.runtime
        self.upstream: str = session.target.address
        self.context = SessionContext(
            session_id=session.session_id,
            target=session.target,
            subject=session.identity.subject,
            groups=tuple(session.identity.groups),
            chunk_size=runtime.config.audit.chunk_size,
            settings={
                "credential": credential,
                "broker_id": runtime.broker_id,
                "state_dir": str(runtime.state_dir),
                **(session.holds.settings() if getattr(session, "holds", None) else {}),
            },
        )
        self.ended: asyncio.Event = session.stats.ended
        self._session_task = asyncio.current_task()  # run_plugin_shell's: what shutdown cancels
        self.started = False
        self.answered = False
        self._decoder = frames.FrameDecoder()
        self._ready: list[bytes] = []
        self._client_gone = False
        self.half_closed = False  # ShellIO: the client sent an end of data and still reads
        self._loop = asyncio.get_running_loop()

    async def start(self, details: Mapping[str, Any] | None = None) -> None:
        from jitctl.audit import AuditUnavailable

        s = self.session
        try:
            await s.audit.append(
                s._new(
                    "session.start",
                    {
                        "protocol": s.target.protocol,
                        "upstream": s.target.address,
                        "broker": s.gateway.runtime.broker_id,
                        **(details or {}),
                        **({"grant": s.holds.grant.id} if s.holds.grant else {}),
                    },
                )
            )
        except AuditUnavailable as exc:
            await self._answer({"ok": False, "code": "unavailable", "error": str(exc)})
            raise
        s.gateway.sessions[s.session_id] = self._session_task
        self.started = True
        await self._answer({"ok": True, "session_id": s.session_id})

    async def refuse(self, code: str, error: str, hint: str = "") -> None:
        from jitctl.gateway.refusals import Refused

        s = self.session
        await s.gateway._record_refusal(
            Refused(code, error, hint), s.identity, {"target": s.target.name}, s.actor.client_addr
        )
        await self._answer({"ok": False, "code": code, "error": error, "hint": hint})

    async def _answer(self, reply: dict[str, Any]) -> None:
        self.answered = True
        self.session.client_writer.write(frames.encode_line(reply))
        with contextlib.suppress(ConnectionError):
            await self.session.client_writer.drain()

    async def read(self) -> bytes:
        while not self._ready:
            if self._client_gone:
                return b""
            chunk = await self.session.client_reader.read(256 * 1024)
            if not chunk:
                self._client_gone, self.half_closed = True, False  # the tunnel itself closed
                return b""
            for event in self._decoder.feed(chunk):
                if isinstance(event, frames.Data):
                    self._ready.append(event.data)
                elif isinstance(event, frames.Eof):
                    self._client_gone = self.half_closed = True
                else:
                    self._client_gone, self.half_closed = True, False
                    self.session._end(event.reason or "client closed the tunnel", False)
        data = b"".join(self._ready)
        self._ready.clear()
        self.session.stats.up += len(data)
        return data

    async def gone(self) -> None:
        """After a half-close (`read` gives b"" at once from then on), wait until the client's
        tunnel closes whole: `jitctl connect` closes it when the local client leaves."""
        while self.half_closed:
            chunk = await self.session.client_reader.read(256 * 1024)
            if not chunk:
                self.half_closed = False
                return
            for event in self._decoder.feed(chunk):  # only a close frame may follow an end
                if not isinstance(event, (frames.Data, frames.Eof)):
                    self.half_closed = False
                    self.session._end(event.reason or "client closed the tunnel", False)
                    return

    async def write(self, data: bytes) -> None:
        self.session.stats.down += len(data)
        self.session.client_writer.write(frames.data_frame(data))
        await self.session.client_writer.drain()

    def record(
        self, record: Record, time_us: int = 0, on_durable: Callable[[], object] | None = None
    ) -> asyncio.Future[Any]:
        """`ShellIO.record`; `on_durable` (an extension for shells that wait in threads) is
        called from the audit writer's thread once the record is on disk (AuditWriter)."""
        s = self.session
        new = s._new(record.kind, dict(record.payload), record.data)
        if time_us:
            new = dataclasses.replace(new, time_us=time_us)
        try:
            # A non-durable record rides the next commit (AuditWriter: lazy), as for cores.
            future: asyncio.Future[Any] = s.audit.append_nowait(
                new, lazy=not record.durable, on_durable=on_durable
            )
        except Exception as exc:
            s._end(f"audit store unavailable, forwarding stopped: {exc}", True)
            failed: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            failed.set_exception(exc)
            failed.add_done_callback(lambda f: f.exception())  # retrieved: no warning
            return failed
        future.add_done_callback(s._watch)
        return future

    def record_threadsafe(
        self,
        record: Record,
        time_us: int,
        on_durable: Callable[[], object],
        on_settled: Callable[[asyncio.Future[Any]], object],
    ) -> None:
        """Append a durable `record` from a thread other than the loop's, straight into the
        audit writer's queue (its urgent appends may come from any thread): a shell thread
        that waits for write-ahead is spared two hops through the loop. `on_durable` runs in
        the writer's thread once the record is on disk; `on_settled` (and the session's own
        watch, which ends the session on a failure) run on the loop once its future is done.

        The caller keeps call order: nothing it appended before may still be on its way
        through the loop. Raises what the writer raises (and ends the session)."""
        assert record.durable
        s = self.session
        new = dataclasses.replace(
            s._new(record.kind, dict(record.payload), record.data), time_us=time_us
        )
        try:
            future: asyncio.Future[Any] = s.audit.append_nowait(new, on_durable=on_durable)
        except Exception as exc:
            with contextlib.suppress(RuntimeError):  # the loop is closed: the session is over
                self._loop.call_soon_threadsafe(
                    s._end, f"audit store unavailable, forwarding stopped: {exc}", True
                )
            raise

        def watch() -> None:  # on the loop: callbacks may not be added from another thread
            future.add_done_callback(s._watch)
            future.add_done_callback(on_settled)

        self._loop.call_soon_threadsafe(watch)

    def end(self, reason: str, error: bool = False) -> None:
        self.session._end(reason, error)

    async def hold(self, hold: Hold) -> Review:
        """File `hold` as an approval request and wait for its decision (the session's
        `SessionApprovals`, as for cores; docs/approvals.md); refused ("unavailable") when the
        broker has no approvals or cannot file it. Once an approved action has reached the
        upstream, the plugin calls `released(hold)`."""
        holds = getattr(self.session, "holds", None)
        if holds is None:
            return Review(False, "unavailable", "this broker has no approvals")
        refused: Review | None = await holds.file(hold)
        if refused is not None:
            return refused
        review: Review = await holds.decision(hold)
        return review

    async def released(self, hold: Hold) -> None:
        """The approved `hold`'s action went upstream: `approval.executed` (nothing if it was
        not approved)."""
        holds = getattr(self.session, "holds", None)
        if holds is not None:
            await holds.released(hold)


async def run_plugin_shell(
    session: Any, plugin: Any, credential: dict[str, str], started: float
) -> None:
    """Run `plugin.run_session` for an admitted tunnel, then close the session as tunnel.py
    does for cores."""
    io = GatewayShellIO(session, credential)
    task = asyncio.ensure_future(plugin.run_session(io))
    ended = asyncio.ensure_future(session.stats.ended.wait())
    try:
        done, _ = await asyncio.wait(
            {task, ended}, timeout=session.target.max_session, return_when="FIRST_COMPLETED"
        )
        if not done:
            session._end(
                f"session reached its maximum length ({int(session.target.max_session)}s)", False
            )
        elif task in done and not task.cancelled() and task.exception() is not None:
            exc = task.exception()
            log.error(
                "plugin session shell failed",
                exc_info=exc,
                extra={"event": "session.error", "session_id": session.session_id},
            )
            session._end(f"{session.target.protocol} relay failed: {exc}", True)
        elif task in done:
            session._end("the client closed the session", False)
    except asyncio.CancelledError:
        session._end("the broker is shutting down", True)
    finally:
        ended.cancel()
        if not task.done():
            task.cancel()
        await asyncio.gather(task, ended, return_exceptions=True)
        session.gateway.sessions.pop(session.session_id, None)
        if io.started:
            with contextlib.suppress(Exception):
                session.client_writer.write(
                    frames.close_frame(session.stats.reason, session.stats.error)
                )
                await asyncio.wait_for(session.client_writer.drain(), 2)
            await session._finish(time.monotonic() - started)
        elif not io.answered:
            with contextlib.suppress(Exception):
                session.client_writer.write(
                    frames.encode_line(
                        {"ok": False, "code": "upstream", "error": session.stats.reason}
                    )
                )

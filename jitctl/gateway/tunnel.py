"""The broker side of a tunnel: admit it, record it, relay it through the target's plugin.

Admission, in this order (each refusal is recorded, then answered with a code the CLI maps to
an exit status): the preamble parses; the token verifies (`auth`); the target exists
(`unknown_target`); the caller's groups meet `allow_groups` (`denied`); the audit store is
healthy (`unavailable`); the plugin exists (`unavailable`); the upstream answers
(`upstream`). Only then `session.start` is written (durably) and bytes flow.

Write-ahead without stalling: client->upstream bytes are appended without waiting, and the
forwarder task waits for each chunk's durability before it writes that chunk upstream. Reading
the client and committing overlap, so commits group and throughput holds; the queue between
them is bounded, so a slow disk slows the client instead of filling memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jitctl.broker.app import may_reach
from jitctl.broker.identity import Identity, TokenRejected
from jitctl.gateway import frames
from jitctl.gateway.approvals import SessionApprovals, admit_grant
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

log = logging.getLogger("jitctl.gateway")

READ_SIZE = 256 * 1024
FORWARD_QUEUE = 64  # chunks in flight between the client reader and the upstream writer


_CLIENT_GONE = object()


class Refused(Exception):
    def __init__(self, code: str, error: str, hint: str = "") -> None:
        super().__init__(error)
        self.code, self.error, self.hint = code, error, hint


@dataclass
class _Stats:
    up: int = 0
    down: int = 0
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    reason: str = ""
    error: bool = False


def _actor(identity: Identity | None, preamble: dict[str, Any], peer: str) -> Any:
    from jitctl.audit import Actor

    return Actor(
        subject=identity.subject if identity else "",
        email=identity.email if identity else "",
        groups=identity.groups if identity else (),
        issuer=identity.issuer if identity else "",
        agent=str(preamble.get("agent") or "")[:200],
        command=str(preamble.get("command") or "")[:2000],
        reason=str(preamble.get("reason") or "")[:2000],
        correlation_id=str(preamble.get("correlation_id") or "")[:200],
        client_addr=peer,
    )


def resolve_credential(target: Any) -> dict[str, str]:
    """The upstream secret the plugin authenticates with; read at session start so a rotated
    secret applies to the next session. The actor never sees it."""
    cred = target.credential
    password = ""
    if cred.password_env:
        password = os.environ.get(cred.password_env, "")
    elif cred.password_file:
        try:
            password = Path(cred.password_file).read_text().strip()
        except OSError as exc:
            log.error(
                "cannot read credential file",
                extra={"event": "credential.error", "target": target.name, "error": str(exc)},
            )
    found = {"user": cred.user, "password": password, "database": cred.database}
    if cred.token_env:  # http: a static bearer token or API key
        found["token"] = os.environ.get(cred.token_env, "")
    return found


async def upstream_credential(
    runtime: Any, target: Any, identity: Identity, session_id: str = ""
) -> dict[str, str]:
    """`resolve_credential`, or for `credential.gcp` a fresh Cloud SQL IAM login minted (and
    recorded) for this caller (docs/gcp.md). A failed mint refuses the session."""
    if not getattr(target.credential, "gcp", ""):
        return resolve_credential(target)
    from jitctl.broker.gcp import GcpError, gcp_access_token, gcp_database_credential

    what = "a GCP access token" if target.protocol == "http" else "a GCP IAM login"
    try:
        if target.protocol == "http":  # a per-user access token the proxy injects
            return await gcp_access_token(runtime, target, identity, session_id=session_id)
        return await gcp_database_credential(runtime, target, identity, session_id=session_id)
    except GcpError as exc:
        raise Refused(
            "denied" if exc.status == 403 else "upstream",
            f"cannot get {what} for {target.name}: {exc.reason}",
            "the broker's audit trail (gcp.credential.error) has the details",
        ) from None


class TunnelGateway:
    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.sessions: dict[str, asyncio.Task[Any]] = {}
        # Client-facing cancel key -> upstream cancel key, shared by a broker's sessions
        # (protocol-flow §55.2.7: cancels arrive on a new connection).
        self.cancel_registry: dict[bytes, Any] = {}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peername = writer.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if peername else ""
        try:
            await self._handle(reader, writer, peer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handle(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, peer: str
    ) -> None:
        try:
            line = await asyncio.wait_for(reader.readline(), timeout=15)
            preamble = frames.decode_line(line)
        except (TimeoutError, ValueError, RemoteProtocolError) as exc:
            writer.write(frames.encode_line({"ok": False, "code": "protocol", "error": str(exc)}))
            return
        identity: Identity | None = None
        try:
            identity = await self._identity(preamble)
            target = self._admit(identity, preamble)
            grant = await admit_grant(self.runtime, identity, target)  # docs/approvals.md
        except Refused as refusal:
            await self._record_refusal(refusal, identity, preamble, peer)
            writer.write(
                frames.encode_line(
                    {
                        "ok": False,
                        "code": refusal.code,
                        "error": refusal.error,
                        "hint": refusal.hint,
                    }
                )
            )
            return
        if preamble.get("op") == "check":
            reply: dict[str, Any] = {"ok": True, "protocol": target.protocol}
            if target.protocol == "postgres":  # names, not secrets: what a client should ask for
                reply.update(user=target.credential.user, database=target.credential.database)
            from jitctl.gateway.shell_io import check_extras

            reply = {**check_extras(self.runtime, target), **reply}  # plugin's (ssh: host key)
            writer.write(frames.encode_line(reply))
            return
        session = _Session(self, identity, target, preamble, peer, reader, writer)
        session.holds = SessionApprovals(session, grant)
        try:
            await session.run()
        finally:
            session.holds.close()

    async def _identity(self, preamble: dict[str, Any]) -> Identity:
        token = preamble.get("token")
        if not isinstance(token, str) or not token:
            raise Refused("auth", "no identity token in the tunnel request", "run `jitctl login`")
        try:
            identity: Identity = await self.runtime.verifier.verify(token)
            return identity
        except TokenRejected as exc:
            hint = "run `jitctl login` again" if "expired" in exc.reason else "run `jitctl login`"
            raise Refused("auth", f"identity rejected: {exc.reason}", hint) from None

    def _admit(self, identity: Identity, preamble: dict[str, Any]) -> Any:
        name = str(preamble.get("target") or "")
        target = self.runtime.config.target(name)
        if target is None:
            raise Refused("unknown_target", f"no target named {name!r}", "see `jitctl targets`")
        if not may_reach(identity, target):
            raise Refused(
                "denied",
                f"{identity.subject} may not reach {name!r} (needs one of the groups: "
                f"{', '.join(target.allow_groups) or 'none configured'})",
                "ask an administrator, or see `jitctl targets`",
            )
        audit = self.runtime.audit
        if audit is None or not audit.healthy:
            raise Refused(
                "unavailable",
                "the broker cannot record sessions right now (audit store unavailable), "
                "so it opens none",
                "try again later; the broker's log says why",
            )
        return target

    async def _record_refusal(
        self, refusal: Refused, identity: Identity | None, preamble: dict[str, Any], peer: str
    ) -> None:
        from jitctl.audit import AuditUnavailable, NewRecord

        log.info(
            "tunnel refused",
            extra={
                "event": "tunnel.refused",
                "code": refusal.code,
                "error": refusal.error,
                "target": preamble.get("target"),
                "client": peer,
            },
        )
        audit = self.runtime.audit
        if audit is None or not audit.healthy:
            return
        with contextlib.suppress(AuditUnavailable):
            await audit.append(
                NewRecord(
                    kind="session.denied",
                    target=str(preamble.get("target") or "")[:200],
                    actor=_actor(identity, preamble, peer),
                    payload={"code": refusal.code, "error": refusal.error},
                )
            )


class _Session:
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
        self.actor = _actor(identity, preamble, peer)
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

    async def run(self) -> None:
        from jitctl.audit import AuditUnavailable

        started = time.monotonic()
        try:
            plugin = load_plugin(self.target.protocol)
        except UnknownProtocol:
            refusal = Refused(
                "unavailable",
                f"no plugin for protocol {self.target.protocol!r} is installed in this broker",
            )
            await self.gateway._record_refusal(refusal, self.identity, {}, self.actor.client_addr)
            self.client_writer.write(
                frames.encode_line({"ok": False, "code": refusal.code, "error": refusal.error})
            )
            return
        try:
            credential = await upstream_credential(
                self.gateway.runtime, self.target, self.identity, self.session_id
            )
        except Refused as refusal:
            await self.gateway._record_refusal(
                refusal, self.identity, {"target": self.target.name}, self.actor.client_addr
            )
            self.client_writer.write(
                frames.encode_line(
                    {
                        "ok": False,
                        "code": refusal.code,
                        "error": refusal.error,
                        "hint": refusal.hint,
                    }
                )
            )
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
            await self.gateway._record_refusal(
                Refused("upstream", reason),
                self.identity,
                {"target": self.target.name},
                self.actor.client_addr,
            )
            self.client_writer.write(
                frames.encode_line({"ok": False, "code": "upstream", "error": reason})
            )
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
                    await self._execute(ended(), Direction.DOWN)
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

    async def _execute(self, commands: Any, direction: Direction) -> None:
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
                    self._eof_down = True
                    self._maybe_done()
            elif isinstance(command, Close):
                # Behind any queued upstream bytes (a cancel request, say): they go out first.
                await self.queue.put((barrier, command))
            elif isinstance(command, Hold):
                await self.holds.hold(self.core, command)  # filed before the batch goes on

    def _watch(self, future: asyncio.Future[Any]) -> None:
        if not future.cancelled() and future.exception() is not None:
            self._end(f"audit store unavailable, forwarding stopped: {future.exception()}", True)

    _eof_up = False
    _eof_down = False

    def _maybe_done(self) -> None:
        if self._eof_up and self._eof_down:
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
                        await self._execute(core.client_data(event.data), Direction.UP)
                    elif isinstance(event, frames.Eof):
                        await self._execute(core.client_eof(), Direction.UP)
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
                    self._eof_up = True
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
                    await self._execute(core.upstream_eof(), Direction.DOWN)
                    return
                if not self.audit.healthy:
                    self._end(
                        f"audit store unavailable, forwarding stopped: {self.audit.failed}", True
                    )
                    return
                await self._execute(core.upstream_data(chunk), Direction.DOWN)
        except RemoteProtocolError as exc:
            self._end(f"protocol error from the upstream: {exc}", True)
        except Exception as exc:
            self._end(f"upstream read failed: {exc}", True)

"""The client side of a tunnel: a local listener whose connections ride TLS to the broker.

Each local connection opens its own TLS connection to the broker's gateway with a fresh
token (so a rotated workload token or a refreshed login is used), sends the preamble, and
relays bytes as frames (jitctl.gateway.frames). A refusal or a close from the broker is
printed on stderr with its reason: the actor always learns why.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from jitctl.errors import (
    AuthError,
    DeniedError,
    JitctlError,
    UnreachableError,
    UsageError,
)
from jitctl.gateway import frames
from jitctl.plugin import RemoteProtocolError

READ_SIZE = 256 * 1024

_CODES: dict[str, type[JitctlError]] = {
    "auth": AuthError,
    "denied": DeniedError,
    "unknown_target": UsageError,
    "unavailable": UnreachableError,
    "upstream": UnreachableError,
}


@dataclass
class TunnelSpec:
    broker_url: str
    ca_file: str | None
    target: str
    token: Callable[[], str]
    reason: str = ""
    agent: str = ""
    command: str = ""
    correlation_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def preamble(self, op: str = "open") -> dict[str, Any]:
        return {
            "op": op,
            "token": self.token(),
            "target": self.target,
            "reason": self.reason,
            "agent": self.agent,
            "command": self.command,
            "correlation_id": self.correlation_id,
        }


def refusal_error(reply: dict[str, Any]) -> JitctlError:
    cls = _CODES.get(str(reply.get("code")), JitctlError)
    return cls(
        str(reply.get("error") or "the broker refused the tunnel"),
        str(reply.get("hint") or "") or None,
    )


async def open_tunnel(
    spec: TunnelSpec, op: str = "open"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, dict[str, Any]]:
    """Connect to the gateway and send the preamble; raises the mapped error on refusal."""
    from jitctl.broker.tlsfiles import client_context

    parts = urlsplit(spec.broker_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                host, port, ssl=client_context(spec.ca_file), server_hostname=host, limit=1 << 20
            ),
            timeout=10,
        )
    except (OSError, TimeoutError) as exc:
        hint = "is the broker running? check --broker"
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            hint = "the broker's certificate is not trusted: pass --ca-file"
        raise UnreachableError(
            f"cannot reach the broker at {spec.broker_url}: {exc}", hint
        ) from None
    writer.write(frames.MAGIC + frames.encode_line(spec.preamble(op)))
    try:
        line = await asyncio.wait_for(reader.readline(), timeout=30)
        reply = (
            frames.decode_line(line)
            if line
            else {"ok": False, "error": "broker closed the connection"}
        )
    except (OSError, TimeoutError, ValueError) as exc:
        writer.close()
        raise UnreachableError(f"the broker did not answer the tunnel request: {exc}") from None
    if not reply.get("ok"):
        writer.close()
        raise refusal_error(reply)
    return reader, writer, reply


async def check_target(spec: TunnelSpec) -> dict[str, Any]:
    """Ask the gateway whether this identity may open this target, without opening it."""
    _, writer, reply = await open_tunnel(spec, op="check")
    writer.close()
    return reply


class LocalListener:
    """127.0.0.1:port; every accepted connection becomes one recorded session."""

    def __init__(
        self,
        spec: TunnelSpec,
        port: int = 0,
        on_event: Callable[[str, bool], None] | None = None,
    ) -> None:
        self.spec = spec
        self.port = port
        # on_event(message, trouble): trouble is True for refusals, closures and losses.
        self.on_event = on_event or (lambda message, trouble: None)
        self._server: asyncio.Server | None = None
        self.sessions: list[str] = []
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        try:
            self._server = await asyncio.start_server(self._accept, "127.0.0.1", self.port)
        except OSError as exc:
            raise UsageError(
                f"cannot listen on 127.0.0.1:{self.port}: {exc.strerror or exc}",
                "pick another --port, or 0 for any free port",
            ) from None
        self.port = self._server.sockets[0].getsockname()[1]
        return self.port

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(
        self, local_reader: asyncio.StreamReader, local_writer: asyncio.StreamWriter
    ) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self._relay(local_reader, local_writer)
        except asyncio.CancelledError:
            pass  # close() cancelled us: the tunnel is being shut down on purpose
        finally:
            self._tasks.discard(task)
            local_writer.close()

    async def _relay(
        self, local_reader: asyncio.StreamReader, local_writer: asyncio.StreamWriter
    ) -> None:
        try:
            reader, writer, reply = await open_tunnel(self.spec)
        except JitctlError as exc:
            self.on_event(exc.diagnostics(), True)
            return
        session_id = str(reply.get("session_id", ""))
        self.sessions.append(session_id)
        self.on_event(f"session {session_id} opened to {self.spec.target}", False)

        async def upward() -> None:
            while chunk := await local_reader.read(READ_SIZE):
                writer.write(frames.data_frame(chunk))
                await writer.drain()
            writer.write(frames.eof_frame())
            await writer.drain()

        async def downward() -> str:
            decoder = frames.FrameDecoder()
            while chunk := await reader.read(READ_SIZE):
                for event in decoder.feed(chunk):
                    if isinstance(event, frames.Data):
                        local_writer.write(event.data)
                        await local_writer.drain()
                    elif isinstance(event, frames.Eof):
                        if local_writer.can_write_eof():
                            local_writer.write_eof()
                    else:
                        return event.reason if event.error else ""
            return "the broker closed the connection"

        up = asyncio.ensure_future(upward())
        down = asyncio.ensure_future(downward())
        try:
            reason = await down
            if reason:
                self.on_event(f"session {session_id} closed by the broker: {reason}", True)
        except (ConnectionError, RemoteProtocolError) as exc:
            self.on_event(f"session {session_id} lost: {exc}", True)
        finally:
            up.cancel()
            with contextlib.suppress(BaseException):
                await up
            writer.close()

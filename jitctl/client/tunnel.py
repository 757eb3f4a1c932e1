"""The client side of a tunnel: a local listener whose connections ride TLS to the broker.

Each local connection opens its own TLS connection to the broker's gateway with a fresh
token (so a rotated workload token or a refreshed login is used), sends the preamble, and
relays bytes as frames (jitctl.gateway.frames). A refusal or a close from the broker is
printed on stderr with its reason: the actor always learns why.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast
from urllib.parse import urlsplit

from jitctl.client import peers
from jitctl.client.memtls import MemoryTLS
from jitctl.errors import (
    AuthError,
    DeniedError,
    JitctlError,
    UnreachableError,
    UsageError,
)
from jitctl.gateway import frames
from jitctl.gateway.link import Link, LinkClosed
from jitctl.plugin import RemoteProtocolError

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


def _broker_context(ca_file: str | None) -> ssl.SSLContext:
    """The TLS context for the broker, made once per CA file as it is now: making one loads the
    CAs (the system's, without `ca_file`), and `connect` opens a tunnel for every local
    connection. A CA file replaced while `connect` runs is loaded again."""
    try:
        stat = os.stat(ca_file) if ca_file else None
    except OSError:
        stat = None  # _context_for raises, naming the file, and raising caches nothing
    return _context_for(ca_file, (stat.st_mtime_ns, stat.st_size) if stat else None)


@functools.lru_cache(maxsize=2)
def _context_for(ca_file: str | None, version: tuple[int, int] | None) -> ssl.SSLContext:
    from jitctl.broker.tlsfiles import client_context

    return client_context(ca_file)


async def open_tunnel(spec: TunnelSpec, op: str = "open") -> tuple[Link, dict[str, Any]]:
    """Connect to the gateway and send the preamble; raises the mapped error on refusal."""
    parts = urlsplit(spec.broker_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 443
    loop = asyncio.get_running_loop()
    try:
        _, link = await asyncio.wait_for(
            loop.create_connection(
                Link, host, port, ssl=_broker_context(spec.ca_file), server_hostname=host
            ),
            timeout=10,
        )
    except (OSError, TimeoutError) as exc:
        # connect and exec take neither --broker nor --ca-file: name where they are set.
        hint = "is the broker running? `jitctl login --broker URL` (or JITCTL_BROKER) picks another"
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            hint = (
                "the broker's certificate is not trusted: `jitctl login --ca-file CA` "
                "(or JITCTL_CA_FILE) names the CA that signed it"
            )
        raise UnreachableError(
            f"cannot reach the broker at {spec.broker_url}: {exc}", hint
        ) from None
    link.write(frames.MAGIC + frames.encode_line(spec.preamble(op)))
    try:
        reply = frames.decode_line(await link.readline(timeout=30))
    except LinkClosed:
        reply = {"ok": False, "error": "broker closed the connection"}
    except (OSError, TimeoutError, ValueError, RemoteProtocolError) as exc:
        link.close()
        error = str(exc) or "no answer within 30 seconds"
        raise UnreachableError(f"the broker did not answer the tunnel request: {error}") from None
    if not reply.get("ok"):
        link.close()
        raise refusal_error(reply)
    return link, reply


async def check_target(spec: TunnelSpec) -> dict[str, Any]:
    """Ask the gateway whether this identity may open this target, without opening it."""
    link, reply = await open_tunnel(spec, op="check")
    link.close()
    return reply


def local_tls_for(protocols: dict[str, str]) -> tuple[ssl.SSLContext, Path]:
    """The local leg's TLS for `--local-tls` (connect and exec): a certificate for 127.0.0.1
    from a CA made once in JITCTL_HOME/local-tls; the CA file is what `sslrootcert=` names.

    `protocols` maps the run's targets to their protocols. Only Postgres clients ask for TLS
    in-band (SSLRequest), so the flag is refused when no target is Postgres: it would do nothing.
    """
    if "postgres" not in protocols.values():
        found = ", ".join(f"{name} is {protocol}" for name, protocol in protocols.items())
        raise UsageError(
            f"--local-tls is for postgres targets; {found or 'no target given'}",
            "drop --local-tls",
        )
    from jitctl.broker.tlsfiles import ensure_tls_files, server_context
    from jitctl.paths import ensure_private_dir, home

    ca, cert, key = ensure_tls_files(ensure_private_dir(home() / "local-tls"), ["127.0.0.1"])
    context = server_context(cert, key)
    # PostgreSQL 17's direct TLS (sslnegotiation=direct): libpq insists that the server
    # selects ALPN "postgresql"; clients that ask with an SSLRequest may offer it too.
    context.set_alpn_protocols(["postgresql"])
    return context, ca


READ_AHEAD = 256 * 1024
SSL_REQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"  # Postgres: length 8, code 80877103
TLS_HANDSHAKE = 0x16  # a TLS record's first byte; a Postgres startup's is its length's, 0x00
LOCAL_TLS_HINT = (
    "a client that checks certificates needs sslrootcert=<the CA file that --json names as "
    "sslrootcert>"
)


class LocalListener:
    """127.0.0.1:port; every accepted connection becomes one recorded session."""

    def __init__(
        self,
        spec: TunnelSpec,
        port: int = 0,
        on_event: Callable[[str, bool], None] | None = None,
        *,
        any_user: bool = False,
        local_tls: ssl.SSLContext | None = None,
    ) -> None:
        self.spec = spec
        self.port = port
        self.any_user = any_user  # else only this user's programs (and root's): jitctl.client.peers
        # Postgres targets: answer a client's SSLRequest here and speak TLS with it (--local-tls
        # of connect and exec), for clients that insist on sslmode=require or verify-*.
        self.local_tls = local_tls
        # on_event(message, trouble): trouble is True for refusals, closures and losses.
        self.on_event = on_event or (lambda message, trouble: None)
        self._server: asyncio.Server | None = None
        self.sessions: list[str] = []
        self._relays: set[_LocalSide] = set()

    async def start(self) -> int:
        loop = asyncio.get_running_loop()
        try:
            self._server = await loop.create_server(
                lambda: _LocalSide(self), "127.0.0.1", self.port
            )
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
        relays = list(self._relays)
        for relay in relays:
            relay.finish()
        opening = [relay.opening for relay in relays if relay.opening is not None]
        await asyncio.gather(*opening, return_exceptions=True)


class _LocalSide(asyncio.Protocol):
    """One local connection: buffered (up to READ_AHEAD) until its tunnel is open, then relayed
    as frames. (Reading early, not leaving bytes in the kernel, lets a refused connection
    close with a FIN rather than a reset.)

    Callback-driven on both sides (jitctl.gateway.link says why): a local read becomes a data
    frame in `data_received`, a frame from the broker a local write. Each side is paused
    while the other does not take what it is given.
    """

    def __init__(self, listener: LocalListener) -> None:
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.link: Link | None = None
        self.session_id = ""
        self.decoder = frames.FrameDecoder()
        self.local_eof = False  # the local client half-closed (told the broker once it is open)
        self.early: list[bytes] = []  # what the local client sent before the tunnel was open
        self.early_size = 0
        self.done = False
        self.opening: asyncio.Task[None] | None = None  # _open: the tunnel being set up
        self.sniffing = listener.local_tls is not None  # the client's first 8 bytes not seen yet
        self.head = b""
        self.upgrading: asyncio.Task[None] | None = None
        self.tls: MemoryTLS | None = (
            None  # direct TLS (sslnegotiation=direct): jitctl.client.memtls
        )

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it:
        # no isinstance check here (jitctl.eventloop).
        self.transport = cast(asyncio.Transport, transport)
        if not self.listener.any_user:
            why = peers.refusal(transport.get_extra_info("peername")[:2], self._address())
            if why is not None:
                self.done = True
                self.listener.on_event(why, True)
                self.transport.abort()
                return
        self.listener._relays.add(self)
        self.opening = asyncio.ensure_future(self._open())

    def _address(self) -> tuple[str, int]:
        assert self.transport is not None
        host, port = self.transport.get_extra_info("sockname")[:2]
        return str(host), int(port)

    async def _open(self) -> None:
        listener = self.listener
        try:
            link, reply = await open_tunnel(listener.spec)
        except JitctlError as exc:
            listener.on_event(exc.diagnostics(), True)
            self.finish()
            return
        if self.done:  # the local client left, or the listener closed, meanwhile
            link.close()
            return
        self.link = link
        self.session_id = str(reply.get("session_id", ""))
        listener.sessions.append(self.session_id)
        listener.on_event(f"session {self.session_id} opened to {listener.spec.target}", False)
        link.on_writing_paused = self._broker_full
        link.divert(self._from_broker, self._broker_ended)
        for data in self.early:
            link.write(frames.data_frame(data))
        self.early.clear()
        if self.local_eof:
            link.write(frames.eof_frame())
        elif self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()

    # -- the local client -----------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self.tls is not None:
            self._decrypt(data)
            return
        if self.sniffing:
            self.head += data
            if len(self.head) < len(SSL_REQUEST):
                return
            self.sniffing = False
            data, self.head = self.head, b""
            if data.startswith(SSL_REQUEST):
                if len(data) > len(SSL_REQUEST):  # sent in the clear after asking for TLS
                    self._say("the local client sent data before its TLS handshake; closed")
                    return
                assert self.transport is not None
                self.transport.pause_reading()
                self.upgrading = asyncio.ensure_future(self._upgrade())
                return
            if data[0] == TLS_HANDSHAKE:  # a ClientHello at once: PostgreSQL 17's direct TLS
                assert self.listener.local_tls is not None
                self.tls = MemoryTLS(self.listener.local_tls)
                self._decrypt(data)
                return
        self._forward(data)

    def _forward(self, data: bytes) -> None:
        """The local client's (plaintext) bytes towards the broker."""
        if self.link is not None:
            self.link.write(frames.data_frame(data))
        elif not self.done:
            self.early.append(data)
            self.early_size += len(data)
            if self.early_size >= READ_AHEAD and self.transport is not None:
                self.transport.pause_reading()

    def _decrypt(self, data: bytes) -> None:
        assert self.tls is not None and self.transport is not None
        try:
            plain, reply = self.tls.receive(data)
        except ssl.SSLError as exc:
            self._say(f"TLS with the local client failed: {exc} ({LOCAL_TLS_HINT})")
            return
        if reply:
            self.transport.write(reply)
        if plain:
            self._forward(plain)
        if self.tls.closed:  # close_notify: the client's end of data
            self._local_eof()

    def _to_local(self, data: bytes) -> None:
        assert self.transport is not None
        if self.tls is None:
            self.transport.write(data)
            return
        try:
            self.transport.write(self.tls.send(data))
        except ssl.SSLError as exc:
            self._say(f"TLS with the local client failed: {exc}")

    async def _upgrade(self) -> None:
        """Say yes to the client's SSLRequest and take the TLS handshake (server side); what
        the client sends next (its StartupMessage) arrives decrypted in `data_received`."""
        assert self.transport is not None and self.listener.local_tls is not None
        self.transport.write(b"S")
        try:
            secured = await asyncio.get_running_loop().start_tls(
                self.transport,
                self,
                self.listener.local_tls,
                server_side=True,
                ssl_handshake_timeout=10,
            )
        except (OSError, TimeoutError) as exc:  # ssl.SSLError is an OSError
            self._say(f"TLS with the local client failed: {exc} ({LOCAL_TLS_HINT})")
            return
        if secured is None or self.done:
            return
        self.transport = secured

    def eof_received(self) -> bool:
        if self.sniffing:  # fewer than 8 bytes, then EOF: not ours to judge; the broker will
            self.sniffing, head, self.head = False, self.head, b""
            if head:
                self.data_received(head)
        self._local_eof()
        return True  # keep writing to the local client what the upstream still sends

    def _local_eof(self) -> None:
        if self.local_eof:
            return
        if self.link is not None:
            self.link.write(frames.eof_frame())
        self.local_eof = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.finish()  # the broker sees the tunnel close: the session ends

    def pause_writing(self) -> None:
        if self.link is not None:
            self.link.pause_reading()

    def resume_writing(self) -> None:
        if self.link is not None:
            self.link.resume_reading()

    # -- the broker -----------------------------------------------------------------------------

    def _broker_full(self, paused: bool) -> None:
        if self.transport is not None and not self.transport.is_closing():
            (self.transport.pause_reading if paused else self.transport.resume_reading)()

    def _from_broker(self, data: bytes) -> None:
        if self.done:
            return
        assert self.transport is not None
        try:
            events = self.decoder.feed(data)
        except RemoteProtocolError as exc:
            self._say(f"session {self.session_id} lost: {exc}")
            return
        for event in events:
            if isinstance(event, frames.Data):
                self._to_local(event.data)
            elif isinstance(event, frames.Eof):
                if self.tls is None and self.transport.can_write_eof():
                    self.transport.write_eof()
            else:
                if event.error and event.reason:
                    self._say(f"session {self.session_id} closed by the broker: {event.reason}")
                self.finish()
                return

    def _broker_ended(self, exc: Exception | None) -> None:
        if exc is None:
            reason = "the broker closed the connection"
            self._say(f"session {self.session_id} closed by the broker: {reason}")
        else:
            self._say(f"session {self.session_id} lost: {exc}")

    def _say(self, message: str) -> None:
        if not self.done:
            self.listener.on_event(message, True)
            self.finish()

    def finish(self) -> None:
        if self.done:
            return
        self.done = True
        self.listener._relays.discard(self)
        if self.transport is not None:
            self.transport.close()
        if self.link is not None:
            self.link.close()
        for task in (self.opening, self.upgrading):
            if task is not None and not task.done() and task is not asyncio.current_task():
                task.cancel()  # still dialling the broker, or in the handshake: stop

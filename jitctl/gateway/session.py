"""One admitted tunnel: write `session.start`, relay through the target's plugin, write the end.

A core-based session relays through `Relay` (relay.py: callbacks, write-ahead, flow control);
a plugin with its own shell gets the client as asyncio streams (shell_io.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from jitctl.audit.records import NewRecord
from jitctl.broker.identity import Identity
from jitctl.errors import ConfigError
from jitctl.gateway import frames
from jitctl.gateway.credentials import upstream_credential
from jitctl.gateway.link import Link
from jitctl.gateway.refusals import Refused, actor_of
from jitctl.gateway.relay import Relay, Upstream
from jitctl.gateway.starttls import UpstreamTlsError, open_upstream
from jitctl.plugin import SessionContext, UnknownProtocol, load_plugin

if TYPE_CHECKING:
    from jitctl.gateway.tunnel import TunnelGateway

log = logging.getLogger("jitctl.gateway")

# The client reads this; the setting is the broker operator's.
TLS_HINT = "the broker's operator sets TLS to this server per target (e.g. `postgres.tls`)"


class Session(Relay):
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
        self._init_relay()

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
        starttls = getattr(plugin, "upstream_tls", None)
        try:  # built and checked at broker start; a file gone since fails this session closed
            spec = starttls(self.target) if starttls is not None else None
        except ConfigError as exc:
            await self._refuse(Refused("unavailable", f"{self.target.name}: {exc.message}"))
            return
        tls: dict[str, Any] = {}
        try:
            if spec is None:
                transport, upstream = await asyncio.wait_for(
                    loop.create_connection(Upstream, host.strip("[]"), int(port)), timeout=10
                )
            else:
                transport, upstream, tls = await open_upstream(
                    host.strip("[]"), int(port), spec, Upstream
                )
        except (OSError, TimeoutError) as exc:
            reason = f"cannot reach {self.target.name} at {self.target.address}: {exc}"
            await self._refuse(Refused("upstream", reason))
            return
        except UpstreamTlsError as exc:
            reason = f"cannot reach {self.target.name} at {self.target.address} over TLS: {exc}"
            await self._refuse(Refused("upstream", reason, TLS_HINT))
            return
        try:
            await self.audit.append(
                self._new(
                    "session.start",
                    {
                        "protocol": self.target.protocol,
                        "upstream": self.target.address,
                        "broker": self.gateway.runtime.broker_id,
                        **({"upstream_tls": tls} if tls else {}),
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
        self._start_relay(upstream)
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

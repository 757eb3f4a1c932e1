"""The broker side of a tunnel: admit it, then hand it to a `Session` (jitctl.gateway.session).

Admission, in this order (each refusal is recorded, then answered with a code the CLI maps to
an exit status): the preamble parses; the token verifies (`auth`); the target exists
(`unknown_target`); the caller's groups meet `allow_groups` (`denied`); an access grant when
the target requires one (`denied`); the audit store is healthy (`unavailable`). The session then
checks the plugin (`unavailable`), the upstream credential (`unavailable`) and the upstream
itself (`upstream`); only then `session.start` is written (durably) and bytes flow.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from jitctl.broker.app import may_reach
from jitctl.broker.identity import Identity, TokenRejected
from jitctl.gateway import frames
from jitctl.gateway.approvals import SessionApprovals, admit_grant
from jitctl.gateway.link import Link, LinkClosed
from jitctl.gateway.refusals import Refused, actor_of
from jitctl.gateway.session import Session
from jitctl.plugin import RemoteProtocolError

log = logging.getLogger("jitctl.gateway")

__all__ = ["Refused", "TunnelGateway"]


class TunnelGateway:
    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.sessions: dict[str, asyncio.Task[Any]] = {}
        # Client-facing cancel key -> upstream cancel key, shared by a broker's sessions
        # (protocol-flow §55.2.7: cancels arrive on a new connection).
        self.cancel_registry: dict[bytes, Any] = {}

    async def handle(self, link: Link) -> None:
        peername = link.get_extra_info("peername")
        peer = f"{peername[0]}:{peername[1]}" if isinstance(peername, tuple) else ""
        try:
            await self._handle(link, peer)
        except ConnectionError:
            pass
        finally:
            await link.closed(timeout=2)

    async def _handle(self, link: Link, peer: str) -> None:
        try:
            preamble = frames.decode_line(await link.readline(timeout=15))
        except LinkClosed:
            return
        except (TimeoutError, ValueError, RemoteProtocolError) as exc:
            error = str(exc) or "no preamble within 15 seconds"
            link.write(frames.encode_line({"ok": False, "code": "protocol", "error": error}))
            return
        identity: Identity | None = None
        try:
            identity = await self._identity(preamble)
            target = self._admit(identity, preamble)
            grant = await admit_grant(self.runtime, identity, target)  # docs/approvals.md
        except Refused as refusal:
            await self._record_refusal(refusal, identity, preamble, peer)
            link.write(
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
            link.write(frames.encode_line(reply))
            return
        session = Session(self, identity, target, preamble, peer, link)
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
                    actor=actor_of(identity, preamble, peer),
                    payload={"code": refusal.code, "error": refusal.error},
                )
            )

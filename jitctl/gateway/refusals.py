"""Why a tunnel is refused, and who asked: shared by admission, credentials and sessions."""

from __future__ import annotations

from typing import Any

from jitctl.broker.identity import Identity


class Refused(Exception):
    def __init__(self, code: str, error: str, hint: str = "") -> None:
        super().__init__(error)
        self.code, self.error, self.hint = code, error, hint


def actor_of(identity: Identity | None, preamble: dict[str, Any], peer: str) -> Any:
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

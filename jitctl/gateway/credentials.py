"""The upstream credential a session uses: the broker's own secret, or one minted per caller.

Read at session start, so a rotated secret applies to the next session. A configured secret the
broker cannot find refuses the session with a clear reason (fail closed) instead of trying the
upstream with an empty one. The actor never sees any of it.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from jitctl.broker.identity import Identity
from jitctl.gateway.refusals import Refused

log = logging.getLogger("jitctl.gateway")


def resolve_credential(target: Any) -> dict[str, str]:
    """The upstream secret the plugin authenticates with; read at session start so a rotated
    secret applies to the next session. The actor never sees it."""
    cred = target.credential
    password = ""
    if cred.password_env:
        password = _from_env(target, cred.password_env)
    elif cred.password_file:
        try:
            password = Path(cred.password_file).read_text().strip()
        except OSError as exc:
            raise _no_secret(target, f"cannot read {cred.password_file}: {exc.strerror}") from None
    found = {"user": cred.user, "password": password, "database": cred.database}
    if cred.token_env:  # http: a static bearer token or API key
        found["token"] = _from_env(target, cred.token_env)
    return found


def _from_env(target: Any, name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise _no_secret(target, f"environment variable {name} is not set")
    return value


def _no_secret(target: Any, why: str) -> Refused:
    """A configured secret the broker cannot find: refuse clearly rather than try upstream
    with an empty one (which fails later with a confusing authentication error)."""
    log.error(
        "upstream credential missing",
        extra={"event": "credential.error", "target": target.name, "error": why},
    )
    return Refused(
        "unavailable",
        f"the broker has no credential for {target.name}: {why}",
        "the broker's operator must fix the target's credential",
    )


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

"""GCP federation in the broker: who may get what, minted and recorded (docs/gcp.md).

The chain (DESIGN.md §8): the broker mints its own short JWT naming the caller
(`gcp_subject`), exchanges it at STS, optionally impersonates a service account and downscopes
the token (`gcp_chain`, google-auth in a worker thread).

Rules:
- Policy first: a gcp target's `allow_groups` must meet the caller's groups.
- Lifetimes: an impersonated token lives `min(target.lifetime, gcp.max_lifetime)` (and for
  Cloud SQL logins, no longer than the database target's `max_session`); the subject token
  `min(gcp.subject_token_lifetime, that)`.
- Every mint is recorded (`gcp.credential`: caller, principal, scopes, boundary, expiry, a
  fingerprint, never the token) before the token is handed out: no audit store, no token.
  Every failure is recorded (`gcp.credential.error`, with the stage and the upstream reason);
  so is every subject token handed to an external-account client (`gcp.subject_token`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import uuid
from dataclasses import dataclass
from typing import Any

from jitctl.broker.gcp_chain import (
    GcpError,
    boundary_rules,
    exchange,
    federated_principal,
    impersonation_url,
)
from jitctl.broker.gcp_subject import JWT_TOKEN_TYPE, SubjectToken, SubjectTokenSigner
from jitctl.broker.identity import Identity
from jitctl.config import GcpSection, GcpTarget

SQL_LOGIN_SCOPE = "https://www.googleapis.com/auth/sqlservice.login"


@dataclass(frozen=True)
class Minted:
    token: str
    expires_at: int  # epoch seconds
    principal: str  # the service account, or the federated principal without one
    federated_principal: str
    service_account: str
    scopes: list[str]
    boundary: list[dict[str, Any]] | None
    grant_id: str


def cloudsql_username(email: str) -> str:
    """Cloud SQL IAM rules: a service account logs in as its email minus .gserviceaccount.com."""
    suffix = ".gserviceaccount.com"
    return email[: -len(suffix)] if email.endswith(suffix) else email


def _actor(identity: Identity | None, peer: str = "", subject: str = "") -> Any:
    from jitctl.audit import Actor

    if identity is None:
        return Actor(subject=subject, client_addr=peer)
    return Actor(
        subject=identity.subject,
        email=identity.email,
        groups=identity.groups,
        issuer=identity.issuer,
        client_addr=peer,
    )


class GcpBroker:
    def __init__(self, runtime: Any) -> None:
        self.runtime = runtime
        self.section: GcpSection = runtime.config.gcp
        self.issuer = self.section.issuer or f"{runtime.public_url}/gcp"
        self.signer = SubjectTokenSigner(runtime.state_dir, self.issuer)

    # -- policy ------------------------------------------------------------------------------

    def choose(self, identity: Identity, name: str | None) -> GcpTarget:
        if name:
            target = self.section.target(name)
            if target is None:
                raise GcpError(404, "unknown_target", f"no gcp target named {name!r}", "policy")
            if not set(target.allow_groups) & set(identity.groups):
                raise GcpError(
                    403,
                    "denied",
                    f"{identity.subject} may not use gcp target {name!r} (needs one of the "
                    f"groups: {', '.join(target.allow_groups) or 'none configured'})",
                    "policy",
                )
            return target
        mine = [t for t in self.section.targets if set(t.allow_groups) & set(identity.groups)]
        if len(mine) == 1:
            return mine[0]
        if not mine:
            raise GcpError(403, "denied", f"{identity.subject} may use no gcp target", "policy")
        names = ", ".join(t.name for t in mine)
        raise GcpError(
            400, "target_required", f"choose a gcp target with --target: {names}", "policy"
        )

    def _check_audit(self) -> None:
        audit = self.runtime.audit
        if audit is None or not audit.healthy:
            raise GcpError(
                503,
                "unavailable",
                "the broker cannot record credentials right now (audit store unavailable), "
                "so it mints none",
                "audit",
            )

    # -- minting -----------------------------------------------------------------------------

    def _subject_token(
        self, identity: Identity, target: GcpTarget, grant_id: str, lifetime: float
    ) -> SubjectToken:
        try:
            return self.signer.mint(
                subject=identity.subject,
                audience=target.audience,
                lifetime=min(self.section.subject_token_lifetime, lifetime),
                extra={
                    "idp": identity.issuer,
                    "email": identity.email,
                    "groups": list(identity.groups),
                    "target": target.name,
                    "grant": grant_id,
                    "act": identity.claims.get("act"),
                },
            )
        except ValueError as exc:
            raise GcpError(400, "invalid_subject", str(exc), "subject") from None

    async def mint(
        self,
        identity: Identity,
        target: GcpTarget,
        *,
        purpose: str = "token",
        scopes: list[str] | None = None,
        lifetime: float | None = None,
        boundary: bool = True,
        record_target: str = "",
        session_id: str = "",
        peer: str = "",
    ) -> Minted:
        """The whole chain for `identity`; recorded before it is returned."""
        from jitctl.audit import AuditUnavailable, NewRecord

        self._check_audit()
        grant_id = uuid.uuid4().hex
        scopes = list(scopes or target.scopes)
        seconds = int(min(lifetime or target.lifetime, target.lifetime, self.section.max_lifetime))
        subject = self._subject_token(identity, target, grant_id, seconds)
        token, expires_at = await asyncio.to_thread(
            exchange, self.section, target, subject.token, scopes, seconds, boundary
        )
        rules = boundary_rules(target) if boundary else None
        minted = Minted(
            token=token,
            expires_at=expires_at,
            principal=target.service_account
            or federated_principal(target.audience, identity.subject),
            federated_principal=federated_principal(target.audience, identity.subject),
            service_account=target.service_account,
            scopes=scopes,
            boundary=rules,
            grant_id=grant_id,
        )
        payload = {
            "purpose": purpose,
            "gcp_target": target.name,
            "grant_id": grant_id,
            "principal": minted.principal,
            "federated_principal": minted.federated_principal,
            "service_account": minted.service_account or None,
            "scopes": scopes,
            "boundary": rules,
            "expires_at": expires_at,
            "lifetime_s": seconds if target.service_account else None,
            "subject_token_jti": subject.jti,
            "audience": target.audience,
            # A fingerprint lets incident response match a leaked token to this record.
            "token_sha256": hashlib.sha256(token.encode()).hexdigest()[:16],
        }
        try:
            await self.runtime.audit.append(
                NewRecord(
                    kind="gcp.credential",
                    session_id=session_id,
                    target=record_target or target.name,
                    actor=_actor(identity, peer),
                    payload=payload,
                )
            )
        except AuditUnavailable as exc:
            raise GcpError(
                503, "unavailable", f"not recorded, so not handed out: {exc}", "audit"
            ) from None
        return minted

    async def subject_token(
        self, identity: Identity, target: GcpTarget, peer: str = ""
    ) -> dict[str, Any]:
        """For the external-account flow: the client exchanges this JWT itself."""
        from jitctl.audit import AuditUnavailable, NewRecord

        if target.boundary:
            raise GcpError(
                400,
                "unsupported",
                f"gcp target {target.name!r} has a credential access boundary, which an "
                "external_account config cannot carry; use --format token",
                "policy",
            )
        self._check_audit()
        grant_id = uuid.uuid4().hex
        subject = self._subject_token(identity, target, grant_id, target.lifetime)
        payload = {
            "purpose": "external-account",
            "gcp_target": target.name,
            "grant_id": grant_id,
            "federated_principal": federated_principal(target.audience, identity.subject),
            "service_account": target.service_account or None,
            "scopes": list(target.scopes),
            "expires_at": subject.expires_at,
            "subject_token_jti": subject.jti,
            "audience": target.audience,
        }
        try:
            await self.runtime.audit.append(
                NewRecord(
                    kind="gcp.subject_token",
                    target=target.name,
                    actor=_actor(identity, peer),
                    payload=payload,
                )
            )
        except AuditUnavailable as exc:
            raise GcpError(
                503, "unavailable", f"not recorded, so not handed out: {exc}", "audit"
            ) from None
        sa = target.service_account
        return {
            "target": target.name,
            "subject_token": subject.token,
            "token_type": JWT_TOKEN_TYPE,
            "expires_at": subject.expires_at,
            "audience": target.audience,
            "token_url": self.section.sts_endpoint,
            "scopes": list(target.scopes),
            "service_account": sa or None,
            "service_account_impersonation_url": impersonation_url(self.section, sa)
            if sa
            else None,
            "token_lifetime_seconds": int(min(target.lifetime, self.section.max_lifetime))
            if sa
            else None,
        }

    async def record_error(
        self,
        identity: Identity | None,
        target: str,
        error: GcpError,
        *,
        purpose: str = "token",
        peer: str = "",
        unverified_subject: str = "",
        session_id: str = "",
    ) -> None:
        from jitctl.audit import AuditUnavailable, NewRecord

        audit = self.runtime.audit
        if audit is None or not audit.healthy:
            return
        payload: dict[str, Any] = {
            "purpose": purpose,
            "stage": error.stage,
            "error": error.error,
            "reason": error.reason[:2000],
            "upstream": error.upstream or None,
        }
        if unverified_subject:
            payload["unverified_subject"] = unverified_subject[:200]
        with contextlib.suppress(AuditUnavailable):
            await audit.append(
                NewRecord(
                    kind="gcp.credential.error",
                    session_id=session_id,
                    target=target[:200],
                    actor=_actor(identity, peer),
                    payload=payload,
                )
            )


def broker_of(runtime: Any) -> GcpBroker:
    """The runtime's GcpBroker (made on first use; the API extension makes it at start)."""
    existing = getattr(runtime, "gcp", None)
    if isinstance(existing, GcpBroker):
        return existing
    created = GcpBroker(runtime)
    runtime.gcp = created
    return created


async def gcp_database_credential(
    runtime: Any, target: Any, identity: Identity, *, session_id: str = ""
) -> dict[str, str]:
    """Cloud SQL IAM login for a target with `credential = { gcp = "<gcp target>" }`: a fresh
    sqlservice.login token as the password, the service account's Cloud SQL user name.
    Recorded as `gcp.credential` (purpose cloudsql-login); raises GcpError, also recorded."""
    broker = broker_of(runtime)
    gcp_target = broker.section.target(target.credential.gcp)
    try:
        if gcp_target is None or not gcp_target.service_account:  # config validation prevents it
            raise GcpError(
                500, "config", f"gcp target {target.credential.gcp!r} is not usable", "policy"
            )
        minted = await broker.mint(
            identity,
            gcp_target,
            purpose="cloudsql-login",
            scopes=[SQL_LOGIN_SCOPE],
            lifetime=min(gcp_target.lifetime, target.max_session),
            boundary=False,
            record_target=target.name,
            session_id=session_id,
        )
    except GcpError as exc:
        await broker.record_error(identity, target.name, exc, purpose="cloudsql-login")
        raise
    return {
        "user": cloudsql_username(minted.service_account),
        "password": minted.token,
        "database": target.credential.database,
        "expires_at": str(minted.expires_at),
    }


async def gcp_access_token(
    runtime: Any, target: Any, identity: Identity, *, session_id: str = ""
) -> dict[str, str]:
    """A GCP access token for an http target with `credential = { gcp = "<gcp target>" }`:
    minted for this caller exactly as `jitctl gcp token` would be (scopes, boundary), lasting
    at most the session. Recorded as `gcp.credential` (purpose http-proxy); raises GcpError."""
    broker = broker_of(runtime)
    gcp_target = broker.section.target(target.credential.gcp)
    try:
        if gcp_target is None:  # config validation prevents it
            raise GcpError(
                500, "config", f"gcp target {target.credential.gcp!r} is not usable", "policy"
            )
        minted = await broker.mint(
            identity,
            gcp_target,
            purpose="http-proxy",
            lifetime=min(gcp_target.lifetime, target.max_session),
            record_target=target.name,
            session_id=session_id,
        )
    except GcpError as exc:
        await broker.record_error(identity, target.name, exc, purpose="http-proxy")
        raise
    return {"token": minted.token, "expires_at": str(minted.expires_at)}


__all__ = [
    "GcpBroker",
    "GcpError",
    "Minted",
    "broker_of",
    "cloudsql_username",
    "exchange",
    "federated_principal",
    "gcp_access_token",
    "gcp_database_credential",
]

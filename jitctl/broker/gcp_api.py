"""The broker's GCP endpoints, added through `Runtime.app_extensions` (see run.py).

- `GET /gcp/jwks`, `GET /gcp/.well-known/openid-configuration`: the public key of the broker's
  subject tokens. Upload the JWKS as the WIF provider's `jwksJson` (or let a provider that can
  reach the broker read it by discovery).
- `POST /v1/creds/gcp` `{"target"?}`: the whole chain; answers the access token, its expiry,
  the principal obtained, scopes, service account and boundary.
- `POST /v1/creds/gcp/subject-token` `{"target"?}`: just the broker's subject token plus what an
  `external_account` config needs (the executable-sourced flow, docs/gcp.md).

Errors are `{"error", "reason", "stage", "upstream"?}`: 401 the caller's identity, 403 policy or
GCP said no (`denied`, `upstream_denied`), 404 unknown target, 400 a bad request, 502 STS or
IAM failed (`upstream_error`, `upstream_unreachable`), 503 no audit store. Each failure is also
a `gcp.credential.error` record; a rejected identity is recorded with the token's unverified
`sub` as `unverified_subject`.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from jitctl.broker.app import ApiError, current_identity
from jitctl.broker.gcp import GcpBroker, GcpError, broker_of
from jitctl.broker.identity import Identity


class CredsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str | None = None


class GcpCredential(BaseModel):
    target: str
    access_token: str
    token_type: str = "Bearer"
    expires_at: int
    expire_time: str
    principal: str
    scopes: list[str]
    service_account: str | None
    boundary: list[dict[str, Any]] | None
    grant_id: str


class GcpSubjectToken(BaseModel):
    target: str
    subject_token: str
    token_type: str
    expires_at: int
    audience: str
    token_url: str
    scopes: list[str]
    service_account: str | None
    service_account_impersonation_url: str | None
    token_lifetime_seconds: int | None


def _unverified_subject(request: Request) -> str:
    import jwt

    _, _, token = request.headers.get("authorization", "").partition(" ")
    try:
        sub = jwt.decode(token.strip(), options={"verify_signature": False}).get("sub")
    except jwt.InvalidTokenError:
        return ""
    return str(sub) if sub else ""


def _peer(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else ""


async def _caller(
    broker: GcpBroker, request: Request, target: str | None, purpose: str = "token"
) -> Identity:
    """`current_identity`, plus a record when it refuses (e.g. the caller's token expired)."""
    try:
        return await current_identity(request)
    except ApiError as exc:
        error = GcpError(exc.status, exc.error, exc.reason, "identity")
        await broker.record_error(
            None,
            target or "",
            error,
            purpose=purpose,
            peer=_peer(request),
            unverified_subject=_unverified_subject(request),
        )
        raise


def install(app: FastAPI, runtime: Any) -> None:
    broker = broker_of(runtime)
    router = APIRouter(tags=["gcp"])

    @router.get("/gcp/jwks")
    async def jwks() -> dict[str, Any]:
        """Public keys of the broker's GCP subject tokens (the provider's jwksJson)."""
        return broker.signer.jwks()

    @router.get("/gcp/.well-known/openid-configuration")
    async def discovery() -> dict[str, Any]:
        return {
            "issuer": broker.issuer,
            "jwks_uri": f"{runtime.public_url}/gcp/jwks",
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
        }

    @router.post("/v1/creds/gcp", response_model=None)
    async def creds(body: CredsRequest, request: Request) -> GcpCredential | JSONResponse:
        """A short-lived GCP access token for the caller (STS, impersonation, downscoping)."""
        identity = await _caller(broker, request, body.target)
        try:
            target = broker.choose(identity, body.target)
            minted = await broker.mint(identity, target, peer=_peer(request))
        except GcpError as exc:
            await broker.record_error(identity, body.target or "", exc, peer=_peer(request))
            return JSONResponse(exc.body(), status_code=exc.status)
        expire = dt.datetime.fromtimestamp(minted.expires_at, dt.UTC)
        return GcpCredential(
            target=target.name,
            access_token=minted.token,
            expires_at=minted.expires_at,
            expire_time=expire.strftime("%Y-%m-%dT%H:%M:%SZ"),
            principal=minted.principal,
            scopes=minted.scopes,
            service_account=minted.service_account or None,
            boundary=minted.boundary,
            grant_id=minted.grant_id,
        )

    @router.post("/v1/creds/gcp/subject-token", response_model=None)
    async def subject_token(body: CredsRequest, request: Request) -> GcpSubjectToken | JSONResponse:
        """The broker's subject token for the caller, for a client that calls STS itself."""
        identity = await _caller(broker, request, body.target, "external-account")
        try:
            target = broker.choose(identity, body.target)
            answer = await broker.subject_token(identity, target, peer=_peer(request))
        except GcpError as exc:
            await broker.record_error(
                identity, body.target or "", exc, purpose="external-account", peer=_peer(request)
            )
            return JSONResponse(exc.body(), status_code=exc.status)
        return GcpSubjectToken(**answer)

    app.include_router(router)

"""The broker's HTTP API (FastAPI): health, identity, targets; the dev issuer in --dev mode.

Every endpoint under /v1 except /v1/info needs `Authorization: Bearer <token>`; a rejected
token gets 401 with `{"error": "invalid_token", "reason": ...}` and a matching
`WWW-Authenticate` header (RFC 6750 §3), so the CLI can show the reason.
The OpenAPI schema is published at /openapi.json.
"""

from __future__ import annotations

import logging
import time
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from jitctl import __version__
from jitctl.broker.identity import Identity, TokenRejected
from jitctl.broker.runtime import Runtime
from jitctl.config import Target

log = logging.getLogger("jitctl.broker.api")


class ApiError(Exception):
    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason = status, error, reason


class WhoAmI(BaseModel):
    subject: str
    email: str
    groups: list[str]
    issuer: str
    expires_at: int


class RuleView(BaseModel):
    name: str
    match: dict[str, list[str]]
    action: str


class TargetView(BaseModel):
    name: str
    protocol: str
    description: str
    max_session: float
    default_action: str
    rules: list[RuleView]
    masks: list[dict[str, list[str]]]
    access: dict[str, Any] = {}  # how to get in: request needed, approvers, limits


class TargetList(BaseModel):
    targets: list[TargetView]


class LoginInfo(BaseModel):
    issuer: str
    client_id: str
    scopes: list[str]


class Info(BaseModel):
    version: str
    dev: bool
    login: LoginInfo | None


def may_reach(identity: Identity, target: Target) -> bool:
    """A target is reachable when its allow_groups meet the caller's groups."""
    return bool(set(target.allow_groups) & set(identity.groups))


def target_view(target: Target) -> TargetView:
    return TargetView(
        name=target.name,
        protocol=target.protocol,
        description=target.description,
        max_session=target.max_session,
        default_action=target.default_action,
        rules=[
            RuleView(
                name=rule.name or f"rule {index + 1}",
                match={k: v for k, v in rule.match.model_dump().items() if v},
                action=rule.action,
            )
            for index, rule in enumerate(target.rules)
        ],
        masks=[{k: v for k, v in mask.model_dump().items() if v} for mask in target.masks],
        access=_access_view(target),
    )


def _access_view(target: Target) -> dict[str, Any]:
    access = getattr(target, "access", None)
    if access is None:
        return {}
    view = {
        "require_request": access.require_request,
        "approvers": list(access.approvers),
        "min_approvals": access.min_approvals,
        "max_duration": access.max_duration,
        "auto_approve_groups": list(access.auto_approve_groups),
        "approval_timeout": access.approval_timeout,
    }
    return view  # never the webhook URL: it is a secret


async def current_identity(request: Request) -> Identity:
    """The verified caller; 401 with the reason otherwise."""
    runtime: Runtime = request.app.state.runtime
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise ApiError(401, "invalid_request", "no bearer token; run `jitctl login`")
    try:
        return await runtime.verifier.verify(token.strip())
    except TokenRejected as exc:
        log.info("token rejected", extra={"event": "auth.rejected", "reason": exc.reason})
        raise ApiError(401, "invalid_token", exc.reason) from None


Caller = Annotated[Identity, Depends(current_identity)]


def create_app(runtime: Runtime) -> FastAPI:
    app = FastAPI(
        title="jitctl broker",
        version=__version__,
        description="Just-in-time access broker API.",
        docs_url=None,
        redoc_url=None,
    )
    app.state.runtime = runtime

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> JSONResponse:
        headers = {}
        if exc.status == 401:
            reason = exc.reason.replace('"', "'")
            headers["WWW-Authenticate"] = (
                f'Bearer error="{exc.error}", error_description="{reason}"'
            )
        return JSONResponse(
            {"error": exc.error, "reason": exc.reason}, status_code=exc.status, headers=headers
        )

    @app.middleware("http")
    async def _access_log(request: Request, call_next: Any) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        log.info(
            "http request",
            extra={
                "event": "http.request",
                "method": request.method,
                "path": request.url.path,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                "client": request.client.host if request.client else "",
            },
        )
        return response

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """Liveness: the process answers."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Readiness: the audit store is writable, so new sessions can be recorded."""
        problem = runtime.readiness_problem()
        if problem:
            return JSONResponse({"status": "not ready", "reason": problem}, status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/v1/info")
    async def info() -> Info:
        """What a client needs before it has an identity: version and how to log in."""
        login = runtime.login_info()
        return Info(
            version=__version__,
            dev=runtime.dev,
            login=LoginInfo(**login) if login else None,
        )

    @app.get("/v1/whoami")
    async def whoami(identity: Caller) -> WhoAmI:
        """The verified identity behind the bearer token."""
        return WhoAmI(**identity.public())

    @app.get("/v1/targets")
    async def targets(identity: Caller) -> TargetList:
        """Targets whose allow_groups meet the caller's groups, with their rules."""
        return TargetList(
            targets=[target_view(t) for t in runtime.config.targets if may_reach(identity, t)]
        )

    if runtime.dev_issuer is not None:
        app.include_router(runtime.dev_issuer.router(), prefix="/dev/oidc", tags=["dev issuer"])

    runtime.extend_app(app)
    return app

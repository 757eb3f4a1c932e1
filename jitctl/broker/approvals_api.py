"""The broker's approval endpoints, added through `Runtime.app_extensions` (see run.py).

- `POST /v1/requests` `{"target", "reason", "duration"}`: ask for access (duration "30m" or
  seconds); 201 with the request (already `approved` when the caller is auto-approved).
- `GET /v1/requests?mine=&pending=`: the requests the caller may see (their own, and those
  they may approve), newest first, as `{"requests": [...]}`.
- `GET /v1/requests/{id}`: one request.
- `POST /v1/requests/{id}/approve|deny|revoke` `{"reason"}`: decide; deny needs a reason.

Every route needs the caller's bearer token (`Caller`). Errors are `{"error", "reason"}`:
400 a bad request, 403 not allowed (`self_approval`, `not_an_approver`, `denied`), 404 no
such request (or not one the caller may see), 409 already decided or voted, 503 the store
or the audit trail is unavailable.
"""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from jitctl.approvals.rules import Problem
from jitctl.broker.app import Caller


class AccessBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    target: str
    reason: str = Field(max_length=2000)
    duration: str | float = "30m"


class DecisionBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str = Field(default="", max_length=2000)


async def open_approvals(runtime: Any) -> Any:
    """The approvals service on the audit store's database (its own tables)."""
    from jitctl.approvals.service import Approvals
    from jitctl.approvals.store import StoreUnavailable, open_approval_store
    from jitctl.broker.gateway_glue import store_url
    from jitctl.errors import ConfigError

    try:
        store = open_approval_store(store_url(runtime.config, runtime.state_dir))
    except StoreUnavailable as exc:
        raise ConfigError(
            str(exc), "check broker.store and that the database is reachable"
        ) from None
    approvals = Approvals(runtime.config, store, runtime.audit, runtime.broker_id)
    await approvals.start()
    return approvals


def _problem(exc: Problem) -> JSONResponse:
    return JSONResponse({"error": exc.error, "reason": exc.reason}, status_code=exc.status)


def _duration(value: str | float) -> float:
    from jitctl.durations import parse_duration

    if isinstance(value, int | float):
        return float(value)
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise Problem(400, "invalid_request", str(exc)) from None


def install(app: FastAPI, runtime: Any) -> None:
    router = APIRouter(tags=["approvals"])

    def service() -> Any:
        if runtime.approvals is None:
            raise Problem(503, "unavailable", "this broker has no approvals service")
        return runtime.approvals

    @router.post("/v1/requests", status_code=201, response_model=None)
    async def create(body: AccessBody, identity: Caller) -> dict[str, Any] | JSONResponse:
        """Ask for access to a target for a while."""
        try:
            request = await service().request_access(
                identity, body.target, body.reason, _duration(body.duration)
            )
        except Problem as exc:
            return _problem(exc)
        return request.view(time.time())  # type: ignore[no-any-return]

    @router.get("/v1/requests", response_model=None)
    async def listing(
        identity: Caller, mine: bool = False, pending: bool = False
    ) -> dict[str, Any] | JSONResponse:
        """Requests the caller made or may decide."""
        try:
            found = await service().visible(identity, mine=mine, pending=pending)
        except Problem as exc:
            return _problem(exc)
        now = time.time()
        return {"requests": [request.view(now) for request in found]}

    @router.get("/v1/requests/{request_id}", response_model=None)
    async def one(request_id: str, identity: Caller) -> dict[str, Any] | JSONResponse:
        try:
            request = await service().get(request_id, identity)
        except Problem as exc:
            return _problem(exc)
        return request.view(time.time())  # type: ignore[no-any-return]

    async def _decide(
        request_id: str, identity: Any, action: str, reason: str
    ) -> dict[str, Any] | JSONResponse:
        try:
            if action == "revoke":
                request = await service().revoke(request_id, identity, reason)
            else:
                request = await service().decide(request_id, identity, action, reason)
        except Problem as exc:
            return _problem(exc)
        return request.view(time.time())  # type: ignore[no-any-return]

    @router.post("/v1/requests/{request_id}/approve", response_model=None)
    async def approve(
        request_id: str, body: DecisionBody, identity: Caller
    ) -> dict[str, Any] | JSONResponse:
        """Approve (counts once per approver; never the requester's own)."""
        return await _decide(request_id, identity, "approve", body.reason)

    @router.post("/v1/requests/{request_id}/deny", response_model=None)
    async def deny(
        request_id: str, body: DecisionBody, identity: Caller
    ) -> dict[str, Any] | JSONResponse:
        """Deny (a reason is required); a held statement then fails."""
        return await _decide(request_id, identity, "deny", body.reason)

    @router.post("/v1/requests/{request_id}/revoke", response_model=None)
    async def revoke(
        request_id: str, body: DecisionBody, identity: Caller
    ) -> dict[str, Any] | JSONResponse:
        """Withdraw a pending request, or end a grant (its sessions end too)."""
        return await _decide(request_id, identity, "revoke", body.reason)

    app.include_router(router)

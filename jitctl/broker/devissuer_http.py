"""The HTTP face of the development issuer: FastAPI routes over `DevIssuer`'s grant logic.

Rules:
- Token-endpoint errors are RFC 6749 §5.2 JSON with `Cache-Control: no-store`; a failed client
  authentication is 401 `invalid_client` (with `WWW-Authenticate: Basic` when Basic was tried).
- Authorization errors go back to the client's redirect URI, except a bad client or redirect
  URI, which get an HTML error page (RFC 6749 §4.1.2.1).
- Every HTML page carries the "development issuer — not for production" banner.
- Bodies are parsed here (urlencoded only), so FastAPI needs no python-multipart.
"""

from __future__ import annotations

import base64
import binascii
import html
from typing import Any
from urllib.parse import parse_qs, unquote

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from jitctl.broker.devissuer import WARNING, DevIssuer
from jitctl.broker.devissuer_errors import OAuthError

_NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    """An HTML page with the development warning on top."""
    text = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)} — jitctl dev issuer</title></head><body>"
        f"<p style='background:#fde68a;padding:.5em'><strong>{WARNING}</strong></p>"
        f"<h1>{html.escape(title)}</h1>{body}</body></html>"
    )
    return HTMLResponse(text, status_code=status, headers=_NO_STORE)


async def read_form(request: Request) -> dict[str, str]:
    """An urlencoded body as a dict of first values (RFC 6749 §3.2 requires this encoding)."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/x-www-form-urlencoded":
        raise OAuthError("invalid_request", "send application/x-www-form-urlencoded")
    raw = (await request.body()).decode("utf-8", "replace")
    return {k: v[0] for k, v in parse_qs(raw, keep_blank_values=True).items()}


def _basic(request: Request) -> tuple[str, str] | None:
    """client_secret_basic credentials; RFC 6749 §2.3.1 form-encodes both halves."""
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        user, sep, secret = base64.b64decode(value, validate=True).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError):
        raise OAuthError("invalid_client", "malformed Basic credentials", 401) from None
    if not sep:
        raise OAuthError("invalid_client", "malformed Basic credentials", 401)
    return unquote(user.replace("+", " ")), unquote(secret.replace("+", " "))


def _error(exc: OAuthError, *, basic: bool = False) -> JSONResponse:
    headers = dict(_NO_STORE)
    if exc.status == 401 and basic:
        headers["WWW-Authenticate"] = 'Basic realm="jitctl dev issuer"'
    return JSONResponse(
        {"error": exc.error, "error_description": exc.description},
        status_code=exc.status,
        headers=headers,
    )


def _hidden(params: dict[str, str]) -> str:
    return "".join(
        f"<input type='hidden' name='{html.escape(k)}' value='{html.escape(v)}'>"
        for k, v in params.items()
        if k not in ("user", "action")
    )


def build_router(issuer: DevIssuer) -> APIRouter:
    router = APIRouter()

    @router.get("/.well-known/openid-configuration")
    async def discovery() -> dict[str, Any]:
        return issuer.discovery()

    @router.get("/jwks")
    async def jwks() -> dict[str, Any]:
        return issuer.jwks()

    def _user_picker(params: dict[str, str]) -> HTMLResponse:
        buttons = "".join(
            f"<p><button name='user' value='{html.escape(u.name)}'>{html.escape(u.name)}</button>"
            f" {html.escape(u.email)} — groups: {html.escape(', '.join(u.groups) or '(none)')}</p>"
            for u in issuer.users()
        )
        form = (
            "<form method='post' action='authorize'>"
            f"{_hidden(params)}<p>Log in to jitctl as:</p>{buttons}"
            "<p><button name='action' value='deny'>Deny</button></p></form>"
        )
        return page("Choose a development user", form)

    def _answer(params: dict[str, str], user: str | None, deny: bool = False) -> Response:
        try:
            target = issuer.authorize(params, user, deny=deny)
        except OAuthError as exc:
            return page("Login request refused", f"<p>{html.escape(exc.description)}</p>", 400)
        if target is None:
            return _user_picker(params)
        return RedirectResponse(target, status_code=302, headers=_NO_STORE)

    @router.get("/authorize")
    async def authorize_get(request: Request) -> Response:
        params = dict(request.query_params)
        hint = params.get("login_hint") or issuer.dev.auto_approve_user or None
        return _answer(params, hint)

    @router.post("/authorize")
    async def authorize_post(request: Request) -> Response:
        try:
            params = await read_form(request)
        except OAuthError as exc:
            return page("Login request refused", f"<p>{html.escape(exc.description)}</p>", 400)
        deny = params.get("action") == "deny"
        return _answer(params, params.get("user", ""), deny=deny)

    @router.post("/token")
    async def token(request: Request) -> Response:
        basic = None
        try:
            basic = _basic(request)
            form = await read_form(request)
            body = issuer.token(form, basic)
        except OAuthError as exc:
            return _error(exc, basic=basic is not None)
        return JSONResponse(body, headers=_NO_STORE)

    @router.post("/device_authorization")
    async def device_authorization(request: Request) -> Response:
        try:
            body = issuer.device_authorization(await read_form(request))
        except OAuthError as exc:
            return _error(exc)
        return JSONResponse(body, headers=_NO_STORE)

    @router.get("/device")
    async def device_get(user_code: str = "") -> HTMLResponse:
        options = "".join(
            f"<option value='{html.escape(u.name)}'>{html.escape(u.name)} ({html.escape(u.email)})"
            "</option>"
            for u in issuer.users()
        )
        form = (
            "<form method='post' action='device'>"
            f"<p>Code: <input name='user_code' value='{html.escape(user_code)}'></p>"
            f"<p>As: <select name='user'>{options}</select></p>"
            "<p>Check that this code is the one your terminal shows.</p>"
            "<button name='action' value='approve'>Approve</button> "
            "<button name='action' value='deny'>Deny</button></form>"
        )
        return page("Approve a device login", form)

    @router.post("/device")
    async def device_post(request: Request) -> HTMLResponse:
        try:
            form = await read_form(request)
            action = form.get("action", "approve")
            if action not in ("approve", "deny"):
                raise OAuthError("invalid_request", "action must be approve or deny")
            text = issuer.decide_device(
                form.get("user_code", ""), form.get("user", ""), approve=action == "approve"
            )
        except OAuthError as exc:
            return page("Device login refused", f"<p>{html.escape(exc.description)}</p>", 400)
        return page("Device login", f"<p>{html.escape(text)}</p>")

    @router.api_route("/userinfo", methods=["GET", "POST"])
    async def userinfo(request: Request) -> Response:
        import jwt

        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        try:
            if scheme.lower() != "bearer" or not token:
                raise jwt.InvalidTokenError("no bearer token")
            claims = issuer.verify(token.strip())
        except jwt.InvalidTokenError as exc:
            return JSONResponse(
                {"error": "invalid_token", "error_description": str(exc)},
                status_code=401,
                headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
            )
        keys = ("sub", "email", "email_verified", "name", "groups")
        return JSONResponse({k: claims[k] for k in keys if k in claims})

    return router

"""The OIDC login flows the CLI runs: authorization code + PKCE on a loopback redirect, and the
device grant.

Rules:
- The IdP comes from the broker (`/v1/info` → `login.issuer`), then its discovery document;
  the discovery's `issuer` must equal that URL exactly (OIDC Discovery §4.3).
- PKCE (RFC 7636): a 64-char verifier from `secrets`, S256 only. RFC 8252 §7.3/§8.3: the redirect
  is `http://127.0.0.1:<ephemeral port>/callback`. `state` is checked at the callback, `nonce` in
  the ID token, `iss` in the response when present (RFC 9207).
- The login URL is always printed to stderr; a browser opens only where one can.
- Device grant (RFC 8628 §3.5): wait `interval` between polls, +5 s on `slow_down`;
  `access_denied` and `expired_token` end it.
- The ID token came straight from the token endpoint over verified TLS, so its signature is not
  checked here (OIDC Core §3.1.3.7 item 6); the broker verifies it on every call.
"""

from __future__ import annotations

import http.server
import os
import secrets
import sys
import threading
import time
import webbrowser
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx

from jitctl.client.api import http_client, reason_of, transport_errors
from jitctl.errors import AuthError, JitctlError
from jitctl.jose import s256

Say = Callable[[str], None]


def _stderr(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


@dataclass(frozen=True)
class Provider:
    """What the CLI needs to know about the IdP, from /v1/info and discovery."""

    issuer: str
    client_id: str
    scopes: list[str]
    authorization_endpoint: str
    token_endpoint: str
    device_authorization_endpoint: str
    ca_file: str | None


def discover(login: dict[str, Any] | None, ca_file: str | None) -> Provider:
    """The IdP described by the broker's `login` block, read from its discovery document."""
    if not login or not login.get("issuer"):
        raise AuthError(
            "this broker names no identity provider for `jitctl login`",
            "use --token-file or --token-env, or ask the operator to set broker.login_issuer",
        )
    issuer = str(login["issuer"]).rstrip("/")
    url = f"{issuer}/.well-known/openid-configuration"
    with http_client(ca_file) as http, transport_errors(url, "the identity provider"):
        response = http.get(url)
    if not response.is_success:
        raise JitctlError(f"{url} answered {response.status_code}: {reason_of(response)}")
    doc = response.json()
    if str(doc.get("issuer", "")).rstrip("/") != issuer:
        raise AuthError(f"{url} names a different issuer ({doc.get('issuer')!r})")
    return Provider(
        issuer=str(doc["issuer"]),
        client_id=str(login.get("client_id") or "jitctl"),
        scopes=list(login.get("scopes") or ["openid", "email", "profile", "offline_access"]),
        authorization_endpoint=str(doc.get("authorization_endpoint", "")),
        token_endpoint=str(doc["token_endpoint"]),
        device_authorization_endpoint=str(doc.get("device_authorization_endpoint", "")),
        ca_file=ca_file,
    )


def _post_token(provider: Provider, form: dict[str, str]) -> httpx.Response:
    with (
        http_client(provider.ca_file) as http,
        transport_errors(provider.token_endpoint, "the identity provider"),
    ):
        return http.post(provider.token_endpoint, data=form, headers={"Accept": "application/json"})


def _error_code(response: httpx.Response) -> str:
    try:
        return str(response.json().get("error", ""))
    except (ValueError, AttributeError):
        return ""


def _check_id_token(provider: Provider, tokens: dict[str, Any], nonce: str | None) -> None:
    import jwt

    id_token = tokens.get("id_token")
    if not id_token:
        return
    try:
        claims = jwt.decode(id_token, options={"verify_signature": False})
    except jwt.InvalidTokenError as exc:
        raise AuthError(f"the identity provider sent a malformed ID token: {exc}") from None
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if claims.get("iss") != provider.issuer or provider.client_id not in audiences:
        raise AuthError("the ID token is not for this login (iss/aud mismatch)")
    if nonce is not None and claims.get("nonce") != nonce:
        raise AuthError("the ID token's nonce does not match this login; try again")


# -- authorization code + PKCE ---------------------------------------------------------------


def can_open_browser() -> bool:
    if os.environ.get("CI"):
        return False
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


class _Callback(http.server.BaseHTTPRequestHandler):
    result: dict[str, str] | None = None  # set per server through a subclass

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if parts.path != "/callback":
            self.send_error(404)
            return
        query = {k: v[0] for k, v in parse_qs(parts.query).items()}
        ok = "code" in query
        body = (
            "<!doctype html><meta charset='utf-8'><title>jitctl</title><h1>"
            + ("Logged in to jitctl" if ok else "Login failed")
            + "</h1><p>"
            + ("You may close this tab." if ok else "See your terminal.")
            + "</p>"
        ).encode()
        self.send_response(200 if ok else 400)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)
        type(self).result = query

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep the terminal for the user


def pkce_pair() -> tuple[str, str]:
    """A (verifier, S256 challenge) pair (RFC 7636 §4.1-4.2)."""
    verifier = secrets.token_urlsafe(48)  # 64 chars of [A-Za-z0-9_-]
    return verifier, s256(verifier)


def login_pkce(
    provider: Provider,
    *,
    open_browser: bool = True,
    open_url: Callable[[str], Any] | None = None,
    timeout: float = 300.0,
    say: Say = _stderr,
) -> dict[str, Any]:
    """Run the authorization code flow with PKCE; returns the token response."""
    if not provider.authorization_endpoint:
        raise AuthError("the identity provider has no authorization endpoint", "use --device")
    handler = type("Callback", (_Callback,), {"result": None})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    try:
        redirect_uri = f"http://127.0.0.1:{server.server_address[1]}/callback"
        verifier, challenge = pkce_pair()
        state, nonce = secrets.token_urlsafe(24), secrets.token_urlsafe(24)
        query = {
            "response_type": "code",
            "client_id": provider.client_id,
            "redirect_uri": redirect_uri,
            "scope": " ".join(provider.scopes),
            "state": state,
            "nonce": nonce,
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
        sep = "&" if "?" in provider.authorization_endpoint else "?"
        url = provider.authorization_endpoint + sep + urlencode(query)
        say(f"To log in, open this URL in a browser:\n  {url}")
        if open_url is not None:
            open_url(url)
        elif open_browser and can_open_browser():
            threading.Thread(target=webbrowser.open, args=(url,), daemon=True).start()
        result = _wait_for_callback(server, handler, timeout)
    finally:
        server.server_close()
    if result.get("state") != state:
        raise AuthError("the login response does not belong to this login (state mismatch)")
    if result.get("iss") and result["iss"].rstrip("/") != provider.issuer.rstrip("/"):
        raise AuthError("the login response came from a different issuer (RFC 9207 iss)")
    if "error" in result:
        detail = result.get("error_description") or result["error"]
        raise AuthError(f"the identity provider refused the login: {detail}", "run `jitctl login`")
    response = _post_token(
        provider,
        {
            "grant_type": "authorization_code",
            "code": result.get("code", ""),
            "redirect_uri": redirect_uri,
            "code_verifier": verifier,
            "client_id": provider.client_id,
        },
    )
    if not response.is_success:
        raise AuthError(f"the identity provider refused the code: {reason_of(response)}")
    tokens: dict[str, Any] = response.json()
    _check_id_token(provider, tokens, nonce)
    return tokens


def _wait_for_callback(
    server: http.server.HTTPServer, handler: type[_Callback], timeout: float
) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while handler.result is None:
        left = deadline - time.monotonic()
        if left <= 0:
            raise AuthError(
                f"no answer from the browser within {int(timeout)} s; login timed out",
                "run `jitctl login` again, or `jitctl login --device` without a browser",
            )
        server.timeout = min(left, 1.0)
        server.handle_request()
    return handler.result


# -- device grant ----------------------------------------------------------------------------

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


def login_device(
    provider: Provider,
    *,
    say: Say = _stderr,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """Run the device authorization grant (RFC 8628); returns the token response."""
    endpoint = provider.device_authorization_endpoint
    if not endpoint:
        raise AuthError("the identity provider does not offer the device grant", "drop --device")
    with http_client(provider.ca_file) as http, transport_errors(endpoint, "the identity provider"):
        response = http.post(
            endpoint, data={"client_id": provider.client_id, "scope": " ".join(provider.scopes)}
        )
    if not response.is_success:
        raise AuthError(f"the device login could not start: {reason_of(response)}")
    grant = response.json()
    complete = grant.get("verification_uri_complete")
    say(
        f"To log in, open {complete or grant['verification_uri']}\n"
        + ("" if complete else f"and enter the code: {grant['user_code']}\n")
        + f"Check that the page shows this code: {grant['user_code']}"
    )
    interval = float(grant.get("interval") or 5)
    deadline = time.monotonic() + float(grant.get("expires_in") or 600)
    form = {"grant_type": DEVICE_GRANT, "device_code": grant["device_code"]}
    form["client_id"] = provider.client_id
    while True:
        sleep(interval)
        response = _post_token(provider, form)
        if response.is_success:
            tokens: dict[str, Any] = response.json()
            _check_id_token(provider, tokens, None)
            return tokens
        error = _error_code(response)
        if error == "authorization_pending":
            pass
        elif error == "slow_down":
            interval += 5  # RFC 8628 §3.5: for this and every later poll
        elif error == "access_denied":
            raise AuthError("the device login was denied", "run `jitctl login --device` again")
        elif error == "expired_token":
            raise AuthError(
                "the device code expired before anyone approved it",
                "run `jitctl login --device` again and approve within the time shown",
            )
        else:
            raise AuthError(f"the device login failed: {reason_of(response)}")
        if time.monotonic() > deadline:
            raise AuthError("the device code expired", "run `jitctl login --device` again")

"""The development OIDC issuer that `jitctl broker serve --dev` mounts at /dev/oidc.

It exists so the demo and the tests have a real OpenID provider to log in with, speaking the
same protocols a production IdP does: discovery, JWKS, authorization code with PKCE (RFC 7636),
refresh with rotation (RFC 9700 §4.14), the device grant (RFC 8628) and client credentials.
It is a *development* issuer and says so on every page and in its discovery document.

Rules:
- One RSA-2048 key, kept in `<state_dir>/dev-issuer-key.pem` (0600) so tokens survive a restart;
  `kid` is its RFC 7638 thumbprint. `/jwks` publishes the public half only (devkey.py).
- Tokens are RS256 JWTs with aud "jitctl" (the CLI's public client id): the broker verifies the
  access token and the ID token alike. Refresh tokens are opaque and kept in memory only, so a
  broker restart ends every refresh session (users run `jitctl login` again).
- Codes are single use and short-lived; a code or refresh token presented twice revokes
  everything issued from it (RFC 6749 §4.1.2, RFC 9700 §4.14.2).
- Errors are RFC 6749 §5.2 JSON: `{"error": ..., "error_description": ...}`.
- Form bodies are parsed by the HTTP face (devissuer_http.py, urlencoded only), so FastAPI needs
  no python-multipart. The device grant's own rules are in devissuer_device.py.
"""

from __future__ import annotations

import hmac
import secrets
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from jitctl.broker.devissuer_device import DeviceGrants
from jitctl.broker.devissuer_errors import OAuthError
from jitctl.broker.devkey import DevKey
from jitctl.config import DevClient, DevSection, DevUser
from jitctl.jose import s256

if TYPE_CHECKING:
    from fastapi import APIRouter

WARNING = "development issuer — not for production"
CLIENT_ID = "jitctl"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
SCOPES = ["openid", "email", "profile", "offline_access"]
DEFAULT_USERS = [
    DevUser(name="alice", email="alice@example.com", groups=["eng"]),
    DevUser(name="bob", email="bob@example.com", groups=["dba", "approvers"]),
    DevUser(name="carol", email="carol@example.com", groups=["eng", "agents"]),
]
__all__ = [  # OAuthError and s256 live elsewhere; importing them from here still works
    "CLIENT_ID",
    "DEFAULT_USERS",
    "DEVICE_GRANT",
    "SCOPES",
    "WARNING",
    "DevIssuer",
    "OAuthError",
    "s256",
]


@dataclass
class _Code:
    user: DevUser
    redirect_uri: str
    challenge: str
    nonce: str
    scope: str
    expires_at: float
    family: str = field(default_factory=lambda: uuid.uuid4().hex)
    used: bool = False


@dataclass
class _Refresh:
    user: DevUser
    scope: str
    family: str
    expires_at: float
    used: bool = False


class DevIssuer:
    """A small OpenID provider for `broker serve --dev`; see the module docstring."""

    client_id: str = CLIENT_ID

    def __init__(
        self,
        issuer_url: str,
        dev: DevSection,
        state_dir: Path,
        *,
        device_interval: int = 1,
        code_lifetime: float = 60.0,
        device_lifetime: float = 600.0,
        refresh_lifetime: float = 86400.0,
    ) -> None:
        self.issuer_url = issuer_url.rstrip("/")
        self.dev = dev
        self.device_interval = device_interval
        self.code_lifetime = code_lifetime
        self.device_lifetime = device_lifetime
        self.refresh_lifetime = refresh_lifetime
        self.key = DevKey(Path(state_dir) / "dev-issuer-key.pem", self.issuer_url, CLIENT_ID)
        self.kid = self.key.kid
        self._lock = threading.Lock()
        self._codes: dict[str, _Code] = {}
        self._refresh: dict[str, _Refresh] = {}
        self._revoked_families: set[str] = set()
        self.devices = DeviceGrants(
            f"{self.issuer_url}/device", interval=device_interval, lifetime=device_lifetime
        )

    # -- keys and tokens ---------------------------------------------------------------------

    def jwks(self) -> dict[str, Any]:
        return self.key.jwks()

    def users(self) -> list[DevUser]:
        return list(self.dev.users) if self.dev.users else list(DEFAULT_USERS)

    def user(self, name: str) -> DevUser | None:
        return next((u for u in self.users() if name in (u.name, u.email) and name), None)

    def mint(
        self,
        subject: str,
        *,
        email: str | None,
        groups: list[str],
        audience: str = CLIENT_ID,
        lifetime: float | None = None,
        extra: dict[str, Any] | None = None,
        typ: str = "JWT",
    ) -> str:
        """A signed RS256 token for `subject`; `extra` claims are added last (and may override)."""
        lifetime = self.dev.token_lifetime if lifetime is None else lifetime
        return self.key.mint(
            subject,
            email=email,
            groups=groups,
            audience=audience,
            lifetime=lifetime,
            extra=extra,
            typ=typ,
        )

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a token this issuer minted; raises `jwt.InvalidTokenError` otherwise."""
        return self.key.verify(token)

    def _user_tokens(
        self, user: DevUser, scope: str, *, nonce: str = "", family: str = ""
    ) -> dict[str, Any]:
        lifetime = int(self.dev.token_lifetime)
        access = self.mint(
            user.name,
            email=user.email,
            groups=user.groups,
            extra={"client_id": CLIENT_ID, "scope": scope},
            typ="at+jwt",  # RFC 9068: tells an access token from an ID token
        )
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": scope,
        }
        if "openid" in scope.split():
            extra = {"azp": CLIENT_ID, **({"nonce": nonce} if nonce else {})}
            body["id_token"] = self.mint(
                user.name, email=user.email, groups=user.groups, extra=extra
            )
        if "offline_access" in scope.split():
            refresh = secrets.token_urlsafe(32)
            self._refresh[refresh] = _Refresh(
                user=user,
                scope=scope,
                family=family or uuid.uuid4().hex,
                expires_at=time.time() + self.refresh_lifetime,
            )
            body["refresh_token"] = refresh
        return body

    # -- the grants (pure of HTTP; the router below calls these) -------------------------------

    def authorize(
        self, params: dict[str, str], user_name: str | None, *, deny: bool = False
    ) -> str | None:
        """Answer an authorization request with the redirect URL (success or error).

        `user_name` None means nobody is chosen yet: the answer is None when the request is
        otherwise fine (show the picker). Raises OAuthError when the client or redirect URI is
        bad: RFC 6749 §4.1.2.1 says never redirect to an unverified URI.
        """
        redirect_uri = self._check_client_and_redirect(params)
        state = params.get("state", "")

        def back(query: dict[str, str]) -> str:
            query = {**query, "iss": self.issuer_url}  # RFC 9207 mix-up defence
            if state:
                query["state"] = state
            sep = "&" if "?" in redirect_uri else "?"
            return redirect_uri + sep + urlencode(query)

        if params.get("response_type") != "code":
            return back({"error": "unsupported_response_type", "error_description": "use code"})
        challenge = params.get("code_challenge", "")
        if params.get("code_challenge_method") != "S256" or not challenge:
            return back(
                {"error": "invalid_request", "error_description": "PKCE with S256 is required"}
            )
        if deny:
            return back({"error": "access_denied", "error_description": "the user said no"})
        if user_name is None:
            return None
        user = self.user(user_name)
        if user is None:
            return back(
                {
                    "error": "access_denied",
                    "error_description": f"no development user {user_name!r}",
                }
            )
        code = secrets.token_urlsafe(32)
        scope = params.get("scope") or "openid"
        with self._lock:
            self._codes[code] = _Code(
                user=user,
                redirect_uri=redirect_uri,
                challenge=challenge,
                nonce=params.get("nonce", ""),
                scope=scope,
                expires_at=time.time() + self.code_lifetime,
            )
        return back({"code": code})

    def _check_client_and_redirect(self, params: dict[str, str]) -> str:
        if params.get("client_id") != CLIENT_ID:
            raise OAuthError("invalid_client", f"unknown client_id; use {CLIENT_ID!r}")
        redirect_uri = params.get("redirect_uri", "")
        parts = urlsplit(redirect_uri)
        # RFC 8252 §7.3: a native client's loopback redirect may use any port.
        if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise OAuthError(
                "invalid_request",
                "redirect_uri must be a loopback http://127.0.0.1:<port>/... or "
                "http://localhost:<port>/... address",
            )
        return redirect_uri

    def token(self, form: dict[str, str], basic: tuple[str, str] | None) -> dict[str, Any]:
        grant = form.get("grant_type", "")
        if grant == "client_credentials":
            return self._client_credentials(form, basic)
        if form.get("client_id", basic[0] if basic else "") != CLIENT_ID:
            raise OAuthError("invalid_client", f"unknown client; use client_id={CLIENT_ID!r}", 401)
        with self._lock:
            if grant == "authorization_code":
                return self._authorization_code(form)
            if grant == "refresh_token":
                return self._refresh_token(form)
            if grant == DEVICE_GRANT:
                return self._device_code(form)
        raise OAuthError("unsupported_grant_type", f"grant_type {grant!r} is not supported")

    def _authorization_code(self, form: dict[str, str]) -> dict[str, Any]:
        code = self._codes.get(form.get("code", ""))
        if code is None:
            raise OAuthError("invalid_grant", "unknown authorization code")
        if code.used:
            # RFC 6749 §4.1.2: a code used twice revokes what it issued.
            self._revoke_family(code.family)
            raise OAuthError("invalid_grant", "authorization code already used")
        code.used = True
        if time.time() > code.expires_at:
            raise OAuthError("invalid_grant", "authorization code expired")
        if form.get("redirect_uri") != code.redirect_uri:
            raise OAuthError("invalid_grant", "redirect_uri does not match the authorization")
        verifier = form.get("code_verifier", "")
        if not verifier or not hmac.compare_digest(s256(verifier), code.challenge):
            raise OAuthError("invalid_grant", "PKCE verification failed (code_verifier)")
        return self._user_tokens(code.user, code.scope, nonce=code.nonce, family=code.family)

    def _refresh_token(self, form: dict[str, str]) -> dict[str, Any]:
        record = self._refresh.get(form.get("refresh_token", ""))
        if record is None or record.family in self._revoked_families:
            raise OAuthError("invalid_grant", "unknown or revoked refresh token")
        if record.used:
            self._revoke_family(record.family)
            raise OAuthError(
                "invalid_grant", "refresh token reuse detected; the whole session is revoked"
            )
        record.used = True
        if time.time() > record.expires_at:
            raise OAuthError("invalid_grant", "refresh token expired")
        scope = record.scope
        if requested := form.get("scope"):
            if not set(requested.split()) <= set(scope.split()):
                raise OAuthError("invalid_scope", "a refresh cannot widen the scope")
            scope = requested
        if "offline_access" not in scope.split():
            scope += " offline_access"  # rotation: a refresh always hands back a successor
        return self._user_tokens(record.user, scope, family=record.family)

    def _revoke_family(self, family: str) -> None:
        self._revoked_families.add(family)
        for token in [t for t, r in self._refresh.items() if r.family == family]:
            del self._refresh[token]

    def _client_credentials(
        self, form: dict[str, str], basic: tuple[str, str] | None
    ) -> dict[str, Any]:
        client_id, secret = basic or (form.get("client_id", ""), form.get("client_secret", ""))
        client: DevClient | None = next(
            (c for c in self.dev.clients if c.client_id == client_id), None
        )
        ok = client is not None and hmac.compare_digest(
            client.client_secret.encode(), secret.encode()
        )
        if client is None or not ok:
            raise OAuthError("invalid_client", "client authentication failed", 401)
        subject = client.subject or f"client:{client.client_id}"
        token = self.mint(
            subject,
            email=None,
            groups=client.groups,
            extra={"client_id": client.client_id, "name": client.client_id},
            typ="at+jwt",
        )
        return {
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": int(self.dev.token_lifetime),
        }

    def device_authorization(self, form: dict[str, str]) -> dict[str, Any]:
        if form.get("client_id") != CLIENT_ID:
            raise OAuthError("invalid_client", f"unknown client; use client_id={CLIENT_ID!r}", 401)
        return self.devices.start(form.get("scope") or "openid")

    def _device_code(self, form: dict[str, str]) -> dict[str, Any]:
        user, scope = self.devices.redeem(form.get("device_code", ""))
        return self._user_tokens(user, scope)

    def decide_device(self, user_code: str, user_name: str, approve: bool) -> str:
        """Approve or deny a pending device request; returns a sentence for the page."""
        return self.devices.decide(user_code, user_name, self.user(user_name), approve)

    def discovery(self) -> dict[str, Any]:
        base = self.issuer_url
        return {
            "issuer": base,
            "authorization_endpoint": f"{base}/authorize",
            "token_endpoint": f"{base}/token",
            "device_authorization_endpoint": f"{base}/device_authorization",
            "jwks_uri": f"{base}/jwks",
            "userinfo_endpoint": f"{base}/userinfo",
            "response_types_supported": ["code"],
            "grant_types_supported": [
                "authorization_code",
                "refresh_token",
                DEVICE_GRANT,
                "client_credentials",
            ],
            "code_challenge_methods_supported": ["S256"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "token_endpoint_auth_methods_supported": [
                "none",
                "client_secret_basic",
                "client_secret_post",
            ],
            "scopes_supported": SCOPES,
            "claims_supported": ["sub", "iss", "aud", "exp", "iat", "email", "name", "groups"],
            "authorization_response_iss_parameter_supported": True,
            "warning": WARNING,
        }

    # -- HTTP --------------------------------------------------------------------------------

    def router(self) -> APIRouter:
        from jitctl.broker.devissuer_http import build_router

        return build_router(self)

"""Verification of OIDC JWTs from any number of configured issuers.

Rules (../shared/notes/gcp-and-oidc.md §6):
- The issuer is looked up by the exact `iss` of the unverified payload *before* any key is
  fetched: unknown issuers cause no network traffic.
- The algorithm comes from the issuer's allow-list, never from the token: `none` and every HMAC
  algorithm are refused (so an RSA public key can never serve as an HMAC secret).
- Keys come from the issuer's discovery document and JWKS, cached for `jwks_cache`; an unknown
  `kid` triggers one refetch, at most once per `jwks_refetch_interval`; a failed refresh keeps
  the keys we had. Header `jku`/`x5u`/`jwk`/`x5c` are ignored.
- `exp`, `iat`, `iss`, `aud`, `sub` are required; `exp`/`nbf`/`iat` get `leeway`; a token may
  live at most `max_token_lifetime`.
- Identity is (iss, sub); email and groups are attributes.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt

from jitctl.config import Issuer

MAX_TOKEN_BYTES = 16 * 1024


class TokenRejected(Exception):
    """The token is not acceptable; `reason` is safe to show to the client."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Identity:
    subject: str
    issuer: str
    email: str = ""
    groups: tuple[str, ...] = ()
    expires_at: int = 0
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False)

    def public(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "email": self.email,
            "groups": list(self.groups),
            "issuer": self.issuer,
            "expires_at": self.expires_at,
        }


@dataclass
class _IssuerState:
    config: Issuer
    static: bool = False
    keys: dict[str, dict[str, Any]] = field(default_factory=dict)
    fetched_at: float = 0.0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    fetches: int = 0


def _groups(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(part for part in value.replace(",", " ").split() if part)
    if isinstance(value, list | tuple):
        return tuple(str(item) for item in value)
    return ()


class Verifier:
    def __init__(self, issuers: list[Issuer], http: httpx.AsyncClient | None = None) -> None:
        self._issuers = {issuer.issuer: _IssuerState(issuer) for issuer in issuers}
        self._http = http or httpx.AsyncClient(timeout=5.0)
        self._ca_clients: dict[str, httpx.AsyncClient] = {}

    def add_static_issuer(self, issuer: Issuer, jwks: Mapping[str, Any]) -> None:
        """An issuer whose keys we hold already (the dev issuer inside this broker)."""
        state = _IssuerState(issuer, static=True)
        state.keys = {key["kid"]: dict(key) for key in jwks.get("keys", []) if "kid" in key}
        state.fetched_at = float("inf")
        self._issuers[issuer.issuer] = state

    def issuer_names(self) -> list[str]:
        return list(self._issuers)

    async def aclose(self) -> None:
        await self._http.aclose()
        for client in self._ca_clients.values():
            await client.aclose()

    # -- keys ---------------------------------------------------------------------------------

    def _client(self, issuer: Issuer) -> httpx.AsyncClient:
        if not issuer.ca_file:
            return self._http
        if issuer.ca_file not in self._ca_clients:
            self._ca_clients[issuer.ca_file] = httpx.AsyncClient(timeout=5.0, verify=issuer.ca_file)
        return self._ca_clients[issuer.ca_file]

    async def _fetch_keys(self, state: _IssuerState) -> None:
        issuer = state.config
        client = self._client(issuer)
        jwks_uri = issuer.jwks_uri
        if not jwks_uri:
            url = issuer.issuer.rstrip("/") + "/.well-known/openid-configuration"
            response = await client.get(url)
            response.raise_for_status()
            discovery = response.json()
            if discovery.get("issuer") != issuer.issuer:
                raise TokenRejected(
                    f"issuer {issuer.issuer} publishes a discovery document for "
                    f"{discovery.get('issuer')!r}; refusing its keys"
                )
            jwks_uri = discovery["jwks_uri"]
        response = await client.get(jwks_uri)
        response.raise_for_status()
        keys = response.json().get("keys", [])
        state.keys = {key["kid"]: key for key in keys if isinstance(key, dict) and "kid" in key}
        state.fetched_at = time.monotonic()
        state.fetches += 1

    async def _key(self, state: _IssuerState, kid: str) -> dict[str, Any]:
        cfg = state.config
        if state.static:
            if kid in state.keys:
                return state.keys[kid]
            raise TokenRejected(f"unknown signing key id {kid!r}")
        async with state.lock:
            age = time.monotonic() - state.fetched_at
            stale = not state.keys or age > cfg.jwks_cache
            unknown = kid not in state.keys and age >= cfg.jwks_refetch_interval
            if stale or unknown:
                try:
                    await self._fetch_keys(state)
                except TokenRejected:
                    raise
                except (httpx.HTTPError, ValueError, KeyError) as exc:
                    if not state.keys:
                        raise TokenRejected(
                            f"cannot fetch the signing keys of {cfg.issuer}: {exc}"
                        ) from None
                    # Keep serving with the keys we have; try again after the interval.
                    state.fetched_at = time.monotonic()
        if kid not in state.keys:
            raise TokenRejected(f"unknown signing key id {kid!r} for issuer {cfg.issuer}")
        return state.keys[kid]

    # -- verification -------------------------------------------------------------------------

    async def verify(self, token: str) -> Identity:
        if len(token) > MAX_TOKEN_BYTES:
            raise TokenRejected("token too large")
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except (jwt.DecodeError, json.JSONDecodeError, UnicodeDecodeError, ValueError):
            raise TokenRejected("malformed token (not a JWT)") from None
        iss = unverified.get("iss")
        if not isinstance(iss, str) or iss not in self._issuers:
            raise TokenRejected(f"untrusted issuer {iss!r}")
        state = self._issuers[iss]
        cfg = state.config
        alg = header.get("alg")
        if alg not in cfg.algorithms:
            raise TokenRejected(f"algorithm {alg!r} is not allowed for issuer {iss}")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise TokenRejected("token header has no key id (kid)")
        jwk = await self._key(state, kid)
        if jwk.get("alg") and jwk["alg"] != alg:
            raise TokenRejected(f"key {kid!r} is for {jwk['alg']}, token says {alg}")
        try:
            key = jwt.PyJWK(jwk, algorithm=alg)
        except (jwt.PyJWKError, jwt.InvalidKeyError) as exc:
            raise TokenRejected(f"key {kid!r} cannot verify {alg}: {exc}") from None
        audience = cfg.audience if isinstance(cfg.audience, str) else list(cfg.audience)
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[alg],
                audience=audience,
                issuer=iss,
                leeway=cfg.leeway,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenRejected("token expired") from None
        except jwt.ImmatureSignatureError:
            raise TokenRejected("token not yet valid (nbf or iat is in the future)") from None
        except jwt.InvalidAudienceError:
            raise TokenRejected(f"wrong audience (expected {cfg.audience!r})") from None
        except jwt.InvalidIssuerError:
            raise TokenRejected("wrong issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise TokenRejected(f"missing required claim {exc.claim!r}") from None
        except jwt.InvalidSignatureError:
            raise TokenRejected("bad signature") from None
        except jwt.InvalidTokenError as exc:
            raise TokenRejected(f"invalid token: {exc}") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not subject:
            raise TokenRejected("missing required claim 'sub'")
        lifetime = float(claims["exp"]) - float(claims["iat"])
        if lifetime > cfg.max_token_lifetime:
            raise TokenRejected(
                f"token lifetime {int(lifetime)}s exceeds the issuer's limit "
                f"{int(cfg.max_token_lifetime)}s"
            )
        email = claims.get(cfg.email_claim)
        return Identity(
            subject=subject,
            issuer=iss,
            email=email if isinstance(email, str) else "",
            groups=_groups(claims.get(cfg.groups_claim)),
            expires_at=int(claims["exp"]),
            claims=claims,
        )

    def fetch_count(self, issuer: str) -> int:
        return self._issuers[issuer].fetches

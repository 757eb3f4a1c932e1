"""What the emulated STS and IAM Credentials decide: which token a request earns, or which
Refusal. Pure of HTTP and of the emulator's log: the caller records what is issued.

Rules (the documented wire format, ../shared/notes/gcp-and-oidc.md §1-§3):
- STS token exchange (RFC 8693) with a JWT/ID-token subject: the audience is a known provider;
  issuer, signature by the provider's JWKS, `iat`/`exp`, lifetime <= 48 h, `aud` in the allowed
  audiences or the provider's canonical name with or without `https:`, `sub` <= 127 bytes
  (gcp_wire.verify_subject_token), then the optional attribute condition. The federated token
  lives `federated_lifetime` seconds and names `principal://.../subject/<sub>`.
- STS with an access-token subject and `options.accessBoundary` downscopes it: 1..10 rules,
  each with a resource and permissions; no `expires_in`, the token dies with its source.
- generateAccessToken: the bearer must be a live federated token with the iam or
  cloud-platform scope; the project must be "-"; the caller's principal must be a member of the
  service account (principal://, principalSet:// .../* or .../group/<g>), and an unknown account
  is denied the same way; `scope` a non-empty list; `lifetime` <= the account's `max_lifetime`;
  `expireTime` in whole seconds.
- Errors: STS answers RFC 6749 JSON, IAM Credentials Google's envelope, with Google-like text.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import time
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote

from jitctl.testing.gcp_wire import (
    ACCESS_TOKEN,
    IAM_SCOPES,
    JWT_TYPES,
    TOKEN_EXCHANGE,
    WORKLOAD_AUDIENCE,
    IssuedToken,
    Provider,
    ServiceAccount,
    google_error,
    oauth_error,
    permission_denied,
    verify_subject_token,
)

Find = Callable[[str], IssuedToken | None]  # an issued token by its text


def principal(audience: str, subject: str) -> str:
    """The federated principal of `subject` in the pool of provider `audience`."""
    pool = audience.rsplit("/providers/", 1)[0][len("//iam.googleapis.com/") :]
    return f"principal://iam.googleapis.com/{pool}/subject/{subject}"


def principal_set(audience: str, suffix: str = "*") -> str:
    """principalSet://.../workloadIdentityPools/P/* (everyone) or .../group/<g>."""
    pool = audience.rsplit("/providers/", 1)[0][len("//iam.googleapis.com/") :]
    return f"principalSet://iam.googleapis.com/{pool}/{suffix}"


def exchange(
    f: dict[str, str], providers: Mapping[str, Provider], find: Find, federated_lifetime: int
) -> tuple[IssuedToken, dict[str, Any]]:
    """STS `POST /v1/token`: the token to issue and the answer, or a Refusal."""
    if f.get("grant_type") != TOKEN_EXCHANGE:
        raise oauth_error(
            "unsupported_grant_type", f"Unsupported grant type: {f.get('grant_type')!r}."
        )
    if f.get("requested_token_type") != ACCESS_TOKEN:
        raise oauth_error("invalid_request", 'Invalid value for "requested_token_type".')
    if not f.get("subject_token"):
        raise oauth_error("invalid_request", 'The "subject_token" parameter is required.')
    kind = f.get("subject_token_type", "")
    if kind == ACCESS_TOKEN:
        return downscope(f, find)
    if kind not in JWT_TYPES:
        raise oauth_error("invalid_request", f'Invalid value for "subject_token_type": {kind!r}.')
    audience = f.get("audience", "")
    if not WORKLOAD_AUDIENCE.match(audience):
        raise oauth_error(
            "invalid_request",
            'Invalid value for "audience". This value should be the full resource name of '
            "the Identity Provider. See https://cloud.google.com/iam/docs/reference/sts/rest/"
            "v1/TopLevel/token for the list of possible formats.",
        )
    provider = providers.get(audience)
    if provider is None:
        raise oauth_error(
            "invalid_target",
            'The target service indicated by the "audience" parameters is invalid. This '
            "might either be because the pool or provider is disabled or deleted or because "
            "it doesn't exist.",
        )
    scopes = f.get("scope", "").split()
    if not scopes:
        raise oauth_error("invalid_request", "Scope(s) must be provided.")
    claims = verify_subject_token(provider, f["subject_token"])
    if provider.attribute_condition and not provider.attribute_condition(claims):
        raise oauth_error(
            "unauthorized_client",
            "The given credential is rejected by the attribute condition.",
        )
    subject = str(claims["sub"])
    token = IssuedToken(
        token="emu.fed." + secrets.token_urlsafe(32),
        kind="federated",
        subject=subject,
        principal=principal(audience, subject),
        scopes=scopes,
        expires_at=int(time.time()) + federated_lifetime,
        lifetime=federated_lifetime,
        claims=claims,
    )
    return token, {
        "access_token": token.token,
        "issued_token_type": ACCESS_TOKEN,
        "token_type": "Bearer",
        "expires_in": federated_lifetime,
    }


def downscope(f: dict[str, str], find: Find) -> tuple[IssuedToken, dict[str, Any]]:
    """STS exchange of an issued access token for one under `options.accessBoundary`."""
    source = find(f["subject_token"])
    if source is None or source.expires_at <= time.time():
        raise oauth_error("invalid_grant", "The subject token is invalid or has expired.")
    try:
        options = json.loads(unquote(f.get("options", "")) or "{}")
    except ValueError:
        raise oauth_error("invalid_request", 'Invalid value for "options".') from None
    boundary = options.get("accessBoundary") if isinstance(options, dict) else None
    rules = (boundary or {}).get("accessBoundaryRules")
    if not isinstance(rules, list) or not 1 <= len(rules) <= 10:
        raise oauth_error(
            "invalid_request",
            "The access boundary must have between 1 and 10 accessBoundaryRules.",
        )
    for rule in rules:
        if not rule.get("availableResource") or not rule.get("availablePermissions"):
            raise oauth_error(
                "invalid_request",
                "Each access boundary rule needs an availableResource and availablePermissions.",
            )
    token = IssuedToken(
        token="emu.cab." + secrets.token_urlsafe(32),
        kind="downscoped",
        subject=source.subject,
        principal=source.principal,
        scopes=source.scopes,
        expires_at=source.expires_at,
        lifetime=source.lifetime,
        claims=source.claims,
        service_account=source.service_account,
        boundary=boundary,
        source=source.token,
    )
    # Downscoping answers carry no expires_in: the token dies with its source (notes §1).
    return token, {
        "access_token": token.token,
        "issued_token_type": ACCESS_TOKEN,
        "token_type": "Bearer",
    }


def generate_access_token(
    project: str,
    email: str,
    authorization: str,
    body: dict[str, Any],
    accounts: Mapping[str, ServiceAccount],
    find: Find,
) -> tuple[IssuedToken, dict[str, Any]]:
    """IAM Credentials `generateAccessToken` for `email`: the token and the answer, or a
    Refusal."""
    scheme, _, bearer = authorization.partition(" ")
    source = find(bearer.strip()) if scheme.lower() == "bearer" else None
    if source is None or source.kind != "federated" or source.expires_at <= time.time():
        raise google_error(
            401,
            "UNAUTHENTICATED",
            "Request had invalid authentication credentials. Expected OAuth 2 access token, "
            "login cookie or other valid authentication credential. See "
            "https://developers.google.com/identity/sign-in/web/devconsole-project.",
        )
    if not set(source.scopes) & set(IAM_SCOPES):
        raise google_error(
            403,
            "PERMISSION_DENIED",
            "Request had insufficient authentication scopes.",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                    "domain": "googleapis.com",
                }
            ],
        )
    if project != "-":
        raise google_error(
            400,
            "INVALID_ARGUMENT",
            'The project ID must be "-": projects/-/serviceAccounts/{account}.',
        )
    account = accounts.get(email)
    if account is None or not _member(account, source):
        raise permission_denied()
    scopes = body.get("scope")
    if not isinstance(scopes, list) or not scopes:
        raise google_error(400, "INVALID_ARGUMENT", "Scope required.")
    lifetime = 3600
    if body.get("lifetime") is not None:
        match = re.fullmatch(r"(\d+)(?:\.\d+)?s", str(body["lifetime"]))
        if match is None:
            raise google_error(
                400,
                "INVALID_ARGUMENT",
                f"Invalid value at 'lifetime' (type.googleapis.com/google.protobuf."
                f"Duration), Field 'lifetime', Illegal duration format; "
                f"{body['lifetime']!r}",
            )
        lifetime = int(match.group(1))
    if not 1 <= lifetime <= account.max_lifetime:
        raise google_error(
            400,
            "INVALID_ARGUMENT",
            f"The lifetime of the requested access token must be between 1s and "
            f"{account.max_lifetime}s.",
        )
    # Whole seconds: google-auth parses %Y-%m-%dT%H:%M:%SZ (notes §2).
    expires_at = int(time.time()) + lifetime
    token = IssuedToken(
        token="emu.sa." + secrets.token_urlsafe(32),
        kind="service_account",
        subject=source.subject,
        principal=email,
        scopes=list(scopes),
        expires_at=expires_at,
        lifetime=lifetime,
        claims=source.claims,
        service_account=email,
        source=source.token,
    )
    stamp = dt.datetime.fromtimestamp(expires_at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return token, {"accessToken": token.token, "expireTime": stamp}


def _member(account: ServiceAccount, source: IssuedToken) -> bool:
    """Does `source`'s principal, its pool (…/*) or one of its groups hold the account?"""
    pool_prefix = source.principal.split("/subject/", 1)[0].replace(
        "principal://", "principalSet://"
    )
    groups = source.claims.get("groups") or []
    wanted = {source.principal, pool_prefix + "/*"}
    wanted |= {f"{pool_prefix}/group/{g}" for g in groups if isinstance(g, str)}
    return bool(wanted & set(account.members))

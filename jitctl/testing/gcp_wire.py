"""Google's wire format as the GCP emulator speaks it: pure functions and records, no sockets.

- `Refusal` carries an HTTP status and a body: RFC 6749 `{"error", "error_description"}` from
  STS (`oauth_error`), Google's `{"error": {"code", "message", "status", "details"}}` envelope
  from IAM Credentials (`google_error`, `permission_denied`).
- `parse_fields`: an STS body, form-encoded (google-auth) or camelCase JSON
  (google-github-actions), as snake_case fields.
- `verify_subject_token`: a WIF OIDC provider's checks on a subject token (issuer before keys,
  kid, RS256/ES256, signature by the uploaded JWKS, exp, iat, lifetime <= 48 h, aud, sub).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import jwt

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN = "urn:ietf:params:oauth:token-type:access_token"
JWT_TYPES = ("urn:ietf:params:oauth:token-type:jwt", "urn:ietf:params:oauth:token-type:id_token")
IAM_SCOPES = (
    "https://www.googleapis.com/auth/iam",
    "https://www.googleapis.com/auth/cloud-platform",
)
SQL_LOGIN_SCOPE = "https://www.googleapis.com/auth/sqlservice.login"
WORKLOAD_AUDIENCE = re.compile(
    r"^//iam\.googleapis\.com/projects/(\d+)/locations/global/workloadIdentityPools/"
    r"([^/]+)/providers/([^/]+)$"
)
GENERATE = re.compile(r"^/v1/projects/([^/]+)/serviceAccounts/([^/:]+):generateAccessToken$")
CAMEL = {
    "grantType": "grant_type",
    "requestedTokenType": "requested_token_type",
    "subjectToken": "subject_token",
    "subjectTokenType": "subject_token_type",
}


class Refusal(Exception):
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(json.dumps(body))
        self.status, self.body = status, body


def oauth_error(error: str, description: str, status: int = 400) -> Refusal:
    return Refusal(status, {"error": error, "error_description": description})


def google_error(code: int, status: str, message: str, details: list[Any] | None = None) -> Refusal:
    body: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        body["details"] = details
    return Refusal(code, {"error": body})


def permission_denied() -> Refusal:
    permission = "iam.serviceAccounts.getAccessToken"
    return google_error(
        403,
        "PERMISSION_DENIED",
        f"Permission '{permission}' denied on resource (or it may not exist).",
        [
            {
                "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                "reason": "IAM_PERMISSION_DENIED",
                "domain": "iam.googleapis.com",
                "metadata": {"permission": permission},
            }
        ],
    )


@dataclass
class Provider:
    """A WIF OIDC provider: `audience` is its full resource name, `jwks` its uploaded jwksJson."""

    audience: str
    issuer: str
    jwks: dict[str, Any]
    allowed_audiences: list[str] = field(default_factory=list)
    attribute_condition: Callable[[dict[str, Any]], bool] | None = None


@dataclass
class ServiceAccount:
    email: str
    members: list[str] = field(default_factory=list)
    max_lifetime: int = 3600


@dataclass
class IssuedToken:
    token: str
    kind: str  # "federated" | "service_account" | "downscoped"
    subject: str  # google.subject: the `sub` of the subject token at the start of the chain
    principal: str  # principal://... for federated tokens, the account's email otherwise
    scopes: list[str]
    expires_at: int
    lifetime: int
    claims: dict[str, Any] = field(default_factory=dict)  # of the subject token
    service_account: str = ""
    boundary: dict[str, Any] | None = None
    source: str = ""  # the token this one was made from

    def public(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if k not in ("token", "source")}
        out["token_prefix"] = self.token[:12]
        return out


def parse_fields(content_type: str, raw: bytes) -> dict[str, str]:
    if content_type == "application/json":
        try:
            data = json.loads(raw or b"{}")
        except ValueError:
            raise oauth_error("invalid_request", "Invalid JSON payload received.") from None
        if not isinstance(data, dict):
            raise oauth_error("invalid_request", "Invalid JSON payload received.")
        fields = {CAMEL.get(str(k), str(k)): v for k, v in data.items()}
        if isinstance(fields.get("options"), dict):
            fields["options"] = json.dumps(fields["options"])
        return {k: str(v) for k, v in fields.items() if v is not None}
    return {k: v[0] for k, v in parse_qs(raw.decode("utf-8", "replace")).items()}


def verify_subject_token(provider: Provider, token: str) -> dict[str, Any]:
    """The claims of an OIDC subject token the provider accepts (notes §1), else invalid_grant."""

    def grant(description: str) -> Refusal:
        return oauth_error("invalid_grant", description)

    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise grant("Unable to parse the ID Token.") from None
    if unverified.get("iss") != provider.issuer:
        raise grant(
            f"The issuer in ID Token {unverified.get('iss')} does not match the "
            f"expected ones: {provider.issuer}."
        )
    alg, kid = header.get("alg"), header.get("kid")
    if alg not in ("RS256", "ES256"):
        raise grant(f"The ID Token is signed with an unsupported algorithm: {alg}.")
    if not kid:
        raise grant('The ID Token must have a "kid" header.')
    jwk = next((k for k in provider.jwks.get("keys", []) if k.get("kid") == kid), None)
    if jwk is None:
        raise grant(f"The key ID {kid} of the ID Token is not in the provider's JWKS.")
    try:
        claims = jwt.decode(
            token,
            jwt.PyJWK(jwk, alg).key,
            algorithms=[alg],
            options={"verify_aud": False, "require": ["exp", "iat"]},
        )
    except jwt.ExpiredSignatureError:
        raise grant("ID Token expired.") from None
    except jwt.InvalidSignatureError:
        raise grant("Invalid ID Token signature.") from None
    except jwt.InvalidTokenError as exc:
        raise grant(f"Invalid ID Token: {exc}.") from None
    if claims["iat"] > time.time() + 60:
        raise grant("The ID Token was issued in the future.")
    if claims["exp"] - claims["iat"] > 48 * 3600:
        raise grant("The lifetime of the ID Token is longer than 48 hours.")
    canonical = provider.audience[len("//") :]
    accepted = provider.allowed_audiences or [provider.audience, "https://" + canonical]
    auds = claims.get("aud")
    auds = auds if isinstance(auds, list) else [auds]
    if not set(map(str, auds)) & set(accepted):
        raise grant(
            f"The audience in ID Token [{', '.join(map(str, auds))}] does not match "
            f"the expected audience {accepted[-1]}."
        )
    subject = claims.get("sub")
    if not subject:
        raise grant('The ID Token has no "sub" claim; google.subject is required.')
    if len(str(subject).encode()) > 127:
        raise grant("The mapped attribute google.subject exceeds 127 bytes.")
    return claims

"""A local emulator of GCP's Security Token Service and IAM Credentials, for tests and the demo.

    with GcpEmulator() as gcp:
        gcp.add_provider(AUDIENCE, issuer=broker_url + "/gcp", jwks=jwks_json)
        gcp.add_service_account(SA_EMAIL, members=[gcp.principal(AUDIENCE, "alice")])
        gcp.sts_endpoint, gcp.iam_endpoint         # for [gcp] sts_endpoint / iam_endpoint
        gcp.issued                                 # every token, naming the subject behind it

It follows the documented wire format (../shared/notes/gcp-and-oidc.md §1-§3), so real
google-auth objects talk to it unchanged:
- `POST /v1/token`: form-encoded (google-auth) and camelCase JSON (google-github-actions)
  bodies; RFC 8693 token exchange with a JWT/ID-token subject (audience = a known provider,
  issuer, signature by the provider's JWKS, `iat`/`exp`, lifetime <= 48 h, `aud` in the allowed
  audiences or the provider's canonical name with or without `https:`, `sub` <= 127 bytes, an
  optional attribute condition) or with an access-token subject and `options.accessBoundary`
  (downscoping: no `expires_in`, the token dies with its source). Errors are RFC 6749 JSON
  with Google-like descriptions. `Authorization` headers are refused (`strict`).
- `POST /v1/projects/-/serviceAccounts/<email>:generateAccessToken`: the bearer must be a live
  federated token with the iam or cloud-platform scope; the caller's principal must be a
  member of the service account (principal://, principalSet:// .../* or .../group/<g>);
  `scope` a non-empty list; `lifetime` <= 3600 s (`max_lifetime` per account); `expireTime`
  in whole seconds; denial is Google's exact 403 envelope, for unknown accounts too.
- A `sqlservice.login` token calls `on_sql_login(account, token, expires_at)`: with
  `cloudsql_login_hook(pg)` that becomes a PostgreSQL role whose password is the token, valid
  until the token's expiry (notes §9) — Cloud SQL IAM login, emulated.

Knobs for tests: `federated_lifetime` (STS `expires_in`, default 3600), `strict`. The log:
`issued` (and `GET /emulator/tokens`), `requests` (path, content type, fields but the subject
token). Envelopes, body parsing and subject-token checks live in `gcp_wire`.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from jitctl.testing.gcp_wire import (
    ACCESS_TOKEN,
    GENERATE,
    IAM_SCOPES,
    JWT_TYPES,
    SQL_LOGIN_SCOPE,
    TOKEN_EXCHANGE,
    WORKLOAD_AUDIENCE,
    IssuedToken,
    Provider,
    Refusal,
    ServiceAccount,
    google_error,
    oauth_error,
    parse_fields,
    permission_denied,
    verify_subject_token,
)


class GcpEmulator:
    def __init__(self, *, strict: bool = True, federated_lifetime: int = 3600) -> None:
        self.strict = strict
        self.federated_lifetime = federated_lifetime
        self.providers: dict[str, Provider] = {}
        self.accounts: dict[str, ServiceAccount] = {}
        self.issued: list[IssuedToken] = []
        self.requests: list[dict[str, Any]] = []  # path, content type, fields, authorization
        self.on_sql_login: Callable[[str, str, int], None] | None = None
        self._lock = threading.Lock()
        emulator = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                status, body = emulator.handle(self.path, dict(self.headers.items()), raw)
                self._answer(status, body)

            def do_GET(self) -> None:
                if self.path == "/emulator/tokens":
                    self._answer(200, {"tokens": [t.public() for t in emulator.issued]})
                else:
                    self._answer(
                        404, {"error": {"code": 404, "status": "NOT_FOUND", "message": "Not Found"}}
                    )

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    # -- configuration --------------------------------------------------------------------------

    @property
    def sts_endpoint(self) -> str:
        return self.url + "/v1/token"

    @property
    def iam_endpoint(self) -> str:
        return self.url

    def add_provider(
        self,
        audience: str,
        *,
        issuer: str,
        jwks: dict[str, Any],
        allowed_audiences: Iterable[str] = (),
        attribute_condition: Callable[[dict[str, Any]], bool] | None = None,
    ) -> Provider:
        """A WIF OIDC provider with an uploaded jwksJson."""
        if not WORKLOAD_AUDIENCE.match(audience):
            raise ValueError(f"not a workload identity pool provider: {audience}")
        provider = Provider(audience, issuer, jwks, list(allowed_audiences), attribute_condition)
        self.providers[audience] = provider
        return provider

    def add_service_account(
        self, email: str, *, members: Iterable[str] = (), max_lifetime: int = 3600
    ) -> ServiceAccount:
        """`members` hold roles/iam.workloadIdentityUser on the account."""
        account = ServiceAccount(email, list(members), max_lifetime)
        self.accounts[email] = account
        return account

    @staticmethod
    def principal(audience: str, subject: str) -> str:
        pool = audience.rsplit("/providers/", 1)[0][len("//iam.googleapis.com/") :]
        return f"principal://iam.googleapis.com/{pool}/subject/{subject}"

    @staticmethod
    def principal_set(audience: str, suffix: str = "*") -> str:
        """principalSet://.../workloadIdentityPools/P/* (everyone) or .../group/<g>."""
        pool = audience.rsplit("/providers/", 1)[0][len("//iam.googleapis.com/") :]
        return f"principalSet://iam.googleapis.com/{pool}/{suffix}"

    def find(self, token: str) -> IssuedToken | None:
        with self._lock:
            return next((t for t in self.issued if t.token == token), None)

    # -- requests -------------------------------------------------------------------------------

    def handle(self, path: str, headers: dict[str, str], raw: bytes) -> tuple[int, dict[str, Any]]:
        lowered = {k.lower(): v for k, v in headers.items()}
        content_type = lowered.get("content-type", "").split(";")[0].strip()
        entry: dict[str, Any] = {
            "path": path,
            "content_type": content_type,
            "authorization": bool(lowered.get("authorization")),
        }
        self.requests.append(entry)
        try:
            if path == "/v1/token":
                fields = parse_fields(content_type, raw)
                entry["fields"] = {k: v for k, v in fields.items() if k != "subject_token"}
                if self.strict and lowered.get("authorization"):
                    raise oauth_error(
                        "invalid_request",
                        "The Authorization header must not be set on a "
                        "token exchange without client authentication.",
                    )
                return 200, self._sts(fields)
            match = GENERATE.match(path)
            if match:
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    raise google_error(
                        400, "INVALID_ARGUMENT", "Invalid JSON payload received."
                    ) from None
                entry["fields"] = body
                return 200, self._generate(
                    match.group(1), unquote(match.group(2)), lowered.get("authorization", ""), body
                )
            raise google_error(
                404, "NOT_FOUND", f"The requested URL {path} was not found on this server."
            )
        except Refusal as refusal:
            entry["refused"] = refusal.body
            return refusal.status, refusal.body

    def _sts(self, f: dict[str, str]) -> dict[str, Any]:
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
            return self._downscope(f)
        if kind not in JWT_TYPES:
            raise oauth_error(
                "invalid_request", f'Invalid value for "subject_token_type": {kind!r}.'
            )
        audience = f.get("audience", "")
        if not WORKLOAD_AUDIENCE.match(audience):
            raise oauth_error(
                "invalid_request",
                'Invalid value for "audience". This value should be the full resource name of '
                "the Identity Provider. See https://cloud.google.com/iam/docs/reference/sts/rest/"
                "v1/TopLevel/token for the list of possible formats.",
            )
        provider = self.providers.get(audience)
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
        token = self._issue(
            IssuedToken(
                token="emu.fed." + secrets.token_urlsafe(32),
                kind="federated",
                subject=subject,
                principal=self.principal(audience, subject),
                scopes=scopes,
                expires_at=int(time.time()) + self.federated_lifetime,
                lifetime=self.federated_lifetime,
                claims=claims,
            )
        )
        return {
            "access_token": token.token,
            "issued_token_type": ACCESS_TOKEN,
            "token_type": "Bearer",
            "expires_in": self.federated_lifetime,
        }

    def _downscope(self, f: dict[str, str]) -> dict[str, Any]:
        source = self.find(f["subject_token"])
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
                    "Each access boundary rule needs an "
                    "availableResource and availablePermissions.",
                )
        token = self._issue(
            IssuedToken(
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
        )
        # Downscoping answers carry no expires_in: the token dies with its source (notes §1).
        return {
            "access_token": token.token,
            "issued_token_type": ACCESS_TOKEN,
            "token_type": "Bearer",
        }

    def _generate(
        self, project: str, email: str, authorization: str, body: dict[str, Any]
    ) -> dict[str, Any]:
        scheme, _, bearer = authorization.partition(" ")
        source = self.find(bearer.strip()) if scheme.lower() == "bearer" else None
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
        account = self.accounts.get(email)
        if account is None or not self._member(account, source):
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
        token = self._issue(
            IssuedToken(
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
        )
        if SQL_LOGIN_SCOPE in scopes and self.on_sql_login is not None:
            self.on_sql_login(email, token.token, expires_at)
        stamp = dt.datetime.fromtimestamp(expires_at, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {"accessToken": token.token, "expireTime": stamp}

    def _member(self, account: ServiceAccount, source: IssuedToken) -> bool:
        pool_prefix = source.principal.split("/subject/", 1)[0].replace(
            "principal://", "principalSet://"
        )
        groups = source.claims.get("groups") or []
        wanted = {source.principal, pool_prefix + "/*"}
        wanted |= {f"{pool_prefix}/group/{g}" for g in groups if isinstance(g, str)}
        return bool(wanted & set(account.members))

    def _issue(self, token: IssuedToken) -> IssuedToken:
        with self._lock:
            self.issued.append(token)
        return token

    # -- lifecycle --------------------------------------------------------------------------------

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> GcpEmulator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def cloudsql_login_hook(pg: Any) -> Callable[[str, str, int], None]:
    """Cloud SQL IAM login on a `PostgresServer`: a role named like Cloud SQL's IAM users (the
    account minus .gserviceaccount.com) whose password is the token until it expires."""
    from psycopg import sql

    def hook(email: str, token: str, expires_at: int) -> None:
        role = email.removesuffix(".gserviceaccount.com")
        until = dt.datetime.fromtimestamp(expires_at, dt.UTC).isoformat()
        exists = pg.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [role])
        verb = "ALTER" if exists else "CREATE"
        pg.execute(
            sql.SQL("{} ROLE {} LOGIN PASSWORD {} VALID UNTIL {}")
            .format(sql.SQL(verb), sql.Identifier(role), sql.Literal(token), sql.Literal(until))
            .as_string(None)
        )

    return hook

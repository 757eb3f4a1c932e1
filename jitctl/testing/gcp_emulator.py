"""A local emulator of GCP's Security Token Service and IAM Credentials, for tests and the demo.

    with GcpEmulator() as gcp:
        gcp.add_provider(AUDIENCE, issuer=broker_url + "/gcp", jwks=jwks_json)
        gcp.add_service_account(SA_EMAIL, members=[gcp.principal(AUDIENCE, "alice")])
        gcp.sts_endpoint, gcp.iam_endpoint         # for [gcp] sts_endpoint / iam_endpoint
        gcp.issued                                 # every token, naming the subject behind it

It follows the documented wire format (../shared/notes/gcp-and-oidc.md §1-§3), so real
google-auth objects talk to it unchanged:
- `POST /v1/token` (STS: token exchange and downscoping) and
  `POST /v1/projects/-/serviceAccounts/<email>:generateAccessToken` (IAM Credentials); what
  each decides, and why, is in `gcp_tokens`; envelopes, body parsing and subject-token checks
  are in `gcp_wire`. This module is the HTTP server, the registry and the log.
- STS refuses any `Authorization` header (`strict`).
- A `sqlservice.login` token calls `on_sql_login(account, token, expires_at)`: with
  `cloudsql_login_hook(pg)` that becomes a PostgreSQL role whose password is the token, valid
  until the token's expiry (notes §9) — Cloud SQL IAM login, emulated.

Knobs for tests: `federated_lifetime` (STS `expires_in`, default 3600), `strict`. The log:
`issued` (and `GET /emulator/tokens`), `requests` (path, content type, fields but the subject
token).
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

from jitctl.testing import gcp_tokens
from jitctl.testing.gcp_wire import (
    GENERATE,
    SQL_LOGIN_SCOPE,
    WORKLOAD_AUDIENCE,
    IssuedToken,
    Provider,
    Refusal,
    ServiceAccount,
    google_error,
    oauth_error,
    parse_fields,
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

    principal = staticmethod(gcp_tokens.principal)
    principal_set = staticmethod(gcp_tokens.principal_set)

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
                token, answer = gcp_tokens.exchange(
                    fields, self.providers, self.find, self.federated_lifetime
                )
                self._issue(token)
                return 200, answer
            match = GENERATE.match(path)
            if match:
                try:
                    body = json.loads(raw or b"{}")
                except ValueError:
                    raise google_error(
                        400, "INVALID_ARGUMENT", "Invalid JSON payload received."
                    ) from None
                entry["fields"] = body
                email = unquote(match.group(2))
                token, answer = gcp_tokens.generate_access_token(
                    match.group(1),
                    email,
                    lowered.get("authorization", ""),
                    body,
                    self.accounts,
                    self.find,
                )
                self._issue(token)
                if SQL_LOGIN_SCOPE in token.scopes and self.on_sql_login is not None:
                    self.on_sql_login(email, token.token, token.expires_at)
                return 200, answer
            raise google_error(
                404, "NOT_FOUND", f"The requested URL {path} was not found on this server."
            )
        except Refusal as refusal:
            entry["refused"] = refusal.body
            return refusal.status, refusal.body

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

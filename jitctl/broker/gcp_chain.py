# google-auth ships py.typed but leaves most constructors and methods unannotated.
# mypy: disable-error-code="no-untyped-call"
"""The federation chain itself, on google-auth: blocking, so callers run it in a thread.

1. STS exchanges the broker's subject token (RFC 8693) for a federated token: google-auth's
   `identity_pool.Credentials` with a `subject_token_supplier`, so the JWT never touches a file
   or URL;
2. with a `service_account`, the same credentials object impersonates it through IAM
   Credentials `generateAccessToken` (`service_account_impersonation_url`,
   `token_lifetime_seconds`); google-auth then asks STS for the iam scope only;
3. with `boundary` rules, the token is downscoped: google-auth's `CredentialAccessBoundary`
   builds the options and its `sts.Client` sends them. We do not use `downscoped.Credentials`
   because it hard-codes `https://sts.googleapis.com` (no token_url), and the endpoint must be
   configurable.
No wire code of our own: every request is google-auth's, through its requests transport with
our timeout. Failures become `GcpError` naming the stage (sts, iam, downscope) and carrying the
upstream's own error code and description.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

from jitctl.broker.gcp_subject import JWT_TOKEN_TYPE
from jitctl.config import GCP_WORKLOAD_AUDIENCE, GcpSection, GcpTarget

TOKEN_EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


class GcpError(Exception):
    """A refusal or an upstream failure; `reason` is safe to show to the caller."""

    def __init__(
        self,
        status: int,
        error: str,
        reason: str,
        stage: str,
        upstream: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason, self.stage = status, error, reason, stage
        self.upstream = upstream or {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"error": self.error, "reason": self.reason, "stage": self.stage}
        if self.upstream:
            out["upstream"] = self.upstream
        return out


def federated_principal(audience: str, subject: str) -> str:
    """principal://iam.googleapis.com/projects/N/locations/global/workloadIdentityPools/P/subject/S"""
    match = GCP_WORKLOAD_AUDIENCE.match(audience)
    if match is None:
        return f"subject/{subject}"
    number, pool, _ = match.groups()
    return (
        f"principal://iam.googleapis.com/projects/{number}/locations/global/"
        f"workloadIdentityPools/{pool}/subject/{subject}"
    )


def impersonation_url(section: GcpSection, service_account: str) -> str:
    return (
        f"{section.iam_endpoint}/v1/projects/-/serviceAccounts/{service_account}"
        ":generateAccessToken"
    )


def boundary_rules(target: GcpTarget) -> list[dict[str, Any]] | None:
    if not target.boundary:
        return None
    return [
        {
            "resource": r.resource,
            "permissions": list(r.permissions),
            "condition": r.condition or None,
        }
        for r in target.boundary
    ]


class _Transport:
    """google-auth's requests transport with our timeout; remembers the last URL it called so
    a failure can be pinned on STS or IAM."""

    def __init__(self, timeout: float) -> None:
        import google.auth.transport.requests

        self._request = google.auth.transport.requests.Request()
        self.timeout = timeout
        self.last_url = ""

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: Any = None,
        headers: Any = None,
        timeout: Any = None,
        **kwargs: Any,
    ) -> Any:
        self.last_url = url
        return self._request(
            url, method=method, body=body, headers=headers, timeout=self.timeout, **kwargs
        )


def _upstream_error(exc: Exception, stage: str, target: GcpTarget, url: str) -> GcpError:
    from google.auth import exceptions

    body: Any = exc.args[1] if len(exc.args) > 1 else None
    try:
        parsed = json.loads(body) if isinstance(body, str | bytes) else None
    except ValueError:
        parsed = None
    if isinstance(exc, exceptions.TransportError):
        what = "STS" if stage in ("sts", "downscope") else "IAM Credentials"
        return GcpError(
            502,
            "upstream_unreachable",
            f"cannot reach {what} at {url}: {exc.args[0]}",
            stage,
            {"url": url},
        )
    if stage in ("sts", "downscope") and isinstance(parsed, dict) and "error" in parsed:
        code, text = str(parsed.get("error")), str(parsed.get("error_description") or "")
        action = "the token exchange" if stage == "sts" else "downscoping"
        status = 403 if code in ("unauthorized_client", "access_denied") else 502
        return GcpError(
            status,
            "upstream_denied" if status == 403 else "upstream_error",
            f"STS refused {action}: {code}: {text}".rstrip(": "),
            stage,
            {"service": "sts", "error": code, "description": text},
        )
    if isinstance(parsed, dict) and isinstance(parsed.get("error"), dict):
        error = parsed["error"]
        code, text = str(error.get("status") or error.get("code")), str(error.get("message") or "")
        status = 403 if error.get("code") == 403 or code == "PERMISSION_DENIED" else 502
        return GcpError(
            status,
            "upstream_denied" if status == 403 else "upstream_error",
            f"IAM Credentials refused generateAccessToken for {target.service_account}: "
            f"{code}: {text}",
            stage,
            {
                "service": "iamcredentials",
                "error": code,
                "description": text,
                "status": error.get("code"),
            },
        )
    return GcpError(
        502,
        "upstream_error",
        f"{stage} failed: {exc.args[0] if exc.args else exc}",
        stage,
        {"description": str(exc.args[0] if exc.args else exc)[:500]},
    )


def _naive_utc_to_epoch(expiry: dt.datetime | None) -> int:
    # google-auth keeps expiry as naive UTC on purpose (notes §3.4).
    if expiry is None:
        return 0
    return int(expiry.replace(tzinfo=dt.UTC).timestamp())


def exchange(
    section: GcpSection,
    target: GcpTarget,
    subject_token: str,
    scopes: list[str],
    lifetime: int,
    boundary: bool,
) -> tuple[str, int]:
    """The google-auth chain; returns (access token, expiry epoch). Blocking."""
    from google.auth import downscoped, exceptions, identity_pool
    from google.oauth2 import sts

    class _Supplier(identity_pool.SubjectTokenSupplier):
        def get_subject_token(self, context: Any, request: Any) -> str:
            return subject_token

    transport = _Transport(section.timeout)
    kwargs: dict[str, Any] = {
        "audience": target.audience,
        "subject_token_type": JWT_TOKEN_TYPE,
        "token_url": section.sts_endpoint,
        "subject_token_supplier": _Supplier(),
        "scopes": scopes,
    }
    if target.service_account:
        kwargs["service_account_impersonation_url"] = impersonation_url(
            section, target.service_account
        )
        kwargs["service_account_impersonation_options"] = {"token_lifetime_seconds": lifetime}
    credentials = identity_pool.Credentials(**kwargs)
    try:
        credentials.refresh(transport)
    except exceptions.GoogleAuthError as exc:
        stage = "sts" if transport.last_url == section.sts_endpoint else "iam"
        raise _upstream_error(exc, stage, target, transport.last_url) from None
    token, expires_at = str(credentials.token), _naive_utc_to_epoch(credentials.expiry)
    if not (boundary and target.boundary):
        return token, expires_at
    access_boundary = downscoped.CredentialAccessBoundary(
        rules=[
            downscoped.AccessBoundaryRule(
                available_resource=rule.resource,
                available_permissions=list(rule.permissions),
                availability_condition=(
                    downscoped.AvailabilityCondition(rule.condition) if rule.condition else None
                ),
            )
            for rule in target.boundary
        ]
    )
    try:
        response = sts.Client(section.sts_endpoint).exchange_token(
            request=transport,
            grant_type=TOKEN_EXCHANGE,
            subject_token=token,
            subject_token_type=ACCESS_TOKEN_TYPE,
            requested_token_type=ACCESS_TOKEN_TYPE,
            additional_options=access_boundary.to_json(),
        )
    except exceptions.GoogleAuthError as exc:
        raise _upstream_error(exc, "downscope", target, transport.last_url) from None
    # A downscoped token dies with its source; STS usually omits expires_in (notes §1).
    if response.get("expires_in"):
        expires_at = min(
            expires_at, int(dt.datetime.now(dt.UTC).timestamp()) + int(response["expires_in"])
        )
    return str(response["access_token"]), expires_at

"""The CLI side of GCP federation: ask the broker, build what google-auth reads.

Rules:
- Nothing here holds a long-lived secret: the broker answers a short-lived access token, or a
  subject token of minutes that only STS accepts. The `external_account` config names an
  executable (`jitctl creds gcp-subject-token`), never a key or a token.
- Broker answers map to exit codes like every other command: 401 AuthError (3), 403
  DeniedError (4; policy, or GCP's PERMISSION_DENIED / attribute condition), 400 and 404
  UsageError (2), anything else JitctlError (1) with the upstream reason in the message.
- The executable's stdout is JSON for google-auth, which also reads its stderr as stdout
  (`subprocess.STDOUT`): callers must keep stderr quiet while it runs.
"""

from __future__ import annotations

import shlex
import sys
from typing import Any

from jitctl.errors import AuthError, DeniedError, JitctlError, UsageError

ALLOW_EXECUTABLES = "GOOGLE_EXTERNAL_ACCOUNT_ALLOW_EXECUTABLES"
EXECUTABLE_TIMEOUT_MS = 30000

_HINTS = {
    "identity": "run `jitctl login`",
    "policy": "see the gcp targets you may use in the broker's config, or ask an administrator",
    "sts": "the WIF provider must trust the broker's issuer and JWKS (docs/gcp.md)",
    "iam": "the federated principal needs roles/iam.workloadIdentityUser on the service account",
    "downscope": "check the target's boundary rules",
    "audit": "try again later; the broker's log says why",
}


def _post(
    url: str, ca_file: str | None, token: str, path: str, body: dict[str, Any]
) -> dict[str, Any]:
    from jitctl.client.api import http_client, reason_of, transport_errors

    with http_client(ca_file, base_url=url) as http, transport_errors(url):
        response = http.post(path, json=body, headers={"Authorization": f"Bearer {token}"})
    if response.is_success:
        answer = response.json()
        if not isinstance(answer, dict):
            raise JitctlError(f"{url}{path} did not answer with a JSON object")
        return answer
    try:
        error = response.json()
    except ValueError:
        error = {}
    stage = str(error.get("stage") or "") if isinstance(error, dict) else ""
    hint = _HINTS.get(stage)
    reason = reason_of(response)
    if response.status_code == 401:
        raise AuthError(f"the broker rejected your identity: {reason}", "run `jitctl login`")
    if response.status_code == 403:
        raise DeniedError(reason, hint)
    if response.status_code in (400, 404):
        raise UsageError(reason, hint)
    raise JitctlError(f"no GCP credential: {reason}", hint)


def request_credential(
    url: str, ca_file: str | None, token: str, target: str | None
) -> dict[str, Any]:
    """POST /v1/creds/gcp: {access_token, expires_at, expire_time, principal, scopes, ...}."""
    return _post(url, ca_file, token, "/v1/creds/gcp", {"target": target})


def request_subject_token(
    url: str, ca_file: str | None, token: str, target: str | None
) -> dict[str, Any]:
    """POST /v1/creds/gcp/subject-token: the broker's JWT plus the external_account details."""
    return _post(url, ca_file, token, "/v1/creds/gcp/subject-token", {"target": target})


def executable_command(target: str, broker_url: str, ca_file: str | None) -> str:
    """The command google-auth runs (absolute interpreter, shlex-quoted: it is shlex-split)."""
    argv = [
        sys.executable,
        "-m",
        "jitctl",
        "creds",
        "gcp-subject-token",
        "--target",
        target,
        "--broker",
        broker_url,
    ]
    if ca_file:
        argv += ["--ca-file", ca_file]
    return shlex.join(argv)


def external_account_config(info: dict[str, Any], command: str) -> dict[str, Any]:
    """A google-auth `external_account` config whose credential source is jitctl itself."""
    config: dict[str, Any] = {
        "type": "external_account",
        "audience": info["audience"],
        "subject_token_type": info["token_type"],
        "token_url": info["token_url"],
        "credential_source": {
            "executable": {"command": command, "timeout_millis": EXECUTABLE_TIMEOUT_MS}
        },
        "universe_domain": "googleapis.com",
    }
    if info.get("service_account_impersonation_url"):
        config["service_account_impersonation_url"] = info["service_account_impersonation_url"]
        if info.get("token_lifetime_seconds"):
            config["service_account_impersonation"] = {
                "token_lifetime_seconds": int(info["token_lifetime_seconds"])
            }
    return config


def executable_success(info: dict[str, Any]) -> dict[str, Any]:
    """The executable-source response (version 1) google-auth expects on stdout."""
    return {
        "version": 1,
        "success": True,
        "token_type": info["token_type"],
        "id_token": info["subject_token"],
        "expiration_time": int(info["expires_at"]),
    }


def executable_failure(error: JitctlError) -> dict[str, Any]:
    message = error.message + (f" (hint: {error.hint})" if error.hint else "")
    return {"version": 1, "success": False, "code": type(error).__name__, "message": message}

"""The CLI side of approvals: the broker's /v1/requests API (jitctl.broker.approvals_api).

Broker answers map to exit codes like every other command: 401 AuthError (3); 403 DeniedError
(4: self-approval, not an approver, not allowed to reach the target); 400 and an unknown
target UsageError (2); any other 404 and 409 (already decided, already voted) JitctlError (1)
with the broker's reason; 503 UnreachableError (6).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from jitctl.errors import AuthError, DeniedError, JitctlError, UnreachableError, UsageError

_HINTS = {
    "self_approval": "ask another member of the approver groups",
    "not_an_approver": "only members of the request's approver groups may decide it",
    "already_voted": "another approver must add theirs",
    "not_found": "see `jitctl request ls` for the requests you may see",
    "conflict": "see `jitctl request ls` for its status",
}


class RequestsClient:
    def __init__(self, url: str, ca_file: str | None, token: Callable[[], str]) -> None:
        self.url, self.ca_file, self.token = url, ca_file, token

    @classmethod
    def from_settings(cls) -> RequestsClient:
        from jitctl.client import settings
        from jitctl.client.tokens import current_token

        chosen = settings.resolve()
        return cls(chosen.url, chosen.ca_file, lambda: current_token(chosen.url, chosen.ca_file))

    def _call(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        params: dict[str, str] | None = None,
        unknown_target: bool = False,
    ) -> dict[str, Any]:
        from jitctl.client.api import http_client, reason_of, transport_errors

        headers = {"Authorization": f"Bearer {self.token()}"}
        with http_client(self.ca_file, base_url=self.url) as http, transport_errors(self.url):
            response = http.request(method, path, json=body, params=params or None, headers=headers)
        if response.is_success:
            answer = response.json()
            if not isinstance(answer, dict):
                raise JitctlError(f"{self.url}{path} did not answer with a JSON object")
            return answer
        try:
            error = str(response.json().get("error") or "")
        except (ValueError, AttributeError):
            error = ""
        reason, hint = reason_of(response), _HINTS.get(error)
        status = response.status_code
        if status == 401:
            raise AuthError(f"the broker rejected your identity: {reason}", "run `jitctl login`")
        if status == 403:
            raise DeniedError(reason, hint)
        if status == 400:
            raise UsageError(reason, hint)
        if status == 404 and unknown_target:
            raise UsageError(reason, "see `jitctl targets`")
        if status == 503:
            raise UnreachableError(reason, "try again later; the broker's log says why")
        raise JitctlError(reason, hint)

    def create(self, target: str, reason: str, duration: str) -> dict[str, Any]:
        body = {"target": target, "reason": reason, "duration": duration}
        # The one 404 here is an unknown target: a usage error, as everywhere (docs/cli.md).
        return self._call("POST", "/v1/requests", body, unknown_target=True)

    def list(self, *, mine: bool = False, pending: bool = False) -> list[dict[str, Any]]:
        params = {k: "true" for k, v in (("mine", mine), ("pending", pending)) if v}
        return list(self._call("GET", "/v1/requests", params=params).get("requests", []))

    def get(self, request_id: str) -> dict[str, Any]:
        return self._call("GET", f"/v1/requests/{request_id}")

    def decide(self, request_id: str, action: str, reason: str = "") -> dict[str, Any]:
        """`action`: approve | deny | revoke."""
        return self._call("POST", f"/v1/requests/{request_id}/{action}", {"reason": reason})

"""The development issuer's device authorization grant (RFC 8628): a CLI without a browser
shows a short code, and a person approves it on the issuer's /device page.

Rules:
- A device code is random (`secrets`); its user code is 8 letters shown as XXXX-XXXX, typed
  back in any case, with or without the dash and spaces.
- A request stays pending until somebody approves or denies it, or its lifetime runs out; once
  approved, its device code is redeemed for tokens exactly once.
- Polling (RFC 8628 §3.5): a poll sooner than the interval after the last one earns
  `slow_down` and 5 s more interval for good; otherwise a pending request answers
  `authorization_pending`, a denied one `access_denied`, an expired one `expired_token`.
- Errors are OAuthError. The client id is checked by DevIssuer, which also mints the tokens.
"""

from __future__ import annotations

import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any

from jitctl.broker.devissuer_errors import OAuthError
from jitctl.config import DevUser

# RFC 8628 §6.1: a user code from 20 consonants is easy to type and spells no words.
_USER_CODE_ALPHABET = "BCDFGHJKLMNPQRSTVWXZ"


@dataclass
class _Device:
    user_code: str
    scope: str
    expires_at: float
    interval: int
    last_poll: float = 0.0
    status: str = "pending"  # pending | approved | denied | done
    user: DevUser | None = None


class DeviceGrants:
    """The pending device requests of one issuer; see the module docstring."""

    def __init__(self, verification_uri: str, *, interval: int, lifetime: float) -> None:
        self.verification_uri = verification_uri
        self.interval = interval
        self.lifetime = lifetime
        self._lock = threading.Lock()
        self._devices: dict[str, _Device] = {}

    def start(self, scope: str) -> dict[str, Any]:
        """A new pending request: the device authorization response (RFC 8628 §3.2)."""
        device_code = secrets.token_urlsafe(32)
        letters = "".join(secrets.choice(_USER_CODE_ALPHABET) for _ in range(8))
        user_code = f"{letters[:4]}-{letters[4:]}"
        with self._lock:
            self._devices[device_code] = _Device(
                user_code=user_code,
                scope=scope,
                expires_at=time.time() + self.lifetime,
                interval=self.interval,
            )
        return {
            "device_code": device_code,
            "user_code": user_code,
            "verification_uri": self.verification_uri,
            "verification_uri_complete": f"{self.verification_uri}?user_code={user_code}",
            "expires_in": int(self.lifetime),
            "interval": self.interval,
        }

    def redeem(self, device_code: str) -> tuple[DevUser, str]:
        """The user and scope of an approved request, once; raises OAuthError otherwise."""
        with self._lock:
            device = self._devices.get(device_code)
            now = time.time()
            if device is None or device.status == "done":
                raise OAuthError("invalid_grant", "unknown or already used device code")
            if now > device.expires_at:
                raise OAuthError("expired_token", "the device code expired; start again")
            if device.status == "denied":
                raise OAuthError("access_denied", "the user denied the request")
            if device.status == "approved" and device.user is not None:
                device.status = "done"
                return device.user, device.scope
            too_fast = now - device.last_poll < device.interval
            device.last_poll = now
            if too_fast:
                device.interval += 5
                raise OAuthError("slow_down", f"poll at most every {device.interval} s")
            raise OAuthError("authorization_pending", "waiting for the user to approve")

    def decide(self, user_code: str, user_name: str, user: DevUser | None, approve: bool) -> str:
        """Approve (as `user`, found by `user_name`) or deny a pending request; returns a
        sentence for the page."""
        wanted = user_code.upper().replace("-", "").replace(" ", "")
        with self._lock:
            device = next(
                (
                    d
                    for d in self._devices.values()
                    if d.user_code.replace("-", "") == wanted and d.status == "pending"
                ),
                None,
            )
            if device is None or time.time() > device.expires_at:
                raise OAuthError("invalid_request", "unknown or expired user code")
            if not approve:
                device.status = "denied"
                return "Request denied. The device will be told."
            if user is None:
                raise OAuthError("access_denied", f"no development user {user_name!r}")
            device.user, device.status = user, "approved"
        return f"Approved as {user.name}. You may return to your terminal."

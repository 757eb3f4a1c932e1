"""Messages the server may send at any time (protocol-flow #PROTOCOL-ASYNC): NoticeResponse,
NotificationResponse and ParameterStatus. None of them answers a request, so none is attributed.

Rules (notes §7, §9):
- Notice fields that carry values (M, D, H, W, q) and notification payloads are masked on a
  masked target before they are forwarded or recorded; notifications are recorded
  (`pg.notification`: channel and masked payload).
- ParameterStatus is tracked. `standard_conforming_strings` other than `on`, or a
  `client_encoding` other than UTF8, ends the session: the classifier would no longer read text
  as the server does. Changes of the parameters in `WATCHED` (role, read-only, ...) are recorded
  (`pg.parameter`).
"""

from __future__ import annotations

from collections import Counter

from .messages import build_notification, error_fields, error_response
from .messages import notification as parse_a
from .results import mask_fields
from .state import Kill, SessionState

WATCHED = (
    "session_authorization",
    "is_superuser",
    "default_transaction_read_only",
    "standard_conforming_strings",
    "client_encoding",
    "in_hot_standby",
)


def notice(state: SessionState, body: bytes) -> bytes | None:
    masks = state.masks
    if masks is None:
        return None
    fields = error_fields(body)
    shown, _ = mask_fields(masks, fields)
    return error_response(shown, b"N") if shown != fields else None


def notification(state: SessionState, body: bytes) -> bytes | None:
    pid, channel, payload = parse_a(body)
    masks = state.masks
    shown, counts = (payload, Counter[str]()) if masks is None else masks.mask_text(payload)
    record = {"channel": channel, "payload": shown}
    if counts:
        record["masked"] = dict(counts)
    state.record("pg.notification", record)
    return build_notification(pid, channel, shown) if shown != payload else None


class Parameters:
    """The server's ParameterStatus values as last reported."""

    def __init__(self, state: SessionState) -> None:
        self.state = state
        self.values: dict[str, str] = {}

    def check(self, name: str, value: str) -> None:
        """Track one report; raise Kill when lexing or encoding changed (notes §9)."""
        previous = self.values.get(name)
        self.values[name] = value
        bad = (name == "standard_conforming_strings" and value.lower() != "on") or (
            name == "client_encoding" and value.upper().replace("-", "") != "UTF8"
        )
        if name in WATCHED and (bad or previous is not None) and previous != value:
            payload = {"name": name, "value": value, "previous": previous}
            if bad:
                payload["action"] = "closed"
            self.state.record("pg.parameter", payload)
        if bad:
            raise Kill(
                "0A000",
                f"jitctl: the server reports {name}={value}; the session is closed because "
                "statements could no longer be read as the server reads them",
            )

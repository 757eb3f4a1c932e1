"""Where `request watch` reads pending requests and sends decisions.

A source is synchronous (the app calls it from worker threads): `pending()` lists what waits,
newest first, as the API's JSON views; `decide(id, action, reason)` approves or denies and
returns the request as it now is, raising `JitctlError` with the broker's reason when refused.
"""

from __future__ import annotations

from typing import Any, Protocol


class Source(Protocol):
    def pending(self) -> list[dict[str, Any]]: ...

    def decide(self, request_id: str, action: str, reason: str) -> dict[str, Any]: ...


class BrokerSource:
    """The broker's /v1/requests API through `jitctl.client.requests.RequestsClient`."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def pending(self) -> list[dict[str, Any]]:
        return list(self.client.list(pending=True))

    def decide(self, request_id: str, action: str, reason: str) -> dict[str, Any]:
        return dict(self.client.decide(request_id, action, reason))

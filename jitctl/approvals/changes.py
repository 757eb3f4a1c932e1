"""How a request changes: under the store's row lock, recorded once, announced once, and only
then heard of by the requests' waiters.

Rules:
- The store decides under its row lock (rules.py inside `store.change`), so brokers sharing a
  store agree; the broker that made a change writes its audit record and sends its webhook,
  so each step is recorded and announced once.
- `async with changes.change(id, decide) as (before, after):` the caller records the change
  inside; the request's waiters on this broker are poked on leaving, so they act only after
  its records are written. A waiter whose poll reads the new state sooner asks `in_flight`
  and waits for the poke. A waiter on another broker sharing the store learns of the change
  by polling, and may run ahead of the deciding broker's records by the time those take to
  commit.
- No audit, no approvals: with the audit writer unhealthy every change is refused (503), and
  a record that cannot be written is a 503 too. A store that fails is a 503 (`store_call`).
- Webhooks never hold anything up (notify.py sends them in the background).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

from jitctl.approvals.models import Request, Vote
from jitctl.approvals.notify import Notifier, message_for
from jitctl.approvals.rules import Problem
from jitctl.approvals.store import ApprovalStore, Duplicate, StoreUnavailable
from jitctl.approvals.wakeups import Wakeups
from jitctl.audit.records import Actor

log = logging.getLogger("jitctl.approvals")

Decide = Callable[[Request], tuple[dict[str, Any], Vote | None]]


class Changes:
    def __init__(
        self, config: Any, store: ApprovalStore, audit: Any, wakeups: Wakeups, notifier: Notifier
    ) -> None:
        self.config, self.store, self.audit = config, store, audit
        self.wakeups, self.notifier = wakeups, notifier
        self._changing: dict[str, int] = {}  # request id -> this broker's changes in flight

    async def store_call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except StoreUnavailable as exc:
            log.error(
                "approval store failed", extra={"event": "approvals.store", "error": str(exc)}
            )
            raise Problem(503, "unavailable", f"approvals are unavailable: {exc}") from None

    @contextlib.asynccontextmanager
    async def change(
        self, request_id: str, decide: Decide
    ) -> AsyncIterator[tuple[Request, Request]]:
        """`async with changes.change(...) as (before, after):` record the change inside; the
        request's waiters wake on leaving, so a resumed statement's records follow its grant."""
        self.need_audit()
        self._changing[request_id] = self._changing.get(request_id, 0) + 1
        try:
            try:
                before, after = await self.store_call(self.store.change, request_id, decide)
            except LookupError:
                raise Problem(404, "not_found", f"no request {request_id}") from None
            except Duplicate:
                raise Problem(409, "already_voted", f"you already voted on {request_id}") from None
            yield before, after
        finally:
            left = self._changing.pop(request_id) - 1
            if left:
                self._changing[request_id] = left
            self.wakeups.poke(request_id)

    def in_flight(self, request_id: str) -> bool:
        """This broker is changing `request_id` and has not written the records yet: what a
        poll reads now must wait for the poke."""
        return request_id in self._changing

    def need_audit(self) -> None:
        if self.audit is None or not self.audit.healthy:
            raise Problem(
                503,
                "unavailable",
                "the broker cannot record approvals right now (audit store unavailable)",
            )

    async def record(
        self, kind: str, request: Request, actor: Actor | None, **payload: Any
    ) -> None:
        from jitctl.audit import AuditUnavailable, NewRecord

        record = NewRecord(
            kind=kind,
            session_id=request.session_id,
            target=request.target,
            actor=actor,
            payload={"id": request.id, "kind": request.kind.value, **payload},
        )
        try:
            await self.audit.append(record)
        except AuditUnavailable as exc:
            raise Problem(503, "unavailable", f"could not record {kind}: {exc}") from None

    def notify(self, event: str, request: Request, by: str = "", reason: str = "") -> None:
        target = self.config.target(request.target)
        url = (target.access.webhook if target else "") or self.config.approvals.webhook
        self.notifier.send(url, message_for(event, request, by, reason))

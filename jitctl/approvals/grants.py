"""The grants this broker's sessions ride on, and ending those sessions when a grant ends.

Rules:
- A session admitted on a grant registers a callback (`watch`); the callback gets a reason the
  client can act on ("... expired at 14:32:40 UTC; ask again: jitctl request create ...")
  once the grant is no longer live, and is then forgotten.
- A grant is checked when its end comes (a timer at `expires_at`), whenever a wakeup names it
  (a revoke through any broker: wakeups.py), and on every sweep. A grant found past its end
  but still APPROVED is expired first (recorded once, by whichever broker gets there).
- A check that cannot read the store changes nothing; the next one tries again.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from jitctl.approvals import rules
from jitctl.approvals.models import Request, Status

log = logging.getLogger("jitctl.approvals")

EndSession = Callable[[str], None]


def ended_reason(grant: Request | None, grant_id: str) -> str:
    if grant is None:
        return f"access grant {grant_id} no longer exists"
    ask = f"ask again: jitctl request create {grant.target} --reason ..."
    if grant.status is Status.REVOKED:
        return f"access grant {grant.id} to {grant.target} was {grant.decision_reason}; {ask}"
    when = datetime.fromtimestamp(grant.expires_at or 0).astimezone().strftime("%H:%M:%S %Z")
    return f"access grant {grant.id} to {grant.target} expired at {when}; {ask}"


class GrantWatch:
    def __init__(self, service: Any) -> None:
        self.service = service  # jitctl.approvals.service.Approvals
        self._watchers: dict[str, dict[int, EndSession]] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}

    def watch(self, grant: Request, end_session: EndSession) -> Callable[[], None]:
        """Call `end_session(reason)` once `grant` is no longer live; returns `unwatch`."""
        key = id(end_session)
        self._watchers.setdefault(grant.id, {})[key] = end_session
        self._arm(grant)

        def unwatch() -> None:
            current = self._watchers.get(grant.id)
            if current is not None:
                current.pop(key, None)
                if not current:
                    self._forget(grant.id)

        return unwatch

    def heard(self, request_id: str) -> None:
        if request_id in self._watchers:
            self.service.spawn(self.check(request_id))

    async def check_all(self) -> None:
        for grant_id in list(self._watchers):
            await self.check(grant_id)

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()

    def _arm(self, grant: Request) -> None:
        delay = max(0.0, (grant.expires_at or 0.0) - self.service.clock()) + 0.01
        old = self._timers.pop(grant.id, None)
        if old is not None:
            old.cancel()
        self._timers[grant.id] = asyncio.get_running_loop().call_later(
            delay, lambda: self.service.spawn(self.check(grant.id))
        )

    def _forget(self, grant_id: str) -> dict[int, EndSession]:
        timer = self._timers.pop(grant_id, None)
        if timer is not None:
            timer.cancel()
        return self._watchers.pop(grant_id, {})

    async def check(self, grant_id: str) -> None:
        if grant_id not in self._watchers:
            return
        service = self.service
        try:
            grant = await service.changes.store_call(service.store.get, grant_id)
            if grant is not None and rules.grant_live(grant, service.clock()):
                self._arm(grant)
                return
            if grant is not None and grant.status is Status.APPROVED:
                grant = await service.expire(grant_id, "the grant ran out") or grant
        except rules.Problem as exc:
            log.warning(
                "cannot check a grant", extra={"event": "approvals.grant", "error": str(exc)}
            )
            return
        reason = ended_reason(grant, grant_id)
        for end_session in list(self._forget(grant_id).values()):
            end_session(reason)

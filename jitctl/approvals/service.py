"""The broker's approvals service: file, decide, wait for and watch requests.

Rules:
- Every change goes through `Changes` (changes.py): decided under the store's row lock,
  recorded and announced once, by the broker that made it, before its waiters hear of it.
  Kinds: `approval.requested`, `approval.approved` (one per approver, with the count so
  far), `approval.granted` (enough approvals, or automatic), `approval.denied`,
  `approval.expired` (nobody decided in time, or a grant ran out), `approval.revoked`,
  `approval.cancelled` (a held action's session ended first), `approval.executed` (the
  approved action went upstream).
- Waiting (`await_decision`) re-reads the store on every wakeup (wakeups.py), and acts on a
  decision only once this broker's records of it are written; at the deadline it expires the
  request itself — unless another broker decided first, which the locked re-read then returns.
- Grants: sessions riding on a grant register a callback (`watch_grant`, grants.py).
- What a new request holds, and the checks before it is filed, are filing.py's (pure).
- A sweep every `poll_interval` expires what is due (any broker may) and re-checks the grants
  this broker's sessions ride on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

from jitctl.approvals import filing, rules
from jitctl.approvals.changes import Changes
from jitctl.approvals.filing import REASON_CAP, actor_of, reviewer_of
from jitctl.approvals.grants import EndSession, GrantWatch
from jitctl.approvals.models import Kind, Request, Status, Vote
from jitctl.approvals.notify import Notifier
from jitctl.approvals.rules import Problem
from jitctl.approvals.store import ApprovalStore, Duplicate
from jitctl.approvals.wakeups import Wakeups
from jitctl.audit.records import Actor

log = logging.getLogger("jitctl.approvals")

TEXT_CAP = 64 * 1024


class Approvals:
    def __init__(
        self,
        config: Any,
        store: ApprovalStore,
        audit: Any,
        broker_id: str,
        *,
        notifier: Notifier | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config, self.store, self.broker_id = config, store, broker_id
        settings = config.approvals
        self.notifier = notifier or Notifier(
            retries=settings.webhook_retries, timeout=settings.webhook_timeout
        )
        self.clock = clock
        self.wakeups = Wakeups(store, settings.poll_interval)
        self.changes = Changes(config, store, audit, self.wakeups, self.notifier)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.grants = GrantWatch(self)

    async def start(self) -> None:
        await self.wakeups.start()
        self.wakeups.observe(self.grants.heard)
        self.spawn(self._sweep_forever())

    async def close(self) -> None:
        self.grants.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.wakeups.close()
        await self.notifier.close()
        await asyncio.to_thread(self.store.close)

    def spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- access requests ------------------------------------------------------------------------

    async def request_access(
        self, identity: Any, target_name: str, reason: str, duration: float
    ) -> Request:
        request, auto = filing.access_request(
            self.config,
            identity,
            target_name,
            reason,
            duration,
            now=self.clock(),
            broker_id=self.broker_id,
        )
        self.changes.need_audit()
        await self.changes.store_call(self.store.insert, request)
        await self.changes.record(
            "approval.requested",
            request,
            request.requester,
            reason=request.reason,
            duration_s=duration,
            approvers=list(request.approvers),
            min_approvals=request.min_approvals,
            deadline=request.deadline,
        )
        if auto:
            await self.changes.record(
                "approval.granted",
                request,
                None,
                auto=True,
                groups=auto,
                expires_at=request.expires_at,
            )
            self.changes.notify("granted automatically", request, reason=request.decision_reason)
        else:
            self.changes.notify("requested", request)
        return request

    async def active_grant(self, identity: Any, target_name: str) -> Request | None:
        found = await self.changes.store_call(
            self.store.find,
            kind=Kind.ACCESS,
            status=[Status.APPROVED],
            subject=identity.subject,
            target=target_name,
        )
        now = self.clock()
        live = [r for r in found if rules.grant_live(r, now)]
        return max(live, key=lambda r: r.expires_at or 0.0) if live else None

    # -- held statements ------------------------------------------------------------------------

    async def hold(
        self, actor: Actor, target: Any, session_id: str, hold: Any, timeout: float
    ) -> Request:
        """File the approval request for a `jitctl.plugin.Hold`."""
        self.changes.need_audit()
        request = filing.statement_request(
            actor, target, session_id, hold, timeout, now=self.clock(), broker_id=self.broker_id
        )
        try:
            await self.changes.store_call(self.store.insert, request)
        except Duplicate:
            raise Problem(409, "conflict", f"request id {hold.hold_id} exists already") from None
        await self.changes.record(
            "approval.requested",
            request,
            actor,
            text=request.text[:TEXT_CAP],
            details=request.details,
            approvers=list(request.approvers),
            min_approvals=request.min_approvals,
            deadline=request.deadline,
        )
        self.changes.notify("requested", request)
        return request

    async def await_decision(self, request_id: str, ended: asyncio.Event) -> Request | None:
        """The request once decided (or expired here at its deadline); None if `ended` was
        set first (the session is over: the request is cancelled)."""
        while True:
            request: Request | None = await self.changes.store_call(self.store.get, request_id)
            if request is None:
                return None
            if request.status is not Status.PENDING:
                if not self.changes.in_flight(request_id):
                    return request
                # This broker's change is still being recorded: its poke comes once it is.
                await self.wakeups.wait(request_id, self.wakeups.interval)
                continue
            remaining = request.deadline - self.clock()
            if remaining <= 0:
                return await self.expire(request_id, "nobody decided before the deadline")
            if ended.is_set():
                await self.cancel(request_id, "the session ended while the statement was held")
                return None
            waker = asyncio.ensure_future(self.wakeups.wait(request_id, remaining))
            stop = asyncio.ensure_future(ended.wait())
            try:
                await asyncio.wait({waker, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in (waker, stop):
                    task.cancel()

    async def executed(self, request: Request, session_id: str) -> None:
        def decide(current: Request) -> tuple[dict[str, Any], Vote | None]:
            if current.status is not Status.APPROVED:
                return {}, None
            return {"status": Status.EXECUTED}, None

        async with self.changes.change(request.id, decide) as (before, after):
            if before.status is Status.APPROVED:
                await self.changes.record("approval.executed", after, None, session=session_id)

    async def cancel(self, request_id: str, why: str) -> None:
        def decide(current: Request) -> tuple[dict[str, Any], Vote | None]:
            if current.status is not Status.PENDING:
                return {}, None
            return {"status": Status.CANCELLED, "decision_reason": why}, None

        with contextlib.suppress(Problem):
            async with self.changes.change(request_id, decide) as (before, after):
                if before.status is Status.PENDING:
                    await self.changes.record("approval.cancelled", after, None, reason=why)
                    self.changes.notify("cancelled", after, reason=why)

    async def expire(self, request_id: str, why: str) -> Request | None:
        """PENDING past its deadline, or a grant past its end → EXPIRED (recorded once, by
        the broker whose change it was). Returns the request as it now is."""
        now = self.clock()

        def decide(current: Request) -> tuple[dict[str, Any], Vote | None]:
            due = (current.status is Status.PENDING and current.deadline <= now) or (
                current.status is Status.APPROVED
                and current.kind is Kind.ACCESS
                and (current.expires_at or 0) <= now
            )
            if not due:
                return {}, None
            changes: dict[str, Any] = {"status": Status.EXPIRED}
            if current.status is Status.PENDING:
                changes.update(decided_at=now, decision_reason=why)
            return changes, None

        changed = False
        try:
            async with self.changes.change(request_id, decide) as (before, after):
                changed = True
                if after.status is Status.EXPIRED and before.status is not Status.EXPIRED:
                    grant = before.status is Status.APPROVED
                    await self.changes.record(
                        "approval.expired",
                        after,
                        None,
                        reason="the grant ran out" if grant else why,
                        **(
                            {"expires_at": after.expires_at}
                            if grant
                            else {"deadline": after.deadline}
                        ),
                    )
                    self.changes.notify("expired", after, reason="grant ended" if grant else why)
        except Problem:
            if changed:
                raise  # it expired, but could not be recorded
            current: Request | None = await self.changes.store_call(self.store.get, request_id)
            return current
        return after

    # -- decisions ------------------------------------------------------------------------------

    async def decide(self, request_id: str, identity: Any, vote: str, reason: str) -> Request:
        """`vote` is "approve" or "deny"."""
        if vote == "deny" and not reason.strip():
            raise Problem(400, "invalid_request", "a reason is required to deny (--reason)")
        who = reviewer_of(identity)
        now = self.clock()
        cast = Vote(who.subject, who.email, vote, reason.strip()[:REASON_CAP], now)

        def decide(current: Request) -> tuple[dict[str, Any], Vote | None]:
            rules.check_review(current, who, now, vote)
            return rules.after_vote(current, cast, now), cast

        actor = actor_of(identity)
        async with self.changes.change(request_id, decide) as (_, after):
            if vote == "deny":
                await self.changes.record("approval.denied", after, actor, reason=cast.reason)
                self.changes.notify("denied", after, who.email or who.subject, cast.reason)
                return after
            await self.changes.record(
                "approval.approved",
                after,
                actor,
                reason=cast.reason,
                approvals=after.approvals,
                needed=after.min_approvals,
            )
            if after.status is Status.APPROVED:
                extra = {"expires_at": after.expires_at} if after.kind is Kind.ACCESS else {}
                approvers = after.decided_by.split(", ")
                await self.changes.record(
                    "approval.granted", after, None, approvers=approvers, **extra
                )
                self.changes.notify("approved", after, after.decided_by, cast.reason)
        return after

    async def revoke(self, request_id: str, identity: Any, reason: str) -> Request:
        who = reviewer_of(identity)
        now = self.clock()
        why = reason.strip()[:REASON_CAP]

        def decide(current: Request) -> tuple[dict[str, Any], Vote | None]:
            rules.check_revoke(current, who)
            changes: dict[str, Any] = {
                "status": Status.REVOKED,
                "decision_reason": f"revoked by {who.email or who.subject}"
                + (f": {why}" if why else ""),
            }
            if current.status is Status.PENDING:
                changes.update(decided_at=now, decided_by=who.subject)
            return changes, None

        async with self.changes.change(request_id, decide) as (before, after):
            await self.changes.record(
                "approval.revoked", after, actor_of(identity), reason=why, was=before.status.value
            )
            self.changes.notify("revoked", after, who.email or who.subject, why)
        return after

    async def get(self, request_id: str, identity: Any) -> Request:
        request: Request | None = await self.changes.store_call(self.store.get, request_id)
        if request is None or not rules.may_see(request, reviewer_of(identity)):
            raise Problem(404, "not_found", f"no request {request_id} that you may see")
        return request

    async def visible(self, identity: Any, *, mine: bool, pending: bool) -> list[Request]:
        who = reviewer_of(identity)
        found: list[Request] = await self.changes.store_call(
            self.store.find,
            status=[Status.PENDING] if pending else [],
            subject=identity.subject if mine else None,
        )
        now = self.clock()
        if pending:
            found = [r for r in found if r.deadline > now]
        return [r for r in found if rules.may_see(r, who)]

    # -- grants and the sessions riding on them ---------------------------------------------------

    def watch_grant(self, grant: Request, end_session: EndSession) -> Callable[[], None]:
        """Call `end_session(reason)` once `grant` is no longer live; returns `unwatch`."""
        return self.grants.watch(grant, end_session)

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(max(self.config.approvals.poll_interval, 0.2))
            try:
                await self.sweep()
            except Exception as exc:  # a sweep must never stop the broker
                log.warning(
                    "approval sweep failed", extra={"event": "approvals.sweep", "error": str(exc)}
                )

    async def sweep(self) -> None:
        """Expire what is due (any broker may; the store makes it happen once) and re-check
        the grants this broker's sessions ride on."""
        if self.changes.audit is None or not self.changes.audit.healthy:
            return
        due = await self.changes.store_call(self.store.find, due_before=self.clock(), limit=100)
        for request in due:
            with contextlib.suppress(Problem):
                await self.expire(request.id, "nobody decided before the deadline")
        await self.grants.check_all()

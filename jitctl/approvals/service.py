"""The broker's approvals service: file, decide, wait for and watch requests.

Rules:
- The store decides under its row lock (rules.py inside `store.change`), so brokers sharing a
  store agree; the broker that made a change writes its audit record and sends its webhook,
  so each step is recorded and announced once. Kinds: `approval.requested`,
  `approval.approved` (one per approver, with the count so far), `approval.granted` (enough
  approvals, or automatic), `approval.denied`, `approval.expired` (nobody decided in time, or
  a grant ran out), `approval.revoked`, `approval.cancelled` (a held statement's session ended
  first), `approval.executed` (the approved statement went upstream).
- A change's waiters wake only after its records are written (`_change` is a context; a waiter
  whose poll reads the new state sooner waits for them too), so a held statement resumed at
  once records `approval.executed` after `approval.granted`. A waiter on another broker
  sharing the store learns of the change by polling, and may run ahead of the deciding
  broker's records by the time those take to commit.
- No audit, no approvals: with the audit writer unhealthy every change is refused (503).
- Waiting (`await_decision`) re-reads the store on every wakeup (wakeups.py); at the deadline
  it expires the request itself — unless another broker decided first, which the locked
  re-read then returns.
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
from collections.abc import AsyncIterator, Callable
from typing import Any

from jitctl.approvals import filing, rules
from jitctl.approvals.filing import REASON_CAP, actor_of, reviewer_of
from jitctl.approvals.grants import EndSession, GrantWatch
from jitctl.approvals.models import Kind, Request, Status, Vote
from jitctl.approvals.notify import Notifier, message_for
from jitctl.approvals.rules import Problem
from jitctl.approvals.store import ApprovalStore, Duplicate, StoreUnavailable
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
        self.config, self.store, self.audit, self.broker_id = config, store, audit, broker_id
        settings = config.approvals
        self.notifier = notifier or Notifier(
            retries=settings.webhook_retries, timeout=settings.webhook_timeout
        )
        self.clock = clock
        self.wakeups = Wakeups(store, settings.poll_interval)
        self._tasks: set[asyncio.Task[Any]] = set()
        self._changing: dict[str, int] = {}  # request id -> this broker's changes in flight
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

    # -- plumbing -------------------------------------------------------------------------------

    async def store_call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(fn, *args, **kwargs)
        except StoreUnavailable as exc:
            log.error(
                "approval store failed", extra={"event": "approvals.store", "error": str(exc)}
            )
            raise Problem(503, "unavailable", f"approvals are unavailable: {exc}") from None

    @contextlib.asynccontextmanager
    async def _change(
        self, request_id: str, decide: Callable[[Request], tuple[dict[str, Any], Vote | None]]
    ) -> AsyncIterator[tuple[Request, Request]]:
        """`async with self._change(...) as (before, after):` record the change inside; the
        request's waiters wake on leaving, so a resumed statement's records follow its grant."""
        self._need_audit()
        # A waiter that re-reads the store meanwhile (a poll) must not act on what it finds
        # before this change's records are written (await_decision checks `_changing`).
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

    def _need_audit(self) -> None:
        if self.audit is None or not self.audit.healthy:
            raise Problem(
                503,
                "unavailable",
                "the broker cannot record approvals right now (audit store unavailable)",
            )

    async def _record(
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

    def _notify(self, event: str, request: Request, by: str = "", reason: str = "") -> None:
        target = self.config.target(request.target)
        url = (target.access.webhook if target else "") or self.config.approvals.webhook
        self.notifier.send(url, message_for(event, request, by, reason))

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
        self._need_audit()
        await self.store_call(self.store.insert, request)
        await self._record(
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
            await self._record(
                "approval.granted",
                request,
                None,
                auto=True,
                groups=auto,
                expires_at=request.expires_at,
            )
            self._notify("granted automatically", request, reason=request.decision_reason)
        else:
            self._notify("requested", request)
        return request

    async def active_grant(self, identity: Any, target_name: str) -> Request | None:
        found = await self.store_call(
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
        self._need_audit()
        request = filing.statement_request(
            actor, target, session_id, hold, timeout, now=self.clock(), broker_id=self.broker_id
        )
        try:
            await self.store_call(self.store.insert, request)
        except Duplicate:
            raise Problem(409, "conflict", f"request id {hold.hold_id} exists already") from None
        await self._record(
            "approval.requested",
            request,
            actor,
            text=request.text[:TEXT_CAP],
            details=request.details,
            approvers=list(request.approvers),
            min_approvals=request.min_approvals,
            deadline=request.deadline,
        )
        self._notify("requested", request)
        return request

    async def await_decision(self, request_id: str, ended: asyncio.Event) -> Request | None:
        """The request once decided (or expired here at its deadline); None if `ended` was
        set first (the session is over: the request is cancelled)."""
        while True:
            request: Request | None = await self.store_call(self.store.get, request_id)
            if request is None:
                return None
            if request.status is not Status.PENDING:
                if request_id not in self._changing:
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

        async with self._change(request.id, decide) as (before, after):
            if before.status is Status.APPROVED:
                await self._record("approval.executed", after, None, session=session_id)

    async def cancel(self, request_id: str, why: str) -> None:
        def decide(current: Request) -> tuple[dict[str, Any], Vote | None]:
            if current.status is not Status.PENDING:
                return {}, None
            return {"status": Status.CANCELLED, "decision_reason": why}, None

        with contextlib.suppress(Problem):
            async with self._change(request_id, decide) as (before, after):
                if before.status is Status.PENDING:
                    await self._record("approval.cancelled", after, None, reason=why)
                    self._notify("cancelled", after, reason=why)

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
            async with self._change(request_id, decide) as (before, after):
                changed = True
                if after.status is Status.EXPIRED and before.status is not Status.EXPIRED:
                    grant = before.status is Status.APPROVED
                    await self._record(
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
                    self._notify("expired", after, reason="grant ended" if grant else why)
        except Problem:
            if changed:
                raise  # it expired, but could not be recorded
            current: Request | None = await self.store_call(self.store.get, request_id)
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
        async with self._change(request_id, decide) as (_, after):
            if vote == "deny":
                await self._record("approval.denied", after, actor, reason=cast.reason)
                self._notify("denied", after, who.email or who.subject, cast.reason)
                return after
            await self._record(
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
                await self._record("approval.granted", after, None, approvers=approvers, **extra)
                self._notify("approved", after, after.decided_by, cast.reason)
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

        async with self._change(request_id, decide) as (before, after):
            await self._record(
                "approval.revoked", after, actor_of(identity), reason=why, was=before.status.value
            )
            self._notify("revoked", after, who.email or who.subject, why)
        return after

    async def get(self, request_id: str, identity: Any) -> Request:
        request: Request | None = await self.store_call(self.store.get, request_id)
        if request is None or not rules.may_see(request, reviewer_of(identity)):
            raise Problem(404, "not_found", f"no request {request_id} that you may see")
        return request

    async def visible(self, identity: Any, *, mine: bool, pending: bool) -> list[Request]:
        who = reviewer_of(identity)
        found: list[Request] = await self.store_call(
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
        if self.audit is None or not self.audit.healthy:
            return
        due = await self.store_call(self.store.find, due_before=self.clock(), limit=100)
        for request in due:
            with contextlib.suppress(Problem):
                await self.expire(request.id, "nobody decided before the deadline")
        await self.grants.check_all()

"""The gateway's side of approvals: grants at admission, sessions riding on grants, holds.

Rules (docs/approvals.md):
- A target with `access.require_request` admits a tunnel only with a live grant for the caller
  (`admit_grant`); the refusal says how to ask (`jitctl request create ...`). A check (`op:
  check`) is refused the same way, so `jitctl connect` fails before it listens.
- A session admitted on a grant rides it: when the grant expires or is revoked the session
  ends with the reason (the Close frame reaches `jitctl connect`'s stderr, and `session.end`
  records it). A core that offers `terminate(reason)` first tells the client in its own
  protocol (Postgres: a FATAL ErrorResponse).
- One flow for every held action (`SessionApprovals`), whoever holds it: `file` the approval
  request, await its `decision`, and once an approved action has reached the upstream,
  `released` records `approval.executed` — never before, and not for an action that never
  left. Cores use it through `hold` (below); plugins with their own shell through
  `ShellIO.hold` and `ShellIO.released` (shell_io.py: the ssh and http shells).
- A `Hold` from a core is filed before the batch goes on (`hold`), then a waiter awaits the
  decision and hands it to `core.resume`; the commands that returns (the held bytes,
  forwarded) run before `released`.
- The wait is bounded by the target's `approval_timeout`, and never outlives the session or
  its grant. A request that cannot be filed (no approvals service, audit or store down) is
  refused at once ("unavailable"): a statement fails on the server like a blocked one (fail
  closed).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from jitctl.plugin import Hold, RemoteProtocolError, Review

log = logging.getLogger("jitctl.gateway")

ENDED = "the session ended while it was held"


async def admit_grant(runtime: Any, identity: Any, target: Any) -> Any:
    """The caller's live grant for `target` (None when the target needs none)."""
    from jitctl.approvals.rules import Problem
    from jitctl.gateway.refusals import Refused

    if not target.access.require_request:
        return None
    approvals = getattr(runtime, "approvals", None)
    if approvals is None:
        raise Refused("unavailable", f"{target.name} needs approvals, which this broker lacks")
    try:
        grant = await approvals.active_grant(identity, target.name)
    except Problem as exc:
        raise Refused("unavailable", exc.reason, "try again later") from None
    if grant is None:
        raise Refused(
            "denied",
            f"{target.name} needs an approved access request, and {identity.subject} has no "
            "active grant for it",
            f'ask for one: jitctl request create {target.name} --reason "..." --for 30m '
            "(then connect again once an approver said yes)",
        )
    return grant


def review_of(request: Any, timeout: float) -> Review:
    """The Review a decided approval request gives the core that held the statement."""
    from jitctl.approvals.models import Status

    by = tuple(b for b in request.decided_by.split(", ") if b)
    if request.status in (Status.APPROVED, Status.EXECUTED):
        return Review(True, "approved", request.decision_reason, by)
    if request.status is Status.EXPIRED:
        return Review(False, "expired", f"nobody approved it within {timeout:g}s")
    return Review(False, "denied", request.decision_reason or request.status.value, by)


class SessionApprovals:
    """One session's grant and holds (tunnel.py makes one per admitted session)."""

    def __init__(self, session: Any, grant: Any) -> None:
        self.session = session
        self.grant = grant
        self.approvals: Any = getattr(session.gateway.runtime, "approvals", None)
        self.started = time.monotonic()
        self._unwatch: Any = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._filed: dict[str, tuple[Any, float]] = {}  # hold_id -> (request, timeout)
        self._approved: dict[str, Any] = {}  # hold_id -> the decided request, until released
        if grant is not None and self.approvals is not None:
            self._unwatch = self.approvals.watch_grant(grant, self._grant_ended)

    def settings(self) -> dict[str, Any]:
        """What a core learns about holding (jitctl.plugin: `settings["approvals"]`)."""
        if self.approvals is None:
            return {}
        return {"approvals": {"timeout": self.session.target.access.approval_timeout}}

    def close(self) -> None:
        if self._unwatch is not None:
            self._unwatch()
            self._unwatch = None
        for task in list(self._tasks):
            task.cancel()

    # -- grants ---------------------------------------------------------------------------------

    def _grant_ended(self, reason: str) -> None:
        task = asyncio.ensure_future(self._end_for_grant(reason))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _end_for_grant(self, reason: str) -> None:
        session = self.session
        terminate = getattr(getattr(session, "core", None), "terminate", None)
        if terminate is not None and not session.stats.ended.is_set():
            with contextlib.suppress(Exception):
                await session.execute(terminate(reason))
        session._end(reason, True)

    # -- holds ----------------------------------------------------------------------------------

    def timeout(self) -> float:
        """The target's approval_timeout, cut to what is left of the session and the grant."""
        session = self.session
        limit = float(session.target.access.approval_timeout)
        left = float(session.target.max_session) - (time.monotonic() - self.started) - 1.0
        if self.grant is not None and self.grant.expires_at:
            left = min(left, self.grant.expires_at - time.time() - 1.0)
        return max(1.0, min(limit, left))

    async def file(self, hold: Hold) -> Review | None:
        """File `hold` as an approval request; a refusal ("unavailable") if it cannot be filed
        (no approvals here, audit or store down), else None: await `decision(hold)` next."""
        from jitctl.approvals.rules import Problem

        session = self.session
        if self.approvals is None:
            return Review(False, "unavailable", "this broker has no approvals")
        timeout = self.timeout()
        try:
            request = await self.approvals.hold(
                session.actor, session.target, session.session_id, hold, timeout
            )
        except Problem as exc:
            log.warning(
                "cannot hold an action for approval",
                extra={"event": "approvals.hold_failed", "error": exc.reason},
            )
            return Review(False, "unavailable", exc.reason)
        self._filed[hold.hold_id] = (request, timeout)
        return None

    async def decision(self, hold: Hold) -> Review:
        """Wait for the decision on a filed `hold`. Cancelled (or the session over) first:
        the request is cancelled and the hold refused."""
        from jitctl.approvals.rules import Problem

        request, timeout = self._filed.pop(hold.hold_id)
        try:
            decided = await self.approvals.await_decision(request.id, self.session.stats.ended)
        except Problem as exc:
            return Review(False, "unavailable", exc.reason)
        except asyncio.CancelledError:
            with contextlib.suppress(BaseException):
                await asyncio.shield(self.approvals.cancel(request.id, ENDED))
            raise
        if decided is None:
            return Review(False, "unavailable", ENDED)  # await_decision cancelled it
        review = review_of(decided, timeout)
        if review.approved:
            self._approved[hold.hold_id] = decided
        return review

    async def released(self, hold: Hold) -> None:
        """The approved `hold` reached the upstream: `approval.executed`. Nothing for a hold
        this session has no approval for. A failure to record is logged, not raised: the
        action has gone and the request stays APPROVED in the store."""
        from jitctl.approvals.rules import Problem

        decided = self._approved.pop(hold.hold_id, None)
        if decided is None:
            return
        try:
            await self.approvals.executed(decided, self.session.session_id)
        except Problem as exc:
            log.warning(
                "cannot record an approved action's release",
                extra={"event": "approvals.executed_failed", "error": exc.reason},
            )

    # -- holds from a core (relay.py) -------------------------------------------------------------

    async def hold(self, core: Any, command: Hold) -> None:
        """File the request (before the rest of the batch runs), then wait in the background
        and hand the decision to `core.resume`; `approval.executed` once the commands that
        returns (the held bytes, forwarded) have run."""
        refused = await self.file(command)
        task = asyncio.ensure_future(self._settle(core, command, refused))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _settle(self, core: Any, command: Hold, refused: Review | None) -> None:
        review = refused or await self.decision(command)
        if await self._resume(core, command, review) and review.approved:
            await self.released(command)

    async def _resume(self, core: Any, command: Hold, review: Review) -> bool:
        """Hand the decision to the core; False if the session ended first."""
        session = self.session
        if session.stats.ended.is_set():
            return False
        try:
            await session.execute(core.resume(command.hold_id, review))
        except RemoteProtocolError as exc:
            session._end(f"protocol error from the client: {exc}", True)
            return False
        except Exception as exc:
            session._end(str(exc) or type(exc).__name__, True)
            return False
        return True

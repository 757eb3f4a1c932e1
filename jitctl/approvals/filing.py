"""New approval requests: the checks before one is filed, and what it holds. Pure.

Rules (docs/approvals.md):
- An access request names a configured target the caller may reach at all (its
  `allow_groups`), one whose access needs a request (`require_request`), a reason, and a
  duration the target allows (`rules.check_duration`); anything else is a `Problem` (404, 403,
  400) and nothing is filed.
- Reasons are kept stripped, at most 2000 characters. A request is PENDING until
  `approvals.request_ttl` after it was filed, with the target's approvers and minimum.
- A requester in one of the target's `auto_approve_groups` is granted at once: APPROVED by
  "auto", live for the duration, the groups named in the decision reason.
- A held statement's request takes the hold's id, text and details; its approvers and minimum
  are the matching rule's (`rules.rule_approvers`), its deadline the hold's timeout.
- The service (service.py) stores, records and announces what these return.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from jitctl.approvals import rules
from jitctl.approvals.models import Kind, Request, Status, new_id
from jitctl.approvals.rules import Problem, Reviewer
from jitctl.audit.records import Actor

REASON_CAP = 2000


def actor_of(identity: Any) -> Actor:
    return Actor(
        subject=identity.subject,
        email=getattr(identity, "email", "") or "",
        groups=tuple(getattr(identity, "groups", ()) or ()),
        issuer=getattr(identity, "issuer", "") or "",
    )


def reviewer_of(identity: Any) -> Reviewer:
    return Reviewer(identity.subject, identity.email or "", tuple(identity.groups))


def access_request(
    config: Any,
    identity: Any,
    target_name: str,
    reason: str,
    duration: float,
    *,
    now: float,
    broker_id: str,
) -> tuple[Request, list[str]]:
    """The request to file, and the groups that granted it automatically (none: PENDING)."""
    from jitctl.broker.app import may_reach

    target = config.target(target_name)
    if target is None:
        raise Problem(404, "not_found", f"no target named {target_name!r}")
    if not may_reach(identity, target):
        raise Problem(
            403,
            "denied",
            f"{identity.subject} may not reach {target_name!r} at all (needs one of the "
            f"groups: {', '.join(target.allow_groups) or 'none configured'})",
        )
    if not target.access.require_request:
        raise Problem(
            400,
            "invalid_request",
            f"{target_name} needs no access request; connect directly "
            f"(`jitctl connect {target_name}`)",
        )
    if not reason.strip():
        raise Problem(400, "invalid_request", "a reason is required (--reason)")
    rules.check_duration(target, duration)
    request = Request(
        id=new_id(),
        kind=Kind.ACCESS,
        target=target.name,
        status=Status.PENDING,
        requester=actor_of(identity),
        reason=reason.strip()[:REASON_CAP],
        created_at=now,
        deadline=now + config.approvals.request_ttl,
        approvers=tuple(target.access.approvers),
        min_approvals=target.access.min_approvals,
        duration=duration,
        broker=broker_id,
    )
    auto = sorted(set(identity.groups) & set(target.access.auto_approve_groups))
    if auto:
        request = dataclasses.replace(
            request,
            status=Status.APPROVED,
            decided_at=now,
            expires_at=now + duration,
            decided_by="auto",
            decision_reason=f"member of {', '.join(auto)} (auto_approve_groups)",
        )
    return request, auto


def statement_request(
    actor: Actor,
    target: Any,
    session_id: str,
    hold: Any,
    timeout: float,
    *,
    now: float,
    broker_id: str,
) -> Request:
    """The request for a `jitctl.plugin.Hold`."""
    details = dict(hold.details)
    approvers, minimum = rules.rule_approvers(target, str(details.get("rule") or ""))
    return Request(
        id=hold.hold_id,
        kind=Kind.STATEMENT,
        target=target.name,
        status=Status.PENDING,
        requester=actor,
        reason=actor.reason,
        created_at=now,
        deadline=now + timeout,
        approvers=approvers,
        min_approvals=minimum,
        text=hold.text,
        details=details,
        session_id=session_id,
        broker=broker_id,
    )

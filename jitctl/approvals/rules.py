"""Pure approval rules: who may review, what a vote does, which rule's approvers apply.

Rules (DESIGN §9, docs/approvals.md):
- Only members of the request's approver groups may approve or deny, and never the requester:
  the same subject, or the same email under another identity (a person's agent token and their
  own login), is "self".
- Approvals count once per approver (the store's key is (request, subject)); a request is
  granted when `min_approvals` distinct approvers said yes. One eligible "deny" ends it.
- A request can be decided only while PENDING and before its deadline.
- The requester may withdraw (revoke) a pending request or end their own grant; an approver of
  the request may revoke it too.
- A grant is live while APPROVED and before `expires_at`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from jitctl.approvals.models import Kind, Request, Status, Vote


class Problem(Exception):
    """A request the rules refuse; `status` is the HTTP status the API answers with."""

    def __init__(self, status: int, error: str, reason: str) -> None:
        super().__init__(reason)
        self.status, self.error, self.reason = status, error, reason


@dataclass(frozen=True, slots=True)
class Reviewer:
    subject: str
    email: str = ""
    groups: tuple[str, ...] = ()


def is_self(request: Request, who: Reviewer) -> bool:
    mine = request.requester
    return who.subject == mine.subject or bool(who.email and who.email == mine.email)


def is_approver(request: Request, who: Reviewer) -> bool:
    return bool(set(request.approvers) & set(who.groups))


def may_see(request: Request, who: Reviewer) -> bool:
    return is_self(request, who) or is_approver(request, who)


def check_review(request: Request, who: Reviewer, now: float, vote: str) -> None:
    """Raise `Problem` unless `who` may cast `vote` ("approve" | "deny") on `request` now."""
    what = "approve" if vote == "approve" else "deny"
    if request.status is not Status.PENDING:
        raise Problem(409, "conflict", f"request {request.id} is already {request.status.value}")
    if now >= request.deadline:
        raise Problem(409, "conflict", f"request {request.id} expired (nobody decided in time)")
    if is_self(request, who):
        raise Problem(
            403,
            "self_approval",
            f"you cannot {what} your own request {request.id}; another approver must",
        )
    if not is_approver(request, who):
        raise Problem(
            403,
            "not_an_approver",
            f"{who.subject} may not {what} request {request.id} (approvers are members of: "
            f"{', '.join(request.approvers) or 'nobody configured'})",
        )
    if any(v.subject == who.subject for v in request.votes):
        raise Problem(
            409,
            "already_voted",
            f"you already approved request {request.id}; it needs "
            f"{request.min_approvals - request.approvals} more from other approvers",
        )


def after_vote(request: Request, vote: Vote, now: float) -> dict[str, Any]:
    """The columns that change once `vote` is counted (the vote itself is stored apart)."""
    if vote.vote == "deny":
        return {
            "status": Status.DENIED,
            "decided_at": now,
            "decided_by": vote.subject,
            "decision_reason": vote.reason,
        }
    approvers = [v.subject for v in request.votes if v.vote == "approve"] + [vote.subject]
    if len(approvers) < request.min_approvals:
        return {}
    changes: dict[str, Any] = {
        "status": Status.APPROVED,
        "decided_at": now,
        "decided_by": ", ".join(approvers),
        "decision_reason": vote.reason,
    }
    if request.kind is Kind.ACCESS:
        changes["expires_at"] = now + request.duration
    return changes


def check_revoke(request: Request, who: Reviewer) -> None:
    if request.kind is Kind.STATEMENT:
        raise Problem(
            400, "invalid_request", f"{request.id} is a held statement: deny it instead of revoking"
        )
    if request.status not in (Status.PENDING, Status.APPROVED):
        raise Problem(409, "conflict", f"request {request.id} is already {request.status.value}")
    if not (is_self(request, who) or is_approver(request, who)):
        raise Problem(
            403,
            "forbidden",
            f"only the requester or an approver of {request.target} may revoke {request.id}",
        )


def grant_live(request: Request, now: float) -> bool:
    return (
        request.kind is Kind.ACCESS
        and request.status is Status.APPROVED
        and (request.expires_at or 0.0) > now
    )


def rule_approvers(target: Any, rule_name: str) -> tuple[tuple[str, ...], int]:
    """The approver groups and approvals needed for a statement held by `rule_name`: the
    rule's own (rules are named, or "rule N" by position), else the target's access rules."""
    rules: Sequence[Any] = getattr(target, "rules", ()) or ()
    access = getattr(target, "access", None)
    fallback = tuple(getattr(access, "approvers", ()) or ())
    for index, rule in enumerate(rules):
        if (rule.name or f"rule {index + 1}") == rule_name:
            return tuple(rule.approvers) or fallback, int(getattr(rule, "min_approvals", 1) or 1)
    return fallback, 1


def check_duration(target: Any, seconds: float) -> None:
    from jitctl.durations import format_duration

    longest = float(target.access.max_duration)
    if seconds < 1:
        raise Problem(400, "invalid_request", "--for must be at least 1s")
    if seconds > longest:
        raise Problem(
            400,
            "invalid_request",
            f"{target.name} grants at most {format_duration(longest)} at a time "
            f"(asked for {format_duration(seconds)})",
        )

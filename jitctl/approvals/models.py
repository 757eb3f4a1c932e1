"""Approval requests and votes as plain values, and their JSON views.

Rules:
- One request type for both kinds: `ACCESS` (a grant to open sessions to a target for a while)
  and `STATEMENT` (one held statement, exactly `text`). Ids are 12 hex characters; a held
  statement's id is made by the protocol core, which names it to the client.
- Status moves only forward: PENDING → APPROVED → EXECUTED (statements) / EXPIRED or REVOKED
  (grants); PENDING → DENIED, EXPIRED (nobody answered in time), REVOKED (withdrawn) or
  CANCELLED (the held statement's session ended first).
- Times are seconds since the Unix epoch (floats); `deadline` is when a pending request stops
  waiting, `expires_at` when an approved grant ends.
- `view()` is what the API answers and `--json` prints; `text` is the exact statement.
"""

from __future__ import annotations

import enum
import secrets
from dataclasses import dataclass, field
from typing import Any

from jitctl.audit.records import Actor


class Kind(enum.StrEnum):
    ACCESS = "access"
    STATEMENT = "statement"


class Status(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    EXPIRED = "expired"
    REVOKED = "revoked"
    EXECUTED = "executed"
    CANCELLED = "cancelled"


FINAL = frozenset(
    {Status.DENIED, Status.EXPIRED, Status.REVOKED, Status.EXECUTED, Status.CANCELLED}
)


def new_id() -> str:
    return secrets.token_hex(6)


@dataclass(frozen=True, slots=True)
class Vote:
    subject: str
    email: str
    vote: str  # "approve" | "deny"
    reason: str
    at: float

    def view(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "email": self.email,
            "vote": self.vote,
            "reason": self.reason,
            "at": self.at,
        }


@dataclass(frozen=True, slots=True)
class Request:
    id: str
    kind: Kind
    target: str
    status: Status
    requester: Actor
    reason: str
    created_at: float
    deadline: float
    approvers: tuple[str, ...] = ()
    min_approvals: int = 1
    duration: float = 0.0  # ACCESS: the grant's length once approved
    text: str = ""  # STATEMENT: exactly what runs
    details: dict[str, Any] = field(default_factory=dict)
    session_id: str = ""  # STATEMENT: the session holding it
    broker: str = ""  # the broker that filed it
    decided_at: float | None = None
    expires_at: float | None = None  # ACCESS: end of the grant
    decided_by: str = ""
    decision_reason: str = ""
    version: int = 1
    votes: tuple[Vote, ...] = ()

    @property
    def approvals(self) -> int:
        return sum(1 for vote in self.votes if vote.vote == "approve")

    def view(self, now: float | None = None) -> dict[str, Any]:
        out: dict[str, Any] = {
            "id": self.id,
            "kind": self.kind.value,
            "target": self.target,
            "status": self.status.value,
            "requester": self.requester.to_dict(),
            "reason": self.reason,
            "approvers": list(self.approvers),
            "min_approvals": self.min_approvals,
            "approvals": self.approvals,
            "votes": [vote.view() for vote in self.votes],
            "created_at": self.created_at,
            "deadline": self.deadline,
            "decided_at": self.decided_at,
            "decided_by": self.decided_by,
            "decision_reason": self.decision_reason,
            "broker": self.broker,
        }
        if self.kind is Kind.ACCESS:
            out["duration_s"] = self.duration
            out["expires_at"] = self.expires_at
            if now is not None:
                out["active"] = self.status is Status.APPROVED and (self.expires_at or 0) > now
        else:
            out["text"] = self.text
            out["details"] = dict(self.details)
            out["session_id"] = self.session_id
        return out

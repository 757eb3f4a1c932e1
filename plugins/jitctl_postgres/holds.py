"""Held statements (notes §6): a statement whose rule says `approve` waits for a person.

Rules:
- Only when the shell offers approvals (`settings["approvals"]`, jitctl.plugin); without them
  an `approve` decision is refused like a denial, with its own message (enforcement.py).
- A simple Query, a Parse or a FunctionCall can be held. Holding stops the client's framer at
  that message (`framing.HOLD`): the message and everything behind it wait, in order, and the
  server still answers what went before. The core emits `pg.held`, a `Hold` naming the
  approval request (its id is made here: the client is told it), and a NoticeResponse
  (protocol-flow #PROTOCOL-ASYNC: legal at any time; psql prints it) whose message starts
  "jitctl: waiting for approval of request <id>" and whose detail is `key=value` pairs, so an
  agent can act on it.
- `release` after the decision: approved → the message exactly as the client sent it (byte
  for byte: the approval covers that text) is recorded (`pg.statement` for a Query or
  FunctionCall; a Parse registers its statement, recorded at each Execute) and forwarded;
  denied, timed out or undecidable → the §5 path: `pg.blocked` (decision "unapproved") and
  the rewrite that fails on the server, so transaction and pipeline state stay Postgres's own.
- An approved named statement stays usable in the session like any allowed one: the approval
  is of its text; each execution is recorded with its parameters.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from jitctl.plugin import Hold, Review

from .enforcement import LocalDecision, allow, block
from .messages import error_response
from .state import TEXT_CAP, decision_fields
from .statements import Expect, Pending, Prepared

HOLDABLE = (Expect.QUERY, Expect.PARSE, Expect.FUNCTION)


def new_id() -> str:
    return secrets.token_hex(6)


@dataclass(slots=True)
class Held:
    hold_id: str
    pending: Pending
    decision: Any
    payload: dict[str, Any]
    original: bytes
    rewrite: bytes
    data: bytes
    parse: tuple[str, str, Any] | None = None  # (name, text, classification) of a Parse


def notice(held: Held, timeout: float) -> bytes:
    """NoticeResponse telling the client what it waits for."""
    rule = decision_fields(held.decision)["rule"] or "default"
    reason = str(getattr(held.decision, "reason", "") or "approval required")
    return error_response(
        {
            "S": "NOTICE",
            "V": "NOTICE",
            "C": "00000",
            "M": f"jitctl: waiting for approval of request {held.hold_id}: {reason}",
            "D": f"request_id={held.hold_id} rule={rule} timeout_s={timeout:g}",
            "H": f"an approver runs: jitctl request approve {held.hold_id} (or deny); "
            f"unanswered within {timeout:g}s, the statement fails",
        },
        b"N",
    )


def hold(
    frontend: Any,
    pending: Pending,
    decision: Any,
    payload: dict[str, Any],
    original: bytes,
    rewrite: bytes,
    data: bytes,
    parse: tuple[str, str, Any] | None,
) -> Held:
    state = frontend.state
    held = Held(new_id(), pending, decision, payload, original, rewrite, data, parse)
    text = data.decode() if data else str(payload.get("text") or pending.text)
    shown = {**payload, **decision_fields(decision)}
    state.record("pg.held", {"seq": pending.seq, "hold": held.hold_id, **shown}, data=data)
    details: dict[str, Any] = {
        key: shown[key]
        for key in ("protocol", "stage", "statement", "kind", "kinds", "tables", "functions")
        if key in shown
    }
    details.update(rule=shown["rule"] or "default", reason=shown["reason"], seq=pending.seq)
    state.out.append(Hold(held.hold_id, text, details))
    timeout = float((frontend.approvals or {}).get("timeout") or 0)
    frontend.notice = notice(held, timeout)
    return held


def _refusal(held: Held, review: Review) -> str:
    by = ", ".join(review.by)
    if review.outcome == "expired":
        return f"approval request {held.hold_id} timed out: {review.reason}"
    if review.outcome == "denied":
        who = f" by {by}" if by else ""
        return f"approval request {held.hold_id} was denied{who}: {review.reason or 'no reason'}"
    return f"approval request {held.hold_id} could not be decided: {review.reason}"


def release(frontend: Any, held: Held, review: Review) -> bytes:
    """The bytes that now go upstream in place of the held message (records into state.out)."""
    book, pending = frontend.book, held.pending
    rule = decision_fields(held.decision)["rule"]
    statement = str(getattr(held.decision, "statement", "") or "")[:TEXT_CAP]
    if review.approved:
        by = ", ".join(review.by) or "an approver"
        approved = LocalDecision(
            "approved", rule, f"approved in request {held.hold_id} by {by}", statement
        )
        if held.parse is not None:
            name, text, classification = held.parse
            if book.blocked.get(name) is held.decision:
                del book.blocked[name]
            if book.parse_creates(name):
                book.statements[name] = Prepared(name, text, classification, approved, pending.seq)
            if not name:
                book.blocked.pop("", None)
            book.push(pending)
        else:
            payload = {
                **held.payload,
                **decision_fields(approved),
                "approval": held.hold_id,
                "approved_by": list(review.by),
            }
            allow(frontend.state, pending, payload, held.data)
        return held.original
    refused = LocalDecision("unapproved", rule, _refusal(held, review), statement)
    if held.parse is not None and book.blocked.get(held.parse[0]) is held.decision:
        book.blocked[held.parse[0]] = refused
    payload = {**held.payload, "approval": held.hold_id}
    return block(frontend.state, pending, refused, payload, held.rewrite, held.data)

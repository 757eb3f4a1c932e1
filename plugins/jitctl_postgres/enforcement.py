"""Carrying out a decision on a client message: an allowed one is recorded and goes on, a
blocked one is recorded and made to fail on the server.

Rules (notes §4, §5):
- Allowed: `pg.statement` is recorded *durably* before the bytes go upstream (Query at once;
  extended protocol at Execute, with the text of the bound statement and the Bind parameters),
  except a plain read on a target with `postgres.write_ahead = "changes"` (`reads_only`): its
  record rides the next commit, and says so (`write_ahead: false`).
- Blocked: `pg.blocked` is recorded durably and the message is rewritten so the *server* fails
  it: a Query's text, or a Parse's text, becomes `FAIL_TEXT`, which fails at raw parse (42601,
  no catalog access, nothing can make it succeed). The backend half rewrites the resulting
  error into 42501 (`denial_fields`) and passes the server's ReadyForQuery through, so
  transaction state (`E` inside BEGIN), discard-until-Sync and the implicit rollback of a
  pipeline segment stay exactly Postgres's own.
- FunctionCall (`F`, protocol-flow #PROTOCOL-FLOW-FUNCTION-CALL) is blocked by rewriting its
  function OID to 0 (InvalidOid: never a function), so the server answers the *same message
  type* with ErrorResponse + ReadyForQuery (42883 "function with OID 0 does not exist", or
  25P02 in a failed transaction). A failing simple Query in its place gives the same reply
  flow only because its text fails at raw parse (an empty or comment-only one would answer
  EmptyQueryResponse, which a FunctionCall never gets); and the server would log and count a
  Query the client never sent. Keeping `F` keeps the server's own fast-path checks, replies and
  logs for the message the client did send, rewritten in place (same length).
- The core decides for itself (`LocalDecision`) where policy cannot: an allowed COPY that could
  not be masked faithfully on a masked target, a statement name blocked earlier, and the
  outcome of an approval (holds.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from . import copyspec
from .messages import build_parse, message, query
from .state import TEXT_CAP, SessionState, decision_fields
from .statements import Pending

FAIL_TEXT = "JITCTL_DENIED_BY_POLICY"


@dataclass(frozen=True, slots=True)
class LocalDecision:
    """A decision the core makes itself (masking limits, a name blocked earlier)."""

    action: str
    rule: str | None
    reason: str
    statement: str = ""


def denial_fields(decision: Any) -> dict[str, str]:
    """The error the client sees instead of the server's (notes §5: 42501, ERROR)."""
    reason = str(getattr(decision, "reason", "") or "policy")
    action = getattr(decision, "action", "deny")
    if action == "approve":
        text = f"jitctl: approval required: {reason} (this session cannot wait for one)"
    elif action == "unapproved":
        text = f"jitctl: statement not approved: {reason}"
    else:
        text = f"jitctl: statement denied by policy: {reason}"
    rule = decision_fields(decision)["rule"]
    return {"C": "42501", "M": text, "D": f"jitctl rule: {rule or 'default action'}"}


def decide(state: SessionState, classification: Any, text: str | None) -> Any:
    """The policy's decision, or the core's own refusal of what it could not mask. A text that
    links tables (flag `inheritance`) joins them into one family first, whatever is decided:
    its own later statements, and the session's, are decided with the link (families.py)."""
    if getattr(state.services.policy, "needs_families", False):
        for info in getattr(classification, "statements", ()):
            if "inheritance" in info.flags:
                state.families = state.families.linked(info.tables_read | info.tables_written)
    decision = state.services.policy.decide(classification, state.groups, state.families)
    if getattr(decision, "action", "deny") == "allow" and text and state.masks is not None:
        why = copyspec.refusal(text)
        if why:
            return LocalDecision("deny", "masking", f"{why} on a masked target")
    return decision


def allow(
    state: SessionState,
    pending: Pending,
    payload: dict[str, Any],
    data: bytes = b"",
    classification: Any = None,
) -> None:
    """Record an allowed statement, durable before it goes up (write-ahead), except a plain
    read on a target with `postgres.write_ahead = "changes"` (module rules)."""
    durable = state.reads_wait or not getattr(classification, "reads_only", False)
    fields = {"seq": pending.seq, **payload}
    if not durable:
        fields["write_ahead"] = False
    state.record("pg.statement", fields, durable=durable, data=data)
    pending.started = state.clock()
    if state.book.push(pending):
        state.inflight(pending.seq)
    else:
        state.record("pg.result", {"statement": pending.seq, "skipped": True})


def block(
    state: SessionState,
    pending: Pending,
    decision: Any,
    payload: dict[str, Any],
    rewrite: bytes,
    data: bytes,
) -> bytes:
    """Record a blocked message durably; returns `rewrite`, what goes upstream in its place."""
    pending.blocked = decision
    pending.started = state.clock()
    state.record(
        "pg.blocked",
        {
            "seq": pending.seq,
            **payload,
            **decision_fields(decision),
            "decided_by": str(getattr(decision, "statement", "") or "")[:TEXT_CAP],
        },
        durable=True,
        data=data,
    )
    state.book.push(pending)
    return rewrite


def failing_query() -> bytes:
    """The Query sent in place of a blocked one."""
    return query(FAIL_TEXT)


def failing_parse(name: str, tail: bytes) -> bytes:
    """The Parse sent in place of a blocked one: same name and parameter types."""
    return build_parse(name, FAIL_TEXT, tail)


def failing_function_call(body: bytes) -> bytes:
    """The FunctionCall sent in place of a blocked one: function OID 0, the rest unchanged."""
    return message(b"F", b"\0\0\0\0" + body[4:])

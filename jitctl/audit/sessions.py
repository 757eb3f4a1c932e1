"""Session summaries derived from a session's records: pure functions.

Rules:
- A session is opened by `session.start` (payload {protocol, upstream}) or refused by
  `session.denied` (payload {reason, ...}); it is closed by `session.end`
  (payload {bytes_up, bytes_down, status, reason}).
- No `session.end` yet: status "open", no end time, no duration, byte counts 0.
- A refused session: status "denied", duration 0, end_reason = the denial's reason (or error).
  A refusal recorded before any session id existed is listed as `denied-<seq>`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jitctl.audit.records import Record, SessionSummary

START_KINDS = ("session.start", "session.denied")
END_KIND = "session.end"
DENIED_PREFIX = "denied-"  # id of a refusal recorded without a session id: denied-<seq>


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def summarize(start: Record, end: Record | None, kind_counts: Mapping[str, int]) -> SessionSummary:
    payload = start.payload
    if start.kind == "session.denied":
        kind_counts = kind_counts or {start.kind: 1}
        return SessionSummary(
            id=start.session_id,
            target=start.target,
            protocol=str(payload.get("protocol", "")),
            actor=start.actor,
            start_us=start.time_us,
            end_us=start.time_us,
            duration_s=0.0,
            bytes_up=0,
            bytes_down=0,
            status="denied",
            end_reason=str(payload.get("reason") or payload.get("error") or ""),
            record_count=sum(kind_counts.values()),
            kind_counts=dict(kind_counts),
        )
    end_payload = end.payload if end is not None else {}
    return SessionSummary(
        id=start.session_id,
        target=start.target,
        protocol=str(payload.get("protocol", "")),
        actor=start.actor,
        start_us=start.time_us,
        end_us=end.time_us if end is not None else None,
        duration_s=(end.time_us - start.time_us) / 1e6 if end is not None else None,
        bytes_up=_int(end_payload.get("bytes_up")),
        bytes_down=_int(end_payload.get("bytes_down")),
        status=str(end_payload.get("status") or "closed") if end is not None else "open",
        end_reason=str(end_payload.get("reason", "")),
        record_count=sum(kind_counts.values()),
        kind_counts=dict(kind_counts),
    )


def matches_user(record: Record, user: str) -> bool:
    """`--user` matches the subject, the email or the agent label, exactly."""
    actor = record.actor
    return actor is not None and user in (actor.subject, actor.email, actor.agent)

"""How a request (its JSON view) reads in one line, for the CLI and `request watch`."""

from __future__ import annotations

from typing import Any


def clock(epoch: float | None) -> str:
    """Local wall-clock time of `epoch`, or "" for none."""
    if not epoch:
        return ""
    from datetime import datetime

    return datetime.fromtimestamp(epoch).astimezone().strftime("%H:%M:%S")


def describe(request: dict[str, Any], width: int = 60) -> str:
    """What is asked: a statement's text on one line (cut), or access for a while."""
    from jitctl.durations import format_duration

    if request.get("kind") == "statement":
        text = " ".join(str(request.get("text", "")).split())
        return text if len(text) <= width else text[: width - 1] + "…"
    return f"access for {format_duration(float(request.get('duration_s') or 0))}"


def status_line(request: dict[str, Any]) -> str:
    rid, status = request["id"], request["status"]
    if status == "pending":
        needed = int(request["min_approvals"]) - int(request["approvals"])
        groups = ", ".join(request.get("approvers") or []) or "nobody"
        return (
            f"request {rid} for {request['target']} is pending: needs {needed} more "
            f"approval(s) from {groups} (until {clock(request.get('deadline'))})"
        )
    if status == "approved" and request.get("kind") == "access":
        return (
            f"request {rid}: access to {request['target']} approved by "
            f"{request.get('decided_by')} until {clock(request.get('expires_at'))}"
        )
    by = request.get("decided_by") or ""
    why = request.get("decision_reason") or ""
    return f"request {rid} is {status}" + (f" ({by})" if by else "") + (f": {why}" if why else "")

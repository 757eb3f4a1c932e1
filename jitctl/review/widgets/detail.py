"""What an approver must see before deciding: the exact text, who asks (caller, agent, command
line), why, and for how long or until when."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static


def render(request: dict[str, Any] | None) -> Text:
    from jitctl.approvals.text import clock

    if request is None:
        return Text("nothing pending", style="dim")
    requester = request.get("requester") or {}
    out = Text()

    def line(label: str, value: Any) -> None:
        if value:
            out.append(f"{label:<10}", style="bold")
            out.append(f"{value}\n")

    line("request", f"{request['id']} ({request['kind']} on {request['target']})")
    line("caller", requester.get("email") or requester.get("subject"))
    line("subject", requester.get("subject"))
    line("agent", requester.get("agent"))
    line("command", requester.get("command"))
    line("reason", request.get("reason") or "(none given)")
    if request.get("kind") == "statement":
        details = request.get("details") or {}
        line("rule", f"{details.get('rule', '')}: {details.get('reason', '')}")
        line("waits", f"until {clock(request.get('deadline'))}")
        out.append("\n")
        out.append(str(request.get("text", "")), style="bold yellow")
    else:
        from jitctl.durations import format_duration

        line("for", format_duration(float(request.get("duration_s") or 0)))
    return out


class Detail(Static):
    def show(self, request: dict[str, Any] | None) -> None:
        self.update(render(request))

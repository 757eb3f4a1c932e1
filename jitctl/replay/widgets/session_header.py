"""The session view's header line: chain verdict, session, target, who, protocol, status.

It shows what the screen hands it (`show`); it is red when the chain is broken and green once
it is verified, and says "?" for a session whose summary or actor is missing.
"""

from __future__ import annotations

from textual.widgets import Static

from jitctl.audit.records import SessionSummary
from jitctl.replay.chain import ChainState


def header_text(session_id: str, summary: SessionSummary | None, chain: ChainState) -> str:
    badge = f"{chain.badge} · "
    if summary is None:
        return f"{badge}{session_id} · {chain.text}"
    s = summary
    who = (s.actor.email or s.actor.subject) if s.actor else "?"
    agent = f" ({s.actor.agent})" if s.actor and s.actor.agent else ""
    detail = chain.text.removeprefix("chain ✓ ").removeprefix("chain: ")
    return f"{badge}{s.id} · {s.target} · {who}{agent} · {s.protocol} · {s.status} · {detail}"


class SessionHeader(Static):
    def show(self, session_id: str, summary: SessionSummary | None, chain: ChainState) -> None:
        self.update(header_text(session_id, summary, chain))
        self.set_class(chain.status == "broken", "-broken")
        self.set_class(chain.ok, "-verified")

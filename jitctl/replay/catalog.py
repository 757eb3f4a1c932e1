"""The picker's list: sessions matching a filter line, with what each one had. Plain Python.

Rules:
- A filter line is words: `user:` (subject, email or agent label), `target:`, `agent:`,
  `since:` / `until:` (ISO time or a duration ago, as `--since`), `has:blocks`, `has:approvals`,
  `has:masks`; any other word must appear in the session's id, target, user or agent.
- `user`, `target` and `since` are handed to the store's `sessions()`; the rest is applied to
  the summaries it returns (newest first, at most `limit`).
- Flags come from the kind counts (blocks: a refusal or a record whose kind says blocked or
  denied; approvals: a kind naming an approval) and, for masks, one query over the listed
  sessions' payloads (`"masked":`) or a `*.masked` kind.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from jitctl.audit.records import SessionSummary

if TYPE_CHECKING:
    from jitctl.audit.store import AuditStore

FLAGS = ("blocks", "approvals", "masks")
_KEYS = ("user", "target", "agent", "since", "until", "has")
_CHUNK = 500


@dataclass
class Filter:
    user: str | None = None
    target: str | None = None
    agent: str | None = None
    since_us: int | None = None
    until_us: int | None = None
    has: set[str] = field(default_factory=set)
    words: list[str] = field(default_factory=list)


def parse_filter(text: str, parse_when: Callable[[str], int]) -> Filter:
    """A Filter from a filter line; raises ValueError naming the word it cannot read."""
    out = Filter()
    for word in text.split():
        key, sep, value = word.partition(":")
        if not sep or key not in _KEYS:
            out.words.append(word.lower())
            continue
        if not value:
            raise ValueError(f"{key}: needs a value")
        if key == "has":
            for flag in value.split(","):
                if flag not in FLAGS:
                    raise ValueError(f"has:{flag}? use has:blocks, has:approvals or has:masks")
                out.has.add(flag)
        elif key in ("since", "until"):
            when = parse_when(value)
            if key == "since":
                out.since_us = when
            else:
                out.until_us = when
        else:
            setattr(out, key, value)
    return out


@dataclass(frozen=True)
class Row:
    summary: SessionSummary
    flags: frozenset[str]

    @property
    def who(self) -> str:
        actor = self.summary.actor
        return (actor.email or actor.subject) if actor else ""

    @property
    def agent(self) -> str:
        actor = self.summary.actor
        return actor.agent if actor else ""

    def flag_text(self) -> str:
        return "".join(f[0].upper() if f in self.flags else "·" for f in FLAGS)


def _count_flags(summary: SessionSummary) -> set[str]:
    flags: set[str] = set()
    for kind in summary.kind_counts:
        if kind == "session.denied" or kind.endswith((".blocked", ".denied")):
            flags.add("blocks")
        if "approv" in kind:
            flags.add("approvals")
        if kind.endswith(".masked"):
            flags.add("masks")
    if summary.status == "denied":
        flags.add("blocks")
    return flags


def masked_sessions(store: AuditStore, ids: Sequence[str]) -> set[str]:
    """Which of `ids` hold a record whose payload says something was masked."""
    found: set[str] = set()
    for start in range(0, len(ids), _CHUNK):
        chunk = list(ids[start : start + _CHUNK])
        rows = store._by_session("DISTINCT session_id", chunk, "payload LIKE ?", ['%"masked":%'])
        found.update(str(row[0]) for row in rows)
    return found


def _matches(summary: SessionSummary, wanted: Filter) -> bool:
    actor = summary.actor
    if wanted.agent is not None and (actor is None or actor.agent != wanted.agent):
        return False
    if wanted.until_us is not None and summary.start_us >= wanted.until_us:
        return False
    if wanted.words:
        hay = " ".join(
            [summary.id, summary.target, summary.protocol, summary.status]
            + ([actor.subject, actor.email, actor.agent] if actor else [])
        ).lower()
        return all(word in hay for word in wanted.words)
    return True


def find_sessions(store: AuditStore, wanted: Filter, limit: int = 1000) -> list[Row]:
    local = wanted.agent or wanted.until_us is not None or wanted.words or wanted.has
    summaries = store.sessions(
        target=wanted.target,
        user=wanted.user,
        since_us=wanted.since_us,
        limit=None if local else limit,
    )
    chosen = [s for s in summaries if _matches(s, wanted)]
    rows: list[Row] = []
    batch = 200
    for start in range(0, len(chosen), batch):
        part = chosen[start : start + batch]
        masked = masked_sessions(store, [s.id for s in part])
        for summary in part:
            flags = _count_flags(summary) | ({"masks"} if summary.id in masked else set())
            if wanted.has <= flags:
                rows.append(Row(summary, frozenset(flags)))
        if len(rows) >= limit:
            break
    return rows[:limit]

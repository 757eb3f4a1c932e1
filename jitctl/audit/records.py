"""The record model of the audit trail.

Rules:
- Records are frozen values. `NewRecord` is what a caller appends; the store turns it into a
  `Record` by giving it the next sequence number, the previous record's hash and its own hash.
- `payload` holds JSON values only (str, int, bool, None, finite floats, lists, objects with
  string keys); `data` holds raw bytes (tunnel chunks, terminal output) and is hashed once
  (`data_sha256`) so big blobs never pass through JSON.
- `Actor.to_dict()` leaves out empty fields (subject excepted): a field added in a later version
  with an empty default therefore does not change the hash of records written before it.
- `time_us` is microseconds since the Unix epoch, UTC; 0 in a `NewRecord` means "now".
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

_ACTOR_TEXT_FIELDS = (
    "email",
    "issuer",
    "agent",
    "command",
    "reason",
    "correlation_id",
    "client_addr",
)


@dataclass(frozen=True, slots=True)
class Actor:
    """Who acted: the verified identity plus what the client said about the run."""

    subject: str
    email: str = ""
    groups: tuple[str, ...] = ()
    issuer: str = ""
    agent: str = ""  # agent label given with --agent
    command: str = ""  # the wrapped command line, when known
    reason: str = ""
    correlation_id: str = ""
    client_addr: str = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"subject": self.subject}
        if self.groups:
            out["groups"] = list(self.groups)
        for name in _ACTOR_TEXT_FIELDS:
            value = getattr(self, name)
            if value:
                out[name] = value
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Actor:
        texts = {name: str(data.get(name) or "") for name in _ACTOR_TEXT_FIELDS}
        return cls(
            subject=str(data.get("subject") or ""),
            groups=tuple(str(g) for g in data.get("groups") or ()),
            **texts,
        )


@dataclass(frozen=True, slots=True)
class NewRecord:
    """A record as a caller appends it."""

    kind: str  # "session.start", "session.end", "session.denied", "tcp.data", ...
    session_id: str = ""  # "" for records not about a session
    target: str = ""
    actor: Actor | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)
    data: bytes = b""
    time_us: int = 0  # 0: the time of the append


@dataclass(frozen=True, slots=True)
class Record(NewRecord):
    """A record in the chain: `hash` = SHA-256 of its canonical encoding (see `canonical`)."""

    seq: int = field(kw_only=True)
    prev_hash: str = field(kw_only=True)
    hash: str = field(kw_only=True)


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """One session as the trail tells it, from its `session.start` and `session.end` records."""

    id: str
    target: str
    protocol: str
    actor: Actor | None
    start_us: int
    end_us: int | None
    duration_s: float | None  # None while the session is open
    bytes_up: int  # client -> upstream
    bytes_down: int  # upstream -> client
    status: str  # "open" | "closed" | "error" | "denied"
    end_reason: str
    record_count: int
    kind_counts: Mapping[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "target": self.target,
            "protocol": self.protocol,
            "actor": self.actor.to_dict() if self.actor else None,
            "start_us": self.start_us,
            "end_us": self.end_us,
            "duration_s": self.duration_s,
            "bytes_up": self.bytes_up,
            "bytes_down": self.bytes_down,
            "status": self.status,
            "end_reason": self.end_reason,
            "record_count": self.record_count,
            "kind_counts": dict(self.kind_counts),
        }

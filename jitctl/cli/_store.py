"""Where the audit and sessions commands read the trail: one resolution for all of them.

Rules:
- `--config F`: the broker's TOML; the store is `broker.store`, or SQLite `audit.db` in
  `broker.state_dir` when that is empty; keys and the checkpoint file live in `broker.state_dir`.
- `--state-dir D`: SQLite `D/audit.db`, keys and checkpoint file in D.
- Neither: the dev broker's state dir (`jitctl.paths.dev_broker_dir()`).
- A session is named by its id or by a unique start of it (at least `MIN_PREFIX` characters,
  as git takes a shortened commit id); an ambiguous one lists the candidates.
- Times (`--since`, `--before`) are ISO dates/times (naive ones are local time) or a duration
  meaning "that long ago" (`1h`, `30d`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from jitctl.errors import UsageError

if TYPE_CHECKING:
    from jitctl.audit.records import SessionSummary
    from jitctl.audit.store import AuditStore

CHECKPOINT_NAME = "audit-checkpoint.json"
PUBLIC_KEY_NAME = "audit-signing.pub"
MIN_PREFIX = 4


def find_session(store: AuditStore, given: str) -> SessionSummary:
    """The session `given` names: its whole id, or a unique start of it."""
    summary = store.session(given)
    if summary is not None:
        return summary
    found = store.session_ids_starting(given) if len(given) >= MIN_PREFIX else []
    if len(found) > 1:
        shown = ", ".join(found[:5]) + (", …" if len(found) > 5 else "")
        raise UsageError(f"session id {given!r} is ambiguous: {shown}", "give more of the id")
    summary = store.session(found[0]) if found else None
    if summary is None:
        raise UsageError(f"no session {given!r} in the trail", "see `jitctl sessions ls`")
    return summary


@dataclass(frozen=True, slots=True)
class AuditSource:
    store_url: str
    state_dir: Path

    @property
    def checkpoint_file(self) -> Path:
        return self.state_dir / CHECKPOINT_NAME

    def open(self) -> AuditStore:
        """The store, read-write but never created: a missing trail is an error."""
        from jitctl.audit.store import open_store

        return open_store(self.store_url, create=False)

    def trusted_keys(self, extra: list[Path] | None = None) -> dict[str, bytes]:
        from jitctl.audit.errors import AuditUnavailable
        from jitctl.audit.keys import trusted_keys_from

        paths = list(extra or [])
        own = self.state_dir / PUBLIC_KEY_NAME
        if own.exists():
            paths.append(own)
        if not paths:
            raise AuditUnavailable(
                f"no trusted audit key: {own} does not exist",
                "pass --key with the broker's audit-signing.pub",
            )
        return trusted_keys_from(paths)


def resolve(config: Path | None, state_dir: Path | None) -> AuditSource:
    if config is not None and state_dir is not None:
        raise UsageError("give --config or --state-dir, not both")
    if config is not None:
        from jitctl.config import load_config

        broker = load_config(config).broker
        directory = Path(broker.state_dir)
        return AuditSource(broker.store or f"sqlite://{directory / 'audit.db'}", directory)
    if state_dir is None:
        from jitctl.paths import dev_broker_dir

        state_dir = dev_broker_dir()
    directory = state_dir.absolute()
    return AuditSource(f"sqlite://{directory / 'audit.db'}", directory)


def parse_when(text: str, *, now: datetime | None = None) -> int:
    """Microseconds since the epoch for an ISO time or a duration ago ("1h" = an hour ago)."""
    from jitctl.durations import parse_duration

    now = now or datetime.now().astimezone()
    try:
        return int((now.timestamp() - parse_duration(text)) * 1_000_000)
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(
            f"{text!r} is neither a time nor a duration",
            "write an ISO time like 2025-01-31 or 2025-01-31T12:00:00Z, "
            "or a duration like 1h or 30d",
        ) from None
    if moment.tzinfo is None:
        moment = moment.astimezone()  # a naive time is the user's local time
    return int(moment.timestamp() * 1_000_000)


def format_time(time_us: int | None) -> str:
    if time_us is None:
        return ""
    return datetime.fromtimestamp(time_us / 1e6).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def format_bytes(count: int) -> str:
    if count < 0:
        return "?"
    value = float(count)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{count} B"

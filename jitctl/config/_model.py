"""The building blocks every section of the config file is made of.

Rules:
- A section is a frozen `Model` that forbids unknown keys (a typo must not silently turn a deny
  into nothing).
- A `Duration` is seconds >= 0; `duration` lets a file write it as a number or as "30s", "15m",
  "1h" (jitctl.durations).
- A webhook or `[gcp]` URL is https://, or http:// to loopback only (test servers and
  emulators); its trailing "/" is dropped.
- A check that spans several keys raises `KeyProblem` with the key to blame, so the message
  names that key rather than the table that holds it (jitctl.config.loading).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Protocol

from pydantic import BaseModel, ConfigDict, Field

from jitctl.durations import parse_duration


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def duration(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        raise ValueError("expected a duration such as 30s, 15m or 1h")
    return parse_duration(value)


Duration = Annotated[float, Field(ge=0)]


def https_url(value: str) -> str:
    if value.startswith("https://"):
        return value.rstrip("/")
    if value.startswith(("http://127.0.0.1", "http://localhost", "http://[::1]")):
        return value.rstrip("/")  # loopback emulators only
    raise ValueError("must be an https:// URL (http:// is accepted only for loopback)")


def optional_https_url(value: str) -> str:
    return https_url(value) if value else value


class KeyProblem(ValueError):
    """A cross-field problem that still belongs to one key (`relative`: a key inside the
    table being validated, e.g. a target's `access.max_duration`)."""

    def __init__(self, key: str, problem: str, relative: bool = False) -> None:
        super().__init__(problem)
        self.key = key
        self.problem = problem
        self.relative = relative


class _Named(Protocol):
    @property
    def name(self) -> str: ...


def check_unique_names(items: Sequence[_Named], table: str, what: str) -> None:
    """Raise `KeyProblem` on the second of two `items` (the entries of `table`) sharing a name."""
    seen: dict[str, int] = {}
    for index, item in enumerate(items):
        if item.name in seen:
            raise KeyProblem(
                f"{table}[{index}].name",
                f"duplicate {what} name {item.name!r} (first used at {table}[{seen[item.name]}])",
            )
        seen[item.name] = index

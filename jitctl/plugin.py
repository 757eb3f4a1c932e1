"""The interface a protocol plugin implements, and the registry that finds plugins.

A plugin is a sans-I/O *core* (bytes in, commands out; no sockets, no asyncio) that the gateway
shell in `jitctl.gateway` drives. The shell reads bytes from the client or the upstream, hands
them to the core, and executes the commands the core returns, in order:

- `Record(kind, payload, data, durable)`: append an audit record. A durable record is on disk
  before any later command of the same batch runs (write-ahead); a non-durable one keeps its
  place in the trail's order but does not hold up forwarding.
- `Forward(direction, data)`: send bytes to the upstream (UP) or the client (DOWN).
- `Shutdown(direction)`: half-close toward the upstream (UP) or the client (DOWN).
- `Close(reason, error)`: end the session; the reason reaches the client and the trail.

Cores must treat any input bytes as untrusted: they return commands or raise
`RemoteProtocolError` (which the shell turns into a Close), never another exception.

Third-party plugins register an entry point in the group `jitctl.plugins`:

    [project.entry-points."jitctl.plugins"]
    redis = "jitctl_redis:plugin"

where `plugin` is an object with `name` and `new_core(context) -> Core`.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol


class Direction(enum.Enum):
    UP = "up"  # client -> upstream
    DOWN = "down"  # upstream -> client


@dataclass(frozen=True, slots=True)
class Record:
    kind: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    data: bytes = b""
    durable: bool = False


@dataclass(frozen=True, slots=True)
class Forward:
    direction: Direction
    data: bytes


@dataclass(frozen=True, slots=True)
class Shutdown:
    """No more bytes will go toward `direction` (a TCP half-close)."""

    direction: Direction


@dataclass(frozen=True, slots=True)
class Close:
    reason: str
    error: bool = False


Command = Record | Forward | Shutdown | Close


class ProtocolError(Exception):
    pass


class LocalProtocolError(ProtocolError):
    """We were asked to do something the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent bytes that break the protocol."""


@dataclass(frozen=True)
class SessionContext:
    """What a core may know about its session; plain data, no services."""

    session_id: str
    target: Any  # jitctl.config.Target
    subject: str = ""
    groups: tuple[str, ...] = ()
    chunk_size: int = 65536
    settings: Mapping[str, Any] = field(default_factory=dict)


class Core(Protocol):
    def client_data(self, data: bytes) -> Sequence[Command]: ...

    def upstream_data(self, data: bytes) -> Sequence[Command]: ...

    def client_eof(self) -> Sequence[Command]: ...

    def upstream_eof(self) -> Sequence[Command]: ...


class Plugin(Protocol):
    name: str

    def new_core(self, context: SessionContext) -> Core: ...


ENTRY_POINT_GROUP = "jitctl.plugins"


class UnknownProtocol(LookupError):
    pass


def load_plugin(name: str) -> Plugin:
    """The plugin registered for protocol `name` (entry point group `jitctl.plugins`)."""
    from importlib.metadata import entry_points

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        if entry.name == name:
            plugin: Plugin = entry.load()
            return plugin
    raise UnknownProtocol(name)
